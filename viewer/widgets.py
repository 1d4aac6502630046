"""Small drawing helpers shared by the pages (image tiles, number formatting, charts)."""

from __future__ import annotations

import functools
import html
import io
import math
import numbers
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

if TYPE_CHECKING:
    from viewer.context import Context

CSS = """
<style>
/* generated images are small (32-64 px): show pixels, not blur */
[data-testid="stImage"] img, [data-testid="stFullScreenFrame"] img {
  image-rendering: pixelated; border-radius: 4px;
}
[data-testid="stImageCaption"] { font-size: 0.78rem; line-height: 1.15; text-align: center;
  overflow-wrap: break-word; }
[data-testid="stMetricValue"] { font-size: 1.55rem; }
div.block-container { padding-top: 2.2rem; }
.atlas-tile-label { font-size: 0.8rem; color: rgba(128,128,128,0.95); margin: -0.2rem 0 0.1rem 0; }
.atlas-tile-concept { font-size: 0.8rem; color: #1c6fb0; font-weight: 600; margin: 0 0 0.1rem 0;
  line-height: 1.15; overflow-wrap: break-word; }
.atlas-label { font-size: 1.35rem; font-weight: 600; color: #1c6fb0; }
.atlas-label.none { color: rgba(128,128,128,0.95); }
.atlas-label-score { font-size: 1rem; margin-left: 0.6rem; }
.atlas-tile-flag { font-size: 0.78rem; color: #d62728; margin: 0 0 0.1rem 0; }
/* the layer grid: one CSS grid of tiles (one HTML block, .atlas-grid), as many columns of at least 150 px
   as the page holds (6 at 1440 px with the sidebar open, 4 on a laptop, 2 on a phone), every tile of a row
   as high as the row; each line under a picture is one line ("…", the whole as tooltip) */
.atlas-grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 0.75rem;
  align-items: stretch; margin-bottom: 1rem; }
.atlas-tile { border: 1px solid rgba(49,51,63,0.2); border-radius: 0.5rem; padding: 0.4rem 0.4rem 0.6rem;
  min-width: 0; display: flex; flex-direction: column; gap: 0.1rem; }
.atlas-tile-picture img { width: 100%; aspect-ratio: 1 / 1; object-fit: contain; border-radius: 4px;
  display: block; image-rendering: pixelated; }
.atlas-tile-name { font-weight: 600; font-size: 0.9rem; padding-top: 0.15rem; color: inherit !important;
  text-decoration: none; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.atlas-tile-name:hover { color: #1c6fb0 !important; text-decoration: underline; }
.atlas-grid :is(.atlas-tile-label, .atlas-tile-concept, .atlas-tile-flag) {
  white-space: nowrap; overflow: hidden; text-overflow: ellipsis; margin: 0; height: 1.15rem;
  line-height: 1.15rem; }  /* a fixed line: a "⚠" of a taller font grows no tile */
.atlas-grid .atlas-tile-concept { display: flex; }
.atlas-tile-name { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; min-width: 0; }
.atlas-tile-score { flex: none; }
.atlas-tile-empty { aspect-ratio: 1 / 1; border-radius: 4px; background: rgba(128,128,128,0.12);
  display: flex; flex-direction: column; align-items: center; justify-content: center; gap: 0.3rem;
  padding: 0.5rem; font-size: 0.8rem; color: rgba(128,128,128,0.95); overflow: hidden; text-align: center; }
.atlas-tile-empty.failed { background: rgba(214,39,40,0.08); color: #d62728; }
.atlas-tile-empty.failed span { font-size: 0.72rem; line-height: 1.2; overflow-wrap: anywhere;
  display: -webkit-box; -webkit-line-clamp: 5; -webkit-box-orient: vertical; overflow: hidden; }
@media (max-width: 1200px) {  /* the pager's buttons keep their icons; their words stay for screen readers */
  [data-testid="stHorizontalBlock"]:has(.atlas-pager) button [data-testid="stMarkdownContainer"] {
    position: absolute; width: 1px; height: 1px; overflow: hidden; clip-path: inset(50%);
    white-space: nowrap; }
}
/* a picture's badges wrap under it instead of ending in "p100 · path p…" (the faithfulness flags are what
   the unit page is for) */
.stMarkdownBadge { white-space: normal !important; overflow: visible !important;
  text-overflow: clip !important; overflow-wrap: normal !important; word-break: keep-all !important; }
/* rows of five or more columns (metrics, picture rows, the grid's filters) wrap to four a line, then two,
   on narrow screens; a chain card puts its pictures under its text */
@media (max-width: 1100px) {
  /* the sidebar stays open down to 768 px (Streamlit's breakpoint): the page's own side margins give way */
  div.block-container { padding-left: 1.25rem; padding-right: 1.25rem; }
  [data-testid="stHorizontalBlock"]:has(> [data-testid="stColumn"]:nth-child(5)):not(:has(.atlas-pager,
    .atlas-tile-label)) {
    flex-wrap: wrap; row-gap: 0.8rem; }
  [data-testid="stHorizontalBlock"]:has(> [data-testid="stColumn"]:nth-child(5)):not(:has(.atlas-pager,
    .atlas-tile-label))
    > [data-testid="stColumn"] { flex: 0 0 calc(25% - 0.75rem) !important; min-width: 0; }
  [data-testid="stHorizontalBlock"]:has(> [data-testid="stColumn"] :is(.atlas-chain-head, .atlas-label)) {
    flex-wrap: wrap; }
  [data-testid="stHorizontalBlock"]:has(> [data-testid="stColumn"] :is(.atlas-chain-head, .atlas-label))
    > [data-testid="stColumn"] { flex: 0 0 100% !important; }
  /* a row of controls (the grid's filters) or of three or more charts: two a line */
  [data-testid="stHorizontalBlock"]:has(> [data-testid="stColumn"]:nth-child(4)):not(:has(.atlas-pager,
    .atlas-tile-label)):has(input) { flex-wrap: wrap; row-gap: 0.8rem; }
  [data-testid="stHorizontalBlock"]:has(> [data-testid="stColumn"]:nth-child(4)):not(:has(.atlas-pager,
    .atlas-tile-label)):has(input) > [data-testid="stColumn"] { flex: 0 0 calc(50% - 0.5rem) !important; }
  [data-testid="stHorizontalBlock"]:has(> [data-testid="stColumn"]:nth-child(3)):has(
    [data-testid="stVegaLiteChart"]) { flex-wrap: wrap; row-gap: 0.8rem; }
  [data-testid="stHorizontalBlock"]:has(> [data-testid="stColumn"]:nth-child(3)):has(
    [data-testid="stVegaLiteChart"]) > [data-testid="stColumn"] {
    flex: 0 0 calc(50% - 0.5rem) !important; min-width: 0; }
  /* the compare page's unit cards (four a row, two pictures each): two a line, one below 700 px (at
     800 px with the sidebar open its pictures were ~28 px wide) */
  [data-testid="stHorizontalBlock"]:has(> [data-testid="stColumn"] [class*="st-key-cmp_open_"]) {
    flex-wrap: wrap; row-gap: 0.8rem; }
  [data-testid="stHorizontalBlock"]:has(> [data-testid="stColumn"] [class*="st-key-cmp_open_"])
    > [data-testid="stColumn"] { flex: 0 0 calc(50% - 0.5rem) !important; min-width: 0; }
  /* the unit page's buttons as wide as their words */
  [data-testid="stHorizontalBlock"]:has(.atlas-unit-nav) { flex-wrap: wrap; }
  [data-testid="stHorizontalBlock"]:has(.atlas-unit-nav) > [data-testid="stColumn"] {
    flex: 0 0 auto !important; width: auto !important; min-width: fit-content; }
}
@media (max-width: 700px) {
  [data-testid="stHorizontalBlock"]:has(> [data-testid="stColumn"] [class*="st-key-cmp_open_"])
    > [data-testid="stColumn"] { flex: 0 0 100% !important; }
  /* a compare card's two pictures stay side by side (stacked, ten units took 9,000 px of a phone) */
  [data-testid="stVerticalBlock"]:has(> [class*="st-key-cmp_open_"]) [data-testid="stHorizontalBlock"] {
    flex-wrap: nowrap !important; }
  [data-testid="stVerticalBlock"]:has(> [class*="st-key-cmp_open_"]) [data-testid="stHorizontalBlock"]
    > [data-testid="stColumn"] { flex: 1 1 0 !important; width: auto !important; min-width: 0 !important; }
  [data-testid="stHorizontalBlock"]:has(> [data-testid="stColumn"]:nth-child(5)):not(:has(.atlas-pager,
    .atlas-tile-label))
    > [data-testid="stColumn"] { flex: 0 0 calc(50% - 0.5rem) !important; }
}
</style>
"""


def inject_css() -> None:
    st.html(CSS)


def fmt(value: Any, digits: int = 3) -> str:
    """Compact number for captions and metrics ('–' for missing)."""
    if value is None:
        return "–"
    try:
        if isinstance(value, float) and math.isnan(value):
            return "–"
    except TypeError:
        pass
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):  # numpy's too: a DuckDB count read 1,000 as "1e+03" (a trial)
        return f"{int(value):,}"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(v):
        return "–"
    short = f"{v:.{digits}g}"
    return f"{v:,.0f}" if "e+" in short else short  # 1,000 and 999.6 -> "1,000", never "1e+03"


def fixed(value: Any, digits: int = 3) -> str:
    """A number with ``digits`` decimals for a table's text column ('–' for missing)."""
    return "–" if value is None or pd.isna(value) else f"{float(value):,.{digits}f}"


def snap(value: Any) -> Any:
    """A log-prob as it should read: float noise around 0 (a sure class's -1.3e-43) is 0; other values
    (and activations, which can be tiny and real) as they are."""
    return 0.0 if isinstance(value, float) and abs(value) < NOISE else value


NOISE = 1e-9  # values closer to 0 are float noise (log-probs of sure classes), shown and drawn as 0
AXIS_NUMBERS = "~r"  # axis ticks in plain decimals, trailing zeros dropped: 10, 150, 0.5 (not 1e+1)


def without_noise(values: pd.Series) -> pd.Series:
    """Values as charts should draw them: float noise around 0 (|v| < NOISE) set to 0, so an axis over
    log-probs of sure classes reads 0, not -1e-26."""
    return values.mask(values.abs() < NOISE, 0.0) if values.dtype.kind == "f" else values  # NaN stays NaN


FLAG_COLORS = {"weak": "red"}  # other flags (e.g. off_path) are orange
PERCENTILE_HELP = (
    "Under each picture: its natural percentile, the share of natural images that drive the unit less than "
    "the picture does (p99.7: more than 99.7 % of them), and its path percentile (**path p45**: the share "
    "of natural images that reach the unit along a less similar path through the earlier layers). Flags: "
    "**weak** (red): below p99, the picture drives the unit less than its top 1 % of natural images do; "
    "**off_path**: path below p1, it reaches the unit another way than natural images do; **off_manifold**: "
    "G redraws it worse than 99 % of natural images, it is off the image manifold G learned."
)

# (natural percentile text such as "p99.7", flags[, muted: the percentile of a silent unit, shown grey])
Badges = tuple[str | None, list[str]] | tuple[str | None, list[str], bool]


def concept_html(concept: str, wrap: bool = True) -> str:
    """A concept name for HTML inside st.markdown: escaped, and its colons as entities, so Streamlit's
    markdown directives (``:red[...]``, ``:red-badge[...]``, emoji shortcodes) never take ``colour:red@here``
    apart; with ``wrap``, a narrow column wraps it after ':' and '|' or before '@', not inside a word
    (without: one line, as the grid's tiles show it)."""
    text = html.escape(concept).replace(":", "&#58;")
    if not wrap:
        return text
    return text.replace("&#58;", "&#58;<wbr>").replace("|", "|<wbr>").replace("@", "<wbr>@")


def badge_markdown(badge: str | None, flags: Sequence[str], muted: bool = False) -> str:
    """Markdown of a picture's faithfulness badges: its natural percentile (red when flagged weak, grey
    when ``muted``: a silent unit's, which beats only values <= 0, else green), then one badge per flag,
    "weak" red, others orange ("" when there is nothing to show)."""
    tone = "red" if "weak" in flags else "gray" if muted else "green"
    parts = [f":{tone}-badge[{badge}]"] if badge else []
    parts.extend(f":{FLAG_COLORS.get(f, 'orange')}-badge[:material/warning: {f}]" for f in flags)
    return " ".join(parts)


def picture_badges(badge: str | None, flags: Sequence[str], muted: bool = False) -> None:
    """Draw :func:`badge_markdown` (nothing when the picture has no percentile and no flag)."""
    text = badge_markdown(badge, flags, muted)
    if text:
        st.markdown(text)


THUMBNAIL_PX = 192  # a grid tile shows a picture at ~140-200 px: larger ones travel scaled to this


@functools.lru_cache(maxsize=512)  # a few pages of tiles (each key holds its picture: 100 KB at 227 px)
def thumbnail_png(png: bytes, max_px: int = THUMBNAIL_PX) -> bytes | None:
    """``png`` as it is when no side exceeds ``max_px`` (the toy world's 64 px pictures), else scaled down
    to ``max_px`` (a 227 px AlexNet picture: a grid page inline stays a few MB); None when it does not
    decode (a damaged file)."""
    try:
        with Image.open(io.BytesIO(png)) as img:
            if max(img.size) <= max_px:
                img.verify()
                return png
            img.thumbnail((max_px, max_px), Image.Resampling.LANCZOS)
            out = io.BytesIO()
            img.save(out, format="PNG")
            return out.getvalue()
    except (OSError, ValueError, SyntaxError):
        return None


MARKDOWN_MARKS = re.compile(r"([\\`*_\[\]~<>])")


def plain_caption(text: str) -> str:
    """``text`` shown as it is in a caption Streamlit renders as Markdown: a composite's ``0.7*3 + 0.3*7``
    read "0.73 + 0.37" with its middle in italics (a trial), a file ``tabby_1_2.jpg`` would too."""
    return MARKDOWN_MARKS.sub(r"\\\1", text)


def picture(png: bytes, caption: str | None = None, link: str | None = None) -> None:
    """A stored picture as its column's width, as the PNG it is (``st.image`` would re-encode it to JPEG),
    its caption as plain text; bytes that do not decode (a damaged file) are named on the page instead of
    ending the page."""
    shown = plain_caption(caption) if caption else caption
    try:
        st.image(png, caption=shown, width="stretch", link=link, output_format="PNG")
    except (OSError, ValueError, SyntaxError):  # PIL's errors for a broken PNG
        st.caption(f"(picture unreadable: `atlas verify --deep` names the damaged shard) {shown or ''}")


def tiles(
    items: Sequence[tuple[bytes | None, str]],
    *,
    columns: int = 8,
    badges: Sequence[Badges] | None = None,
) -> None:
    """Draw (png, caption) tiles in rows of ``columns``, each picture its column's width; ``badges`` (one
    per item) go under each image."""
    for start in range(0, len(items), columns):
        row = items[start : start + columns]
        cols = st.columns(columns)
        for i, (col, (png, caption)) in enumerate(zip(cols, row, strict=False)):
            with col:
                if png:  # as wide as its column: neighbours and their captions never overlap
                    picture(png, caption=caption)
                else:
                    st.caption(f"(no image) {caption}")
                if badges is not None:
                    picture_badges(*badges[start + i])


def layer_histograms(
    df: pd.DataFrame,
    field: str,
    *,
    order: Sequence[str] | None = None,
    maxbins: int = 24,
    height: int = 110,
) -> list[alt.Chart]:
    """One small histogram of ``field`` per layer (in ``order``, the run's layer order; else sorted), each
    binned over its own range: layers differ in scale by orders of magnitude (a class logit vs a conv
    channel's mean), so one shared axis would squeeze every layer but the widest into a sliver. Colours
    match the other per-layer charts (assigned in sorted order). A layer whose units all share one value
    (fc8's log-probs of sure classes: 0) gets one narrow bar there, not a block over the whole axis."""
    layers = sorted(df["layer"].dropna().unique().tolist())
    shown = [name for name in order if name in layers] if order is not None else layers
    charts = []
    for layer in shown:
        values = without_noise(df.loc[df["layer"] == layer, field].astype(float)).to_numpy()
        values = values[np.isfinite(values)]
        if values.size == 0:
            continue
        domain = None
        if np.ptp(values) == 0:  # one value: a narrow bar in a window around it
            pad = max(1.0, abs(float(values[0])) * 0.5)
            edges = np.array([values[0] - pad / 24, values[0] + pad / 24])
            domain = [float(values[0]) - pad, float(values[0]) + pad]
        else:
            edges = np.histogram_bin_edges(values, bins="auto")
            if len(edges) - 1 > maxbins:
                edges = np.histogram_bin_edges(values, bins=maxbins)
        counts, edges = np.histogram(values, bins=edges)
        bins = pd.DataFrame({"start": edges[:-1], "end": edges[1:], "units": counts, "layer": layer})
        charts.append(
            alt.Chart(bins, height=height)  # the whole chart's height (Streamlit fits it): axes included
            .mark_bar()
            .encode(
                x=alt.X(
                    "start:Q",
                    title=None,
                    scale=alt.Scale(zero=False, **({"domain": domain} if domain else {})),
                    axis=alt.Axis(tickCount=4, format=AXIS_NUMBERS),
                ),
                x2="end:Q",
                y=alt.Y("units:Q", title=layer, axis=alt.Axis(tickCount=3, format="d", titleFontSize=11)),
                y2=alt.datum(0),  # a bar from 0 up over its bin (x to x2), not a dash at its count
                color=alt.Color("layer:N", scale=alt.Scale(domain=layers), legend=None),
                tooltip=[
                    alt.Tooltip("start:Q", title="from", format=".3g"),
                    alt.Tooltip("end:Q", title="to", format=".3g"),
                    alt.Tooltip("units:Q", title="units"),
                ],
            )
        )
    return charts


def count_bars(df: pd.DataFrame, field: str, title: str, *, height: int = 220) -> alt.Chart:
    data = df[["layer", field]].dropna()
    return (
        alt.Chart(data, title=title, height=height)
        .mark_bar()
        .encode(
            x=alt.X(f"{field}:O", title=None, axis=alt.Axis(labelAngle=0)),
            xOffset="layer:N",
            y=alt.Y("count():Q", title="units"),
            # the legend below the bars: at its right it took a phone's width and left the plot 15 px
            color=alt.Color("layer:N", title="layer", legend=alt.Legend(orient="bottom", columns=3)),
            tooltip=["layer:N", f"{field}:O", alt.Tooltip("count():Q", title="units")],
        )
    )


def trajectory_chart(steps: pd.DataFrame, metric: str, title: str, *, height: int = 220) -> alt.Chart:
    data = steps[["chain", "step", metric]].copy()
    data["chain"] = data["chain"].astype(str)
    data[metric] = without_noise(data[metric])
    y = alt.Y(
        f"{metric}:Q",
        title=None,
        scale=alt.Scale(zero=False, reverse=metric == "rank"),
        axis=alt.Axis(format="d", tickMinStep=1) if metric == "rank" else alt.Axis(format=AXIS_NUMBERS),
    )  # a flat series gets one tick: "0", not "0.000000"
    encoding = {
        # whole steps, and one domain for every chart of the same steps (a metric's gaps move no axis)
        "x": alt.X(
            "step:Q",
            title="step",
            axis=alt.Axis(format="d", tickMinStep=1),
            scale=alt.Scale(domain=[0, max(1, int(steps["step"].max()))]),
        ),
        "y": y,
        "color": alt.Color("chain:N", title="chain"),
        "tooltip": ["chain:N", "step:Q", alt.Tooltip(f"{metric}:Q", format=".4g")],
    }
    lines = alt.Chart(data).mark_line(point=False, strokeWidth=1.8).encode(**encoding)
    # a chain with one recorded value (stopped at its start) has no line to draw: a dot instead
    alone = data[data.groupby("chain")[metric].transform("count") == 1].dropna(subset=[metric])
    if alone.empty:  # no empty layer: Vega warns "Infinite extent" for each one in the browser's console
        return alt.layer(lines, title=title, height=height)
    dots = alt.Chart(alone).mark_point(filled=True, size=50, opacity=1).encode(**encoding)
    return alt.layer(lines, dots, title=title, height=height)


def tuning_chart(
    tuning: pd.DataFrame, metric: str, *, threshold: float, height: int | None = None
) -> alt.Chart:
    """Horizontal bars of a unit's top concepts (best first): ``metric`` "mean" (the unit's mean activation
    on each concept's natural images) or "auroc" (with the label threshold drawn as a rule); the label's
    bar is darker."""
    data = tuning.assign(role=["label" if x else "other" for x in tuning["is_label"]])
    title = (
        "mean activation on the concept's natural images" if metric == "mean" else "AUROC (unit as detector)"
    )
    x_scale = alt.Scale(domain=[0.5, 1.0]) if metric == "auroc" else alt.Scale(zero=True)
    high = float(data["mean"].max()) if metric == "mean" and len(data) else 0.0
    # a unit below 0 on every concept (silent): dots on an axis that ends at 0, where a bar's length (from
    # 0, or from below the lowest) would say nothing a reader could use
    silent = high < 0
    # the whole chart's height (Streamlit fits the axes inside it): at least 190 px, which the y axis's
    # title needs, or 3 concepts' names were drawn on one spot over no bars (a trial)
    tall = height or max(190, 24 * len(data) + 70)
    bars = (
        alt.Chart(data, height=tall).mark_circle(size=90, opacity=1)
        if silent
        else alt.Chart(data, height=tall).mark_bar(clip=True)
    ).encode(
        x=alt.X(f"{metric}:Q", title=title, scale=x_scale),
        y=alt.Y(
            "concept:N",
            sort=list(data["concept"]),
            title="concept (by AUROC)",  # the same order under either metric; longer was cut at the axis
            axis=alt.Axis(labelOverlap=False, labelLimit=260),  # whole names: colour:yellow@here
        ),
        color=alt.Color(
            "role:N",
            scale=alt.Scale(domain=["label", "other"], range=["#1f77b4", "#9ecae1"]),
            legend=None,
        ),
        tooltip=["concept:N", alt.Tooltip("auroc:Q", format=".3f"), alt.Tooltip("mean:Q", format=".4g")],
    )
    if metric != "auroc":
        return bars
    rule = alt.Chart(pd.DataFrame({"x": [threshold]})).mark_rule(strokeDash=[4, 3], color="#d62728")
    return bars + rule.encode(x="x:Q")


def link_notice() -> None:
    """The notices the page's own controls left while drawing (a link's value they cannot take), as the
    app shows those of the URL above every page."""
    from viewer import state

    said = state.take_notice()
    if said:
        st.warning(said, icon=":material/link_off:")


def markdown_text(text: str) -> str:
    """Plain text for a markdown label (a button's, a title's): a composite's ``0.7*3 + 0.3*7`` keeps its
    asterisks instead of turning into italics; Streamlit's ``:directives[...]`` are left unopened."""
    return re.sub(r"([\\`*_{}\[\]<>~$])", r"\\\1", text)


def unit_picker(
    ctx: Context, options: Sequence[tuple[str, int, str | None]], key: str, label: str = "Open a unit"
) -> None:
    """A select box of (layer, unit, composite expression or None) and a link that opens the chosen unit's
    page in this tab; a composite reads with its expression ("fc8 · unit 10 · 3 + 5", as on its page)."""
    from viewer.data.units import unit_name

    def name(option: tuple[str, int, str | None]) -> str:
        return f"{option[0]} · {unit_name(option[1], option[2])}"

    c1, c2 = st.columns([2, 1], vertical_alignment="bottom")
    pick = c1.selectbox(label, list(options), format_func=name, key=f"{key}_pick")
    with c2:
        page_link(ctx, "unit", f"Open {markdown_text(name(pick))}", ":material/arrow_forward:",
                  layer=pick[0], unit=pick[1])  # fmt: skip


def page_link(
    ctx: Context,
    page: str,
    label: str,
    icon: str | None = None,
    *,
    layer: str | None = None,
    unit: int | None = None,
    help: str | None = None,
) -> None:
    """A link that opens ``page`` in this tab, showing ``layer`` and ``unit`` (the session's where None):
    one history entry, which one Back undoes (:func:`viewer.state.link_params`)."""
    from viewer import state

    st.page_link(
        ctx.pages[page], label=label, icon=icon, help=help, width="stretch",
        query_params=state.link_params(page, ctx.multi_run, layer=layer, unit=unit),
    )  # fmt: skip


def chain_table(chains: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A unit's chains as a table for the screen: seeds as text (64-bit: beyond what a number column shows
    exactly), float noise around 0 as 0, and floats at 4 significant digits. Returns (data, column_config)."""
    table = chains.copy()
    config: dict[str, Any] = {}
    for name in table.columns:
        if name == "seed":
            table[name] = table[name].map(lambda v: "" if pd.isna(v) else str(int(v)))
            config[name] = st.column_config.TextColumn("seed")
        elif table[name].dtype.kind == "f":
            table[name] = without_noise(table[name])
            config[name] = st.column_config.NumberColumn(name, format="%.4g")
    return table, config
