"""What kind of unit a units row is: one of the layer's own units, a composite objective (``3 + 5``,
numbered after the layer's own units) or a failed unit (``status = 'error'``); how each is named."""

from __future__ import annotations

from typing import Any

from viewer.data.query import fetch_frame, is_null
from viewer.data.truth import table_columns

# runs written before units.composite: a composite's objective reads ``raw[fc8: 3 - 5]`` (``@ (4,4)`` or
# `` mean`` after its terms for a conv layer), a unit's own ``raw[fc8:3]``
COMPOSITE_FROM_OBJECTIVE = (
    r"CASE WHEN objective LIKE '%: %' "
    r"THEN regexp_extract(objective, '\[[^\]:]*: (.*?)( @ [^\]]*| mean)?\]$', 1) END"
)
FAILED = "status = 'error'"


def composite_sql(conn: Any) -> str:
    """SQL for a units row's composite expression (NULL for the layer's own units), in runs with and
    without the ``composite`` column."""
    if "composite" in table_columns(conn, "units"):  # shards written before it read NULL there
        return f"coalesce(composite, {COMPOSITE_FROM_OBJECTIVE})"
    return COMPOSITE_FROM_OBJECTIVE


def own_sql(conn: Any) -> str:
    """SQL that holds for the layer's own units (not composites)."""
    return f"({composite_sql(conn)}) IS NULL"


def unit_name(unit: int, composite: Any = None) -> str:
    """ "unit 7", or a composite's "unit 10 · 3 + 5"."""
    text = f"unit {int(unit)}"
    return f"{text} · {composite}" if isinstance(composite, str) and composite else text


def first_term(composite: str) -> str:
    """The unit of a composite's first term ("0.7*3 + 0.3*7" -> "3"; the expression itself when it does
    not read)."""
    from atlas.config.composites import parse_composite
    from atlas.errors import ConfigError

    try:
        return str(parse_composite(composite).terms[0][0])
    except ConfigError:
        return composite


def composite_terms(conn: Any, layer: str, composite: str) -> str | None:
    """A composite's terms in words, each with its unit's label where the run labels units ("unit 3
    (class:triangle) + unit 5 (class:frame)"), so "3 + 5" says which classes it joins (a trial could not
    tell); None when the expression does not read."""
    from atlas.config.composites import parse_composite
    from atlas.errors import ConfigError

    try:
        terms = parse_composite(composite).terms
    except ConfigError:
        return None
    labels: dict[int, str] = {}
    if "label" in table_columns(conn, "units"):
        ids = [u for u, _ in terms]
        rows = fetch_frame(
            conn,
            f"SELECT unit, label FROM units WHERE layer = ? AND unit IN ({', '.join('?' for _ in ids)})",
            [layer, *ids],
        )
        labels = {int(r.unit): str(r.label) for r in rows.itertuples() if not is_null(r.label)}
    out = []
    for i, (unit, weight) in enumerate(terms):
        sign = ("- " if weight < 0 else "+ ") if i else ("-" if weight < 0 else "")
        size = f"{abs(weight):g} x " if abs(weight) != 1 else ""
        named = f" ({labels[unit]})" if unit in labels else ""
        out.append(f"{sign}{size}unit {unit}{named}")
    return " ".join(out)


def unit_kinds(conn: Any, layer: str) -> dict[int, dict[str, Any]]:
    """unit -> {"composite": expression or None, "status": ..., "error": ...} of every unit of ``layer``
    that is a composite or failed (the others are the layer's own, sampled units)."""
    rows = fetch_frame(
        conn,
        f"""SELECT unit, {composite_sql(conn)} AS composite, status, error FROM units
            WHERE layer = ? AND (({composite_sql(conn)}) IS NOT NULL OR {FAILED})""",
        [layer],
    )
    return {
        int(r.unit): {
            "composite": None if is_null(r.composite) else str(r.composite),
            "status": None if is_null(r.status) else str(r.status),
            "error": None if is_null(r.error) else str(r.error),
        }
        for r in rows.itertuples()
    }


def composite_counts(conn: Any) -> dict[str, int]:
    """layer -> its composite objectives (layers without any absent)."""
    rows = fetch_frame(
        conn,
        f"SELECT layer, count(*) AS n FROM units WHERE ({composite_sql(conn)}) IS NOT NULL GROUP BY layer",
    )
    return {str(r.layer): int(r.n) for r in rows.itertuples()}


def failures(conn: Any) -> dict[str, Any]:
    """The run's failed units: count, per layer, and the first error (by layer and unit) with its unit."""
    rows = fetch_frame(conn, f"SELECT layer, unit, error FROM units WHERE {FAILED} ORDER BY layer, unit")
    if rows.empty:
        return {"count": 0, "per_layer": {}, "first_error": None, "first_unit": None}
    first = rows.iloc[0]
    return {
        "count": len(rows),
        "per_layer": {str(k): int(v) for k, v in rows.groupby("layer").size().items()},
        "first_error": None if is_null(first["error"]) else str(first["error"]),
        "first_unit": (str(first["layer"]), int(first["unit"])),
    }


def compact_units(ids: list[int], parts: int = 6) -> str:
    """Unit ids as ranges (:func:`format_units`): [0..7, 96] -> "0-7, 96"; past ``parts`` ranges, the first
    ones and how many more."""
    from viewer.data.grid import format_units  # grid reads this module's composite_sql

    text = format_units(sorted(set(ids))).split(", ") if ids else []
    if len(text) > parts:
        return ", ".join(text[:parts]) + f", … ({len(text) - parts} more ranges, to {max(ids)})"
    return ", ".join(text)


def redo_hint(run: str) -> str:
    """How failed units are redone, once their cause is fixed (as `atlas run` says)."""
    return f"once the cause is fixed, `atlas verify {run} --repair` and then the same `atlas run` redo them"
