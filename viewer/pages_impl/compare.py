"""Compare: two runs (this one and a sibling run directory) or two methods of this run, side by side
for the same units."""

from __future__ import annotations

from typing import Any

import duckdb
import streamlit as st

from atlas.errors import AtlasError, first_line
from atlas.store.manifest import read_manifest
from viewer import data, state, widgets
from viewer.context import Context

MAX_UNITS = 24


def _default_units(ctx: Context, layer: str) -> str:
    """A small layer's every unit (up to 12: a 10-unit output layer whole), else 8 from the unit shown."""
    ids = ctx.ids(layer)
    return data.format_units(data.units_from(ids, state.get("unit"), len(ids) if len(ids) <= 12 else 8))


def _pairs(layer: str, units: list[int], sides: list[tuple[str, dict[int, dict], bool]]) -> None:
    """Four units a row; per unit its best image on each side (``sides``: (name, data.best_image_map,
    whether that run is still being written))."""
    per_row = 4
    for start in range(0, len(units), per_row):
        for col, unit in zip(st.columns(per_row), units[start : start + per_row], strict=False):
            with col.container(border=True):
                st.button(f"**unit {unit}**", key=f"cmp_open_{unit}", type="tertiary", on_click=state.go,
                          kwargs={"page": "unit", "layer": layer, "unit": unit})  # fmt: skip
                for sub, (name, images, running) in zip(st.columns(len(sides)), sides, strict=True):
                    with sub:
                        _side_image(name, images.get(unit), running)


def _side_image(name: str, rec: dict | None, running: bool = False) -> None:
    if rec is not None and rec["png"] is not None:
        widgets.picture(rec["png"], caption=f"{name} · {widgets.fmt(rec['activation'])}")
    elif rec is not None:
        st.caption(f"{name}: no picture kept")
    else:
        st.caption(f"{name}: not in this run" + (" (yet)" if running else ""))


def _units_input(ctx: Context, layer: str) -> list[int]:
    """The units typed, those the layer has (a note names the others), at most MAX_UNITS."""
    key = state.compare_widget("cmp", layer, None, _default_units(ctx, layer))
    text = st.text_input("Units", key=key, help="numbers and ranges, e.g. 0-7, 12")
    widgets.link_notice()  # a link's value a control here cannot take (state.compare_widget)
    if not text.strip():
        return []
    try:
        ranges = data.parse_units(text)  # () for "all"
    except AtlasError as exc:
        st.error(f"Cannot read the units: {exc}. Use numbers and ranges, e.g. `0-7, 12`.")
        return []
    ids = ctx.ids(layer)
    held = [u for u in ids if not ranges or any(lo <= u <= hi for lo, hi in ranges)]
    if ranges and ids and len(held) < data.expand_units(ranges, 0)[1]:  # its total counts overlaps once
        yet = " so far (the run is still being written)" if ctx.info.get("status") == "running" else ""
        st.caption(f"layer {layer} has units {ids[0]}–{ids[-1]}{yet}: the others are left out")
    if len(held) > MAX_UNITS:
        st.caption(f"showing the first {MAX_UNITS} of {len(held)} units")
    return held[:MAX_UNITS]


def _modes(ctx: Context, run_methods: list[str]) -> list[str]:
    return (["two runs"] if ctx.siblings else []) + (["two methods"] if len(run_methods) >= 2 else [])


def _compare_methods(ctx: Context, layer: str, run_methods: list[str]) -> None:
    c1, c2 = st.columns(2)
    m_a = c1.selectbox("Left method", run_methods, index=0, key="cmp_method_a")
    m_b = c2.selectbox("Right method", run_methods, index=1, key="cmp_method_b")
    st.dataframe(data.method_summary(ctx.conn, layer), hide_index=True)
    units = _units_input(ctx, layer)
    sides = [(m, data.best_image_map(ctx.conn, layer, units, m), False) for m in (m_a, m_b)]
    st.caption(f"best image per unit · left **{m_a}**, right **{m_b}** · layer {layer}")
    _pairs(layer, units, sides)


def _run_summary(name: str, stats: dict | None, methods: list[str]) -> None:
    st.markdown(f"**{name}** · {', '.join(methods) or 'no chains yet'}")  # what made its pictures
    if stats is None:
        return
    m = st.columns(3)
    m[0].metric("mean best act.", widgets.fmt(stats["mean_best_activation"]))
    m[1].metric("mean facets", widgets.fmt(stats["mean_facets"]))
    m[2].metric("diverged", widgets.fmt(int(stats["diverged_chains"] or 0)))


def _manifest(run: Any) -> tuple[frozenset[str], dict[str, Any]]:
    """The layers a run's run.json plans and its weights fingerprints (empty when it cannot be read): the
    default other run has the layer shown and this run's networks. Read once a session per run (a sibling
    on S3 costs a request)."""
    seen: dict[str, tuple[frozenset[str], dict[str, Any]]] = st.session_state.setdefault("cmp_manifests", {})
    if run.uri not in seen:
        try:
            manifest = read_manifest(run)
            layers = frozenset(str(entry.get("name")) for entry in manifest.get("layers") or [])
            prints = manifest.get("fingerprints")
            seen[run.uri] = (layers, prints if isinstance(prints, dict) else {})
        except (AtlasError, AttributeError, TypeError):
            seen[run.uri] = (frozenset(), {})
    return seen[run.uri]


def _default_other(ctx: Context, layer: str) -> str:
    """The first sibling with the layer and this run's networks, else the first with the layer, else the
    first."""
    with_layer = [p for p in ctx.siblings if layer in _manifest(p)[0]]
    alike = [p for p in with_layer if not data.model_differences(ctx.info, {"fingerprints": _manifest(p)[1]})]
    return (alike or with_layer or ctx.siblings)[0].name


def _compare_runs(ctx: Context, layer: str) -> None:
    names = [p.name for p in ctx.siblings]
    default = _default_other(ctx, layer)
    other_name = st.selectbox("Other run", names, key=state.compare_widget("vs", layer, names, default))
    widgets.link_notice()
    where = ctx.siblings[names.index(other_name)]
    try:  # the other run's open and first reads: a damage found here is its, not this run's
        other = ctx.open_other(where) if ctx.open_other else None
        other_layers = {name for name, _ in data.layers(other)} if other is not None else set()
        other_ids = data.unit_ids(other, layer) if layer in other_layers else []
    except (AtlasError, duckdb.Error) as exc:
        st.error(
            f"Cannot read run {other_name}: {first_line(exc)}. `atlas verify {where.uri}` names bad shards; "
            "`--repair` has them redone by the next `atlas run`.",
            icon=":material/error:",
        )
        return
    _compare_with(ctx, layer, other_name, other, other_layers, other_ids)


def _compare_with(
    ctx: Context, layer: str, other_name: str, other: Any, other_layers: set[str], other_ids: list[int]
) -> None:
    if other is None:
        st.error("Cannot open the other run.")
        return
    if layer not in other_layers:
        have = ", ".join(sorted(other_layers)) or "none"
        st.warning(f"Run {other_name} has no layer {layer} (it has {have}).")
        return
    other_info = data.run_info(other)
    differs = data.model_differences(ctx.info, other_info)
    if differs:
        st.warning(
            f"The runs use different {' and '.join(differs)} (weights fingerprints differ): the same unit "
            "number may not be the same unit, and activations are on different scales.",
            icon=":material/warning:",
        )
    runs = [(ctx.run_dir.name, ctx.conn, ctx.info), (other_name, other, other_info)]
    both = sorted(set(ctx.ids(layer)) & set(other_ids))
    for col, (name, conn, _info) in zip(st.columns(2), runs, strict=True):
        with col:
            _run_summary(name, data.stats_over(conn, layer, both), data.methods(conn))
    st.caption(f"summaries over the {len(both):,} units of layer {layer} that both runs hold")
    units = _units_input(ctx, layer)
    sides = [
        (name, data.best_image_map(conn, layer, units), info.get("status") == "running")
        for name, conn, info in runs
    ]
    st.caption(f"best image per unit · left **{ctx.run_dir.name}**, right **{other_name}** · layer {layer}")
    _pairs(layer, units, sides)


def render(ctx: Context) -> None:
    layer = state.get("layer")
    st.title("Compare")
    run_methods = data.methods(ctx.conn)
    modes = _modes(ctx, run_methods)
    if not modes:
        st.info(
            "Nothing to compare yet: this run uses one method "
            f"({', '.join(run_methods) or '–'}) and has no sibling run in `{ctx.run_dir.parent}`. Put a "
            "second run next to it, e.g. the same config with another method: `atlas run CONFIG --set "
            "name=other --set sampler.method=ppgn_h` (same out_dir): this page then finds it."
        )
        return
    key = state.compare_widget("mode", layer, modes, modes[0])
    mode = (st.segmented_control("Compare", modes, key=key) if len(modes) > 1 else None) or modes[0]
    widgets.link_notice()
    if mode == "two methods":
        _compare_methods(ctx, layer, run_methods)
    else:
        _compare_runs(ctx, layer)
