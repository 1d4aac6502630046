"""Command-line options shared by several subcommands."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from atlas.toyworld.presets import PRESETS


def add_overrides(p: argparse.ArgumentParser) -> None:
    """``--set KEY=VALUE`` (repeatable), collected in ``args.overrides``."""
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dotted config override, e.g. --set sampler.steps=50 (repeatable)",
    )


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (argparse's own one-line error otherwise)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer; give one >= 1") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is below 1; give an integer >= 1")
    return value


def positive_number(maximum: float = math.inf, unit: str = "") -> Callable[[str], float]:
    """argparse type: a finite number > 0 (and <= ``maximum``); ``unit`` names it in the error."""
    want = "a finite number" + (f" of {unit}" if unit else "") + " > 0"
    want += f" and <= {maximum:g}" if math.isfinite(maximum) else ""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and 0 < value <= maximum):
            raise argparse.ArgumentTypeError(f"{text} is not {want}")
        return value

    parse.__name__ = "number"
    return parse


positive_float = positive_number()


def add_toyworld_options(p: argparse.ArgumentParser) -> None:
    """``--config``, ``--preset``, ``--cache-dir``: which toy world (resolved by atlas.toyworld)."""
    p.add_argument(
        "--config", metavar="FILE", help="YAML file whose `toyworld:` section (preset, cache_dir) is used"
    )
    p.add_argument(
        "--preset",
        choices=list(PRESETS),
        default=None,
        help="toy-world preset (default: from --config, else 'default')",
    )
    p.add_argument(
        "--cache-dir",
        metavar="DIR",
        default=None,
        help="cache directory (default: $ATLAS_CACHE or ~/.cache/atlas)",
    )
