"""Layer grid: unit thumbnails (best image) with unit id and activation; sort, filter, paging.

Only the visible page is queried (units first, then the best image of just those units), so a
4096-unit layer costs the same as a 10-unit one.
"""

from __future__ import annotations

import math

import streamlit as st

from viewer import data, state, widgets
from viewer.context import Context

PAGE_SIZES = (24, 48, 96, 192)
COLUMNS = 8


def render(ctx: Context) -> None:
    layer = state.get("layer")
    n_units = dict(ctx.layers).get(layer, 0)
    st.title(f"Layer {layer}")
    st.caption(f"{n_units:,} units · click a unit to open its page")

    c1, c2, c3, c4, c5 = st.columns([2.2, 1.4, 1.2, 1.6, 1.0])
    sort = c1.selectbox("Sort by", list(data.SORTS), key="grid_sort")
    units_text = c2.text_input("Units", key="grid_units", placeholder="e.g. 3, 10-20")
    max_facets = int(ctx.conn.cursor().execute(
        "SELECT coalesce(max(facet_count), 1) FROM units WHERE layer = ?", [layer]
    ).fetchone()[0])  # fmt: skip
    min_facets = c3.number_input(
        "Min facets", min_value=0, max_value=max(max_facets, 1), key="grid_min_facets"
    )
    judge = c4.selectbox("Judge", ["all", "correct", "wrong"], key="grid_judge")
    page_size = c5.selectbox("Per page", PAGE_SIZES, index=1, key="grid_page_size")

    try:
        data.parse_units(units_text)
    except ValueError:
        st.error(f"Cannot read units filter {units_text!r}: use numbers and ranges, e.g. `3, 10-20`.")
        units_text = ""
    query = data.GridQuery(
        layer=layer,
        sort=sort,
        min_facets=int(min_facets),
        units_text=units_text,
        only_correct={"all": None, "correct": True, "wrong": False}[judge],
        page_size=int(page_size),
    )
    total = data.grid_count(ctx.conn, query)
    pages = max(1, math.ceil(total / query.page_size))
    page = min(int(state.get("grid_page") or 0), pages - 1)
    state.set_("grid_page", page)

    nav = st.columns([1, 1, 3, 1, 1])
    nav[0].button("First", icon=":material/first_page:", disabled=page == 0, key="grid_first",
                  on_click=state.go, kwargs={"grid_page": 0}, width="stretch")  # fmt: skip
    nav[1].button("Prev", icon=":material/chevron_left:", disabled=page == 0, key="grid_prev",
                  on_click=state.go, kwargs={"grid_page": page - 1}, width="stretch")  # fmt: skip
    first, last = page * query.page_size + 1, min((page + 1) * query.page_size, total)
    nav[2].markdown(
        f"<div style='text-align:center;padding-top:0.4rem'>page <b>{page + 1}</b> of {pages} · "
        f"units {first if total else 0}–{last} of {total:,}</div>",
        unsafe_allow_html=True,
    )
    nav[3].button("Next", icon=":material/chevron_right:", disabled=page >= pages - 1, key="grid_next",
                  on_click=state.go, kwargs={"grid_page": page + 1}, width="stretch")  # fmt: skip
    nav[4].button("Last", icon=":material/last_page:", disabled=page >= pages - 1, key="grid_last",
                  on_click=state.go, kwargs={"grid_page": pages - 1}, width="stretch")  # fmt: skip

    if total == 0:
        st.info("No unit matches the filter.")
        return
    rows = data.grid_page(ctx.conn, data.GridQuery(**{**query.__dict__, "page": page}))
    records = rows.to_dict("records")
    for start in range(0, len(records), COLUMNS):
        cols = st.columns(COLUMNS)
        for col, rec in zip(cols, records[start : start + COLUMNS], strict=False):
            with col.container(border=True, gap=None):
                unit = int(rec["unit"])
                png = rec.get("png")
                if isinstance(png, bytes | bytearray) and png:
                    st.image(bytes(png), width="stretch")
                else:
                    st.caption("no image")
                facets = rec.get("facet_count")
                facet_text = "" if facets is None or facets != facets else f" · {int(facets)} facet"
                facet_text += "s" if facet_text and int(facets) != 1 else ""
                st.button(
                    f"**unit {unit}**",
                    key=f"grid_unit_{unit}",
                    help=f"open unit {unit}",
                    on_click=state.go,
                    kwargs={"page": "unit", "unit": unit},
                    type="tertiary",
                )
                st.markdown(
                    f"<div class='atlas-tile-label'>act {widgets.fmt(rec.get('best_activation'))}"
                    f"{facet_text}</div>",
                    unsafe_allow_html=True,
                )
