"""Command-line options shared by several subcommands."""

from __future__ import annotations

import argparse

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
