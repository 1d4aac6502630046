"""`atlas run CONFIG`: build (or resume) the atlas a config describes, on local Ray or a cluster."""

from __future__ import annotations

import argparse

from atlas.commands.options import add_overrides

HELP = "Build the atlas for a config on Ray (local instance, --address, or under `ray job submit`)."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="YAML run config, e.g. configs/demo.yaml")
    add_overrides(p)
    p.add_argument("--address", help="Ray address to join (default: RAY_ADDRESS, else a local instance)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from atlas.config import load_config
    from atlas.pipeline.driver import format_summary, run_atlas

    cfg = load_config(args.config, args.overrides)
    summary = run_atlas(cfg, address=args.address or cfg.ray.address, progress=not args.no_progress)
    print(format_summary(summary))
    return 0 if summary["errors"] == 0 else 1
