"""Objectives: what a chain maximizes about its unit, for a whole batch of chains at once.

Usage::

    obj = Objective("log_softmax")
    obj.describe(unit)                       # -> "log_softmax[fc8:3]"
    values = layer_values(acts, units)       # (B, U): the unit's layer at the unit's position, per chain
    f = obj(values, index)                   # (B,): chain b's objective for its own unit index[b]

    both = Objective("raw", (parse_composite("3 + 5", 10),), n_units=10)   # objective algebra
    both(values, torch.tensor([10]))         # unit 10 = the first composite: raw_3 + raw_5

Variants (Nguyen, Yosinski & Clune, survey Table 4.2): ``raw`` activation (DGN-AM; may give non-selective
stimuli), ``softmax`` probability across the layer (ill-conditioned), ``log_softmax`` across the layer (the
condition term of PPGN, well-behaved: its gradient at the target is 1 - p). For conv units the "layer" is the
channel vector at the unit's position (``center``) or the spatial mean of every channel (``mean``).

**Objective algebra** (``layers[].objectives``): a composite objective is a weighted sum of the layer's units
``sum_i w_i g(v)_i`` with g the variant above — two units at once (``3 + 5``), a contrast (``3 - 5``), any
weights (``0.7*3 + 0.3*7``). Composites are numbered after the layer's own units (U, U+1, ...) so they are
stored, labelled and browsed like units; their ``objective`` column spells the expression.

Batching: chain b maximizes its own unit, so the batch objective is ``sum_b f_b``; images do not interact, so
its gradient w.r.t. chain b's input is chain b's own gradient.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

from atlas.config.composites import MAX_WEIGHT, Composite, parse_composite
from atlas.sampling.units import Unit

__all__ = ["MAX_WEIGHT", "Composite", "Objective", "layer_values", "parse_composite", "variant"]

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


def log_softmax(values: torch.Tensor) -> torch.Tensor:
    """(B, U) -> (B, U) log p = v - logsumexp(v) across the layer, exact at the top as well.

    Plain ``log_softmax`` rounds the top unit's log p to exactly 0 in float32 once its margin over the rest
    passes ~17 (a confident class: every such unit would tie at 0 in ``best_log_prob``). The top unit's
    value is computed as -softplus(logsumexp(others) - v_top), which keeps e.g. -2e-22 for a margin of 50;
    the other units' values (log p < -log 2) are plain log-softmax."""
    out = torch.log_softmax(values, dim=1)
    if values.shape[1] < 2:
        return out
    top = values.argmax(dim=1, keepdim=True)  # (B, 1)
    others = torch.logsumexp(values.scatter(1, top, float("-inf")), dim=1, keepdim=True)  # (B, 1)
    return out.scatter(1, top, -torch.nn.functional.softplus(others - values.gather(1, top)))


def released_log_softmax(values: torch.Tensor) -> torch.Tensor:
    """(B, U) -> (B, U): log p as :func:`log_softmax`, but with the released PPGN sampler's gradient: unit u's
    column moves v_u alone, by (1 - p_u) (``sampler.py``: a one-hot of ``1 - probs`` at the unit), where the
    exact gradient of Eq. 11 also pushes every other unit down by its p. Straight-through: the value is
    exact, only the gradient differs."""
    log_p = log_softmax(values)  # (B, U)
    gain = (1 - log_p.exp()).detach()
    return log_p.detach() + gain * (values - values.detach())


def variant(values: torch.Tensor, kind: ObjectiveKind) -> torch.Tensor:
    """(B, U) layer vectors -> (B, U) g(v), g the objective variant across the layer (float32)."""
    values = values.float()
    if kind == "raw":
        return values
    if kind == "softmax":
        return torch.softmax(values, dim=1)
    return log_softmax(values)


@dataclass(frozen=True)
class Objective:
    kind: ObjectiveKind = "raw"
    composites: tuple[Composite, ...] = ()  # units n_units, n_units + 1, ... of the layer
    n_units: int = 0  # the layer's own units (needed with composites)
    gradient: Literal["exact", "released"] = "exact"  # log_softmax only: ppgn_h.condition
    _weights: dict = field(default_factory=dict, compare=False, repr=False)  # per-device tensors, cached

    def describe(self, unit: Unit) -> str:
        """Human-readable description stored with every result, e.g. ``raw[conv3:17 @ (4,4)]`` or, for a
        composite, ``raw[fc8: 3 - 5]`` (``raw[conv3: 3 - 5 @ (4,4)]``: read where its units are)."""
        comp = self.composite(unit.index)
        return f"{self.kind}[{unit.describe(comp.text if comp is not None else None)}]"

    def composite(self, index: int) -> Composite | None:
        """The composite objective behind unit ``index`` (None for the layer's own units)."""
        k = index - self.n_units
        return self.composites[k] if self.composites and 0 <= k < len(self.composites) else None

    def weights(self, device: torch.device) -> torch.Tensor:
        """(U, K) weight of layer unit u in composite k."""
        key = str(device)
        if key not in self._weights:
            w = torch.zeros(self.n_units, len(self.composites))
            for k, comp in enumerate(self.composites):
                for unit, weight in comp.terms:
                    w[unit, k] = weight
            self._weights[key] = w.to(device)
        return self._weights[key]

    def extend(self, per_unit: torch.Tensor) -> torch.Tensor:
        """(B, U) per-unit values -> (B, U + K) with each composite's weighted sum appended."""
        if not self.composites:
            return per_unit
        return torch.cat([per_unit, per_unit @ self.weights(per_unit.device)], dim=1)

    def __call__(self, values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """values: (B, U) layer vectors; index: (B,) long unit per chain -> (B,) objective per chain."""
        released = self.gradient == "released" and self.kind == "log_softmax"
        out = released_log_softmax(values.float()) if released else variant(values, self.kind)
        return self.extend(out).gather(1, index.view(-1, 1)).squeeze(1)

    def readout(self, values: torch.Tensor, index: torch.Tensor) -> dict[str, torch.Tensor]:
        """``unit_readout`` for this layer's units and composites (a composite's activation and log_prob
        are its weighted sums; its rank and competitor are those of its first term's unit)."""
        if not self.composites:
            return unit_readout(values, index)
        v = values.detach().float()
        key = f"first:{v.device}"  # each composite's first term's unit (K,), cached per device
        if key not in self._weights:
            self._weights[key] = torch.tensor([c.terms[0][0] for c in self.composites], device=v.device)
        first = self._weights[key]
        is_comp = index >= self.n_units
        primary = torch.where(is_comp, first[(index - self.n_units).clamp(0, len(first) - 1)], index)
        out = unit_readout(v, primary)
        idx = index.view(-1, 1)
        out["activation"] = self.extend(v).gather(1, idx).squeeze(1)
        out["log_prob"] = self.extend(log_softmax(v)).gather(1, idx).squeeze(1)
        return out


def unit_readout(values: torch.Tensor, index: torch.Tensor) -> dict[str, torch.Tensor]:
    """Statistics of each chain's unit within its layer vector (no gradients).

    values: (B, U); index: (B,). Returns activation (B,), log_prob (B,) (log-softmax across the layer),
    rank (B,) (0 = the unit is the top of its layer; ties count for the unit) and top_competitor (B,) (the
    strongest competing unit).
    """
    v = values.detach().float()
    idx = index.view(-1, 1)
    act = v.gather(1, idx).squeeze(1)
    log_prob = log_softmax(v).gather(1, idx).squeeze(1)
    rank = (v > act.view(-1, 1)).sum(1)
    others = v.scatter(1, idx, float("-inf"))
    top_other = others.argmax(1) if v.shape[1] > 1 else torch.zeros_like(index)
    return {"activation": act, "log_prob": log_prob, "rank": rank, "top_competitor": top_other}


def diversity_features(acts: torch.Tensor) -> torch.Tensor:
    """What the diversity term compares (Lucid's ``diversity``): conv (B, C, H, W) -> Gram matrices
    (B, C*C) (style: which channels fire together); fc (B, U) as it is."""
    a = acts.float()
    if a.dim() == 4:
        flat = a.flatten(2)  # (B, C, HW)
        return (flat @ flat.transpose(1, 2) / flat.shape[2]).flatten(1)  # (B, C*C)
    return a.flatten(1)


def diversity_penalty(features: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """(B,) mean cosine similarity of each chain's features (B, F) to the other chains of its group (the
    same unit); 0 for a chain alone in its group. Subtracted (times ``sampler.diversity``) from the
    objective, it pushes a unit's chains apart (Lucid's diversity objective, Olah et al. 2017)."""
    f = torch.nn.functional.normalize(features.flatten(1), dim=1)
    sim = f @ f.T  # (B, B)
    same = (groups.view(-1, 1) == groups.view(1, -1)) & ~torch.eye(
        len(groups), dtype=torch.bool, device=f.device
    )
    return (sim * same).sum(1) / same.sum(1).clamp_min(1)
