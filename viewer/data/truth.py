"""Truth columns (issue 16) and the audit: which truth columns a run has, picture badges, flags and the
flagged units with their pictures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from atlas.store.catalog import unit_sources
from viewer.data.query import fetch_frame, is_null, placeholders, png_bytes

# truth columns (issue 16); runs written before them lack these columns and the viewer hides their UI
LABEL_COLUMNS = ("label", "label_score", "label_best", "label_runner_up", "label_margin", "tuning_concepts",
                 "tuning_auroc", "tuning_mean")  # fmt: skip
PICTURE_COLUMNS = ("natural_percentile", "flags")
READER_COLUMNS = (
    "label_shown",
    "reader_agreement",
)  # the attribute reader (toy world), later than labels
LABEL_THRESHOLD = 0.85  # as atlas.sampling.concepts.LABEL_THRESHOLD (not imported: it pulls in torch)
TOP_K, TOP_SHARE = (
    20,
    0.5,
)  # as atlas.sampling.concepts: a label shows in half of the unit's top 20 images
WEAK_PERCENTILE = 0.99  # as atlas.sampling.concepts.WEAK_PERCENTILE
# the pictures the audit and the grid's flag filter look at: a unit's results, not its early snapshots
AUDIT_KINDS: dict[str, tuple[str, ...]] = {
    "best and last pictures": ("best", "last"),
    "best pictures": ("best",),
    "every kept picture (with snapshots)": ("best", "last", "snapshot"),
}


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
    return {str(r.column_name) for r in fetch_frame(conn, f"DESCRIBE {table}").itertuples()}


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
    if value is None or is_null(value):
        return None
    if float(value) >= 1.0:
        return "p100"
    return f"p{math.floor(float(value) * 1000 + 1e-9) / 10:.1f}"


def flag_names(conn: Any, layer: str | None = None) -> list[str]:
    """The distinct flags on the run's (or one layer's) pictures, sorted; needs ``truth(conn).pictures``."""
    where, params = ("AND layer = ?", [layer]) if layer is not None else ("", [])
    rows = fetch_frame(
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


def pictures_sql(conn: Any, kinds: tuple[str, ...], where: str = "") -> str:
    """SQL of one row per distinct picture of ``kinds``: layer, unit, chain, step, fl (the union of its
    flags, a list), natural_percentile, checked (false: no check could run, a run without real images).
    A chain whose best picture is its last one keeps it as two rows
    (kinds 'best' and 'last', their flags computed apart): counted once here. That is the same step, or,
    for a chain that stopped (``chains.stopped_step``: its picture frozen from there, its last row at the
    final step), the last picture's stop step. Binds ``kinds`` (then whatever ``where`` adds)."""
    if "stopped_step" in table_columns(conn, "chains"):
        shown = "CASE WHEN i.kind = 'last' AND c.stopped_step IS NOT NULL THEN c.stopped_step ELSE i.step END"
        source = f"""(SELECT i.* REPLACE ({shown} AS step) FROM images i
                      LEFT JOIN chains c ON c.layer = i.layer AND c.unit = i.unit AND c.chain = i.chain)"""
    else:  # a run written before chains recorded where they stopped
        source = "images"
    return f"""SELECT layer, unit, chain, step,
                      list_sort(list_distinct(list_filter(
                          flatten(list(string_split(coalesce(flags, ''), ','))), lambda x: x <> ''))) AS fl,
                      min(natural_percentile) AS natural_percentile,
                      bool_or(natural_percentile IS NOT NULL OR path_percentile IS NOT NULL
                              OR manifold_percentile IS NOT NULL OR coalesce(flags, '') <> '') AS checked
               FROM {source} WHERE kind IN ({placeholders(kinds)}) {where}
               GROUP BY layer, unit, chain, step, CASE WHEN step IS NULL THEN kind END"""


def flag_summary(conn: Any, kinds: tuple[str, ...] = AUDIT_KINDS["best and last pictures"]) -> pd.DataFrame:
    """Per layer, over its distinct pictures of ``kinds`` (a best = last picture once): layer, units (with
    pictures), pictures, flagged (pictures with any flag), flagged_share (of the checked pictures),
    flagged_units (units with a flagged picture), checked (pictures the checks could read: a run without
    real images has none), failed_units (no pictures to check), then one picture count per flag."""
    flags = flag_names(conn)
    df = fetch_frame(
        conn,
        f"""
        WITH p AS ({pictures_sql(conn, kinds)}),
        s AS (SELECT layer, count(DISTINCT unit) AS units, count(*) AS pictures,
                     count(*) FILTER (WHERE len(fl) > 0) AS flagged,
                     count(DISTINCT unit) FILTER (WHERE len(fl) > 0) AS flagged_units,
                     count(*) FILTER (WHERE checked) AS checked{_flag_counts_sql(flags)}
              FROM p GROUP BY layer),
        f AS (SELECT layer, count(*) FILTER (WHERE status = 'error') AS failed_units
              FROM units GROUP BY layer)
        SELECT f.layer, s.* EXCLUDE (layer), f.failed_units
        FROM f LEFT JOIN s USING (layer) ORDER BY f.layer""",
        [*kinds, *flags],
    )
    counted = [c for c in df.columns if c != "layer"]
    df[counted] = df[counted].fillna(0).astype(int)  # a layer whose units all failed has no pictures
    df.insert(4, "flagged_share", df["flagged"] / df["checked"].where(df["checked"] > 0))
    return df


# a silent unit: a hidden unit whose highest value on the real images is <= 0 (:func:`is_silent`)
SILENT_SQL = "(kind <> 'output' AND real_top1_activation <= 0)"


def flagged_units(
    conn: Any,
    kinds: tuple[str, ...] = AUDIT_KINDS["best and last pictures"],
    layer: str | None = None,
    flag: str | None = None,
    labels: bool = True,
) -> pd.DataFrame:
    """Units with a flagged picture among their distinct pictures of ``kinds`` (carrying ``flag``, or any
    flag), most flagged first: layer, unit, composite (its expression; null for the layer's own units),
    flagged, pictures, lowest_percentile, one count per flag, label, label_score (null without ``labels``:
    a run without label columns), silent (:data:`SILENT_SQL`)."""
    from viewer.data.units import composite_sql

    flags = flag_names(conn, layer)
    layer_sql, layer_params = ("AND layer = ?", [layer]) if layer is not None else ("", [])
    hit = "list_contains(fl, ?)" if flag else "len(fl) > 0"
    label_sql = "u.label, u.label_score" if labels else "NULL::VARCHAR AS label, NULL::DOUBLE AS label_score"
    return fetch_frame(
        conn,
        f"""
        WITH p AS ({pictures_sql(conn, kinds, layer_sql)}),
        f AS (SELECT layer, unit, count(*) FILTER (WHERE {hit}) AS flagged, count(*) AS pictures,
                     min(natural_percentile) AS lowest_percentile{_flag_counts_sql(flags)}
              FROM p GROUP BY layer, unit)
        SELECT f.layer, f.unit, u.composite_expr AS composite, f.* EXCLUDE (layer, unit), {label_sql},
               coalesce(u.is_silent, false) AS silent
        FROM f JOIN (SELECT *, {composite_sql(conn)} AS composite_expr, {SILENT_SQL} AS is_silent
                     FROM units) u USING (layer, unit)
        WHERE f.flagged > 0
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
        rows = fetch_frame(
            conn,
            f"""SELECT unit,
                       arg_min(png, coalesce(natural_percentile, 1e9))
                           FILTER (WHERE kind IN ({placeholders(kinds)}) AND {hit}) AS flagged,
                       arg_max(png, coalesce(activation, -1e308)) FILTER (WHERE kind = 'real') AS natural
                FROM {src} WHERE unit IN ({placeholders(ids)}) GROUP BY unit""",
            [*kinds, *([flag] if flag else []), *ids],
        )
        out.update(
            ((layer, int(r.unit)), (png_bytes(r.flagged), png_bytes(r.natural))) for r in rows.itertuples()
        )
    return out


def unit_flag_counts(
    conn: Any,
    layer: str,
    units: list[int],
    kinds: tuple[str, ...] = AUDIT_KINDS["best and last pictures"],
) -> dict[int, dict[str, int]]:
    """unit -> {flag: distinct pictures of ``kinds`` carrying it (a best = last picture once)} for ``units``
    of ``layer`` (units without flagged pictures absent); needs ``truth(conn).pictures``."""
    if not units:
        return {}
    where = f"AND layer = ? AND unit BETWEEN ? AND ? AND unit IN ({placeholders(units)})"
    rows = fetch_frame(
        conn,
        f"""SELECT unit, flag, count(*) AS n
            FROM (SELECT unit, unnest(fl) AS flag FROM ({pictures_sql(conn, kinds, where)}))
            GROUP BY ALL ORDER BY ALL""",
        [*kinds, layer, min(units), max(units), *units],
    )
    out: dict[int, dict[str, int]] = {}
    for r in rows.itertuples():
        out.setdefault(int(r.unit), {})[str(r.flag)] = int(r.n)
    return out
