"""Audit: units whose synthetic pictures are flagged by the faithfulness checks (issue 16), most flagged
first, with each unit's label and a link to its page; a per-layer summary above. Lays out
:func:`viewer.data.flag_summary` and :func:`viewer.data.flagged_units`."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from viewer import data, state, widgets
from viewer.context import Context

ANY_FLAG = "any flag"


def _controls(ctx: Context, layer: str) -> tuple[tuple[str, ...], str | None, str | None]:
    """(picture kinds, layer or None for every layer, flag or None for any flag); each control in the URL
    when changed (``?pictures=``, ``?all=1``, ``?flag=``)."""
    c1, c2, c3 = st.columns([2, 1.4, 1.4])
    kind_names = list(data.AUDIT_KINDS)
    kinds = c1.selectbox(
        "Pictures", kind_names, key=state.audit_widget("pictures", kind_names, kind_names[0])
    )
    # every layer by default when this one has no flagged picture of those kinds (else an empty list)
    none_here = data.flagged_units(ctx.conn, data.AUDIT_KINDS[kinds], layer, None, labels=False).empty
    every = c2.toggle(
        "every layer",
        key=state.audit_widget("all", [True, False], none_here),
        help=f"off: only layer {layer} (sidebar)",
    )
    flags = [ANY_FLAG, *data.flag_names(ctx.conn)]
    flag = c3.selectbox("Flag", flags, key=state.audit_widget("flag", flags, ANY_FLAG))
    widgets.link_notice()
    return data.AUDIT_KINDS[kinds], None if every else layer, None if flag == ANY_FLAG else flag


def _summary(ctx: Context, kinds: tuple[str, ...]) -> pd.DataFrame:
    """The per-layer table of flag counts (:func:`viewer.data.flag_summary`), drawn and returned."""
    st.subheader("Per layer")
    summary = data.flag_summary(ctx.conn, kinds)
    shown = summary.assign(flagged_share=summary["flagged_share"] * 100)  # 2 of 415 is 0.5 %, not "0%"
    st.dataframe(shown, hide_index=True, column_config={
        "flagged": "flagged pictures",
        "flagged_share": st.column_config.ProgressColumn("share flagged", format="%.1f%%", min_value=0,
                                                         max_value=100, width="small"),
        "flagged_units": st.column_config.NumberColumn("flagged units", help="units with a flagged picture"),
        "checked": st.column_config.NumberColumn(
            "checked", help="pictures the checks could read (they need real images to compare with)"),
        "failed_units": st.column_config.NumberColumn("failed units", help="units that failed: no pictures"),
    })  # fmt: skip
    return summary


NOT_CHECKED = (
    "Not checked: {what} no natural percentile, path or manifold score, since the run had no real images "
    "to compare them with (`facets.real_images`; the toy world's test images when unset), so no flag "
    "could be raised. A run with real images gets them."
)


def _pictures(n: int) -> str:
    return f"{widgets.fmt(n)} flagged picture{'' if n == 1 else 's'}"


def _table(ctx: Context, units: pd.DataFrame, kinds: tuple[str, ...], flag: str | None) -> None:
    """The flagged units, each with its worst flagged picture beside its most activating natural image
    (the first :data:`viewer.data.AUDIT_PICTURE_ROWS` rows) and a link to its page."""
    run = ctx.run_dir.name if ctx.multi_run else None
    first = [(str(r.layer), int(r.unit)) for r in units.head(data.AUDIT_PICTURE_ROWS).itertuples()]
    pictures = data.audit_pictures(ctx.conn, first, kinds, flag)
    keys = [(str(r.layer), int(r.unit)) for r in units.itertuples()]
    if units["composite"].isna().all():
        units = units.drop(columns=["composite"])
    else:  # the layer's own units: an empty cell, not "None"
        units = units.assign(composite=units["composite"].fillna(""))
    shown = units.assign(
        label=[
            lab if isinstance(lab, str) else "no label · silent" if silent else "no label"
            for lab, silent in zip(units["label"], units["silent"], strict=True)
        ],  # a silent unit gets no label by rule, said as the grid says it
        page=[state.link("unit", r.layer, int(r.unit), run) for r in units.itertuples()],
        lowest_percentile=[data.percentile_text(v) for v in units["lowest_percentile"]],
    ).drop(columns=["silent"])
    shown.insert(2, "flagged picture", [data.png_data_url(pictures.get(k, (None, None))[0]) for k in keys])
    shown.insert(3, "top natural", [data.png_data_url(pictures.get(k, (None, None))[1]) for k in keys])
    if len(units) > data.AUDIT_PICTURE_ROWS:
        st.caption(f"pictures for the first {data.AUDIT_PICTURE_ROWS} units; open a unit for the rest")
    order = ["layer", "unit", "composite", "flagged picture", "top natural", "label", "label_score",
             "flagged", "pictures", "lowest_percentile"]  # fmt: skip
    flag_columns = [c for c in shown.columns if c not in {*order, "page"}]  # one count per flag
    # widths that fit the page (980 px at 1440 px with the sidebar open) with two flags
    config = {
        "layer": st.column_config.TextColumn("layer", width=60),
        "unit": st.column_config.NumberColumn("unit", width=52),
        "composite": st.column_config.TextColumn("composite", width=90, help="the composite's expression"),
        "flagged picture": st.column_config.ImageColumn(
            "flagged picture", width=ROW_PX + 8,
            help="its flagged picture with the lowest natural percentile"),
        "top natural": st.column_config.ImageColumn(
            "top natural", width=ROW_PX + 8, help="the natural image that drives the unit most"),
        "label": st.column_config.TextColumn("label", width=130),
        "label_score": st.column_config.NumberColumn("AUROC", format="%.3f", width=64,
                                                     help="the label's AUROC"),
        "flagged": st.column_config.NumberColumn("flagged", width=64, help="flagged pictures"),
        "pictures": st.column_config.NumberColumn("checked", width=64, help="pictures checked"),
        "lowest_percentile": st.column_config.TextColumn(
            "lowest pct", width=72, help="the lowest natural percentile of its pictures"),
        "page": st.column_config.LinkColumn("unit page", display_text="open unit", width=80),
        **{c: st.column_config.NumberColumn(c, width=76, help=f"pictures flagged {c}")
           for c in flag_columns},
    }  # fmt: skip
    height = 38 + ROW_PX * min(len(shown), SHOWN_ROWS) + 3  # header, rows, border: a short list whole
    columns = [*order[:2], "page", *order[2:], *flag_columns]  # the link beside its unit: last, it was cut
    st.dataframe(shown, hide_index=True, row_height=ROW_PX, height=height, column_config=config,
                 column_order=[c for c in columns if c in shown.columns])  # fmt: skip


ROW_PX = 112  # the flagged units' rows: pictures ~106 px, big enough to judge a flag
SHOWN_ROWS = 7  # rows the table shows before it scrolls (the table then fits a 900 px screen)


def _elsewhere(ctx: Context, kinds, flag: str | None, labels: bool) -> str:
    """Where the flagged units are when the sidebar's layer has none (the page opens on that layer)."""
    every = data.flagged_units(ctx.conn, kinds, None, flag, labels=labels)
    if every.empty:
        return ""
    counts = every["layer"].value_counts()
    order = [name for name, _ in ctx.layers if name in counts.index]  # the run's layer order
    listed = ", ".join(f"{name} {int(counts[name])}" for name in order)
    return f" Flagged units in other layers: {listed} (turn on **every layer**, or pick one in the sidebar)."


def render(ctx: Context) -> None:
    layer = state.get("layer")
    st.title("Audit")
    st.caption(
        "Units whose synthetic pictures carry a flag. **weak**: the picture drives its unit less than the "
        "top 1 % of natural images do (natural percentile < p99), so it may not show what the unit responds "
        "to in natural images; **off_path**: it reaches the unit along another path through the earlier "
        "layers than natural images do (path percentile < p1); **off_manifold**: G redraws it worse than "
        "99 % of natural images (manifold percentile < p1), it is off the image manifold G learned."
    )
    have = data.truth(ctx.conn)
    if not have.pictures:
        st.info(
            "This run has no faithfulness columns (`natural_percentile`, `flags`): it was written before "
            "they existed. Runs made now have them.",
            icon=":material/info:",
        )
        return
    kinds, scope, flag = _controls(ctx, layer)
    summary = _summary(ctx, kinds)
    failures = data.failures(ctx.conn)
    in_scope = summary if scope is None else summary[summary["layer"] == scope]
    if int(in_scope["pictures"].sum()) > 0 and int(in_scope["checked"].sum()) == 0:  # a trial read all clear
        what = "this run's pictures have" if scope is None else f"layer {scope}'s pictures have"
        st.info(NOT_CHECKED.format(what=what), icon=":material/info:")
        if failures["count"]:
            st.warning(f"{failures['count']:,} failed units have no pictures: the overview names their "
                       f"error; {data.redo_hint(ctx.run_dir.uri)}.", icon=":material/error:")  # fmt: skip
        return
    units = data.flagged_units(ctx.conn, kinds, scope, flag, labels=have.labels)
    where = "every layer" if scope is None else f"layer {scope}"
    st.subheader(f"Flagged units · {where}")
    failed = failures["count"] if scope is None else failures["per_layer"].get(scope, 0)
    unchecked = (
        f" {failed:,} failed unit{' has' if failed == 1 else 's have'} no pictures to check"
        f"{'' if scope is None else f' in layer {scope}'}: "
        f"the overview names their error; {data.redo_hint(ctx.run_dir.uri)}."
        if failed
        else ""
    )
    if units.empty:
        elsewhere = "" if scope is None else _elsewhere(ctx, kinds, flag, have.labels)
        done = f"No unit of this selection has a flagged picture.{elsewhere}{unchecked}"
        if failed:
            st.warning(done, icon=":material/error:")
        else:
            st.success(done, icon=":material/check_circle:")
        return
    if failed:
        st.warning(unchecked.strip(), icon=":material/error:")
    total = sum(n for name, n in ctx.layers if scope is None or name == scope)
    st.caption(
        f"{len(units):,} of {total:,} units · {_pictures(int(units['flagged'].sum()))} "
        "(a chain's best picture that is also its last counted once)"
    )
    _table(ctx, units, kinds, flag)
    widgets.unit_picker(
        ctx, [(str(r.layer), int(r.unit), r.composite if isinstance(r.composite, str) else None)
         for r in units.itertuples()], key="audit",
    )  # fmt: skip
