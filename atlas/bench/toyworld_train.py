"""Toy-world training benchmark: how long the project's own training code takes on this machine.

    atlas bench toyworld [--preset micro|default] [--json PATH]

Trains the preset from scratch (``bootstrap(retrain=True)``: nothing from the cache or the shipped weights)
into a temporary cache that is deleted afterwards, and prints one row per stage with wall seconds and CPU
seconds (this process, all threads), plus the CPU model, the SIMD flags that decide torch's CPU speed
(AVX2, AVX-512, AVX512-BF16, AMX) and the torch thread counts. Training runs on 2 threads
(``atlas.toyworld.loops.threads``), so CPU s / 2 approximates the wall time on two idle cores; wall time on a
machine shared with other jobs is an upper bound. Exit status 1 when a quality gate fails.

Usage::

    from atlas.bench.toyworld_train import run_training_bench, format_table
    report = run_training_bench("micro")
    print(format_table(report))
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from typing import Any

from atlas.bench import write_json

STAGES = ("data_train", "target", "judge", "generator", "dae", "reader", "evaluate")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--preset", default="micro", choices=["micro", "default"], help="toy-world preset (default micro)"
    )
    parser.add_argument(
        "--json", metavar="PATH", help="also write the results as JSON (default: not written)"
    )


def run_training_bench(preset: str = "micro", log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train ``preset`` from scratch in a temporary cache; stage timings, gates and machine description."""
    from atlas.toyworld import bootstrap
    from atlas.toyworld.loops import train_threads
    from atlas.toyworld.machine import load_average, machine_info

    machine = machine_info()
    load_before = load_average()
    machine["training_threads"] = train_threads()  # what threads() trains with (ATLAS_TRAIN_THREADS, else 2)
    with tempfile.TemporaryDirectory(prefix="atlas-bench-toyworld-") as tmp:
        t0, c0 = time.perf_counter(), time.process_time()
        report = bootstrap(preset, tmp, retrain=True, log=log)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    stages = [
        {"stage": s, "wall_s": report["seconds"].get(s, 0.0), "cpu_s": report["cpu_seconds"].get(s, 0.0)}
        for s in STAGES
    ]
    stages.append({"stage": "total", "wall_s": round(wall, 1), "cpu_s": round(cpu, 1)})
    return {
        "benchmark": "toyworld_train",
        "preset": preset,
        "config_hash": report["config_hash"],
        "machine": machine,
        "stages": stages,
        "gates": report["gates"],
        "passed": report["passed"],
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "load_before": load_before,  # other work on the cores slows it (and its CPU seconds: busy_note)
        "load_after": load_average(),
    }


def format_table(report: dict[str, Any]) -> str:
    from atlas.toyworld.machine import busy_note, describe

    m = report["machine"]
    lines = [
        f"toy world {report['preset']!r} (config {report['config_hash']}) trained from scratch",
        f"{describe(m)} (training uses {m['training_threads']} threads)",
        f"{'stage':<12}{'wall s':>9}{'CPU s':>9}",
        "-" * 30,
    ]
    lines += [f"{r['stage']:<12}{r['wall_s']:>9.1f}{r['cpu_s']:>9.1f}" for r in report["stages"]]
    failed = [n for n, g in report["gates"].items() if not g["passed"]]
    lines.append("gates: all passed" if not failed else f"gates FAILED: {', '.join(failed)}")
    busy = busy_note(report.get("load_before"), report.get("load_after"), m["cpus"], m["training_threads"])
    if busy:
        lines.append(busy)
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    report = run_training_bench(args.preset)
    print(format_table(report))
    write_json(args.json, report)
    return 0 if report["passed"] else 1
