"""Objectives: what a chain maximizes about its unit, for a whole batch of chains at once.

Usage::

    obj = Objective("log_softmax")
    obj.describe(unit)                       # -> "log_softmax[fc8:3]"
    values = layer_values(acts, units)       # (B, U): the unit's layer at the unit's position, per chain
    f = obj(values, index)                   # (B,): chain b's objective for its own unit index[b]

Variants (Nguyen, Yosinski & Clune, survey Table 4.2): ``raw`` activation (DGN-AM; may give non-selective
stimuli), ``softmax`` probability across the layer (ill-conditioned), ``log_softmax`` across the layer (the
condition term of PPGN, well-behaved: its gradient at the target is 1 - p). For conv units the "layer" is the
channel vector at the unit's position (``center``) or the spatial mean of every channel (``mean``).

Batching: chain b maximizes its own unit, so the batch objective is ``sum_b f_b``; images do not interact, so
its gradient w.r.t. chain b's input is chain b's own gradient.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from atlas.sampling.units import Unit

ObjectiveKind = Literal["raw", "softmax", "log_softmax"]


def layer_values(acts: torch.Tensor, units: list[Unit]) -> torch.Tensor:
    """Per-chain vector of the whole layer where its unit is read.

    acts: (B, U) for fc/output layers or (B, C, H, W) for conv layers; ``units[b]`` is chain b's unit.
    Returns (B, U) — for conv: (B, C) at each chain's position, or the spatial mean for ``spatial="mean"``.
    """
    if acts.dim() == 2:
        return acts
    if acts.dim() != 4:
        raise ValueError(
            f"layer activations of shape {tuple(acts.shape)} are neither (B, U) nor (B, C, H, W)"
        )
    b = acts.shape[0]
    if all(u.spatial == "mean" for u in units):
        return acts.mean(dim=(2, 3))  # (B, C)
    ys = torch.tensor([u.position[0] if u.position else 0 for u in units], device=acts.device)
    xs = torch.tensor([u.position[1] if u.position else 0 for u in units], device=acts.device)
    at_pos = acts[torch.arange(b, device=acts.device), :, ys, xs]  # (B, C)
    if any(u.spatial == "mean" for u in units):
        is_mean = torch.tensor([u.spatial == "mean" for u in units], device=acts.device).view(b, 1)
        at_pos = torch.where(is_mean, acts.mean(dim=(2, 3)), at_pos)
    return at_pos


@dataclass(frozen=True)
class Objective:
    kind: ObjectiveKind = "raw"

    def describe(self, unit: Unit) -> str:
        """Human-readable description stored with every result, e.g. ``raw[conv3:17 @ (4,4)]``."""
        return f"{self.kind}[{unit.describe()}]"

    def __call__(self, values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """values: (B, U) layer vectors; index: (B,) long unit per chain -> (B,) objective per chain."""
        values = values.float()
        if self.kind == "raw":
            out = values
        elif self.kind == "softmax":
            out = torch.softmax(values, dim=1)
        else:
            out = torch.log_softmax(values, dim=1)
        return out.gather(1, index.view(-1, 1)).squeeze(1)


def unit_readout(values: torch.Tensor, index: torch.Tensor) -> dict[str, torch.Tensor]:
    """Statistics of each chain's unit within its layer vector (no gradients).

    values: (B, U); index: (B,). Returns activation (B,), log_prob (B,) (log-softmax across the layer),
    rank (B,) (0 = the unit is the top of its layer; ties count for the unit) and top_competitor (B,) (the
    strongest competing unit).
    """
    v = values.detach().float()
    idx = index.view(-1, 1)
    act = v.gather(1, idx).squeeze(1)
    log_prob = torch.log_softmax(v, dim=1).gather(1, idx).squeeze(1)
    rank = (v > act.view(-1, 1)).sum(1)
    others = v.scatter(1, idx, float("-inf"))
    top_other = others.argmax(1) if v.shape[1] > 1 else torch.zeros_like(index)
    return {"activation": act, "log_prob": log_prob, "rank": rank, "top_competitor": top_other}
