"""Atomic, idempotent shard writer for one run (a local directory or an object-store prefix).

Usage (driver, then each worker)::

    store = RunStore("runs/demo")               # or RunStore("s3://bucket/atlas/demo")
    store.init_run({"config": cfg, "config_hash": h, "fingerprints": ..., "versions": ..., "git_sha": ...,
                    "created": "...", "planned_shards": 12})
    done = store.completed_shards()                       # skip these on resume
    store.write_shard("fc8-0003", "fc8", {"units": [...], "chains": [...], "images": [...]})
    store.finalize({"units": 10, "wall_s": 93.1})

Layout::

    <run_dir>/run.json
    <run_dir>/<table>/layer=<layer>/shard-<id>~<attempt>.parquet  (whole or not at all: atlas.store.location)
    <run_dir>/_shards/<id>.done   (written last: a shard is complete iff it exists; it names its files)

Each attempt at a shard writes its tables under its own random tag and then the marker, which names
those files: readers take a shard's tables only from the marker, so they always come from one attempt,
even when two attempts at one shard overlap (an actor Ray restarts while the old one still writes), and a
shard killed half-way leaves no marker and is simply run again. Files no marker names (a dead or
outvoted attempt's) are removed when the run finishes (:meth:`RunStore.finalize`). Runs written before
attempts were tagged (``shard-<id>.parquet``, markers without ``files``) read as before. Each Parquet
file is serialized in memory and written with one call, which on S3/GCS is one upload that appears whole.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from atlas.config import UnitSelection, layer_entries, layer_extension
from atlas.errors import AtlasError, some
from atlas.store.location import Location, open_location
from atlas.store.manifest import (
    MARKER_SUFFIX,
    RUN_FILE,
    SHARDS_DIR,
    SUMMARY_FILE,
    check_name,
    check_schema,
    file_rel,
    marker_files,
    marker_readable,
    read_json,
    read_markers,
    read_run_json,
    shard_of_file,
    shard_rel,
    write_json,
)
from atlas.store.schema import SCHEMA_VERSION, TABLES, UNCOMPRESSED_COLUMNS, to_table

# rows per Parquet row group: small for images so a unit lookup reads little besides its own PNGs
ROW_GROUP_ROWS = {"images": 256, "activations": 1024}
DEFAULT_ROW_GROUP_ROWS = 16384

REQUIRED_MANIFEST_KEYS = ("config", "config_hash")
RUN_ENTRIES = frozenset({RUN_FILE, SUMMARY_FILE, *TABLES})  # besides "_"- and "."-prefixed ones


def resume_problem(
    existing: Mapping[str, Any],
    new: Mapping[str, Any],
    allow_code_change: bool = False,
    computes: bool = True,
) -> str | None:
    """Why a run with manifest ``existing`` cannot be resumed under ``new`` (same config hash), or None:
    the hash covers the config's text, not what its paths point at, and other weights behind the same
    path, or other source of the user's own network code (``code``: its files' sha256; unless
    ``allow_code_change``), would mix two networks in one run (``fingerprints``)."""
    precision = _autocast_change(existing, new) if computes else None  # a complete run computes nothing
    if precision:
        return precision
    for role, old, now in _differing(existing, new, "fingerprint"):
        return (
            f"was made with other {role} weights ({old.get('weights')}: fingerprint "
            f"{old['fingerprint']}, now {now['fingerprint']}); results of two networks must not mix: "
            "use a new run name (--set name=...) or remove the run"
        )
    for role, old, now in [] if allow_code_change else _differing(existing, new, "code"):
        files = ", ".join(str(f) for f in now.get("code_files") or old.get("code_files") or [])
        return (
            f"was made by other code of its {role} ({files} changed since: code fingerprint "
            f"{old['code']}, now {now['code']}); results of two networks must not mix: restore that "
            "code, or use a new run name (--set name=...); if the change leaves what the network "
            "computes as it was (a comment, a fix for units that failed), resume with "
            "`atlas run CONFIG --allow-code-change`"
        )
    return None


def _autocast_change(existing: Mapping[str, Any], new: Mapping[str, Any]) -> str | None:
    """``compute.autocast`` set otherwise than the run was made with: the compute section is left out of
    the config hash (batch size, device: where and how fast), but precision changes what a chain draws,
    and one run would hold shards of two precisions (a user's trial: 15 float32 shards beside 6 bf16)."""

    def autocast(manifest: Mapping[str, Any]) -> Any:
        compute = (manifest.get("config") or {}).get("compute")
        return compute.get("autocast") if isinstance(compute, Mapping) else None

    old, now = autocast(existing), autocast(new)
    if old is None or now is None or old == now:  # an older run.json that does not record it
        return None
    return (
        f"was made with compute.autocast: {old}, and this config says {now}: its shards would be computed "
        f"in two precisions; resume with --set compute.autocast={old}, or use a new run name "
        "(--set name=...)"
    )


def run_growth(existing: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[list[str], list[str], list[str]]:
    """How manifest ``new`` grows the run of manifest ``existing``: (what it adds, as ``layer conv4`` and
    ``8 more units of fc8``; the config keys that differ otherwise; the run's layers it leaves out), from
    :func:`atlas.config.layer_extension`. A layer's units grew when ``new``'s ``unit_groups`` for it
    start with the run's and add more (:func:`atlas.pipeline.plan.unit_groups`): its held shards keep
    their cut. It extends the run when it adds something and the other two lists are empty."""
    old_groups, new_groups = existing.get("unit_groups") or {}, new.get("unit_groups") or {}
    grown = {}
    for layer, held in old_groups.items():
        now = new_groups.get(layer)
        if (
            isinstance(held, list)
            and isinstance(now, list)
            and len(now) > len(held)
            and now[: len(held)] == held
        ):
            grown[layer] = sum(len(group) for group in now[len(held) :])
    added, changed, left_out = layer_extension(existing.get("config") or {}, new.get("config") or {}, grown)
    more = [f"{n} more unit{'' if n == 1 else 's'} of {layer}" for layer, n in grown.items()]
    return [f"layer {name}" for name in added] + more, changed, left_out


def _what_differs(keys: list[str], left_out: list[str], held: Any = None, given: Any = None) -> str:
    """``sampler.steps differs: the run's 100, this config's 50; layer conv3 left out``
    (:func:`atlas.config.layer_extension`'s lists; one differing key's values from the configs ``held`` and
    ``given``, when short: what a re-run of the run's first command, after it grew, must say instead)."""
    parts = [f"{some(keys, 6)} {'differs' if len(keys) == 1 else 'differ'}"] if keys else []
    if len(keys) == 1:
        old, new = (
            _shown(_held_value(held, given, keys[0]), keys[0]),
            _shown(_dotted(given, keys[0]), keys[0]),
        )
        if old is not None and new is not None and len(old + new) <= 80:
            parts[0] += f": the run's {old}, this config's {new}"
    if left_out:
        parts.append(f"layer{'s' if len(left_out) > 1 else ''} {some(left_out, 6)} left out")
    return "; ".join(parts)


_MISSING = object()


def _held_value(held: Any, given: Any, key: str) -> Any:
    """The run's value of ``key``, a key of the new config: a layer's key (``layers.0.units``) names the new
    config's position, so the run's entry is the layer of that name wherever the run lists it."""
    parts = key.split(".", 2)
    if parts[0] != "layers" or len(parts) < 3 or not parts[1].isdigit():
        return _dotted(held, key)
    entry = _dotted(given, f"layers.{parts[1]}")
    name = entry.get("name") if isinstance(entry, Mapping) else None
    runs = layer_entries(held) if isinstance(held, Mapping) and name is not None else {}
    return _dotted(runs[str(name)], parts[2]) if str(name) in runs else _MISSING


def _dotted(config: Any, key: str) -> Any:
    """The value at dotted ``key`` (``layers.1.units``) of a config dict, or ``_MISSING``."""
    node = config
    for part in key.split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node


def _shown(value: Any, key: str) -> str | None:
    """A config value as a user writes it (``0-7``, ``100``, ``[1, 2]``, ``null``; a unit list as ranges),
    None when missing."""
    if value is _MISSING:
        return None
    if key.endswith(".units"):
        try:
            return str(UnitSelection.parse(value, key).compact(merge=True))
        except AtlasError:  # not a selection this atlas reads: shown as it is
            pass
    return value if isinstance(value, str) else json.dumps(value)


def code_changes(existing: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """The networks whose own code's fingerprint differs between two manifests (``role: files``)."""
    return [
        f"{role}: {', '.join(str(f) for f in now.get('code_files') or [])}"
        for role, _old, now in _differing(existing, new, "code")
    ]


def _differing(
    existing: Mapping[str, Any], new: Mapping[str, Any], key: str
) -> list[tuple[str, Mapping[str, Any], Mapping[str, Any]]]:
    """(role, its entry then, now) of the networks whose ``fingerprints`` entries both record ``key``, with
    other values (a network or a key one manifest lacks is not compared: an older run.json)."""
    old_prints, new_prints = _by_role(existing), _by_role(new)
    out = []
    for role, old in old_prints.items():
        now = new_prints.get(role)
        if not (isinstance(old, Mapping) and isinstance(now, Mapping)):
            continue
        if old.get(key) and now.get(key) and old[key] != now[key]:
            out.append((role, old, now))
    return out


def _by_role(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """A manifest's ``fingerprints`` by role, a list's entries (``ensemble``) as ``ensemble[0]``, ..."""
    prints = manifest.get("fingerprints") or {}
    out: dict[str, Any] = {}
    for role, entry in prints.items() if isinstance(prints, Mapping) else ():
        if isinstance(entry, list):
            out.update({f"{role}[{i}]": e for i, e in enumerate(entry)})
        else:
            out[role] = entry
    return out


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def parquet_bytes(table: pa.Table, *, extra_metadata: Mapping[str, str] | None = None) -> bytes:
    """``table`` as a Parquet file in memory (zstd; PNG bytes uncompressed; schema metadata kept)."""
    metadata = dict(table.schema.metadata or {})
    for key, value in (extra_metadata or {}).items():
        metadata[key.encode()] = str(value).encode()
    table = table.replace_schema_metadata(metadata)
    name = metadata.get(b"atlas.table", b"").decode()
    compression = {col: ("none" if col in UNCOMPRESSED_COLUMNS else "zstd") for col in table.column_names}
    use_dictionary = [c for c in table.column_names if c not in UNCOMPRESSED_COLUMNS]
    sink = pa.BufferOutputStream()
    pq.write_table(
        table,
        sink,
        compression=compression,
        use_dictionary=use_dictionary,
        row_group_size=ROW_GROUP_ROWS.get(name, DEFAULT_ROW_GROUP_ROWS),
        write_statistics=True,
        write_page_checksum=True,  # CRC per page: `atlas verify --deep` finds damaged bytes
    )
    return sink.getvalue().to_pybytes()


class RunStore:
    """Writes one run; safe to use from many worker processes on many nodes (one shard id each)."""

    def __init__(self, run: str | os.PathLike[str] | Location) -> None:
        self.loc = open_location(run)

    @property
    def uri(self) -> str:
        return self.loc.uri

    # ---- run manifest -------------------------------------------------------------------------
    def manifest(self) -> dict[str, Any] | None:
        """The current ``run.json`` content, or None before :meth:`init_run`."""
        return read_run_json(self.loc) if self.loc.is_file(RUN_FILE) else None

    def check_own_folder(self) -> None:
        """Refuse a run folder that holds files no atlas run writes and no run.json (``out_dir=.`` with
        a name that is an existing folder of pictures, say): the run would write among them and sweep it.
        A run's own names: run.json, summary.json, the tables' folders and ``_``/``.``-prefixed entries."""
        self._check_not_inside_a_run()
        if not self.loc.is_dir() or self.loc.is_file(RUN_FILE):
            return
        names = [entry.name for entry in self.loc.list_files()] + self.loc.list_dirs()
        foreign = sorted(n for n in names if n not in RUN_ENTRIES and not n.startswith(("_", ".")))
        if foreign:
            raise AtlasError(
                f"{self.loc.display()} holds files no atlas run writes ({some(foreign, 3, quoted=True)}) and "
                "no run.json; give the run a folder of its own: another name (--set name=...) or out_dir"
            )

    def _check_not_inside_a_run(self) -> None:
        """Refuse a local run folder below another run (``out_dir`` = a run, or one of its table folders):
        its files would sit among that run's, where `verify`, a repair or a `rm -r` of either reaches the
        other. Local paths only: an object store would answer one request per parent."""
        if not self.loc.local:
            return
        path = Path(self.loc.path).resolve()
        for parent in path.parents:
            if (parent / RUN_FILE).is_file():
                raise AtlasError(
                    f"out_dir: {self.loc.display()} is inside the run {parent}; give the run a folder "
                    "outside it (another out_dir)"
                )

    def init_run(self, manifest: Mapping[str, Any], allow_code_change: bool = False) -> dict[str, Any] | None:
        """Create the run (write ``run.json``) or accept a resume of the same config, or of one that adds
        layers or units to it (:func:`run_growth`; listed under ``extended``); returns the run.json a resume
        found (None: a new run).

        Raises :class:`AtlasError` when the directory already holds a run with a different
        ``config_hash``: results of two configs must never mix in one directory (nor of two networks:
        :func:`resume_problem`; ``allow_code_change`` accepts other source of the user's network code, and
        the resume records which networks' code changed under ``resumed_code_change``).
        """
        missing = [k for k in REQUIRED_MANIFEST_KEYS if k not in manifest]
        if missing:
            raise ValueError(f"run manifest lacks {missing}")
        existing = self.manifest()
        if existing is not None:
            self.check_resume(manifest, existing, allow_code_change)
            resumed = dict(existing)
            added = run_growth(existing, manifest)[0]
            if added:  # a config that adds layers or units to the run (check_resume: nothing else changed)
                resumed["extended"] = [*existing.get("extended", []), {_now(): added}]
            changed = code_changes(existing, manifest)
            if changed:
                resumed["resumed_code_change"] = [*existing.get("resumed_code_change", []), {_now(): changed}]
            resumed.update({k: v for k, v in manifest.items() if k not in ("created",)})
            old_prints = existing.get("fingerprints")  # e.g. the reader's, which this call may not load
            if isinstance(old_prints, dict) and isinstance(manifest.get("fingerprints"), dict):
                resumed["fingerprints"] = {**old_prints, **manifest["fingerprints"]}
            resumed["created"] = existing.get("created", manifest.get("created"))
            resumed["status"] = "running"
            resumed["resumed"] = [*existing.get("resumed", []), _now()]
            self.drop_summary()  # the finished run's totals no longer hold (a trial's pipeline read them)
            # the code that started the run stays its git_sha; each resume's own code is listed beside
            resumed["git_sha"] = existing.get("git_sha", manifest.get("git_sha"))
            resumed["resumed_git_sha"] = [*existing.get("resumed_git_sha", []), manifest.get("git_sha")]
            write_json(self.loc, RUN_FILE, resumed)
            return existing
        self.check_own_folder()
        data = dict(manifest)
        if self.loc.list_files(SHARDS_DIR, suffix=MARKER_SUFFIX):  # shards of a run whose run.json is gone
            made_by = {
                (m.get("meta") or {}).get("config_hash") if isinstance(m, dict) else None
                for m in read_markers(self.loc).values()
            }
            if made_by != {manifest["config_hash"]}:  # another config's, or markers that do not say
                raise AtlasError(
                    f"run {self.loc.display()} holds completed shards but no run.json (lost or deleted), and "
                    "their markers do not name this config as the one that made them; restore its run.json, "
                    "or use a new run name (--set name=...) or remove the folder"
                )
            data["adopted"] = _now()  # run.json written again over shards this very config made
        data.setdefault("created", _now())
        data["schema_version"] = SCHEMA_VERSION
        data["status"] = "running"
        write_json(self.loc, RUN_FILE, data)
        return None

    def check_resume(
        self,
        manifest: Mapping[str, Any],
        existing: Mapping[str, Any],
        allow_code_change: bool = False,
        computes: bool = True,
    ) -> None:
        """Raise :class:`AtlasError` unless ``manifest`` may go on with the run whose run.json is
        ``existing`` (the same config, a schema this atlas writes, the same shard layout); writes nothing.
        ``computes=False``: nothing is left to compute (a complete run), so another precision is no mix."""
        if existing.get("config_hash") != manifest["config_hash"]:
            _added, differ, left_out = run_growth(existing, manifest)
            if differ or left_out:  # neither: the same config or one that adds (a hash of an older atlas)
                what = _what_differs(differ, left_out, existing.get("config"), manifest.get("config"))
                fixed = any(str(k).endswith((".objectives", ".pairs")) for k in differ)
                composites = " (composite objectives among them: fixed with the run)" if fixed else ""
                raise AtlasError(
                    f"run {self.loc.display()} holds a different config ({what}); a run takes new layers "
                    f"and units but keeps its settings{composites} and the units it holds: use a new run "
                    "name (--set name=...) or remove it"
                )
        check_schema(self.loc, existing)  # no resume adds this atlas's shards to a newer run
        problem = resume_problem(existing, manifest, allow_code_change, computes)
        if problem:
            raise AtlasError(f"run {self.loc.display()} {problem}")

    def finalize(self, summary: Mapping[str, Any]) -> None:
        """Remove the files no marker names, write ``summary.json`` and mark the run complete in
        ``run.json`` (the driver, once every shard is done: no attempt is still writing)."""
        self.remove_stray_files()
        summary = {**summary, "finished": _now()}  # now, also over an earlier call's summary it reuses
        write_json(self.loc, SUMMARY_FILE, summary)
        manifest = self.manifest() or {}
        manifest["status"] = "complete"
        manifest["finished"] = summary["finished"]
        write_json(self.loc, RUN_FILE, manifest)

    def drop_summary(self) -> None:
        """Remove ``summary.json``: the run is being written again (a resume, an extension) or lost shards
        (``atlas verify --repair``), so a finished run's totals and finish time would mislead; the run's
        next finish writes it anew."""
        self.loc.delete(SUMMARY_FILE)  # a missing one is fine

    def mark_interrupted(self, status: str = "interrupted") -> None:
        """Mark a run the driver stopped ``interrupted`` (Ctrl-C) or ``incomplete`` (it failed) in
        ``run.json``, so no reader waits for it; its complete shards stay, and the same ``atlas run``
        resumes it (:meth:`init_run` sets it running again)."""
        manifest = self.manifest()
        if manifest is not None and manifest.get("status") == "running":
            write_json(self.loc, RUN_FILE, {**manifest, "status": status})

    # ---- shards -------------------------------------------------------------------------------
    def marker_rel(self, shard_id: str) -> str:
        return f"{SHARDS_DIR}/{check_name('shard id', shard_id)}{MARKER_SUFFIX}"

    def completed_shards(self) -> set[str]:
        """Ids of shards whose completion marker exists."""
        return {e.name[: -len(MARKER_SUFFIX)] for e in self.loc.list_files(SHARDS_DIR, suffix=MARKER_SUFFIX)}

    def shard_files(self, shard_id: str) -> dict[str, str]:
        """table -> path (relative to the run) of a completed shard's files, as its marker names them."""
        return marker_files(shard_id, read_json(self.loc, self.marker_rel(shard_id)))

    def remove_stray_files(self) -> list[str]:
        """Delete the table files of completed shards that their marker does not name (attempts that died
        or lost the race to write the marker); files of shards without a marker are left alone. Returns
        the paths removed (relative to the run). Shards whose marker predates attempt tags are left alone."""
        markers = {s: m for s, m in read_markers(self.loc).items() if isinstance(m.get("files"), dict)}
        named = {rel for shard, m in markers.items() for rel in marker_files(shard, m).values()}
        stray = []
        for table in TABLES:
            for entry in self.loc.list_files(table, suffix=".parquet", recursive=True):
                rel = file_rel(entry.path)
                if shard_of_file(entry.name) in markers and rel not in named:
                    self.loc.delete(rel)
                    stray.append(rel)
        if self.loc.local:  # temporaries of writes killed mid-way (atomic.atomic_write): listings skip them
            root = Path(self.loc.path)
            for tmp in root.rglob(".*.tmp"):
                if tmp.is_file() and tmp.name.count(".") >= 3:  # .<name>.<pid>.<tag>.tmp
                    tmp.unlink(missing_ok=True)
                    stray.append(tmp.relative_to(root).as_posix())
        return stray

    def _finished_by_another(self, shard_id: str) -> bool:
        """Has another attempt already written this shard's marker (readable)? The first marker wins: a
        late attempt (an actor Ray restarted while the old one still ran) must not replace it, or
        :meth:`remove_stray_files` could have removed the files the replacement names."""
        try:
            marker = read_json(self.loc, self.marker_rel(shard_id))
        except (FileNotFoundError, AtlasError):
            return False
        return isinstance(marker, dict) and marker_readable(marker)

    def remove_marker(self, shard_id: str) -> None:
        """Forget that a shard completed (``atlas verify --repair``): the next run redoes it."""
        self.loc.delete(self.marker_rel(shard_id))

    def write_shard(
        self,
        shard_id: str,
        layer: str,
        rows: Mapping[str, Sequence[Mapping[str, Any]]],
        *,
        meta: Mapping[str, Any] | None = None,
    ) -> dict[str, int]:
        """Write one shard's rows (table -> list of row dicts) under a fresh attempt tag, then its
        completion marker naming those files (module docstring); if another attempt has finished the shard
        meanwhile, its marker stands and this attempt's files are removed again.

        Tables absent from ``rows`` or with no rows get no file. ``meta`` (e.g. ``{"seconds": 12.3,
        "worker": "..."}``) is kept in the marker. Returns the row count per table.
        """
        check_name("shard id", shard_id)
        check_name("layer", layer)
        unknown = set(rows) - set(TABLES)
        if unknown:
            raise ValueError(f"unknown table(s) {sorted(unknown)}; tables are {', '.join(TABLES)}")
        # convert everything first: a bad row fails before anything is written
        tables = {name: to_table(name, rows.get(name) or [], shard=shard_id) for name in TABLES}
        bounds = [pc.min_max(t["unit"]) for t in tables.values() if t.num_rows]
        units = [b[k].as_py() for b in bounds for k in ("min", "max")]
        attempt = secrets.token_hex(4)
        counts: dict[str, int] = {}
        files: dict[str, str] = {}
        sizes: dict[str, int] = {}
        for name, table in tables.items():
            if table.num_rows == 0:
                continue
            rel = shard_rel(name, layer, shard_id, attempt)
            data = parquet_bytes(table, extra_metadata={"atlas.shard": shard_id, "atlas.layer": layer})
            self.loc.write_bytes(rel, data)
            counts[name], files[name], sizes[name] = table.num_rows, rel, len(data)
        if self._finished_by_another(shard_id):  # its marker stands: these files would be strays
            for rel in files.values():
                self.loc.delete(rel)
            return counts
        marker = {
            "shard": shard_id,
            "layer": layer,
            "rows": counts,
            "files": files,  # the one attempt whose tables readers take
            "sizes": sizes,  # their bytes: a truncated or overwritten file is damage a listing shows
            "attempt": attempt,
            "units": [min(units), max(units)] if units else None,  # lets readers find a unit's file
            "written": _now(),
            "time": time.time(),
            "schema_version": SCHEMA_VERSION,
            **({"meta": dict(meta)} if meta else {}),
        }
        write_json(self.loc, self.marker_rel(shard_id), marker)
        return counts
