"""Compare: two runs (this one and a sibling run directory) or two methods of this run, side by side
for the same units."""

from __future__ import annotations

from typing import Any

import streamlit as st

from atlas.errors import AtlasError
from atlas.store.manifest import read_manifest
from viewer import data, state, widgets
from viewer.context import Context

MAX_UNITS = 24


def _default_units(ctx: Context, layer: str) -> str:
    return data.format_units(data.units_from(ctx.ids(layer), state.get("unit"), 8))


def _pairs(layer: str, units: list[int], sides: list[tuple[str, dict[int, dict]]]) -> None:
    """Four units a row; per unit its best image on each side (``sides``: (name, data.best_image_map))."""
    per_row = 4
    for start in range(0, len(units), per_row):
        for col, unit in zip(st.columns(per_row), units[start : start + per_row], strict=False):
            with col.container(border=True):
                st.button(f"**unit {unit}**", key=f"cmp_open_{unit}", type="tertiary", on_click=state.go,
                          kwargs={"page": "unit", "layer": layer, "unit": unit})  # fmt: skip
                for sub, (name, images) in zip(st.columns(len(sides)), sides, strict=True):
                    with sub:
                        _side_image(name, images.get(unit))


def _side_image(name: str, rec: dict | None) -> None:
    if rec is not None and rec["png"] is not None:
        st.image(rec["png"], caption=f"{name} · {widgets.fmt(rec['activation'])}", width="stretch")
    elif rec is not None:
        st.caption(f"{name}: no picture kept")
    else:
        st.caption(f"{name}: not in this run (yet)")


def _units_input(ctx: Context, layer: str) -> list[int]:
    key = state.compare_widget("cmp", layer, None, _default_units(ctx, layer))
    text = st.text_input("Units", key=key, help="numbers and ranges, e.g. 0-7, 12")
    if not text.strip():
        return []
    try:
        ranges = data.parse_units(text)  # () for "all"
    except AtlasError as exc:
        st.error(f"Cannot read the units: {exc}. Use numbers and ranges, e.g. `0-7, 12`.")
        return []
    units, total = data.expand_units(ranges or ((0, max(ctx.ids(layer), default=0)),), MAX_UNITS)
    if total > MAX_UNITS:
        st.caption(f"showing the first {MAX_UNITS} of {total} units")
    return units


def _modes(ctx: Context, run_methods: list[str]) -> list[str]:
    return (["two runs"] if ctx.siblings else []) + (["two methods"] if len(run_methods) >= 2 else [])


def _compare_methods(ctx: Context, layer: str, run_methods: list[str]) -> None:
    c1, c2 = st.columns(2)
    m_a = c1.selectbox("Left method", run_methods, index=0, key="cmp_method_a")
    m_b = c2.selectbox("Right method", run_methods, index=1, key="cmp_method_b")
    st.dataframe(data.method_summary(ctx.conn, layer), hide_index=True)
    units = _units_input(ctx, layer)
    sides = [(m, data.best_image_map(ctx.conn, layer, units, m)) for m in (m_a, m_b)]
    st.caption(f"best image per unit · left **{m_a}**, right **{m_b}** · layer {layer}")
    _pairs(layer, units, sides)


def _run_summary(name: str, stats: dict | None) -> None:
    st.markdown(f"**{name}**")
    if stats is None:
        return
    m = st.columns(3)
    m[0].metric("mean best act.", widgets.fmt(stats["mean_best_activation"]))
    m[1].metric("mean facets", widgets.fmt(stats["mean_facets"]))
    m[2].metric("diverged", widgets.fmt(int(stats["diverged_chains"])))


def _manifest_layers(run: Any) -> frozenset[str]:
    """The layers a run's run.json plans (empty when it cannot be read): the default other run is the
    first that has the layer shown. Read once a session per run (a sibling on S3 costs a request)."""
    seen: dict[str, frozenset[str]] = st.session_state.setdefault("cmp_manifest_layers", {})
    if run.uri not in seen:
        try:
            layers = frozenset(str(entry.get("name")) for entry in read_manifest(run).get("layers") or [])
        except (AtlasError, AttributeError, TypeError):
            layers = frozenset()
        seen[run.uri] = layers
    return seen[run.uri]


def _compare_runs(ctx: Context, layer: str) -> None:
    names = [p.name for p in ctx.siblings]
    default = next((p.name for p in ctx.siblings if layer in _manifest_layers(p)), names[0])
    other_name = st.selectbox("Other run", names, key=state.compare_widget("vs", layer, names, default))
    other = ctx.open_other(ctx.siblings[names.index(other_name)]) if ctx.open_other else None
    if other is None:
        st.error("Cannot open the other run.")
        return
    other_layers = {name for name, _ in data.layers(other)}
    if layer not in other_layers:
        have = ", ".join(sorted(other_layers)) or "none"
        st.warning(f"Run {other_name} has no layer {layer} (it has {have}).")
        return
    differs = data.model_differences(ctx.info, data.run_info(other))
    if differs:
        st.warning(
            f"The runs use different {' and '.join(differs)} (weights fingerprints differ): the same unit "
            "number may not be the same unit, and activations are on different scales.",
            icon=":material/warning:",
        )
    runs = [(ctx.run_dir.name, ctx.conn), (other_name, other)]
    for col, (name, conn) in zip(st.columns(2), runs, strict=True):
        with col:
            _run_summary(name, data.layer_stats(conn, layer))
    units = _units_input(ctx, layer)
    sides = [(name, data.best_image_map(conn, layer, units)) for name, conn in runs]
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
            f"({', '.join(run_methods) or '–'}) and has no sibling run in `{ctx.run_dir.parent}`. "
            "Put a second run next to it (e.g. `atlas run ... --set name=other`) or sample with two methods."
        )
        return
    key = state.compare_widget("mode", layer, modes, modes[0])
    mode = st.segmented_control("Compare", modes, key=key) or modes[0]
    if mode == "two methods":
        _compare_methods(ctx, layer, run_methods)
    else:
        _compare_runs(ctx, layer)
