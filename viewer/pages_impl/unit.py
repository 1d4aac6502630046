"""Unit page: concept label and tuning (when the run has them), facets, every chain's best / last /
snapshot images with their faithfulness badges, real top-k, trajectories, competing units, links to the
neighbouring units. Lays out :class:`viewer.data.UnitView`."""

from __future__ import annotations

import html
import math
from typing import Any
from urllib.parse import urlencode

import altair as alt
import pandas as pd
import streamlit as st

from atlas.errors import AtlasError
from viewer import data, state, widgets
from viewer.context import Context

TITLES = {
    "activation": "activation",
    "log_prob": "log-prob",
    "rank": "rank (0 = top)",
    "prior_residual": "prior residual ‖R(h) − h‖",
}
REAL_NAME_CHARS = 28  # a real picture's file name under its tile: longer ones show their end


def _int(value) -> int | None:
    return None if pd.isna(value) else int(value)


JUDGE_FILTER = {"all": None, "correct": True, "wrong": False}


def _grid_query(ctx: Context, layer: str, chosen: dict) -> data.GridQuery:
    """The GridQuery of the grid a unit page came from (``state.grid_link_choices``); a value the grid
    would not take counts as its default, as the grid itself treats it."""
    have = data.truth(ctx.conn)
    sorts = data.sorts(have.labels, have.pictures)
    try:
        units = data.parse_units(str(chosen.get("units", "")))
    except AtlasError:
        units = ()
    flag = str(chosen.get("flag", ""))
    flag = flag.removeprefix("with ").removesuffix(" pictures") if flag.startswith("with ") else ""
    flag = flag if have.pictures and flag in data.flag_names(ctx.conn, layer) else ""  # as the grid offers
    return data.GridQuery(
        layer=layer,
        sort=chosen["sort"] if chosen.get("sort") in sorts else sorts[0],
        min_facets=max(0, int(chosen.get("facets") or 0)),
        units=units,
        only_correct=JUDGE_FILTER.get(str(chosen.get("judge", "all"))),
        label_text=str(chosen.get("label", "")) if have.labels else "",
        flag=flag or None,
        natural=data.NATURAL.get(str(chosen.get("natural", "all units"))),
    )


def _grid_steps(ctx: Context, layer: str, unit: int) -> tuple[int | None, int | None, str] | None:
    """(previous, next, "unit 3 of 130 in the grid's order: ...") in the order of the grid the page was
    opened from, when its URL carries that grid's sort or filters and the unit is in it; else None (a
    user's trial: next / previous ignored the sorted, filtered grid the link came from)."""
    chosen = state.grid_link_choices()
    if not chosen:
        return None
    q = _grid_query(ctx, layer, chosen)
    ids = data.grid_order(ctx.conn, q)
    shown = ", ".join(f"{k} {v}" for k, v in chosen.items())  # the widgets' own words: "sort facet count ↓"
    if unit not in ids:  # a unit typed in, or a link edited: said, where prev / next quietly left the grid
        st.caption(
            f"Unit {unit} is not in the grid this page was opened from ({shown}): previous and next step "
            "through the layer's units."
        )
        return None
    i = ids.index(unit)
    where = f"unit {i + 1} of {len(ids)} in the grid's order ({shown})"
    return (ids[i - 1] if i > 0 else None), (ids[i + 1] if i + 1 < len(ids) else None), where


def _nav(ctx: Context, view: data.UnitView, suffix: str, steps: tuple | None = None) -> None:
    """Previous / next (in the grid's order when ``steps``: :func:`_grid_steps`), the grid, the permalink."""
    prev, nxt = (steps[0], steps[1]) if steps else (view.prev, view.next)
    order = f"; {steps[2]}" if steps else ""
    c1, c2, c3, c4 = st.columns([1, 1, 1.3, 2.7])
    c1.button(f"unit {prev}" if prev is not None else "first unit", icon=":material/chevron_left:",
              disabled=prev is None, key=f"unit_prev_{suffix}", on_click=state.go,
              kwargs={"unit": prev}, width="stretch", help=f"the previous unit{order}")  # fmt: skip
    c2.button(f"unit {nxt}" if nxt is not None else "last unit", icon=":material/chevron_right:",
              icon_position="right", disabled=nxt is None, key=f"unit_next_{suffix}", on_click=state.go,
              kwargs={"unit": nxt}, width="stretch", help=f"the next unit{order}")  # fmt: skip
    with c3:
        widgets.page_link(ctx, "layer", f"{view.layer} grid", ":material/grid_view:",
                          help="back to the layer grid, in this tab")  # fmt: skip
    if suffix == "top":  # the page's own URL (frame toggle and run included), to copy or open elsewhere
        own = {
            k: v
            for k, v in state.params_for("unit", ctx.multi_run).items()
            if k not in state.GRID_RETURN_KEYS
        }
        here = html.escape(f"unit?{urlencode(own)}")  # the unit's link, without the grid it was opened from
        c4.markdown(f"<a class='atlas-unit-nav' href='{here}'>permalink</a>", unsafe_allow_html=True,
                    help="this unit's link, to copy or open in a new tab")  # fmt: skip
    else:
        c4.markdown("<span class='atlas-unit-nav'></span>", unsafe_allow_html=True)  # narrow-screen CSS


def _unit_input(ids: list[int]) -> int:
    # no max: a number past the layer's end is applied and answered with the page's "not in layer" warning,
    # where a bounded box turned red and ignored Enter
    st.number_input("Unit", min_value=0, step=1, key=state.bind_widget("unit"),
                    on_change=state.from_widget, args=("unit",),
                    help=f"units {data.compact_units(ids)} of this layer")  # fmt: skip
    return int(state.get("unit"))


def _title(view: data.UnitView, conn: Any) -> None:
    composite = (view.row or {}).get("composite")
    st.title(f"{view.layer} · {widgets.markdown_text(data.unit_name(view.unit, composite))}")
    row = view.row
    if row and row.get("objective"):
        st.caption(
            f"objective `{row['objective']}` · {row.get('kind') or ''} · method {row.get('method') or '–'}"
        )
    terms = data.composite_terms(conn, view.layer, composite) if composite else None
    if terms:
        st.caption(widgets.plain_caption(f"a composite of {terms}"))


def _metrics(row: dict) -> None:
    cols = st.columns(7)
    composite = row.get("composite")
    rank = row.get("best_rank")
    rank = None if rank is None or pd.isna(rank) or rank < 0 else int(rank)  # -1: no chain ranked (failed)
    cols[0].metric("Best activation", widgets.fmt(row.get("best_activation")))
    if composite:  # a sum of its terms' log-probs and its first term's rank: said as such
        first = data.first_term(composite)
        cols[1].metric(
            "Log-prob sum", widgets.fmt(widgets.snap(row.get("best_log_prob"))),
            help=f"the weighted sum of the log-softmax of its terms ({composite}) on its best picture, not a "
            "probability: a contrast's can be far above 0",
        )  # fmt: skip
        cols[2].metric(f"Rank of unit {first}", widgets.fmt(rank),
                       help=f"the rank of its first term, unit {first}, on its best picture (0 = the most "
                       "active unit of its layer)")  # fmt: skip
    else:
        cols[1].metric(
            "Best log-prob", widgets.fmt(widgets.snap(row.get("best_log_prob"))),
            help="log-softmax of the unit over its layer's units (at its map position for a conv unit) on "
            "its best picture: 0 = the unit takes all of the layer's softmax, log 1/N = no more than any "
            "other",
        )  # fmt: skip
        cols[2].metric("Best rank", widgets.fmt(rank), help="0 = the most active unit of its layer")
    cols[3].metric("Facets", widgets.fmt(row.get("facet_count")))
    cols[4].metric("Chains", widgets.fmt(row.get("n_chains")))
    ratio = row.get("activation_ratio")
    cols[5].metric(
        "Real top-1", widgets.fmt(row.get("real_top1_activation")),
        delta=f"×{ratio:.2f}" if ratio else None, delta_color="off", delta_arrow="off",
        help="activation of the most activating real image; the ratio is best synthetic / real top-1",
    )  # fmt: skip
    if row.get("judge_label") is not None:
        value, delta, help_text = judge_metric(row)
        cols[6].metric("Judge", value, delta=delta, help=help_text, delta_color="off", delta_arrow="off")


def judge_metric(row: dict) -> tuple[str, str | None, str]:
    """The Judge metric's value, delta and tooltip: ✓ or ✗ with J's most common reading, and the share of
    last pictures J reads as the unit's class under it (a tie, 2 of 4, is no majority: ✗, though the most
    common reading may be the unit's own class)."""
    share = row.get("judge_prob")
    right = share is not None and not pd.isna(share)
    delta = f"{float(share):.0%} its class" if right else None  # short: the metric is a seventh of a row
    help_text = (
        "the held-out judge J's reading of this unit's last pictures (diverged chains left out): ✓ when more "
        "than half are read as the class the unit stands for, ✗ otherwise (a tie included); beside it J's "
        "most common reading (its fine label, which may be the unit's own class in a tie), under it the "
        "share read as the unit's class"
    )
    return f"{'✓' if row.get('judge_correct') else '✗'} {row['judge_label']}", delta, help_text


def _label_text(lab: data.LabelView, row: dict | None = None) -> None:
    """The label with its AUROC, runner-up and margin; "no label" (and the best concept's score) when null."""
    fmt = widgets.fmt
    if lab.label is not None:
        score = f"<span class='atlas-label-score'>AUROC <b>{data.fmt_auroc(lab.score)}</b></span>"
        st.markdown(
            f"<span class='atlas-label'>{widgets.concept_html(lab.label)}</span>{score}",
            unsafe_allow_html=True,
        )
    else:
        st.markdown("<span class='atlas-label none'>no label</span>", unsafe_allow_html=True)
        if lab.best is None:
            st.caption("No labelled natural images for this unit.")
            return
        st.markdown(data.no_label_reason(lab))
    union = union_note(lab.label)
    if union:
        st.caption(union)
    place = place_note(lab.label or lab.best, lab.cell)
    if place:
        st.caption(place)
    if lab.runner_up is not None:
        higher = lab.margin is not None and lab.margin < 0 and lab.label is not None
        why = f" (it scores higher, but fewer than half of the unit's top {data.TOP_K} images show it)"
        st.caption(f"runner-up `{lab.runner_up}` · margin {fmt(lab.margin)}" + (why if higher else ""))
    _reader_text(lab)
    disagree = readers_disagree(lab, row or {})
    if disagree:
        st.warning(disagree, icon=":material/report:")
    if lab.dissection_iou is not None:
        verdict = f"`{lab.dissection_label}`" if lab.dissection_label else "no concept (IoU < 0.04)"
        st.caption(f"Network Dissection (object masks): {verdict} · IoU {fmt(lab.dissection_iou)}")
    st.caption(
        f"AUROC: the unit as a detector of the concept on labelled natural images; a label needs "
        f"≥ {data.LABEL_THRESHOLD}, and at least {data.TOP_SHARE:.0%} of the unit's top {data.TOP_K} "
        "images showing it."
    )


def union_note(label: str | None) -> str | None:
    """The caption under a union label (``class:ring|frame``): which concepts the unit detects alike."""
    if label is None or "|" not in label:
        return None
    kind, _, values = label.partition(":")
    either = " or ".join(f"`{kind}:{v}`" for v in values.split("|"))
    return f"a union: the unit detects {either} alike (it beats each alone by more than the margin)"


def place_note(concept: str | None, cell: tuple[int, int, int, int] | None) -> str | None:
    """The caption under a conv unit's place-bound concept (``colour:red@here``, ``here:edge``): where
    *here* is, in the pictures' pixels."""
    if not data.is_place_bound(concept) or cell is None:
        return None
    y0, y1, x0, x1 = cell
    where = f"rows {y0}–{y1 - 1}, columns {x0}–{x1 - 1}"
    return (
        f"place-bound: *here* is the block of the picture the unit's map position reads ({where}; framed on "
        f"the pictures below): `@here` = the object covers it, `here:edge` = its outline crosses it, "
        f"`here:interior` = it lies inside the object, `here:background` = no object there"
    )


def _reader_text(lab: data.LabelView) -> None:
    """What the attribute reader finds in the chains' last pictures (toy world; nothing when not recorded)."""
    if lab.label_shown is None and lab.reader_agreement is None:
        return
    parts = []
    if lab.label_shown is not None:
        parts.append(f"label shown in **{100 * float(lab.label_shown):.0f} %** of the last pictures")
    if lab.reader_agreement is not None:
        parts.append(f"reader agreement **{float(lab.reader_agreement):.2f}**")
    st.markdown(" · ".join(parts))
    st.caption(
        "The attribute reader (trained on natural toy images) decodes each chain's last picture: the share "
        "that shows the label, and how alike the chains' class, colour, position, size and distractor are "
        "(1 = all alike)."
    )


DISAGREE = 0.5  # the judge's and the reader's shares of the same last pictures this far apart are said


def readers_disagree(lab: data.LabelView, row: dict) -> str | None:
    """A warning when the held-out judge J and the attribute reader read the same last pictures far apart:
    J the unit's class in ``judge_prob`` of them, the reader the unit's class label in ``label_shown`` (an
    output unit of the toy world, labelled with one class); None when they agree or either is missing."""
    judged, shown = row.get("judge_prob"), lab.label_shown
    if judged is None or shown is None or pd.isna(judged) or pd.isna(shown):
        return None
    label = str(lab.label or "")
    if not label.startswith("class:") or "|" in label:  # a union (class:a|b) is no share of the unit's class
        return None
    if abs(float(judged) - float(shown)) < DISAGREE:
        return None
    return (
        f"Two held-out readers disagree on these last pictures: the judge J reads the unit's class in "
        f"{float(judged):.0%} of them, the attribute reader its label `{lab.label}` in {float(shown):.0%}. "
        "Neither reading is safe here; the pictures' flags (`off_manifold`: G redraws them worse than 99 % "
        "of natural images) say how unlike natural images they are."
    )


def _tuning(tuning: pd.DataFrame) -> None:
    if tuning.empty:
        st.caption("No tuning list recorded.")
        return
    metric = st.segmented_control(
        "Tuning", ["mean activation", "AUROC"], default="mean activation", key="unit_tuning_metric"
    )
    key = "auroc" if metric == "AUROC" else "mean"
    chart = widgets.tuning_chart(tuning, key, threshold=data.LABEL_THRESHOLD)
    st.altair_chart(chart, width="stretch")


def _concept(view: data.UnitView) -> None:
    """Label and tuning chart; nothing for a run without label columns."""
    if view.label is None:
        return
    st.subheader("Concept label")
    left, right = st.columns([2, 3])
    with left:
        _label_text(view.label, view.row)
    with right:
        _tuning(view.label.tuning)


def _badges(df: pd.DataFrame, silent: bool = False) -> list[widgets.Badges] | None:
    """Each picture's (percentile text, flags, muted); None when none of them has any (a run without
    them). A silent unit's percentiles are grey: p100 there only beats natural values that are all <= 0."""
    if "badge" not in df or (df["badge"].isna().all() and not any(df["flags"])):
        return None
    return [(badge, flags, silent) for badge, flags in zip(df["badge"], df["flags"], strict=True)]


def _facets(view: data.UnitView, facet_layer: str | None = None) -> None:
    st.subheader("Facets")
    nb = "\u00a0"  # a caption wraps between its parts only: "chain" stays with its number
    items = [
        (r["png"], f"facet{nb}{widgets.fmt(_int(r['facet']))} · act{nb}{widgets.fmt(r['activation'])} · "
                   f"chain{nb}{int(r['chain'])}")
        for r in view.facets.to_dict("records")
    ]  # fmt: skip
    badges = _badges(view.facets, view.row is not None and data.is_silent(view.row))
    widgets.tiles(items, columns=6, badges=badges)
    if badges is not None:  # the legend under the pictures it explains
        st.caption(widgets.PERCENTILE_HELP)
    seen = view.reader_facets
    counted = _int((view.row or {}).get("facet_count"))
    if counted is not None and len(seen) > counted:  # the reader sees facets the facet layer did not part
        shown = ", ".join(f"{c.removeprefix('facet:')} ({n})" for c, n in seen.items())
        st.caption(
            f"The attribute reader finds {len(seen)} facets among the chains' last pictures ({shown}) where "
            f"the facet layer{_facet_layer_name(facet_layer)} separates {counted}: a facet is a cluster of "
            'that layer\'s features, which need not keep the facets apart (docs/sampling.md, "Facets").'
        )


def _facet_layer_name(layer: Any) -> str:
    return f" `{layer}`" if isinstance(layer, str) and layer else ""


def _real(view: data.UnitView) -> None:
    if view.real.empty:
        return
    st.subheader("Real top-k images")
    items = [(r["png"], f"#{r['rank']} · act {widgets.fmt(r['activation'])}{_real_source(r)}")
             for r in view.real.to_dict("records")]  # fmt: skip
    widgets.tiles(items, columns=len(items) if len(items) <= 10 else 8)  # the top-9 in one row
    if view.real["real_name"].notna().any():
        st.caption("Each picture's file inside `facets.real_images`; `atlas sql` has the whole path as "
                   "`images.real_name`.")  # fmt: skip


def _real_source(row: dict) -> str:
    """Where a real picture comes from: its file in the user's folder (the end of a long path), else its
    index in the real image set."""
    name = row.get("real_name")
    if isinstance(name, str) and name:
        return f" · {name if len(name) <= REAL_NAME_CHARS else '…' + name[-(REAL_NAME_CHARS - 1) :]}"
    return f" · idx {int(row['real_index'])}" if pd.notna(row["real_index"]) else ""


def _trajectories(view: data.UnitView) -> None:
    st.subheader("Trajectories")
    if view.steps.empty:
        st.caption("No trajectory rows for this unit.")
        return
    steps = data.until_stopped(view.steps, view.chains)
    if len(steps) < len(view.steps):
        st.caption("A chain's line ends at the step it stopped on (`sampler.stop_at`): its picture stays.")
    c1, c2 = st.columns(2)
    for i, metric in enumerate(data.TRAJECTORY_METRICS):
        with c1 if i % 2 == 0 else c2:
            if metric in view.metrics:
                st.altair_chart(widgets.trajectory_chart(steps, metric, TITLES[metric]), width="stretch")
            else:
                st.caption(f"{TITLES[metric]}: not recorded")


def _chain_caption(rec: dict) -> str:
    seed = rec.get("seed") if rec.get("seed") is not None else "–"
    stopped = rec.get("stopped_step")
    stop = (
        f"**stopped at step {int(stopped)}**: its unit reached `sampler.stop_at` × its top natural "
        "activation, and the picture stays from there\n\n"
        if stopped is not None and pd.notna(stopped)
        else ""
    )
    return (
        f"{rec.get('method') or '–'} · facet {widgets.fmt(rec.get('facet'))}\n\n"
        f"start {rec.get('start') or '–'} · seed {seed}\n\n"
        f"final act {widgets.fmt(rec.get('final_activation'))} · "
        f"best {widgets.fmt(rec.get('best_activation'))} @ step {widgets.fmt(rec.get('best_step'))}\n\n"
        + stop
        + f"{widgets.fmt(rec.get('seconds'))} s (its share of the batch's time)"
        + _passes_text(rec)
    )


def _near_start_note(chains: pd.DataFrame, sampler: dict) -> str | None:
    """What the unit's pictures are when its median chain found its best one early (within
    :data:`viewer.data.EARLY_BEST` of its steps): close to their starts, not found by the climb (the
    overview says it per layer; a trial read the demo's fc8 pictures as synthesized)."""
    if chains.empty or "best_step" not in chains or "steps" not in chains:
        return None
    best, steps = chains["best_step"].median(), chains["steps"].max()
    if not data.found_early(best, steps):
        return None
    stopped = int(chains["stopped_step"].notna().sum()) if "stopped_step" in chains else 0
    by_stop = f" ({stopped} of {len(chains)} stopped by `sampler.stop_at`)" if stopped else ""
    seeded = sampler.get("start") in ("facet_seeded", "real")
    start = (
        " (`facet_seeded` / `real`: the generator's drawings of the unit's top real images)" if seeded else ""
    )
    return (
        f"**Near their starts:** {'its chain' if len(chains) == 1 else 'half of its chains'} found "
        "their best pictures by step "
        f"{math.ceil(best)} of {int(steps)}{by_stop}, so its pictures stay close to where the chains "
        f"started{start}, rather than being found by the climb. `sampler.stop_at: 0` lets them climb on "
        "(docs/sampling.md, Starts)."
    )


def _passes_text(rec: dict) -> str:
    """The chain's forward-pass budget, and for a chain ``stop_at`` stopped, what it had spent by then (a
    trial read "300 forward passes" on every chain, one stopped at step 0 too)."""
    passes, steps, stopped = rec.get("passes"), rec.get("steps"), rec.get("stopped_step")
    if passes is None or pd.isna(passes):
        return ""
    text = f" · {widgets.fmt(passes)} forward passes"
    if stopped is not None and pd.notna(stopped) and steps is not None and pd.notna(steps) and steps > 0:
        spent = round(float(passes) * float(stopped) / float(steps))
        text = f" · {widgets.fmt(spent)} of its {widgets.fmt(passes)} forward passes spent when it stopped"
    return text


# the best, then the way there in step order, then the end
KIND_ORDER = {"best": 0, "best = last": 0, "snapshot": 1, "last": 2}


def _without_repeats(kept: pd.DataFrame, stopped: float | None = None) -> pd.DataFrame:
    """A chain's kept pictures, best first, then its snapshots in step order, then its last picture; less
    a snapshot of its last step (the last picture itself) and the snapshots from the step the chain
    stopped on (``stopped``: its ``stopped_step``; its picture is frozen there, so they are all its last
    picture). A best picture that is the last one (the same step, or a stopped chain's best at the step it
    stopped on) is shown once, as ``best = last``, with the badges and flags of both."""
    frozen = stopped is not None and pd.notna(stopped)
    if frozen:
        kept = kept[~((kept["kind"] == "snapshot") & (kept["step"] >= int(stopped)))]
    last_steps = set(kept.loc[kept["kind"] == "last", "step"])
    if frozen and last_steps:
        last_steps.add(int(stopped))
    if last_steps:  # the last picture itself (before a best = last merge takes the "last" row away)
        kept = kept[~((kept["kind"] == "snapshot") & kept["step"].isin(last_steps))]
    is_best = kept["kind"] == "best"
    if last_steps and (is_best & kept["step"].isin(last_steps)).any():
        kept = _best_is_last(kept)
    order = kept["kind"].map(KIND_ORDER).fillna(0)
    return kept.assign(_order=order).sort_values(["_order", "step"], kind="stable").drop(columns="_order")


def _best_is_last(kept: pd.DataFrame) -> pd.DataFrame:
    """The chain's best and last rows as one ``best = last`` row: the last's badge (it carries the path
    percentile) else the best's, and the flags of both (each was checked apart)."""
    best = kept.index[kept["kind"] == "best"][0]
    last_rows = kept[kept["kind"] == "last"]
    merged = kept.loc[best].copy()
    merged["kind"] = "best = last"
    if "flags" in kept:
        flags = [*(merged["flags"] or []), *(f for fl in last_rows["flags"] for f in (fl or []))]
        merged["flags"] = list(dict.fromkeys(flags))
    if "badge" in kept and len(last_rows) and last_rows["badge"].iloc[0] is not None:
        merged["badge"] = last_rows["badge"].iloc[0]
    rest = kept[~kept["kind"].isin(["best", "last"])]
    return pd.concat([merged.to_frame().T, rest]).astype({"step": kept["step"].dtype}, errors="ignore")


def _kept_items(kept: pd.DataFrame, stopped: float | None = None) -> list[tuple[bytes | None, str]]:
    """(picture, caption) per kept picture; a stopped chain's last picture says from which step it stands."""
    fmt = widgets.fmt
    frozen = stopped is not None and pd.notna(stopped)

    def step(r: dict) -> str:
        if frozen and r["kind"] == "last" and pd.notna(r["step"]) and r["step"] > stopped:
            return f"step {int(stopped)} (frozen)"
        return f"step {fmt(r['step'])}"

    return [(r["png"], f"{r['kind']} · {step(r)} · {fmt(r['activation'])}") for r in kept.to_dict("records")]


def _chains(view: data.UnitView) -> None:
    """A card per chain. Chains of one or two pictures each (a best = last picture) share a row two by two,
    their text above their pictures (two a card: ~210 px at 1440 px with the sidebar open); longer chains
    get a row each, their text beside their pictures (:func:`chain_columns`)."""
    st.subheader("Chains")
    cards = []
    for rec in view.chains.to_dict("records"):
        kept = view.chain_images.get(int(rec["chain"]))
        kept = None if kept is None else _without_repeats(kept, rec.get("stopped_step"))
        cards.append((rec, kept, [] if kept is None else _kept_items(kept, rec.get("stopped_step"))))
    pair = max((len(items) for _, _, items in cards), default=0) <= SHORT_CHAIN
    per_row = 2 if pair else 1
    silent = view.row is not None and data.is_silent(view.row)
    for start in range(0, len(cards), per_row):
        for col, card in zip(st.columns(per_row), cards[start : start + per_row], strict=False):
            with col:
                _chain_card(*card, beside=not pair, silent=silent)


SHORT_CHAIN = 2  # chains of at most this many pictures are drawn two cards a row


def _chain_card(rec: dict, kept: pd.DataFrame | None, items: list, beside: bool, silent: bool) -> None:
    with st.container(border=True):
        head, body = st.columns([1.3, 6]) if beside else (st.container(), st.container())
        with head:
            st.markdown(f"<b class='atlas-chain-head'>chain {int(rec['chain'])}</b>", unsafe_allow_html=True)
            if rec.get("diverged"):
                st.badge("diverged", color="red", icon=":material/warning:")
            st.caption(_chain_caption(rec))
        with body:
            if kept is None:
                st.caption("no images kept")
                return
            columns = chain_columns(len(items)) if beside else SHORT_CHAIN
            widgets.tiles(items, columns=columns, badges=_badges(kept, silent))


def chain_columns(pictures: int) -> int:
    """Columns of a chain card's pictures beside its text: one a picture, at least 4 (~180 px at 1440 px
    with the sidebar open, not an 80 px stamp beside an empty card) and at most 8 (more wrap)."""
    return min(max(pictures, 4), 8)


def _competitors(view: data.UnitView, ids: list[int], running: bool) -> None:
    """The units that competed with this one; those this atlas holds (``ids``: the layer's units here;
    ``running``: more may land) can be opened (a user's trial: a competitor the run never sampled opened an
    unrelated unit)."""
    st.subheader("Competing units")
    comp = view.competitors
    if comp.empty:
        st.caption("No competitor statistics recorded.")
        return
    c1, c2 = st.columns([3, 2])
    with c1:
        rows = comp.assign(competitor=comp["competitor"].astype(str))
        chart = (
            alt.Chart(rows, height=max(120, 26 * len(rows) + 50))  # tall enough for every unit's own label
            .mark_bar()
            .encode(
                x=alt.X(
                    "times_top_competitor:Q",
                    title="recorded steps as top competitor",
                    axis=alt.Axis(tickMinStep=1, format="d"),
                ),
                y=alt.Y("competitor:N", sort="-x", title="unit"),
                tooltip=["competitor", "times_top_competitor", "in_final_top", "mean_final_activation"],
            )
        )
        st.altair_chart(chart, width="stretch")
    with c2:
        finals = view.chains["final_activation"] if "final_activation" in view.chains else pd.Series()
        own = pd.to_numeric(finals, errors="coerce").mean()
        if pd.notna(own):  # what the competitors' activations compare with
            st.caption(f"unit {view.unit} itself: mean final activation **{widgets.fmt(own)}**")
        held = set(ids)
        shown = comp.assign(in_atlas=[int(u) in held for u in comp["competitor"]])
        if comp["in_final_top"].nunique() == 1 and len(comp) > 1:  # e.g. every unit of a 10-unit layer
            shown = shown.drop(columns=["in_final_top"])  # is in every chain's top-k: it says nothing
        st.dataframe(shown, hide_index=True, column_config={
            "competitor": "unit", "times_top_competitor": "top competitor (steps)",
            "in_final_top": st.column_config.NumberColumn(
                "in final top-k", help="how many of the unit's chains have it among their final top units"),
            "mean_final_activation": st.column_config.NumberColumn("mean act.", format="%.3f"),
            "in_atlas": st.column_config.CheckboxColumn(
                "in this atlas", help="whether this run sampled the unit: only those have a page to open"),
        })  # fmt: skip
        options = [int(u) for u in comp["competitor"] if int(u) in held]
        if not options:
            yet = "yet " if running else ""
            st.caption(
                f"None of them is in this atlas {yet}(its units of {view.layer}: {data.compact_units(ids)}): "
                "they have no page to open."
            )
            return
        pick = st.selectbox("Open a competitor", options, key=f"comp_pick_{view.layer}_{view.unit}",
                            help="the competitors this run sampled")  # fmt: skip
        st.button(f"Open unit {pick}", icon=":material/arrow_forward:", on_click=state.go,
                  kwargs={"unit": int(pick)}, key="comp_open")  # fmt: skip


def _failure_notes(ctx: Context, view: data.UnitView) -> None:
    """A failed unit's error, and pictures whose file's bytes are damaged (the rest of the page draws)."""
    run = ctx.run_dir.uri
    if view.row.get("status") not in (None, "ok"):
        st.error(
            f"This unit failed: `{view.row.get('error') or view.row.get('status')}`. It has no pictures; "
            f"{data.redo_hint(run)}.",
            icon=":material/error:",
        )
    if view.unreadable:
        st.error(
            f"This unit's pictures cannot be read: a shard file is damaged ({view.unreadable}). "
            f"`atlas verify --deep {run}` names it; `atlas verify --deep --repair {run}` has it redone by "
            "the next `atlas run`.",
            icon=":material/broken_image:",
        )


def render(ctx: Context) -> None:
    layer = state.get("layer")
    ids = ctx.ids(layer)
    if not ids:
        st.info(f"Layer {layer} has no units yet.")
        return
    asked = state.get("unit")
    picked = state.layer_just_picked()  # another layer chosen in the sidebar: its first unit, no warning
    if asked is None or (picked and int(asked) not in ids):
        state.set_("unit", ids[0])
    elif int(asked) not in ids and ctx.info.get("status") != "running":  # a link to a unit not in the layer
        nearest = min(ids, key=lambda u: (abs(u - int(asked)), u))  # "+" past the last: the last, not 0
        why = data.missing_units(ctx.manifest, ctx.conn.damage, layer, [int(asked)], ids)
        where = why[0] if why else data.absent_unit_text(ctx.manifest, layer, int(asked), ids)
        st.warning(f"{where}; showing unit {nearest}.")
        state.set_("unit", nearest)
    top = st.columns([3, 1])
    with top[1]:
        unit = _unit_input(ids)
    view = data.unit_view(ctx.conn, layer, unit, ids)
    with top[0]:
        _title(view, ctx.conn)
    steps = _grid_steps(ctx, layer, unit)
    _nav(ctx, view, "top", steps)
    if steps:
        st.caption(steps[2].capitalize() + ": previous and next follow it.")
    if view.row is None:
        why = data.missing_units(ctx.manifest, ctx.conn.damage, layer, [unit], ids)
        yet = " (yet)" if ctx.info.get("status") == "running" else ""  # a run that records no plan
        where = why[0] if why else f"Unit {unit} is not in layer {layer}{yet}"
        st.warning(f"{where}. Units present: {data.compact_units(ids)}.")
        return
    _failure_notes(ctx, view)
    _metrics(view.row)
    near = _near_start_note(view.chains, (ctx.info.get("config") or {}).get("sampler") or {})
    if near:
        st.info(near, icon=":material/history:")
    if data.is_silent(view.row):
        st.info(
            f"**Silent unit:** no natural image activates it (its highest value on them is "
            f"{widgets.fmt(view.row.get('real_top1_activation'))} <= 0; the ReLU after it keeps it at 0). "
            "Its pictures' natural percentiles (p100) only say they beat values that are all <= 0, and it "
            "gets no concept label.",
            icon=":material/do_not_disturb_on:",
        )
    place = data.unit_place(view.row, layer, ctx.manifest)  # the frame without a concept label too
    if (view.label is not None and view.label.cell is not None) or place is not None:
        st.session_state.setdefault("unit_outline_cell", True)  # on; kept across pages (state.KEPT_WIDGETS)
        outline = st.toggle(
            "Frame the unit's place on its pictures", key="unit_outline_cell",
            help="a conv unit reads one position of its map: the block of the picture it stands for",
        )  # fmt: skip
        view = data.with_outlined_cell(view, place) if outline else view
    _facets(view, ctx.info.get("facet_layer"))  # the pictures first: what a user opened the page for
    _concept(view)
    _real(view)
    _trajectories(view)
    _chains(view)
    _competitors(view, ids, ctx.info.get("status") == "running")
    with st.expander("Chain table", icon=":material/table:"):
        table, columns = widgets.chain_table(view.chains)
        st.dataframe(table, hide_index=True, column_config=columns)
    _nav(ctx, view, "bottom", steps)
