"""`atlas bench throughput --ray`: end-to-end units/min through Ray actors, 1 vs 2 actors.

Each measurement is a whole `atlas run` (actor start, model load, sampling, Parquet writes) on the toy
world into a fresh temporary run directory, so it is what a user waits for.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from atlas.tables import format_table

REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _config(args: argparse.Namespace, out_dir: str, workers: int):
    from atlas.config import load_config

    path = args.config or str(REPO_CONFIGS / "demo.yaml")
    preset = [] if args.config else [f"toyworld.preset={args.preset}"]
    if getattr(args, "cache_dir", None):
        preset.append(f"toyworld.cache_dir={args.cache_dir}")
    cpus = max(1, (os.cpu_count() or 2) // workers)
    overrides = [
        *preset,
        f"out_dir={out_dir}",
        f"name=bench-{workers}",
        f"ray.num_workers={workers}",
        f"ray.cpus_per_worker={cpus}",
        "ray.units_per_shard=8",
        *([] if args.config else ["layers=[{name: fc8}, {name: fc7, units: '0-55'}]", "sampler.steps=50"]),
        *args.set,
    ]
    return load_config(path, overrides)


def run(args: argparse.Namespace) -> int:
    import ray

    from atlas.pipeline import run_atlas

    if not ray.is_initialized():
        ray.init(
            num_cpus=os.cpu_count() or 2, include_dashboard=False, logging_level="ERROR", log_to_driver=False
        )
    rows, report = [], {"actors": {}}
    with tempfile.TemporaryDirectory(prefix="atlas-bench-ray-") as tmp:
        for workers in (1, 2):
            cfg = _config(args, tmp, workers)
            started = time.perf_counter()
            summary = run_atlas(cfg, progress=False, log=lambda *_: None)
            wall = time.perf_counter() - started
            upm = summary["units"] / wall * 60
            report["actors"][workers] = {
                "units": summary["units"],
                "chains": summary["chains"],
                "wall_s": round(wall, 2),
                "units_per_min": round(upm, 1),
                "threads_per_actor": int(cfg.ray.cpus_per_worker),
            }
            rows.append(
                (
                    workers,
                    int(cfg.ray.cpus_per_worker),
                    summary["units"],
                    summary["chains"],
                    cfg.sampler.steps,
                    round(wall, 1),
                    round(upm, 1),
                )
            )
    ratio = report["actors"][2]["units_per_min"] / report["actors"][1]["units_per_min"]
    report["ratio_2_vs_1"] = round(ratio, 3)
    report["cpus"] = os.cpu_count()
    print(
        format_table(
            ["actors", "threads/actor", "units", "chains", "steps", "wall s", "units/min"],
            rows,
            align_right=range(7),
        )
    )
    print(
        f"2 actors / 1 actor: {ratio:.2f}x  ({os.cpu_count()} CPUs; end to end: actor start, models, writes)"
    )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2))
        print(f"wrote {args.json}")
    return 0
