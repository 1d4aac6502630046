"""Synthetic runs: realistic rows written through :class:`RunStore`, for tests, demos of the viewer and the
latency benchmark. No models involved; every number is drawn from a seeded generator.

Usage::

    from atlas.bench.synthetic_run import make_synthetic_run
    info = make_synthetic_run("/tmp/run", layers={"fc8": 10, "conv3": 16}, chains=4)

Each unit gets a "preferred stimulus" (a coloured shape on a textured background); its chains draw variations
of it (one per facet), with trajectories that climb and saturate, last/best/snapshot images, optional real
top-k images, whole-layer activations (narrow layers) or top-k pairs (wide layers), and a few diverged chains.

Truth columns (issue 16, ``truth=True``): each unit gets a concept label from a small toy vocabulary (about a
quarter of the units fall below the 0.85 AUROC threshold: null ``label``), a runner-up, a margin and a tuning
list of 6-10 concepts (AUROC descending, mean activation roughly following it); each kept synthetic picture
gets a ``natural_percentile`` against a per-unit natural distribution and the flag ``weak`` exactly when that
is below 0.99. They are drawn from a generator of their own, so every other value is the same either way.
``truth=False`` writes the shape of runs made before those columns existed (the files lack them).

Reader columns (``reader=True``, with ``truth``): each unit's ``label_shown`` (a multiple of 1/chains; null
for units without a label) and ``reader_agreement``, and every last and best picture's ``reader_concepts``
(its unit's best concept's parts plus a position and a size, as the attribute reader names them), from a
generator of their own. ``reader=False`` writes runs made after the labels but before the reader.
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import math
import os
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from atlas.config import config_data_hash
from atlas.pipeline.plan import plan_shards
from atlas.sampling.units import Unit
from atlas.store.manifest import read_json, write_json
from atlas.store.png import encode_png
from atlas.store.schema import TABLES
from atlas.store.writer import RunStore, parquet_bytes

SHAPES = ("disk", "ring", "square", "triangle", "cross", "bar")
ACTIVATIONS_FULL_MAX = 512  # wider layers store only top-k (unit, value) pairs

# truth columns (issue 16): a toy concept vocabulary like atlas.toyworld.concepts'
CLASSES = ("disk", "ring", "square", "triangle", "cross", "frame", "half_disk", "bowtie", "pill", "hook")
SHAPE_CLASS = {"disk": "disk", "ring": "ring", "square": "square", "triangle": "triangle", "cross": "cross",
               "bar": "pill"}  # fmt: skip
COLOURS = ("red", "orange", "yellow", "green", "cyan", "blue", "magenta", "white")
HUE_EDGES = (0.04, 0.11, 0.2, 0.42, 0.55, 0.75, 0.92)  # hue -> COLOURS index (red again above the last)
POSITIONS = tuple(f"pos:{r}-{c}" for r in ("top", "middle", "bottom") for c in ("left", "centre", "right"))
SIZES = ("size:small", "size:medium", "size:large")
LABEL_THRESHOLD = 0.85  # as atlas.sampling.concepts.LABEL_THRESHOLD
WEAK_PERCENTILE = 0.99  # as atlas.sampling.concepts.WEAK_PERCENTILE
TRUTH_COLUMNS = {
    "units": ("label", "label_score", "label_best", "label_runner_up", "label_margin", "tuning_concepts",
              "tuning_auroc", "tuning_mean", "label_cell"),
    "images": ("natural_percentile", "flags"),
}  # fmt: skip
READER_COLUMNS = {"units": ("label_shown", "reader_agreement"), "images": ("reader_concepts",)}
ALL_TRUTH_COLUMNS = {t: (*TRUTH_COLUMNS[t], *READER_COLUMNS[t]) for t in TRUTH_COLUMNS}


def _kind(layer: str) -> str:
    if layer.startswith("conv") or layer.startswith("features"):
        return "conv"
    return "output" if layer in ("fc8", "logits", "classifier.6") else "fc"


def render_stimulus(rng: np.random.Generator, shape: str, hue: float, size: int = 48, jitter: float = 1.0):
    """A uint8 (size, size, 3) picture: ``shape`` in colour ``hue`` on a soft textured background."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / (size - 1) * 2 - 1  # [-1, 1]
    cx, cy = rng.normal(0, 0.12 * jitter, 2)
    r = 0.45 + rng.normal(0, 0.05 * jitter)
    angle = rng.uniform(0, math.pi) * jitter
    x, y = xx - cx, yy - cy
    xr, yr = x * math.cos(angle) + y * math.sin(angle), -x * math.sin(angle) + y * math.cos(angle)
    d = np.sqrt(x * x + y * y)
    if shape == "disk":
        sdf = d - r
    elif shape == "ring":
        sdf = np.abs(d - r) - 0.12
    elif shape == "square":
        sdf = np.maximum(np.abs(xr), np.abs(yr)) - r * 0.8
    elif shape == "triangle":
        sdf = np.maximum(np.abs(xr) * 0.866 + yr * 0.5, -yr) - r * 0.5
    elif shape == "cross":
        sdf = np.minimum(
            np.maximum(np.abs(xr) - 0.12, np.abs(yr) - r), np.maximum(np.abs(yr) - 0.12, np.abs(xr) - r)
        )
    else:  # bar
        sdf = np.maximum(np.abs(xr) - r, np.abs(yr) - 0.14)
    mask = 1.0 / (1.0 + np.exp(sdf * 30.0))  # soft edge
    fg = np.array(colorsys.hsv_to_rgb(hue % 1.0, 0.75, 0.95), dtype=np.float32)
    bg_hue = (hue + 0.5 + rng.normal(0, 0.05)) % 1.0
    bg = np.array(colorsys.hsv_to_rgb(bg_hue, 0.35, 0.35), dtype=np.float32)
    fx, fy = rng.uniform(2, 6, 2)
    phase = rng.uniform(0, 2 * math.pi, 2)
    texture = 0.5 + 0.25 * (np.sin(xx * fx + phase[0]) + np.sin(yy * fy + phase[1]))
    img = bg[None, None, :] * (0.6 + 0.4 * texture[..., None])
    shade = (0.85 + 0.15 * texture[..., None]) * mask[..., None]
    img = img * (1 - mask[..., None]) + fg[None, None, :] * shade
    img += rng.normal(0, 0.015, img.shape).astype(np.float32)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def _layer_seed(seed: int, layer: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{layer}".encode()).digest()[:4], "little")


def make_synthetic_run(
    run_dir: str | os.PathLike[str],
    layers: Mapping[str, int] | None = None,
    *,
    chains: int = 4,
    steps: int = 200,
    record_every: int = 10,
    images_per_chain: int = 4,
    real_k: int = 4,
    units_per_shard: int = 8,
    methods: Sequence[str] = ("dgn_am",),
    image_size: int = 48,
    png_pool: int | None = None,
    diverged_rate: float = 0.03,
    seed: int = 0,
    max_shards: int | None = None,
    config_extra: Mapping[str, Any] | None = None,
    truth: bool = True,
    reader: bool = True,
) -> dict[str, Any]:
    """Write a complete synthetic run to ``run_dir``; returns row counts and the run's shape.

    ``images_per_chain`` counts last + best + snapshots (at least 2). ``methods``: each unit runs ``chains``
    chains per method (the Compare page's "two methods" case). ``png_pool``: reuse that many pre-encoded
    PNGs instead of rendering every image (fast, for the 100k-image benchmark). ``max_shards`` stops early
    and leaves the run "running" (a run still being written). ``truth=False``: no truth columns (issue 16)
    in the files, as in runs written before them; ``reader=False``: labels but no reader columns.
    """
    layers = dict(layers or {"fc8": 10, "conv3": 16})
    images_per_chain = max(2, images_per_chain)
    n_snap = images_per_chain - 2
    store = RunStore(run_dir)
    config = {
        "name": Path(run_dir).name,
        "synthetic": True,
        "layers": layers,
        "sampler": {"methods": list(methods), "chains": chains, "steps": steps, "record_every": record_every},
        "seed": seed,
        **dict(config_extra or {}),
    }
    config_hash = config_data_hash(config)  # what `atlas verify` checks run.json's config against
    plan = plan_shards({layer: list(range(n)) for layer, n in layers.items()}, units_per_shard)  # as a run's
    store.init_run(
        {
            "config": config,
            "config_hash": config_hash,
            "fingerprints": {"target": "synthetic:" + config_hash[:8], "generator": "synthetic"},
            "versions": {"atlas": "synthetic"},
            "git_sha": "0" * 40,
            "models": {"target": "synthetic:target", "generator": "synthetic:generator"},
            "planned_shards": len(plan),
            "unit_groups": {layer: [list(range(n))] for layer, n in layers.items()},
            "units_per_shard": units_per_shard,
        }
    )
    pool_rng = np.random.default_rng(seed + 7)
    pool = (
        [
            encode_png(render_stimulus(pool_rng, SHAPES[i % len(SHAPES)], i / png_pool, image_size))
            for i in range(png_pool)
        ]
        if png_pool
        else None
    )
    totals: dict[str, int] = {}
    done = 0
    for shard in plan:
        if max_shards is not None and done >= max_shards:
            break
        layer, start, stop = shard.layer, shard.units[0], shard.units[-1] + 1
        rng = np.random.default_rng([_layer_seed(seed, layer), start])
        n_layer = layers[layer]
        rows = _shard_rows(
            rng, layer, range(start, stop), n_layer, chains, steps, record_every, n_snap, real_k,
            methods, image_size, pool, diverged_rate,
        )  # fmt: skip
        if truth:
            add_truth(np.random.default_rng([_layer_seed(seed, layer), start, 16]), layer, rows, image_size)
        if truth and reader:
            add_reading(np.random.default_rng([_layer_seed(seed, layer), start, 17]), rows)
        counts = store.write_shard(shard.id, layer, rows, meta={"seconds": float(rng.uniform(2, 6))})
        if not truth:
            _drop_truth_columns(store, layer, shard.id, ALL_TRUTH_COLUMNS)
        elif not reader:
            _drop_truth_columns(store, layer, shard.id, READER_COLUMNS)
        for table, n in counts.items():
            totals[table] = totals.get(table, 0) + n
        done += 1
    if max_shards is None or done >= len(plan):
        store.finalize({"synthetic": True, "rows": totals})
    return {
        "run_dir": str(run_dir),
        "rows": totals,
        "shards": done,
        "planned_shards": len(plan),
        "layers": layers,
    }


def _trajectory(
    rng: np.random.Generator,
    unit: int,
    chain: int,
    record: list[int],
    steps: int,
    tau: float,
    peak: float,
    n_layer: int,
    diverged: bool,
) -> tuple[list[dict[str, Any]], tuple[float, int, float | None, int | None]]:
    """A chain's ``steps`` rows (a saturating climb, NaN after half-way when it diverges) and its best
    (activation, step, log_prob, rank)."""
    rows: list[dict[str, Any]] = []
    best: tuple[float, int, float | None, int | None] = (-math.inf, 0, None, None)
    for step in record:
        act = peak * (1 - math.exp(-step / tau)) + rng.normal(0, 0.04 * peak)
        lp = -max(0.02, 3.5 * math.exp(-step / tau) + rng.normal(0, 0.05))
        rank = max(0, round(n_layer * 0.3 * math.exp(-step / (0.5 * tau))))
        if diverged and step > steps // 2:
            act, lp, rank = math.nan, math.nan, None
        if not math.isnan(act) and act > best[0]:
            best = (act, step, lp, rank)
        rows.append(
            {
                "unit": unit, "chain": chain, "step": step, "activation": act, "log_prob": lp, "rank": rank,
                "top_competitor": int((unit + 1 + rng.integers(0, 3)) % n_layer) if rank else
                int((unit + 1) % n_layer),
                "code_norm": 20 + 5 * math.exp(-step / tau) + rng.normal(0, 0.3),
                "prior_residual": 4 * math.exp(-step / tau) + 0.3 + abs(rng.normal(0, 0.05)),
                "grad_norm": peak * math.exp(-step / tau) + 0.05,
                "image_change": 0.2 * math.exp(-step / tau) + 0.005,
            }
        )  # fmt: skip
    return rows, best


def _image_rows(
    kept: list[tuple[str, int, float | None, float | None, int | None, float]],
    common: dict[str, Any],
    diverged: bool,
    png: Callable[[float, float], bytes],
    hue: float,
) -> list[dict[str, Any]]:
    """``images`` rows of one chain: (kind, step, activation, log_prob, rank, jitter) each; a diverged
    chain's last picture is drawn off-hue and noisy."""
    rows = []
    for img_kind, step, act, lp, rank, jitter in kept:
        bad = img_kind == "last" and diverged
        rows.append(
            {
                **common, "kind": img_kind, "step": step,
                "png": png(hue + (0.5 if bad else 0), 3.0 if bad else jitter),
                "activation": None if act is None or math.isnan(act) else act,
                "log_prob": None if lp is None or math.isnan(lp) else lp, "rank": rank,
            }
        )  # fmt: skip
    return rows


def _shard_rows(
    rng: np.random.Generator,
    layer: str,
    units: range,
    n_layer: int,
    chains: int,
    steps: int,
    record_every: int,
    n_snap: int,
    real_k: int,
    methods: Sequence[str],
    size: int,
    pool: list[bytes] | None,
    diverged_rate: float,
) -> dict[str, list[dict[str, Any]]]:
    kind = _kind(layer)
    out: dict[str, list[dict[str, Any]]] = {t: [] for t in TABLES}
    record = list(range(0, steps + 1, record_every))
    snap_steps = [record[int(i)] for i in np.linspace(1, len(record) - 2, n_snap)] if n_snap else []

    def png(shape: str, hue: float, jitter: float) -> bytes:
        if pool is not None:
            return pool[int(rng.integers(len(pool)))]
        return encode_png(render_stimulus(rng, shape, hue, size, jitter))

    for unit in units:
        shape = SHAPES[unit % len(SHAPES)]
        hue = (unit * 0.61803) % 1.0
        facet_count = int(rng.choice([1, 1, 2, 2, 3]))
        facet_hues = [hue + 0.12 * f for f in range(facet_count)]
        scale = float(rng.lognormal(1.5, 0.4))  # how strongly this unit can be driven
        real_top = [float(scale * rng.uniform(0.55, 0.8)) for _ in range(real_k)]
        real_top.sort(reverse=True)
        unit_best, unit_lp, unit_rank, lasts = -math.inf, None, None, []
        chain_id = 0
        for method in methods:
            strength = 1.0 if method == methods[0] else 0.8
            for _ in range(chains):
                facet = chain_id % facet_count
                diverged = bool(rng.random() < diverged_rate)
                tau = rng.uniform(0.15, 0.4) * steps
                peak = scale * strength * rng.uniform(0.8, 1.2)
                rows, (best_act, best_step, best_lp, best_rank) = _trajectory(
                    rng, unit, chain_id, record, steps, tau, peak, n_layer, diverged
                )
                out["steps"].extend(rows)
                final = out["steps"][-1]
                chain_hue = facet_hues[facet]
                seconds = float(rng.uniform(0.5, 2.0))
                out["chains"].append(
                    {
                        "unit": unit, "chain": chain_id, "seed": int(rng.integers(2**31)), "facet": facet,
                        "method": method, "start": "facet-seeded" if facet_count > 1 else "random",
                        "final_activation": None if diverged else final["activation"],
                        "final_log_prob": None if diverged else final["log_prob"],
                        "final_rank": final["rank"], "best_activation": best_act, "best_step": best_step,
                        "diverged": diverged, "seconds": seconds, "steps": steps,
                        "passes": 3 * steps,  # forward-pass equivalents (peers.passes_per_image)
                        # every third unit's first chain as if it reached sampler.stop_at at its best step
                        "stopped_step": best_step if unit % 3 == chain_id == 0 and not diverged else None,
                    }
                )  # fmt: skip
                if not diverged:
                    lasts.append(final["activation"])
                if best_act > unit_best:
                    unit_best, unit_lp, unit_rank = best_act, best_lp, best_rank
                kept = [("best", best_step, best_act, best_lp, best_rank, 0.4)]
                kept.append(("last", steps, final["activation"], final["log_prob"], final["rank"], 0.5))
                for s in snap_steps:
                    frac = 1 - math.exp(-s / tau)
                    kept.append(("snapshot", s, peak * frac, -3.5 * (1 - frac), None, 1.5 - frac))
                common = {"unit": unit, "chain": chain_id, "facet": facet, "width": size, "height": size}
                out["images"].extend(_image_rows(kept, common, diverged, partial(png, shape), chain_hue))
                values = rng.normal(0, scale * 0.15, n_layer).astype(np.float32)
                values[unit] = 0 if diverged else final["activation"]
                top = np.argsort(-values)[:5]
                out["activations"].append(
                    {
                        "unit": unit,
                        "chain": chain_id,
                        "values": values if n_layer <= ACTIVATIONS_FULL_MAX else None,
                        "top_units": top.astype(np.int32),
                        "top_values": values[top],
                    }
                )
                chain_id += 1
        for i, act in enumerate(real_top):
            out["images"].append(
                {
                    "unit": unit, "chain": None, "kind": "real", "step": None, "facet": i % facet_count,
                    "real_index": int(rng.integers(0, 3000)),
                    "png": png(shape, facet_hues[i % facet_count], 0.8), "width": size, "height": size,
                    "activation": act, "log_prob": None, "rank": None,
                }
            )  # fmt: skip
        judge_p = float(np.clip(rng.beta(5, 2), 0, 1))
        conv = kind == "conv"  # read at the centre of a 9 x 9 map, as a real run writes it
        where = Unit(layer, unit, kind, "center" if conv else None, (4, 4) if conv else None)
        out["units"].append(
            {
                "unit": unit, "kind": kind, "spatial": where.spatial_label,
                "objective": f"{'log_softmax' if kind == 'output' else 'raw'}[{where.describe()}]",
                "method": methods[0], "n_chains": chains * len(methods), "facet_count": facet_count,
                "best_activation": unit_best, "best_log_prob": unit_lp, "best_rank": unit_rank,
                "mean_last_activation": float(np.mean(lasts)) if lasts else None,
                "real_top1_activation": real_top[0] if real_top else None,
                "real_top9_mean": float(np.mean(real_top)) if real_top else None,
                "activation_ratio": unit_best / real_top[0] if real_top else None,
                "judge_label": CLASSES[unit % len(CLASSES)] if kind == "output" else None,
                "judge_correct": bool(judge_p > 0.5) if kind == "output" else None,
                "judge_prob": judge_p if kind == "output" else None,
                "status": "ok", "error": None,
            }
        )  # fmt: skip
    return out


# ---- truth columns (issue 16) ---------------------------------------------------------------------------
def _colour(hue: float) -> str:
    i = int(np.searchsorted(HUE_EDGES, hue % 1.0))
    return COLOURS[i] if i < len(HUE_EDGES) else COLOURS[0]


def _best_concept(rng: np.random.Generator, layer: str, unit: int) -> str:
    """The concept a unit is built to detect: its stimulus' class, colour or both (output units: class)."""
    cls = SHAPE_CLASS[SHAPES[unit % len(SHAPES)]]
    colour = _colour(unit * 0.61803)
    kind = _kind(layer)
    if kind == "output":
        return f"class:{CLASSES[unit % len(CLASSES)]}"
    choices = [f"colour:{colour}", f"{colour} {cls}", f"class:{cls}"]
    if kind == "conv":  # conv units: also place-bound concepts (atlas.sampling.concepts.located)
        choices += [POSITIONS[unit % len(POSITIONS)], f"colour:{colour}@here", "here:interior"]
    return str(choices[int(rng.integers(len(choices)))])


def conv_cell(image_size: int, map_side: int = 8) -> list[int]:
    """A conv unit's cell [y0, y1, x0, x1]: the centre position of a ``map_side`` map over the picture."""
    c = map_side // 2
    lo, hi = c * image_size // map_side, (c + 1) * image_size // map_side
    return [lo, hi, lo, hi]


def _vocabulary() -> list[str]:
    classes = [f"class:{c}" for c in CLASSES]
    colours = [f"colour:{c}" for c in COLOURS]
    pairs = [f"{c} {k}" for c in COLOURS[:4] for k in CLASSES[:5]]
    return [*classes, *colours, *POSITIONS, *SIZES, "distractor", *pairs]


VOCABULARY = _vocabulary()


def unit_truth(
    rng: np.random.Generator, layer: str, unit: int, best_activation: float, image_size: int = 48
) -> dict[str, Any]:
    """A units row's truth columns: label (null below LABEL_THRESHOLD), score, runner-up, margin and a
    tuning list of 6-10 concepts, best first (AUROC descending; mean activation roughly following it);
    conv units also the cell they are read at."""
    best = _best_concept(rng, layer, unit)
    labelled = rng.random() < 0.75
    score = float(rng.uniform(0.86, 0.99) if labelled else rng.uniform(0.62, 0.84))
    n = int(rng.integers(6, 11))
    others = [c for c in VOCABULARY if c != best]
    picked = [others[int(i)] for i in rng.choice(len(others), size=n - 1, replace=False)]
    drops = np.cumsum(rng.uniform(0.005, 0.06, n - 1))
    aurocs = [score, *(max(0.5, score - float(d)) for d in drops)]
    scale = best_activation if math.isfinite(best_activation) else 1.0
    means = [scale * (0.15 + 1.4 * (a - 0.5)) * float(rng.uniform(0.95, 1.05)) for a in aurocs]
    return {
        "label": best if score >= LABEL_THRESHOLD else None, "label_score": score, "label_best": best,
        "label_runner_up": picked[0], "label_margin": score - aurocs[1],
        "tuning_concepts": [best, *picked], "tuning_auroc": aurocs, "tuning_mean": means,
        "label_cell": conv_cell(image_size) if _kind(layer) == "conv" else None,
    }  # fmt: skip


def natural_percentile(activation: float | None, natural_q99: float) -> float | None:
    """Share of natural images below ``activation``, for a unit whose natural 99th percentile is
    ``natural_q99`` (a steep logistic-like tail: 0.99 at the q99, about 1 well above it, 0 far below)."""
    if activation is None or not math.isfinite(activation) or natural_q99 <= 0:
        return None
    return float(np.clip(1 - (1 - WEAK_PERCENTILE) * math.exp(-6 * (activation / natural_q99 - 1)), 0, 1))


def picture_flags(percentile: float | None) -> str | None:
    """ "weak" when the picture drives its unit less than 99 % of natural images do, else "" (None: not
    checked, as a real image)."""
    if percentile is None:
        return None
    return "weak" if percentile < WEAK_PERCENTILE else ""


def add_truth(
    rng: np.random.Generator, layer: str, rows: dict[str, list[dict[str, Any]]], image_size: int = 48
) -> None:
    """Fill the truth columns of one shard's units and images rows in place (real images: no percentile)."""
    q99: dict[int, float] = {}
    for row in rows["units"]:
        best = row["best_activation"]
        row.update(unit_truth(rng, layer, row["unit"], best, image_size))
        # about one unit in five is hard to drive past its natural top 1 %: its pictures come out weak
        hard = rng.random() < 0.2
        q99[row["unit"]] = (best if math.isfinite(best) else 1.0) * float(
            rng.uniform(1.0, 1.3) if hard else rng.uniform(0.4, 0.8)
        )
    for img in rows["images"]:
        synthetic = img["kind"] != "real"
        p = natural_percentile(img["activation"], q99[img["unit"]]) if synthetic else None
        img["natural_percentile"], img["flags"] = p, picture_flags(p)


def add_reading(rng: np.random.Generator, rows: dict[str, list[dict[str, Any]]]) -> None:
    """Fill the reader columns of one shard's units and images rows in place (after :func:`add_truth`)."""
    best: dict[int, str] = {}
    for row in rows["units"]:
        n = max(1, int(row.get("n_chains") or 1))
        row["label_shown"] = int(rng.integers(0, n + 1)) / n if row.get("label") else None
        row["reader_agreement"] = float(rng.choice([0.6, 0.7, 0.8, 0.9, 1.0]))
        best[row["unit"]] = str(row.get("label_best") or "")
    for img in rows["images"]:
        if img["kind"] in ("last", "best"):  # as the worker: snapshots and real images are not read
            img["reader_concepts"] = _reading(rng, best[img["unit"]])


def _reading(rng: np.random.Generator, best: str) -> list[str]:
    """A picture's decoded concepts as the attribute reader names them (class, colour, position, size and
    sometimes distractor), showing the unit's best concept ``best``."""
    pick = lambda names: names[int(rng.integers(len(names)))]  # noqa: E731
    read = {
        "class": f"class:{pick(CLASSES)}",
        "colour": f"colour:{pick(COLOURS)}",
        "pos": pick(POSITIONS),
        "size": pick(SIZES),
    }
    here = best.endswith("@here") or best.startswith("here:")  # read at a conv unit's cell
    best = best.removesuffix("@here")
    colour, _, cls = best.partition(" ")
    for part in [f"colour:{colour}", f"class:{cls}"] if cls else [best]:
        read[part.partition(":")[0]] = part
    parts = ["here:object", "here:interior"] if here else []
    return [v for k, v in read.items() if k != "here"] + parts


def _drop_truth_columns(
    store: RunStore, layer: str, shard_id: str, columns_of: Mapping[str, Sequence[str]]
) -> None:
    """Rewrite a shard's units and images files without ``columns_of`` (table -> columns; an old run's
    shape)."""
    files = store.shard_files(shard_id)
    for table, columns in columns_of.items():
        rel = files.get(table)
        if rel is None:
            continue
        data = pq.read_table(io.BytesIO(store.loc.read_bytes(rel)))
        store.loc.write_bytes(
            rel, parquet_bytes(data.drop_columns([c for c in columns if c in data.column_names]))
        )
    marker = read_json(store.loc, store.marker_rel(shard_id))  # an old run's markers record no sizes
    marker.pop("sizes", None)
    write_json(store.loc, store.marker_rel(shard_id), marker)
