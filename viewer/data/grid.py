"""The layer grid: its filters (``GridQuery``), sort orders, unit-range parsing and one page of tiles."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any

import pandas as pd

from atlas.config import UnitSelection
from atlas.store.catalog import unit_sources
from viewer.data.query import fetch_frame, fetch_one, placeholders, png_bytes
from viewer.data.truth import (
    AUDIT_KINDS,
    SILENT_SQL,
    Truth,
    pictures_sql,
    table_columns,
    truth,
    unit_flag_counts,
)
from viewer.data.units import compact_units, composite_sql

# whitelisted sort orders of the layer grid: label -> ORDER BY clause
SORTS: dict[str, str] = {
    "activation ↓": "best_activation DESC NULLS LAST, unit",
    "activation ↑": "best_activation ASC NULLS LAST, unit",  # the weakest first: where synthesis fell short
    "selectivity (log-prob) ↓": "best_log_prob DESC NULLS LAST, unit",
    "rank ↑": "best_rank ASC NULLS LAST, best_activation DESC NULLS LAST, unit",
    "facet count ↓": "facet_count DESC NULLS LAST, best_activation DESC NULLS LAST, unit",
    "unit ↑": "unit",
}
ACTIVATION_SORTS = ("activation ↓", "activation ↑")  # by the activation of the pictures the tiles show
LABEL_SORTS: dict[str, str] = {  # only offered when the run has label columns (issue 16)
    "label score ↓": "label_score DESC NULLS LAST, unit",
    # labelled units first: an unlabelled unit's margin is its best concept's, a label it did not get
    "label margin ↓": "label IS NULL, label_margin DESC NULLS LAST, unit",
}
FLAG_SORTS: dict[str, str] = {  # only offered when the run has picture flags (issue 16's audit)
    # the units with the most flagged pictures (of the grid's picture kinds) first: where to audit
    "flagged pictures ↓": "coalesce(flagged, 0) DESC, best_activation DESC NULLS LAST, unit",
}
# each order's plain word: what links (?sort=activation) and `atlas export --sort` take
SORT_WORDS: dict[str, str] = {
    "unit": "unit ↑",
    "activation": "activation ↓",
    "weakest": "activation ↑",
    "selectivity": "selectivity (log-prob) ↓",
    "rank": "rank ↑",
    "facets": "facet count ↓",
    "label-score": "label score ↓",
    "label-margin": "label margin ↓",
    "flagged": "flagged pictures ↓",
}
# every sort keeps composites after the layer's own units (they are numbered after them): a composite is
# another kind of objective, and its numbers are not the own units' (a contrast's log-prob is a sum of its
# terms', +113; its rank its first term's; its activation a weighted sum of its terms')


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
    picture: str = "best"  # which of its chains' pictures a tile shows: PICTURES
    natural: str | None = None  # "active": units a natural image activates; "silent": hidden units none does


# the grid's natural-images filter: its choice -> GridQuery.natural (a silent unit: a hidden unit whose
# highest value on the real images is <= 0, ``is_silent``; its facets and labels are of synthetic pictures)
NATURAL: dict[str, str | None] = {
    "all units": None,
    "active on natural images": "active",
    "silent on natural images": "silent",
}


# a tile's picture: the unit's most activating chain picture of this kind ("last": the final iterate, what
# the released act_max.py saves; "best": the highest objective any step reached, what the run ranks by)
PICTURES: dict[str, str] = {"best": "best", "last": "last"}


def parse_units(text: str) -> tuple[tuple[int, int], ...]:
    """ "3, 7, 10-20" -> ((3, 3), (7, 7), (10, 20)); "" or "all" -> () (no filter).

    Read by :meth:`atlas.config.UnitSelection.parse`, the config's own parser (raises ConfigError)."""
    if not text.strip():
        return ()
    selection = UnitSelection.parse(text, "units")
    return () if selection.all else tuple(selection.ranges)


def _merge(
    ranges: tuple[tuple[int, int], ...] | list[tuple[int, int]],
) -> list[tuple[int, int]]:
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


def filter_notes(
    manifest: dict[str, Any],
    damage: dict[str, str],
    layer: str,
    ranges: tuple[tuple[int, int], ...],
    ids: list[int],
    running: bool,
) -> list[str]:
    """Why a units filter (``ranges``; () for all) shows fewer units than it names, a sentence a cause (no
    full stop): planned units in a damaged shard or not written yet (:func:`missing_units`), and units the
    run does not hold at all (``ids``: the layer's units here). The grid and Compare say the same (a user's
    trial: the grid dropped unit 99 of a run holding 0-15 in silence, where Compare named it)."""
    from viewer.data.run import missing_units, planned_units

    said = missing_units(manifest, damage, layer, planned_units(manifest, layer, ranges), ids)
    held = sum(1 for u in ids if any(lo <= u <= hi for lo, hi in ranges))
    if ranges and ids and held < expand_units(ranges, 0)[1]:  # its total counts overlaps once
        yet = " so far (the run is still being written)" if running else ""
        said.append(f"layer {layer} has units {compact_units(ids)}{yet}: the others are left out")
    return said


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
    if q.natural == "silent":
        where.append(SILENT_SQL)
    elif q.natural == "active":
        where.append(f"NOT coalesce({SILENT_SQL}, false)")
    _truth_where(q, where, params)
    return " AND ".join(where), params


def silent_count(conn: Any, layer: str) -> int:
    """How many of the layer's units no natural image activates (:data:`SILENT_SQL`)."""
    row = fetch_one(conn, f"SELECT count(*) FROM units WHERE layer = ? AND {SILENT_SQL}", [layer])
    return int(row[0]) if row else 0


def _truth_where(q: GridQuery, where: list[str], params: list[Any]) -> None:
    """The label and flag filters (only set by the page when the run has those columns)."""
    text = q.label_text.replace("\u200b", "").strip()  # a break the overview's captions hold, when copied
    if text.lower() == "no label":
        where.append("label IS NULL")
    elif text.lower() in ("silent", "no label · silent"):  # as the tiles say it (a user's trial found none)
        where.append(SILENT_SQL)
    elif text:
        where.append("contains(lower(coalesce(label, '')), lower(?))")
        params.append(text)
    if q.flag:
        where.append(
            f"""unit IN (SELECT unit FROM images WHERE layer = ? AND kind IN ({placeholders(q.flag_kinds)})
                AND list_contains(string_split(flags, ','), ?))"""
        )
        params.extend([q.layer, *q.flag_kinds, q.flag])


def sorts(labels: bool, flags: bool = False) -> list[str]:
    """The grid's sort orders (label ones only for a run with label columns, the flag one for a run with
    picture flags)."""
    return [*SORTS, *(LABEL_SORTS if labels else ()), *(FLAG_SORTS if flags else ())]


def has_verdicts(conn: Any, layer: str) -> bool:
    """Whether the judge gave a verdict on any unit of ``layer`` (output units of a run with a judge)."""
    row = fetch_one(conn, "SELECT count(judge_correct) FROM units WHERE layer = ?", [layer])
    return bool(row and row[0])


def max_facet_count(conn: Any, layer: str) -> int:
    """The largest facet count of the layer's units (at least 1: the grid's filter bound)."""
    row = fetch_one(conn, "SELECT max(facet_count) FROM units WHERE layer = ?", [layer])
    return max(int(row[0]), 1) if row and row[0] is not None else 1


def grid_count(conn: Any, q: GridQuery) -> int:
    where, params = _grid_where(q)
    row = fetch_one(conn, f"SELECT count(*) FROM units WHERE {where}", params)
    return int(row[0]) if row else 0


def _grid_order(conn: Any, q: GridQuery, have: Truth) -> tuple[str, list[Any], str]:
    """(the grid's FROM, its parameters, its ORDER BY) for ``q.sort``: composites after the layer's own
    units; the flagged sorts join each unit's distinct flagged pictures of the grid's kinds."""
    offered = {**SORTS, **(LABEL_SORTS if have.labels else {}), **(FLAG_SORTS if have.pictures else {})}
    order = offered.get(q.sort, SORTS["unit ↑"])
    order = f"({composite_sql(conn)}) IS NOT NULL, {order}"
    if q.sort in FLAG_SORTS and have.pictures:
        flagged = f"""SELECT unit AS flagged_unit, count(*) FILTER (WHERE len(fl) > 0) AS flagged
                      FROM ({pictures_sql(conn, q.flag_kinds, "AND layer = ?")}) GROUP BY unit"""
        return f"units LEFT JOIN ({flagged}) ON flagged_unit = unit", [*q.flag_kinds, q.layer], order
    if q.sort in ACTIVATION_SORTS and PICTURES.get(q.picture, "best") != "best":
        # tiles of last pictures show their activation: sorted by it (a user's trial: sorted by the best
        # pictures' activation, the numbers on the tiles were out of order); a chain's last picture holds
        # its final activation, so the chains table (small) tells it, not every image file
        shown = """SELECT unit AS shown_unit, max(final_activation) AS shown_activation FROM chains
                   WHERE layer = ? GROUP BY unit"""
        order = order.replace("best_activation", "shown_activation")
        return f"units LEFT JOIN ({shown}) ON shown_unit = unit", [q.layer], order
    return "units", [], order


def grid_order(conn: Any, q: GridQuery) -> list[int]:
    """Every unit the grid ``q`` shows, in its order (all pages; no pictures read): what a unit page opened
    from the grid steps through with its previous / next buttons."""
    where, params = _grid_where(q)
    source, joined, order = _grid_order(conn, q, truth(conn))
    rows = fetch_frame(conn, f"SELECT unit FROM {source} WHERE {where} ORDER BY {order}", [*joined, *params])
    return [int(u) for u in rows["unit"]]


GRID_TABLE_COLUMNS = (
    "layer", "unit", "kind", "best_activation", "best_log_prob", "best_rank", "facet_count", "judge_label",
    "judge_correct", "label", "label_score", "label_best", "status", "error",
)  # fmt: skip  # label_best: the best concept, named also where it is no label (a tile shows it)


def grid_table(conn: Any, q: GridQuery) -> pd.DataFrame:
    """Every unit the grid ``q`` shows, in its order, as a table to download (no pictures): its
    :data:`GRID_TABLE_COLUMNS` the run has, with ``composite`` (the expression; empty for own units)."""
    where, params = _grid_where(q)
    source, joined, order = _grid_order(conn, q, truth(conn))
    have = set(table_columns(conn, "units"))
    columns = ", ".join(c for c in GRID_TABLE_COLUMNS if c in have)
    return fetch_frame(
        conn,
        f"SELECT {columns}, {composite_sql(conn)} AS composite FROM {source} WHERE {where} ORDER BY {order}",
        [*joined, *params],
    )


def grid_page(conn: Any, q: GridQuery) -> pd.DataFrame:
    """The visible page of the grid, in the sort order: unit, composite (its expression; null for the
    layer's own units), best_activation, best_log_prob, best_rank, facet_count, judge_label, judge_correct,
    status, error, label, label_score (null in a run without label
    columns), png (the unit's most activating picture of kind ``q.picture`` as bytes, or None),
    picture_activation (that picture's activation), flag_counts ({flag: pictures of
    ``q.flag_kinds`` carrying it}; {} when none or the run has no flags). Only the units of this page are
    read."""
    have = truth(conn)
    where, params = _grid_where(q)
    source, joined, order = _grid_order(conn, q, have)
    share = "label_top_share" if have.top_share else "NULL AS label_top_share"
    label_sql = (
        f"label, label_score, label_best, {share}"
        if have.labels
        else "NULL::VARCHAR AS label, NULL::DOUBLE AS label_score, NULL::VARCHAR AS label_best, "
        "NULL::DOUBLE AS label_top_share"
    )
    units = fetch_frame(
        conn,
        f"""SELECT unit, {composite_sql(conn)} AS composite, kind, best_activation, best_log_prob,
                   best_rank, facet_count, judge_label, judge_correct, status, error, real_top1_activation,
                   {label_sql}
            FROM {source} WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?""",
        [*joined, *params, int(q.page_size), int(q.page) * int(q.page_size)],
    )
    if units.empty:
        return units.assign(png=pd.Series(dtype=object), picture_activation=pd.Series(dtype=float),
                            flag_counts=pd.Series(dtype=object))  # fmt: skip
    ids = [int(u) for u in units["unit"]]
    marks = ", ".join("?" for _ in ids)
    src = unit_sources(conn, q.layer, ids)["images"]  # only the shards holding these units
    images = fetch_frame(
        conn,
        f"""SELECT unit, arg_max(png, coalesce(activation, -1e308)) AS png,
                   max(activation) AS picture_activation
            FROM {src} WHERE unit BETWEEN ? AND ? AND unit IN ({marks}) AND kind = ?
            GROUP BY unit""",
        [min(ids), max(ids), *ids, PICTURES.get(q.picture, "best")],
    )
    out = units.merge(images, on="unit", how="left")
    counts = unit_flag_counts(conn, q.layer, ids, q.flag_kinds) if have.pictures else {}
    return out.assign(
        png=[png_bytes(v) for v in out["png"]],
        flag_counts=[counts.get(int(u), {}) for u in out["unit"]],
    )
