"""What `atlas code-stats` and `atlas train-dae` share: their input options, and the codes of ``--images``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from atlas.commands.options import add_overrides, positive_int
from atlas.errors import AtlasError

if TYPE_CHECKING:
    import torch  # the commands' options load without torch (a quick `atlas --help`)


def add_code_input_arguments(p: argparse.ArgumentParser, out_help: str) -> None:
    """``--config``, ``--images``, ``--out``, ``--limit`` and ``--set``."""
    p.add_argument(
        "--config",
        required=True,
        help="run config naming the generator, models.code_layer and the network it belongs to "
        "(models.encoder, else the target)",
    )
    p.add_argument("--images", required=True, help="folder of real images (searched recursively)")
    p.add_argument("--out", required=True, metavar="FILE", help=out_help)
    p.add_argument(
        "--limit",
        type=positive_int,
        metavar="N",
        help="use N of the images, evenly spaced through the sorted files (default: all)",
    )
    add_overrides(p, "models.target.weights=my_net.pth")


def command_codes(
    args: argparse.Namespace, minimum: int, purpose: str
) -> tuple[Path, torch.Tensor, tuple[str, str]]:
    """What `atlas code-stats` and `atlas train-dae` start with: the config loaded, ``--out`` checked (not one
    of the inputs), and the codes of ``--images`` (at least ``minimum``, else a one-line error naming
    ``purpose``). Returns (the output path, codes (N, *code shape), (the network's spec, its code layer))."""
    from atlas.atomic import check_output_file
    from atlas.commands.options import load_command_config
    from atlas.real_codes import real_codes
    from atlas.sampling.real import IMAGE_SUFFIXES

    cfg = load_command_config(args)
    inputs = {"--config": args.config, "--images": args.images}
    out = check_output_file(args.out, "--out", inputs, reads=IMAGE_SUFFIXES)
    if args.limit is not None and args.limit < minimum:  # before any image is read
        raise AtlasError(f"--limit {args.limit} keeps too few images; {purpose}")
    codes, layer = real_codes(cfg, args.images, args.limit, minimum=(minimum, purpose))
    if len(codes) < minimum:
        raise AtlasError(f"--images: only {len(codes)} image(s) in {args.images!r}; {purpose}")
    network = (cfg.models.encoder or cfg.models.target).spec  # type: ignore[union-attr]
    return out, codes, (network, layer)  # which network's codes: the file says it
