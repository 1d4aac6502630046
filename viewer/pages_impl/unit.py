"""Unit page: facets, every chain's best / last / snapshot images, real top-k, trajectories,
competing units, links to the neighbouring units."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from viewer import data, state, widgets
from viewer.context import Context


def _bytes(value) -> bytes | None:
    return bytes(value) if isinstance(value, bytes | bytearray | memoryview) and len(value) else None


def _nav(ctx: Context, layer: str, unit: int, prev: int | None, nxt: int | None, suffix: str) -> None:
    c1, c2, c3 = st.columns([1, 1, 4])
    c1.button(f"unit {prev}" if prev is not None else "first unit", icon=":material/chevron_left:",
              disabled=prev is None, key=f"unit_prev_{suffix}", on_click=state.go,
              kwargs={"unit": prev}, width="stretch")  # fmt: skip
    c2.button(f"unit {nxt}" if nxt is not None else "last unit", icon=":material/chevron_right:",
              icon_position="right", disabled=nxt is None, key=f"unit_next_{suffix}", on_click=state.go,
              kwargs={"unit": nxt}, width="stretch")  # fmt: skip
    if suffix == "top":
        run = ctx.run_dir.name if ctx.multi_run else None
        c3.markdown(f"[permalink]({state.link('unit', layer, unit, run)}) · "
                    f"[back to the {layer} grid]({state.link('layer', layer, None, run)})")  # fmt: skip


def render(ctx: Context) -> None:
    layer = state.get("layer")
    ids = ctx.ids(layer)
    if not ids:
        st.info(f"Layer {layer} has no units yet.")
        return
    if state.get("unit") is None:
        state.set_("unit", ids[0])

    top = st.columns([3, 1])
    with top[1]:
        st.number_input(
            "Unit",
            min_value=min(ids),
            max_value=max(ids),
            step=1,
            key=state.bind_widget("unit"),
            on_change=state.from_widget,
            args=("unit",),
        )
    unit = int(state.get("unit"))
    page = data.unit_page(ctx.conn, layer, unit, ids)
    row = page["unit"]
    with top[0]:
        st.title(f"{layer} · unit {unit}")
        if row and row.get("objective"):
            st.caption(
                f"objective `{row['objective']}` · {row.get('kind') or ''} · "
                f"method {row.get('method') or '–'}"
            )
    prev, nxt = page["neighbours"]
    _nav(ctx, layer, unit, prev, nxt, "top")
    if row is None:
        st.warning(f"Unit {unit} is not in layer {layer} (yet). Units present: {ids[0]}–{ids[-1]}.")
        return
    if row.get("status") not in (None, "ok"):
        st.error(f"This unit failed: {row.get('error') or row.get('status')}")

    cols = st.columns(7)
    cols[0].metric("Best activation", widgets.fmt(row.get("best_activation")))
    cols[1].metric("Best log-prob", widgets.fmt(row.get("best_log_prob")))
    cols[2].metric(
        "Best rank", widgets.fmt(row.get("best_rank")), help="0 = the most active unit of its layer"
    )
    cols[3].metric("Facets", widgets.fmt(row.get("facet_count")))
    cols[4].metric("Chains", widgets.fmt(row.get("n_chains")))
    cols[5].metric(
        "Real top-1", widgets.fmt(row.get("real_top1_activation")),
        delta=f"×{row['activation_ratio']:.2f}" if row.get("activation_ratio") else None,
        delta_color="off",
        delta_arrow="off",
        help="activation of the most activating real image; the ratio is best synthetic / real top-1",
    )  # fmt: skip
    if row.get("judge_label") is not None:
        verdict = "✓" if row.get("judge_correct") else "✗"
        cols[6].metric(
            "Judge", f"{verdict} {row['judge_label']}", help=f"p = {widgets.fmt(row.get('judge_prob'))}"
        )

    images, chains, steps = page["images"], page["chains"], page["steps"]
    synth = images[images["kind"] != "real"]
    real = images[images["kind"] == "real"]

    st.subheader("Facets")
    best = synth[synth["kind"] == "best"].sort_values("activation", ascending=False, na_position="last")
    facet_items = []
    for facet, group in best.groupby("facet", dropna=False, sort=True):
        top_img = group.iloc[0]
        label = "facet –" if pd.isna(facet) else f"facet {int(facet)}"
        facet_items.append(
            (
                _bytes(top_img["png"]),
                f"{label} · act {widgets.fmt(top_img['activation'])} · chain {int(top_img['chain'])}",
            )
        )
    widgets.tiles(facet_items, columns=6, width=150)

    if len(real):
        st.subheader("Real top-k images")
        real = real.sort_values("activation", ascending=False)
        widgets.tiles(
            [
                (_bytes(r["png"]), f"#{i + 1} · act {widgets.fmt(r['activation'])}"
                 + (f" · idx {int(r['real_index'])}" if pd.notna(r["real_index"]) else ""))
                for i, (_, r) in enumerate(real.iterrows())
            ],
            columns=8,
            width=104,
        )  # fmt: skip

    st.subheader("Trajectories")
    if steps.empty:
        st.caption("No trajectory rows for this unit.")
    else:
        c1, c2 = st.columns(2)
        titles = {"activation": "activation", "log_prob": "log-prob", "rank": "rank (0 = top)",
                  "prior_residual": "prior residual ‖R(h) − h‖"}  # fmt: skip
        for i, metric in enumerate(data.TRAJECTORY_METRICS):
            with c1 if i % 2 == 0 else c2:
                if steps[metric].notna().any():
                    st.altair_chart(widgets.trajectory_chart(steps, metric, titles[metric]), width="stretch")
                else:
                    st.caption(f"{titles[metric]}: not recorded")

    st.subheader("Chains")
    by_chain = {int(c): g for c, g in synth.groupby("chain")}
    for rec in chains.to_dict("records"):
        chain = int(rec["chain"])
        group = by_chain.get(chain)
        with st.container(border=True):
            head, body = st.columns([1.3, 6])
            with head:
                st.markdown(f"**chain {chain}**")
                if rec.get("diverged"):
                    st.badge("diverged", color="red", icon=":material/warning:")
                seed = rec.get("seed") if rec.get("seed") is not None else "–"
                st.caption(
                    f"{rec.get('method') or '–'} · facet {widgets.fmt(rec.get('facet'))}\n\n"
                    f"start {rec.get('start') or '–'} · seed {seed}\n\n"
                    f"final act {widgets.fmt(rec.get('final_activation'))} · "
                    f"best {widgets.fmt(rec.get('best_activation'))} "
                    f"@ step {widgets.fmt(rec.get('best_step'))}\n\n"
                    f"{widgets.fmt(rec.get('seconds'))} s"
                )
            with body:
                if group is None:
                    st.caption("no images kept")
                    continue
                order = {"best": 0, "last": 1, "snapshot": 2}
                group = group.assign(_o=group["kind"].map(order)).sort_values(["_o", "step"])
                items = [
                    (
                        _bytes(r["png"]),
                        f"{r['kind']} · step {widgets.fmt(r['step'])} · {widgets.fmt(r['activation'])}",
                    )
                    for _, r in group.head(8).iterrows()
                ]
                widgets.tiles(items, columns=8, width=96)

    st.subheader("Competing units")
    comp = page["competitors"]
    if comp.empty:
        st.caption("No competitor statistics recorded.")
    else:
        c1, c2 = st.columns([3, 2])
        with c1:
            chart = (
                alt.Chart(comp.assign(competitor=comp["competitor"].astype(str)), height=220)
                .mark_bar()
                .encode(
                    x=alt.X("times_top_competitor:Q", title="steps as top competitor"),
                    y=alt.Y("competitor:N", sort="-x", title="unit"),
                    tooltip=["competitor", "times_top_competitor", "in_final_top", "mean_final_activation"],
                )
            )
            st.altair_chart(chart, width="stretch")
        with c2:
            st.dataframe(
                comp,
                hide_index=True,
                column_config={
                    "competitor": "unit",
                    "times_top_competitor": "top competitor (steps)",
                    "in_final_top": "in final top-k",
                    "mean_final_activation": st.column_config.NumberColumn("mean act.", format="%.3f"),
                },
            )
            options = [int(u) for u in comp["competitor"]]
            pick = st.selectbox("Open a competitor", options, key=f"comp_pick_{layer}_{unit}")
            st.button(f"Open unit {pick}", icon=":material/arrow_forward:", on_click=state.go,
                      kwargs={"unit": int(pick)}, key="comp_open")  # fmt: skip

    with st.expander("Chain table", icon=":material/table:"):
        st.dataframe(chains, hide_index=True)
    _nav(ctx, layer, unit, prev, nxt, "bottom")
