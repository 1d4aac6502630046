"""Queries behind the viewer's pages, and the shaping of their results: plain functions of a DuckDB
connection (from :func:`atlas.store.catalog.open_run`) returning pandas frames, small dicts or dataclasses
whose columns are documented where they are built. No Streamlit here, so the latency benchmark and tests
call exactly what the pages call; the pages only lay these out.

Every query takes a fresh cursor (the connection may be shared by several sessions) and filters on
``layer`` first (hive partition pruning) and ``unit`` next (files are sorted by unit, so Parquet row-group
statistics skip the rest).
"""

from __future__ import annotations

import bisect
import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd

from atlas.config import UnitSelection
from atlas.errors import AtlasError
from atlas.store.catalog import query_run, unit_sources

# whitelisted sort orders of the layer grid: label -> ORDER BY clause
SORTS: dict[str, str] = {
    "activation ↓": "best_activation DESC NULLS LAST, unit",
    "selectivity (log-prob) ↓": "best_log_prob DESC NULLS LAST, unit",
    "rank ↑": "best_rank ASC NULLS LAST, best_activation DESC NULLS LAST, unit",
    "facet count ↓": "facet_count DESC NULLS LAST, best_activation DESC NULLS LAST, unit",
    "unit ↑": "unit",
}

TRAJECTORY_METRICS = ("activation", "log_prob", "rank", "prior_residual")
SCHEMA_TABLES = ("units", "chains", "images", "steps", "activations", "run", "shards", "files")
KIND_ORDER = {"best": 0, "last": 1, "snapshot": 2}  # a chain's kept images, in the order they are shown


def _df(conn: Any, sql: str, params: list[Any] | tuple[Any, ...] = ()) -> pd.DataFrame:
    cur = conn.cursor()
    try:
        return cur.execute(sql, list(params)).df()
    finally:
        cur.close()


def _one(conn: Any, sql: str, params: list[Any] | tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
    cur = conn.cursor()
    try:
        return cur.execute(sql, list(params)).fetchone()
    finally:
        cur.close()


# ---- run level --------------------------------------------------------------------------------
def run_info(conn: Any) -> dict[str, Any]:
    """The ``run`` table as a dict, with config / fingerprints / versions parsed from JSON."""
    df = _df(conn, "SELECT * FROM run")
    info = {k: (None if pd.isna(v) else v) for k, v in df.iloc[0].to_dict().items()} if len(df) else {}
    for key in ("config", "fingerprints", "versions"):
        if isinstance(info.get(key), str):
            info[key] = json.loads(info[key])
    return info


def layers(conn: Any, config: Any = None) -> list[tuple[str, int]]:
    """(layer, unit count) in the order the config names them (unknown layers last, by name)."""
    rows = _df(conn, "SELECT layer, count(*) AS n FROM units GROUP BY layer")
    text = json.dumps(config, sort_keys=False) if config is not None else ""

    def order(name: str) -> tuple[int, str]:
        pos = text.find(json.dumps(name))
        return (pos if pos >= 0 else len(text) + 1, name)

    pairs = [(str(r.layer), int(r.n)) for r in rows.itertuples()]
    return sorted(pairs, key=lambda p: order(p[0]))


def layer_summary(conn: Any) -> pd.DataFrame:
    """Per-layer counts and means (units, chains, diverged, activation, facets, judge accuracy)."""
    return _df(
        conn,
        """
        WITH u AS (
            SELECT layer, count(*) AS units, avg(best_activation) AS mean_best_activation,
                   avg(best_log_prob) AS mean_best_log_prob, avg(facet_count) AS mean_facets,
                   avg(CASE WHEN judge_correct THEN 1.0 WHEN judge_correct IS NULL THEN NULL ELSE 0.0 END)
                       AS judge_accuracy,
                   count(*) FILTER (WHERE status IS NOT NULL AND status <> 'ok') AS failed_units
            FROM units GROUP BY layer),
        c AS (
            SELECT layer, count(*) AS chains, count(*) FILTER (WHERE diverged) AS diverged_chains,
                   sum(seconds) AS chain_seconds
            FROM chains GROUP BY layer)
        SELECT u.*, coalesce(c.chains, 0) AS chains, coalesce(c.diverged_chains, 0) AS diverged_chains,
               c.chain_seconds
        FROM u LEFT JOIN c USING (layer) ORDER BY layer
        """,
    )


def layer_table(conn: Any, order: list[str]) -> pd.DataFrame:
    """The overview's layer table, in ``order`` (config order): layer, units, chains, diverged_chains,
    mean_best_activation, mean_best_log_prob, mean_facets, judge_accuracy, failed_units."""
    columns = ["layer", "units", "chains", "diverged_chains", "mean_best_activation", "mean_best_log_prob",
               "mean_facets", "judge_accuracy", "failed_units"]  # fmt: skip
    table = layer_summary(conn)[columns]
    rank = {name: i for i, name in enumerate(order)}
    return table.sort_values("layer", key=lambda s: s.map(rank)).reset_index(drop=True)


def layer_stats(conn: Any, layer: str) -> dict[str, Any] | None:
    """One layer's row of :func:`layer_summary` as a dict (None when the run has no such layer)."""
    summary = layer_summary(conn)
    rows = summary[summary["layer"] == layer]
    return rows.iloc[0].to_dict() if len(rows) else None


def counts(conn: Any) -> dict[str, int]:
    """Row counts of every table (images counted without reading PNG bytes)."""
    out = {}
    for table in ("units", "chains", "images", "steps"):
        row = _one(conn, f"SELECT count(*) FROM {table}")
        out[table] = int(row[0]) if row else 0
    return out


def distributions(conn: Any) -> pd.DataFrame:
    """One row per unit: layer, unit, best activation, best log-prob, facet count."""
    return _df(conn, "SELECT layer, unit, best_activation, best_log_prob, facet_count FROM units")


def diverged_chains(conn: Any, limit: int = 200) -> pd.DataFrame:
    return _df(
        conn,
        """SELECT layer, unit, chain, method, start, best_activation, best_step, steps
           FROM chains WHERE diverged ORDER BY layer, unit, chain LIMIT ?""",
        [limit],
    )


def created_ts(text: str | None) -> float | None:
    """The run's ``created`` (ISO 8601) as a POSIX timestamp; None when missing or unreadable."""
    try:
        return datetime.fromisoformat(text).timestamp() if text else None
    except ValueError:
        return None


def shards(conn: Any) -> pd.DataFrame:
    """Completed shards, oldest first: the ``shards`` table, ``done_time`` shown as ``done`` (HH:MM:SS)."""
    df = _df(conn, "SELECT * FROM shards ORDER BY done_time")
    df["done"] = pd.to_datetime(df["done_time"], unit="s").dt.strftime("%H:%M:%S")
    return df.drop(columns=["done_time"])


def schema(conn: Any, tables: tuple[str, ...] = SCHEMA_TABLES) -> dict[str, list[tuple[str, str]]]:
    """table -> [(column, lower-case type)] for the SQL console's schema list."""
    out = {}
    for table in tables:
        rows = _df(conn, f"DESCRIBE {table}")
        out[table] = [(str(r.column_name), str(r.column_type).lower()) for r in rows.itertuples()]
    return out


def throughput(conn: Any, created_ts: float | None) -> dict[str, float | None]:
    """Units per minute from shard completion times (and the run's start time when known)."""
    row = _one(
        conn,
        "SELECT min(done_time), max(done_time), sum(units_rows), count(*), sum(seconds) FROM shards",
    )
    if not row or row[3] == 0:
        return {"units_per_min": None, "wall_s": None, "shard_seconds": None}
    first, last, units, n, seconds = row
    start = created_ts if created_ts is not None and created_ts <= first else None
    wall = (last - start) if start is not None else (last - first) * n / max(n - 1, 1)
    return {
        "units_per_min": (units / wall * 60) if wall and wall > 0 else None,
        "wall_s": wall,
        "shard_seconds": seconds,
    }


def run_stats(conn: Any, created: str | None) -> dict[str, Any]:
    """The overview's numbers: row counts (units, chains, images, steps), throughput (units_per_min, wall_s,
    shard_seconds), diverged_chains (int) and diverged_fraction (of all chains)."""
    rows = counts(conn)
    summary = layer_summary(conn)
    diverged = int(summary["diverged_chains"].sum()) if len(summary) else 0
    return {
        **rows,
        **throughput(conn, created_ts(created)),
        "diverged_chains": diverged,
        "diverged_fraction": diverged / max(rows["chains"], 1),
    }


def methods(conn: Any) -> list[str]:
    """The sampling methods of the run's chains, sorted."""
    rows = _df(conn, "SELECT DISTINCT method FROM chains WHERE method IS NOT NULL ORDER BY 1")
    return [str(m) for m in rows["method"]]


# ---- layer grid -------------------------------------------------------------------------------
@dataclass(frozen=True)
class GridQuery:
    layer: str
    sort: str = "activation ↓"
    min_facets: int = 0
    units: tuple[tuple[int, int], ...] = ()  # inclusive unit ranges (from parse_units); () = every unit
    only_correct: bool | None = None
    page: int = 0
    page_size: int = 48


def parse_units(text: str) -> tuple[tuple[int, int], ...]:
    """ "3, 7, 10-20" -> ((3, 3), (7, 7), (10, 20)); "" or "all" -> () (no filter).

    Read by :meth:`atlas.config.UnitSelection.parse`, the config's own parser (raises ConfigError)."""
    if not text.strip():
        return ()
    selection = UnitSelection.parse(text, "units")
    return () if selection.all else tuple(selection.ranges)


def _merge(ranges: tuple[tuple[int, int], ...] | list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


def expand_units(ranges: tuple[tuple[int, int], ...], limit: int) -> tuple[list[int], int]:
    """The first ``limit`` distinct units of ``ranges`` (ascending) and how many they select in all;
    never lists more than ``limit`` ids, whatever the ranges."""
    merged = _merge(ranges)
    shown: list[int] = []
    for lo, hi in merged:
        shown.extend(range(lo, min(hi + 1, lo + limit - len(shown))))
    return shown, sum(hi - lo + 1 for lo, hi in merged)


def units_from(ids: list[int], unit: int | None, n: int) -> list[int]:
    """Up to ``n`` ids of ``ids`` (sorted) starting at ``unit`` (at the first id when ``unit`` is absent)."""
    i = bisect.bisect_left(ids, unit) if unit is not None else 0
    return ids[i : i + n] if i < len(ids) and ids[i] == unit else ids[:n]


def format_units(units: list[int]) -> str:
    """[0, 1, 2, 3, 7] -> "0-3, 7" (read back by :func:`parse_units`)."""
    return ", ".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in _merge([(u, u) for u in units]))


def _grid_where(q: GridQuery) -> tuple[str, list[Any]]:
    where, params = ["layer = ?"], [q.layer]
    if q.min_facets:
        where.append("facet_count >= ?")
        params.append(int(q.min_facets))
    if q.only_correct is not None:
        where.append("judge_correct = ?")
        params.append(bool(q.only_correct))
    if q.units:
        where.append("(" + " OR ".join("unit BETWEEN ? AND ?" for _ in q.units) + ")")
        for a, b in q.units:
            params.extend([a, b])
    return " AND ".join(where), params


def max_facet_count(conn: Any, layer: str) -> int:
    """The largest facet count of the layer's units (at least 1: the grid's filter bound)."""
    row = _one(conn, "SELECT max(facet_count) FROM units WHERE layer = ?", [layer])
    return max(int(row[0]), 1) if row and row[0] is not None else 1


def grid_count(conn: Any, q: GridQuery) -> int:
    where, params = _grid_where(q)
    row = _one(conn, f"SELECT count(*) FROM units WHERE {where}", params)
    return int(row[0]) if row else 0


def grid_page(conn: Any, q: GridQuery) -> pd.DataFrame:
    """The visible page of the grid, in the sort order: unit, best_activation, best_log_prob, best_rank,
    facet_count, judge_label, judge_correct, status, png (the unit's best image as bytes, or None).
    Only the units of this page are read."""
    where, params = _grid_where(q)
    order = SORTS.get(q.sort, SORTS["unit ↑"])
    units = _df(
        conn,
        f"""SELECT unit, best_activation, best_log_prob, best_rank, facet_count, judge_label, judge_correct,
                   status FROM units WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?""",
        [*params, int(q.page_size), int(q.page) * int(q.page_size)],
    )
    if units.empty:
        return units.assign(png=pd.Series(dtype=object))
    ids = [int(u) for u in units["unit"]]
    marks = ", ".join("?" for _ in ids)
    src = unit_sources(conn, q.layer, ids)["images"]  # only the shards holding these units
    images = _df(
        conn,
        f"""SELECT unit, arg_max(png, coalesce(activation, -1e308)) AS png
            FROM {src} WHERE unit BETWEEN ? AND ? AND unit IN ({marks}) AND kind = 'best'
            GROUP BY unit""",
        [min(ids), max(ids), *ids],
    )
    out = units.merge(images, on="unit", how="left")
    return out.assign(png=[png_bytes(v) for v in out["png"]])


def png_bytes(value: Any) -> bytes | None:
    """PNG bytes of a cell (DuckDB gives bytes or memoryview; missing or empty -> None)."""
    return bytes(value) if isinstance(value, bytes | bytearray | memoryview) and len(value) else None


# ---- unit page --------------------------------------------------------------------------------
def unit_ids(conn: Any, layer: str) -> list[int]:
    cur = conn.cursor()
    try:
        return [
            r[0]
            for r in cur.execute("SELECT unit FROM units WHERE layer = ? ORDER BY unit", [layer]).fetchall()
        ]
    finally:
        cur.close()


def neighbours(
    conn: Any, layer: str, unit: int, ids: list[int] | None = None
) -> tuple[int | None, int | None]:
    """The previous and next unit ids present in the layer (from ``ids``, sorted, when given)."""
    if ids is not None:
        i = bisect.bisect_left(ids, unit)
        prev = ids[i - 1] if i > 0 else None
        j = i + 1 if i < len(ids) and ids[i] == unit else i
        return prev, (ids[j] if j < len(ids) else None)
    row = _one(
        conn,
        """SELECT max(unit) FILTER (WHERE unit < ?), min(unit) FILTER (WHERE unit > ?)
           FROM units WHERE layer = ?""",
        [unit, unit, layer],
    )
    return (row[0], row[1]) if row else (None, None)


Sources = dict[str, str]


def _src(conn: Any, layer: str, unit: int, src: Sources | None) -> Sources:
    return src if src is not None else unit_sources(conn, layer, unit)


def unit_row(conn: Any, layer: str, unit: int, src: Sources | None = None) -> dict[str, Any] | None:
    # units is held in memory by the catalog: no file lookup needed
    df = _df(conn, "SELECT * FROM units WHERE layer = ? AND unit = ?", [layer, unit])
    if df.empty:
        return None
    return {k: (None if _isnull(v) else v) for k, v in df.iloc[0].to_dict().items()}


def _isnull(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def unit_chains(conn: Any, layer: str, unit: int, src: Sources | None = None) -> pd.DataFrame:
    src = _src(conn, layer, unit, src)
    return _df(
        conn,
        f"""SELECT chain, method, facet, start, seed, final_activation, final_log_prob, final_rank,
                  best_activation, best_step, diverged, steps, seconds
           FROM {src["chains"]} WHERE unit = ? ORDER BY chain""",
        [unit],
    )


def unit_images(conn: Any, layer: str, unit: int, src: Sources | None = None) -> pd.DataFrame:
    """All kept images of a unit (synthetic and real), PNG bytes included."""
    src = _src(conn, layer, unit, src)
    return _df(
        conn,
        f"""SELECT chain, kind, step, facet, real_index, png, width, height, activation, log_prob, rank
           FROM {src["images"]} WHERE unit = ?
           ORDER BY kind = 'real', chain, CASE kind WHEN 'best' THEN 0 WHEN 'last' THEN 1 ELSE 2 END, step""",
        [unit],
    )


def unit_steps(conn: Any, layer: str, unit: int, src: Sources | None = None) -> pd.DataFrame:
    src = _src(conn, layer, unit, src)
    return _df(
        conn,
        f"""SELECT chain, step, activation, log_prob, rank, top_competitor, code_norm, prior_residual,
                  grad_norm, image_change
           FROM {src["steps"]} WHERE unit = ? ORDER BY chain, step""",
        [unit],
    )


def unit_competitors(
    conn: Any, layer: str, unit: int, k: int = 8, src: Sources | None = None
) -> pd.DataFrame:
    """Units competing with ``unit``: how often each was the top competitor along the trajectories,
    and its mean activation where it shows up among the top units of the chains' final images."""
    src = _src(conn, layer, unit, src)
    return _df(
        conn,
        f"""
        WITH traj AS (
            SELECT top_competitor AS competitor, count(*) AS times_top_competitor
            FROM {src["steps"]} WHERE unit = ? AND top_competitor IS NOT NULL AND top_competitor <> ?
            GROUP BY 1),
        fin AS (
            SELECT t.u AS competitor, count(*) AS in_final_top, avg(t.v) AS mean_final_activation
            FROM (SELECT unnest(top_units) AS u, unnest(top_values) AS v
                  FROM {src["activations"]} WHERE unit = ?) t
            WHERE t.u <> ? GROUP BY 1)
        SELECT competitor, coalesce(times_top_competitor, 0) AS times_top_competitor,
               coalesce(in_final_top, 0) AS in_final_top, mean_final_activation
        FROM traj FULL OUTER JOIN fin USING (competitor)
        ORDER BY times_top_competitor DESC, in_final_top DESC, mean_final_activation DESC NULLS LAST
        LIMIT ?
        """,
        [unit, unit, unit, unit, k],
    )


def unit_page(conn: Any, layer: str, unit: int, ids: list[int] | None = None) -> dict[str, Any]:
    """Everything the unit page shows (the benchmark times exactly this). ``ids``: the layer's sorted unit
    ids when the caller has them cached (the viewer does), else neighbours are queried."""
    src = unit_sources(conn, layer, unit)  # the files holding this unit (one shard per table)
    return {
        "unit": unit_row(conn, layer, unit, src),
        "neighbours": neighbours(conn, layer, unit, ids),
        "chains": unit_chains(conn, layer, unit, src),
        "images": unit_images(conn, layer, unit, src),
        "steps": unit_steps(conn, layer, unit, src),
        "competitors": unit_competitors(conn, layer, unit, src=src),
    }


@dataclass(frozen=True)
class UnitView:
    """The unit page, shaped (every ``png`` is bytes or None).

    facets: one row per facet (``facet`` ascending, missing last): facet, chain, activation, png — the best
        'best' image of the facet. real: the real top-k, activation descending: rank (1-based), activation,
        real_index, png. chain_images: chain -> up to ``per_chain`` kept images (best, last, then snapshots
        by step): kind, step, activation, png. chains / steps / competitors: as :func:`unit_chains`,
        :func:`unit_steps`, :func:`unit_competitors`. metrics: the trajectory metrics with a recorded value.
    """

    layer: str
    unit: int
    row: dict[str, Any] | None  # the units row; None when the unit is not in the layer
    prev: int | None
    next: int | None
    facets: pd.DataFrame
    real: pd.DataFrame
    chain_images: dict[int, pd.DataFrame]
    chains: pd.DataFrame
    steps: pd.DataFrame
    competitors: pd.DataFrame
    metrics: list[str] = field(default_factory=list)


def _with_png(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    out = df[columns].reset_index(drop=True)
    return out.assign(png=[png_bytes(v) for v in out["png"]])


def facet_images(images: pd.DataFrame) -> pd.DataFrame:
    """Per facet, its most activating 'best' image: facet, chain, activation, png (facet order)."""
    best = images[images["kind"] == "best"].sort_values("activation", ascending=False, na_position="last")
    top = best.groupby("facet", dropna=False, sort=True).head(1)
    top = top.sort_values("facet", na_position="last", kind="stable")
    return _with_png(top, ["facet", "chain", "activation", "png"])


def real_images(images: pd.DataFrame) -> pd.DataFrame:
    """The real top-k images, most activating first: rank (1-based), activation, real_index, png."""
    real = images[images["kind"] == "real"].sort_values("activation", ascending=False, kind="stable")
    out = _with_png(real, ["activation", "real_index", "png"])
    return out.assign(rank=range(1, len(out) + 1))[["rank", "activation", "real_index", "png"]]


def chain_images(images: pd.DataFrame, per_chain: int = 8) -> dict[int, pd.DataFrame]:
    """chain -> its first ``per_chain`` kept images (best, last, snapshots by step): kind, step, activation,
    png."""
    synth = images[images["kind"] != "real"]
    synth = synth.assign(_o=synth["kind"].map(KIND_ORDER)).sort_values(["chain", "_o", "step"], kind="stable")
    return {
        int(chain): _with_png(group.head(per_chain), ["kind", "step", "activation", "png"])
        for chain, group in synth.groupby("chain", sort=True)
    }


def recorded_metrics(steps: pd.DataFrame) -> list[str]:
    """The trajectory metrics with at least one value along the chains (in TRAJECTORY_METRICS order)."""
    return [m for m in TRAJECTORY_METRICS if m in steps and steps[m].notna().any()]


def unit_view(conn: Any, layer: str, unit: int, ids: list[int] | None = None) -> UnitView:
    """Everything the unit page shows, queried by :func:`unit_page` and shaped for drawing."""
    page = unit_page(conn, layer, unit, ids)
    images, steps = page["images"], page["steps"]
    prev, nxt = page["neighbours"]
    return UnitView(
        layer=layer,
        unit=unit,
        row=page["unit"],
        prev=prev,
        next=nxt,
        facets=facet_images(images),
        real=real_images(images),
        chain_images=chain_images(images),
        chains=page["chains"],
        steps=steps,
        competitors=page["competitors"],
        metrics=recorded_metrics(steps),
    )


# ---- compare ----------------------------------------------------------------------------------
def best_images(conn: Any, layer: str, units: list[int], method: str | None = None) -> pd.DataFrame:
    """Per unit: its best image (optionally among chains of one method) and that image's activation."""
    if not units:
        return pd.DataFrame(columns=["unit", "png", "activation", "chains"])
    marks = ", ".join("?" for _ in units)
    method_filter = "AND c.method = ?" if method else ""
    params: list[Any] = [min(units), max(units), *units, min(units), max(units), *units]
    if method:
        params.append(method)
    src = unit_sources(conn, layer, units)
    return _df(
        conn,
        f"""
        SELECT i.unit, arg_max(i.png, coalesce(i.activation, -1e308)) AS png, max(i.activation) AS activation,
               count(DISTINCT i.chain) AS chains
        FROM (SELECT * FROM {src["images"]} WHERE unit BETWEEN ? AND ? AND unit IN ({marks})
              AND kind = 'best') i
        JOIN (SELECT unit, chain, method FROM {src["chains"]} WHERE unit BETWEEN ? AND ?
              AND unit IN ({marks})) c
          ON i.unit = c.unit AND i.chain = c.chain
        WHERE true {method_filter}
        GROUP BY i.unit ORDER BY i.unit
        """,
        params,
    )


def best_image_map(conn: Any, layer: str, units: list[int], method: str | None = None) -> dict[int, dict]:
    """unit -> {"png": bytes | None, "activation": float | None} from :func:`best_images` (absent units:
    no best image)."""
    df = best_images(conn, layer, units, method)
    return {
        int(r.unit): {"png": png_bytes(r.png), "activation": None if _isnull(r.activation) else r.activation}
        for r in df.itertuples()
    }


def method_summary(conn: Any, layer: str) -> pd.DataFrame:
    return _df(
        conn,
        """SELECT method, count(*) AS chains, avg(best_activation) AS mean_best_activation,
                  avg(final_log_prob) AS mean_final_log_prob, avg(diverged::INT) AS diverged_rate,
                  avg(seconds) AS mean_seconds
           FROM chains WHERE layer = ? GROUP BY method ORDER BY method""",
        [layer],
    )


# ---- SQL console ----------------------------------------------------------------------------
def result_frame(columns: list[str], rows: list[tuple[Any, ...]]) -> pd.DataFrame:
    """A console result as a frame; binary cells become ``<N bytes>``."""

    def cell(value: Any) -> Any:
        if isinstance(value, bytes | bytearray | memoryview):
            return f"<{len(bytes(value))} bytes>"
        return value

    return pd.DataFrame([[cell(v) for v in r] for r in rows], columns=columns)


@dataclass(frozen=True)
class ConsoleResult:
    """One SQL console run: ``frame`` (see :func:`result_frame`) or ``error`` (a refusal or failure)."""

    sql: str
    frame: pd.DataFrame | None = None
    truncated: bool = False
    seconds: float = 0.0
    error: str | None = None


def console_query(run_dir: Any, sql: str, max_rows: int, timeout_s: float) -> ConsoleResult:
    """Run ``sql`` on a private sandboxed connection (``atlas.store.catalog.query_run``); never raises
    for a refused or failing statement."""
    start = time.perf_counter()
    try:
        columns, rows, truncated = query_run(run_dir, sql, max_rows=max_rows, timeout_s=timeout_s)
    except AtlasError as exc:
        return ConsoleResult(sql=sql, error=str(exc))
    frame = result_frame(columns, rows)
    return ConsoleResult(sql=sql, frame=frame, truncated=truncated, seconds=time.perf_counter() - start)


# ---- SQL console examples -------------------------------------------------------------------
EXAMPLE_QUERIES: dict[str, str] = {
    "units of a layer by facet count": (
        "SELECT unit, facet_count, best_activation, best_log_prob\n"
        "FROM units WHERE layer = '{layer}'\nORDER BY facet_count DESC, best_activation DESC\nLIMIT 50"
    ),
    "diverged chains": (
        "SELECT layer, unit, chain, method, best_activation, best_step\n"
        "FROM chains WHERE diverged\nORDER BY layer, unit, chain"
    ),
    "mean activation per layer": (
        "SELECT layer, count(*) AS units, avg(best_activation) AS mean_best,\n"
        "       avg(mean_last_activation) AS mean_last, avg(facet_count) AS mean_facets\n"
        "FROM units GROUP BY layer ORDER BY layer"
    ),
    "a unit's trajectory": (
        "SELECT chain, step, activation, log_prob, rank, prior_residual\n"
        "FROM steps WHERE layer = '{layer}' AND unit = {unit}\nORDER BY chain, step"
    ),
    "images per kind": (
        "SELECT layer, kind, count(*) AS images, avg(octet_length(png)) AS mean_png_bytes\n"
        "FROM images GROUP BY ALL ORDER BY ALL"
    ),
    "run manifest": "SELECT run_id, status, created, git_sha, shards_done, planned_shards FROM run",
}
