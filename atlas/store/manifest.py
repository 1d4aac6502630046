"""Run manifest (``run.json``), shard markers and atomic file writes.

Every file goes through :class:`atlas.store.location.Location`, which writes whole objects (a temporary
name + ``os.replace`` on local disks, one completed upload on object stores): a reader (or a rerun after a
crash) sees either the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from atlas.config import FILE_NAME
from atlas.errors import AtlasError, some
from atlas.store.location import FileEntry, Location, open_location

RUN_FILE = "run.json"
SUMMARY_FILE = "summary.json"
SHARDS_DIR = "_shards"
MARKER_SUFFIX = ".done"
ATTEMPT_SEP = "~"  # shard-<id>~<attempt>.parquet: no shard id holds a '~' (check_name)

# shard ids and layer names become file/directory names: keep them boring
_SAFE_NAME = FILE_NAME


def check_name(kind: str, name: str) -> str:
    """Return ``name`` if it is safe as a file/partition name, else raise ``ValueError``."""
    if not isinstance(name, str) or not _SAFE_NAME.match(name) or ".." in name:
        raise ValueError(
            f"{kind} {name!r} is not a safe file name (letters, digits, '._+-' only, not first '.+-')"
        )
    return name


def _loads(data: bytes, where: str) -> Any:
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        msg = getattr(exc, "msg", str(exc))
        fix = f"; {DAMAGED_RUN_JSON_FIX}" if where.endswith("run.json") else ""
        raise AtlasError(f"{where} is not valid JSON ({msg}){fix}") from None


def write_json(loc: Location, rel: str, data: Any) -> None:
    """Write ``data`` as indented JSON to ``rel`` under ``loc``, whole or not at all."""
    payload = (json.dumps(data, indent=2, sort_keys=False, default=str) + "\n").encode()
    loc.write_bytes(rel, payload)


def read_json(loc: Location, rel: str) -> Any:
    """Read a JSON file written by :func:`write_json`; a corrupt file is an :class:`AtlasError`."""
    return _loads(loc.read_bytes(rel), loc.display(rel))


DAMAGED_RUN_JSON_FIX = (
    "remove run.json and rerun the same command (the finished shards are taken up again), or use a new run "
    "name"
)
# the keys resume and the readers use, and their JSON types
_MANIFEST_TYPES = {"config": dict, "config_hash": str, "fingerprints": dict}


def manifest_problem(data: Any) -> str | None:
    """What is wrong with a ``run.json``'s content (not an object, a key of the wrong type), or None."""
    if not isinstance(data, dict):
        kind = {list: "list", str: "string", bool: "boolean", int: "number", float: "number"}.get(type(data))
        return f"it holds a JSON {kind or 'null'}, not an object"
    for key, kind in _MANIFEST_TYPES.items():
        value = data.get(key)
        if key in ("config", "config_hash") and value is None:
            return f"it has no {key!r}"
        if value is not None and not isinstance(value, kind):
            kind_name = "object" if kind is dict else "string"
            return f"its {key!r} is {json.dumps(value)[:40]}, not a JSON {kind_name}"
    return None


def read_run_json(loc: Location) -> dict[str, Any]:
    """``run.json`` under ``loc`` (which must hold one), checked by :func:`manifest_problem`: a damaged one is
    one line naming what is wrong and the fix."""
    data = read_json(loc, RUN_FILE)
    problem = manifest_problem(data)
    if problem:
        raise AtlasError(f"{loc.display(RUN_FILE)} is damaged: {problem}; {DAMAGED_RUN_JSON_FIX}")
    return data


def read_manifest(run: str | os.PathLike[str] | Location) -> dict[str, Any]:
    """The run's ``run.json``; a missing run or manifest is an :class:`AtlasError`."""
    loc = open_location(run)
    if not loc.is_file(RUN_FILE):
        if loc.is_file(""):
            raise AtlasError(f"{loc.display()} is a file, not a run; pass the run's folder (out_dir/name)")
        if not loc.is_dir():
            raise AtlasError(
                f"run {loc.display()} does not exist; pass a run's folder (out_dir/name, e.g. runs/demo) "
                "that atlas run made"
            )
        inside = [run.name for run in list_runs(loc)]
        if inside:
            raise AtlasError(
                f"{loc.display()} is a folder of runs ({some(inside)}), not a run; pass one of them, e.g. "
                f"{loc.child(inside[0]).display()}"
            )
        raise AtlasError(no_run_here(loc))
    data = read_run_json(loc)
    check_schema(loc, data)
    return data


def check_schema(loc: Location, manifest: dict[str, Any]) -> None:
    """Refuse, in one line, a run whose run.json was written with a newer schema than this atlas reads."""
    newer = newer_schema(manifest)
    if newer is not None:
        raise AtlasError(f"run {loc.display()} was written by a newer atlas ({newer}); upgrade atlas")


def newer_schema(record: dict[str, Any]) -> str | None:
    """ "schema version 2; this atlas reads up to 1" when ``record`` (run.json or a shard marker) was written
    with a schema newer than this atlas's; None when it reads it."""
    from atlas.store.schema import SCHEMA_VERSION

    version = record.get("schema_version", 0)
    if isinstance(version, bool) or not isinstance(version, int):  # damage, not a newer atlas: not ours
        return None  # to judge here (readers check the fields they need)
    if version <= SCHEMA_VERSION:
        return None
    return f"schema version {version}; this atlas reads up to {SCHEMA_VERSION}"


def shard_rel(table: str, layer: str, shard_id: str, attempt: str | None = None) -> str:
    """Path of one table's file for one shard, relative to the run. ``attempt`` tags the writing attempt,
    so two attempts at one shard (a restarted actor while the old one still writes) never share a file;
    None gives the one name a shard's file had in runs written before attempts were tagged."""
    tag = f"{ATTEMPT_SEP}{attempt}" if attempt else ""
    return f"{table}/layer={layer}/shard-{shard_id}{tag}.parquet"


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _inside_run(rel: Any, table: Any, layer: str) -> bool:
    """A marker's file path: relative to the run and inside its table's partition (never ``..``)."""
    if not isinstance(rel, str) or not isinstance(table, str):
        return False
    parts = rel.split("/")
    return len(parts) == 3 and parts[:2] == [table, f"layer={layer}"] and parts[2] not in ("", ".", "..")


def marker_readable(marker: dict[str, Any]) -> bool:
    """Does a marker (as :func:`read_markers` returns it) hold what readers take from it, each field of its
    type: the layer, row counts (integers >= 0), the unit range ``[lo, hi]``, the time, and files inside
    the run? Any reader treats another marker as damage (``atlas verify --repair`` removes it)."""
    rows, layer, units = marker.get("rows"), marker.get("layer"), marker.get("units")
    if not isinstance(layer, str) or not isinstance(rows, dict) or not all(map(_count, rows.values())):
        return False
    if units is not None and not (isinstance(units, list) and len(units) == 2 and all(map(_count, units))):
        return False
    when = marker.get("time")
    if when is not None and (isinstance(when, bool) or not isinstance(when, int | float)):
        return False
    files = marker.get("files")
    return files is None or (
        isinstance(files, dict) and all(_inside_run(rel, t, layer) for t, rel in files.items())
    )


def file_rel(path: str) -> str:
    """A shard file's path inside the filesystem -> its path relative to the run, as markers name it:
    ``<table>/layer=<name>/<file>``."""
    return "/".join(path.rsplit("/", 3)[-3:])


def marker_files(shard_id: str, marker: dict[str, Any]) -> dict[str, str]:
    """table -> path (relative to the run) of each file a completed shard's marker vouches for: those it
    names (``files``: the tables of the attempt that wrote the marker, all from that one attempt), or in
    a marker of an older run the untagged name of each table it counted rows of; {} if unreadable."""
    files = marker.get("files")
    if isinstance(files, dict):
        return {t: rel for t, rel in files.items() if isinstance(t, str) and isinstance(rel, str)}
    if not marker_readable(marker):
        return {}
    rows, layer = marker["rows"], marker["layer"]
    return {t: shard_rel(t, layer, shard_id) for t, n in rows.items() if isinstance(n, int) and n > 0}


def shard_of_file(name: str) -> str:
    """A shard file's base name -> its shard id: ``shard-<id>[~<attempt>].parquet`` -> ``<id>``."""
    return name.removeprefix("shard-").removesuffix(".parquet").partition(ATTEMPT_SEP)[0]


def unmarked_shards(manifest: dict[str, Any], markers: dict[str, Any]) -> int:
    """How many planned shards of a run that says it is complete have no marker (0 for a run not yet
    complete, or a run.json without a usable ``planned_shards``)."""
    planned = manifest.get("planned_shards")
    if manifest.get("status") != "complete" or not isinstance(planned, int) or isinstance(planned, bool):
        return 0
    return max(0, planned - len(markers))


def read_markers(run: str | os.PathLike[str] | Location) -> dict[str, dict[str, Any]]:
    """Completion markers of a run: shard id -> marker content (layer, row counts, time, meta).

    Markers are read in parallel (on an object store each is one GET). A marker that is not JSON reads as
    ``{}`` (readers refuse the run as damaged; ``verify --repair`` removes it), one gone since the listing
    is left out, and one that cannot be read (a failed GET) is an AtlasError, not a shard quietly missing."""
    loc = open_location(run)
    entries = loc.list_files(SHARDS_DIR, suffix=MARKER_SUFFIX)

    def load(entry: FileEntry) -> dict[str, Any] | None:
        try:
            data = json.loads(loc.read_bytes(f"{SHARDS_DIR}/{entry.name}"))
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, UnicodeDecodeError):
            data = {}
        return data if isinstance(data, dict) else {}

    if len(entries) > 8 and not loc.local:
        with ThreadPoolExecutor(max_workers=16) as pool:
            contents = list(pool.map(load, entries))
    else:
        contents = [load(e) for e in entries]
    return {e.name[: -len(MARKER_SUFFIX)]: c for e, c in zip(entries, contents, strict=True) if c is not None}


def no_run_here(loc: Location) -> str:
    """Why folder ``loc`` (neither a run nor a folder of runs) is no run, and what to pass instead: a run
    whose run.json was lost (its shards' markers are there), or runs deeper down (``runs/`` of a project)."""
    if loc.list_files(SHARDS_DIR, suffix=MARKER_SUFFIX, limit=1):
        return (
            f"{loc.display()} holds completed shards but no {RUN_FILE} (lost or deleted); the same "
            "`atlas run` that made it writes it again (its shards are kept), or restore the file"
        )
    for name in loc.list_dirs():
        runs = [] if name.startswith((".", "_")) else list_runs(loc.child(name))
        if runs:
            return (
                f"{loc.display()} holds no atlas run, but {loc.child(name).display()} holds runs "
                f"({some([r.name for r in runs])}); pass one of them, e.g. {runs[0].display()} (atlas view "
                "takes their folder too)"
            )
    return (
        f"{loc.display()} is not an atlas run (no {RUN_FILE} in it or in the folders below it); pass a run "
        "made by atlas run"
    )


def list_runs(parent: str | os.PathLike[str] | Location) -> list[Location]:
    """Runs directly under ``parent`` (sub-directories holding a ``run.json``), sorted by name."""
    loc = open_location(parent)
    return [loc.child(name) for name in loc.list_dirs() if loc.child(name).is_file(RUN_FILE)]
