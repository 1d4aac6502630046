"""`atlas bootstrap`: load (or train) the toy world, print its quality gates, exit 1 if one fails.

Components come from the cache, else from the weights shipped with atlas, else are trained;
``--retrain`` trains everything from scratch into the cache; ``--ship`` trains from scratch in a temporary
cache and, when the gates pass, writes the result as the package's shipped weights (for developers);
``--ship-reader`` does that for the attribute reader alone, adding it to the shipped folder.
"""

from __future__ import annotations

import argparse

from atlas.commands.options import add_toyworld_options, refuse_empty

EXAMPLES = """examples:
  atlas bootstrap                          # check the shipped default world's gates (seconds)
  atlas bootstrap --preset pairs           # the two-object world: trains here (~10 min on 2 cores)
  atlas bootstrap --preset pairs --members 4   # and four more targets for models.ensemble (~10 min each)
  atlas bootstrap --retrain --json gates.json
"""

HELP = (
    "Load the toy world's T, J, G, DAE and attribute reader (cache, else the shipped weights, else train "
    "them) and check the quality gates."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_toyworld_options(parser)
    parser.add_argument(
        "--json", metavar="PATH", help="also write the gate report as JSON to PATH (default: not written)"
    )
    parser.add_argument(
        "--retrain",
        action="store_true",
        help="train every component from scratch into the cache (ignores the cache and the shipped weights)",
    )
    parser.add_argument(
        "--members",
        type=members_count,
        default=0,
        metavar="N",
        help="also load (or train) N ensemble members, T trained again with other seeds (toyworld:target2 "
        "... target<N+1>, for models.ensemble; 0-8), each held to T's accuracy gate",
    )
    parser.add_argument(
        "--ship",
        action="store_true",
        help="developers: train from scratch in a temporary cache and, if the gates pass, write the result "
        "as the shipped weights under atlas/toyworld/weights/ (trains from scratch; takes no --cache-dir)",
    )
    parser.add_argument(
        "--ship-reader",
        action="store_true",
        help="developers: train only the attribute reader from scratch in a temporary cache and, if its "
        "gates pass, add it to the preset's shipped weights (T, J, G and the DAE stay as they are)",
    )


def members_count(text: str) -> int:
    """--members: 0-8 (``toyworld:target2`` ... ``target9``)."""
    from atlas.toyworld.presets import MEMBERS

    if not text.strip().isdigit() or int(text) > len(MEMBERS):
        raise argparse.ArgumentTypeError(f"expected a whole number from 0 to {len(MEMBERS)}, got {text!r}")
    return int(text)


def check_ship_flags(args: argparse.Namespace) -> None:
    """--ship and --ship-reader train in a temporary cache and write the package's weights: they take no
    --cache-dir or --retrain, and not each other (a one-line error instead of a flag silently ignored)."""
    from atlas.errors import AtlasError

    ship = [flag for flag, on in (("--ship", args.ship), ("--ship-reader", args.ship_reader)) if on]
    if ship and args.members:
        raise AtlasError(
            f"{ship[0]} writes the shipped weights, and ensemble members never ship; drop --members"
        )
    if len(ship) > 1:
        raise AtlasError(
            "--ship and --ship-reader exclude each other; --ship trains the whole world, "
            "--ship-reader only the attribute reader"
        )
    if ship and args.cache_dir:
        raise AtlasError(
            f"{ship[0]} trains in a temporary cache and writes atlas/toyworld/weights/, so --cache-dir does "
            "not apply; drop --cache-dir (or drop the flag to train into that cache)"
        )
    if ship and args.retrain:
        raise AtlasError(f"{ship[0]} already trains from scratch; drop --retrain")


def run(args: argparse.Namespace) -> int:
    import json

    from atlas.atomic import atomic_write, check_output_file, check_writable_dir
    from atlas.toyworld import bootstrap
    from atlas.toyworld.api import ship
    from atlas.toyworld.gates import format_table
    from atlas.toyworld.settings import resolve

    check_ship_flags(args)
    refuse_empty(args, "config", "cache_dir")
    inputs = {"--config": args.config} if args.config else None  # checked before any training
    json_out = None if args.json is None else check_output_file(args.json, "--json", inputs)
    if args.cache_dir:
        check_writable_dir(args.cache_dir, "--cache-dir")
    preset, cache_dir = resolve(args.preset, args.cache_dir, args.config)
    if args.ship_reader:
        from atlas.toyworld.api import ship_reader

        report = ship_reader(preset)
        shipped = report["shipped"]
        where = f"reader trained from scratch; shipped to {shipped}" if shipped else "NOT shipped"
        print(f"toy world {preset!r} ({where})")
    elif args.ship:
        report = ship(preset)
        shipped = report["shipped"]
        where = f"trained from scratch; shipped to {shipped}" if shipped else "a gate failed: NOT shipped"
        print(f"toy world {preset!r} ({where})")
    else:
        report = bootstrap(preset, cache_dir, retrain=args.retrain, members=args.members)
        print(f"toy world {preset!r} ({report['cache']})")
    print("weights: " + ", ".join(f"{k} {v}" for k, v in report["sources"].items()))
    print(format_table(report))
    if json_out is not None:
        atomic_write(json_out, lambda tmp: tmp.write_text(json.dumps(report, indent=2)))
    return 0 if report["passed"] else 1
