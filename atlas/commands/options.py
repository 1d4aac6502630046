"""Command-line options shared by several subcommands."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from atlas.toyworld.presets import PRESETS

if TYPE_CHECKING:
    from atlas.config import RunConfig


def add_overrides(p: argparse.ArgumentParser, example: str = "sampler.steps=50") -> None:
    """``--set KEY=VALUE`` (repeatable), collected in ``args.overrides``; ``example``: one that matters to
    the command."""
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"dotted config override, e.g. --set {example} (repeatable; default: none)",
    )


def load_command_config(args: argparse.Namespace) -> RunConfig:
    """The config a command's CONFIG file and ``--set`` options make; a ``--set KEY={...}`` that replaced
    a whole section holding other keys is said on stderr (``config_override_warnings``)."""
    from atlas.config import config_override_warnings, load_config

    cfg = load_config(args.config, args.overrides)
    for line in config_override_warnings(args.config, args.overrides):
        print(f"atlas: warning: {line}", file=sys.stderr)
    return cfg


MAX_INT = 2**63 - 1  # what torch, Arrow and Ray take as an integer


def int_in(minimum: int, maximum: int, unit: str = "") -> Callable[[str], int]:
    """argparse type: an integer in [minimum, maximum] (argparse's own one-line error otherwise)."""
    want = f"an integer from {minimum} to {maximum}" + (f" ({unit})" if unit else "")

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {want}") from None
        if not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(f"{value} is not {want}")
        return value

    parse.__name__ = "integer"
    return parse


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (and within int64, so it reaches torch and Arrow whole)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer; give one >= 1") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is below 1; give an integer >= 1")
    if value > MAX_INT:
        raise argparse.ArgumentTypeError(f"{value} is too large; give an integer from 1 to {MAX_INT}")
    return value


seed_number = int_in(0, 2**63 - 1)  # as the config's seed
port_number = int_in(1, 65535)


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
        "--config",
        metavar="FILE",
        help="YAML file whose `toyworld:` section (preset, cache_dir) is used (default: none, the options "
        "below)",
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


def _bind_error(host: str, port: int) -> OSError | None:
    """What binding ``host``:``port`` now raises (None: a server could listen there)."""
    import socket

    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            return exc
    return None


def free_port(host: str, port: int, tries: int = 100) -> int | None:
    """The first port after ``port`` a server could listen on now (past 65535: from 1024 on), else None."""
    start = max(port, 1023)  # below 1024 a user may not listen at all (EACCES), busy or not
    for step in range(1, tries + 1):
        candidate = start + step if start + step <= 65535 else 1023 + (start + step - 65535)
        if _bind_error(host, candidate) is None:
            return candidate
    return None


def check_listen(host: str, port: int) -> None:
    """A one-line error unless a server could listen on ``host``:``port`` now (checked before any work, so
    the viewer's address is never printed for a server that cannot start)."""
    import errno
    import socket

    from atlas.errors import AtlasError

    hint = "give 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)"
    if not host.strip():
        raise AtlasError(f"--host: empty; {hint}")
    try:
        exc = _bind_error(host, port)
    except (socket.gaierror, UnicodeError):
        raise AtlasError(f"--host {host!r}: no such address; {hint}") from None
    if exc is None:
        return
    if exc.errno == errno.EADDRINUSE:
        other = free_port(host, port)  # free now: the next port may be taken too (a second viewer)
        fix = f"e.g. --port {other} (free now)" if other else "no port of the next 100 is free"
        if other and os.environ.get("MAKELEVEL"):  # under `make demo`, whose command line takes PORT=
            fix += f"; with make: make demo PORT={other}"
        raise AtlasError(f"--port {port}: already in use on {host}; choose another, {fix}")
    if exc.errno == errno.EADDRNOTAVAIL:
        raise AtlasError(f"--host {host}: not an address of this machine; {hint}")
    raise AtlasError(f"--host {host} --port {port}: cannot listen there ({exc.strerror}); {hint}")


def refuse_empty(args: argparse.Namespace, *options: str) -> None:
    """A path option given as "" (``--config ''``) would mean its default (the default world, the
    default cache, the current directory) by accident: a one-line error naming it instead."""
    from atlas.errors import AtlasError

    for option in options:
        given = getattr(args, option, None)
        if given is not None and not str(given).strip():
            raise AtlasError(f"--{option.replace('_', '-')}: empty path; give a {option.replace('_', ' ')}")
