"""`atlas convert-caffe CAFFEMODEL --spec SPEC --out FILE`: a released Caffe model as a state-dict file."""

from __future__ import annotations

import argparse

HELP = "Convert a Caffe .caffemodel (CaffeNet, the DeePSiM generators) into a state-dict file for a spec."
EXAMPLES = """examples:
  atlas convert-caffe bvlc_reference_caffenet.caffemodel --spec python:atlas.models.caffenet:caffenet \\
      --out weights/caffenet.pth
  atlas convert-caffe generator.caffemodel --spec deepsim:fc6 --out weights/upconv_fc6.pth
  # then in the config:  models: {target: {spec: ..., weights: weights/caffenet.pth}}
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("caffemodel", metavar="CAFFEMODEL", help="the .caffemodel file (binary NetParameter)")
    p.add_argument(
        "--spec",
        required=True,
        help="the model spec the weights are for, as a config names it: python:atlas.models.caffenet:"
        "caffenet, deepsim:fc6 / fc7 / fc8 / pool5, or your own python: module with Caffe's layer names",
    )
    p.add_argument("--out", metavar="FILE", required=True, help="the state-dict file to write (.pth)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from atlas.atomic import atomic_write, check_output_file
    from atlas.commands.layers import role_of_spec
    from atlas.errors import AtlasError
    from atlas.models import load_model
    from atlas.models.caffe_weights import read_caffemodel, state_dict_from_blobs

    source = Path(args.caffemodel).expanduser()
    if not source.is_file():
        raise AtlasError(f"CAFFEMODEL: {args.caffemodel!r} is not a file; give the path of a .caffemodel")
    out = check_output_file(args.out, "--out", {"CAFFEMODEL": source})
    role = role_of_spec(args.spec)
    module = load_model(args.spec, role, allow_random_weights=True, default_size=224).module  # its layout
    layers = read_caffemodel(source)
    state, used = state_dict_from_blobs(module, layers)
    module.load_state_dict(state, strict=True)  # the file it writes loads as the run will load it
    atomic_write(out, lambda tmp: torch.save(state, tmp))
    unused = [name for name in layers if name not in used]
    n_params = sum(p.numel() for p in module.parameters())
    print(
        f"wrote {args.out}: {n_params:,} parameters of {args.spec} from {len(used)} Caffe "
        f"layers of {source.name}" + (f" (left out: {', '.join(unused)})" if unused else "")
        + f"; set models.{role}: {{spec: {args.spec!r}, weights: {args.out}}}"
    )  # fmt: skip
    return 0
