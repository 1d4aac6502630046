"""`atlas layers SPEC`: list a model's layers with output shapes, unit counts and kinds."""

from __future__ import annotations

import argparse

HELP = "List a model's layers: module name, output shape, unit count, kind (fc/conv)."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", help="model spec, e.g. torchvision:alexnet, toyworld:target, deepsim:fc6")
    p.add_argument("--weights", help="state-dict file to load (default: random weights, and it says so)")
    p.add_argument("--all", action="store_true", help="include container modules, not only leaves")
    p.add_argument("--size", type=int, help="input size override for targets (pixels)")
    p.add_argument("--preset", default="default", choices=["default", "micro"], help="toy-world preset")


def run(args: argparse.Namespace) -> int:
    from atlas.config import ModelConfig, PreprocessConfig, ToyWorldRef
    from atlas.models import example_input, list_layers, load_model
    from atlas.tables import format_table

    pre = PreprocessConfig(size=args.size) if args.size else None
    scheme = args.spec.split(":", 1)[0]
    role = {"deepsim": "generator", "dae": "dae"}.get(scheme, "target")
    if scheme == "toyworld":
        role = {"generator": "generator", "dae": "dae", "judge": "judge"}.get(
            args.spec.split(":", 1)[-1], "target"
        )
    if scheme == "python" and pre is None:
        pre = PreprocessConfig(size=224)
    cfg = ModelConfig(spec=args.spec, weights=args.weights, preprocess=pre)
    model = load_model(cfg, role, allow_random_weights=True, toyworld=ToyWorldRef(preset=args.preset))
    rows = list_layers(model.module, example_input(model), include_containers=args.all)
    weights = (
        "RANDOM weights (no weights file given): names and shapes are right, activations are not"
        if model.random_weights
        else f"weights: {model.weights}"
    )
    print(f"{args.spec} ({role}) - {weights}")
    if model.space is not None:
        direction = "output" if role == "generator" else "input"
        print(f"{direction} space: {model.space.describe()}")
    if model.code_shape:
        print(f"code shape: {model.code_shape}")
    total_units = sum(r.units for r in rows if r.kind in ("fc", "conv") and r.params)
    table = [
        (
            r.name,
            r.module_type,
            "x".join(map(str, r.shape)),
            r.units or "",
            r.kind,
            f"{r.params:,}" if r.params else "",
        )
        for r in rows
    ]
    print(
        format_table(["layer", "type", "output shape", "units", "kind", "params"], table, align_right=(3, 5))
    )
    params = sum(p.numel() for p in model.module.parameters())
    print(f"{len(rows)} layers, {params:,} parameters, {total_units:,} units in layers with weights")
    return 0
