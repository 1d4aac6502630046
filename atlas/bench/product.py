"""The product benchmark: what a run config's atlas shows, measured the way the atlas is built.

Usage::

    from atlas.bench.product import run_product, format_product
    cfg = load_config("configs/demo.yaml", ["compute.autocast=none"])
    report = run_product(cfg, max_units=None, out_dir="test-artifacts/quality/after")
    print(format_product(report))

or ``atlas bench quality --config configs/demo.yaml [--set compute.autocast=none] [--max-units N]``.

It runs the config's own sampler, starts, steps, chains, seed and layers through the worker's code path:
the bundle the driver builds (`atlas.pipeline.models_setup.build_bundle`), an `Engine` built with the same
arguments as `AtlasWorker`'s, `Engine.map_units` per shard (`plan_shards`, `ray.units_per_shard`) with the
run's seed, the worker's torch threads (`compute.threads`, else `ray.cpus_per_worker`), and for output units
the worker's own judge verdict (`AtlasWorker._judge_verdict`). Only the Parquet writing is left out.
``max_units`` (default: all) keeps a deterministic subset of each layer's selected units: ``max_units`` of
them evenly spaced over the selection (always its first unit).

Per layer, on each chain's **best** picture (the one the viewer shows) against the unit's real top-k images
(``facets.top_k_real``) — the colour rule is `atlas.bench.colour`:

- ``colour_presence``: mean over units of the share of its best pictures whose object colour occurs among the
  colours of its real top-k;
- ``over_representation``: per colour, its share among the layer's best pictures / its share among the
  layer's real top-k (pooled over units); ``max_ratio`` and which colour, over the colours that account for
  at least ``colour.MIN_COUNT`` pictures, observed or expected (``max_ratio_all``: over every colour);
- ``top_colour`` / ``top_colour_real``: the most frequent object colour and its share;
- ``activation_ratio``: mean over units of (mean best-picture activation / mean real top-k activation);
- ``diversity`` / ``diversity_real``: mean pairwise RMS pixel distance of a unit's best pictures / of its
  real top-k, mean over units.

Output units (toy-world targets, where the judge J exists), unit index = class:

- ``units_all_correct``: units whose every chain's best picture J judges to be the unit's class;
- ``chain_recognizability``: the per-chain rate of that (best pictures; ``..._last``: last pictures);
- ``worker_judge_correct``: units the worker's verdict marks correct (last pictures, majority);
- ``facets``: per multifaceted class, the facets (J's fine labels) shown by at least one best picture.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from atlas.bench import colour as col
from atlas.bench.diversity import picture_diversity
from atlas.bench.picture_grids import save_grid
from atlas.config import RunConfig
from atlas.sampling import Engine, UnitResult
from atlas.tables import counted

T = TypeVar("T")


def subset(units: list[T], max_units: int | None) -> list[T]:
    """A deterministic subset: ``max_units`` evenly spaced over ``units`` (all of them when None/larger)."""
    if max_units is None or max_units >= len(units):
        return list(units)
    if max_units <= 1:
        return units[:1]
    step = (len(units) - 1) / (max_units - 1)
    return [units[round(i * step)] for i in range(max_units)]


def _nanmean(x: list[float]) -> float:
    v = [float(a) for a in x if a is not None and math.isfinite(float(a))]
    return float(np.mean(v)) if v else float("nan")


def layer_metrics(results: list[UnitResult]) -> dict[str, Any]:
    """Colour truth, activation and diversity of one layer's units (best pictures vs real top-k)."""
    presence, ratio, div, rdiv = [], [], [], []
    pic_ids: list[int] = []
    real_ids: list[int] = []
    chains = 0
    for u in results:
        if u.status != "ok" or not u.chains:
            continue
        ok = [c for c in u.chains if not c.diverged] or u.chains
        best = [c.best.image for c in ok]
        chains += len(best)
        ids = col.object_colour(np.stack(best)).tolist()
        pic_ids += ids
        div.append(picture_diversity(best))
        if u.real_topk:
            rimgs = [im for _, _, im in u.real_topk]
            rids = col.object_colour(np.stack(rimgs)).tolist()
            real_ids += rids
            presence.append(col.colour_presence(ids, rids))
            rdiv.append(picture_diversity(rimgs))
            ref = float(np.mean([a for _, a, _ in u.real_topk]))
            if ref > 0:
                ratio.append(float(np.mean([c.best.activation for c in ok])) / ref)
    top, top_share = col.most_common(pic_ids)
    rtop, rtop_share = col.most_common(real_ids)
    return {
        "units": len(results),
        "chains": chains,
        "colour_presence": _nanmean(presence),
        "over_representation": col.over_representation(pic_ids, real_ids),
        "top_colour": top,
        "top_colour_share": top_share,
        "top_colour_real": rtop,
        "top_colour_real_share": rtop_share,
        "activation_ratio": _nanmean(ratio),
        "diversity": _nanmean(div),
        "diversity_real": _nanmean(rdiv),
    }


def output_metrics(results: list[UnitResult], judge: Any, device: torch.device) -> dict[str, Any]:
    """Judge J on output units (unit index = class): every chain's best picture, the worker's verdict."""
    from atlas.toyworld.judging import Judge, judge_verdict

    j = Judge(judge, device)
    f2c = j.fine_to_class.cpu().tolist()
    names = list(judge.extras.get("fine_names") or [str(i) for i in range(len(f2c))])
    class_names = list(judge.extras.get("class_names") or [])
    multi = sorted({f2c[f] for f in range(len(f2c)) if f2c.count(f2c[f]) > 1})
    all_ok, per_chain, per_chain_last, worker_ok = [], [], [], []
    wrong: dict[str, Any] = {}
    seen: dict[int, set[int]] = {c: set() for c in multi}
    for u in results:
        if u.status != "ok" or not u.chains:
            continue
        ok = [c for c in u.chains if not c.diverged] or u.chains
        coarse, fine = j(np.stack([c.best.image for c in ok]))
        coarse_last, _ = j(np.stack([c.last.image for c in ok]))
        hits = (coarse == u.unit).tolist()
        per_chain += hits
        per_chain_last += (coarse_last == u.unit).tolist()
        all_ok.append(all(hits))
        verdict = judge_verdict(j, u.chains, u.unit)  # the worker's own rule
        worker_ok.append(bool(verdict and verdict["judge_correct"]))
        if not all(hits):
            name = class_names[u.unit] if u.unit < len(class_names) else str(u.unit)
            wrong[name] = [names[int(f)] for f in fine]
        if u.unit in seen:
            seen[u.unit] |= {int(f) for f in fine if f2c[int(f)] == u.unit}
    facets = {
        (class_names[c] if c < len(class_names) else str(c)): {
            "recovered": sorted(names[f] for f in seen[c]),
            "total": sum(1 for f in range(len(f2c)) if f2c[f] == c),
        }
        for c in multi
        if any(u.unit == c for u in results)
    }
    return {
        "units": len(all_ok),
        "units_all_correct": int(sum(all_ok)),
        "chain_recognizability": _nanmean(per_chain),
        "chain_recognizability_last": _nanmean(per_chain_last),
        "worker_judge_correct": int(sum(worker_ok)),
        "wrong": wrong,
        "facets": facets,
        "facets_recovered": sum(len(v["recovered"]) for v in facets.values()),
        "facets_total": sum(v["total"] for v in facets.values()),
    }


def run_product(
    cfg: RunConfig,
    max_units: int | None = None,
    out_dir: str | Path | None = None,
    grid_units: int = 12,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Build the config's atlas in-process (no store) and measure it; see the module docstring."""
    from atlas.toyworld.loops import threads

    # the worker's torch threads (atlas.pipeline.cluster: compute.threads, else ray.cpus_per_worker)
    with threads(cfg.compute.threads or max(1, int(cfg.ray.cpus_per_worker))):
        return _run_product(cfg, max_units, out_dir, grid_units, log)


def _run_product(
    cfg: RunConfig,
    max_units: int | None,
    out_dir: str | Path | None,
    grid_units: int,
    log: Callable[[str], None],
) -> dict[str, Any]:
    engine, bundle, device = build_engine(cfg)
    precision = engine.setup.precision
    report: dict[str, Any] = {
        "precision": precision,
        "seed": cfg.seed,
        "threads": torch.get_num_threads(),
        "max_units": max_units,
        "sampler": cfg.sampler.to_dict(),
        "layers": {},
    }
    for layer in cfg.layers:
        kind, units, results, seconds = map_layer(engine, cfg, layer, max_units)
        m = layer_metrics(results)
        m["kind"] = kind
        m["seconds"] = seconds
        if kind == "output" and bundle.judge is not None:
            m["judge"] = output_metrics(results, bundle.judge.to(device), device)
        report["layers"][layer.name] = m
        log(f"{layer.name}: {len(units)} units in {seconds:.0f} s; " + _summary(m))
        note_composites_left_out(layer, m, log)
        if out_dir is not None:
            path = Path(out_dir) / f"{layer.name}-{precision}.png"
            save_grid(subset(results, grid_units), path, picture="best", n_real=6, gap_px=6, scale=3)
    return report


def build_engine(cfg: RunConfig, truth: bool = True) -> tuple[Engine, Any, torch.device]:
    """(engine, worker bundle, device): the Engine an AtlasWorker builds for ``cfg``, in this process
    (``truth=False``: without the truth columns, to time them)."""
    from atlas.pipeline.models_setup import build_bundle, make_engine
    from atlas.sampling.compute import resolve_device

    device = resolve_device(cfg.compute.device)
    bundle = build_bundle(cfg)
    engine = make_engine(cfg, bundle, device, truth=truth)  # as AtlasWorker makes it
    return engine, bundle, device


def map_layer(
    engine: Engine, cfg: RunConfig, layer: Any, max_units: int | None
) -> tuple[str, list[int], list[UnitResult], float]:
    """(kind, units, results, seconds) of one configured layer, shard by shard as the workers map it."""
    from atlas.pipeline.plan import plan_shards

    kind, n, _ = engine.layer_info(layer.name, layer.kind)
    units = subset(layer.units.resolve(n, layer=layer.name), max_units)
    t0 = time.perf_counter()
    results: list[UnitResult] = []
    for shard in plan_shards({layer.name: units}, cfg.ray.units_per_shard):
        results += engine.map_units(shard.layer, list(shard.units), seed=cfg.seed, kind=layer.kind)
    return kind, units, results, time.perf_counter() - t0


def note_composites_left_out(layer: Any, m: dict[str, Any], log: Callable[[str], None]) -> None:
    """Say that the benches measure a layer's own units and leave its composite objectives out (their
    pictures show several units: no one class or colour to check), and record how many in its metrics
    ``m`` (``composites_left_out``); nothing for a layer without any (a user's trial read a 7-unit selection
    measured as 3, unsaid)."""
    n = len(layer.composite_texts())
    if n:
        m["composites_left_out"] = n
        log(
            f"{layer.name}: its {counted(n, 'composite objective')} left out (these metrics are of the "
            "layer's own units; `atlas bench objectives` measures pairs and contrasts)"
        )


def _summary(m: dict[str, Any]) -> str:
    s = (
        f"colour presence {m['colour_presence']:.2f}, top colour {_top(m)}, "
        f"over-rep. {_over(m)}, act. ratio {m['activation_ratio']:.2f}, "
        f"diversity {m['diversity']:.3f} (real {m['diversity_real']:.3f})"
    )
    if "judge" in m:
        j = m["judge"]
        n = j["units"]
        s += (
            f"; judged correct in every chain {j['units_all_correct']}/{n}, per chain "
            f"{j['chain_recognizability']:.3f}, worker verdict {j['worker_judge_correct']}/{n}, "
            f"facets {j['facets_recovered']}/{j['facets_total']}"
        )
    return s


def _over(m: dict[str, Any]) -> str:
    """'1.85x red', or '-' when no colour has enough pictures to compare (a handful of units)."""
    o = m["over_representation"]
    return f"{o['max_ratio']:.2f}x {o['colour']}" if o["colour"] else "-"


def _top(m: dict[str, Any]) -> str:
    """'white 0.47 (white 0.39)': the pictures' most frequent colour and share (the real top-k's)."""
    real = f"{m['top_colour_real']} {m['top_colour_real_share']:.2f}"
    return f"{m['top_colour']} {m['top_colour_share']:.2f} ({real})"


def format_product(report: dict[str, Any]) -> str:
    """The report as a table per layer, then the judge's lines for output layers."""
    lines = [
        f"product benchmark ({report['precision']}, seed {report['seed']}, "
        f"units per layer: {report['max_units'] or 'all selected'})",
        f"{'layer':<8}{'units':>6}{'colour in top-k':>16}{'max over-rep.':>20}{'top colour (real)':>30}"
        f"{'act. ratio':>11}{'diversity (real)':>18}",
    ]
    for name, m in report["layers"].items():
        over = _over(m)
        div = f"{m['diversity']:.3f} ({m['diversity_real']:.3f})"
        ratio = f"{m['activation_ratio']:.2f}" if math.isfinite(m["activation_ratio"]) else "–"
        lines.append(
            f"{name:<8}{m['units']:>6}{m['colour_presence']:>16.3f}{over:>20}{_top(m):>30}{ratio:>11}{div:>18}"
        )
    lines.append(
        "(best pictures against the unit's real top-k. colour in top-k: share of best pictures whose object "
        "colour is among the real top-k's colours; max over-rep.: the colour most over-represented among the "
        "layer's best pictures (its share there / its share in the real top-k); top colour: the most "
        "frequent colour and its share (the real top-k's); act. ratio: best-picture activation / real "
        "top-k mean; diversity: mean RMS distance between a unit's pictures (its real top-k's))"
    )
    if any(not math.isfinite(m["activation_ratio"]) for m in report["layers"].values()):
        lines.append(
            "(act. ratio –: no unit of the layer has a real top-9 mean above 0, e.g. an fc layer read before "
            "its ReLU; the ratio would mean nothing, as units.activation_ratio is NULL there)"
        )
    for name, m in report["layers"].items():
        j = m.get("judge")
        if not j:
            continue
        n = j["units"]
        facets = ", ".join(f"{c} {v['recovered']}" for c, v in j["facets"].items())
        recovered = (
            f"facets {j['facets_recovered']}/{j['facets_total']}: {facets}"
            if j["facets_total"]
            else "no multifaceted class among these units"
        )
        lines.append(
            f"{name}: judged correct in every chain's best picture {j['units_all_correct']}/{n} units; "
            f"per chain {j['chain_recognizability']:.3f} "
            f"(last pictures {j['chain_recognizability_last']:.3f}); "
            f"worker verdict {j['worker_judge_correct']}/{n}; {recovered}"
        )
        for cls, fines in j["wrong"].items():
            lines.append(f"  wrong: {cls}: J says {fines}")
    return "\n".join(lines)
