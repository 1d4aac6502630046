"""Objective algebra benchmark (issue 17 item 2): two-unit objectives, contrasts and the diversity term.

Usage::

    atlas bench objectives [--config configs/demo.yaml] [--methods dgn_am,ppgn_h] [--json P]

On the config's output layer (toy world; the judge J reads the pictures), every chain from the common start
of ``bench quality`` (mean code + COMMON_START_NOISE) and running every step (``stop_at`` off: chains that
stop at the natural maximum leave the diversity term no steps to act):

- **pairs** ``a + b`` (five disjoint pairs of output units): the share of last pictures in which J's two most
  probable classes (probability summed over facets) are exactly a and b — "the judge recognizes both"; and
  the same share on *natural* two-object pictures of each pair (``toyworld.composites``; report
  ``natural_pairs``): the judge's own ceiling — the world's own two-object images in the ``pairs`` preset,
  pasted composites in the one-object worlds; and the target's own reading of the same last pictures
  (``target_share``: T's two highest units of the layer are a and b), what the chains actually optimized —
  high for T and low for J means pictures that please T without showing both classes;
- **pairs from the config's own start** (``pairs_own_start``): the same pairs with the config's
  ``sampler.start`` and ``stop_at`` (``facet_seeded``: the codes of each pair's top real images, which a
  ``log_softmax`` pair ranks by log p(a) + log p(b): natural pictures of both): what an atlas run draws.
  A method that chooses its own start (``OWN_START_METHODS``) differs there by ``stop_at`` alone: without
  one, its share is None (the same run again, not measured twice);
- **contrasts** ``a - b``: the share whose most probable class is a and whose second is not b (by J, and
  by T in ``target_share``);
- **diversity** ``sampler.diversity`` in DIVERSITY_WEIGHTS, plain units: each unit's chain diversity (mean
  pairwise RMS pixel distance between its last pictures, as ``bench quality``) and recognizability (J's
  class = the unit's).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from atlas.bench.diversity import picture_diversity
from atlas.bench.quality import COMMON_START_NOISE
from atlas.config import OWN_STARTS, RunConfig, replace
from atlas.sampling.objectives import parse_composite
from atlas.sampling.peers import passes_per_image
from atlas.sampling.results import UnitResult

DIVERSITY_WEIGHTS = (0.0, 30.0, 300.0)  # the term is a cosine (<= 1) against raw activations (~10)
PAIRS = ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9))
NATURAL_PAIRS_READABLE = 0.9  # J reads natural pairs as both at least this often: a world fit to judge pairs


def _common_start(cfg: RunConfig, method: str, **sampler: Any) -> RunConfig:
    s = replace(
        cfg.sampler, method=method, start="mean", start_noise=COMMON_START_NOISE, stop_at=0.0, **sampler
    )
    return replace(cfg, sampler=s)


def _kept_chains(results: list[UnitResult]) -> list[Any]:
    """The non-diverged chains of the units that ran, in order: whose last pictures the bench judges."""
    return [c for u in results if u.status == "ok" for c in u.chains if not c.diverged]


def _pictures(results: list[UnitResult]) -> list[np.ndarray]:
    return [c.last.image for c in _kept_chains(results)]


def run_objectives(
    cfg: RunConfig, methods: list[str] | None = None, log: Callable[[str], None] = print, seeds: int = 1
) -> dict[str, Any]:
    """{"methods": {method: {"pairs", "contrasts", "diversity": {weight: {...}}}}}. ``seeds``: pairs,
    contrasts and the own-start pairs over the config's seed and the next ``seeds - 1`` (the diversity
    rows at the config's seed alone)."""
    from atlas.bench.product import build_engine
    from atlas.toyworld.judging import Judge

    for method in methods or ["dgn_am", "ppgn_h"]:  # every method's config is valid before any work
        _common_start(cfg, method)
    report: dict[str, Any] = {"pairs": [list(p) for p in PAIRS], "start": cfg.sampler.start, "methods": {}}
    run_seeds = list(range(cfg.seed, cfg.seed + seeds))
    report["seeds"] = run_seeds
    if cfg.sampler.pair_start != "start":
        report["pair_start"] = cfg.sampler.pair_start
    if cfg.models.ensemble:  # models.ensemble: the output units climb the mean of these and the target
        report["ensemble"] = [m.spec for m in cfg.models.ensemble]
    output = next((layer for layer in cfg.layers if layer.kind in ("auto", "output")), cfg.layers[0])
    for method in methods or ["dgn_am", "ppgn_h"]:
        engine, bundle, device = build_engine(_common_start(cfg, method))
        if bundle.judge is None:
            raise ValueError("bench objectives needs the toy world's judge (a toyworld: target)")
        judge = Judge(bundle.judge, device)
        kind, n, _ = engine.layer_info(output.name, output.kind)
        if "natural_pairs" not in report:  # the judge's ceiling, once: the same judge for every method
            report["natural_pairs"] = natural_pair_share(judge, cfg.toyworld.preset, n)
            log(f"natural two-object pictures judged both: {report['natural_pairs']['share']:.2f}")
        m: dict[str, Any] = {
            "start": OWN_STARTS.get(method, "common"),
            "steps": cfg.sampler.steps,  # the budget behind each share (a trial found it in the command only)
            "passes_per_image": passes_per_image(_common_start(cfg, method).sampler),
        }
        t0 = time.perf_counter()
        m["pairs"] = _pair_share(engine, judge, output.name, n, run_seeds, "+")
        m["contrasts"] = _pair_share(engine, judge, output.name, n, run_seeds, "-")
        m["pair_seconds"] = time.perf_counter() - t0
        if method in OWN_STARTS and not cfg.sampler.stop_at:  # neither its start nor its stop differs:
            m["pairs_own_start"] = {"share": None, "start": OWN_STARTS[method]}  # the same run (a trial)
        else:  # a method of its own start differs by the config's stop_at alone
            own_engine, _, _ = build_engine(replace(cfg, sampler=replace(cfg.sampler, method=method)))
            own = OWN_STARTS.get(method, cfg.sampler.start)
            if method not in OWN_STARTS and cfg.sampler.pair_start == "composed":  # its units from that start
                own = f"composed ({own} units)"
            m["pairs_own_start"] = _pair_share(own_engine, judge, output.name, n, run_seeds, "+") | {
                "start": own,
                "stop_at": cfg.sampler.stop_at,
            }
        m["diversity"] = {}
        for weight in DIVERSITY_WEIGHTS:
            w_cfg = _common_start(cfg, method, diversity=weight)
            w_engine, _, _ = build_engine(w_cfg)
            t0 = time.perf_counter()
            results = w_engine.map_units(output.name, list(range(n)), seed=cfg.seed, kind=output.kind)
            m["diversity"][str(weight)] = _diversity_row(results, judge) | {
                "seconds": time.perf_counter() - t0
            }
            log(f"{method} diversity {weight:g}: " + _diversity_line(m["diversity"][str(weight)]))
        own = m["pairs_own_start"]["share"]
        own_text = f" ({cfg.sampler.start} start: {own:.2f})" if own is not None else ""
        log(
            f"{method}: pairs judged both {m['pairs']['share']:.2f}{own_text}, "
            f"contrasts {m['contrasts']['share']:.2f}"
        )
        report["methods"][method] = m
    return report


def _pair_share(
    engine: Any, judge: Any, layer: str, n: int, seeds: int | list[int], op: str, pairs: tuple = PAIRS
) -> dict[str, Any]:
    """Composite ``a op b`` for each pair: the share of pictures J (and T) reads as the pair (module doc),
    over the pictures of every seed in ``seeds``; with two or more, each seed's own share (``per_seed``)
    and the standard error of their mean (``se``): a chain's outcome hangs on tiny differences, so one
    seed's 20 pictures cannot tell 0.1 from noise."""
    composites = tuple(parse_composite(f"{a} {op} {b}", n) for a, b in pairs if max(a, b) < n)
    ids = [n + k for k in range(len(composites))]
    read = _both if op == "+" else _first_not_second
    ok_by_pair: dict[str, list[bool]] = {c.text: [] for c in composites}
    target_by_pair: dict[str, list[bool]] = {c.text: [] for c in composites}
    per_seed = []
    for seed in [seeds] if isinstance(seeds, int) else seeds:
        results = engine.map_units(layer, ids, seed=seed, composites=composites)
        seed_hits = []
        for comp, res in zip(composites, results, strict=True):
            images = _pictures([res])
            if not images:
                continue
            a, b = comp.terms[0][0], comp.terms[1][0]
            ok = read(judge.class_probs(np.stack(images)), a, b)  # J: (K, classes) probabilities
            ok_by_pair[comp.text] += ok
            target_by_pair[comp.text] += read(_last_layer_values([res]), a, b)  # T's own layer, same pictures
            seed_hits += ok
        per_seed.append(sum(seed_hits) / len(seed_hits) if seed_hits else math.nan)
    hits = [ok for oks in ok_by_pair.values() for ok in oks]
    target_hits = [ok for oks in target_by_pair.values() for ok in oks]
    report = {
        "share": sum(hits) / len(hits) if hits else math.nan,
        "target_share": sum(target_hits) / len(target_hits) if target_hits else math.nan,
        "pictures": len(hits),
        "per_pair": {text: sum(oks) / len(oks) for text, oks in ok_by_pair.items() if oks},
        "target_per_pair": {text: sum(oks) / len(oks) for text, oks in target_by_pair.items() if oks},
    }
    if len(per_seed) > 1:
        report["per_seed"] = per_seed
        measured = [share for share in per_seed if math.isfinite(share)]  # a seed without pictures: none
        if len(measured) > 1:
            report["se"] = float(np.std(measured, ddof=1) / math.sqrt(len(measured)))
    return report


def _last_layer_values(results: list[UnitResult]) -> torch.Tensor:
    """(K, U) the target's whole layer on each last picture, in ``_pictures`` order: what the chains
    optimized, so "T reads both" against "J reads both" separates a chain that missed its objective from a
    picture that pleases T without looking like the classes (Nguyen et al. 2015's fooling images)."""
    return torch.stack([c.final_activations.float() for c in _kept_chains(results)])


def _both(probs: torch.Tensor, a: int, b: int) -> list[bool]:
    """probs (K, classes) (or any monotone scores, e.g. logits): is each picture's pair of most probable
    classes exactly {a, b}?"""
    return [set(t) == {a, b} for t in torch.topk(probs, 2, dim=1).indices.tolist()]


def _first_not_second(probs: torch.Tensor, a: int, b: int) -> list[bool]:
    """probs (K, classes): is each picture's most probable class a and its second not b?"""
    return [t[0] == a and t[1] != b for t in torch.topk(probs, 2, dim=1).indices.tolist()]


def natural_pair_share(judge: Any, preset: str, n_units: int, per_pair: int = 64) -> dict[str, Any]:
    """J's "both classes" share on natural two-object pictures of each pair (``natural_pair_pictures``)."""
    from atlas.toyworld.composites import natural_pair_pictures
    from atlas.toyworld.presets import get_preset

    data = get_preset(preset).data
    hits, total, shares = 0, 0, {}
    for a, b in PAIRS:
        if max(a, b) >= n_units:
            continue
        pictures = natural_pair_pictures(data, a, b, per_pair)
        ok = _both(judge.class_probs(pictures), a, b) if len(pictures) else []
        hits, total = hits + sum(ok), total + len(ok)
        shares[f"{a} + {b}"] = sum(ok) / len(ok) if ok else math.nan
    return {"share": hits / total if total else math.nan, "pictures": total, "per_pair": shares}


def _diversity_row(results: list[UnitResult], judge: Any) -> dict[str, float]:
    divs, hits, total = [], 0, 0
    for u in results:
        images = _pictures([u])
        if not images:
            continue
        divs.append(picture_diversity(images))
        classes, _ = judge(np.stack(images))
        hits, total = hits + int((classes == u.unit).sum()), total + len(images)
    return {
        "diversity": float(np.nanmean(divs)) if divs else math.nan,
        "recognizability": hits / total if total else math.nan,
        "pictures": total,
    }


def _diversity_line(row: dict[str, float]) -> str:
    return (
        f"chain diversity {row['diversity']:.3f}, recognizability {row['recognizability']:.2f}, "
        f"{row['seconds']:.1f} s"
    )


def _share_text(row: dict[str, Any]) -> str:
    """ "0.73" for one seed, "0.73+-0.03" (the standard error across seeds) for several."""
    return f"{row['share']:.2f}" + (f"+-{row['se']:.2f}" if "se" in row else "")


def _picture_counts(report: dict[str, Any]) -> str:
    """ "pairs 20, contrasts 20, own start 20, diversity 40" for the first method (all alike), "" for none."""
    for m in report["methods"].values():
        parts = {
            "pairs": m["pairs"].get("pictures"),
            "contrasts": m["contrasts"].get("pictures"),
            "own start": m["pairs_own_start"].get("pictures"),
            "diversity": next(iter(m["diversity"].values()), {}).get("pictures"),
        }
        return ", ".join(f"{k} {v}" for k, v in parts.items() if v is not None)
    return ""


PAIR_STARTS = {  # sampler.start -> where a pair's chains start from
    "facet_seeded": "the codes of the pair's top real images",
    "real": "the codes of the pair's top real images",
    "mean": "the mean code, plus sampler.start_noise",
    "random": "random codes",
}


def _start_text(report: dict[str, Any]) -> str:
    """The config's own start as the legend says it: ``facet_seeded: the codes of ...`` (a user's trial
    read facet_seeded there for a config of start: mean)."""
    start = report.get("start", "facet_seeded")
    said = f"{start}: {PAIR_STARTS[start]}" if start in PAIR_STARTS else str(start)
    if report.get("pair_start") == "composed":  # the pair's chains start from its units' pictures instead
        said = f"composed from the pair's two units' own pictures, each unit from {said}"
    return said


def format_table(report: dict[str, Any]) -> str:
    lines = [
        f"{'method':<13}{'pairs: both':>12}{'(T)':>6}{'own start':>11}{'contrasts':>11}{'(T)':>6}  "
        + "".join(f"{'div ' + w:>10}{'recog.':>8}" for w in map(str, DIVERSITY_WEIGHTS)),
        "-" * (59 + 18 * len(DIVERSITY_WEIGHTS)),
    ]
    for method, m in report["methods"].items():
        p, c, own = m["pairs"], m["contrasts"], m["pairs_own_start"]
        own_share = f"{_share_text(own):>11}" if own["share"] is not None else f"{'–':>11}"
        row = f"{method:<13}{_share_text(p):>12}{p['target_share']:>6.2f}{own_share}"
        row += f"{_share_text(c):>11}{c['target_share']:>6.2f}  "
        for w in map(str, DIVERSITY_WEIGHTS):
            d = m["diversity"][w]
            row += f"{d['diversity']:>10.3f}{d['recognizability']:>8.2f}"
        lines.append(row)
    for method, m in report["methods"].items():
        if m.get("start", "common") != "common":
            own = "its own start differs by the config's stop_at alone"
            if m["pairs_own_start"]["share"] is None:
                own = "own start: – (the same run: neither its start nor stop_at differs)"
            lines.append(f"{'':<13}{method} starts from {m['start']}, not from the common start; {own}")
    if "natural_pairs" in report:
        nat = report["natural_pairs"]
        lines.append(
            f"{'natural':<13}{nat['share']:>12.2f}  (J on {nat['pictures']} natural two-object pictures "
            "of the same pairs: how often J reads real pictures of both as both; a chain's pictures may read "
            "so more often)"
        )
        if nat["share"] < NATURAL_PAIRS_READABLE:  # a one-object world: its J cannot read two objects
            lines.append(
                f"{'':<13}(this world's judge reads few natural pairs as both: two-unit objectives are "
                "measured where it reads two objects, `--config configs/pairs-ensemble.yaml --seeds 15`; "
                'docs/sampling.md, "Composed pairs")'
            )
    lines += _run_notes(report)
    lines.append(
        "(output units, common start; pairs a + b: J's top two classes are a and b, (T): the target's own "
        "top two on the same pictures, what the chains optimized; own start: pairs judged both from the "
        f"config's own sampler.start and stop_at ({_start_text(report)}); "
        "contrasts a - b: J's top class is a, its second not b; div w: sampler.diversity = w, mean pairwise "
        "RMS distance of a unit's last pictures, and the share J reads as the unit's class)"
    )
    return "\n".join(lines)


def _run_notes(report: dict[str, Any]) -> list[str]:
    """The table's notes on what stands behind its shares: budget, ensemble, seeds, pair start, pictures."""
    lines = []
    budgets = {
        f"{m['steps']} steps, {m['passes_per_image']} forward passes"
        for m in report["methods"].values() if "steps" in m
    }  # fmt: skip
    if budgets:
        lines.append(f"(budget per picture: {'; '.join(sorted(budgets))})")
    if report.get("ensemble"):
        lines.append(
            f"(models.ensemble: the chains climbed the mean output layer of the target and "
            f"{', '.join(report['ensemble'])}; (T) is the target's own reading)"
        )
    seeds = report.get("seeds", [])
    if len(seeds) > 1:
        lines.append(
            f"(seeds {seeds[0]}-{seeds[-1]}: pairs, contrasts and own start pool the pictures of "
            f"{len(seeds)} seeds, +- the standard error of the seeds' own shares; diversity at the first "
            "seed)"
        )
    if report.get("pair_start") == "composed":
        lines.append(
            "(sampler.pair_start: composed: each pair's chains start from its two units' own pictures laid "
            "side by side, each unit first synthesized alone from the same start: a pair's picture costs "
            "its two units' chains too, and one forward pass for each of the 2K composites it is picked "
            "from)"
        )
    counts = _picture_counts(report)
    if counts:
        lines.append(f"(pictures behind each share: {counts}; one picture moves a share by 1 / that)")
    return lines
