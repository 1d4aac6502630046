"""Layer grid: unit thumbnails (best or last image) with unit id, activation, concept label and flagged
pictures; sort, filter (units, facets, judge, label text, flags), paging.

Only the visible page is queried (units first, then the shown image of just those units), so a
4096-unit layer costs the same as a 10-unit one.
"""

from __future__ import annotations

import dataclasses
import html
import math

import pandas as pd
import streamlit as st

from atlas.errors import AtlasError
from viewer import data, state, widgets
from viewer.context import Context

PAGE_SIZES = (24, 48, 96, 192)
ROW_TILES = 6  # tiles a row holds on a 1440 px screen with the sidebar open (widgets.TILE_PX wide or more)
JUDGE = ["all", "correct", "wrong"]
FIRST_PAGE = {"on_change": state.go, "kwargs": {"grid_page": 0}}  # a new sort or filter starts at page 1


def _truth_filters(ctx: Context, layer: str, have: data.Truth) -> dict:
    """Label text, flag and natural-images filters (a second row; only the columns the run has, and the
    natural-images filter where the layer has silent units)."""
    silent = data.silent_count(ctx.conn, layer)
    if not silent:  # nothing to filter on: no filter kept, none in the URL
        st.session_state[state.GRID_PARAMS["natural"][0]] = "all units"
    if not (have.labels or have.pictures or silent):
        return {}
    c1, c2, c3 = st.columns([2.2, 2.6, 3.4])
    out: dict = {}
    if silent:
        choices = list(data.NATURAL)
        choice = c3.selectbox(
            "Natural images", choices, key=state.grid_widget("natural", choices),
            help=f"{silent} unit{'s' if silent != 1 else ''} of this layer fire on no natural image (their "
            "highest real activation is <= 0): their pictures, facets and labels come from synthetic "
            "pictures alone; leave them out, or look at them alone",
            **FIRST_PAGE,
        )  # fmt: skip
        out["natural"] = data.NATURAL[choice]
    if have.labels:
        out["label_text"] = c1.text_input(
            "Label contains", key=state.grid_widget("label"), placeholder="e.g. hook, colour:, no label",
            help="substring of the unit's concept label (any case); `no label` lists units without one, "
            "`silent` the silent ones",
            **FIRST_PAGE,
        )  # fmt: skip
    if have.pictures:
        options = {"all units": None, **{f"with {f} pictures": f for f in data.flag_names(ctx.conn, layer)}}
        choice = c2.selectbox(
            "Pictures", list(options), key=state.grid_widget("flag", list(options)),
            help="units whose best or last pictures carry a flag: weak (natural percentile below p99), "
            "off_path (path percentile below p1: it reaches the unit another way than natural images), "
            "off_manifold (G redraws it worse than 99 % of natural images)",
            **FIRST_PAGE,
        )  # fmt: skip
        out["flag"] = options.get(choice)
    return out


def _filters(ctx: Context, layer: str, have: data.Truth) -> data.GridQuery:
    """The filter rows; an unreadable units filter shows an error and filters nothing."""
    verdicts = data.has_verdicts(ctx.conn, layer)  # the judge reads output units only
    if verdicts:
        c1, c2, c3, c4, c5, c6 = st.columns([2.2, 1.4, 1.2, 1.6, 1.0, 1.0])
    else:  # no Judge column: no gap where it would be
        (c1, c2, c3, c5, c6), c4 = st.columns([2.2, 1.4, 1.2, 1.0, 1.0]), None
    sorts = data.sorts(have.labels, have.pictures)
    st.session_state["grid_sort_first"] = sorts[0]  # the default, left out of the URL
    sort = c1.selectbox("Sort by", sorts, key=state.grid_widget("sort", sorts), **FIRST_PAGE)
    units_text = c2.text_input(
        "Units", key=state.grid_widget("units"), placeholder="e.g. 3, 10-20", **FIRST_PAGE
    )
    max_facets = data.max_facet_count(ctx.conn, layer)
    facets = list(range(max_facets + 1))
    min_facets = c3.number_input("Min facets", min_value=0, max_value=max_facets,
                                 key=state.grid_widget("facets", facets), **FIRST_PAGE)  # fmt: skip
    judge = "all"
    if c4 is not None:
        judge = c4.selectbox("Judge", JUDGE, key=state.grid_widget("judge", JUDGE), **FIRST_PAGE)
    else:  # no verdicts here: no judge filter in the URL or the empty grid's message either
        st.session_state[state.GRID_PARAMS["judge"][0]] = "all"
    if "grid_page_size" not in st.session_state:
        st.session_state["grid_page_size"] = PAGE_SIZES[1]
    page_size = c5.selectbox(
        "Per page", PAGE_SIZES, key=state.grid_widget("per", list(PAGE_SIZES)), **FIRST_PAGE
    )
    pictures = list(data.PICTURES)
    picture = c6.selectbox(
        "Picture", pictures, key=state.grid_widget("picture", pictures),
        help="best: each chain's highest-objective picture over all its steps (what the run ranks by); "
        "last: each chain's final iterate (what the released act_max.py saves). A tile shows the unit's "
        "most activating one.",
    )  # fmt: skip
    truth = _truth_filters(ctx, layer, have)
    try:
        units = data.parse_units(units_text)
    except AtlasError as exc:
        st.error(f"Cannot read the units filter: {exc}. Use numbers and ranges, e.g. `3, 10-20`.")
        units = ()
    return data.GridQuery(
        layer=layer,
        sort=sort,
        min_facets=int(min_facets),
        units=units,
        only_correct={"all": None, "correct": True, "wrong": False}[judge],
        page_size=int(page_size),
        picture=picture,
        **truth,
    )


def _pager(page: int, pages: int, total: int, page_size: int, where: str = "") -> None:
    """First / Prev / "page 2 of 3 · units 49-96 of 130" / Next / Last (``where``: the key suffix of a
    second pager, under the tiles); a grid of one page says only its count (four disabled buttons took a
    phone's first screen: a trial)."""
    if pages == 1:
        shown = "showing the one unit" if total == 1 else f"showing all {total:,} units"
        st.markdown(f"<div class='atlas-pager'>{shown}</div>", unsafe_allow_html=True)
        return
    nav = st.columns([1, 1, 3, 1, 1])
    nav[0].button("First", icon=":material/first_page:", disabled=page == 0, key=f"grid_first{where}",
                  on_click=state.go, kwargs={"grid_page": 0}, width="stretch")  # fmt: skip
    nav[1].button("Prev", icon=":material/chevron_left:", disabled=page == 0, key=f"grid_prev{where}",
                  on_click=state.go, kwargs={"grid_page": page - 1}, width="stretch")  # fmt: skip
    first, last = page * page_size + 1, min((page + 1) * page_size, total)
    nav[2].markdown(
        "<div class='atlas-pager' style='text-align:center;padding-top:0.4rem'>"
        f"page <b>{page + 1}</b> of {pages} · "
        f"showing {first if total else 0}–{last} of {total:,} units</div>",
        unsafe_allow_html=True,
    )
    last = page >= pages - 1
    nav[3].button("Next", icon=":material/chevron_right:", disabled=last, key=f"grid_next{where}",
                  on_click=state.go, kwargs={"grid_page": page + 1}, width="stretch")  # fmt: skip
    nav[4].button("Last", icon=":material/last_page:", disabled=last, key=f"grid_last{where}",
                  on_click=state.go, kwargs={"grid_page": pages - 1}, width="stretch")  # fmt: skip


def _label_line(rec: dict) -> str:
    """The tile's label line: the label and its AUROC, or "no label" (grey) with the best concept and its
    score, and why it is no label as the line's tooltip."""
    value = rec.get("label_score")
    score = data.fmt_auroc(value)
    if isinstance(rec.get("label"), str):
        label = widgets.concept_html(str(rec["label"]), wrap=False)
        return (
            f"<div class='atlas-tile-concept' title='{label} · AUROC {score}: how well the unit tells "
            f"natural images with the concept from those without'>"
            f"<span class='atlas-tile-name'>{label}</span>"  # a long name is cut, never the score
            # the score without its name (in the tooltip): at 1280 px "class:d… · AUROC 1.000" kept the
            # number and cut the label a student needs (a trial)
            f"<span class='atlas-tile-score'>&nbsp;· {score}</span></div>"
        )
    silent = data.is_silent(rec)
    best = rec.get("label_best")
    if not isinstance(best, str):
        return f"<div class='atlas-tile-label'>no label{' · silent' if silent else ''}</div>"
    share = rec.get("label_top_share")
    why = data.no_label_reason(
        data.LabelView(label=None, score=value, best=best, runner_up=None, margin=None, tuning=pd.DataFrame(),
                       top_share=None if pd.isna(share) else float(share), silent=silent),
        code="",
    )  # fmt: skip
    if silent:
        return f"<div class='atlas-tile-label' title='{html.escape(why, quote=True)}'>no label · silent</div>"
    return (
        f"<div class='atlas-tile-label' title='{html.escape(why, quote=True)}'>no label · best "
        f"{widgets.concept_html(best, wrap=False)} {score}</div>"
    )


def _flag_line(counts: dict) -> str:
    text = " · ".join(f"{n} {html.escape(flag)}" for flag, n in sorted(counts.items()))
    tip = f"flagged best/last pictures: {text}"
    return f"<div class='atlas-tile-flag' title='{tip}'>⚠ {text}</div>" if text else ""


def _failed_line(rec: dict) -> str:
    """A failed unit's tile line: "failed" (its error whole as the line's tooltip; the error is written in
    the picture's place above)."""
    return (
        f"<div class='atlas-tile-flag' title='{html.escape(_error(rec), quote=True)}'>✗ failed · no "
        "pictures</div>"
    )


def _error(rec: dict) -> str:
    return rec["error"] if isinstance(rec.get("error"), str) else "no error recorded"


def _no_picture(rec: dict) -> str:
    """A square where a tile's picture would be (the tiles stay as high as their neighbours): a failed
    unit's error (its first lines; whole as the tooltip), else "no image"."""
    if rec.get("status") != "error":
        return "<div class='atlas-tile-empty'>no image</div>"
    error = html.escape(_error(rec), quote=True)
    return f"<div class='atlas-tile-empty failed' title='{error}'><b>failed</b><span>{error}</span></div>"


def _tile(rec: dict, have: data.Truth, link: str, picture: str) -> str:
    """One unit's tile as HTML: its picture (a link to the unit page, ``link``, in a new tab), its name (a
    link that opens the unit here) and one line each for its numbers, its label and its flagged pictures:
    every line one line high (cut with "…"; the whole text as its tooltip), so tiles line up in even rows."""
    unit = int(rec["unit"])
    name = data.unit_name(unit, rec.get("composite"))
    href, quoted = html.escape(link, quote=True), html.escape(name, quote=True)
    failed = rec.get("status") == "error"  # its error in the picture's place (older runs kept pictures)
    small = widgets.thumbnail_png(rec["png"]) if rec["png"] is not None and not failed else None
    if small is not None:  # inline: the page's pictures arrive with it, not as 192 requests
        shown = (
            f"<a class='atlas-tile-picture' href='{href}' target='_blank' rel='noopener' title='open "
            f"{quoted} in a new tab'><img src='{data.png_data_url(small)}' alt='{quoted}'></a>"
        )
    elif rec["png"] is not None and not failed:  # bytes that do not decode: named, the page goes on
        shown = (
            "<div class='atlas-tile-empty failed'>picture unreadable: <code>atlas verify --deep</code> names "
            "the damaged shard</div>"
        )
    else:
        shown = _no_picture(rec)
    title = f"<a class='atlas-tile-name' href='{href}' target='_self' title='open {quoted}'>{quoted}</a>"
    if rec.get("status") == "error":
        return _tile_box(unit, shown + title + _failed_line(rec))
    facets = rec.get("facet_count")
    facet_text = "" if pd.isna(facets) else f" · {int(facets)} facet{'' if int(facets) == 1 else 's'}"
    if picture == "best":
        act = widgets.fmt(rec.get("best_activation"))
        tip = f"best activation {act}"
    else:  # the number of the picture shown
        act = widgets.fmt(rec.get("picture_activation"))
        tip = f"activation of this {picture} picture {act} (best {widgets.fmt(rec.get('best_activation'))})"
    lines = f"<div class='atlas-tile-label' title='{tip}{facet_text}'>act {act}{facet_text}</div>"
    if have.labels:
        lines += _label_line(rec)
    if have.pictures:  # a line on every tile, empty when none is flagged: rows of even height
        lines += _flag_line(rec.get("flag_counts") or {}) or "<div class='atlas-tile-flag'>&nbsp;</div>"
    return _tile_box(unit, shown + title + lines)


def _tile_box(unit: int, inner: str) -> str:
    return f"<div class='atlas-tile' data-unit='{unit}'>{inner}</div>"


def _missing_note(ctx: Context, layer: str, ranges: tuple[tuple[int, int], ...]) -> None:
    """Units the units filter names that no page can show: in a damaged shard, not written yet (a user's
    trial read "no unit matches" for units a damaged shard held), or not in the run at all."""
    running = ctx.info.get("status") == "running"
    for why in data.filter_notes(ctx.manifest, ctx.conn.damage, layer, ranges, ctx.ids(layer), running):
        st.caption(f"{why}.")


def these_units(n: int) -> str:
    return "this unit" if n == 1 else f"these {n:,} units"


def _nothing_matches(ctx: Context, layer: str) -> None:
    """The empty grid: which filters are on (the layer's unit range beside the units filter) and a button
    that clears them."""
    on = {param: value for param, value in state.grid_params().items() if param not in state.GRID_VIEW_PARAMS}
    ids = ctx.ids(layer)
    where = f" (layer {layer} has units {data.compact_units(ids)})" if ids and "units" in on else ""
    filters = ", ".join(f"{FILTER_NAMES.get(p, p)} `{v}`" for p, v in on.items())
    st.info(f"No unit matches the filters: {filters}{where}." if on else "No unit matches the filters.")
    st.button("Clear the filters", icon=":material/filter_alt_off:", key="grid_clear",
              on_click=state.clear_grid_filters)  # fmt: skip


FILTER_NAMES = {"units": "units", "facets": "min facets", "judge": "judge", "label": "label contains",
                "flag": "pictures", "natural": "natural images"}  # fmt: skip


def render(ctx: Context) -> None:
    layer = state.get("layer")
    st.title(f"Layer {layer}")
    st.caption(
        f"{ctx.size_text(layer)} · click a unit's name to open its page, its picture to open it in a new tab"
    )
    have = data.truth(ctx.conn)
    query = _filters(ctx, layer, have)
    state.grid_drawn()  # its widgets hold what a tile's link brought to the unit page
    widgets.link_notice()  # a link's filter value the grid cannot take (state.grid_widget)
    total = data.grid_count(ctx.conn, query)
    pages = max(1, math.ceil(total / query.page_size))
    asked = int(state.get("grid_page") or 0)
    page = min(asked, pages - 1)
    if asked > page and total:  # said, as other link values a page cannot take
        st.warning(f"There is no page {asked + 1} of this grid (it has {pages}); showing page {pages}.",
                   icon=":material/link_off:")  # fmt: skip
    state.set_("grid_page", page)
    _missing_note(ctx, layer, query.units)
    if total == 0:
        _nothing_matches(ctx, layer)
        return
    _pager(page, pages, total, query.page_size)
    records = data.grid_page(ctx.conn, dataclasses.replace(query, page=page)).to_dict("records")
    run = ctx.run_dir.name if ctx.multi_run else None
    # one CSS grid of tiles (widgets.CSS, .atlas-grid), one HTML block: as many columns of at least TILE_PX
    # as the page holds (6 at 1440 px with the sidebar open), every tile of a row as high as the row. As
    # ~800 Streamlit elements (a container, picture, button and lines a tile) a 192-tile page took 3.2-6.7 s
    # to turn in Chromium; as one block, 0.3-0.7 s (docs/viewer.md)
    back = state.grid_return_params()  # the unit page's grid button comes back to this page of the grid
    back.setdefault("sort", state.url_word("sort", query.sort))  # also the default: the unit page then steps
    # through the grid's order (previous / next), which a link without any grid parameter does not ask for
    tiles = "".join(
        _tile(rec, have, state.link("unit", layer, int(rec["unit"]), run, back), query.picture)
        for rec in records
    )
    st.markdown(f"<div class='atlas-grid'>{tiles}</div>", unsafe_allow_html=True)
    if len(records) > 2 * ROW_TILES and pages > 1:  # a long page of several: the pager again under it
        _pager(page, pages, total, query.page_size, "_bottom")
    name = f"{ctx.run_dir.name}-{layer}-units.csv"
    st.download_button(  # the table made only when clicked (a callable): no cost to draw the grid
        f"Download {these_units(total)} (CSV)", lambda: data.grid_table(ctx.conn, query).to_csv(index=False),
        file_name=name, mime="text/csv", icon=":material/download:", key="grid_download",
        help="every unit this sort and these filters select (all pages), in this order: numbers, judge, "
        "label and status, no pictures (`atlas export` writes the pictures)",
    )  # fmt: skip
