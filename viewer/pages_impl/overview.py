"""Overview: run config, models, progress, counts, throughput, per-layer distributions, diverged chains."""

from __future__ import annotations

from typing import Any

import duckdb
import pandas as pd
import streamlit as st

from atlas.errors import AtlasError
from atlas.provenance import short_sha
from atlas.store.catalog import UNMARKED
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


STATUS_NOTES = {  # what a run that is not complete needs, under its badge
    "interrupted": "interrupted (Ctrl-C or a stop): the same `atlas run` resumes it, redoing no completed "
    "shard",
    "incomplete": "incomplete (the run stopped on an error): the same `atlas run` resumes it, once the cause "
    "is fixed",
}


def _growth(extended: Any) -> list[str]:
    """What later configs added to the run (``layer conv4``, ``8 more units of fc8``): run.json's
    ``extended``, [{time: [what, ...]}, ...] (:func:`atlas.store.writer.run_growth`)."""
    entries = extended if isinstance(extended, list) else []
    return [str(n) for e in entries if isinstance(e, dict) for names in e.values() for n in names or []]


def _header(ctx: Context, failed: int = 0) -> None:
    info = ctx.info
    status = info.get("status") or "unknown"
    damaged = sum(shard != UNMARKED for shard in getattr(ctx.conn, "damage", None) or {})  # left out
    flawed = failed or damaged  # a complete run that is not all there: no green tick (a user's trial)
    color = {"complete": "orange" if flawed else "green", "running": "orange", "interrupted": "red",
             "incomplete": "red"}.get(status, "gray")  # fmt: skip
    st.title(f"{ctx.run_dir.name}")
    icon = ":material/check_circle:" if status == "complete" and not flawed else None
    shown = " · ".join(
        [status]
        + ([f"{failed:,} failed unit{'' if failed == 1 else 's'}"] if failed else [])
        + ([f"{damaged:,} damaged shard{'' if damaged == 1 else 's'} left out"] if damaged else [])
    )
    st.badge(shown, color=color, icon=icon if icon else ":material/warning:" if flawed else None)
    if status in STATUS_NOTES:
        st.caption(STATUS_NOTES[status])
    elif data.driver_gone(ctx.run_dir, status):
        st.caption(
            "no `atlas run` writes it now: its driver stopped without marking it (killed, or its machine "
            "went down); the same `atlas run` resumes it, redoing no completed shard"
        )
    methods = data.methods(ctx.conn)  # what drew the pictures: a trial found it only on the unit page
    bits = [f"method{'s' if len(methods) > 1 else ''} {', '.join(f'`{m}`' for m in methods) or '–'}"]
    bits.append(f"created {info.get('created') or '–'}")
    if info.get("git_sha"):
        sha = short_sha(str(info["git_sha"]))  # the code that started the run; a resume's other code too
        later = {short_sha(str(g)) for g in ctx.manifest.get("resumed_git_sha") or [] if g} - {sha}
        also = f" (resumed at {', '.join(f'`{g}`' for g in sorted(later))})" if later else ""
        bits.append(f"git `{sha}`{also}")
    if info.get("config_hash"):
        bits.append(f"config `{str(info['config_hash'])[:10]}`")
    added = _growth(ctx.manifest.get("extended"))
    if added:
        bits.append(f"added later: {'; '.join(added)}")
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
    if ctx.info.get("status") == "running":
        when = "they appear here as they land (checked every 5 s; **Refresh** in the sidebar checks now)"
    else:
        when = "the same `atlas run` resumes the run and writes them"
    st.info(f"No completed shards yet: {when}.")


def _failures(ctx: Context, failed: dict) -> None:
    """A warning naming the failed units (count, per layer, the first error) and how to redo them."""
    if not failed["count"]:
        return
    layers = ", ".join(f"{name} {n:,}" for name, n in failed["per_layer"].items())
    layer, unit = failed["first_unit"]
    total = sum(n for _, n in ctx.layers)
    redo = data.redo_hint(ctx.run_dir.uri)
    st.warning(
        f"**{failed['count']:,} of {total:,} units failed** ({layers}): they have no pictures. First error "
        f"({layer} unit {unit}): `{failed['first_error'] or 'not recorded'}`. "
        f"{redo[0].upper()}{redo[1:]}. The SQL console lists them all: "
        "`SELECT layer, unit, error FROM units WHERE status = 'error'`.",
        icon=":material/error:",
    )


def _numbers(ctx: Context, stats: dict) -> None:
    cols = st.columns(6)
    unwritten = len(ctx.unwritten_layers)  # a running or stopped run's planned layers count too
    written = len(ctx.layers)
    cols[0].metric("Layers", f"{written} of {written + unwritten}" if unwritten else written,
                   help="layers written of those the run plans" if unwritten else None)  # fmt: skip
    composites = stats.get("composites") or 0
    own = f"of which {composites:,} composite objectives (`3 + 5`)" if composites else None
    cols[1].metric("Units", f"{stats['units']:,}", help=own)
    cols[2].metric("Chains", f"{stats['chains']:,}")
    cols[3].metric("Images", f"{stats['images']:,}")
    per_min = stats["units_per_min"]
    cols[4].metric("Units / min", f"{per_min:,.0f}" if per_min else "–",
                   help="units sampled per minute of the run's work: from each start (and resume) to its "
                   "last shard, so the time between an interrupt and its resume is not counted; failed "
                   "units are not counted. The `atlas run` summary's units/min reads lower: it divides by "
                   "the whole command's time, loading the models and starting and stopping Ray "
                   "included")  # fmt: skip
    diverged = stats["diverged_chains"]
    cols[5].metric("Diverged chains", f"{diverged:,}", delta_color="inverse", delta_arrow="off",
                   delta=f"{stats['diverged_fraction']:.1%} of chains" if diverged else None)  # fmt: skip
    done, planned = ctx.info.get("shards_done") or 0, ctx.info.get("planned_shards")
    resumed = ctx.manifest.get("resumed")
    again = f" over {len(resumed) + 1} sessions" if isinstance(resumed, list) and resumed else ""
    wall = f"work {_duration(stats['wall_s'])}{again}"
    if planned:
        st.progress(min(done / planned, 1.0), text=f"{done} of {planned} shards complete · {wall}")
    else:
        st.caption(f"{done} shards complete · {wall}")


LAYER_COLUMNS = {
    "layer": st.column_config.TextColumn("layer"),
    "units": st.column_config.NumberColumn("units", help="the layer's own units"),
    "composites": st.column_config.NumberColumn(
        "composites", help="composite objectives (`3 + 5`): not in the means (a log-prob summed over terms)"),
    "failed_units": st.column_config.NumberColumn("failed", help="units that failed (no pictures)"),
    "diverged_chains": st.column_config.NumberColumn("diverged"),
    # text (widgets.fixed): a layer whose units all failed reads "–", which a number column flags as an error
    "mean_best_activation": st.column_config.TextColumn("mean best act."),
    "mean_best_log_prob": st.column_config.TextColumn("mean best log-prob"),
    "mean_facets": st.column_config.TextColumn("mean facets"),
    "judge_accuracy": st.column_config.ProgressColumn("judge acc.", min_value=0.0, max_value=1.0,
                                                      format="percent", color="green", width="small"),
    "best_step": st.column_config.TextColumn(
        "best at step", help="the median chain's step of its best picture (the one the grid shows), of the "
        "steps a chain had: near 0, the pictures are close to their starts"),
    "stopped_share": st.column_config.ProgressColumn(
        "stopped", min_value=0.0, max_value=100.0, format="%.0f%%", color="blue", width="small",
        help="chains that sampler.stop_at stopped: they reached stop_at x the unit's top real activation"),
}  # fmt: skip
MEAN_COLUMNS = {"mean_best_activation": 3, "mean_best_log_prob": 3, "mean_facets": 2}  # shown as text: "–"


def _layers(ctx: Context) -> None:
    st.subheader("Layers")
    table = data.layer_table(ctx.conn, ctx.layer_names)
    if table.empty:
        return
    # float noise around 0 (sure classes) would read -0.000
    table["mean_best_log_prob"] = widgets.without_noise(table["mean_best_log_prob"].astype(float))
    for column, digits in MEAN_COLUMNS.items():  # a layer whose units all failed has no mean: "–"
        table[column] = [widgets.fixed(v, digits) for v in table[column]]
    if not table["composites"].any():
        table = table.drop(columns=["composites"])
    early = _early_best(table)
    table["best_step"] = [
        "–" if pd.isna(best) else f"{best:g} of {int(steps)}" if pd.notna(steps) else f"{best:g}"
        for best, steps in zip(table["median_best_step"], table["steps"], strict=True)
    ]
    table = table.drop(columns=["median_best_step", "steps"])
    table = table[[c for c in table.columns if c != "stopped_share"] + ["stopped_share"]]
    if not table["stopped_share"].fillna(0).any():  # no stop_at, or a run from before the column
        table = table.drop(columns=["stopped_share"])
    else:  # in percent, whole: "97.5%" beside "49.02%" read as two formats
        table["stopped_share"] = (table["stopped_share"] * 100).round()
    st.dataframe(table, hide_index=True, column_config=LAYER_COLUMNS)
    st.caption("means over each layer's own units that did not fail (composite objectives are counted apart)")
    if early:
        st.info(_early_best_text(ctx, early), icon=":material/info:")
    if table["judge_accuracy"].isna().any():
        st.caption(
            "judge acc.: the share of a layer's units whose pictures the held-out judge reads as the unit's "
            "own class; empty for layers whose units stand for no class (hidden layers)"
        )
    for col, (name, _) in zip(st.columns(len(ctx.layers[:6])), ctx.layers[:6], strict=False):
        with col:
            widgets.page_link(ctx, "layer", f"{name} grid ({ctx.size_text(name)})", ":material/grid_view:",
                              layer=name)  # fmt: skip


def _early_best(table: pd.DataFrame) -> list[tuple[str, float, int, float | None]]:
    """(layer, median best step, steps, stopped share) of the layers whose median chain found its best
    picture within :data:`viewer.data.EARLY_BEST` of its steps."""
    out = []
    for rec in table.to_dict("records"):
        best, steps = rec.get("median_best_step"), rec.get("steps")
        if data.found_early(best, steps):
            share = rec.get("stopped_share")
            out.append((str(rec["layer"]), float(best), int(steps), None if pd.isna(share) else float(share)))
    return out


def _early_best_text(ctx: Context, early: list[tuple[str, float, int, float | None]]) -> str:
    """What an early best means: the pictures are near their starts (which the run's config names)."""
    sampler = (ctx.info.get("config") or {}).get("sampler") or {}
    parts = []
    for layer, best, steps, stopped in early:
        said = f"**{layer}** at step {best:g} of {steps}"
        parts.append(said + (f" ({stopped:.0%} of its chains stopped by `stop_at`)" if stopped else ""))
    start = sampler.get("start")
    seeded = " (`facet_seeded` / `real`: G's drawing of the unit's top real images)" if start in (
        "facet_seeded", "real") else ""  # fmt: skip
    return (
        f"The median chain found its best picture early in {', '.join(parts)}: these pictures stay close "
        f"to their starts{seeded}. `sampler.stop_at` {sampler.get('stop_at', '?')} stops a chain once its "
        "unit reaches that multiple of its top real activation; `stop_at: 0` lets the chains climb further "
        "(docs/sampling.md, Starts)."
    )


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
            name = data.unit_name(int(rec["unit"]), rec.get("composite"))
            # a break after a concept's ':' and '|' ("class:\u200btriangle"), not inside its words
            shown = named.replace(":", ":\u200b").replace("|", "|\u200b") if isinstance(named, str) else None
            caption = name + (f" · {shown}" if shown else "")
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


def _diverged(ctx: Context, failed: int = 0) -> None:
    st.subheader("Diverged chains")
    div = data.diverged_chains(ctx.conn)
    if div.empty and failed:
        st.info(f"No chain diverged; {failed:,} failed units ran no chain (see the warning above).")
        return
    if div.empty:
        st.success("No chain diverged.")
        return
    units = list(dict.fromkeys(  # in order, once
        (str(r.layer), int(r.unit), r.composite if isinstance(r.composite, str) else None)
        for r in div.itertuples()))  # fmt: skip
    if div["composite"].isna().all():  # no composite diverged: no empty column
        div = div.drop(columns=["composite"])
    st.dataframe(div, hide_index=True, height=min(38 + 35 * len(div), 320), column_config=DIVERGED_COLUMNS)
    widgets.unit_picker(ctx, units, key="diverged", label="Open a unit with diverged chains")


DIVERGED_COLUMNS = {
    "best_activation": st.column_config.NumberColumn(
        "best act.", format="%.4g", help="its best picture's activation before it diverged (empty: none)"),
    "best_step": st.column_config.NumberColumn("best at step"),
    "steps": st.column_config.NumberColumn("steps"),
}  # fmt: skip


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
    stats = data.run_stats(ctx.conn, ctx.info.get("created"), ctx.manifest.get("resumed"))
    failed = stats["failures"]
    _header(ctx, failed["count"])
    _failures(ctx, failed)
    _numbers(ctx, stats)
    said = False  # a damaged file read by one section is said once; the sections that read others still draw
    for section in (_gallery, _layers, _distributions, lambda c: _diverged(c, failed["count"])):
        try:
            section(ctx)
        except (AtlasError, duckdb.Error) as exc:
            if not said:
                st.error(data.cannot_read(exc, ctx.run_dir.uri), icon=":material/error:")
            said = True
    _config(ctx.info)
    _shards(ctx)
