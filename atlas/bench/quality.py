"""Fidelity benchmark: do the preferred images tell the truth about the units? (issue 4, item 5)

Usage::

    from atlas.bench.quality import QualitySetup, run_quality, format_table
    setup = QualitySetup.from_toyworld("default")           # or QualitySetup.from_config(run_config)
    report = run_quality(setup, seeds=3, out_dir="bench-out") # {"methods": {...}, "real": {...}}
    print(format_table(report))

For every method, over the output units with >= 8 chains each (means over seeds, ``*_std`` across seeds):

- ``recognizability``: the held-out judge J's coarse verdict on a chain's last picture equals the unit's class
  (J predicts fine, facet-level labels; their probabilities are summed per class);
- ``activation_ratio``: the unit's activation on the last picture / mean activation of its real top-9 images;
- ``selectivity``: fraction of last pictures where the unit is top-1 in its layer;
- ``diversity``: mean pairwise RMS pixel distance between a unit's last pictures (real: between its top-9);
- ``facets_recovered`` / ``facets_total``: (class, facet) pairs of the multifaceted classes for which at least
  one chain's last picture is judged (fine label) to show that facet;
- ``hidden_activation_ratio``: the same activation ratio for a few hidden units (fc7), when configured.

The "real" row scores each unit's real top-9 images the same way. Image grids (unit rows x chain columns)
are written per method and seed when ``out_dir`` is given, and ``compare-seed<k>.png``: the same units under
every method side by side (unit rows; per method its first ``picture_grids.COMPARE_CHAINS`` chains).

Peers (issue 17, docs/methods.md): ``fourier`` (Lucid), ``maco``, ``accentuation`` run at the gradient
methods' step count; ``ga`` and ``cmaes`` get as many generations as the same forward-pass budget allows
(``peers.passes_per_image``: a gradient step = 3 forward-pass equivalents, a generation = its population),
so every row spends (about) equal forward passes per picture; ``report["passes_per_image"]`` says how many.

Two start protocols, because diversity between chains is mostly decided by where the chains start:

- **data starts** (the table above): each chain starts where the method is meant to in an atlas (generator
  methods: a code of one of the unit's top real images; pixel baselines: noise). It measures what the atlas
  shows — recognizability, activation, facets.
- **common start** (``report["common_start"]``): every chain of every unit starts at the mean code plus a
  little noise (``COMMON_START_NOISE`` code standard deviations), as the papers start from one code
  distribution; the diversity left at the end is the one the *sampler* made. DGN-AM (at its data-start step
  and at a third of it, two points of its recognizability/diversity trade-off) against PPGN-h; the report's
  ``diversity_ratio`` is each PPGN-h method's diversity over each DGN-AM setting's, with the recognizability
  difference beside it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from atlas.bench.diversity import picture_diversity
from atlas.bench.picture_grids import save_compare, save_grid
from atlas.config import (
    CODE_METHODS,
    METHOD_SECTIONS,
    OWN_STARTS,
    ComputeConfig,
    DgnAmConfig,
    FacetConfig,
    PixelConfig,
    PpgnConfig,
    RunConfig,
    SamplerConfig,
    ToyWorldRef,
    replace,
)
from atlas.models.loaded import LoadedModel
from atlas.sampling import Engine, UnitResult, resolve_device
from atlas.sampling.peers import GRADIENT_STEP_PASSES, passes_per_image
from atlas.tables import counted
from atlas.toyworld.judging import Judge

METRICS = (
    "recognizability",
    "activation_ratio",
    "selectivity",
    "diversity",
    "facets_recovered",
    "facets_total",
)


def default_methods(base: SamplerConfig) -> dict[str, SamplerConfig]:
    """The compared methods, derived from one sampler config (its steps, chains, objective, start, settings).

    Generator methods use the config's start (facet-seeded by default); the pixel baselines start from noise
    (their classic setting) — without and with hand-made priors.
    """
    r = replace
    priors = PixelConfig(lr=base.pixel.lr, l2_decay=0.99, blur_every=4, blur_sigma=0.5, jitter=1, tv=0.05)
    return {
        "dgn_am": r(base, method="dgn_am"),
        "ppgn_h/dae": r(base, method="ppgn_h", ppgn_h=r(base.ppgn_h, prior="dae")),
        "ppgn_h/joint": r(base, method="ppgn_h", ppgn_h=r(base.ppgn_h, prior="joint")),
        "pixel": r(base, method="pixel", start="random", pixel=PixelConfig(lr=base.pixel.lr)),
        "pixel+priors": r(base, method="pixel", start="random", pixel=priors),
        **peer_methods(base),
    }


def peer_methods(base: SamplerConfig) -> dict[str, SamplerConfig]:
    """Issue 17's peers at the gradient methods' forward-pass budget (``base.steps`` gradient steps):
    Fourier, MACO and accentuation take ``base.steps`` steps (their own starts: random spectrum / phase, the
    unit's top real images); GA and CMA-ES start like DGN-AM, with ``3 x steps / population`` generations
    (a budget below one population: one generation of a population that fits it)."""
    r = replace
    budget = GRADIENT_STEP_PASSES * base.steps
    ga_pop, ga_gens = _search_budget(base.ga.population, budget)
    ga = r(base.ga, population=ga_pop, elite=min(base.ga.elite, ga_pop - 1))
    cma_pop, cma_gens = _search_budget(base.cmaes.population, budget)
    return {
        "fourier": r(base, method="fourier"),
        "maco": r(base, method="maco"),
        "accentuation": r(base, method="accentuation"),
        "ga": r(base, method="ga", steps=ga_gens, ga=ga),
        "cmaes": r(base, method="cmaes", steps=cma_gens, cmaes=r(base.cmaes, population=cma_pop)),
    }


def _search_budget(population: int, budget: int) -> tuple[int, int]:
    """(population, generations) spending at most ``budget`` forward passes (at least 2 x 1)."""
    if budget < population:
        return max(2, budget), 1
    return population, budget // population


MIN_SEARCH_GENERATIONS = 3  # fewer, and a GA / CMA-ES row is about its start's first samples


def short_search_note(
    base: SamplerConfig, configs: dict[str, SamplerConfig], steps_flag: str = "--steps "
) -> str:
    """A note for GA / CMA-ES rows whose budget gives them fewer than :data:`MIN_SEARCH_GENERATIONS`
    generations ("" when none), naming the gradient steps that would give them enough: a trial's
    ``--steps 5`` gave both one generation and identical rows. ``base``: the sampler the peers' budgets
    come from (:func:`peer_methods`); ``steps_flag``: how the bench's user sets its steps."""
    short = {
        n: c for n, c in configs.items() if c.method in ("ga", "cmaes") and c.steps < MIN_SEARCH_GENERATIONS
    }
    if not short:
        return ""
    listed = ", ".join(f"{n} {counted(c.steps, 'generation')} of {_population(c)}" for n, c in short.items())
    populations = {"ga": base.ga.population, "cmaes": base.cmaes.population}
    needed = max(
        math.ceil(MIN_SEARCH_GENERATIONS * populations[c.method] / GRADIENT_STEP_PASSES)
        for c in short.values()
    )
    return (
        f"(at this budget {listed}: too short for a search to leave its start; a generation costs its "
        f"population / {GRADIENT_STEP_PASSES} gradient steps, so {steps_flag}{needed} or more give "
        f"{'it' if len(short) == 1 else 'them'} {MIN_SEARCH_GENERATIONS} generations or more)"
    )


def _population(c: SamplerConfig) -> int:
    return c.ga.population if c.method == "ga" else c.cmaes.population


COMMON_START_NOISE = 0.25  # start-code noise of the common-start protocol, in code standard deviations


def common_start_methods(base: SamplerConfig, ppgn: PpgnConfig | None = None) -> dict[str, SamplerConfig]:
    """The common-start protocol: DGN-AM (step lr and lr / 3) and PPGN-h (``ppgn`` or the base's settings),
    every chain starting at the mean code + ``COMMON_START_NOISE`` std noise."""
    r = replace
    common = r(base, start="mean", start_noise=COMMON_START_NOISE)
    pp = ppgn or base.ppgn_h
    lr = common.dgn_am.lr
    return {
        "dgn_am": r(common, method="dgn_am"),
        f"dgn_am lr {lr / 3:.2g}": r(common, method="dgn_am", dgn_am=r(common.dgn_am, lr=lr / 3)),
        "ppgn_h/dae": r(common, method="ppgn_h", ppgn_h=r(pp, prior="dae")),
        "ppgn_h/joint": r(common, method="ppgn_h", ppgn_h=r(pp, prior="joint")),
    }


@dataclass
class QualitySetup:
    target: LoadedModel
    generator: LoadedModel | None
    dae: LoadedModel | None
    judge: LoadedModel
    real: Any  # RealImages (images, labels, fine, fine_to_class, multifaceted)
    sampler: SamplerConfig
    facets: FacetConfig
    compute: ComputeConfig
    layer: str = "output"
    hidden_layer: str | None = "fc7"
    hidden_units: int = 8
    methods: dict[str, SamplerConfig] = field(default_factory=dict)
    common_start: dict[str, SamplerConfig] = field(default_factory=dict)  # {} = common_start_methods(sampler)
    ensemble: list[LoadedModel] = field(default_factory=list)  # models.ensemble: output units' objectives

    @staticmethod
    def from_config(cfg: RunConfig, log: Callable[[str], None] = print) -> QualitySetup:
        from atlas.models.registry import load_model, load_run_ensemble, load_run_model
        from atlas.toyworld import real_images

        target = load_run_model(cfg, "target")
        gen = load_run_model(cfg, "generator")
        dae = load_run_model(cfg, "dae")
        judge = load_model("toyworld:judge", "judge", toyworld=cfg.toyworld)
        real = real_images(cfg.toyworld.preset, cfg.toyworld.cache_dir, split="test")
        sampler = replace(cfg.sampler, chains_per_unit=max(8, cfg.sampler.chains_per_unit))
        setup = QualitySetup(target, gen, dae, judge, real, sampler, cfg.facets, cfg.compute)
        setup.ensemble = load_run_ensemble(cfg)
        return setup

    def compare_notes(self, cfg: RunConfig) -> list[str]:
        """What ``bench quality --config --compare`` takes of config ``cfg`` and what it sets itself (a
        user's trial found the chains raised in the JSON only, and its layers unused)."""
        hidden = f", and {self.hidden_layer}'s first {self.hidden_units}" if self.hidden_layer else ""
        notes = [
            "bench quality --compare: the config's models and sampler settings on the bench's own units "
            f"(every output unit{hidden}), not the config's layers"
        ]
        if self.sampler.chains_per_unit != cfg.sampler.chains_per_unit:
            notes.append(
                f"bench quality --compare: sampler.chains_per_unit {cfg.sampler.chains_per_unit} -> "
                f"{self.sampler.chains_per_unit} (its diversity and multifaceted counts need 8 chains a unit)"
            )
        return notes

    @staticmethod
    def from_toyworld(
        preset: str = "default", cache_dir: str | None = None, **sampler_kw: Any
    ) -> QualitySetup:
        """The toy world with the benchmark's default sampler settings (tuned on the default preset)."""
        from atlas.config import ModelConfig, ModelsConfig

        # Settings tuned on the default toy world (docs/sampling.md has the sweep). Generator methods start
        # from the codes of the unit's top real images (DGN-AM's real-image start; one image per chain);
        # DGN-AM's step of 0.3 code units; PPGN-h's strong noise (eps3 = 1, relative to the gradient before
        # the step is normalized) regularizes toward recognizable pictures. From a common start PPGN-h runs
        # Eq. 11 as printed (unnormalized: its noise is not normalized away, so chains spread out).
        base: dict[str, Any] = dict(
            steps=100,
            chains_per_unit=8,
            objective="raw",
            start="real",
            record_every=10,
            dgn_am=DgnAmConfig(lr=0.3, lr_end=1e-3, l2_decay=0.99),
            ppgn_h=PpgnConfig(prior="dae", eps1=1e-3, eps2=1.0, eps3=1.0, lr=0.5, save_every=20),
        )
        base.update(sampler_kw)
        cfg = RunConfig(
            name="bench-quality",
            layers=[_layer("fc8")],
            models=ModelsConfig(
                target=ModelConfig(spec="toyworld:target"),
                generator=ModelConfig(spec="toyworld:generator"),
                dae=ModelConfig(spec="toyworld:dae"),
            ),
            sampler=SamplerConfig(**base),
            facets=FacetConfig(max_facets=4, seed_pool=300),
            compute=ComputeConfig(device="auto", batch_size=128),
            toyworld=ToyWorldRef(preset=preset, cache_dir=cache_dir),  # type: ignore[arg-type]
        )
        setup = QualitySetup.from_config(cfg)
        setup.common_start = common_start_methods(setup.sampler, COMMON_START_PPGN)
        return setup


# PPGN-h of the common-start protocol (tuned on the default toy world, docs/sampling.md): Eq. 11 unnormalized.
COMMON_START_PPGN = PpgnConfig(prior="dae", eps1=0.1, eps2=10.0, eps3=4.0, lr=1.0, step="eq11", save_every=20)


def _layer(name: str):
    from atlas.config import LayerConfig

    return LayerConfig(name=name)


# -------------------------------------------------------------------------------------------- judging


def score_units(
    units: list[UnitResult],
    judge: Judge,
    real: Any,
    class_of_unit: Callable[[int], int],
    real_values: torch.Tensor | None = None,
) -> tuple[dict[str, float], dict[str, float]]:
    """-> (method metrics, real top-9 metrics) for output units; real_values: (N, U) layer on real images."""
    multi = set(int(c) for c in getattr(real, "multifaceted", []))
    f2c = judge.fine_to_class.cpu().tolist()
    rec, ratio, sel, div = [], [], [], []
    r_rec, r_div, r_sel = [], [], []
    found: set[tuple[int, int]] = set()
    r_found: set[tuple[int, int]] = set()
    for u in units:
        if u.status != "ok" or not u.chains:
            continue
        cls = class_of_unit(u.unit)
        imgs = [c.last.image for c in u.chains]
        coarse, fine = judge(np.stack(imgs))
        rec.extend((coarse == cls).tolist())
        sel.extend([c.last.rank == 0 for c in u.chains])
        div.append(picture_diversity(imgs))
        top = u.real_topk[:9]
        if top:
            ref = float(np.mean([a for _, a, _ in top]))
            ratio.append(
                float(np.mean([c.last.activation for c in u.chains])) / ref if ref > 0 else float("nan")
            )
            rimgs = [im for _, _, im in top]
            rc, rf = judge(np.stack(rimgs))
            r_rec.extend((rc == cls).tolist())
            r_div.append(picture_diversity(rimgs))
            if real_values is not None:
                idx = torch.tensor([i for i, _, _ in top])
                r_sel.extend((real_values[idx].argmax(1) == u.unit).tolist())
            if cls in multi:
                r_found |= {(cls, int(f)) for f in rf if f2c[int(f)] == cls}
        if cls in multi:
            found |= {(cls, int(f)) for f in fine if f2c[int(f)] == cls}
    total = sum(
        1 for f in range(len(f2c)) if f2c[f] in multi and any(class_of_unit(u.unit) == f2c[f] for u in units)
    )
    m = {
        "recognizability": _mean(rec),
        "activation_ratio": _mean(ratio),
        "selectivity": _mean(sel),
        "diversity": _mean(div),
        "facets_recovered": float(len(found)),
        "facets_total": float(total),
    }
    r = {
        "recognizability": _mean(r_rec),
        "activation_ratio": 1.0,
        "selectivity": _mean(r_sel),
        "diversity": _mean(r_div),
        "facets_recovered": float(len(r_found)),
        "facets_total": float(total),
    }
    return m, r


def _ratio(u: UnitResult) -> float:
    """Mean last-picture activation over the unit's chains / mean activation of its real top-9."""
    ref = float(np.mean([a for _, a, _ in u.real_topk[:9]])) if u.real_topk else float("nan")
    if u.status != "ok" or not u.chains or not ref > 0:
        return float("nan")
    return float(np.mean([c.last.activation for c in u.chains])) / ref


def _mean(x: list) -> float:
    vals = [float(v) for v in x if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return float(np.mean(vals)) if vals else float("nan")


# -------------------------------------------------------------------------------------------- running


def rows_of(rows: dict[str, SamplerConfig], methods: list[str] | None) -> dict[str, SamplerConfig]:
    """The common-start rows (``"dgn_am lr 0.033"``, ``"ppgn_h/dae"``) of ``methods`` (the data-start
    table's names; None: all): `--methods dgn_am` ran PPGN-h's common-start rows too (a trial)."""
    if not methods:
        return rows
    return {r: m for r, m in rows.items() if any(r == n or r.startswith((f"{n} ", f"{n}/")) for n in methods)}


def method_settings(c: SamplerConfig) -> dict[str, Any]:
    """The sampler settings that made a row: the method's own section whole (ga: its population, ...), no
    other method's, and the start it really takes (a user's trial found fourier's "start: real", every
    row's dgn_am, ppgn_h and pixel sections, and no ga or cmaes section)."""
    out = {k: v for k, v in c.to_dict().items() if k not in METHOD_SECTIONS}
    out[c.method] = getattr(c, c.method).to_dict()
    if c.method in OWN_STARTS:
        out["start"] = OWN_STARTS[c.method]
    return out


def run_quality(
    setup: QualitySetup,
    seeds: int = 3,
    out_dir: str | Path | None = None,
    methods: list[str] | None = None,
    common_start: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Both protocols (module docstring); ``methods`` filters the data-start table's methods."""
    device = resolve_device(setup.compute.device)
    judge = Judge(setup.judge, device)
    all_methods = setup.methods or default_methods(setup.sampler)
    names = methods or list(all_methods)
    run = _MethodRunner(setup, judge, device, seeds, out_dir, log)
    per, real_rows, timing = run({n: all_methods[n] for n in names}, hidden=True, tag="")
    report: dict[str, Any] = {
        "methods": {n: _aggregate(rows) for n, rows in per.items() if rows},
        "passes_per_image": {n: passes_per_image(all_methods[n]) for n in names},
        "real": _aggregate(real_rows) if real_rows else {},
        "seeds": seeds,
        "seconds_per_seed": timing,
        "settings": {n: method_settings(all_methods[n]) for n in names},
        "note": short_search_note(setup.sampler, {n: all_methods[n] for n in names}),
    }
    cs_methods = rows_of(setup.common_start or common_start_methods(setup.sampler), methods)
    if common_start and setup.generator is not None and cs_methods:
        cs_per, _, cs_timing = run(cs_methods, hidden=False, tag="common-")
        cs = {n: _aggregate(rows) for n, rows in cs_per.items() if rows}
        report["common_start"] = {
            "start": f"mean code + {COMMON_START_NOISE:g} std noise",
            "methods": cs,
            "diversity_ratio": diversity_ratios(cs),
            "passes_per_image": {n: passes_per_image(c) for n, c in cs_methods.items()},
            "seconds_per_seed": cs_timing,
            "settings": {n: method_settings(c) for n, c in cs_methods.items()},
        }
    return report


def diversity_ratios(methods: dict[str, dict[str, float]]) -> dict[str, dict[str, dict[str, float]]]:
    """{ppgn method: {dgn method: {"diversity_ratio", "recognizability_delta"}}} (PPGN-h over DGN-AM)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for p, pm in methods.items():
        if not p.startswith("ppgn_h"):
            continue
        out[p] = {
            d: {
                "diversity_ratio": _ratio_of(pm["diversity"], dm["diversity"]),
                "recognizability_delta": pm["recognizability"] - dm["recognizability"],
            }
            for d, dm in methods.items()
            if d.startswith("dgn_am")
        }
    return out


def _ratio_of(a: float, b: float) -> float:
    """a / b; inf for a > 0 = b, nan for 0 / 0."""
    if b > 0:
        return a / b
    return float("inf") if a > 0 else float("nan")


@dataclass
class _MethodRunner:
    """Runs a set of methods over the output units for every seed and scores them."""

    setup: QualitySetup
    judge: Judge
    device: torch.device
    seeds: int
    out_dir: str | Path | None
    log: Callable[[str], None]

    def __call__(
        self, methods: dict[str, SamplerConfig], hidden: bool, tag: str
    ) -> tuple[dict[str, list[dict[str, float]]], list[dict[str, float]], dict[str, float]]:
        """-> (per-method rows per seed, real top-9 rows per seed, seconds per seed per method)."""
        setup = self.setup
        per: dict[str, list[dict[str, float]]] = {n: [] for n in methods}
        real_rows: list[dict[str, float]] = []
        timing: dict[str, float] = {}
        first = next(iter(methods), None)
        compare: dict[str, list[UnitResult]] = {}  # seed 0's results of every method (side-by-side grid)
        for name, cfg in methods.items():
            if cfg.method in CODE_METHODS and setup.generator is None:
                self.log(f"skip {name}: no generator")
                continue
            engine = Engine(
                setup.target,
                setup.generator,
                setup.dae,
                cfg,
                setup.facets,
                setup.compute,
                self.device,
                real=setup.real,
                ensemble=setup.ensemble,
            )
            _, n_units, _ = engine.layer_info(setup.layer)
            units = list(range(n_units))
            t0 = time.perf_counter()
            for seed in range(self.seeds):
                res = engine.map_units(setup.layer, units, seed=seed)
                m, r = score_units(
                    res,
                    self.judge,
                    setup.real,
                    class_of_unit=lambda u: u,
                    real_values=engine.real_layer_values(setup.layer),
                )
                if hidden and setup.hidden_layer:
                    hid = engine.map_units(setup.hidden_layer, list(range(setup.hidden_units)), seed=seed)
                    m["hidden_activation_ratio"] = _mean([_ratio(u) for u in hid])
                per[name].append(m)
                if name == first:
                    real_rows.append(r)
                if self.out_dir is not None:
                    slug = (tag + name).replace("/", "_").replace("+", "_").replace(" ", "_")
                    save_grid(res, Path(self.out_dir) / f"{slug}-seed{seed}.png")
                    if seed == 0:
                        compare[name] = res
                self.log(f"{tag}{name} seed {seed}: " + ", ".join(f"{k} {v:.3f}" for k, v in m.items()))
            timing[name] = (time.perf_counter() - t0) / max(self.seeds, 1)
        if self.out_dir is not None and compare:
            save_compare(compare, Path(self.out_dir) / f"{tag}compare-seed0.png")
        return per, real_rows, timing


def _aggregate(rows: list[dict[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for k in rows[0]:
        vals = np.array([r.get(k, float("nan")) for r in rows], dtype=float)
        out[k] = float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")
        if len(rows) > 1 and k not in ("facets_total",):
            out[f"{k}_std"] = float(np.nanstd(vals)) if np.isfinite(vals).any() else float("nan")
    return out


def format_table(report: dict[str, Any]) -> str:
    cols = list(METRICS) + (
        ["hidden_activation_ratio"]
        if any("hidden_activation_ratio" in m for m in report["methods"].values())
        else []
    )
    passes = report.get("passes_per_image", {})
    names = [c.replace("_", " ") for c in cols]
    widths = [max(len(n), 16) + 2 for n in names]
    head = f"{'method':<14}{'passes/img':>11}" + "".join(
        f"{n:>{w}}" for n, w in zip(names, widths, strict=True)
    )
    lines = [head, "-" * len(head)]
    rows = list(report["methods"].items()) + ([("real top-9", report["real"])] if report.get("real") else [])
    for name, m in rows:
        cells = []
        for c in cols:
            v = m.get(c, float("nan"))
            sd = m.get(f"{c}_std")
            text = f"{v:.3f}" if math.isfinite(v) else "–"  # not measured for this row (real: no chains)
            cells.append(text + (f" ±{sd:.2f}" if sd is not None and math.isfinite(sd) else ""))
        lines.append(
            f"{name:<14}{passes.get(name, ''):>11}"
            + "".join(f"{c:>{w}}" for c, w in zip(cells, widths, strict=True))
        )
    lines.append(
        "(passes/img: forward-pass equivalents per picture; recognizability: share of last pictures the "
        "judge J reads as the unit's class; activation ratio: activation / the real top-9's mean; "
        "selectivity: share where the unit is its layer's top; diversity: mean RMS distance between a "
        "unit's pictures; facets recovered / total: the multifaceted classes' (class, facet) pairs of which "
        "some chain's last picture J reads as that facet (its fine label); hidden activation ratio: the "
        "same ratio for fc7 units; real top-9: each unit's nine most activating real images, scored the "
        "same way (no sampler: what natural images reach); – : not measured there)"
    )
    if report.get("note"):
        lines.append(report["note"])
    cs = report.get("common_start")
    if cs:
        cs_passes = cs.get("passes_per_image") or {}
        same = sorted(set(cs_passes.values()))
        budget = f"; {same[0]} passes per picture" if len(same) == 1 else ""
        lines += ["", f"common start ({cs['start']}; the sampler's own diversity{budget}):"]
        cols3 = ("recognizability", "activation ratio", "diversity")
        head = f"{'method':<16}" + "".join(f"{c:>18}" for c in cols3)
        head += f"{'facets':>10}"
        lines += [head, "-" * len(head)]
        for name, m in cs["methods"].items():
            cells = [
                f"{m.get(c, float('nan')):.3f}" + (f" ±{m[c + '_std']:.2f}" if c + "_std" in m else "")
                for c in ("recognizability", "activation_ratio", "diversity")
            ]
            nan = float("nan")
            facets = f"{m.get('facets_recovered', nan):.2f}/{m.get('facets_total', nan):.0f}"
            lines.append(f"{name:<16}" + "".join(f"{c:>18}" for c in cells) + f"{facets:>10}")
        for p, vs in cs["diversity_ratio"].items():
            for d, v in vs.items():
                lines.append(
                    f"{p} vs {d}: diversity {v['diversity_ratio']:.2f}x at "
                    f"{v['recognizability_delta']:+.3f} recognizability"
                )
    return "\n".join(lines)
