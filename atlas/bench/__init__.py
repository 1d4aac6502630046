"""Benchmarks of the sampling engine: ``quality`` (fidelity on the toy world) and ``throughput`` (speed)."""

import math
from pathlib import Path
from typing import Any

REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"  # the checkout's configs (benches' defaults)


def _strict(value: Any) -> Any:
    """``value`` with every non-finite float as None: JSON has no NaN (strict parsers refuse Python's)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(v) for v in value]
    return value


def provenance(
    compute: Any = None, config: str | None = None, command: list[str] | None = None
) -> dict[str, Any]:
    """What a bench report needs to be read later (a user's trial could not tell which machine and
    precision made a quality figure): the command line, the config, the machine (CPU model and flags), the
    precision its chains ran in (``compute``'s autocast resolved on this device), the load and the code."""
    import sys
    from datetime import UTC, datetime

    from atlas.provenance import git_sha
    from atlas.sampling.compute import ComputeSetup, resolve_device
    from atlas.toyworld.machine import load_average, machine_info

    precision = None
    if compute is not None:
        precision = ComputeSetup.resolve(compute, resolve_device(compute.device)).precision
    return {
        "command": command or ["atlas", *sys.argv[1:]],
        "config": config,
        "precision": precision,
        "machine": machine_info(),
        "load_at_end": load_average(),
        "git_sha": git_sha(),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def write_json(path: str | None, report: dict) -> None:
    """``--json PATH``: the report as indented JSON, written whole or not at all (no path: nothing); a value
    that is no number (NaN, inf) is null."""
    if not path:
        return
    import json

    from atlas.atomic import atomic_write

    text = json.dumps(_strict(report), indent=2, default=str, allow_nan=False) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text))
    print(f"wrote {path}")
