"""The compare page: the best picture per unit of one run or method, and a method summary per layer."""

from __future__ import annotations

from typing import Any

import pandas as pd

from atlas.store.catalog import unit_sources
from viewer.data.query import fetch_frame, is_null, png_bytes


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
    return fetch_frame(
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
        int(r.unit): {
            "png": png_bytes(r.png),
            "activation": None if is_null(r.activation) else r.activation,
        }
        for r in df.itertuples()
    }


def method_summary(conn: Any, layer: str) -> pd.DataFrame:
    return fetch_frame(
        conn,
        """SELECT method, count(*) AS chains, avg(best_activation) AS mean_best_activation,
                  avg(final_log_prob) AS mean_final_log_prob, avg(diverged::INT) AS diverged_rate,
                  avg(seconds) AS mean_seconds
           FROM chains WHERE layer = ? GROUP BY method ORDER BY method""",
        [layer],
    )


def stats_over(conn: Any, layer: str, units: list[int]) -> dict[str, Any]:
    """mean best activation, mean facets and diverged chains of ``layer`` over ``units`` only (two runs
    compared over the units both hold, not each over its own)."""
    if not units:
        return {"mean_best_activation": None, "mean_facets": None, "diverged_chains": 0}
    marks = ", ".join("?" for _ in units)
    frame = fetch_frame(
        conn,
        f"""SELECT avg(best_activation) AS mean_best_activation, avg(facet_count) AS mean_facets,
                   (SELECT count(*) FROM chains WHERE layer = ? AND diverged AND unit IN ({marks}))
                       AS diverged_chains
            FROM units WHERE layer = ? AND unit IN ({marks})""",
        [layer, *units, layer, *units],
    )
    row = frame.iloc[0].to_dict()
    return {k: (None if is_null(v) else v) for k, v in row.items()}


def match_units(
    ids: list[int], kinds: dict[int, dict], other_ids: list[int], other_kinds: dict[int, dict]
) -> tuple[dict[int, int], dict[int, tuple[str | None, str | None]]]:
    """Which unit of the other run each unit of this one is compared with: a layer's own unit with the
    same number, a composite with the same expression (composites are numbered after the layer's own
    units, so unit 10 can be ``3 + 5`` in one run and ``1 + 2`` in another). Returns (unit -> the other
    run's unit, for those matched; unit -> (its objective here, there) for the units both runs number
    alike that hold different objectives; None = the layer's own unit)."""
    held = set(other_ids)
    by_expression = {k["composite"]: u for u, k in other_kinds.items() if k.get("composite")}
    matched: dict[int, int] = {}
    differ: dict[int, tuple[str | None, str | None]] = {}
    for unit in ids:
        mine = kinds.get(unit, {}).get("composite")
        theirs = other_kinds.get(unit, {}).get("composite") if unit in held else None
        if unit in held and mine != theirs:
            differ[unit] = (mine, theirs)
        if mine is None and unit in held and theirs is None:
            matched[unit] = unit
        elif mine is not None and mine in by_expression:
            matched[unit] = by_expression[mine]
    return matched, differ


def failed_units(kinds: dict[int, dict]) -> set[int]:
    """The failed units of :func:`viewer.data.units.unit_kinds`."""
    return {u for u, k in kinds.items() if k.get("status") == "error"}
