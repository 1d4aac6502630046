"""Compare: two runs (this one and a sibling run directory) or two methods of this run, side by side
for the same units."""

from __future__ import annotations

import streamlit as st

from viewer import data, state, widgets
from viewer.context import Context

MAX_UNITS = 24


def _default_units(ctx: Context, layer: str) -> str:
    ids = ctx.ids(layer)
    unit = state.get("unit")
    if unit is not None and unit in ids:
        i = ids.index(unit)
        chosen = ids[i : i + 8]
    else:
        chosen = ids[:8]
    return data.format_units(chosen)


def _pairs(layer: str, units: list[int], left, right, left_name: str, right_name: str) -> None:
    lmap = {int(r["unit"]): r for r in left.to_dict("records")}
    rmap = {int(r["unit"]): r for r in right.to_dict("records")}
    per_row = 4
    for start in range(0, len(units), per_row):
        cols = st.columns(per_row)
        for col, unit in zip(cols, units[start : start + per_row], strict=False):
            with col.container(border=True):
                st.button(f"**unit {unit}**", key=f"cmp_open_{unit}", type="tertiary", on_click=state.go,
                          kwargs={"page": "unit", "layer": layer, "unit": unit})  # fmt: skip
                a, b = st.columns(2)
                for sub, rec, name in ((a, lmap.get(unit), left_name), (b, rmap.get(unit), right_name)):
                    with sub:
                        if rec is not None and rec.get("png") is not None:
                            caption = f"{name} · {widgets.fmt(rec.get('activation'))}"
                            st.image(bytes(rec["png"]), caption=caption, width="stretch")
                        else:
                            st.caption(f"{name}: –")


def _units_input(ctx: Context, layer: str) -> list[int]:
    key = f"cmp_units_{layer}"
    if key not in st.session_state:
        st.session_state[key] = _default_units(ctx, layer)
    text = st.text_input("Units", key=key, help="numbers and ranges, e.g. 0-7, 12")
    try:
        ranges = data.parse_units(text)
    except ValueError:
        st.error(f"Cannot read {text!r}; use numbers and ranges, e.g. `0-7, 12`.")
        return []
    units = sorted({u for a, b in ranges for u in range(a, min(b, a + MAX_UNITS * 4) + 1)})
    if len(units) > MAX_UNITS:
        st.caption(f"showing the first {MAX_UNITS} of {len(units)} units")
    return units[:MAX_UNITS]


def render(ctx: Context) -> None:
    layer = state.get("layer")
    st.title("Compare")
    run_methods = data.methods(ctx.conn)
    modes = []
    if ctx.siblings:
        modes.append("two runs")
    if len(run_methods) >= 2:
        modes.append("two methods")
    if not modes:
        st.info(
            "Nothing to compare yet: this run uses one method "
            f"({', '.join(run_methods) or '–'}) and has no sibling run in `{ctx.run_dir.parent}`. "
            "Put a second run next to it (e.g. `atlas run ... --set name=other`) or sample with two methods."
        )
        return
    mode = st.segmented_control("Compare", modes, default=modes[0], key="cmp_mode") or modes[0]

    if mode == "two methods":
        c1, c2 = st.columns(2)
        m_a = c1.selectbox("Left method", run_methods, index=0, key="cmp_method_a")
        m_b = c2.selectbox("Right method", run_methods, index=1, key="cmp_method_b")
        st.dataframe(data.method_summary(ctx.conn, layer), hide_index=True)
        units = _units_input(ctx, layer)
        left = data.best_images(ctx.conn, layer, units, m_a)
        right = data.best_images(ctx.conn, layer, units, m_b)
        st.caption(f"best image per unit · left **{m_a}**, right **{m_b}** · layer {layer}")
        _pairs(layer, units, left, right, m_a, m_b)
        return

    names = [p.name for p in ctx.siblings]
    other_name = st.selectbox("Other run", names, key="cmp_other")
    other_dir = ctx.siblings[names.index(other_name)]
    other = ctx.open_other(other_dir) if ctx.open_other else None
    if other is None:
        st.error("Cannot open the other run.")
        return
    other_layers = {name for name, _ in data.layers(other)}
    if layer not in other_layers:
        st.warning(
            f"Run {other_name} has no layer {layer} (it has {', '.join(sorted(other_layers)) or 'none'})."
        )
        return
    a, b = st.columns(2)
    for col, conn, name in ((a, ctx.conn, ctx.run_dir.name), (b, other, other_name)):
        s = data.layer_summary(conn)
        s = s[s["layer"] == layer]
        with col:
            st.markdown(f"**{name}**")
            if len(s):
                r = s.iloc[0]
                m = st.columns(3)
                m[0].metric("mean best act.", widgets.fmt(r["mean_best_activation"]))
                m[1].metric("mean facets", widgets.fmt(r["mean_facets"]))
                m[2].metric("diverged", widgets.fmt(int(r["diverged_chains"])))
    units = _units_input(ctx, layer)
    left = data.best_images(ctx.conn, layer, units)
    right = data.best_images(other, layer, units)
    st.caption(f"best image per unit · left **{ctx.run_dir.name}**, right **{other_name}** · layer {layer}")
    _pairs(layer, units, left, right, ctx.run_dir.name, other_name)
