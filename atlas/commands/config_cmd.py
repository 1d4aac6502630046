"""`atlas config [FILE]`: validate a config (with --set overrides) and print it, or list every key."""

from __future__ import annotations

import argparse

from atlas.commands.options import add_overrides

HELP = "Validate a run config and print the resolved values, or list all keys with docs (no FILE)."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", help="YAML run config (omit to list every key with its doc)")
    add_overrides(p)


def run(args: argparse.Namespace) -> int:
    import yaml

    from atlas.config import describe_fields, load_config
    from atlas.tables import format_table

    if not args.config:
        print(format_table(["key", "type", "default", "doc"], describe_fields()))
        return 0
    cfg = load_config(args.config, args.overrides)
    print(yaml.safe_dump(cfg.to_dict(), sort_keys=False).rstrip())
    return 0
