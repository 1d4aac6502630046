"""DuckDB views over a run directory, sandboxed for untrusted SQL.

Usage::

    from atlas.store.catalog import open_run, run_query
    conn = open_run("runs/demo")   # units chains images steps activations + run shards files
    columns, rows, truncated = run_query(conn, "SELECT layer, count(*) FROM units GROUP BY layer")

Each data table reads the Parquet files of *completed* shards (those with a ``_shards/<id>.done`` marker),
with ``hive_partitioning`` (the ``layer`` column comes from ``layer=<name>`` directories) and
``union_by_name`` (files written before a nullable column was added still read). ``chains``, ``images``,
``steps`` and ``activations`` are views; ``units`` (one row per unit) is loaded into memory at open, so unit
lists, grid sorting and aggregates do not depend on how many shard files a layer has. The ``files`` table
lists each Parquet file with its shard's unit range, so point lookups read just the files that hold a unit
(:func:`unit_sources`). Reopen the connection to see shards written since (the viewer does so whenever a
new shard completes).

Sandbox (``sandbox=True``, the default), applied after the views exist:
``allowed_paths`` = exactly the run's Parquet files (so nothing can be written anywhere, not even inside the
run directory), ``temp_directory=''`` (no spill directory, which DuckDB would otherwise allow-list),
``enable_external_access=false`` (no other files, no ATTACH/COPY/INSTALL/LOAD), memory and thread limits, and
finally ``lock_configuration=true`` (no SET/PRAGMA/RESET can undo any of this). :func:`run_query` adds a
statement-type check (read-only statements only), a timeout and a row cap.
"""

from __future__ import annotations

import bisect
import json
import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from atlas.errors import AtlasError
from atlas.store.manifest import read_manifest, read_markers
from atlas.store.schema import SCHEMAS, TABLES, duckdb_type

# small tables (one row per unit) loaded into memory at open: grid sorting, unit lists and aggregates then
# cost milliseconds however many shard files a layer has; the big tables stay views over Parquet
MATERIALIZED = frozenset({"units"})

FILES_SCHEMA = pa.schema(
    [
        ("table_name", pa.string()),
        ("layer", pa.string()),
        ("shard", pa.string()),
        ("unit_min", pa.int64()),  # null: unknown (the file may hold any unit)
        ("unit_max", pa.int64()),
        ("path", pa.string()),
    ]
)

# statement types the console runs; DESCRIBE / SHOW / SUMMARIZE / FROM-first parse as SELECT
READ_ONLY_STATEMENTS = frozenset({"SELECT", "EXPLAIN"})


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _shard_of(path: Path) -> str:
    # shard-<id>.parquet -> <id>
    return path.name[len("shard-") : -len(".parquet")]


def table_files(run_dir: Path, table: str, completed: set[str] | None) -> list[Path]:
    """Parquet files of ``table`` (all layers), only of completed shards unless ``completed`` is None."""
    files = sorted((run_dir / table).glob("layer=*/shard-*.parquet"))
    if completed is not None:
        files = [f for f in files if _shard_of(f) in completed]
    return files


def _create_view(
    conn: duckdb.DuckDBPyConnection, table: str, files: list[Path], *, materialize: bool = False
) -> None:
    if files:
        file_list = ", ".join(_sql_str(str(f)) for f in files)
        kind = "TABLE" if materialize else "VIEW"
        conn.execute(
            f"CREATE {kind} {table} AS SELECT * FROM read_parquet([{file_list}], hive_partitioning=true, "
            "union_by_name=true, hive_types={'layer': 'VARCHAR'})"
        )
        return
    # no rows yet: an empty view with the right columns, so queries still bind
    cols = [f"CAST(NULL AS {duckdb_type(f.type)}) AS {f.name}" for f in SCHEMAS[table]]
    cols.append("CAST(NULL AS VARCHAR) AS layer")
    conn.execute(f"CREATE VIEW {table} AS SELECT {', '.join(cols)} WHERE false")


def _run_table(run_dir: Path, manifest: dict[str, Any], markers: dict[str, dict[str, Any]]) -> pa.Table:
    def js(value: Any) -> str | None:
        return None if value is None else json.dumps(value, default=str)

    times = [m["time"] for m in markers.values() if isinstance(m.get("time"), int | float)]
    row = {
        "run_id": run_dir.name,
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
            ("config", pa.string()),
            ("fingerprints", pa.string()),
            ("versions", pa.string()),
        ]
    )
    return pa.Table.from_pylist([row], schema=schema)


def _shards_table(markers: dict[str, dict[str, Any]]) -> pa.Table:
    rows = []
    for shard, m in markers.items():
        counts = m.get("rows") or {}
        meta = m.get("meta") or {}
        seconds = meta.get("seconds") if isinstance(meta, dict) else None
        rows.append(
            {
                "shard": shard,
                "layer": m.get("layer"),
                "done_time": m.get("time"),
                "seconds": float(seconds) if isinstance(seconds, int | float) else None,
                **{f"{t}_rows": int(counts.get(t, 0)) for t in TABLES},
            }
        )
    schema = pa.schema(
        [("shard", pa.string()), ("layer", pa.string())]
        + [("done_time", pa.float64()), ("seconds", pa.float64())]
        + [(f"{t}_rows", pa.int64()) for t in TABLES]
    )
    return pa.Table.from_pylist(rows, schema=schema)


def open_run(
    run_dir: str | os.PathLike[str],
    *,
    sandbox: bool = True,
    memory_limit: str = "512MB",
    threads: int = 2,
    include_partial: bool = False,
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with one view per table of the run (see the module docstring).

    ``include_partial=True`` also shows files of shards without a completion marker (debugging a run
    that crashed). A missing directory or ``run.json`` raises :class:`AtlasError`.
    """
    run_dir = Path(run_dir).resolve()
    manifest = read_manifest(run_dir)
    markers = read_markers(run_dir)
    completed = None if include_partial else set(markers)
    conn = duckdb.connect(":memory:")
    try:
        allowed: list[str] = []
        file_rows: list[dict[str, Any]] = []
        for table in TABLES:
            files = table_files(run_dir, table, completed)
            _create_view(conn, table, files, materialize=table in MATERIALIZED)
            allowed.extend(str(f) for f in files)
            for f in files:
                units = (markers.get(_shard_of(f)) or {}).get("units") or [None, None]
                file_rows.append(
                    {"table_name": table, "layer": f.parent.name.partition("=")[2], "shard": _shard_of(f),
                     "unit_min": units[0], "unit_max": units[1], "path": str(f)}
                )  # fmt: skip
        conn.from_arrow(pa.Table.from_pylist(file_rows, schema=FILES_SCHEMA)).create("files")
        conn.from_arrow(_run_table(run_dir, manifest, markers)).create("run")
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
    except BaseException:
        conn.close()
        raise
    return conn


def _error_line(exc: BaseException) -> str:
    lines = [ln for ln in str(exc).splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


def check_read_only(sql: str) -> None:
    """Raise :class:`AtlasError` unless ``sql`` is exactly one read-only statement."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise AtlasError(_error_line(exc)) from exc
    if not statements:
        raise AtlasError("empty query")
    if len(statements) > 1:
        raise AtlasError(f"one statement at a time please ({len(statements)} given)")
    kind = statements[0].type.name
    if kind not in READ_ONLY_STATEMENTS:
        raise AtlasError(
            f"the SQL console is read-only: {kind} statements are refused "
            "(use SELECT, WITH, FROM, DESCRIBE, SHOW, SUMMARIZE or EXPLAIN)"
        )


def run_query(
    conn: duckdb.DuckDBPyConnection,
    sql: str,
    *,
    max_rows: int = 10_000,
    timeout_s: float = 10.0,
    read_only: bool = True,
) -> tuple[list[str], list[tuple[Any, ...]], bool]:
    """Run one statement with a timeout and a row cap: ``(columns, rows, truncated)``.

    A refused, failing or timed-out query raises :class:`AtlasError` with DuckDB's one-line message.
    """
    if read_only:
        check_read_only(sql)
    cur = conn.cursor()
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            cur.execute(sql)
            columns = [d[0] for d in cur.description] if cur.description else []
            rows = cur.fetchmany(max_rows + 1) if columns else []
            outcome["result"] = (columns, rows)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            outcome["error"] = exc

    worker = threading.Thread(target=work, name="atlas-sql", daemon=True)
    start = time.monotonic()
    worker.start()
    worker.join(timeout_s)
    try:
        if worker.is_alive():
            cur.interrupt()
            worker.join(5.0)
            elapsed = time.monotonic() - start
            raise AtlasError(f"query cancelled after {elapsed:.1f} s (limit {timeout_s:g} s)")
        if "error" in outcome:
            raise AtlasError(_error_line(outcome["error"])) from outcome["error"]
    finally:
        if not worker.is_alive():
            cur.close()
    columns, rows = outcome["result"]
    truncated = len(rows) > max_rows
    return columns, rows[:max_rows], truncated


def unit_sources(conn: duckdb.DuckDBPyConnection, layer: str, units: int | Iterable[int]) -> dict[str, str]:
    """For each table, a ``read_parquet([...])`` expression over only the files that can hold ``units`` of
    ``layer`` (from the shard unit ranges in the ``files`` table); a table with no such file maps to its
    view filtered to nothing. Reading a few files instead of a whole layer keeps unit lookups fast on big
    runs. The expressions have no ``layer`` column."""
    wanted = sorted({int(units)} if isinstance(units, int) else {int(u) for u in units})
    cur = conn.cursor()
    try:
        rows = cur.execute(
            "SELECT table_name, path, unit_min, unit_max FROM files WHERE layer = ? ORDER BY path", [layer]
        ).fetchall()
    finally:
        cur.close()
    found: dict[str, list[str]] = {}
    for table, path, lo, hi in rows:
        if lo is None or hi is None or _any_between(wanted, lo, hi):
            found.setdefault(table, []).append(path)
    out = {}
    for table in TABLES:
        paths = found.get(table)
        if paths:
            out[table] = f"read_parquet([{', '.join(_sql_str(p) for p in paths)}], union_by_name=true)"
        else:
            out[table] = f"(SELECT * EXCLUDE (layer) FROM {table} WHERE false)"
    return out


def _any_between(sorted_values: list[int], lo: int, hi: int) -> bool:
    i = bisect.bisect_left(sorted_values, lo)
    return i < len(sorted_values) and sorted_values[i] <= hi
