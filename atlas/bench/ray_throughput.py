"""`atlas bench throughput --ray`: end-to-end units/min through Ray actors.

Each measurement is a whole `atlas run` (actor start, model shipping, sampling, Parquet writes) on the toy
world into a fresh run, so it is what a user waits for. Two comparisons:

- 1 vs 2 actors into a local directory (how the pool scales on this machine);
- with ``--store URI``: 2 actors into a local directory vs into that store (``s3://bucket/prefix``, or
  ``local-s3`` for moto's S3 API server on 127.0.0.1): the cost of the object-store path, measured in one
  process on one machine. Settings alternate (local, store, local, store, ...) so drifting load hits both.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from typing import Any

from atlas.bench import REPO_CONFIGS, write_json
from atlas.errors import AtlasError, Interrupted
from atlas.tables import format_table
from atlas.toyworld.machine import busy_note, describe, load_average, machine_info


def _config(args: argparse.Namespace, out_dir: str, workers: int, name: str):
    from atlas.config import load_config

    path = args.config or str(REPO_CONFIGS / "demo.yaml")
    preset = [] if args.config else [f"toyworld.preset={args.preset or 'default'}"]
    if getattr(args, "cache_dir", None):
        preset.append(f"toyworld.cache_dir={args.cache_dir}")
    cpus = max(1, int(getattr(args, "node_cpus", None) or os.cpu_count() or 2) // workers)
    overrides = [
        *preset,
        f"out_dir={out_dir}",
        f"name={name}",
        f"ray.num_workers={workers}",
        f"ray.cpus_per_worker={cpus}",
        "ray.units_per_shard=8",
        *([] if args.config else ["layers=[{name: fc8}, {name: fc7, units: '0-55'}]", "sampler.steps=50"]),
        *args.set,
    ]
    return load_config(path, overrides)


def _connect() -> tuple[bool, float]:
    """Connect to Ray (a new local instance, or RAY_ADDRESS's; never a stale recorded cluster): (whether
    the bench owns the instance, the CPUs of its one node). A cluster of several nodes is refused: the
    bench splits one machine's cores between 1 and 2 actors (a trial's two-node cluster got the driver's
    core count per actor, which no node had, and a temporary directory only the driver has)."""
    import ray

    from atlas.pipeline import cluster

    owned = cluster.connect(None)
    node_cpus = [float(n.get("Resources", {}).get("CPU", 0)) for n in cluster.alive_nodes()]
    if len(node_cpus) > 1:
        if owned:
            ray.shutdown()
        raise AtlasError(
            "bench throughput --ray measures actors on one machine, and the Ray cluster has "
            f"{len(node_cpus)} nodes; run it without RAY_ADDRESS (a local instance), or time a real run on "
            "the cluster (its summary prints units/min)"
        )
    return owned, node_cpus[0] if node_cpus else float(os.cpu_count() or 2)


def _local_s3() -> tuple[str, Any]:
    """Start moto's S3 API server on 127.0.0.1 with a bucket, before Ray starts (its workers inherit the
    ``AWS_*`` variables); returns (uri, server: ``stop()`` restores the environment)."""
    from atlas.bench.local_s3 import s3_server

    server = s3_server("atlas-bench")
    return server.uri("runs"), server


def _measure(args: argparse.Namespace, out_dir: str, workers: int) -> dict[str, Any]:
    from atlas.pipeline import run_atlas
    from atlas.pipeline.driver import run_location
    from atlas.store.manifest import read_manifest

    name = f"bench-{workers}-{uuid.uuid4().hex[:8]}"
    cfg = _config(args, out_dir, workers, name)
    started = time.perf_counter()
    summary = run_atlas(cfg, progress=False, log=lambda *_: None)
    wall = time.perf_counter() - started
    recorded = read_manifest(run_location(cfg)).get("cpu_autocast") or {}  # the run's storage options too
    names = {"none": "float32", "bf16": "bfloat16"}  # run.json's words, as the other benches name them
    return {
        "precision": ", ".join(sorted({names.get(v, v) for v in recorded.values()}))
        or ("auto: GPU" if cfg.compute.autocast == "auto" else str(cfg.compute.autocast)),
        "units": summary["units"],
        "chains": summary["chains"],
        "steps": cfg.sampler.steps,
        "wall_s": round(wall, 2),
        "units_per_min": round(summary["units"] / wall * 60, 1),
        "threads_per_actor": int(cfg.ray.cpus_per_worker),
    }


def run(args: argparse.Namespace) -> int:
    import ray

    store, server = getattr(args, "store", None), None
    if store == "local-s3":
        store, server = _local_s3()
    repeat = max(1, int(getattr(args, "repeat", 1) or 1))
    load_before = load_average()
    owned, args.node_cpus = _connect()
    settings = [("local", 1), ("local", 2)] + ([("store", 2)] if store else [])
    results: dict[tuple[str, int], list[dict[str, Any]]] = {s: [] for s in settings}
    try:
        with tempfile.TemporaryDirectory(prefix="atlas-bench-ray-") as tmp:
            for _ in range(repeat):
                for where, workers in settings:
                    out = store if where == "store" else tmp
                    results[(where, workers)].append(_measure(args, out, workers))
    except KeyboardInterrupt as exc:  # not a run of the user's: nothing to resume (its message said so)
        raise Interrupted(
            "interrupted: the bench's runs are removed", getattr(exc, "exit_code", 130)
        ) from None
    finally:
        if server is not None:
            server.stop()
        if owned:
            ray.shutdown()
    machine = machine_info()
    report: dict[str, Any] = {
        "cpus": int(args.node_cpus),  # the node's (a cluster's one node may not be this machine)
        "repeat": repeat,
        "store": store,
        "settings": {},
        "machine": machine,  # CPU model and flags: a speed figure is quoted with them
        "load_before": load_before,
        "load_after": load_average(),
    }
    rows = []
    for (where, workers), runs in results.items():
        upm = statistics.median(r["units_per_min"] for r in runs)
        first = runs[0]
        report["settings"][f"{where}-{workers}"] = {"runs": runs, "units_per_min": upm}
        label = "local dir" if where == "local" else store
        rows.append(
            (
                label,
                workers,
                first["threads_per_actor"],
                first["precision"],
                first["units"],
                first["steps"],
                upm,
            )
        )
    print(describe(machine))
    columns = ["store", "actors", "threads/actor", "precision", "units", "steps", "units/min"]
    print(format_table(columns, rows, align_right=[1, 2, 4, 5, 6]))
    per = {k: v["units_per_min"] for k, v in report["settings"].items()}
    report["ratio_2_vs_1"] = round(per["local-2"] / per["local-1"], 3)
    print(f"2 actors / 1 actor: {report['ratio_2_vs_1']:.2f}x  ({os.cpu_count()} CPUs; end to end)")
    if store:
        report["ratio_store_vs_local"] = round(per["store-2"] / per["local-2"], 3)
        print(f"{store} / local directory (2 actors): {report['ratio_store_vs_local']:.2f}x")
    busy = busy_note(load_before, report["load_after"], machine["cpus"], machine["cpus"])
    if busy:
        print(busy)
    write_json(args.json, report)
    return 0
