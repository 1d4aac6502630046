"""DuckDB views over a run (a local directory or an object-store prefix), sandboxed for untrusted SQL.

Usage::

    from atlas.store.catalog import open_run
    from atlas.store.queries import run_query
    conn = open_run("runs/demo")   # or "s3://bucket/atlas/demo": units chains images steps activations
                                   # + run shards files
    columns, rows, truncated = run_query(conn, "SELECT layer, count(*) FROM units GROUP BY layer")

Each data table reads the Parquet files of *completed* shards (those with a ``_shards/<id>.done`` marker), the
ones the marker names (one writing attempt's; ``atlas.store.writer``), with ``hive_partitioning`` (the
``layer`` column comes from ``layer=<name>`` directories) and ``union_by_name`` (files written before a
nullable column was added still read). ``chains``, ``images``, ``steps`` and ``activations`` are views;
``units`` (one row per unit) is loaded into memory at open, so unit lists, grid sorting and aggregates do not
depend on how many shard files a layer has. The ``files`` table lists each Parquet file with its shard's unit
range, so point lookups read just the files that hold a unit (:func:`unit_sources`). Reopen the connection to
see shards written since (the viewer does so whenever a new shard completes).

Local runs are read by DuckDB's own Parquet reader. Runs on an object store are read through the same
``pyarrow.fs`` filesystem the writers used: each file is registered as a ``pyarrow.dataset`` (built from
the known paths and schema, so opening a run does no I/O per file), and DuckDB scans those with projection
and filter pushdown. No DuckDB extension (httpfs) is ever installed or loaded.

Sandbox (``sandbox=True``, the default), applied after the views exist:
``allowed_paths`` = exactly the run's Parquet files (so nothing can be written anywhere, not even inside the
run directory), ``temp_directory=''`` (no spill directory, which DuckDB would otherwise allow-list),
``enable_external_access=false`` (no other files, no ATTACH/COPY/INSTALL/LOAD), memory and thread limits, and
finally ``lock_configuration=true`` (no SET/PRAGMA/RESET can undo any of this). ``atlas.store.queries``
adds a statement-type check (read-only statements only), a timeout and a row cap.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import os
import re
import shlex
from collections.abc import Iterable
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as pads

from atlas.errors import AtlasError, first_line
from atlas.store.location import Location, open_location
from atlas.store.manifest import (
    ATTEMPT_SEP,
    DAMAGED_RUN_JSON_FIX,
    file_rel,
    marker_files,
    marker_readable,
    read_manifest,
    read_markers,
    shard_of_file,
    unmarked_shards,
)
from atlas.store.schema import SCHEMAS, TABLES, duckdb_type
from atlas.store.sessions import session_starts, work_seconds

# small tables (one row per unit) loaded into memory at open: grid sorting, unit lists and aggregates then
# cost milliseconds however many shard files a layer has; the big tables stay views over Parquet
MATERIALIZED = frozenset({"units"})

RUN_TABLES = (*TABLES, "run", "shards", "files")  # every table and view a run connection has

FILES_SCHEMA = pa.schema(
    [
        ("table_name", pa.string()),
        ("layer", pa.string()),
        ("shard", pa.string()),
        ("unit_min", pa.int64()),  # null: unknown (the file may hold any unit)
        ("unit_max", pa.int64()),
        ("path", pa.string()),
        ("source", pa.string()),  # SQL that reads just this file (no layer column)
    ]
)


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _shard_of(path: str) -> str:
    # .../shard-<id>[~<attempt>].parquet -> <id>
    return shard_of_file(path.rsplit("/", 1)[-1])


def _layer_of(path: str) -> str:
    # .../<table>/layer=<name>/shard-<id>.parquet -> <name>
    return path.rsplit("/", 2)[-2].partition("=")[2]


def run_files(
    loc: Location,
    markers: dict[str, dict[str, Any]],
    *,
    partial: bool = False,
    sizes: dict[str, int | None] | None = None,
) -> dict[str, list[str]]:
    """table -> paths (inside ``loc.fs``) of its Parquet files, all layers: the files each completed shard's
    marker names (one attempt's), the untagged files of shards whose marker predates attempt tags, and with
    ``partial`` the newest attempt's files of each shard without a marker (one attempt a shard, so its
    tables never mix). ``sizes``, when given, is filled with each listed file's bytes (by its run-relative
    path), from the same listing."""
    named = {rel for shard, m in markers.items() for rel in marker_files(shard, m).values()}
    untagged = {shard for shard, m in markers.items() if not isinstance(m.get("files"), dict)}
    out: dict[str, list[str]] = {table: [] for table in TABLES}
    unmarked: dict[tuple[str, str], list[tuple[str, str]]] = {}  # (shard, attempt) -> [(table, path)]
    newest: dict[str, tuple[int, str]] = {}  # shard -> (latest file time, its attempt)
    for table in TABLES:
        for e in loc.list_files(table, suffix=".parquet", recursive=True):
            if not e.name.startswith("shard-") or "/layer=" not in e.path:
                continue
            shard = shard_of_file(e.name)
            if sizes is not None:
                sizes[file_rel(e.path)] = e.size
            if file_rel(e.path) in named or (shard in untagged and ATTEMPT_SEP not in e.name):
                out[table].append(e.path)
            elif partial and shard not in markers:
                attempt = e.name.removesuffix(".parquet").partition(ATTEMPT_SEP)[2]
                unmarked.setdefault((shard, attempt), []).append((table, e.path))
                newest[shard] = max(newest.get(shard, (-1, "")), (e.mtime_ns or 0, attempt))
    for (shard, attempt), files in unmarked.items():
        if newest[shard][1] == attempt:
            for table, path in files:
                out[table].append(path)
    return {table: sorted(paths) for table, paths in out.items()}


def _file_schema(table: str) -> pa.Schema:
    return SCHEMAS[table].remove_metadata()


_ARROW_NAME = re.compile(r"\b_arrow_file_[0-9a-f]{16}\b")


class RunConnection:
    """A DuckDB connection to one run. Behaves like ``duckdb.DuckDBPyConnection``; in addition its cursors
    see the pyarrow datasets an object-store run is read through (DuckDB binds Python objects per
    connection, so each cursor gets the table-level ones plus any per-file one its SQL names)."""

    def __init__(self, conn: duckdb.DuckDBPyConnection, location: Location) -> None:
        self._conn = conn
        self.location = location
        self._tables: dict[str, Any] = {}  # always bound: the views need them
        self._files: dict[str, Any] = {}  # bound when a statement names them (unit lookups)
        self.damage: dict[str, str] = {}  # shards left out as damaged (open_run's skip_damaged)

    def add_arrow(self, name: str, dataset: Any, *, always: bool) -> None:
        (self._tables if always else self._files)[name] = dataset
        if always:
            self._conn.register(name, dataset)

    def bind(self, target: Any, sql: str, bound: set[str]) -> None:
        for name, dataset in self._tables.items():
            if name not in bound:
                target.register(name, dataset)
                bound.add(name)
        for name in set(_ARROW_NAME.findall(sql)) - bound:
            if name in self._files:
                target.register(name, self._files[name])
                bound.add(name)

    def cursor(self) -> _RunCursor:
        return _RunCursor(self._conn.cursor(), self, set() if self._tables or self._files else None)

    def execute(self, sql: str, parameters: Any = None) -> Any:
        self._drop_unfinished()
        self.bind(self._conn, sql, set(self._tables))
        return self._conn.execute(sql) if parameters is None else self._conn.execute(sql, parameters)

    def sql(self, query: str, *args: Any, **kwargs: Any) -> Any:
        self._drop_unfinished()
        return self._conn.sql(query, *args, **kwargs)

    def _drop_unfinished(self) -> None:
        """A new statement drops what is left of the last ``execute``'s result, as DuckDB 1.x did: 2.x
        refuses the statement instead (``.execute(q).fetchone()`` then ``.sql(...)``: "connection has an
        unfinished result"), the pattern docs/sql.md's example follows."""
        abort = getattr(self._conn, "abort", None)  # DuckDB >= 2.0
        if abort is not None:
            abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


class _RunCursor:
    def __init__(self, cur: duckdb.DuckDBPyConnection, owner: RunConnection, bound: set[str] | None) -> None:
        self._cur, self._owner, self._bound = cur, owner, bound

    def execute(self, sql: str, parameters: Any = None) -> _RunCursor:
        if self._bound is not None:
            self._owner.bind(self._cur, sql, self._bound)
        if parameters is None:
            self._cur.execute(sql)
        else:
            self._cur.execute(sql, parameters)
        return self

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cur, name)


class _Sources:
    """How SQL reaches a run's files: DuckDB's reader for local paths, registered pyarrow datasets for
    object stores (one per file, plus one per table)."""

    def __init__(self, conn: RunConnection, loc: Location) -> None:
        self.conn, self.loc = conn, loc

    def table(self, table: str, files: list[str]) -> str:
        if self.loc.local:
            file_list = ", ".join(_sql_str(f) for f in files)
            return (
                f"read_parquet([{file_list}], hive_partitioning=true, union_by_name=true, "
                "hive_types={'layer': 'VARCHAR'})"
            )
        schema = _file_schema(table).append(pa.field("layer", pa.string()))
        dataset = pads.FileSystemDataset.from_paths(
            files,
            schema=schema,
            format=pads.ParquetFileFormat(),
            filesystem=self.loc.fs,
            partitions=[pads.field("layer") == _layer_of(f) for f in files],
        )
        name = f"_arrow_{table}"
        self.conn.add_arrow(name, dataset, always=True)
        return name

    def file(self, table: str, path: str) -> str:
        if self.loc.local:
            return f"read_parquet([{_sql_str(path)}])"
        dataset = pads.FileSystemDataset.from_paths(
            [path], schema=_file_schema(table), format=pads.ParquetFileFormat(), filesystem=self.loc.fs
        )
        name = "_arrow_file_" + hashlib.sha1(path.encode()).hexdigest()[:16]
        self.conn.add_arrow(name, dataset, always=False)
        return name


def _create_view(conn: RunConnection, table: str, source: str | None, *, materialize: bool = False) -> None:
    if source is not None:
        kind = "TABLE" if materialize else "VIEW"
        conn.execute(f"CREATE {kind} {table} AS SELECT * FROM {source}")
        return
    # no rows yet: an empty view with the right columns, so queries still bind
    cols = [f"CAST(NULL AS {duckdb_type(f.type)}) AS {f.name}" for f in SCHEMAS[table]]
    cols.append("CAST(NULL AS VARCHAR) AS layer")
    conn.execute(f"CREATE VIEW {table} AS SELECT {', '.join(cols)} WHERE false")


def _run_table(loc: Location, manifest: dict[str, Any], markers: dict[str, dict[str, Any]]) -> pa.Table:
    def js(value: Any) -> str | None:
        return None if value is None else json.dumps(value, default=str)

    times = [m["time"] for m in markers.values() if isinstance(m.get("time"), int | float)]
    starts = session_starts(manifest.get("created"), manifest.get("resumed"))
    row = {
        "run_id": loc.name,
        "status": manifest.get("status"),
        "created": manifest.get("created"),
        "finished": manifest.get("finished"),
        "git_sha": manifest.get("git_sha"),
        "config_hash": manifest.get("config_hash"),
        "schema_version": manifest.get("schema_version"),
        "planned_shards": manifest.get("planned_shards"),
        "shards_done": len(markers),
        "first_shard_done": min(times) if times else None,
        "last_shard_done": max(times) if times else None,
        "sessions": len(starts) or None,
        "work_seconds": work_seconds(starts, times),
        "output_layer": manifest.get("output_layer"),
        "facet_layer": manifest.get("facet_layer"),
        "config": js(manifest.get("config")),
        "fingerprints": js(manifest.get("fingerprints")),
        "versions": js(manifest.get("versions")),
    }
    schema = pa.schema(
        [
            ("run_id", pa.string()),
            ("status", pa.string()),
            ("created", pa.string()),
            ("finished", pa.string()),
            ("git_sha", pa.string()),
            ("config_hash", pa.string()),
            ("schema_version", pa.int32()),
            ("planned_shards", pa.int64()),
            ("shards_done", pa.int64()),
            ("first_shard_done", pa.float64()),
            ("last_shard_done", pa.float64()),
            ("sessions", pa.int64()),
            ("work_seconds", pa.float64()),
            ("output_layer", pa.string()),
            ("facet_layer", pa.string()),
            ("config", pa.string()),
            ("fingerprints", pa.string()),
            ("versions", pa.string()),
        ]
    )
    _check_types(row, schema, loc)
    _check_layers(manifest.get("layers"), loc)
    if row["status"] is not None and row["status"] not in RUN_STATUSES:
        raise AtlasError(
            f"run {loc.display()}: its run.json holds status = {json.dumps(row['status'])[:60]}, not one of "
            f"{', '.join(RUN_STATUSES)}; the file is damaged: restore it, or {DAMAGED_RUN_JSON_FIX}"
        )
    return pa.Table.from_pylist([row], schema=schema)


RUN_STATUSES = ("running", "complete", "incomplete", "interrupted")  # what run.json's status can say


def check_run_json(loc: Location, manifest: dict[str, Any]) -> None:
    """One line naming the field when run.json holds a value of the wrong type or an unknown status (what
    `atlas sql` and the viewer refuse a run for; `atlas verify` says it too)."""
    _run_table(loc, manifest, {})


def _check_layers(layers: Any, loc: Location) -> None:
    """run.json's ``layers`` (the viewer's planned layers and their sizes): a list of objects, each with a
    string ``name`` and, when given, a ``shape`` list of integers; else one line naming the field (an
    older run.json without it passes)."""
    if layers is None:
        return

    def shape_ok(shape: Any) -> bool:
        return shape is None or isinstance(shape, list) and all(type(d) is int for d in shape)

    ok = isinstance(layers, list) and all(
        isinstance(e, dict) and isinstance(e.get("name"), str) and shape_ok(e.get("shape")) for e in layers
    )
    if not ok:
        raise AtlasError(
            f"run {loc.display()}: its run.json holds layers = {json.dumps(layers, default=str)[:60]}, not a "
            f"list of {{name, shape}} entries; the file is damaged: restore it, or {DAMAGED_RUN_JSON_FIX}"
        )


def _check_types(row: dict[str, Any], schema: pa.Schema, loc: Location) -> None:
    """One line naming the field when run.json holds a value of the wrong type (a damaged or hand-edited
    file), instead of an Arrow error at the first query."""
    for f in schema:
        value = row[f.name]
        if value is None:
            continue
        if pa.types.is_string(f.type):
            ok = isinstance(value, str)
        elif pa.types.is_integer(f.type):
            bits = f.type.bit_width - 1
            ok = isinstance(value, int) and not isinstance(value, bool) and -(2**bits) <= value < 2**bits
        else:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok:
            kind = "a string" if pa.types.is_string(f.type) else "a number in range"
            raise AtlasError(
                f"run {loc.display()}: its run.json holds {f.name} = {json.dumps(value, default=str)[:60]}, "
                f"not {kind}; the file is damaged: restore it, or {DAMAGED_RUN_JSON_FIX}"
            )


# the ``shards`` table's provenance columns, from each marker's ``meta`` (written by the worker)
SHARD_PROVENANCE = ("precision", "device", "host")


def _shards_table(markers: dict[str, dict[str, Any]]) -> pa.Table:
    rows = []
    for shard, m in markers.items():
        counts = m.get("rows") or {}
        meta = m.get("meta") or {}
        meta = meta if isinstance(meta, dict) else {}
        seconds, batch = meta.get("seconds"), meta.get("batch_size")
        rows.append(
            {
                "shard": shard,
                "layer": m.get("layer"),
                "done_time": m.get("time"),
                "seconds": float(seconds) if isinstance(seconds, int | float) else None,
                "batch_size": batch if isinstance(batch, int) and not isinstance(batch, bool) else None,
                **{f"{t}_rows": int(counts.get(t, 0)) for t in TABLES},
                # where and how the shard was computed (null in markers that predate a field)
                **{key: str(meta[key]) if meta.get(key) is not None else None for key in SHARD_PROVENANCE},
            }
        )
    schema = pa.schema(
        [("shard", pa.string()), ("layer", pa.string())]
        + [("done_time", pa.float64()), ("seconds", pa.float64()), ("batch_size", pa.int64())]
        + [(f"{t}_rows", pa.int64()) for t in TABLES]
        + [(key, pa.string()) for key in SHARD_PROVENANCE]
    )
    return pa.Table.from_pylist(rows, schema=schema)


def damage_line(loc: Location, damage: dict[str, str]) -> str:
    """The one line a reader refuses a damaged run with: its first damage and the fix."""
    fix = f"`atlas verify {shlex.quote(loc.display())} --repair`, then the same `atlas run`, redoes them"
    return f"run {loc.display()} {next(iter(damage.values()))}; {fix}"


UNMARKED = ""  # run_damage's key for planned shards missing their marker in a run that says it is complete


def run_damage(
    manifest: dict[str, Any],
    markers: dict[str, dict[str, Any]],
    listed: dict[str, list[str]],
    sizes: dict[str, int | None] | None = None,
) -> dict[str, str]:
    """shard id -> what is wrong with it ("is damaged: shard X's images file is missing"), in shard order:
    a marker that does not read, a file it promises gone or of other bytes than it recorded (where it
    recorded them and ``sizes`` lists them); and under :data:`UNMARKED`, planned shards without a marker in
    a run that says it is complete. What the readers refuse a run for (:func:`damage_line`): they do not
    answer from part of a run, unless told to leave these shards out (``open_run``'s ``skip_damaged``)."""
    have = {(table, _shard_of(f)) for table, files in listed.items() for f in files}
    damage: dict[str, str] = {}
    for shard, marker in sorted(markers.items()):
        if not marker_readable(marker):
            damage[shard] = f"is damaged: shard {shard}'s marker is unreadable"
            continue
        for table, n in marker["rows"].items():
            if table in SCHEMAS and isinstance(n, int) and n > 0 and (table, shard) not in have:
                damage[shard] = f"is damaged: shard {shard}'s {table} file is missing"
                break
        recorded = marker.get("sizes") if isinstance(marker.get("sizes"), dict) else {}
        for table, rel in (
            marker_files(shard, marker).items() if sizes is not None and shard not in damage else ()
        ):
            want, got = recorded.get(table), sizes.get(rel)
            if isinstance(want, int) and got is not None and got != want:
                damage[shard] = (
                    f"is damaged: shard {shard}'s {table} file holds {got:,} bytes, {want:,} were written "
                    "(truncated or overwritten)"
                )
                break
    if unmarked_shards(manifest, markers):
        damage[UNMARKED] = (
            f"says it is complete but only {len(markers)} of its {manifest['planned_shards']} shards have "
            "their marker in _shards/"
        )
    return damage


def check_run(run: str | os.PathLike[str] | Location) -> None:
    """What :func:`open_run` refuses a run for (run.json's fields, unreadable markers, a file a marker
    promises gone, markers missing from a complete run), without reading any table: one listing and the
    markers. Raises :class:`AtlasError` naming the fix."""
    damage = damage_of(run)
    if damage:
        raise AtlasError(damage_line(open_location(run), damage))


def damage_of(run: str | os.PathLike[str] | Location) -> dict[str, str]:
    """:func:`run_damage` of a run, without reading any table (one listing and the markers); a run.json the
    readers refuse raises :class:`AtlasError` (no shard of such a run can be shown)."""
    loc = open_location(run)
    manifest = read_manifest(loc)
    markers = read_markers(loc)
    _run_table(loc, manifest, markers)
    sizes: dict[str, int | None] = {}
    return run_damage(manifest, markers, run_files(loc, markers, partial=False, sizes=sizes), sizes)


def open_run(
    run: str | os.PathLike[str] | Location,
    *,
    sandbox: bool = True,
    memory_limit: str = "512MB",
    threads: int = 2,
    include_partial: bool = False,
    skip_damaged: bool = False,
) -> RunConnection:
    """An in-memory DuckDB connection with one view per table of the run (see the module docstring).

    ``run`` is a local path, a URI or a :class:`Location`. ``include_partial=True`` also shows files of
    shards without a completion marker (debugging a run that crashed). A missing run or ``run.json``
    raises :class:`AtlasError`, and so does a damaged one (:func:`run_damage`) unless ``skip_damaged``:
    then its damaged shards are left out whole (the viewer shows the rest) and ``conn.damage`` says which.
    """
    loc = open_location(run)
    manifest = read_manifest(loc)
    markers = read_markers(loc)
    run_table = _run_table(loc, manifest, markers)  # a wrong-typed run.json field: refused before the work
    conn = RunConnection(duckdb.connect(":memory:"), loc)
    try:
        sources = _Sources(conn, loc)
        allowed: list[str] = []
        file_rows: list[dict[str, Any]] = []
        sizes: dict[str, int | None] = {}
        listed = run_files(loc, markers, partial=include_partial, sizes=sizes)
        if skip_damaged and not include_partial:
            conn.damage = run_damage(manifest, markers, listed, sizes)
            markers = {shard: m for shard, m in markers.items() if shard not in conn.damage}
            listed = {t: [f for f in files if _shard_of(f) in markers] for t, files in listed.items()}
            run_table = _run_table(loc, manifest, markers)
        elif not include_partial and (damage := run_damage(manifest, markers, listed, sizes)):
            raise AtlasError(damage_line(loc, damage))
        for table in TABLES:
            files = listed[table]
            source = sources.table(table, files) if files else None
            _create_view(conn, table, source, materialize=table in MATERIALIZED)
            if loc.local:
                allowed.extend(files)
            for f in files:
                units = (markers.get(_shard_of(f)) or {}).get("units") or [None, None]
                file_rows.append(
                    {"table_name": table, "layer": _layer_of(f), "shard": _shard_of(f),
                     "unit_min": units[0], "unit_max": units[1], "path": f,
                     "source": sources.file(table, f)}
                )  # fmt: skip
        conn.from_arrow(pa.Table.from_pylist(file_rows, schema=FILES_SCHEMA)).create("files")
        conn.from_arrow(run_table).create("run")
        conn.from_arrow(_shards_table(markers)).create("shards")
        conn.execute(f"SET memory_limit={_sql_str(memory_limit)}")
        conn.execute(f"SET threads={int(threads)}")
        conn.execute("SET parquet_metadata_cache=true")  # footers read once per connection
        if sandbox:
            conn.execute("SET autoinstall_known_extensions=false")
            conn.execute("SET autoload_known_extensions=false")
            conn.execute("SET temp_directory=''")
            conn.execute(f"SET allowed_paths=[{', '.join(_sql_str(p) for p in allowed)}]")
            conn.execute("SET enable_external_access=false")
            conn.execute("SET lock_configuration=true")
    except duckdb.Error as exc:
        conn.close()
        raise AtlasError(
            f"cannot read run {loc.display()}: {first_line(exc)}; "
            f"`atlas verify {loc.display()} --repair` finds bad shards and has them redone"
        ) from None
    except BaseException:
        conn.close()
        raise
    return conn


def unit_sources(conn: duckdb.DuckDBPyConnection, layer: str, units: int | Iterable[int]) -> dict[str, str]:
    """For each table, a ``read_parquet([...])`` expression over only the files that can hold ``units`` of
    ``layer`` (from the shard unit ranges in the ``files`` table); a table with no such file maps to its
    view filtered to nothing. Reading a few files instead of a whole layer keeps unit lookups fast on big
    runs. The expressions have no ``layer`` column."""
    wanted = sorted({int(units)} if isinstance(units, int) else {int(u) for u in units})
    cur = conn.cursor()
    try:
        rows = cur.execute(
            "SELECT table_name, path, source, unit_min, unit_max FROM files WHERE layer = ? ORDER BY path",
            [layer],
        ).fetchall()
    finally:
        cur.close()
    found: dict[str, list[tuple[str, str]]] = {}
    for table, path, source, lo, hi in rows:
        if lo is None or hi is None or _any_between(wanted, lo, hi):
            found.setdefault(table, []).append((path, source))
    out = {}
    for table in TABLES:
        hits = found.get(table)
        if hits and all(src.startswith("read_parquet(") for _, src in hits):
            out[table] = f"read_parquet([{', '.join(_sql_str(p) for p, _ in hits)}], union_by_name=true)"
        elif hits:
            out[table] = "(" + " UNION ALL BY NAME ".join(f"SELECT * FROM {src}" for _, src in hits) + ")"
        else:
            out[table] = f"(SELECT * EXCLUDE (layer) FROM {table} WHERE false)"
    return out


def _any_between(sorted_values: list[int], lo: int, hi: int) -> bool:
    i = bisect.bisect_left(sorted_values, lo)
    return i < len(sorted_values) and sorted_values[i] <= hi
