"""Overview: run config, models, progress, counts, throughput, per-layer distributions, diverged chains."""

from __future__ import annotations

import streamlit as st

from viewer import data, state, widgets
from viewer.context import Context


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = float(seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _header(ctx: Context) -> None:
    info = ctx.info
    status = info.get("status") or "unknown"
    color = {"complete": "green", "running": "orange"}.get(status, "gray")
    st.title(f"{ctx.run_dir.name}")
    st.badge(status, color=color, icon=":material/check_circle:" if status == "complete" else None)
    bits = [f"created {info.get('created') or '–'}"]
    if info.get("git_sha"):
        bits.append(f"git `{str(info['git_sha'])[:10]}`")
    if info.get("config_hash"):
        bits.append(f"config `{str(info['config_hash'])[:10]}`")
    if info.get("facet_layer"):
        bits.append(f"facets on `{info['facet_layer']}`")
    if info.get("output_layer"):
        bits.append(f"output layer `{info['output_layer']}`")
    precisions, unrecorded = data.precisions(ctx.conn)
    if len(precisions) == 1:
        old = (
            f" ({unrecorded} older shard{'s' if unrecorded != 1 else ''}: not recorded)" if unrecorded else ""
        )
        bits.append(f"computed in {next(iter(precisions))}{old}")
    st.caption(" · ".join(bits) + f" · `{ctx.run_dir}`")
    if len(precisions) > 1:
        mix = ", ".join(f"{n} shard{'' if n == 1 else 's'} in {p}" for p, n in precisions.items())
        st.warning(
            f"This atlas mixes compute precisions ({mix}): `compute.autocast: auto` picks bf16 only on nodes "
            "with native bf16, so activations of units computed on different nodes differ slightly. Compare "
            "them within one precision (the `shards` table says which), or pin `compute.autocast` "
            "(`bf16` or `none`) and build the atlas again.",
            icon=":material/warning:",
        )


def render_empty(ctx: Context) -> None:
    _header(ctx)
    st.info("No completed shards yet. This page refreshes with the run: press **Refresh** in the sidebar.")


def _numbers(ctx: Context, stats: dict) -> None:
    cols = st.columns(6)
    cols[0].metric("Layers", len(ctx.layers))
    cols[1].metric("Units", f"{stats['units']:,}")
    cols[2].metric("Chains", f"{stats['chains']:,}")
    cols[3].metric("Images", f"{stats['images']:,}")
    per_min = stats["units_per_min"]
    cols[4].metric("Units / min", f"{per_min:,.0f}" if per_min else "–",
                   help="units written per minute of wall time (from shard completion times)")  # fmt: skip
    diverged = stats["diverged_chains"]
    cols[5].metric("Diverged chains", f"{diverged:,}", delta_color="inverse", delta_arrow="off",
                   delta=f"{stats['diverged_fraction']:.1%} of chains" if diverged else None)  # fmt: skip
    done, planned = ctx.info.get("shards_done") or 0, ctx.info.get("planned_shards")
    wall = f"wall {_duration(stats['wall_s'])}"
    if planned:
        st.progress(min(done / planned, 1.0), text=f"{done} of {planned} shards complete · {wall}")
    else:
        st.caption(f"{done} shards complete · {wall}")


LAYER_COLUMNS = {
    "layer": st.column_config.TextColumn("layer"),
    "diverged_chains": st.column_config.NumberColumn("diverged"),
    "mean_best_activation": st.column_config.NumberColumn("mean best act.", format="%.3f"),
    "mean_best_log_prob": st.column_config.NumberColumn("mean best log-prob", format="%.3f"),
    "mean_facets": st.column_config.NumberColumn("mean facets", format="%.2f"),
    "judge_accuracy": st.column_config.ProgressColumn("judge accuracy", min_value=0.0, max_value=1.0,
                                                      format="percent", color="green"),
    "failed_units": st.column_config.NumberColumn("failed"),
}  # fmt: skip


def _layers(ctx: Context) -> None:
    st.subheader("Layers")
    table = data.layer_table(ctx.conn, ctx.layer_names)
    if table.empty:
        return
    # float noise around 0 (sure classes) would read -0.000
    table["mean_best_log_prob"] = widgets.without_noise(table["mean_best_log_prob"].astype(float))
    st.dataframe(table, hide_index=True, column_config=LAYER_COLUMNS)
    if table["judge_accuracy"].isna().any():
        st.caption(
            "judge accuracy: the share of a layer's units whose pictures the held-out judge reads as the "
            "unit's own class; empty for layers whose units stand for no class (hidden layers)"
        )
    for col, (name, n) in zip(st.columns(len(ctx.layers[:6])), ctx.layers[:6], strict=False):
        col.button(f"{name} grid ({n:,})", key=f"ov_open_{name}", icon=":material/grid_view:",
                   on_click=state.go, kwargs={"page": "layer", "layer": name}, width="stretch")  # fmt: skip


GALLERY_UNITS = 10  # an output layer of 10 classes shows whole


def _gallery(ctx: Context) -> None:
    """The best pictures of the first units of the output layer (else the first layer): what the run drew,
    at a glance; each opens its unit's page in a new tab."""
    output = ctx.info.get("output_layer")
    layer = output if output in ctx.layer_names else ctx.layer_names[0]
    tiles = data.grid_page(ctx.conn, data.GridQuery(layer, sort="unit ↑", page_size=GALLERY_UNITS))
    tiles = tiles[tiles["png"].notna()]
    if tiles.empty:
        return
    st.subheader(f"Pictures · layer {layer}")
    run = ctx.run_dir.name if ctx.multi_run else None
    for col, rec in zip(st.columns(GALLERY_UNITS), tiles.to_dict("records"), strict=False):
        with col:
            named = rec.get("label") if isinstance(rec.get("label"), str) else rec.get("judge_label")
            caption = f"unit {int(rec['unit'])}" + (f" · {named}" if isinstance(named, str) else "")
            widgets.picture(
                rec["png"], caption=caption, link=state.link("unit", layer, int(rec["unit"]), run)
            )


def _distributions(ctx: Context) -> None:
    st.subheader("Distributions")
    dist = data.distributions(ctx.conn)
    c1, c2, c3 = st.columns(3)
    for col, field, title in (
        (c1, "best_activation", "best activation"),
        (c2, "best_log_prob", "best log-prob"),
    ):
        col.markdown(f"**{title}** · units per bin, each layer on its own scale")
        for chart in widgets.layer_histograms(dist, field, order=ctx.layer_names):
            col.altair_chart(chart, width="stretch")
    c3.altair_chart(widgets.count_bars(dist, "facet_count", "facets per unit"), width="stretch")


def _diverged(ctx: Context) -> None:
    st.subheader("Diverged chains")
    div = data.diverged_chains(ctx.conn)
    if div.empty:
        st.success("No chain diverged.")
        return
    st.dataframe(div, hide_index=True, height=min(38 + 35 * len(div), 320))
    units = list(dict.fromkeys((str(r.layer), int(r.unit)) for r in div.itertuples()))  # in order, once
    widgets.unit_picker(units, key="diverged", label="Open a unit with diverged chains")


def _config(info: dict) -> None:
    with st.expander("Run config and models", icon=":material/settings:"):
        config = info.get("config") or {}
        models = config.get("models") if isinstance(config, dict) else None
        c1, c2 = st.columns(2)
        with c1:
            st.markdown("**Config**")
            st.json(config, expanded=2)
        with c2:
            if models:
                st.markdown("**Models**")
                st.json(models, expanded=2)
            st.markdown("**Model fingerprints**")
            st.json(info.get("fingerprints") or {}, expanded=True)
            st.markdown("**Versions**")
            st.json(info.get("versions") or {}, expanded=True)


def _shards(ctx: Context) -> None:
    shards = data.shards(ctx.conn)
    if len(shards):
        with st.expander(f"Shards ({len(shards)})", icon=":material/view_module:"):
            st.dataframe(shards, hide_index=True)


def render(ctx: Context) -> None:
    _header(ctx)
    _numbers(ctx, data.run_stats(ctx.conn, ctx.info.get("created")))
    _gallery(ctx)
    _layers(ctx)
    _distributions(ctx)
    _diverged(ctx)
    _config(ctx.info)
    _shards(ctx)
