"""Throughput benchmark: chain-steps/s by batch size and method (issue 4 item 7, issue 7 item 5).

Usage::

    from atlas.bench.throughput import ThroughputSetup, run_throughput, format_table
    report = run_throughput(ThroughputSetup.from_toyworld("default"), batches=[1, 8, 32, 128])
    print(format_table(report))

Each point runs ``Engine.map_units`` with B single-chain units for ``s1`` and ``s2`` steps and reports the
marginal rate ``B (s2 - s1) / (t2 - t1)`` (fixed per-call costs — starts, records, facet clustering — cancel);
``s2 - s1`` grows until the timed stretch lasts ``min_seconds`` (small batches step fast: a 10-step stretch
at batch 1 lasts ~40 ms here, too short to time steadily), median over ``repeats``.
"speedup" is the best batch's rate over the batch-1 rate: how much one forward/backward pass serving many
chains beats a loop of single chains. FLOPs per chain-step are counted with ``torch.utils.flop_counter`` (the
forward and input-gradient backward of G and T, DAE included), giving GFLOP/s, compared with the device's
measured matmul rate in the precision the steps ran in ("of peak", MFU; CPU and CUDA). The report names the
CPU model and the flags that decide CPU speed (AVX2, AVX-512, AVX512-BF16, AMX), so machines compare.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from atlas.config import ComputeConfig, FacetConfig, RunConfig, SamplerConfig, replace
from atlas.errors import ConfigError
from atlas.models import CodeStats
from atlas.models.loaded import LoadedModel
from atlas.sampling import Engine, resolve_device
from atlas.sampling.compute import ComputeSetup, precision_name
from atlas.toyworld.machine import busy_note, describe, load_average, machine_info

DEFAULT_BATCHES = (1, 4, 16, 64, 128, 256)


@dataclass
class ThroughputSetup:
    target: LoadedModel
    generator: LoadedModel | None
    dae: LoadedModel | None
    sampler: SamplerConfig
    compute: ComputeConfig
    layer: str = "output"
    code_layer: str | None = None
    encoder: LoadedModel | None = None  # models.encoder: the network G inverts, when it is not the target
    code_stats: CodeStats | None = None
    ensemble: list[LoadedModel] = field(default_factory=list)  # models.ensemble: more targets

    @staticmethod
    def from_config(cfg: RunConfig) -> ThroughputSetup:
        """The config's models as a worker loads them (encoder, code statistics and code layer too: the
        joint prior reads the encoder's layer, which the target may not have), and its DAE where it names
        one although its method needs none (the benchmark measures every method)."""
        from atlas.models.registry import load_run_model
        from atlas.pipeline.models_setup import build_models

        m = build_models(cfg)
        dae = m.dae or load_run_model(cfg, "dae")
        layer = cfg.layers[0].name if cfg.layers else "output"
        return ThroughputSetup(
            m.target,
            m.generator,
            dae,
            cfg.sampler,
            cfg.compute,
            layer,
            m.code_layer,
            m.encoder,
            m.code_stats,
            m.ensemble,
        )

    @staticmethod
    def from_toyworld(preset: str = "default", cache_dir: str | None = None) -> ThroughputSetup:
        from atlas.toyworld import load_component

        t = load_component("target", preset, cache_dir)
        g = load_component("generator", preset, cache_dir)
        d = load_component("dae", preset, cache_dir)
        return ThroughputSetup(t, g, d, SamplerConfig(), ComputeConfig(), "fc8")


def methods_for(setup: ThroughputSetup) -> dict[str, SamplerConfig]:
    r = replace
    base = r(setup.sampler, start="random", chains_per_unit=1, record_every=1000)
    out = {}
    if setup.generator is not None:
        out["dgn_am"] = r(base, method="dgn_am")
        if setup.dae is not None:
            out["ppgn_h/dae"] = r(base, method="ppgn_h", ppgn_h=r(base.ppgn_h, prior="dae"))
        out["ppgn_h/joint"] = r(base, method="ppgn_h", ppgn_h=r(base.ppgn_h, prior="joint"))
    out["pixel"] = r(base, method="pixel")
    return out


def matmul_peak_tflops(
    device: torch.device, dtype: torch.dtype = torch.bfloat16, n: int | None = None
) -> float:
    """Measured dense matmul rate (TFLOP/s) on ``device`` in ``dtype``: the denominator of the fraction of
    peak (MFU) this benchmark reports, on CUDA and on CPUs alike (n = 8192 on CUDA, 2048 on a CPU)."""
    n = n or (8192 if device.type == "cuda" else 2048)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    _sync(device)
    reps, t0 = 0, time.perf_counter()
    while reps < 3 or time.perf_counter() - t0 < 0.5:  # at least half a second of matmuls
        a @ b
        reps += 1
    _sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e12


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _engine(setup: ThroughputSetup, cfg: SamplerConfig, batch: int, device: torch.device) -> Engine:
    compute = replace(setup.compute, batch_size=batch)
    return Engine(
        setup.target,
        setup.generator,
        setup.dae,
        cfg,
        FacetConfig(enabled=False, top_k_real=0),
        compute,
        device,
        code_layer=setup.code_layer,
        encoder=setup.encoder,
        code_stats=setup.code_stats,  # moved to the device by the engine
        ensemble=setup.ensemble,
    )


def _timed(engine: Engine, layer: str, units: list[int], steps: int, device: torch.device) -> float:
    engine.cfg = replace(engine.cfg, steps=steps)
    _sync(device)
    t0 = time.perf_counter()
    res = engine.map_units(layer, units, seed=0)
    _sync(device)
    bad = [u for u in res if u.status != "ok"]
    if bad:
        raise RuntimeError(f"throughput run failed: {bad[0].error}")
    return time.perf_counter() - t0


def flops_per_chain_step(engine: Engine, layer: str, batch: int = 4) -> float:
    """FLOPs of one chain-step: picture from the state, target forward to the layer (stopping early), the
    ensemble members' forward passes where they join, and the input-gradient backward, counted with
    ``torch.utils.flop_counter`` on a batch and divided by its size."""
    from torch.utils.flop_counter import FlopCounterMode

    from atlas.sampling.objectives import layer_values
    from atlas.sampling.units import make_unit

    name = engine.nets.resolve_layer(layer)
    shape = engine.nets.layer_shape(name)
    unit = make_unit(name, 0, shape, name == engine.target.output_layer, engine.cfg.spatial)
    sampler = engine.sampler
    state = torch.rand(batch, *sampler.param.state_shape(), device=engine.device, requires_grad=True)
    probe = engine.nets.probes(engine._probe_lists(name)[0])[0]  # the layers a step reads in the target
    with FlopCounterMode(display=False) as fc:
        with engine.setup.autocast():
            img = sampler.param.image(state)
            acts = probe(engine.setup.to_input(engine.target.space.encode(img)))  # type: ignore[union-attr]
            f = layer_values(acts[name], [unit] * batch)[:, 0].float().sum()
            ensemble = engine.ensemble_for(name)
            kept = engine.nets.space.seen(img)  # what the members read (TargetReadout.climbed)
            for values in ensemble.values(kept, [unit] * batch) if ensemble is not None else ():
                f = f + values[:, 0].sum()  # the members' passes: models.ensemble
            if engine.reads_code_every_step:  # the joint prior's E(G(h)) through models.encoder
                with torch.no_grad():
                    engine.code_reader(img.detach())  # type: ignore[misc]
        f.backward()  # autograd.grad is unsupported inside FlopCounterMode; params are frozen anyway
        if getattr(sampler.prior, "name", "") == "dae":
            sampler.prior.residual(state.detach(), acts)  # type: ignore[union-attr]
    return fc.get_total_flops() / batch


def _stretch(
    engine: Engine,
    layer: str,
    units: list[int],
    steps: tuple[int, int],
    device: torch.device,
    min_seconds: float,
    max_steps: int = 400,
) -> tuple[int, int]:
    """(s1, s2): s2 - s1 >= steps[1] - steps[0] and long enough to last ``min_seconds`` (<= max_steps).
    The step's time is the marginal one, t(s2) - t(s1) over the steps between: a run's fixed costs had
    made a step look several times longer, and the stretch stayed at its 10-step minimum (80 ms at B=1)."""
    short = _timed(engine, layer, units, steps[0], device)
    long = _timed(engine, layer, units, steps[1], device)
    probe = (long - short) / (steps[1] - steps[0])
    if probe <= 0:  # noise: the whole run's time per step, fixed costs included
        probe = long / steps[1]
    n = max(steps[1] - steps[0], min(max_steps, math.ceil(min_seconds / max(probe, 1e-9))))
    return steps[0], steps[0] + n


def _marginal_step_seconds(
    engine: Engine, layer: str, units: list[int], steps: tuple[int, int], device: torch.device, repeats: int
) -> tuple[float, float]:
    """(seconds a step, unsteadiness): (min t(s2) - min t(s1)) / (s2 - s1) over ``repeats`` interleaved
    pairs, min t(s2) / s2 when that is <= 0, and how far the repeats of t(s2) spread, (max - min) / min.

    The fastest of each is the one other work on the cores slowed least. A median of per-pair differences
    took one noisy pair's small difference for a fast step: a user's trial on busy cores read B=16 at 51
    and then 2,096 chain-steps/s in one process, and speedups of 400-590x."""
    shorts, longs = [], []
    for _ in range(repeats):
        shorts.append(_timed(engine, layer, units, steps[0], device))
        longs.append(_timed(engine, layer, units, steps[1], device))
    marginal = (min(longs) - min(shorts)) / (steps[1] - steps[0])
    per_step = marginal if marginal > 0 else min(longs) / steps[1]
    return per_step, (max(longs) - min(longs)) / min(longs)


UNSTEADY = 0.25  # repeats whose longest took this much longer than their shortest: a rate marked unsteady


def run_throughput(
    setup: ThroughputSetup,
    batches: list[int] | None = None,
    steps: tuple[int, int] = (2, 12),
    min_seconds: float = 0.5,
    methods: list[str] | None = None,
    budget_s: float | None = None,
    repeats: int = 3,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """{"methods": {name: {"by_batch": {B: chain_steps_per_s}, "best_batch", "speedup",
    "ms_per_step": {B: ms},
    "gflop_per_chain_step", "gflops": {B: GFLOP/s}, ["tflops", "mfu"]}}, "device", "threads", ...}."""
    from atlas.toyworld.loops import threads

    with threads(setup.compute.threads or torch.get_num_threads()):  # compute.threads, as a worker's
        return _run_throughput(setup, batches, steps, min_seconds, methods, budget_s, repeats, log)


def _run_throughput(
    setup: ThroughputSetup,
    batches: list[int] | None,
    steps: tuple[int, int],
    min_seconds: float,
    methods: list[str] | None,
    budget_s: float | None,
    repeats: int,
    log: Callable[[str], None],
) -> dict[str, Any]:
    device = resolve_device(setup.compute.device)
    if setup.compute.autocast == "fp16" and device.type != "cuda":  # a worker would run float32: say so
        raise ConfigError(f"compute.autocast: fp16 needs a CUDA device and the benchmark runs on {device}; "
                          "use bf16 or auto")  # fmt: skip
    batches = list(batches or DEFAULT_BATCHES)
    all_methods = methods_for(setup)
    names = methods or list(all_methods)
    compute = ComputeSetup.resolve(setup.compute, device)
    peak_dtype = compute.dtype or torch.float32
    peak = matmul_peak_tflops(device, peak_dtype)
    report: dict[str, Any] = {
        "methods": {},
        "device": str(device),
        "autocast": compute.precision,
        "channels_last": compute.channels_last,
        "cudnn_benchmark": compute.cudnn_benchmark,
        "threads": torch.get_num_threads(),
        "steps": list(steps),
        "peak_tflops": peak,  # measured matmul rate in the precision the steps ran in
        "peak_dtype": precision_name(peak_dtype),
        "machine": machine_info(),  # CPU model and flags (bf16 / AMX / AVX-512 / AVX2), torch
        "load_before": load_average(),  # other work on the cores lowers every rate (busy_note)
    }
    t_start = time.perf_counter()
    for name in names:
        cfg = all_methods[name]
        probe = _engine(setup, cfg, 8, device)
        _, n_units, _ = probe.layer_info(setup.layer)
        flops = flops_per_chain_step(probe, setup.layer)
        row: dict[str, Any] = {
            "by_batch": {},
            "ms_per_step": {},
            "timed_steps": {},
            "spread": {},  # (slowest - fastest) / fastest repeat: above UNSTEADY the rate is marked
            "gflops": {},
            "gflop_per_chain_step": flops / 1e9,
        }
        for b in batches:
            if budget_s is not None and time.perf_counter() - t_start > budget_s and row["by_batch"]:
                log(f"{name}: time budget reached, skipping batch {b}")
                break
            engine = _engine(setup, cfg, b, device)
            units = [u % n_units for u in range(b)]
            _timed(engine, setup.layer, units, 1, device)  # warm-up (allocator, compile)
            stretch = _stretch(engine, setup.layer, units, steps, device, min_seconds)
            per_step, spread = _marginal_step_seconds(engine, setup.layer, units, stretch, device, repeats)
            rate = b / per_step
            row["by_batch"][b] = rate
            row["spread"][b] = spread
            row["ms_per_step"][b] = per_step * 1e3
            row["timed_steps"][b] = stretch[1] - stretch[0]
            row["gflops"][b] = rate * flops / 1e9
            log(
                f"{name:<13} batch {b:>4}: {rate:9.1f} chain-steps/s, {per_step * 1e3:8.2f} ms/step, "
                f"{rate * flops / 1e9:8.2f} GFLOP/s"
                + (f" (unsteady: repeats {spread:+.0%})" if spread > UNSTEADY else "")
            )
        best = max(row["by_batch"], key=row["by_batch"].get)
        row["best_batch"] = best
        base = row["by_batch"].get(1)
        row["speedup"] = row["by_batch"][best] / base if base else float("nan")
        report["methods"][name] = row
    report["load_after"] = load_average()
    if peak:  # a peak measured on busy cores is low: the higher of a measure before and one after the steps
        peak = report["peak_tflops"] = max(peak, matmul_peak_tflops(device, peak_dtype))
        for row in report["methods"].values():
            row["tflops"] = row["gflops"][row["best_batch"]] / 1e3
            row["mfu"] = row["tflops"] / peak
    return report


def format_table(report: dict[str, Any]) -> str:
    lines = [
        f"device {report['device']}, {report['threads']} threads, {report.get('autocast', 'float32')}"
        + (", channels_last" if report.get("channels_last") else "")
        + (", cuDNN autotuner" if report.get("cudnn_benchmark") else "")
        + (
            f", {report.get('peak_dtype', '')} matmul peak {report['peak_tflops'] * 1e3:.0f} GFLOP/s"
            if report.get("peak_tflops")
            else ""
        )
    ]
    if report.get("machine"):
        lines.append(describe(report["machine"]))
    batches = sorted({b for m in report["methods"].values() for b in m["by_batch"]})
    head = f"{'method':<14}" + "".join(f"{'B=' + str(b):>10}" for b in batches) + f"{'best':>7}{'speedup':>9}"
    head += f"{'GFLOP/step':>12}{'GFLOP/s':>10}" + (f"{'of peak':>9}" if report.get("peak_tflops") else "")
    lines += [head, "-" * len(head)]
    unsteady = False
    for name, m in report["methods"].items():
        marks = {b: "*" if m.get("spread", {}).get(b, 0) > UNSTEADY else " " for b in m["by_batch"]}
        unsteady |= "*" in marks.values()
        cells = "".join(f"{m['by_batch'].get(b, float('nan')):>9.1f}{marks.get(b, ' ')}" for b in batches)
        shaky = "*" if "*" in (marks.get(1), marks.get(m["best_batch"])) else "x"
        speedup = f"{m['speedup']:>8.1f}{shaky}" if math.isfinite(m["speedup"]) else f"{'-':>9}"  # no B=1
        line = f"{name:<14}{cells}{m['best_batch']:>7}{speedup}"
        line += f"{m['gflop_per_chain_step']:>12.4f}{m['gflops'][m['best_batch']]:>10.2f}"
        if "mfu" in m:
            line += f"{m['mfu'] * 100:>8.1f}%"
        lines.append(line)
    lines.append("(chain-steps/s; ms/step and GFLOP/s per batch in the JSON)")
    if unsteady:
        lines.append(
            f"* unsteady: the slowest of its repeats took over {UNSTEADY:.0%} longer than the fastest (other "
            "work on the cores); the rate is the fastest repeats', a speedup marked * leans on one: rerun on "
            "idle cores before quoting it"
        )
    cpus = (report.get("machine") or {}).get("cpus") or os.cpu_count() or 1
    busy = busy_note(report.get("load_before"), report.get("load_after"), cpus, int(report["threads"]))
    if busy:
        lines.append(busy)
    if any(m.get("mfu", 0) > 1 for m in report["methods"].values()):
        lines.append(
            "(of peak above 100 %: the matmul peak was measured while other work shared the cores, or the "
            "steps' kernels outran one large matmul; compare rows of one table, not with other machines)"
        )
    return "\n".join(lines)
