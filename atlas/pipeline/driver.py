"""The driver: validate, plan, start resident-model actors, dispatch shards, survive failures.

``run_atlas(cfg)``:

1. builds the models once on the driver's CPU to validate specs, weights, layers and units (a bad
   config fails here, before any actor starts and before anything is written);
2. plans the units into deterministic shards, writes ``run.json`` (a different config in the same run
   directory is refused), and skips shards whose completion marker exists;
3. connects to Ray (``--address`` / ``RAY_ADDRESS`` / ``ray job submit``; else a local instance) and
   starts ``AtlasWorker`` actors: one per GPU where the cluster has GPUs, otherwise CPU actors;
4. keeps every actor busy; a shard whose actor died is re-queued (the actor restarts up to
   ``ray.max_restarts`` times); shard writes are idempotent, so nothing is lost or duplicated.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from atlas.config import RunConfig
from atlas.errors import AtlasError, ConfigError
from atlas.models import LayerProbe, example_input
from atlas.pipeline.models_setup import RunModels, build_models
from atlas.pipeline.plan import Shard, plan_shards
from atlas.store import RunStore

# config sections that do not change the results (where and how fast they are computed)
_NON_RESULT_KEYS = ("out_dir", "ray", "compute")


def config_hash(cfg: RunConfig) -> str:
    data = {k: v for k, v in cfg.to_dict().items() if k not in _NON_RESULT_KEYS}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def git_sha() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict[str, str]:
    import atlas

    out = {"atlas": atlas.__version__, "python": platform.python_version(), "torch": torch.__version__}
    try:
        import ray

        out["ray"] = ray.__version__
    except ImportError:
        pass
    return out


@dataclass
class LayerPlan:
    name: str
    kind: str
    shape: tuple[int, ...]
    units: list[int]


def resolve_layers(cfg: RunConfig, models: RunModels) -> list[LayerPlan]:
    """Check every configured layer exists and every unit is in range (one forward pass, CPU)."""
    target = models.target
    names = [layer.name for layer in cfg.layers]
    with torch.no_grad():
        acts = LayerProbe(target.module, names)(example_input(target))
    plans = []
    for i, layer in enumerate(cfg.layers):
        shape = tuple(acts[layer.name].shape[1:])
        if len(shape) not in (1, 3):
            raise AtlasError(
                f"layers.{i}.name: layer {layer.name!r} has output shape {shape}; "
                "only fc (N,) and conv (C, H, W) layers have units"
            )
        kind = layer.kind
        if kind == "auto":
            kind = "output" if layer.name == target.output_layer else ("fc" if len(shape) == 1 else "conv")
        plans.append(LayerPlan(layer.name, kind, shape, layer.units.resolve(shape[0], f"layers.{i}.units")))
    return plans


def _connect(address: str | None) -> bool:
    """Connect to Ray; returns True when this call started it (and so should shut it down)."""
    import ray

    if ray.is_initialized():
        return False
    addr = address or os.environ.get("RAY_ADDRESS")
    if addr:
        ray.init(address=addr, logging_level="WARNING")
    else:
        ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, logging_level="WARNING")
    return True


def _worker_layout(cfg: RunConfig, n_shards: int) -> tuple[int, float, float, int]:
    """(actors, cpus per actor, gpus per actor, torch threads) from the cluster's resources."""
    import ray

    resources = ray.cluster_resources()
    gpus, cpus = resources.get("GPU", 0.0), resources.get("CPU", 1.0)
    gpw = cfg.ray.gpus_per_worker if cfg.ray.gpus_per_worker is not None else (1.0 if gpus >= 1 else 0.0)
    cpw = cfg.ray.cpus_per_worker
    if cfg.ray.num_workers:
        n = cfg.ray.num_workers
    elif gpw > 0:
        n = int(gpus // gpw)
    else:
        n = int(cpus // cpw)
    n = max(1, min(n, n_shards))
    return n, cpw, gpw, max(1, int(cpw))


def _progress_bar(total: int, initial: int, desc: str):
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=initial,
        unit="unit",
        desc=desc,
        dynamic_ncols=True,
        mininterval=0.5,
        file=sys.stderr,
        smoothing=0.1,
    )


def run_atlas(
    cfg: RunConfig, *, address: str | None = None, log=print, progress: bool = True
) -> dict[str, Any]:
    """Build (or finish) the atlas a config describes; returns the run summary."""
    started = time.perf_counter()
    models = build_models(cfg)
    if cfg.models.target.spec.startswith("toyworld:"):
        from atlas import toyworld

        # the workers' judge verdicts: train it here, once, rather than in every actor on a cold cache
        toyworld.load_component("judge", cfg.toyworld.preset, cfg.toyworld.cache_dir)
    layers = resolve_layers(cfg, models)
    shards = plan_shards({lp.name: lp.units for lp in layers}, cfg.ray.units_per_shard)
    run_dir = Path(cfg.out_dir) / cfg.name
    store = RunStore(run_dir)
    store.init_run(
        {
            "config": cfg.to_dict(),
            "config_hash": config_hash(cfg),
            "fingerprints": models.fingerprints(),
            "versions": versions(),
            "git_sha": git_sha(),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "planned_shards": len(shards),
            "planned_units": sum(len(s.units) for s in shards),
            "layers": [
                {"name": lp.name, "kind": lp.kind, "shape": list(lp.shape), "units": len(lp.units)}
                for lp in layers
            ],
            "chains_per_unit": cfg.sampler.chains_per_unit,
            "method": cfg.sampler.method,
        }
    )
    done = store.completed_shards()
    todo = [s for s in shards if s.id not in done]
    total_units = sum(len(s.units) for s in shards)
    if done:
        log(
            f"resuming {run_dir}: {len(shards) - len(todo)} of {len(shards)} shards already complete, "
            "skipping them"
        )
    del models  # the driver only validated; actors hold the resident copies
    summaries: list[dict[str, Any]] = []
    if todo:
        summaries = _dispatch(
            cfg,
            run_dir,
            todo,
            total_units,
            total_units - sum(len(s.units) for s in todo),
            address,
            log,
            progress,
        )
    wall = time.perf_counter() - started
    summary = _summarize(cfg, run_dir, shards, summaries, wall, skipped=len(shards) - len(todo))
    store.finalize(summary)
    return summary


def _dispatch(
    cfg: RunConfig,
    run_dir: Path,
    todo: list[Shard],
    total_units: int,
    done_units: int,
    address: str | None,
    log,
    progress: bool,
) -> list[dict[str, Any]]:
    import ray
    from ray.exceptions import RayActorError, RayTaskError

    from atlas.pipeline.worker import AtlasWorker

    owned = _connect(address)
    try:
        n, cpw, gpw, threads = _worker_layout(cfg, len(todo))
        if cfg.compute.autocast == "fp16" and not gpw:
            raise ConfigError(
                "compute.autocast: fp16 needs GPU workers and this cluster has none; use bf16 or auto"
            )
        where = f"{n} actor(s) x {'1 GPU' if gpw else f'{cpw:g} CPU'}"
        log(f"atlas run {cfg.name}: {len(todo)} shards, {total_units - done_units} units to go, on {where}")
        remote = ray.remote(AtlasWorker).options(
            num_cpus=cpw, num_gpus=gpw, max_restarts=cfg.ray.max_restarts, max_task_retries=0
        )
        actors = [remote.remote(cfg.to_dict(), str(run_dir), threads) for _ in range(n)]
        failures = Counter()  # actor index -> consecutive deaths
        dead: set[int] = set()
        attempts: Counter[str] = Counter()
        pending = deque(todo)
        inflight: dict[Any, tuple[int, Shard]] = {}
        summaries: list[dict[str, Any]] = []
        bar = _progress_bar(total_units, done_units, cfg.name) if progress else None

        def submit(i: int) -> None:
            if pending and i not in dead:
                shard = pending.popleft()
                inflight[actors[i].run_shard.remote(shard)] = (i, shard)

        for i in range(n):
            submit(i)
            submit(i)  # two in flight per actor: the next shard is queued while one is written
        while inflight:
            ready, _ = ray.wait(list(inflight), num_returns=1)
            for ref in ready:
                i, shard = inflight.pop(ref)
                try:
                    result = ray.get(ref)
                except RayActorError:
                    failures[i] += 1
                    attempts[shard.id] += 1
                    if attempts[shard.id] > cfg.ray.max_shard_retries:
                        raise AtlasError(
                            f"shard {shard.id} failed {attempts[shard.id]} times (its worker died); "
                            "see the Ray logs; rerun the same command to resume"
                        ) from None
                    if failures[i] > cfg.ray.max_restarts:
                        dead.add(i)
                    log(f"worker {i} died while running shard {shard.id}; re-queued it")
                    pending.appendleft(shard)
                    if len(dead) == n:
                        raise AtlasError(
                            "every worker died; see the Ray logs; rerun the same command to resume"
                        ) from None
                    for j in range(n):
                        if j not in dead and not any(a == j for a, _ in inflight.values()):
                            submit(j)
                    continue
                except RayTaskError as exc:
                    cause = exc.as_instanceof_cause() if hasattr(exc, "as_instanceof_cause") else exc
                    if isinstance(cause, AtlasError):
                        raise AtlasError(str(cause).splitlines()[0]) from None
                    raise
                failures[i] = 0
                summaries.append(result)
                if bar is not None:
                    bar.update(result["units"])
                submit(i)
        if bar is not None:
            bar.close()
        for actor in actors:
            ray.kill(actor)
        return summaries
    finally:
        if owned:
            ray.shutdown()


def _summarize(
    cfg: RunConfig,
    run_dir: Path,
    shards: list[Shard],
    summaries: list[dict[str, Any]],
    wall: float,
    skipped: int,
) -> dict[str, Any]:
    rows: Counter[str] = Counter()
    for s in summaries:
        rows.update(s["rows"])
    units = sum(s["units"] for s in summaries)
    return {
        "run_dir": str(run_dir),
        "shards": len(shards),
        "shards_run": len(summaries),
        "shards_skipped": skipped,
        "units": units,
        "chains": sum(s["chains"] for s in summaries),
        "images": rows.get("images", 0),
        "rows": dict(rows),
        "errors": sum(s["errors"] for s in summaries),
        "diverged": sum(s["diverged"] for s in summaries),
        "precision": sorted({s.get("precision", "float32") for s in summaries}),
        "wall_seconds": round(wall, 2),
        "units_per_minute": round(units / wall * 60, 2) if wall > 0 else None,
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def format_summary(summary: dict[str, Any]) -> str:
    lines = [
        f"atlas: {summary['units']} units, {summary['chains']} chains, {summary['images']} images, "
        f"{sum(summary['rows'].values())} rows in {summary['wall_seconds']:.1f} s "
        f"({summary['units_per_minute'] or 0:.1f} units/min)",
        f"  shards: {summary['shards_run']} run, {summary['shards_skipped']} already complete, "
        f"of {summary['shards']}; diverged chains: {summary['diverged']}; unit errors: {summary['errors']}"
        + (f"; precision: {', '.join(summary['precision'])}" if summary.get("precision") else ""),
        f"  output: {summary['run_dir']}",
        f"  browse: atlas view {summary['run_dir']}",
        f'  query:  atlas sql {summary["run_dir"]} "SELECT layer, count(*) FROM units GROUP BY layer"',
    ]
    return "\n".join(lines)
