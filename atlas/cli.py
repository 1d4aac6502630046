"""The ``atlas`` command.

Each subcommand lives in ``atlas/commands/<name>.py`` and exposes ``HELP``, ``add_arguments(parser)``
and ``run(args) -> int``. Command modules import only argparse at module level, so ``atlas --help``
is instant; heavy imports (torch, ray, duckdb) happen inside ``run``.

User errors (:class:`atlas.errors.AtlasError`) print one line, ``atlas: error: ...``, and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# subcommand -> module under atlas.commands (explicit table; no dynamic discovery)
COMMANDS: dict[str, str] = {
    "bootstrap": "bootstrap",
    "toyworld": "toyworld",
    "layers": "layers",
    "run": "run",
    "sql": "sql",
    "verify": "verify",
    "view": "view",
    "bench": "bench",
    "code-stats": "code_stats",
    "train-dae": "train_dae",
    "config": "config_cmd",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="atlas",
        description="Atlas of preferred images for every unit of an image network (DGN-AM / PPGN-h).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f"atlas.commands.{module_name}")
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from atlas.errors import AtlasError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args._run(args)
    except AtlasError as exc:
        print(f"atlas: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `atlas config | head`
        sys.stderr.close()
        return 0
    except OSError as exc:  # read-only or full disk, a file where a directory should be, ...
        where = f" {exc.filename}" if exc.filename else ""
        print(f"atlas: error:{where}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("atlas: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
