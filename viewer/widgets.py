"""Small drawing helpers shared by the pages (image tiles, number formatting, charts)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

CSS = """
<style>
/* generated images are small (32-64 px): show pixels, not blur */
[data-testid="stImage"] img, [data-testid="stFullScreenFrame"] img {
  image-rendering: pixelated; border-radius: 4px;
}
[data-testid="stImageCaption"] { font-size: 0.78rem; line-height: 1.15; text-align: center; }
[data-testid="stMetricValue"] { font-size: 1.55rem; }
div.block-container { padding-top: 2.2rem; }
.atlas-tile-label { font-size: 0.8rem; color: rgba(128,128,128,0.95); margin: -0.2rem 0 0.1rem 0; }
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
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(v):
        return "–"
    return f"{v:.{digits}g}" if abs(v) < 1e4 else f"{v:,.0f}"


def tiles(
    items: Sequence[tuple[bytes | None, str]],
    *,
    columns: int = 8,
    width: int = 112,
) -> None:
    """Draw (png, caption) tiles in rows of ``columns``."""
    for start in range(0, len(items), columns):
        row = items[start : start + columns]
        cols = st.columns(columns)
        for col, (png, caption) in zip(cols, row, strict=False):
            with col:
                if png:
                    st.image(png, caption=caption, width=width)
                else:
                    st.caption(f"(no image) {caption}")


def histogram(df: pd.DataFrame, field: str, title: str, *, maxbins: int = 30, height: int = 220) -> alt.Chart:
    data = df[["layer", field]].dropna()
    return (
        alt.Chart(data, title=title, height=height)
        .mark_bar(opacity=0.75)
        .encode(
            x=alt.X(f"{field}:Q", bin=alt.Bin(maxbins=maxbins), title=None),
            y=alt.Y("count():Q", title="units", stack=None),
            color=alt.Color("layer:N", title="layer"),
            tooltip=["layer:N", alt.Tooltip("count():Q", title="units")],
        )
    )


def count_bars(df: pd.DataFrame, field: str, title: str, *, height: int = 220) -> alt.Chart:
    data = df[["layer", field]].dropna()
    return (
        alt.Chart(data, title=title, height=height)
        .mark_bar()
        .encode(
            x=alt.X(f"{field}:O", title=None, axis=alt.Axis(labelAngle=0)),
            xOffset="layer:N",
            y=alt.Y("count():Q", title="units"),
            color=alt.Color("layer:N", title="layer"),
            tooltip=["layer:N", f"{field}:O", alt.Tooltip("count():Q", title="units")],
        )
    )


def trajectory_chart(steps: pd.DataFrame, metric: str, title: str, *, height: int = 220) -> alt.Chart:
    data = steps[["chain", "step", metric]].copy()
    data["chain"] = data["chain"].astype(str)
    y = alt.Y(f"{metric}:Q", title=None, scale=alt.Scale(zero=False, reverse=metric == "rank"))
    return (
        alt.Chart(data, title=title, height=height)
        .mark_line(point=False, strokeWidth=1.8)
        .encode(
            x=alt.X("step:Q", title="step"),
            y=y,
            color=alt.Color("chain:N", title="chain"),
            tooltip=["chain:N", "step:Q", alt.Tooltip(f"{metric}:Q", format=".4g")],
        )
    )
