"""AtlasWorker: the body of a Ray actor, as a plain class (tested without Ray).

It builds the target, generator and DAE once, keeps them resident on its device, and turns shards
into Parquet through the sampling engine and the store::

    worker = AtlasWorker(cfg.to_dict(), "runs/demo")
    summary = worker.run_shard(Shard("fc8-00000", "fc8", (0, 1, 2)))
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from atlas.config import config_from_dict
from atlas.pipeline.models_setup import build_models, load_real_images, pick_device
from atlas.pipeline.plan import Shard
from atlas.pipeline.rows import merge_rows, unit_rows
from atlas.sampling import Engine
from atlas.sampling.results import UnitResult
from atlas.store import RunStore

WORKERS_DIR = "_workers"


class AtlasWorker:
    def __init__(self, config: dict[str, Any], run_dir: str, threads: int | None = None) -> None:
        self.cfg = config_from_dict(config)
        if threads:
            torch.set_num_threads(max(1, int(threads)))
        self.device = pick_device(self.cfg.compute.device)
        started = time.perf_counter()
        self.models = build_models(self.cfg)
        for m in (self.models.target, self.models.generator, self.models.dae):
            if m is not None:
                m.to(self.device)
        self.real = load_real_images(self.cfg, self.models.target.space.size)
        self.engine = Engine(
            self.models.target,
            self.models.generator,
            self.models.dae,
            self.cfg.sampler,
            self.cfg.facets,
            self.cfg.compute,
            self.device,
            code_stats=self.models.code_stats.to(self.device) if self.models.code_stats else None,
            code_layer=self.models.code_layer,
            real=self.real,
        )
        self.judge = self._load_judge()
        self.store = RunStore(run_dir)
        self.run_dir = Path(run_dir)
        self.setup_seconds = time.perf_counter() - started
        self._register()

    # ------------------------------------------------------------------------------------------ setup

    def _load_judge(self) -> Any | None:
        """The toy world's held-out judge J, for a verdict on output units (None for other targets)."""
        if not self.cfg.models.target.spec.startswith("toyworld:"):
            return None
        from atlas import toyworld

        judge = toyworld.load_component("judge", self.cfg.toyworld.preset, self.cfg.toyworld.cache_dir)
        return judge.to(self.device)

    def _register(self) -> None:
        """Write <run_dir>/_workers/<host>-<pid>.json so operators (and tests) can find this process."""
        folder = self.run_dir / WORKERS_DIR
        folder.mkdir(parents=True, exist_ok=True)
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "device": str(self.device),
            "threads": torch.get_num_threads(),
            "setup_seconds": round(self.setup_seconds, 2),
        }
        (folder / f"{socket.gethostname()}-{os.getpid()}.json").write_text(json.dumps(info))

    def pid(self) -> int:
        return os.getpid()

    @property
    def precision(self) -> str:
        """What the forward passes ran in on this worker: 'bfloat16', 'float16' or 'float32'."""
        return str(self.engine.setup.dtype or torch.float32).removeprefix("torch.")

    def describe(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "device": str(self.device), "threads": torch.get_num_threads()}

    # ------------------------------------------------------------------------------------------- work

    def _judge_verdict(self, result: UnitResult) -> dict[str, Any] | None:
        if self.judge is None or result.kind != "output" or not result.chains:
            return None
        images = np.stack(
            [c.last.image for c in result.chains if not c.diverged] or [result.chains[0].last.image]
        )
        x = torch.from_numpy(images).to(self.device).permute(0, 3, 1, 2).float() / 255.0  # (K, 3, H, W)
        with torch.no_grad():
            logits = self.judge.module(self.judge.space.encode(x)).float()
        fine = logits.argmax(1).tolist()
        fine_to_class = self.judge.extras["fine_to_class"]
        coarse = [fine_to_class[f] for f in fine]
        names = self.judge.extras.get("fine_names") or [str(i) for i in range(logits.shape[1])]
        label = Counter(fine).most_common(1)[0][0]
        hits = sum(1 for c in coarse if c == result.unit)
        return {
            "judge_label": str(names[label]),
            "judge_correct": hits * 2 > len(coarse),
            "judge_prob": hits / len(coarse),
        }

    def run_shard(self, shard: Shard | dict[str, Any]) -> dict[str, Any]:
        """Sample every unit of the shard, write its Parquet files and marker; return a small summary."""
        if isinstance(shard, dict):
            shard = Shard(shard["id"], shard["layer"], tuple(shard["units"]))
        started = time.perf_counter()
        results = self.engine.map_units(shard.layer, list(shard.units), seed=self.cfg.seed)
        s = self.cfg.store
        rows = merge_rows(
            [
                unit_rows(
                    r,
                    shard.id,
                    steps=self.cfg.sampler.steps,
                    keep_snapshots=s.keep_snapshots,
                    activations_full_max=s.activations_full_max,
                    activations_top_k=s.activations_top_k,
                    judge=self._judge_verdict(r),
                )
                for r in results
            ]
        )
        counts = self.store.write_shard(
            shard.id,
            shard.layer,
            rows,
            meta={
                "seconds": round(time.perf_counter() - started, 3),
                "pid": os.getpid(),
                "device": str(self.device),
                "precision": self.precision,
            },
        )
        return {
            "shard": shard.id,
            "layer": shard.layer,
            "units": len(shard.units),
            "chains": sum(len(r.chains) for r in results),
            "errors": sum(r.status != "ok" for r in results),
            "diverged": sum(c.diverged for r in results for c in r.chains),
            "rows": counts,
            "seconds": time.perf_counter() - started,
            "pid": os.getpid(),
            "precision": self.precision,
        }
