"""The unit page: a unit's row, chains, images, trajectories, competitors and label, shaped into a
:class:`UnitView`.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field, replace
from typing import Any

import duckdb
import pandas as pd

from atlas.errors import first_line
from atlas.map_cells import cell_of
from atlas.store.catalog import unit_sources
from atlas.store.queries import printable, reads_damaged_bytes
from viewer.data.query import fetch_frame, fetch_one, is_null, png_bytes
from viewer.data.truth import (
    LABEL_THRESHOLD,
    PICTURE_COLUMNS,
    TOP_K,
    TOP_SHARE,
    percentile_text,
    split_flags,
    table_columns,
)
from viewer.data.units import composite_sql

TRAJECTORY_METRICS = ("activation", "log_prob", "rank", "prior_residual")
KIND_ORDER = {
    "best": 0,
    "last": 1,
    "snapshot": 2,
}  # a chain's kept images, in the order they are shown


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
    row = fetch_one(
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
    """The unit's units row, with ``composite`` (its expression, None for the layer's own units) also in a
    run written before that column (read from the objective)."""
    # units is held in memory by the catalog: no file lookup needed
    own = "* EXCLUDE (composite)" if "composite" in table_columns(conn, "units") else "*"
    df = fetch_frame(
        conn,
        f"SELECT {own}, {composite_sql(conn)} AS composite FROM units WHERE layer = ? AND unit = ?",
        [layer, unit],
    )
    if df.empty:
        return None
    return {k: (None if is_null(v) else v) for k, v in df.iloc[0].to_dict().items()}


def unit_chains(conn: Any, layer: str, unit: int, src: Sources | None = None) -> pd.DataFrame:
    src = _src(conn, layer, unit, src)
    return fetch_frame(
        conn,
        f"""SELECT * EXCLUDE (unit) FROM {src["chains"]} WHERE unit = ? ORDER BY chain""",  # the columns
        # this run has: passes and stopped_step came later
        [unit],
    )


IMAGE_COLUMNS = ["chain", "kind", "step", "facet", "real_index", "real_name", "png", "width", "height",
                 "activation", "log_prob", "rank", *PICTURE_COLUMNS, "path_z", "path_percentile",
                 "reader_concepts"]  # fmt: skip


def unit_images(conn: Any, layer: str, unit: int, src: Sources | None = None) -> pd.DataFrame:
    """All kept images of a unit (synthetic and real), PNG bytes included: IMAGE_COLUMNS (natural_percentile
    and flags null when the unit's files predate them)."""
    src = _src(conn, layer, unit, src)
    df = fetch_frame(
        conn,
        f"""SELECT * FROM {src["images"]} WHERE unit = ?
           ORDER BY kind = 'real', chain, CASE kind WHEN 'best' THEN 0 WHEN 'last' THEN 1 ELSE 2 END, step""",
        [unit],
    )
    missing = {c: None for c in IMAGE_COLUMNS if c not in df.columns}
    return df.assign(**missing)[IMAGE_COLUMNS]


def readable_images(
    conn: Any, layer: str, unit: int, src: Sources | None = None
) -> tuple[pd.DataFrame, str | None]:
    """(the unit's images, None), or (no images, DuckDB's reason) when their file's bytes are damaged (its
    size unchanged: found only on reading), so that the rest of the unit page still draws (a user's trial:
    the whole page was one error box, its title and navigation gone)."""
    try:
        return unit_images(conn, layer, unit, src), None
    except duckdb.Error as exc:
        said = printable(first_line(exc))
        if not reads_damaged_bytes(exc, said):
            raise
        return pd.DataFrame(columns=IMAGE_COLUMNS), said


def unit_steps(conn: Any, layer: str, unit: int, src: Sources | None = None) -> pd.DataFrame:
    src = _src(conn, layer, unit, src)
    return fetch_frame(
        conn,
        f"""SELECT chain, step, activation, log_prob, rank, top_competitor, code_norm, prior_residual,
                  grad_norm, image_change
           FROM {src["steps"]} WHERE unit = ? ORDER BY chain, step""",
        [unit],
    )


def unit_competitors(
    conn: Any,
    layer: str,
    unit: int,
    k: int = 8,
    src: Sources | None = None,
    *,
    steps: pd.DataFrame | None = None,
    chains: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Units competing with ``unit``: on how many recorded steps each was the top competitor along the
    trajectories (up to each chain's stop: :func:`until_stopped`; the frozen rows after it do not count),
    and its mean activation where it shows up among the top units of the chains' final images. ``steps``
    and ``chains``: the unit's rows when the caller has them (the unit page), else fetched."""
    src = _src(conn, layer, unit, src)
    steps = unit_steps(conn, layer, unit, src) if steps is None else steps
    chains = unit_chains(conn, layer, unit, src) if chains is None else chains
    ran = until_stopped(steps, chains)
    ran = ran[ran["top_competitor"].notna() & (ran["top_competitor"] != unit)]
    traj = ran.groupby("top_competitor").size().rename("times_top_competitor")
    final = fetch_frame(
        conn,
        f"""SELECT t.u AS competitor, count(*) AS in_final_top, avg(t.v) AS mean_final_activation
            FROM (SELECT unnest(top_units) AS u, unnest(top_values) AS v
                  FROM {src["activations"]} WHERE unit = ?) t
            WHERE t.u <> ? GROUP BY 1""",
        [unit, unit],
    ).set_index("competitor")
    traj.index = traj.index.astype("int64").rename("competitor")
    final.index = final.index.astype("int64")
    out = pd.concat([traj, final], axis=1).rename_axis("competitor").reset_index()
    out["times_top_competitor"] = out["times_top_competitor"].fillna(0).astype("int64")
    out["in_final_top"] = out["in_final_top"].fillna(0).astype("int64")
    out = out.sort_values(
        ["times_top_competitor", "in_final_top", "mean_final_activation"],
        ascending=False,
        na_position="last",
        kind="stable",
    )
    return out[["competitor", "times_top_competitor", "in_final_top", "mean_final_activation"]].head(k)


def until_stopped(steps: pd.DataFrame, chains: pd.DataFrame) -> pd.DataFrame:
    """Each chain's trajectory rows up to the step it stopped on (``chains.stopped_step``; `sampler.stop_at`):
    the rows recorded after it repeat the frozen values, and drawn they read as a chain that ran on. The
    first row recorded after the stop holds the values of the stop itself, so it is kept, moved to it."""
    if steps.empty or "stopped_step" not in chains.columns:
        return steps
    stop = pd.to_numeric(steps["chain"].map(chains.set_index("chain")["stopped_step"]), errors="coerce")
    after = steps[stop.notna() & (steps["step"] >= stop)]
    first_after = after.loc[after.groupby("chain")["step"].idxmin()].copy()
    first_after["step"] = stop[first_after.index].astype(steps["step"].dtype)
    kept = steps[stop.isna() | (steps["step"] < stop)]
    return pd.concat([kept, first_after]).sort_values(["chain", "step"], kind="stable")


def unit_page(conn: Any, layer: str, unit: int, ids: list[int] | None = None) -> dict[str, Any]:
    """Everything the unit page shows (the benchmark times exactly this). ``ids``: the layer's sorted unit
    ids when the caller has them cached (the viewer does), else neighbours are queried."""
    src = unit_sources(conn, layer, unit)  # the files holding this unit (one shard per table)
    return {
        "unit": unit_row(conn, layer, unit, src),
        "neighbours": neighbours(conn, layer, unit, ids),
        "chains": (chains := unit_chains(conn, layer, unit, src)),
        "images": (pictures := readable_images(conn, layer, unit, src))[0],
        "images_unreadable": pictures[1],
        "steps": (steps := unit_steps(conn, layer, unit, src)),
        "competitors": unit_competitors(conn, layer, unit, src=src, steps=steps, chains=chains),
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
    silent: bool = False  # a hidden unit no natural image activates (real top-1 <= 0): no label by rule


def _list(value: Any) -> list[Any]:
    return [] if value is None or is_null(value) else list(value)


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
        dissection_label=None if is_null(row.get("dissection_label")) else row.get("dissection_label"),
        dissection_iou=None if is_null(row.get("dissection_iou")) else row.get("dissection_iou"),
        cell=_cell(row.get("label_cell")),
        top_share=None if is_null(row.get("label_top_share")) else row.get("label_top_share"),
        silent=is_silent(row),
    )


def is_silent(row: dict[str, Any]) -> bool:
    """A hidden unit no natural image activates: its highest value on the real images is <= 0 (output
    units are never silent: their values are logits)."""
    top = row.get("real_top1_activation")
    return row.get("kind") != "output" and top is not None and not is_null(top) and float(top) <= 0


def no_label_reason(lab: LabelView, *, code: str = "`") -> str:
    """Why a unit with a best concept has no label, by the labelling rules (atlas.sampling.concepts) in
    their order: silence (known from the unit's real top-1), AUROC below the threshold, then too few of the
    unit's top images showing it, else silence.
    Markdown (``code`` around the concept, ``**`` around the score); ``code=""`` for plain text."""
    best, score = f"{code}{lab.best}{code}", fmt_auroc(lab.score)
    bold = "**" if code else ""
    if lab.silent:
        return (
            f"no natural image activates the unit (silent: its highest value on them is <= 0), and a silent "
            f"unit gets no label; its best concept {best} (AUROC {bold}{score}{bold}) only orders its "
            "negative values"
        )
    if lab.score is None or is_null(lab.score) or lab.score < LABEL_THRESHOLD:
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


def fmt_auroc(value: Any) -> str:
    """An AUROC as every page shows it: 3 decimals always (1.000, not 1), "–" when missing."""
    return "–" if value is None or is_null(value) else f"{float(value):.3f}"


def _cell(value: Any) -> tuple[int, int, int, int] | None:
    cell = _list(value)
    return tuple(int(v) for v in cell) if len(cell) == 4 else None  # type: ignore[return-value]


def is_place_bound(concept: str | None) -> bool:
    """A conv unit's concept about its own place: ``here:edge``, ``colour:red@here`` (as
    atlas.sampling.concepts ``place_kind`` is not None; not imported: it pulls in torch)."""
    return concept is not None and (concept.startswith("here:") or concept.endswith("@here"))


def picture_size(png: bytes) -> tuple[int, int]:
    """(height, width) of a PNG, from its header."""
    import io

    from PIL import Image

    with Image.open(io.BytesIO(png)) as img:
        return img.height, img.width


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
    draw.rectangle(
        (x0 - 2 * t, y0 - 2 * t, x1 - 1 + 2 * t, y1 - 1 + 2 * t),
        outline=(0, 0, 0),
        width=t,
    )
    draw.rectangle((x0 - t, y0 - t, x1 - 1 + t, y1 - 1 + t), outline=(255, 255, 255), width=t)
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


Place = tuple[tuple[int, int], tuple[int, int]]  # a conv unit's map position (y, x) and map size (H, W)


def unit_place(row: dict[str, Any] | None, layer: str, manifest: dict[str, Any]) -> Place | None:
    """Where a conv unit reads its map: its position from its ``spatial`` column (``center (6,6)``) and
    the map's size from run.json's layer shapes; None for an fc unit, a map mean (``spatial: mean``) or a
    run that does not record the shape. Framed on every picture, with or without a concept label."""
    spatial = str((row or {}).get("spatial") or "")
    found = re.fullmatch(r"\w+ \((\d+),\s*(\d+)\)", spatial)
    entries = [e for e in manifest.get("layers") or [] if isinstance(e, dict) and e.get("name") == layer]
    shape = entries[0].get("shape") if entries else None
    if not found or not isinstance(shape, list) or len(shape) != 3:
        return None
    return (int(found[1]), int(found[2])), (int(shape[1]), int(shape[2]))


def with_outlined_cell(view: UnitView, place: Place | None = None) -> UnitView:
    """``view`` with every picture (facets, real top-k, chains' images) outlined at the unit's cell
    (:func:`outline_cell`): its concept label's cell, else its map ``place`` (:func:`unit_place`) as a
    block of each picture (``map_cells.cell_of`` at the picture's own size); unchanged without either."""
    cell = view.label.cell if view.label is not None else None
    if cell is None and place is None:
        return view

    def framed(png: bytes | None) -> bytes | None:
        if cell is not None or png is None:
            return outline_cell(png, cell)
        return outline_cell(png, cell_of(*place, picture_size(png)))

    def outlined(df: pd.DataFrame) -> pd.DataFrame:
        return df.assign(png=[framed(p) for p in df["png"]]) if "png" in df else df

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
    unreadable: str | None = None  # why its pictures could not be read (damaged bytes), None when they could
    reader_facets: dict[str, int] = field(default_factory=dict)  # facet concept -> last pictures showing it


def reader_facets(images: pd.DataFrame) -> dict[str, int]:
    """The facets (``facet:pill/capsule``) the attribute reader finds in the unit's last pictures, with how
    many show each, most first ({} without reader columns): what the Facets section sets beside the facet
    count, which clusters the facet layer's features (a trial saw two pill facets among the chains of a
    unit counted as one)."""
    last = images.loc[images["kind"] == "last", "reader_concepts"]
    counts: dict[str, int] = {}
    for concepts in last:
        for c in _list(concepts):
            if isinstance(c, str) and c.startswith("facet:"):
                counts[c] = counts.get(c, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _with_png(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    out = df[columns].reset_index(drop=True)
    return out.assign(png=[png_bytes(v) for v in out["png"]])


def _with_badges(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """:func:`_with_png` plus natural_percentile, badge and flags (a list) of each picture."""
    extra = [c for c in ("path_z", "path_percentile") if c in df.columns]
    out = _with_png(df, [*columns, *PICTURE_COLUMNS, *extra])
    percentiles = [None if is_null(v) else float(v) for v in out["natural_percentile"]]
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
    if path_percentile is not None and not is_null(path_percentile):
        return f"p{100 * float(path_percentile):.0f}"
    return None if path_z is None or is_null(path_z) else float(path_z)


def badge_text(percentile: Any, path: Any) -> str | None:
    """A picture's badge: its natural percentile ("p99.7"), then its path: the path percentile as text
    ("p100 · path p45", runs with ``path_percentile``) or, in older runs, its path z ("p100 · path -0.3")."""
    text = percentile_text(percentile)
    if path is None or (not isinstance(path, str) and is_null(path)):
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
    """The real top-k images, most activating first: rank (1-based), activation, real_index, real_name (its
    file in the user's folder; null for the toy world and runs before the column), png."""
    real = images[images["kind"] == "real"].sort_values("activation", ascending=False, kind="stable")
    out = _with_png(real, ["activation", "real_index", "real_name", "png"])
    return out.assign(rank=range(1, len(out) + 1))[["rank", "activation", "real_index", "real_name", "png"]]


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
        unreadable=page["images_unreadable"],
        reader_facets=reader_facets(images),
    )
