"""Result records of the sampling engine (dataclasses; images are uint8 HWC numpy arrays, canonical RGB).

``UnitResult`` -> one ``units`` row; each ``ChainResult`` -> one ``chains`` row, its ``ImageRecord``s ->
``images`` rows, its ``trajectory`` -> ``steps`` rows, its ``final_activations`` -> the ``activations`` row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from atlas.sampling.concepts import UnitLabel


@dataclass
class ImageRecord:
    step: int
    image: np.ndarray  # (H, W, 3) uint8, canonical RGB (spaces.to_uint8_images)
    activation: float  # the unit's raw value (at its position / spatial mean for conv units)
    log_prob: float  # log-softmax of the unit across its layer (at the same position)
    rank: int  # 0 = the unit is the top of its layer
    kind: Literal["last", "best", "snapshot", "real"] = "last"
    natural_percentile: float = float("nan")  # share of natural images driving the unit less (issue 16)
    path_z: float = float("nan")  # path similarity to the unit's natural top images, in natural spreads
    path_similarity: float = float("nan")  # mean cosine of its earlier-layer patterns with theirs
    path_percentile: float = float("nan")  # share of natural images further from the unit's path (off_path)
    manifold_percentile: float = float("nan")  # share of natural images G redraws worse (sampling.manifold)


@dataclass
class ChainResult:
    chain: int
    seed: int
    start: str  # how the chain started: "random", "mean", "real:<index>", "facet_seed:<k>", ...
    facet: int  # facet id within the unit (0-based; -1 before clustering / diverged)
    last: ImageRecord
    best: ImageRecord  # highest objective value seen (the objective the chain maximizes)
    best_step: int
    snapshots: list[ImageRecord]
    trajectory: list[dict]  # rows every record_every steps; keys in atlas.sampling.stats.TRAJECTORY_KEYS
    diverged: bool
    final_activations: torch.Tensor  # (U,) float32 CPU: the unit's whole layer for the last image
    seconds: float  # this chain's share of its batch's wall time
    features: torch.Tensor | None = None  # (F,) facet features of the last image (T's penultimate layer)
    path_patterns: dict[str, torch.Tensor] = field(default_factory=dict)  # layer -> (C,) of the last image
    last_code: torch.Tensor | None = None  # (D,) the target's code-layer activation E(x) of the last image
    stopped_step: int | None = None  # the step its unit reached sampler.stop_at (then it stays); None: never


@dataclass
class UnitResult:
    layer: str
    unit: int
    kind: str  # output | fc | conv
    spatial: str | None  # None, "mean" or "center (y,x)"
    objective: str  # description, e.g. "log_softmax[fc8:3]"
    method: str  # e.g. "dgn_am", "ppgn_h/dae", "pixel[blur=0.5/4]"
    facet_count: int
    chains: list[ChainResult] = field(default_factory=list)
    real_topk: list[tuple[int, float, np.ndarray]] = field(default_factory=list)  # (real index, act, image)
    real_names: dict[int, str] = field(default_factory=dict)  # real index -> its file in a user's folder
    best_activation: float = float("nan")
    best_log_prob: float = float("nan")
    best_rank: int = -1
    label: UnitLabel | None = None  # best concept on the labelled natural images (atlas.sampling.concepts)
    status: Literal["ok", "error"] = "ok"
    error: str | None = None
    composite: str | None = None  # a composite objective's expression ("3 - 5"); None for the layer's units
