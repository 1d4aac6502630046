"""`atlas bootstrap`: train the toy world (what is missing), print its quality gates, exit 1 if one fails."""

from __future__ import annotations

import argparse

from atlas.commands.options import add_toyworld_options

HELP = "Train the toy world's T, J, G and DAE (whatever is missing) and check the quality gates."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_toyworld_options(parser)
    parser.add_argument("--json", metavar="PATH", help="also write the gate report as JSON to PATH")
    parser.add_argument("--retrain", action="store_true", help="retrain every component, ignoring the cache")


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from atlas.toyworld import bootstrap
    from atlas.toyworld.gates import format_table
    from atlas.toyworld.settings import resolve

    preset, cache_dir = resolve(args.preset, args.cache_dir, args.config)
    report = bootstrap(preset, cache_dir, retrain=args.retrain)
    print(f"toy world {preset!r} ({report['cache']})")
    print(format_table(report))
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2))
    return 0 if report["passed"] else 1
