"""Benchmarks of the sampling engine: ``quality`` (fidelity on the toy world) and ``throughput`` (speed)."""

from pathlib import Path

REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"  # the checkout's configs (benches' defaults)


def write_json(path: str | None, report: dict) -> None:
    """``--json PATH``: the report as indented JSON, written whole or not at all (no path: nothing)."""
    if not path:
        return
    import json

    from atlas.atomic import atomic_write

    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(report, indent=2, default=str) + "\n"))
    print(f"wrote {path}")
