"""Run manifest (``run.json``), shard markers and atomic file writes.

Every file the store writes goes to a temporary name in the same directory, is flushed and fsynced,
then moved into place with ``os.replace``: a reader (or a rerun after a crash) sees either the old
file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from atlas.errors import AtlasError

RUN_FILE = "run.json"
SUMMARY_FILE = "summary.json"
SHARDS_DIR = "_shards"
MARKER_SUFFIX = ".done"

# shard ids and layer names become file/directory names: keep them boring
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def check_name(kind: str, name: str) -> str:
    """Return ``name`` if it is safe as a file/partition name, else raise ``ValueError``."""
    if not isinstance(name, str) or not _SAFE_NAME.match(name) or ".." in name:
        raise ValueError(f"{kind} {name!r} is not a safe file name (letters, digits, '._+-' only)")
    return name


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write ``path`` via ``.<name>.tmp`` in the same directory, fsync, then ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    """Atomically write ``data`` as indented JSON (non-JSON values are stringified)."""
    payload = (json.dumps(data, indent=2, sort_keys=False, default=str) + "\n").encode()
    atomic_write(path, lambda fh: fh.write(payload))


def read_json(path: Path) -> Any:
    """Read a JSON file written by :func:`write_json`; a corrupt file is an :class:`AtlasError`."""
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise AtlasError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})") from exc


def read_manifest(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The run's ``run.json``; a missing directory or manifest is an :class:`AtlasError`."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise AtlasError(f"run directory {run_dir} does not exist")
    path = run_dir / RUN_FILE
    if not path.is_file():
        raise AtlasError(f"{run_dir} is not an atlas run (no {RUN_FILE}); pass a directory made by atlas run")
    data = read_json(path)
    if not isinstance(data, dict):
        raise AtlasError(f"{path} does not hold a JSON object")
    return data


def read_markers(run_dir: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Completion markers of a run: shard id -> marker content (layer, row counts, time, meta)."""
    shards_dir = Path(run_dir) / SHARDS_DIR
    out: dict[str, dict[str, Any]] = {}
    if not shards_dir.is_dir():
        return out
    for path in sorted(shards_dir.glob(f"*{MARKER_SUFFIX}")):
        if path.name.startswith("."):
            continue
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            data = {}
        out[path.name[: -len(MARKER_SUFFIX)]] = data if isinstance(data, dict) else {}
    return out


def list_runs(parent: str | os.PathLike[str]) -> list[Path]:
    """Run directories directly under ``parent`` (subdirectories holding a ``run.json``), sorted."""
    parent = Path(parent)
    if not parent.is_dir():
        return []
    return sorted(p for p in parent.iterdir() if p.is_dir() and (p / RUN_FILE).is_file())
