"""`atlas code-stats`: per-dimension code statistics (DGN-AM's clip bounds) from a folder of real images."""

from __future__ import annotations

import argparse
import sys

from atlas.commands.code_input import add_code_input_arguments
from atlas.commands.options import positive_float

HELP = "Compute the code mean and per-dimension bounds (mean + 3 std) from a folder of real images."
EXAMPLES = """example:
  atlas code-stats --config configs/alexnet-deepsim.yaml --images ~/imagenet-val --out weights/fc6_stats.pt
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_code_input_arguments(p, "output file, e.g. weights/fc6_stats.pt (set as models.code_stats)")
    p.add_argument(
        "--sigmas", type=positive_float, default=3.0, help="upper bound = mean + SIGMAS * std (as DGN-AM)"
    )


FEW_CODES = 100  # fewer images give rough per-dimension bounds: said, not refused


def run(args: argparse.Namespace) -> int:
    from atlas.commands.code_input import command_codes
    from atlas.errors import AtlasError
    from atlas.models.codes import CodeStats

    out, codes, (network, layer) = command_codes(
        args, 2, "a standard deviation needs at least 2 (hundreds for useful bounds)"
    )
    source = f"{network}'s {layer} of {len(codes)} images in {args.images}"
    stats = CodeStats.from_codes(codes, source=source, sigmas=args.sigmas, read_from=(network, layer))
    problem = stats.problem()
    if problem:  # e.g. non-finite codes: the file would be refused when a run loads it
        raise AtlasError(f"--images: the codes of {args.images!r} give statistics that {problem}")
    if len(codes) < FEW_CODES:  # written (a quick try is fine), but not taken for useful bounds
        print(
            f"atlas: warning: --images: statistics of {len(codes)} images are rough (a per-dimension "
            f"standard deviation wants hundreds); use {FEW_CODES} or more for bounds a run should rely on",
            file=sys.stderr,
        )
    stats.save(out)
    up = stats.upper.flatten()
    print(
        f"wrote {args.out}: {codes.shape[0]} codes of shape {tuple(codes.shape[1:])}; upper bound mean "
        f"{up.mean():.3g} (range {up.min():.3g}-{up.max():.3g}); set models.code_stats: {args.out}"
    )
    return 0
