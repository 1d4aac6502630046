"""Best-of-pool starts: each chain starts from the best of P draws of its start mode.

Usage::

    candidates = starts.pool(layer, ids, gens)                       # (P, K, *S) or None (pool off)
    x0 = best_of_pool(param, readout, objective, units, candidates, setup)   # (K, *S)

A gradient chain stays near the region it starts in: from the mean code the toy generator draws one colour,
and the unit's gradient rarely carries a chain across to another (docs/truth.md, "label shown"). Scoring P
draws of the start distribution by the unit's own objective (one forward pass each, no gradient; the same
objective the chain then ascends, Eq. 2 of Nguyen et al. 2016 evaluated at t = 0) and starting from the best
is a zeroth-order search over start regions, as a genetic algorithm's first generation. It never looks at
the unit's real images: every unit draws from the same distribution.
"""

from __future__ import annotations

from typing import Any

import torch

from atlas.sampling.objectives import layer_values
from atlas.sampling.units import Unit


@torch.no_grad()
def best_of_pool(
    param: Any,
    readout: Any,
    objective: Any,
    units: list[Unit],
    candidates: torch.Tensor,
    setup: Any,
) -> torch.Tensor:
    """candidates (P, B, *S), draw p of chain b at [p, b] -> (B, *S): each chain's highest-scoring draw
    (non-finite scores lose). One forward pass of the batch per draw."""
    pool, b = candidates.shape[:2]
    index = torch.tensor([u.index for u in units], dtype=torch.long, device=candidates.device)  # (B,)
    scores = torch.empty(pool, b, device=candidates.device)
    for p in range(pool):
        with setup.autocast():
            img = param.image(candidates[p].float())  # (B, 3, H, W)
            acts = readout.probe(setup.to_input(readout.encode(img)))
            values = layer_values(acts[readout.layer], units).float()  # (B, U)
            f = readout.climbed(values, img, units, objective, index).float()  # (B,)
        scores[p] = torch.nan_to_num(f, nan=float("-inf"), posinf=float("-inf"))
    best = scores.argmax(0)  # (B,)
    return candidates[best, torch.arange(b, device=candidates.device)]


def pooled(pools: list[torch.Tensor]) -> list[torch.Tensor]:
    """Units' (P_i, k_i, *S) pools as (P, k_i, *S), P the largest (a shorter pool repeats its first draw,
    which then never wins a tie), to be scored as one batch."""
    size = max(len(p) for p in pools)
    return [torch.cat([p, p[:1].expand(size - len(p), *p.shape[1:])]) for p in pools]
