"""Queries behind the viewer's pages, and the shaping of their results: plain functions of a DuckDB
connection (from :func:`atlas.store.catalog.open_run`) returning pandas frames, small dicts or dataclasses
whose columns are documented where they are built. No Streamlit here, so the latency benchmark and tests
call exactly what the pages call; the pages only lay these out.

Every query takes a fresh cursor (the connection may be shared by several sessions) and filters on
``layer`` first (hive partition pruning) and ``unit`` next (files are sorted by unit, so Parquet row-group
statistics skip the rest).
"""

from __future__ import annotations

import base64
import bisect
import json
import math
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import pandas as pd

from atlas.config import UnitSelection
from atlas.errors import AtlasError
from atlas.store.catalog import RUN_TABLES, SHARD_PROVENANCE, query_run, unit_sources
from atlas.tables import unique_names

# whitelisted sort orders of the layer grid: label -> ORDER BY clause
SORTS: dict[str, str] = {
    "activation ↓": "best_activation DESC NULLS LAST, unit",
    "selectivity (log-prob) ↓": "best_log_prob DESC NULLS LAST, unit",
    "rank ↑": "best_rank ASC NULLS LAST, best_activation DESC NULLS LAST, unit",
    "facet count ↓": "facet_count DESC NULLS LAST, best_activation DESC NULLS LAST, unit",
    "unit ↑": "unit",
}
LABEL_SORTS: dict[str, str] = {  # only offered when the run has label columns (issue 16)
    "label score ↓": "label_score DESC NULLS LAST, unit",
    # labelled units first: an unlabelled unit's margin is its best concept's, a label it did not get
    "label margin ↓": "label IS NULL, label_margin DESC NULLS LAST, unit",
}

TRAJECTORY_METRICS = ("activation", "log_prob", "rank", "prior_residual")
SCHEMA_TABLES = RUN_TABLES
KIND_ORDER = {"best": 0, "last": 1, "snapshot": 2}  # a chain's kept images, in the order they are shown

# truth columns (issue 16); runs written before them lack these columns and the viewer hides their UI
LABEL_COLUMNS = ("label", "label_score", "label_best", "label_runner_up", "label_margin", "tuning_concepts",
                 "tuning_auroc", "tuning_mean")  # fmt: skip
PICTURE_COLUMNS = ("natural_percentile", "flags")
READER_COLUMNS = ("label_shown", "reader_agreement")  # the attribute reader (toy world), later than labels
LABEL_THRESHOLD = 0.85  # as atlas.sampling.concepts.LABEL_THRESHOLD (not imported: it pulls in torch)
TOP_K, TOP_SHARE = 20, 0.5  # as atlas.sampling.concepts: a label shows in half of the unit's top 20 images
WEAK_PERCENTILE = 0.99  # as atlas.sampling.concepts.WEAK_PERCENTILE
# the pictures the audit and the grid's flag filter look at: a unit's results, not its early snapshots
AUDIT_KINDS: dict[str, tuple[str, ...]] = {
    "best and last pictures": ("best", "last"),
    "best pictures": ("best",),
    "every kept picture (with snapshots)": ("best", "last", "snapshot"),
}


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


def model_differences(info: dict[str, Any], other: dict[str, Any]) -> list[str]:
    """The networks (target, generator, ...) whose weights fingerprints differ between two runs' infos;
    a network either run does not record is not compared."""
    mine, theirs = info.get("fingerprints") or {}, other.get("fingerprints") or {}

    def fingerprint(entry: Any) -> Any:  # {"spec": ..., "fingerprint": ...}, or the fingerprint itself
        return entry.get("fingerprint") if isinstance(entry, dict) else entry

    out = []
    for name in ("target", "generator", "dae"):
        a, b = fingerprint(mine.get(name)), fingerprint(theirs.get(name))
        if a and b and a != b:
            out.append({"dae": "DAE priors"}.get(name, f"{name}s"))
    return out


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
    for column in SHARD_PROVENANCE:  # shards written before their marker recorded it
        if column in df:
            df[column] = df[column].fillna("not recorded")
    return df.drop(columns=["done_time"])


def precisions(conn: Any) -> tuple[dict[str, int], int]:
    """(shards per compute precision ('bfloat16', 'float32', ...), most first; shards whose marker predates
    the precision field)."""
    df = _df(conn, "SELECT precision, count(*) AS n FROM shards GROUP BY 1")
    known = [(str(r.precision), int(r.n)) for r in df.itertuples() if isinstance(r.precision, str)]
    unrecorded = int(df.loc[df["precision"].isna(), "n"].sum())
    return dict(sorted(known, key=lambda pn: (-pn[1], pn[0]))), unrecorded


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


# ---- truth columns (issue 16) -----------------------------------------------------------------
@dataclass(frozen=True)
class Truth:
    """Which truth columns the run has: ``labels`` (units.label ... tuning_mean), ``pictures``
    (images.natural_percentile and flags) and ``reader`` (units.label_shown, reader_agreement). Runs written
    before issue 16 have none; runs written before the attribute reader lack ``reader``."""

    labels: bool = False
    pictures: bool = False
    reader: bool = False
    top_share: bool = field(default=False, compare=False)  # units.label_top_share: after the first labels


def table_columns(conn: Any, table: str) -> set[str]:
    """The column names of a view or table (DESCRIBE; reads file footers only)."""
    return {str(r.column_name) for r in _df(conn, f"DESCRIBE {table}").itertuples()}


def truth(conn: Any) -> Truth:
    """Which truth columns the run's tables have (see :class:`Truth`)."""
    units, images = table_columns(conn, "units"), table_columns(conn, "images")
    return Truth(
        labels=set(LABEL_COLUMNS) <= units,
        pictures=set(PICTURE_COLUMNS) <= images,
        reader=set(READER_COLUMNS) <= units,
        top_share="label_top_share" in units,
    )


def split_flags(text: Any) -> list[str]:
    """ "weak,off_path" -> ["weak", "off_path"]; "" or null -> []."""
    return [f for f in text.split(",") if f] if isinstance(text, str) else []


def percentile_text(value: Any) -> str | None:
    """A natural percentile as a badge: 0.9973 -> "p99.7" (rounded down, so a weak picture never reads
    p99.0); 1.0 -> "p100"; null -> None."""
    if value is None or _isnull(value):
        return None
    if float(value) >= 1.0:
        return "p100"
    return f"p{math.floor(float(value) * 1000 + 1e-9) / 10:.1f}"


def _marks(values: list[Any] | tuple[Any, ...]) -> str:
    return ", ".join("?" for _ in values)


def flag_names(conn: Any, layer: str | None = None) -> list[str]:
    """The distinct flags on the run's (or one layer's) pictures, sorted; needs ``truth(conn).pictures``."""
    where, params = ("AND layer = ?", [layer]) if layer is not None else ("", [])
    rows = _df(
        conn,
        f"""SELECT DISTINCT unnest(string_split(flags, ',')) AS flag FROM images
            WHERE flags IS NOT NULL AND flags <> '' {where} ORDER BY 1""",
        params,
    )
    return [str(f) for f in rows["flag"] if f]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _flag_counts_sql(flags: list[str]) -> str:
    """One ``count(*) FILTER`` column per flag (named after it; values bound as parameters)."""
    return "".join(f", count(*) FILTER (WHERE list_contains(fl, ?)) AS {_quote(f)}" for f in flags)


def flag_summary(conn: Any, kinds: tuple[str, ...] = AUDIT_KINDS["best and last pictures"]) -> pd.DataFrame:
    """Per layer, over its pictures of ``kinds``: layer, units, pictures, flagged (pictures with any flag),
    flagged_share, flagged_units (units with a flagged picture), then one picture count per flag."""
    flags = flag_names(conn)
    df = _df(
        conn,
        f"""
        WITH p AS (SELECT layer, unit, flags, string_split(coalesce(flags, ''), ',') AS fl
                   FROM images WHERE kind IN ({_marks(kinds)}))
        SELECT layer, count(DISTINCT unit) AS units, count(*) AS pictures,
               count(*) FILTER (WHERE flags <> '') AS flagged,
               count(DISTINCT unit) FILTER (WHERE flags <> '') AS flagged_units{_flag_counts_sql(flags)}
        FROM p GROUP BY layer ORDER BY layer""",
        [*kinds, *flags],
    )
    df.insert(4, "flagged_share", df["flagged"] / df["pictures"].where(df["pictures"] > 0))
    return df


def flagged_units(
    conn: Any,
    kinds: tuple[str, ...] = AUDIT_KINDS["best and last pictures"],
    layer: str | None = None,
    flag: str | None = None,
    labels: bool = True,
) -> pd.DataFrame:
    """Units with a flagged picture among their pictures of ``kinds`` (carrying ``flag``, or any flag),
    most flagged first: layer, unit, flagged, pictures, lowest_percentile, one count per flag, label,
    label_score (null without ``labels``: a run without label columns)."""
    flags = flag_names(conn, layer)
    layer_sql, layer_params = ("AND layer = ?", [layer]) if layer is not None else ("", [])
    hit = "list_contains(fl, ?)" if flag else "flags <> ''"
    label_sql = "u.label, u.label_score" if labels else "NULL::VARCHAR AS label, NULL::DOUBLE AS label_score"
    return _df(
        conn,
        f"""
        WITH p AS (SELECT layer, unit, flags, natural_percentile, string_split(coalesce(flags, ''), ',') AS fl
                   FROM images WHERE kind IN ({_marks(kinds)}) {layer_sql}),
        f AS (SELECT layer, unit, count(*) FILTER (WHERE {hit}) AS flagged, count(*) AS pictures,
                     min(natural_percentile) AS lowest_percentile{_flag_counts_sql(flags)}
              FROM p GROUP BY layer, unit)
        SELECT f.*, {label_sql}
        FROM f JOIN units u USING (layer, unit) WHERE f.flagged > 0
        ORDER BY f.flagged DESC, f.lowest_percentile ASC NULLS LAST, f.layer, f.unit""",
        [*kinds, *layer_params, *([flag] if flag else []), *flags],
    )


AUDIT_PICTURE_ROWS = 100  # the audit table draws pictures for its first rows only (each read is a PNG)


def audit_pictures(
    conn: Any,
    units: list[tuple[str, int]],
    kinds: tuple[str, ...] = AUDIT_KINDS["best and last pictures"],
    flag: str | None = None,
) -> dict[tuple[str, int], tuple[bytes | None, bytes | None]]:
    """(layer, unit) -> (its flagged picture of ``kinds`` with the lowest natural percentile, carrying
    ``flag`` or any flag; its most activating natural image) as PNG bytes, for the audit table."""
    hit = "list_contains(string_split(flags, ','), ?)" if flag else "coalesce(flags, '') <> ''"
    out: dict[tuple[str, int], tuple[bytes | None, bytes | None]] = {}
    for layer in sorted({layer for layer, _ in units}):
        ids = sorted({unit for name, unit in units if name == layer})
        src = unit_sources(conn, layer, ids)["images"]  # only the files that hold these units
        rows = _df(
            conn,
            f"""SELECT unit,
                       arg_min(png, coalesce(natural_percentile, 1e9))
                           FILTER (WHERE kind IN ({_marks(kinds)}) AND {hit}) AS flagged,
                       arg_max(png, coalesce(activation, -1e308)) FILTER (WHERE kind = 'real') AS natural
                FROM {src} WHERE unit IN ({_marks(ids)}) GROUP BY unit""",
            [*kinds, *([flag] if flag else []), *ids],
        )
        out.update(
            ((layer, int(r.unit)), (png_bytes(r.flagged), png_bytes(r.natural))) for r in rows.itertuples()
        )
    return out


PNG_DATA_URL = "data:image/png;base64,"  # what a dataframe's image column draws


def png_data_url(png: bytes | None) -> str | None:
    """A PNG as a ``data:`` URL (:data:`PNG_DATA_URL`)."""
    return None if png is None else PNG_DATA_URL + base64.b64encode(png).decode("ascii")


def unit_flag_counts(
    conn: Any, layer: str, units: list[int], kinds: tuple[str, ...] = AUDIT_KINDS["best and last pictures"]
) -> dict[int, dict[str, int]]:
    """unit -> {flag: pictures of ``kinds`` carrying it} for ``units`` of ``layer`` (units without flagged
    pictures absent); needs ``truth(conn).pictures``."""
    if not units:
        return {}
    rows = _df(
        conn,
        f"""SELECT unit, flag, count(*) AS n
            FROM (SELECT unit, unnest(string_split(flags, ',')) AS flag FROM images
                  WHERE layer = ? AND unit BETWEEN ? AND ? AND unit IN ({_marks(units)})
                  AND kind IN ({_marks(kinds)}) AND flags <> '')
            WHERE flag <> '' GROUP BY ALL ORDER BY ALL""",
        [layer, min(units), max(units), *units, *kinds],
    )
    out: dict[int, dict[str, int]] = {}
    for r in rows.itertuples():
        out.setdefault(int(r.unit), {})[str(r.flag)] = int(r.n)
    return out


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
    label_text: str = ""  # substring of the label (case-insensitive); "no label": units without one
    flag: str | None = None  # only units with a picture of flag_kinds carrying this flag (e.g. "weak")
    flag_kinds: tuple[str, ...] = AUDIT_KINDS["best and last pictures"]


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
    _truth_where(q, where, params)
    return " AND ".join(where), params


def _truth_where(q: GridQuery, where: list[str], params: list[Any]) -> None:
    """The label and flag filters (only set by the page when the run has those columns)."""
    text = q.label_text.strip()
    if text.lower() == "no label":
        where.append("label IS NULL")
    elif text:
        where.append("contains(lower(coalesce(label, '')), lower(?))")
        params.append(text)
    if q.flag:
        where.append(
            f"""unit IN (SELECT unit FROM images WHERE layer = ? AND kind IN ({_marks(q.flag_kinds)})
                AND list_contains(string_split(flags, ','), ?))"""
        )
        params.extend([q.layer, *q.flag_kinds, q.flag])


def sorts(labels: bool) -> list[str]:
    """The grid's sort orders (label ones only for a run with label columns)."""
    return [*SORTS, *(LABEL_SORTS if labels else ())]


def has_verdicts(conn: Any, layer: str) -> bool:
    """Whether the judge gave a verdict on any unit of ``layer`` (output units of a run with a judge)."""
    row = _one(conn, "SELECT count(judge_correct) FROM units WHERE layer = ?", [layer])
    return bool(row and row[0])


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
    facet_count, judge_label, judge_correct, status, label, label_score (null in a run without label
    columns), png (the unit's best image as bytes, or None), flag_counts ({flag: pictures of
    ``q.flag_kinds`` carrying it}; {} when none or the run has no flags). Only the units of this page are
    read."""
    have = truth(conn)
    where, params = _grid_where(q)
    order = {**SORTS, **(LABEL_SORTS if have.labels else {})}.get(q.sort, SORTS["unit ↑"])
    share = "label_top_share" if have.top_share else "NULL AS label_top_share"
    label_sql = (
        f"label, label_score, label_best, {share}"
        if have.labels
        else "NULL::VARCHAR AS label, NULL::DOUBLE AS label_score, NULL::VARCHAR AS label_best, "
        "NULL::DOUBLE AS label_top_share"
    )
    units = _df(
        conn,
        f"""SELECT unit, best_activation, best_log_prob, best_rank, facet_count, judge_label, judge_correct,
                   status, {label_sql} FROM units WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?""",
        [*params, int(q.page_size), int(q.page) * int(q.page_size)],
    )
    if units.empty:
        return units.assign(png=pd.Series(dtype=object), flag_counts=pd.Series(dtype=object))
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
    counts = unit_flag_counts(conn, q.layer, ids, q.flag_kinds) if have.pictures else {}
    return out.assign(
        png=[png_bytes(v) for v in out["png"]], flag_counts=[counts.get(int(u), {}) for u in out["unit"]]
    )


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
        f"""SELECT * EXCLUDE (unit) FROM {src["chains"]} WHERE unit = ? ORDER BY chain""",  # the columns
        # this run has: passes and stopped_step came later
        [unit],
    )


IMAGE_COLUMNS = ["chain", "kind", "step", "facet", "real_index", "png", "width", "height", "activation",
                 "log_prob", "rank", *PICTURE_COLUMNS, "path_z", "path_percentile"]  # fmt: skip


def unit_images(conn: Any, layer: str, unit: int, src: Sources | None = None) -> pd.DataFrame:
    """All kept images of a unit (synthetic and real), PNG bytes included: IMAGE_COLUMNS (natural_percentile
    and flags null when the unit's files predate them)."""
    src = _src(conn, layer, unit, src)
    df = _df(
        conn,
        f"""SELECT * FROM {src["images"]} WHERE unit = ?
           ORDER BY kind = 'real', chain, CASE kind WHEN 'best' THEN 0 WHEN 'last' THEN 1 ELSE 2 END, step""",
        [unit],
    )
    missing = {c: None for c in IMAGE_COLUMNS if c not in df.columns}
    return df.assign(**missing)[IMAGE_COLUMNS]


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
class LabelView:
    """A unit's concept label (issue 16). ``label`` None: "no label" (:func:`no_label_reason`: the best
    concept's AUROC ``score`` is below LABEL_THRESHOLD, it shows in fewer than TOP_SHARE of the unit's top
    images, or no image activates the unit); ``best`` None as well: no labelled natural images.
    ``tuning``: concept, auroc, mean (the unit's mean activation on the concept's natural images),
    is_label; best first."""

    label: str | None
    score: float | None
    best: str | None
    runner_up: str | None
    margin: float | None
    tuning: pd.DataFrame
    label_shown: float | None = None  # share of the chains' last pictures the reader finds the label in
    reader_agreement: float | None = None  # agreement of their decoded attributes (1 = all alike)
    dissection_label: str | None = None  # conv units: Network Dissection's concept (IoU >= 0.04)
    dissection_iou: float | None = None  # its IoU (also below the threshold); None: not dissected
    cell: tuple[int, int, int, int] | None = None  # conv units: the image block (y0, y1, x0, x1) it reads
    top_share: float | None = None  # share of the unit's top TOP_K natural images that show label / best


def _list(value: Any) -> list[Any]:
    return [] if value is None or _isnull(value) else list(value)


def label_view(row: dict[str, Any] | None) -> LabelView | None:
    """The label columns of a units row, shaped; None when the row has none (a run older than them)."""
    if row is None or "label_score" not in row:
        return None
    concepts, aurocs, means = (_list(row.get(c)) for c in ("tuning_concepts", "tuning_auroc", "tuning_mean"))
    n = min(len(concepts), len(aurocs), len(means))
    tuning = pd.DataFrame(
        {"concept": concepts[:n], "auroc": aurocs[:n], "mean": means[:n]},
        columns=["concept", "auroc", "mean"],
    )
    tuning["is_label"] = tuning["concept"] == row.get("label")
    return LabelView(
        label=row.get("label"),
        score=row.get("label_score"),
        best=row.get("label_best"),
        runner_up=row.get("label_runner_up"),
        margin=row.get("label_margin"),
        tuning=tuning,
        label_shown=row.get("label_shown"),
        reader_agreement=row.get("reader_agreement"),
        dissection_label=None if _isnull(row.get("dissection_label")) else row.get("dissection_label"),
        dissection_iou=None if _isnull(row.get("dissection_iou")) else row.get("dissection_iou"),
        cell=_cell(row.get("label_cell")),
        top_share=None if _isnull(row.get("label_top_share")) else row.get("label_top_share"),
    )


def no_label_reason(lab: LabelView, *, code: str = "`") -> str:
    """Why a unit with a best concept has no label, by the labelling rules (atlas.sampling.concepts) in
    their order: AUROC below the threshold, then too few of the unit's top images showing it, else silence.
    Markdown (``code`` around the concept, ``**`` around the score); ``code=""`` for plain text."""
    best, score = f"{code}{lab.best}{code}", _fmt_score(lab.score)
    bold = "**" if code else ""
    if lab.score is None or _isnull(lab.score) or lab.score < LABEL_THRESHOLD:
        return f"best concept {best} reaches only AUROC {bold}{score}{bold} (< {LABEL_THRESHOLD})"
    if lab.top_share is not None and lab.top_share < TOP_SHARE:
        return (
            f"best concept {best} has AUROC {bold}{score}{bold}, but only {lab.top_share:.0%} of the unit's "
            f"top {TOP_K} natural images show it (a label needs {TOP_SHARE:.0%})"
        )
    if lab.top_share is None:
        return (
            f"best concept {best} (AUROC {bold}{score}{bold}) does not describe the unit's top natural images"
        )
    return (
        f"best concept {best} has AUROC {bold}{score}{bold}, but no natural image activates the unit (silent)"
    )


def _fmt_score(value: Any) -> str:
    return "–" if value is None or _isnull(value) else f"{float(value):.3f}"


def _cell(value: Any) -> tuple[int, int, int, int] | None:
    cell = _list(value)
    return tuple(int(v) for v in cell) if len(cell) == 4 else None  # type: ignore[return-value]


def is_place_bound(concept: str | None) -> bool:
    """A conv unit's concept about its own place: ``here:edge``, ``colour:red@here`` (as
    atlas.sampling.concepts ``place_kind`` is not None; not imported: it pulls in torch)."""
    return concept is not None and (concept.startswith("here:") or concept.endswith("@here"))


def outline_cell(
    png: bytes | None, cell: tuple[int, int, int, int] | None, min_side: int = 128
) -> bytes | None:
    """The picture enlarged (nearest neighbour, by an integer factor s to at least ``min_side`` pixels) with
    the conv unit's cell (y0, y1, x0, x1 in the picture's pixels) framed just outside it: a white line then a
    black one, each max(1, s // 2) pixels wide, so the frame shows on any colour and covers none of the
    cell's pixels; the png unchanged without a cell."""
    if png is None or cell is None:
        return png
    import io

    from PIL import Image, ImageDraw

    img = Image.open(io.BytesIO(png)).convert("RGB")
    scale = max(1, -(-min_side // max(img.size)))
    img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    y0, y1, x0, x1 = (v * scale for v in cell)
    t = max(1, scale // 2)  # line width: still visible when the page shows the picture smaller
    draw = ImageDraw.Draw(img)
    draw.rectangle((x0 - 2 * t, y0 - 2 * t, x1 - 1 + 2 * t, y1 - 1 + 2 * t), outline=(0, 0, 0), width=t)
    draw.rectangle((x0 - t, y0 - t, x1 - 1 + t, y1 - 1 + t), outline=(255, 255, 255), width=t)
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def with_outlined_cell(view: UnitView) -> UnitView:
    """``view`` with every picture (facets, real top-k, chains' images) outlined at the unit's cell
    (:func:`outline_cell`); unchanged for a unit without one."""
    cell = view.label.cell if view.label is not None else None
    if cell is None:
        return view

    def outlined(df: pd.DataFrame) -> pd.DataFrame:
        return df.assign(png=[outline_cell(p, cell) for p in df["png"]]) if "png" in df else df

    return replace(
        view,
        facets=outlined(view.facets),
        real=outlined(view.real),
        chain_images={chain: outlined(df) for chain, df in view.chain_images.items()},
    )


@dataclass(frozen=True)
class UnitView:
    """The unit page, shaped (every ``png`` is bytes or None).

    facets: one row per facet (``facet`` ascending, missing last): facet, chain, activation, png — the best
        'best' image of the facet. real: the real top-k, activation descending: rank (1-based), activation,
        real_index, png. chain_images: chain -> up to ``per_chain`` kept images (best, last, then snapshots
        by step): kind, step, activation, png. facets and chain_images also carry natural_percentile, badge
        (:func:`percentile_text`, None when unknown) and flags (a list; [] when none or unknown).
        chains / steps / competitors: as :func:`unit_chains`, :func:`unit_steps`, :func:`unit_competitors`.
        metrics: the trajectory metrics with a recorded value. label: :func:`label_view` (None: the run
        has no label columns).
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
    label: LabelView | None = None


def _with_png(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    out = df[columns].reset_index(drop=True)
    return out.assign(png=[png_bytes(v) for v in out["png"]])


def _with_badges(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """:func:`_with_png` plus natural_percentile, badge and flags (a list) of each picture."""
    extra = [c for c in ("path_z", "path_percentile") if c in df.columns]
    out = _with_png(df, [*columns, *PICTURE_COLUMNS, *extra])
    percentiles = [None if _isnull(v) else float(v) for v in out["natural_percentile"]]
    z = out["path_z"] if "path_z" in extra else [None] * len(out)
    pct = out["path_percentile"] if "path_percentile" in extra else [None] * len(out)
    paths = [_path_badge(p, zz) for p, zz in zip(pct, z, strict=True)]
    return out.assign(
        natural_percentile=pd.Series(percentiles, dtype=object),
        badge=[badge_text(p, z) for p, z in zip(percentiles, paths, strict=True)],
        flags=[split_flags(v) for v in out["flags"]],
    )


def _path_badge(path_percentile: Any, path_z: Any) -> str | float | None:
    """The path percentile as "p45" (runs with it), else the path z of older runs, else None."""
    if path_percentile is not None and not _isnull(path_percentile):
        return f"p{100 * float(path_percentile):.0f}"
    return None if path_z is None or _isnull(path_z) else float(path_z)


def badge_text(percentile: Any, path: Any) -> str | None:
    """A picture's badge: its natural percentile ("p99.7"), then its path: the path percentile as text
    ("p100 · path p45", runs with ``path_percentile``) or, in older runs, its path z ("p100 · path -0.3")."""
    text = percentile_text(percentile)
    if path is None or (not isinstance(path, str) and _isnull(path)):
        return text
    shown = path if isinstance(path, str) else f"{float(path):+.1f}"
    return f"{text or 'p?'} · path {shown}"


def facet_images(images: pd.DataFrame) -> pd.DataFrame:
    """Per facet, its most activating 'best' image: facet, chain, activation, png (facet order)."""
    best = images[images["kind"] == "best"].sort_values("activation", ascending=False, na_position="last")
    top = best.groupby("facet", dropna=False, sort=True).head(1)
    top = top.sort_values("facet", na_position="last", kind="stable")
    return _with_badges(top, ["facet", "chain", "activation", "png"])


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
        int(chain): _with_badges(group.head(per_chain), ["kind", "step", "activation", "png"])
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
        label=label_view(page["unit"]),
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
PICTURE_ROWS = 500  # console results up to this many rows show PNG cells as pictures (data URLs)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def result_frame(columns: list[str], rows: list[tuple[Any, ...]]) -> pd.DataFrame:
    """A console result as a frame: PNG cells as ``data:image/png`` URLs (the console draws them) when the
    result has at most :data:`PICTURE_ROWS` rows, other binary cells as ``<N bytes>``."""
    pictures = len(rows) <= PICTURE_ROWS

    def cell(value: Any) -> Any:
        if isinstance(value, bytes | bytearray | memoryview):
            raw = bytes(value)
            if pictures and raw.startswith(PNG_MAGIC):
                return png_data_url(raw)
            return f"<{len(raw)} bytes>"
        return value

    return pd.DataFrame([[cell(v) for v in r] for r in rows], columns=unique_names(columns))


def picture_columns(frame: pd.DataFrame) -> list[str]:
    """The columns of a console result that hold pictures (see :func:`result_frame`)."""
    return [
        str(c)
        for c in frame.columns
        if frame[c].map(lambda v: isinstance(v, str) and v.startswith(PNG_DATA_URL)).any()
    ]


@dataclass(frozen=True)
class ConsoleResult:
    """One SQL console run: ``frame`` (see :func:`result_frame`) or ``error`` (a refusal or failure)."""

    sql: str
    frame: pd.DataFrame | None = None
    run: str = ""  # the run's URI: a result belongs to its run and its text
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
        return ConsoleResult(sql=sql, error=str(exc), run=str(run_dir))
    frame = result_frame(columns, rows)
    seconds = time.perf_counter() - start
    return ConsoleResult(sql=sql, frame=frame, truncated=truncated, seconds=seconds, run=str(run_dir))


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
    "where the shards ran (precision, device, host)": (
        "SELECT precision, device, host, count(*) AS shards, sum(units_rows) AS units,\n"
        "       sum(seconds) AS seconds\nFROM shards GROUP BY ALL ORDER BY shards DESC"
    ),
    "units by label": (
        "SELECT label, count(*) AS units, avg(label_score) AS mean_auroc,\n"
        "       list(unit ORDER BY unit) AS unit_ids\n"
        "FROM units WHERE layer = '{layer}' AND label IS NOT NULL\nGROUP BY label ORDER BY units DESC, label"
    ),
    "units with no label": (
        "SELECT layer, unit, label_best, label_score, label_runner_up, label_margin\n"
        "FROM units WHERE label IS NULL\nORDER BY layer, label_score DESC NULLS LAST"
    ),
    "share of weak pictures per layer": (
        "SELECT layer, count(*) AS pictures,\n"
        "       avg(list_contains(string_split(flags, ','), 'weak')::INT) AS weak_share,\n"
        "       median(natural_percentile) AS median_percentile\n"
        "FROM images WHERE kind IN ('best', 'last')\nGROUP BY layer ORDER BY layer"
    ),
    "label shown per layer": (
        "SELECT layer, kind, count(label) AS labelled, avg(label_shown) AS label_shown,\n"
        "       avg(reader_agreement) AS reader_agreement\n"
        "FROM units GROUP BY layer, kind ORDER BY layer"
    ),
    "label vs judge (output units)": (
        "SELECT layer, unit, label, label_score, judge_label, judge_correct,\n"
        "       (label LIKE 'class:%' AND list_contains(string_split(label[7:], '|'),\n"
        "                                             split_part(judge_label, '/', 1)))\n"
        "       OR label = 'facet:' || judge_label AS label_agrees  -- J says 'pill/capsule'; a union 'a|b'\n"
        "FROM units WHERE kind = 'output'\nORDER BY label_agrees, layer, unit"
    ),
}
# the examples that need truth columns (issue 16): name -> the Truth field they need
TRUTH_EXAMPLES = {
    "units by label": "labels",
    "units with no label": "labels",
    "share of weak pictures per layer": "pictures",
    "label vs judge (output units)": "labels",
    "label shown per layer": "reader",
}


def example_names(have: Truth) -> list[str]:
    """The console's example queries that run on this run (those needing missing columns left out)."""
    return [n for n in EXAMPLE_QUERIES if n not in TRUTH_EXAMPLES or getattr(have, TRUTH_EXAMPLES[n])]
