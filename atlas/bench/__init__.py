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
