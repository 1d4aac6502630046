"""Compare: two runs (this one and a sibling run directory) or two methods of this run, side by side
for the same units."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import duckdb
import pandas as pd
import streamlit as st

from atlas.errors import AtlasError
from atlas.store.catalog import check_run
from atlas.store.manifest import read_manifest
from viewer import data, state, widgets
from viewer.context import Context

MAX_UNITS = 24


class _OtherUnreadable(Exception):
    """The other run (not the page's) failed a read: its one line names it and its verify command."""


@contextmanager
def _reading_other(where: Any, name: str) -> Iterator[None]:
    """Reads of the other run: a damaged file there is said as its (a user's trial: Compare blamed the
    page's own healthy run, "Cannot read this run", and sent the user to repair it)."""
    try:
        yield
    except (AtlasError, duckdb.Error) as exc:
        raise _OtherUnreadable(data.cannot_read(exc, where.uri, name)) from None


def _default_units(ctx: Context, layer: str) -> str:
    """A small layer's every unit (up to 12: a 10-unit output layer whole), else 8 from the unit shown."""
    ids = ctx.ids(layer)
    return data.format_units(data.units_from(ids, state.get("unit"), len(ids) if len(ids) <= 12 else 8))


Side = tuple[str, dict[int, dict], bool]  # (name, unit -> {"png", "activation"} or {"note"}, being written)


def _pairs(ctx: Context, layer: str, units: list[int], sides: list[Side], names: dict[int, str]) -> None:
    """Four units a row; per unit its best image on each side (``sides``: (name, unit -> its best image
    or a note saying why there is none, whether that run is still being written); ``names``: the units'
    names here, e.g. "unit 10 · 3 + 5")."""
    per_row = 4
    for start in range(0, len(units), per_row):
        for col, unit in zip(st.columns(per_row), units[start : start + per_row], strict=False):
            with col.container(border=True):
                title = widgets.markdown_text(names.get(unit, f"unit {unit}"))
                widgets.page_link(ctx, "unit", f"**{title}**", layer=layer, unit=unit)
                for sub, (name, images, running) in zip(st.columns(len(sides)), sides, strict=True):
                    with sub:
                        _side_image(name, images.get(unit), running)


def _side_image(name: str, rec: dict | None, running: bool = False) -> None:
    if rec is not None and rec.get("note"):
        st.caption(f"{name}: {rec['note']}")
    elif rec is not None and rec["png"] is not None:
        which = f" · {rec['caption']}" if rec.get("caption") else ""  # a composite numbered otherwise there
        widgets.picture(rec["png"], caption=f"{name}{which} · {widgets.fmt(rec['activation'])}")
    elif rec is not None:
        st.caption(f"{name}: no picture kept")
    else:
        st.caption(f"{name}: not in this run" + (" (yet)" if running else ""))


def _side(conn: Any, layer: str, units: list[int], kinds: dict[int, dict], method: str | None = None) -> dict:
    """unit -> its best image in ``conn`` (of ``method``'s chains), or a note for a failed unit; ``units``
    are units the run holds (one without a picture: none kept)."""
    images: dict[int, dict] = data.best_image_map(conn, layer, units, method)
    for unit in units:
        kind = kinds.get(unit, {})
        images.setdefault(unit, {"png": None, "activation": None})
        if kind.get("status") == "error":
            images[unit] = {"note": f"failed ({kind.get('error') or 'no error recorded'})"}
    return images


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
        running = ctx.info.get("status") == "running"
        st.caption("; ".join(data.filter_notes(ctx.manifest, ctx.conn.damage, layer, ranges, ids, running)))
    if len(held) > MAX_UNITS:
        st.caption(f"showing the first {MAX_UNITS} of {len(held)} units")
    return held[:MAX_UNITS]


def _modes(ctx: Context, run_methods: list[str]) -> list[str]:
    return (["two runs"] if ctx.siblings else []) + (["two methods"] if len(run_methods) >= 2 else [])


def _compare_methods(ctx: Context, layer: str, run_methods: list[str]) -> None:
    c1, c2 = st.columns(2)
    m_a = c1.selectbox("Left method", run_methods, index=0, key="cmp_method_a")
    m_b = c2.selectbox("Right method", run_methods, index=1, key="cmp_method_b")
    summary = data.method_summary(ctx.conn, layer)
    wide = {"method": st.column_config.TextColumn(width="large")}
    st.dataframe(summary, hide_index=True, column_config=wide)
    units = _units_input(ctx, layer)
    kinds = data.unit_kinds(ctx.conn, layer)
    sides = [(m, _side(ctx.conn, layer, units, kinds, m), False) for m in (m_a, m_b)]
    st.caption(f"best image per unit · left **{m_a}**, right **{m_b}** · layer {layer}")
    _pairs(ctx, layer, units, sides, {u: data.unit_name(u, kinds.get(u, {}).get("composite")) for u in units})


def _summary_table(runs: list[tuple[str, dict | None, list[str]]]) -> None:
    """The two runs' summaries side by side, a row a measure (as metrics, two rows of five in half a page
    each, their labels were cut to "mean best …", "judge a…" at 1400 px and worse when narrower)."""
    rows = {
        "method": [", ".join(methods) or "no chains yet" for _, _, methods in runs],
        "steps": [widgets.fmt(s.get("steps")) if s else "–" for _, s, _ in runs],
        "forward passes per picture": [widgets.fmt(s.get("passes")) if s else "–" for _, s, _ in runs],
        "mean best activation": [widgets.fmt(s["mean_best_activation"]) if s else "–" for _, s, _ in runs],
        "mean facets": [widgets.fmt(s["mean_facets"]) if s else "–" for _, s, _ in runs],
        "diverged chains": [widgets.fmt(int(s["diverged_chains"] or 0)) if s else "–" for _, s, _ in runs],
    }
    if any(s and s.get("judge_accuracy") is not None for _, s, _ in runs):
        rows["judge accuracy"] = [_percent(s, "judge_accuracy") for _, s, _ in runs]
    if any(s and s.get("flagged_share") is not None for _, s, _ in runs):
        rows["flagged pictures"] = [_percent(s, "flagged_share") for _, s, _ in runs]
    names = [name for name, _, _ in runs]
    table = pd.DataFrame({n: [v[i] for v in rows.values()] for i, n in enumerate(names)}, index=list(rows))
    # a static table: its cells wrap to the page's width (on a phone the scrolling data frame showed the
    # first run's column alone, the other off to the right with no sign of it: a trial)
    st.table(table)
    _budgets_differ(runs)


def _budgets_differ(runs: list[tuple[str, dict | None, list[str]]]) -> None:
    """A warning when the two runs spent different forward passes per picture: ``sampler.steps`` is one
    gradient step (3 passes) for gradient methods and one generation (a population of passes) for GA and
    CMA-ES, so the same steps are budgets that differ up to ~7 x (a trial compared DGN-AM and GA at 150 vs
    1,000 passes with nothing said)."""
    passes = [(name, (s or {}).get("passes")) for name, s, _ in runs]
    known = [(name, int(p)) for name, p in passes if p is not None]
    if len(known) < 2 or len({p for _, p in known}) == 1 or min(p for _, p in known) <= 0:
        return
    (a, pa), (b, pb) = known[:2]
    more, fewer = (a, b) if pa > pb else (b, a)
    st.warning(
        f"The runs spent different budgets: {pa:,} forward passes per picture in {a}, {pb:,} in {b}, "
        f"so {more} had {max(pa, pb) / min(pa, pb):.1f} x the search of {fewer}. A gradient step costs 3 "
        "passes and a GA or CMA-ES generation one per member of its population; `atlas bench quality` "
        "compares the methods at equal budgets.",
        icon=":material/balance:",
    )


def _percent(stats: dict | None, key: str) -> str:
    value = (stats or {}).get(key)
    return "–" if value is None else f"{value:.0%}"


def _manifest(run: Any) -> tuple[frozenset[str], dict[str, Any], bool]:
    """The layers a run's run.json plans, its weights fingerprints (empty when it cannot be read) and
    whether it passes the readers' quick check (:func:`check_run`: run.json, markers, every promised file
    there): the default other run has the layer shown and this run's networks, and opens. Read once a
    session per run (a sibling on S3 costs a few requests)."""
    seen: dict[str, tuple[frozenset[str], dict[str, Any], bool]] = st.session_state.setdefault(
        "cmp_manifests", {}
    )
    if run.uri not in seen:
        try:
            manifest = read_manifest(run)
            layers = frozenset(str(entry.get("name")) for entry in manifest.get("layers") or [])
            prints = manifest.get("fingerprints")
            seen[run.uri] = (layers, prints if isinstance(prints, dict) else {}, _opens(run))
        except (AtlasError, AttributeError, TypeError):
            seen[run.uri] = (frozenset(), {}, False)
    return seen[run.uri]


def _opens(run: Any) -> bool:
    try:
        check_run(run)
    except (AtlasError, OSError):
        return False
    return True


def _default_other(ctx: Context, layer: str) -> str:
    """The first sibling that opens, has the layer and this run's networks; else that opens and has the
    layer; else that opens; else the first (a user's trial: from a healthy run it picked a damaged one)."""
    opens = [p for p in ctx.siblings if _manifest(p)[2]]
    with_layer = [p for p in opens if layer in _manifest(p)[0]]
    alike = [p for p in with_layer if not data.model_differences(ctx.info, {"fingerprints": _manifest(p)[1]})]
    return (alike or with_layer or opens or ctx.siblings)[0].name


def _compare_runs(ctx: Context, layer: str) -> None:
    names = [p.name for p in ctx.siblings]
    default = _default_other(ctx, layer)
    other_name = st.selectbox("Other run", names, key=state.compare_widget("vs", layer, names, default))
    widgets.link_notice()
    where = ctx.siblings[names.index(other_name)]
    try:
        with _reading_other(where, other_name):  # its open and first reads: a damage here is its
            other = ctx.open_other(where) if ctx.open_other else None
            other_layers = {name for name, _ in data.layers(other)} if other is not None else set()
            other_ids = data.unit_ids(other, layer) if layer in other_layers else []
        if other is not None and other.damage:  # opened without its damaged shards: said as that run's
            st.warning(data.damaged_note(other.damage, where.uri, other_name), icon=":material/broken_image:")
        _compare_with(ctx, layer, (other_name, where), other, other_layers, other_ids)
    except _OtherUnreadable as exc:
        st.error(str(exc), icon=":material/error:")


def _compare_with(
    ctx: Context, layer: str, named: tuple[str, Any], other: Any, other_layers: set[str], other_ids: list[int]
) -> None:
    other_name, where = named
    if other is None:
        st.error("Cannot open the other run.")
        return
    if layer not in other_layers:
        have = ", ".join(sorted(other_layers)) or "none"
        st.warning(f"Run {other_name} has no layer {layer} (it has {have}).")
        return
    with _reading_other(where, other_name):
        other_info, theirs = data.run_info(other), data.unit_kinds(other, layer)
    differs = data.model_differences(ctx.info, other_info)
    if differs:
        st.warning(
            f"The runs use different {' and '.join(differs)} (weights fingerprints differ): the same unit "
            "number may not be the same unit, and activations are on different scales.",
            icon=":material/warning:",
        )
    mine = data.unit_kinds(ctx.conn, layer)
    matched, differ = data.match_units(ctx.ids(layer), mine, other_ids, theirs)
    _objectives_differ(other_name, differ)
    failed_here, failed_there = data.failed_units(mine), data.failed_units(theirs)
    both = sorted(  # own units both runs hold and sampled: never a composite, never a failed unit
        u for u, v in matched.items() if u == v and not mine.get(u, {}).get("composite")
        and u not in failed_here and v not in failed_there
    )  # fmt: skip
    here_stats = (ctx.run_dir.name, data.stats_over(ctx.conn, layer, both), data.methods(ctx.conn))
    with _reading_other(where, other_name):
        there_stats = (other_name, data.stats_over(other, layer, both), data.methods(other))
    _summary_table([here_stats, there_stats])
    left_out = _left_out(ctx, other_name, mine, failed_here, failed_there)
    st.caption(
        f"summaries over all {len(both):,} units of layer {layer} that both runs hold (not only the units "
        f"shown below){left_out}; judge "
        "accuracy: the share of units whose last pictures the held-out judge reads as their class; flagged "
        "pictures: best and last pictures carrying a flag (weak, off_path, off_manifold), which the Audit "
        "page lists"
    )
    _settings_differ(ctx, other_name, other_info)
    units = _units_input(ctx, layer)
    here = _side(ctx.conn, layer, units, mine)
    wanted = sorted({matched[u] for u in units if u in matched})
    with _reading_other(where, other_name):
        fetched = _side(other, layer, wanted, theirs)
    there: dict[int, dict] = {}
    for unit in units:
        if unit in matched:
            there[unit] = fetched.get(matched[unit], {"png": None, "activation": None})
            if matched[unit] != unit:
                there[unit] = {**there[unit], "caption": f"unit {matched[unit]}"}
        elif unit in differ:
            objective = f"`{differ[unit][1]}`" if differ[unit][1] else "its own unit"
            there[unit] = {"note": f"unit {unit} is {objective} there"}
        elif mine.get(unit, {}).get("composite"):
            there[unit] = {"note": f"no composite `{mine[unit]['composite']}`"}
    sides = [
        (ctx.run_dir.name, here, ctx.info.get("status") == "running"),
        (other_name, there, other_info.get("status") == "running"),
    ]
    st.caption(f"best image per unit · left **{ctx.run_dir.name}**, right **{other_name}** · layer {layer}")
    _pairs(ctx, layer, units, sides, {u: data.unit_name(u, mine.get(u, {}).get("composite")) for u in units})


def _settings_differ(ctx: Context, other_name: str, other_info: dict) -> None:
    """A caption naming the settings that change results and differ between the two runs (the method's
    steps and step size, the start, ...): a higher mean activation after twice the steps is no better
    method."""
    settings = data.setting_differences(ctx.info.get("config") or {}, other_info.get("config") or {})
    if settings:
        more = f"; and {len(settings) - 8} more" if len(settings) > 8 else ""
        shown = "; ".join(f"`{s}`" for s in settings[:8]) + more
        st.caption(f"settings that differ ({ctx.run_dir.name} vs {other_name}): {shown}")


def _objectives_differ(other_name: str, differ: dict[int, tuple[str | None, str | None]]) -> None:
    """A warning naming the units both runs number alike that hold different objectives."""
    if not differ:
        return
    shown = [
        f"unit {u}: {f'`{a}`' if a else 'own unit'} here, {f'`{b}`' if b else 'own unit'} in {other_name}"
        for u, (a, b) in list(differ.items())[:6]
    ]
    more = f" and {len(differ) - 6} more" if len(differ) > 6 else ""
    st.warning(
        f"{len(differ)} unit{'s' if len(differ) != 1 else ''} of the same number hold different objectives "
        f"in the two runs ({'; '.join(shown)}{more}): they are not compared as one unit. A composite is "
        "shown beside the other run's composite of the same expression, where it has one; none is in the "
        "summaries.",
        icon=":material/warning:",
    )


def _left_out(ctx: Context, other_name: str, mine: dict, failed_here: set, failed_there: set) -> str:
    """What the summaries leave out: composites and failed units (each run's)."""
    parts = []
    composites = sum(1 for k in mine.values() if k.get("composite"))
    if composites:
        parts.append(f"{composites} composite{'s' if composites != 1 else ''}")
    sides = ((ctx.run_dir.name, failed_here), (other_name, failed_there))
    failed = [f"{len(f)} in {name}" for name, f in sides if f]
    if failed:
        parts.append(f"failed units ({', '.join(failed)})")
    return f"; left out: {' and '.join(parts)}" if parts else ""


def _mode_not_offered(ctx: Context, modes: list[str], run_methods: list[str]) -> None:
    """A link's mode this run cannot show, said with the reason (one method, no sibling run) and left out."""
    link = st.session_state.get("nav_cmp_url", {})
    wanted = state.COMPARE_MODES.get(link.get("mode"))
    if wanted is None or wanted in modes:
        return
    raw = link.pop("mode")
    if wanted == "two methods":
        reason = f"this run has one method ({', '.join(run_methods) or 'none yet'})"
    else:
        reason = f"this run has no sibling run in `{ctx.run_dir.parent}`"
    state.notice(f"The link's mode={raw!r} cannot be shown: {reason}; showing {modes[0]}.")


def render(ctx: Context) -> None:
    layer = state.get("layer")
    st.title("Compare")
    run_methods = data.methods(ctx.conn, layer)  # two methods of this layer's units
    modes = _modes(ctx, run_methods)
    if not modes:
        other = "dgn_am" if any(m.split("/")[0] == "ppgn_h" for m in run_methods) else "ppgn_h"
        st.info(
            "Nothing to compare yet: this run uses one method "
            f"({', '.join(run_methods) or '–'}) and has no sibling run in `{ctx.run_dir.parent}`. Put a "
            "second run next to it, e.g. the same config with another method: `atlas run CONFIG --set "
            f"name={ctx.run_dir.name}-{other} --set sampler.method={other}` (same out_dir): this page then "
            "finds it."
        )
        return
    _mode_not_offered(ctx, modes, run_methods)
    key = state.compare_widget("mode", layer, modes, modes[0])
    mode = (st.segmented_control("Compare", modes, key=key) if len(modes) > 1 else None) or modes[0]
    widgets.link_notice()
    if mode == "two methods":
        _compare_methods(ctx, layer, run_methods)
    else:
        _compare_runs(ctx, layer)
