"""Overview: run config, models, progress, counts, throughput, per-layer distributions, diverged chains."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import streamlit as st

from viewer import data, state, widgets
from viewer.context import Context


def _ts(text: str | None) -> float | None:
    try:
        return datetime.fromisoformat(text).timestamp() if text else None
    except ValueError:
        return None


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
    st.caption(" · ".join(bits) + f" · `{ctx.run_dir}`")


def render_empty(ctx: Context) -> None:
    _header(ctx)
    st.info("No completed shards yet. This page refreshes with the run: press **Refresh** in the sidebar.")


def render(ctx: Context) -> None:
    _header(ctx)
    conn, info = ctx.conn, ctx.info
    counts = data.counts(conn)
    summary = data.layer_summary(conn)
    tp = data.throughput(conn, _ts(info.get("created")))
    diverged_total = int(summary["diverged_chains"].sum()) if len(summary) else 0

    done, planned = info.get("shards_done") or 0, info.get("planned_shards")
    cols = st.columns(6)
    cols[0].metric("Layers", len(ctx.layers))
    cols[1].metric("Units", f"{counts['units']:,}")
    cols[2].metric("Chains", f"{counts['chains']:,}")
    cols[3].metric("Images", f"{counts['images']:,}")
    cols[4].metric(
        "Units / min",
        f"{tp['units_per_min']:,.0f}" if tp["units_per_min"] else "–",
        help="units written per minute of wall time (from shard completion times)",
    )
    cols[5].metric(
        "Diverged chains",
        f"{diverged_total:,}",
        delta=f"{diverged_total / max(counts['chains'], 1):.1%} of chains" if diverged_total else None,
        delta_color="inverse",
        delta_arrow="off",
    )
    if planned:
        st.progress(
            min(done / planned, 1.0),
            text=f"{done} of {planned} shards complete · wall {_duration(tp['wall_s'])}",
        )
    else:
        st.caption(f"{done} shards complete · wall {_duration(tp['wall_s'])}")

    st.subheader("Layers")
    if len(summary):
        table = summary[
            ["layer", "units", "chains", "diverged_chains", "mean_best_activation", "mean_best_log_prob",
             "mean_facets", "judge_accuracy", "failed_units"]
        ].copy()  # fmt: skip
        order = {name: i for i, name in enumerate(ctx.layer_names)}
        table = table.sort_values("layer", key=lambda s: s.map(order)).reset_index(drop=True)
        st.dataframe(
            table,
            hide_index=True,
            column_config={
                "layer": st.column_config.TextColumn("layer"),
                "diverged_chains": st.column_config.NumberColumn("diverged"),
                "mean_best_activation": st.column_config.NumberColumn("mean best act.", format="%.3f"),
                "mean_best_log_prob": st.column_config.NumberColumn("mean best log-prob", format="%.3f"),
                "mean_facets": st.column_config.NumberColumn("mean facets", format="%.2f"),
                "judge_accuracy": st.column_config.ProgressColumn(
                    "judge accuracy", min_value=0.0, max_value=1.0, format="percent"
                ),
                "failed_units": st.column_config.NumberColumn("failed"),
            },
        )
        cols = st.columns(len(ctx.layers[:6]))
        for col, (name, n) in zip(cols, ctx.layers[:6], strict=False):
            col.button(
                f"{name} grid ({n:,})",
                key=f"ov_open_{name}",
                icon=":material/grid_view:",
                on_click=state.go,
                kwargs={"page": "layer", "layer": name},
                width="stretch",
            )

    st.subheader("Distributions")
    dist = data.distributions(conn)
    c1, c2, c3 = st.columns(3)
    with c1:
        st.altair_chart(widgets.histogram(dist, "best_activation", "best activation"), width="stretch")
    with c2:
        st.altair_chart(widgets.histogram(dist, "best_log_prob", "best log-prob"), width="stretch")
    with c3:
        st.altair_chart(widgets.count_bars(dist, "facet_count", "facets per unit"), width="stretch")

    st.subheader("Diverged chains")
    div = data.diverged_chains(conn)
    if div.empty:
        st.success("No chain diverged.")
    else:
        st.dataframe(div, hide_index=True, height=min(38 + 35 * len(div), 320))
        first = div.iloc[0]
        st.button(
            f"Open unit {first.layer}/{int(first.unit)}",
            icon=":material/arrow_forward:",
            on_click=state.go,
            kwargs={"page": "unit", "layer": str(first.layer), "unit": int(first.unit)},
        )

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
    shards = conn.cursor().execute("SELECT * FROM shards ORDER BY done_time").df()
    if len(shards):
        with st.expander(f"Shards ({len(shards)})", icon=":material/view_module:"):
            shards["done"] = pd.to_datetime(shards["done_time"], unit="s").dt.strftime("%H:%M:%S")
            st.dataframe(shards.drop(columns=["done_time"]), hide_index=True)
