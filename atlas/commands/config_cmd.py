"""`atlas config [FILE]`: validate a config (with --set overrides) and print it, or list every key."""

from __future__ import annotations

import argparse
import sys

from atlas.commands.options import add_overrides

HELP = (
    "Validate a run config and print it resolved (defaults filled in; a few newer optional keys appear only"
    " when set), or list all keys with docs (no CONFIG)."
)

INTRO = """\
Run config keys (YAML). Override any with --set KEY=VALUE; list items by index (--set layers.0.units=0-15).
A key shown as a.b[].c sits in each item of the list a.b. Shorthands: models.target: SPEC for {spec: SPEC};
layers: [fc8] for [{name: fc8}].

Image spaces (models.target.preprocess.*, or a python: factory's atlas_image_space): the target sees
  x = (fit(rgb01) * value_scale, channels in channel_order - mean) / std
where rgb01 is the picture as float RGB in [0, 1] and fit brings it to size x size (geometry). So
value_scale says what full intensity is in the model's units (1.0: inputs in [0,1]; 255.0: [0,255]),
and mean/std are per channel in that scale and channel order. Keys left out keep the model's own values.
"""


EXAMPLES = """examples:
  atlas config configs/demo.yaml --set sampler.steps=50     # validated and resolved
  atlas config configs/alexnet-deepsim.yaml --check         # also loads the models and checks the layers
  atlas config                                              # every key with its doc
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "config", nargs="?", metavar="CONFIG", help="YAML run config (omit to list every key with its doc)"
    )
    add_overrides(p)
    p.add_argument(
        "--check",
        action="store_true",
        help="also load the models and run the pre-flight checks of `atlas run` (no Ray, nothing written)",
    )


def _wrap_doc(rows: list[tuple[str, str, str, str]]) -> list[tuple[str, str, str, str]]:
    """On a terminal, wrap the doc column to its width (continuation rows); elsewhere one row per key."""
    import shutil
    import textwrap

    if not sys.stdout.isatty():
        return rows
    left = sum(max(len(r[i]) for r in rows) + 2 for i in range(3))
    width = max(40, shutil.get_terminal_size((160, 24)).columns - left)
    out = []
    for key, tp, default, doc in rows:
        lines = textwrap.wrap(doc, width) or [""]
        out.append((key, tp, default, lines[0]))
        out.extend(("", "", "", line) for line in lines[1:])
    return out


def _check(cfg) -> list[str]:
    """Pre-flight as `atlas run` does it, without Ray: returns lines describing what was checked."""
    from atlas.config import PIXEL_METHODS
    from atlas.models.spaces import conversion
    from atlas.pipeline.models_setup import build_models
    from atlas.pipeline.preflight import preflight_config, preflight_models

    warnings = preflight_config(cfg, address=cfg.ray.address)
    models = build_models(cfg, train=False)  # a check trains nothing (a trial waited 7 min for a member)
    report = preflight_models(cfg, models)
    for line in warnings + report.warnings:
        print(f"atlas: warning: {line}", file=sys.stderr)
    layers = ", ".join(_layer_text(cfg, n, s) for n, s in report.layer_shapes.items())
    named = [("output layer", report.output_layer), ("facet layer", report.facet_layer)]
    named.append(("code layer", report.code_layer))
    parts = [f"{what} {name}" if name else f"no {what}" for what, name in named]
    lines = [f"# pre-flight passed: layers {layers}; " + "; ".join(parts)]
    gen, target = models.generator, models.target
    drawn = gen is not None and gen.space is not None and cfg.sampler.method not in PIXEL_METHODS
    if drawn and target.space is not None:
        lines.append(f"# pictures: the generator's {conversion(gen.space, target.space)} for the target")
        encoder = models.encoder
        if encoder is not None and encoder.space is not None and report.code_layer:
            seen = conversion(gen.space, encoder.space)
            lines.append(f"# code: {encoder.spec}'s {report.code_layer} reads the generator's {seen}")
    if models.ensemble:  # the members' specs, checked: T's classes in T's order
        members = ", ".join(m.spec for m in models.ensemble)
        lines.append(
            f"# ensemble: {report.output_layer}'s chains climb the objective of the mean output layer of the "
            f"target and {members} ({len(models.ensemble) + 1} networks); every stored number is the target's"
        )
    return [*lines, compute_line(cfg)]


def _layer_text(cfg, name: str, shape: tuple[int, ...]) -> str:
    """``fc8 10 (3 units selected + 4 composites)``: the layer's shape, then what the run maps of it (a
    user's trial read the shape's 10 as the units selected)."""
    from atlas.tables import counted

    entry = next((layer for layer in cfg.layers if layer.name == name), None)
    text = f"{name} {'x'.join(map(str, shape))}"
    if entry is None or not shape:
        return text
    selected = len(entry.units.resolve(shape[0], layer=name))
    composites = len(entry.composite_texts())
    plus = f" + {counted(composites, 'composite')}" if composites else ""
    return f"{text} ({counted(selected, 'unit')} selected{plus})"


def compute_line(cfg) -> str:
    """``# compute: ...``: how the workers' devices will run the chains (ComputeSetup.resolve for a CUDA
    and a CPU worker, as compute.device allows), and the most chains a pass can hold (one shard's)."""
    import torch

    from atlas.sampling.compute import ComputeSetup

    kinds = {"cpu": ["cpu"], "auto": ["cuda", "cpu"]}.get(cfg.compute.device, ["cuda"])
    shard = cfg.ray.units_per_shard * cfg.sampler.chains_per_unit  # a pass holds one shard's chains at most
    parts = []
    for kind in kinds:
        setup = ComputeSetup.resolve(cfg.compute, torch.device(kind))
        extras = ["channels_last" if setup.channels_last else "contiguous"]
        extras += ["cuDNN autotuner"] if setup.cudnn_benchmark else []
        extras += ["torch.compile"] if setup.compile else []
        batch = setup.first_batch
        chains = f"{min(batch, shard)} chains a pass"
        if shard < batch:
            chains += " (one shard's: units_per_shard x chains_per_unit)"
        elif not setup.batch_size:
            chains += ", halved on out-of-memory"
        name = "a GPU worker" if kind == "cuda" else "a CPU worker (this machine's CPU kind)"
        parts.append(f"{name}: {setup.precision}, {', '.join(extras)}, {chains}")
    return "# compute: " + "; ".join(parts)


def run(args: argparse.Namespace) -> int:
    import yaml

    from atlas.commands.options import load_command_config
    from atlas.config import describe_fields
    from atlas.errors import AtlasError
    from atlas.tables import format_table

    if args.config is not None and not args.config.strip():
        raise AtlasError(
            "CONFIG: empty path; give a config file such as configs/demo.yaml (none: list every key)"
        )
    if not args.config:
        if args.overrides or args.check:
            raise AtlasError(
                "--set and --check need a CONFIG file; e.g. atlas config configs/demo.yaml --check"
            )
        print(INTRO)
        print(format_table(["key", "type", "default", "doc"], _wrap_doc(describe_fields())))
        return 0
    cfg = load_command_config(args)
    if not args.check:  # --check says these with the model's
        from atlas.config.advice import config_warnings

        for line in config_warnings(cfg):
            print(f"atlas: warning: {line}", file=sys.stderr)
    extra = _check(cfg) if args.check else []
    from atlas.config.section import to_plain

    print(yaml.safe_dump(to_plain(cfg, shown=True), sort_keys=False).rstrip())  # every key; '0-99' as given
    for line in extra:
        print(line)
    return 0
