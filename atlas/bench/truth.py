"""Truth benchmark: the truth columns of a config's atlas, per method, from common starts (issue 16 item 7).

Every method at the same forward-pass budget per picture (``method_sampler``; ``passes_per_image`` in
the report). Usage::

    atlas bench truth --config configs/demo.yaml [--methods dgn_am,ppgn_h,pixel] [--max-units 16] [--json P]

For each method the config's atlas is built in-process as the workers build it (``bench.product``), every
chain from the common start of ``bench quality`` (``sampler.start: mean`` with ``start_noise``
COMMON_START_NOISE: the mean code, or the mean image for pixel methods, plus a little noise; never from the
unit's own top real images), and the truth columns are summarized per layer:

- ``labelled``: share of units with a concept label (AUROC >= 0.85), ``label_score``: median best AUROC;
- ``weak`` / ``off_path`` / ``off_manifold``: share of last pictures with each flag
  (``atlas.sampling.concepts.picture_flags``);
- ``percentile``, ``path_z``, ``manifold``: medians of the last pictures' natural percentile, path z and
  manifold percentile;
- ``seconds`` per layer, and ``truth_seconds``: the time the truth columns add to the config's atlas
  (the same engine with them switched off, per method, on the first layer: the median of alternating
  runs after a warm-up of each).

With the toy world's attribute reader (``atlas.toyworld.reading``; the worker's own rule for
``units.label_shown``), per layer:

- ``label_shown``: mean over the units with a label (AUROC >= 0.85, a "confident" label) of the share of
  their chains' last pictures that show it; ``label_shown_units``: how many units that is;
- ``reader_agreement``: mean over units of the agreement of their last pictures' decoded attributes;
  ``reader_seconds``: the reader's time on the layer (the worker spends the same per unit);

and for planted units (``configs/planted.yaml``): ``concept_shown`` / ``fooling_shown``, the share of the
concept (fooling) units' last pictures that show the unit's *planted* concept, and ``shown`` per concept unit.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from atlas.bench.quality import COMMON_START_NOISE, peer_methods, short_search_note
from atlas.config import RunConfig, SamplerConfig, replace
from atlas.sampling.concepts import FAITHFULNESS_FLAGS, picture_flags
from atlas.sampling.peers import passes_per_image
from atlas.sampling.results import UnitResult

DEFAULT_METHODS = ("dgn_am", "ppgn_h", "pixel")
FLAGS = ("weak", "off_path", "off_manifold")


def _median(values: list[float]) -> float:
    vals = [v for v in values if v == v]
    return float(np.median(vals)) if vals else math.nan


def truth_metrics(results: list[UnitResult]) -> dict[str, Any]:
    """Per-layer summary of the truth columns of ``results`` (see the module docstring)."""
    ok = [u for u in results if u.status == "ok"]
    labels = [u.label for u in ok if u.label is not None]
    lasts = [c.last for u in ok for c in u.chains if not c.diverged]
    flags = [
        (picture_flags(r.natural_percentile, r.path_percentile, r.manifold_percentile) or "").split(",")
        for r in lasts
    ]
    share = {f: (sum(f in fl for fl in flags) / len(flags) if flags else math.nan) for f in FLAGS}
    return {
        "units": len(ok),
        "labelled": (sum(lab.label is not None for lab in labels) / len(ok)) if ok else math.nan,
        "label_score": _median([lab.score for lab in labels]),
        "pictures": len(lasts),
        **share,
        "percentile": _median([r.natural_percentile for r in lasts]),
        "path_z": _median([r.path_z for r in lasts]),
        "manifold": _median([r.manifold_percentile for r in lasts]),
    }


def run_truth(
    cfg: RunConfig,
    methods: list[str] | None = None,
    max_units: int | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """{"methods": {method: {"layers": {layer: metrics}, "truth_seconds", "plain_seconds"}}, "max_units"}."""
    report: dict[str, Any] = {"max_units": max_units, "methods": {}}
    # every method's config is valid (e.g. ppgn_h has its DAE) before the first one runs
    configs = {m: replace(cfg, sampler=method_sampler(cfg.sampler, m)) for m in methods or DEFAULT_METHODS}
    for method, m_cfg in configs.items():
        report["methods"][method] = _run_method(m_cfg, max_units, log)
        report["methods"][method]["passes_per_image"] = passes_per_image(m_cfg.sampler)
    report["note"] = short_search_note(
        cfg.sampler, {m: c.sampler for m, c in configs.items()}, "--set sampler.steps="
    )
    return report


def method_sampler(base: SamplerConfig, method: str) -> SamplerConfig:
    """``base`` for ``method`` from the common start, at the gradient methods' forward-pass budget (the
    peers as ``bench quality`` runs them: GA and CMA-ES get ``3 x steps / population`` generations; Fourier
    and MACO start from their own random spectrum, accentuation from the unit's real images by definition)."""
    common = replace(base, method=method, start="mean", start_noise=COMMON_START_NOISE)
    peers = peer_methods(common)
    return peers.get(method, common)


def _run_method(cfg: RunConfig, max_units: int | None, log: Callable[[str], None]) -> dict[str, Any]:
    from atlas.bench.product import build_engine, map_layer, note_composites_left_out

    engine, bundle, device = build_engine(cfg)
    reader = _reader(bundle, device)
    out: dict[str, Any] = {"layers": {}}
    planted = engine.target.extras.get("planted")
    for layer in cfg.layers:
        kind, _units, results, seconds = map_layer(engine, cfg, layer, max_units)
        m = truth_metrics(results) | reader_metrics(results, reader) | {"kind": kind, "seconds": seconds}
        if planted and layer.name == "planted":
            m["planted"] = planted_metrics(results, planted, engine.target.module)
            m["planted"] |= planted_shown(results, planted, reader)
            log(f"{cfg.sampler.method} planted: " + _planted_line(m["planted"]))
        out["layers"][layer.name] = m
        log(f"{cfg.sampler.method} {layer.name}: {m['units']} units in {seconds:.1f} s; " + _line(m))
        note_composites_left_out(layer, m, log)
    out["plain_seconds"], out["truth_seconds"] = _overhead(cfg, max_units)
    return out


def planted_metrics(results: list[UnitResult], planted: list[dict], module: Any) -> dict[str, Any]:
    """Truth checked against construction (atlas/toyworld/planted.py): concept units' labels, silent units
    without one, and for fooling units which last pictures use the hidden path (the trap fires on them:
    unfaithful by construction) and whether the flags catch them; concept units' pictures never use it."""
    import torch

    by_unit = {u.unit: u for u in results if u.status == "ok"}
    concept = [p for p in planted if p["kind"] == "concept" and p["unit"] in by_unit]
    recovered = [p["concept"] for p in concept if _label(by_unit[p["unit"]]) == p["concept"]]
    silent = [p for p in planted if p["kind"] == "silent" and p["unit"] in by_unit]
    unfaithful, caught, ordinary, false_flags = 0, 0, 0, 0
    for p in planted:
        u = by_unit.get(p["unit"])
        if u is None or p["kind"] == "silent":
            continue
        for c in u.chains:
            x = torch.from_numpy(c.last.image).permute(2, 0, 1)[None].float() / 255
            with torch.no_grad():
                trap = float(module.checkerboard(module.encode(x))) > module.tau
            flags = picture_flags(
                c.last.natural_percentile, c.last.path_percentile, c.last.manifold_percentile
            )
            flagged = any(f in FAITHFULNESS_FLAGS for f in (flags or "").split(","))
            if p["kind"] == "fooling" and trap:
                unfaithful, caught = unfaithful + 1, caught + flagged
            elif p["kind"] == "concept":
                ordinary, false_flags = ordinary + 1, false_flags + flagged
    return {
        "concepts": len(concept),
        "recovered": recovered,
        "silent_without_label": sum(_label(by_unit[p["unit"]]) is None for p in silent),
        "silent": len(silent),
        "unfaithful_pictures": unfaithful,
        "unfaithful_flagged": caught / unfaithful if unfaithful else math.nan,
        "ordinary_pictures": ordinary,
        "ordinary_flagged": false_flags / ordinary if ordinary else math.nan,
    }


def _label(u: UnitResult) -> str | None:
    return u.label.label if u.label is not None else None


def _planted_line(p: dict[str, Any]) -> str:
    return (
        f"concept labels recovered {len(p['recovered'])}/{p['concepts']}, silent without label "
        f"{p['silent_without_label']}/{p['silent']}, unfaithful pictures flagged "
        f"{p['unfaithful_flagged']:.2f} (of {p['unfaithful_pictures']}), ordinary pictures flagged "
        f"{p['ordinary_flagged']:.2f} "
        f"(of {p['ordinary_pictures']})"
    )


OVERHEAD_ROUNDS = 3  # alternating rounds of (off, on) after a warm-up of each: the median of each


def _overhead(cfg: RunConfig, max_units: int | None) -> tuple[float, float]:
    """(seconds without, with the truth columns) for the first layer: an engine of each, each warmed up by
    one untimed pass (a first pass pays one-time costs, the truth engine's real features among them: one
    cold run each had made the columns look -87 %), then :data:`OVERHEAD_ROUNDS` alternating timed passes
    each, so other work on the cores weighs on both; the median of each."""
    from atlas.bench.product import build_engine, map_layer

    engines = {truth: build_engine(cfg, truth=truth)[0] for truth in (False, True)}
    timings: dict[bool, list[float]] = {False: [], True: []}
    for engine in engines.values():  # the warm-ups, untimed
        map_layer(engine, cfg, cfg.layers[0], max_units)
    for _ in range(OVERHEAD_ROUNDS):
        for truth in (False, True):
            t0 = time.perf_counter()
            map_layer(engines[truth], cfg, cfg.layers[0], max_units)
            timings[truth].append(time.perf_counter() - t0)
    return statistics.median(timings[False]), statistics.median(timings[True])


def _line(m: dict[str, Any]) -> str:
    return (
        f"labelled {m['labelled']:.2f} (median AUROC {m['label_score']:.3f}), weak {m['weak']:.2f}, "
        f"off_path {m['off_path']:.2f}, off_manifold {m['off_manifold']:.2f}, median percentile "
        f"{m['percentile']:.3f}, path z {m['path_z']:.2f}, manifold {m['manifold']:.2f}"
    )


def format_table(report: dict[str, Any]) -> str:
    w = max(8, *(len(m) + 1 for m in report["methods"]))  # "accentuation" is wider than the others
    head = (
        f"{'method':<{w}}{'layer':<8}{'kind':<7}{'units':>6}{'labelled':>9}{'AUROC':>7}{'weak':>6}"
        f"{'off_path':>9}{'off_man.':>9}{'pct':>7}{'path z':>8}{'manif.':>8}{'s':>7}"
    )
    lines = [head, "-" * len(head)]
    for method, r in report["methods"].items():
        for layer, m in r["layers"].items():
            lines.append(
                f"{method:<{w}}{layer:<8}{m['kind']:<7}{m['units']:>6}{m['labelled']:>9.2f}{m['label_score']:>7.3f}"
                f"{m['weak']:>6.2f}{m['off_path']:>9.2f}{m['off_manifold']:>9.2f}{m['percentile']:>7.3f}"
                f"{m['path_z']:>8.2f}{m['manifold']:>8.2f}{m['seconds']:>7.1f}"
            )
    lines.append(
        "forward passes per picture: "
        + ", ".join(f"{m} {r.get('passes_per_image', '?')}" for m, r in report["methods"].items())
    )
    if report.get("note"):
        lines.append(report["note"])
    for method, r in report["methods"].items():
        plain, truth = r["plain_seconds"], r["truth_seconds"]
        added = 100 * (truth / plain - 1)
        cost = (  # faster with them is the cores' noise: no measurable cost, not a gain (a trial read -61 %)
            f"add {added:+.1f} %" if added >= 0 else "add no measurable cost (the runs with them were faster)"
        )
        lines.append(
            f"{method}: truth columns {cost} on the first layer "
            f"({plain:.1f} s -> {truth:.1f} s; median of {OVERHEAD_ROUNDS} alternating runs each after "
            "warm-ups; other jobs may share the cores)"
        )
    for method, r in report["methods"].items():
        p = r["layers"].get("planted", {}).get("planted")
        if p:
            lines.append(f"{method} planted: " + _planted_line(p))
    lines += _shown_lines(report)
    lines.append(
        "(last pictures; shares of pictures, medians; every chain from the common start: mean code + noise;"
        " pct: natural percentile, path z: lowest path z over the earlier layers, manif.: on-manifold "
        "percentile; s: seconds for the layer, its real images' first reading included)"
    )
    return "\n".join(lines)


# ---- the attribute reader: does the picture show the label? ---------------------------------------------
def _reader(bundle: Any, device: Any) -> Any:
    """The bundle's attribute reader on ``device`` (None: no reader, e.g. not a toy-world target)."""
    from atlas.toyworld.reading import Reader

    return Reader(bundle.reader, device) if getattr(bundle, "reader", None) is not None else None


def reader_metrics(results: list[UnitResult], reader: Any) -> dict[str, Any]:
    """label_shown (mean over units with a label), label_shown_units, reader_agreement (mean over units),
    reader_seconds (the reader's time on this layer, part of what the truth columns cost), and for conv
    units' place-bound labels label_shown_parts / label_shown_twins with their unit counts; NaN without a
    reader (see the module docstring)."""
    from atlas.sampling.concepts import place_kind
    from atlas.toyworld.reading import reader_verdict

    shown, agree = [], []
    by_place: dict[str, list[float]] = {"part": [], "twin": []}
    t0 = time.perf_counter()
    for u in results:
        if reader is None or u.status != "ok" or not u.chains:
            continue
        v = reader_verdict(reader, u.chains, _label(u), cell=u.label.cell if u.label is not None else None)
        agree.append(v.agreement)
        if v.label_shown is not None:
            shown.append(v.label_shown)
            kind = place_kind(_label(u))
            if kind is not None:
                by_place[kind].append(v.label_shown)
    out = {
        "label_shown": float(np.mean(shown)) if shown else math.nan,
        "label_shown_units": len(shown),
        "reader_agreement": float(np.mean(agree)) if agree else math.nan,
        "reader_seconds": time.perf_counter() - t0,
    }
    for kind, values in by_place.items():  # conv units' place-bound labels: parts, @here twins
        out[f"label_shown_{kind}s"] = float(np.mean(values)) if values else math.nan
        out[f"label_shown_{kind}_units"] = len(values)
    return out


def planted_shown(results: list[UnitResult], planted: list[dict], reader: Any) -> dict[str, Any]:
    """Planted units with a concept: the share of their last pictures that show the *planted* concept
    (``shown``: per concept unit; ``concept_shown`` / ``fooling_shown``: mean over concept / fooling units,
    every unit has the same number of chains); {} without a reader."""
    from atlas.toyworld.reading import reader_verdict

    if reader is None:
        return {}
    by_unit = {u.unit: u for u in results if u.status == "ok" and u.chains}
    out: dict[str, Any] = {"shown": {}}
    for kind in ("concept", "fooling"):
        values = []
        for p in planted:
            if p["kind"] == kind and p["unit"] in by_unit:
                v = reader_verdict(reader, by_unit[p["unit"]].chains, p["concept"]).label_shown
                values.append(v)
                if kind == "concept":
                    out["shown"][p["concept"]] = v
        out[f"{kind}_shown"] = float(np.mean(values)) if values else math.nan
    return out


def _place_text(m: dict[str, Any]) -> str:
    """ " [parts 0.98 of 24, @here 0.75 of 16]" for a layer with place-bound labels, else ""."""
    parts = [
        f"{name} {m[f'label_shown_{kind}s']:.2f} of {m[f'label_shown_{kind}_units']}"
        for kind, name in (("part", "parts"), ("twin", "@here"))
        if m.get(f"label_shown_{kind}_units")
    ]
    return f" [{', '.join(parts)}]" if parts else ""


def _shown_lines(report: dict[str, Any]) -> list[str]:
    """Label shown per method and layer, planted concepts shown; [] without a reader."""
    lines = []
    for method, r in report["methods"].items():
        parts = [
            f"{layer} ({m['kind']}) {m['label_shown']:.2f} of {m['label_shown_units']}" + _place_text(m)
            for layer, m in r["layers"].items()
            if m.get("label_shown_units")
        ]
        if parts:
            secs = sum(m.get("reader_seconds", 0.0) for m in r["layers"].values())
            lines.append(
                f"{method}: label shown (units with a label, last pictures): "
                + ", ".join(parts)
                + f" (reader {secs:.1f} s)"
            )
        p = r["layers"].get("planted", {}).get("planted", {})
        if "concept_shown" in p:
            each = ", ".join(f"{c} {v:.2f}" for c, v in p["shown"].items())
            lines.append(
                f"{method} planted: concept units' pictures show their concept {p['concept_shown']:.2f} "
                f"({each}); fooling units' {p['fooling_shown']:.2f}"
            )
    return lines
