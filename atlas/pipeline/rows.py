"""Sampling results -> rows of the store's tables (units, chains, images, steps, activations)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch

from atlas.sampling.concepts import UnitLabel, picture_flags
from atlas.sampling.results import ImageRecord, UnitResult
from atlas.store import encode_png

if TYPE_CHECKING:
    from atlas.toyworld.reading import ReaderVerdict


def _num(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else float(x)


def _image_row(
    unit: int,
    chain: int | None,
    rec: ImageRecord,
    kind: str,
    facet: int | None,
    concepts: list[str] | None = None,
) -> dict[str, Any]:
    h, w = rec.image.shape[:2]
    return {
        "unit": unit,
        "chain": chain,
        "kind": kind,
        "step": rec.step,
        "facet": facet,
        "real_index": None,
        "real_name": None,
        "png": encode_png(rec.image),
        "width": w,
        "height": h,
        "activation": _num(rec.activation),
        "log_prob": _num(rec.log_prob),
        "rank": rec.rank,
        "natural_percentile": _num(rec.natural_percentile),
        "path_z": _num(rec.path_z),
        "path_similarity": _num(rec.path_similarity),
        "path_percentile": _num(rec.path_percentile),
        "manifold_percentile": _num(rec.manifold_percentile),
        "reader_concepts": concepts,
        "flags": picture_flags(rec.natural_percentile, rec.path_percentile, rec.manifold_percentile),
    }


def _activation_row(unit: int, chain: int, values: torch.Tensor, full_max: int, top_k: int) -> dict[str, Any]:
    v = values.detach().float().cpu()
    k = min(top_k, v.numel())
    finite = torch.nan_to_num(v, nan=float("-inf"))
    top = torch.topk(finite, k)
    return {
        "unit": unit,
        "chain": chain,
        "values": v.tolist() if v.numel() <= full_max else None,
        "top_units": top.indices.tolist(),
        "top_values": top.values.tolist(),
    }


def _label_columns(label: UnitLabel | None) -> dict[str, Any]:
    if label is None:
        return {}
    return {
        "label": label.label,
        "label_score": _num(label.score),
        "label_best": label.best,
        "label_runner_up": label.runner_up,
        "label_margin": _num(label.margin),
        "label_top_share": _num(label.top_share),
        "label_cell": list(label.cell) if label.cell is not None else None,
        "dissection_label": label.dissection.label if label.dissection else None,
        "dissection_iou": _num(label.dissection.iou) if label.dissection else None,
        "tuning_concepts": [name for name, _, _ in label.tuning],
        "tuning_auroc": [_num(a) for _, a, _ in label.tuning],
        "tuning_mean": [_num(m) for _, _, m in label.tuning],
    }


def unit_rows(
    result: UnitResult,
    shard: str,
    *,
    steps: int,
    passes: int | None = None,
    keep_snapshots: bool,
    activations_full_max: int,
    activations_top_k: int,
    judge: dict[str, Any] | None = None,
    reader: ReaderVerdict | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """All rows for one unit; ``judge`` (toy world) holds judge_label / judge_correct / judge_prob,
    ``reader`` (toy world, ``atlas.toyworld.reading``) label_shown, reader_agreement and each synthetic
    picture's decoded concepts (``images.reader_concepts``); ``passes``: forward-pass equivalents each
    chain spent (``peers.passes_per_image``)."""
    u = result.unit
    rows: dict[str, list[dict[str, Any]]] = {
        "units": [],
        "chains": [],
        "images": [],
        "steps": [],
        "activations": [],
    }
    real_acts = [a for _, a, _ in result.real_topk]
    real_top1 = max(real_acts) if real_acts else None
    last_acts = [c.last.activation for c in result.chains if not c.diverged]
    ratio = (result.best_activation / real_top1) if real_top1 and real_top1 > 0 else None
    rows["units"].append(
        {
            "unit": u,
            "kind": result.kind,
            "spatial": result.spatial,
            "objective": result.objective,
            "composite": result.composite,
            "method": result.method,
            "n_chains": len(result.chains),
            "facet_count": result.facet_count,
            "best_activation": _num(result.best_activation),
            "best_log_prob": _num(result.best_log_prob),
            "best_rank": result.best_rank,
            "mean_last_activation": _num(sum(last_acts) / len(last_acts)) if last_acts else None,
            "real_top1_activation": _num(real_top1),
            "real_top9_mean": _num(sum(sorted(real_acts)[-9:]) / len(real_acts[-9:])) if real_acts else None,
            "activation_ratio": _num(ratio),
            "judge_label": (judge or {}).get("judge_label"),
            "judge_correct": (judge or {}).get("judge_correct"),
            "judge_prob": (judge or {}).get("judge_prob"),
            "label_shown": _num(reader.label_shown) if reader is not None else None,
            "reader_agreement": _num(reader.agreement) if reader is not None else None,
            "status": result.status,
            "error": result.error,
            "shard": shard,
            **_label_columns(result.label),
        }
    )
    for c in result.chains:
        rows["chains"].append(
            {
                "unit": u,
                "chain": c.chain,
                "seed": c.seed,
                "facet": c.facet,
                "method": result.method,
                "start": c.start,
                "final_activation": _num(c.last.activation),
                "final_log_prob": _num(c.last.log_prob),
                "final_rank": c.last.rank,
                "best_activation": _num(c.best.activation),
                "best_step": c.best_step,
                "stopped_step": c.stopped_step,
                "diverged": c.diverged,
                "seconds": c.seconds,
                "steps": steps,
                "passes": passes,
            }
        )
        read = reader.pictures if reader is not None else {}
        drawn = []  # a failed unit's chains drew nothing with a finite value: no pictures
        if result.status == "ok":
            drawn = [(c.last, "last", 0), (c.best, "best", 0)]
            drawn += [(s, "snapshot", i) for i, s in enumerate(c.snapshots)] if keep_snapshots else []
        for record, kind, i in drawn:
            rows["images"].append(_image_row(u, c.chain, record, kind, c.facet, read.get((c.chain, kind, i))))
        for t in c.trajectory:
            rows["steps"].append(
                {
                    "unit": u,
                    "chain": c.chain,
                    **{k: (_num(v) if isinstance(v, float) else v) for k, v in t.items()},
                }
            )
        rows["activations"].append(
            _activation_row(u, c.chain, c.final_activations, activations_full_max, activations_top_k)
        )
    for index, activation, image in result.real_topk:
        h, w = image.shape[:2]
        rows["images"].append(
            {
                "unit": u,
                "chain": None,
                "kind": "real",
                "step": None,
                "facet": None,
                "real_index": int(index),
                "real_name": result.real_names.get(int(index)),
                "png": encode_png(image),
                "width": w,
                "height": h,
                "activation": _num(activation),
                "log_prob": None,
                "rank": None,
            }
        )
    return rows


def merge_rows(parts: list[dict[str, list[dict[str, Any]]]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for part in parts:
        for table, rows in part.items():
            out.setdefault(table, []).extend(rows)
    return out
