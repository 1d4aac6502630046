"""`atlas layers SPEC`: list a model's layers with output shapes, unit counts and kinds."""

from __future__ import annotations

import argparse
import sys

from atlas.toyworld.presets import PRESETS

HELP = "List a model's layers: module name, output shape, unit count, kind (fc/conv)."
DEFAULT_SIZE = 224  # probe size for a target that declares none


EXAMPLES = """examples:
  atlas layers toyworld:target
  atlas layers torchvision:alexnet --weights weights/alexnet.pth
  atlas layers python:mypkg.nets:build --size 128
  atlas layers python:mypkg.nets:build_mnist --size 28 --gray
  atlas layers python:mypkg.nets:build_generator        (declares code_shape: listed as a generator)
  atlas layers python:mypkg.nets:build_dae --role dae
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "spec", metavar="SPEC", help="model spec, e.g. torchvision:alexnet, toyworld:target, deepsim:fc6"
    )
    p.add_argument(
        "--weights", metavar="FILE", help="state-dict file to load (default: random weights, and it says so)"
    )
    p.add_argument("--all", action="store_true", help="include container modules, not only leaves")
    p.add_argument(
        "--size",
        type=int,
        help=f"input size for targets in pixels (default: the model's declared size, else {DEFAULT_SIZE})",
    )
    p.add_argument(
        "--gray",
        action="store_true",
        help="a one-channel target: it reads the picture's luminance (preprocess.channel_order: gray)",
    )
    p.add_argument(
        "--role",
        choices=ROLES,
        help="what the model is: a target's forward takes pictures, a generator's or DAE's takes codes "
        "(default: from the spec; a python: module that declares code_shape is a generator)",
    )
    p.add_argument("--preset", default="default", choices=list(PRESETS), help="toy-world preset")


ROLES = ("target", "generator", "dae")
WHAT_ROLES_TAKE = {
    "target": "a network of pictures (its forward takes pictures)",
    "generator": "a generator (its forward takes codes and draws pictures)",
    "dae": "a code DAE (its forward takes codes and returns codes)",
}


def role_of_spec(spec: str) -> str:
    scheme, _, name = spec.partition(":")
    if scheme == "toyworld":
        return {"generator": "generator", "dae": "dae", "judge": "judge"}.get(name, "target")
    return {"deepsim": "generator", "dae": "dae"}.get(scheme, "target")


def _check_role(spec: str, role: str | None) -> None:
    """--role against a spec whose scheme fixes it (``toyworld:target --role generator``; a user's trial):
    one line naming what the spec is. deepsim: and dae: specs refuse a wrong role when they load."""
    from atlas.config.models import TOYWORLD_ROLES
    from atlas.errors import AtlasError

    name = spec.partition(":")[2]
    if role is None or not spec.startswith("toyworld:") or name not in TOYWORLD_ROLES:
        return  # an unknown component: the loader's one line names it (did you mean ...?)
    natural = role_of_spec(spec)
    listed = natural if natural in ROLES else "target"  # the judge, the reader: pictures in, as a target
    if role != listed:
        raise AtlasError(
            f"--role {role}: {spec} is the toy world's {name}, {WHAT_ROLES_TAKE[listed]}; use --role "
            f"{listed} or leave --role out"
        )


def _loaded(args: argparse.Namespace, cfg, role: str):
    """(role, the model loaded as it): a target whose module declares ``code_shape`` (not named with
    --role) is a generator, whose forward takes codes: a picture-size hint misled (a user's trial)."""
    from atlas.config import ToyWorldRef
    from atlas.errors import ModelError
    from atlas.models import load_model

    def load(role: str):
        return load_model(
            cfg, role, allow_random_weights=True, toyworld=ToyWorldRef(preset=args.preset),
            default_size=DEFAULT_SIZE,
        )  # fmt: skip

    model = load(role)
    if args.role is not None or role != "target" or not getattr(model.module, "code_shape", None):
        return role, model
    _image_options_fit(args, "generator")
    try:
        return "generator", load("generator")
    except ModelError as exc:  # e.g. no picture space: a DAE, taken for a generator
        raise ModelError(
            f"{exc} (listed as a generator: it declares code_shape; a DAE: --role dae)"
        ) from None


def _image_options_fit(args: argparse.Namespace, role: str) -> None:
    """--size and --gray set a target's input: a one-line error for a generator or DAE."""
    from atlas.errors import AtlasError

    if args.size is not None and role not in ("target", "judge"):
        raise AtlasError(
            f"--size: {args.spec} is a {role}, whose picture size is its own; --size sets a target's "
            "input size"
        )
    if args.gray and role not in ("target", "judge"):
        raise AtlasError(f"--gray: {args.spec} is a {role}; --gray sets a target's input channels")


def _weights_line(model) -> str:
    if model.random_weights:
        return "RANDOM weights (no weights file given): names and shapes are right, activations are not"
    if model.weights.endswith("(own weights)"):
        return f"weights: loaded by the factory (parameter fingerprint {model.fingerprint})"
    return f"weights: {model.weights}"


def _refuse_untrained_world(spec: str, preset: str) -> None:
    """Listing layers never trains a toy world (the pairs preset ships none: minutes of training); the
    component's one-line error says how to train it."""
    scheme, _, name = spec.partition(":")
    if scheme == "toyworld" and name in ("target", "judge", "generator", "dae", "planted"):
        from atlas.toyworld import load_component

        load_component("target" if name == "planted" else name, preset=preset, train_if_missing=False)


def _batch_warning(model) -> None:
    """A target that takes one picture at a time: what `atlas run` refuses, said here too, where its layers
    still list (a trial)."""
    from atlas.errors import ModelError
    from atlas.pipeline.preflight import check_batches

    if model.role != "target":
        return
    try:
        check_batches(model)
    except ModelError as exc:
        print(f"atlas: warning: {exc}; atlas run refuses it", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from atlas.config import ModelConfig, PreprocessConfig
    from atlas.errors import AtlasError
    from atlas.models import model_layers
    from atlas.tables import format_table

    if args.size is not None and not 1 <= args.size <= 4096:
        raise AtlasError(
            f"--size: {args.size} is not a usable input size; give pixels from 1 to 4096, e.g. 64"
        )
    _check_role(args.spec, args.role)
    role = args.role or role_of_spec(args.spec)
    _image_options_fit(args, role)
    pre = (
        PreprocessConfig(size=args.size, channel_order="gray" if args.gray else None)
        if args.size or args.gray
        else None
    )
    cfg = ModelConfig(spec=args.spec, weights=args.weights, preprocess=pre)
    _refuse_untrained_world(args.spec, args.preset)
    role, model = _loaded(args, cfg, role)
    rows = model_layers(model, include_containers=args.all)
    _batch_warning(model)
    print(f"{args.spec} ({role}) - {_weights_line(model)}")
    if model.space is not None:
        direction = "output" if role == "generator" else "input"
        assumed = model.extras.get("input_space_from") == "default"
        note = (
            " (assumed: no size declared; use --size N or the factory's atlas_image_space)" if assumed else ""
        )
        print(f"{direction} space: {model.space.describe()}{note}")
    if model.code_shape:
        print(f"code shape: {model.code_shape}")
    if role in ("target", "judge") and model.output_layer:
        print(f"output layer: {model.output_layer}")
    # a normalization layer's channels are its conv's again (conv2.1 BatchNorm2d after conv2.0): not counted
    total_units = sum(
        r.units for r in rows if r.kind in ("fc", "conv") and r.params and "Norm" not in r.module_type
    )
    output = model.output_layer if role in ("target", "judge") else None
    reused = any(r.calls > 1 for r in rows)  # a module called twice (ResNet's shared ReLU): a column then
    table = [
        (
            r.name,
            r.module_type,
            "x".join(map(str, r.shape)),
            r.units or "",
            "output" if r.name == output and r.kind != "other" else r.kind,
            f"{r.params:,}" if r.params else "",
            *([f"{r.calls}x" if r.calls > 1 else ""] if reused else []),
        )
        for r in rows
    ]
    header = ["layer", "type", "output shape", "units", "kind", "params"] + (["runs"] if reused else [])
    print(format_table(header, table, align_right=(3, 5)))
    if reused:
        print(
            "runs: a module called more than once in a forward pass; atlas reads its first call (the shape "
            "shown), so for a later one name a module that runs once (e.g. the block around it)"
        )
    params = sum(p.numel() for p in model.module.parameters())
    print(
        f"{len(rows)} layers, {params:,} parameters, {total_units:,} units in layers with weights "
        "(normalization layers not counted)"
    )
    if not args.all:  # a block (conv2 = conv2.0-conv2.2) is a layer too: configs often name it
        leaves = {r.name for r in rows}
        blocks = [r.name for r in model_layers(model, include_containers=True) if r.name not in leaves]
        if blocks:
            shown = ", ".join(blocks[:4]) + (", ..." if len(blocks) > 4 else "")
            these = (
                f"{len(blocks)} blocks ({shown}) are layers"
                if len(blocks) > 1
                else f"1 block ({shown}) is a layer"
            )
            print(f"{these} too (read at the block's own output); --all lists them")
    return 0
