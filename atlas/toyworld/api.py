"""The toy world's public functions: components for the registry, real images, and bootstrap."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from atlas.models.loaded import LoadedModel
from atlas.sampling.concepts import ConceptSet
from atlas.toyworld.world import ALL_COMPONENTS, MEMBERS, ToyWorld, check_component


def load_component(
    name: str,
    preset: str = "default",
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    train_if_missing: bool = True,
    log: Callable[[str], None] = print,
) -> LoadedModel:
    """``target | judge | generator | dae | reader`` (or an ensemble member ``target2`` ... ``target9``) of
    a toy world, frozen, trained on demand (with a message; ``train_if_missing=False``: an AtlasError
    instead)."""
    check_component(name)  # before the world's cache is touched
    return ToyWorld(preset, cache_dir, log).loaded(name, train_if_missing=train_if_missing)


@dataclass
class RealImages:
    images: torch.Tensor  # (N, 3, H, W) float RGB in [0, 1]
    labels: torch.Tensor  # (N,) long class ids
    fine: torch.Tensor  # (N,) long fine (facet-level) ids
    class_names: list[str]
    fine_names: list[str]
    fine_to_class: list[int]
    multifaceted: list[int]  # class ids with two facets
    concepts: ConceptSet | None = None  # ground-truth concepts of each image (atlas.toyworld.concepts)
    source_index: list[int] | None = None  # each image's position in the split (None: the whole split)


def real_images(
    preset: str = "default",
    cache_dir: str | os.PathLike[str] | None = None,
    split: str = "test",
    limit: int | None = None,
) -> RealImages:
    """A split of the world's images (rendered deterministically; needs no training); ``limit``: an evenly
    spaced sample of it (``atlas.sampling.real.evenly_spaced``)."""
    from atlas.sampling.real import evenly_spaced
    from atlas.toyworld.concepts import toy_concepts
    from atlas.toyworld.shapes import CLASS_NAMES, FINE_NAMES, FINE_TO_CLASS, MULTIFACETED

    d = ToyWorld(preset, cache_dir, log=lambda _m: None).data(split)
    concepts = toy_concepts(d)  # size and place tertiles of the whole split, as the reader learned them
    kept = None if limit is None else evenly_spaced(len(d), limit)
    if kept is not None:
        d, concepts = d.take(kept), concepts.take(kept)
    return RealImages(
        d.rgb01(),
        d.labels.clone(),
        d.fine.clone(),
        list(CLASS_NAMES),
        list(FINE_NAMES),
        list(FINE_TO_CLASS),
        list(MULTIFACETED),
        concepts,
        kept,
    )


def bootstrap(
    preset: str = "default",
    cache_dir: str | os.PathLike[str] | None = None,
    retrain: bool = False,
    log: Callable[[str], None] = print,
    members: int = 0,
) -> dict[str, Any]:
    """Load each component (cache, else shipped weights, else train; ``retrain``: train everything from
    scratch into the cache), evaluate the gates, write report.json into the cache folder. ``members``:
    also the first that many ensemble members (``target2`` ..., for ``models.ensemble``), each held to
    T's accuracy gate.

    Returns ``{"gates": {name: {"value", "threshold", "passed"}}, "passed": bool, "seconds": {stage: s},
    "cpu_seconds", "preset", "config_hash", "cache", "sources": {component: "cache"|"shipped"|"trained"},
    "train_seconds": {component: s}, "details": {...}}``; ``seconds`` is the wall time spent in this call
    (0 for a component not trained here), ``train_seconds`` the wall time each component took when it
    was trained (on the machine that trained it, for shipped weights).
    """
    from atlas.toyworld.cache import write_report
    from atlas.toyworld.gates import evaluate, evaluate_members, evaluate_reader

    world = ToyWorld(preset, cache_dir, log)
    t_start = time.perf_counter()
    names = [*ALL_COMPONENTS, *MEMBERS[:members]]
    for name in names:  # target first: generator and dae are trained on its codes
        world.module(name, retrain=retrain)
    t0, c0 = time.perf_counter(), time.process_time()
    gates, details = evaluate(world)
    reader_gates, reader_details = evaluate_reader(world)
    gates = gates | reader_gates | evaluate_members(world, list(MEMBERS[:members]))
    details = details | reader_details
    seconds = {k: round(world.seconds.get(k, 0.0), 1) for k in ("data_train", *names)}
    seconds["evaluate"] = round(time.perf_counter() - t0, 1)
    seconds["total"] = round(time.perf_counter() - t_start, 1)
    cpu = {k: round(v, 1) for k, v in world.cpu_seconds.items() if k != "data_test"}
    cpu["evaluate"] = round(time.process_time() - c0, 1)  # includes rendering the test split
    report = {
        "preset": preset,
        "config_hash": world.hash,
        "cache": str(world.dir),
        "sources": dict(world.sources),
        "gates": gates,
        "passed": all(g["passed"] for g in gates.values()),
        "seconds": seconds,
        "cpu_seconds": cpu,  # CPU time of the stages trained in this call (/ 2 threads ~ idle wall time)
        "train_seconds": {n: round(float(world.payload_meta(n).get("train_seconds", 0.0)), 1) for n in names},
        "details": details,
    }
    write_report(world.cfg, cache_dir, report)
    return report


def ship(preset: str = "default", log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train ``preset`` from scratch in a temporary cache, check its gates and, only when they pass, write
    it as the weights shipped with atlas (``atlas/toyworld/weights/<preset>-<hash>/``, see ``shipped.py``).

    Returns the bootstrap report plus ``"shipped"``: the folder written (``None`` when a gate failed).
    """
    import tempfile
    from pathlib import Path

    from atlas.toyworld.shipped import write_shipped

    with tempfile.TemporaryDirectory(prefix="atlas-ship-") as tmp:
        t0, c0 = time.perf_counter(), time.process_time()
        report = bootstrap(preset, tmp, retrain=True, log=log)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if not report["passed"]:
            log(f"toyworld[{preset}]: a gate failed; nothing shipped")
            return {**report, "shipped": None}
        made = _made_record(f"atlas bootstrap --preset {preset} --retrain --ship", report, wall, cpu)
        world = ToyWorld(preset, tmp, log)
        dest = write_shipped(Path(world.dir), world.cfg, report, made, log=log)
    return {**report, "shipped": str(dest)}


def _made_record(default_command: str, report: dict[str, Any], wall: float, cpu: float) -> dict[str, Any]:
    """How shipped weights were made: the command, the machine, the times (the manifest's ``made``)."""
    import shlex
    import sys

    from atlas.toyworld.machine import machine_info

    command = "atlas " + shlex.join(sys.argv[1:]) if sys.argv and "atlas" in sys.argv[0] else None
    return {
        "command": command or default_command,
        "machine": machine_info(),
        "seconds": report["seconds"],
        "cpu_seconds": report["cpu_seconds"],
        "wall_seconds_total": round(wall, 1),
        "cpu_seconds_total": round(cpu, 1),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }


def ship_reader(preset: str = "default", log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train only the attribute reader from scratch in a temporary cache, check its gates and, only when they
    pass, add it to the preset's shipped weights (``shipped.add_shipped_reader``: T, J, G and the DAE stay
    as they are). Returns {"gates", "passed", "seconds", "cpu_seconds", "preset", "config_hash",
    "reader_hash", "sources", "shipped": the folder or None}."""
    import tempfile
    from pathlib import Path

    from atlas.toyworld.gates import evaluate_reader
    from atlas.toyworld.presets import reader_hash
    from atlas.toyworld.shipped import add_shipped_reader

    with tempfile.TemporaryDirectory(prefix="atlas-ship-reader-") as tmp:
        world = ToyWorld(preset, tmp, log)
        t0, c0 = time.perf_counter(), time.process_time()
        world.module("reader", retrain=True)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        gates, details = evaluate_reader(world)
        report = {
            "preset": preset,
            "config_hash": world.hash,
            "reader_hash": reader_hash(world.cfg),
            "sources": dict(world.sources),
            "gates": gates,
            "passed": all(g["passed"] for g in gates.values()),
            "seconds": {"reader": round(world.seconds["reader"], 1)},
            "cpu_seconds": {"reader": round(world.cpu_seconds["reader"], 1)},
            "details": details,
        }
        if not report["passed"]:
            log(f"toyworld[{preset}]: a reader gate failed; nothing shipped")
            return {**report, "shipped": None}
        made = _made_record(f"atlas bootstrap --preset {preset} --ship-reader", report, wall, cpu)
        dest = add_shipped_reader(Path(world.dir), world.cfg, gates, made)
    return {**report, "shipped": str(dest)}
