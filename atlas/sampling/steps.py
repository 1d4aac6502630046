"""Update rules: one function per paper equation, batched over chains (row b = chain b).

- :func:`dgn_am_update` — DGN-AM, Nguyen et al. 2016, Eq. 1 as released (act_max.py): normalized gradient
  step, clip to the per-dimension code bounds, multiplicative L2 decay.
- :func:`ppgn_h_update` — PPGN-h, Nguyen et al. 2017, Eq. 11:
  ``d = eps1 (R(h) - h) + eps2 dlogp/dh + N(0, eps3^2)``, then ``h += lr / mean|d| * d`` (released code,
  ``normalize``) or ``h += lr * d`` (the equation as printed: a Langevin-like step whose noise is not
  normalized away), clip.
- :func:`pixel_update` — normalized gradient ascent on pixels (the baseline), clamped to [0, 1].
- :func:`adam_update` — Adam (Kingma & Ba 2015, Algorithm 1) as ascent, per element: the peers' optimizer
  (Lucid's Fourier parametrization, MACO, feature accentuation), with per-chain moments in :class:`AdamState`.

Normalizing by each chain's own mean |g| makes the step size independent of the unit's scale and keeps chains
in a batch independent of one another.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

_TINY = 1e-12


def per_chain_mean_abs(x: torch.Tensor) -> torch.Tensor:
    """(B, *S) -> (B, 1, ..., 1): mean |x| over each chain's elements (floored to avoid 0/0)."""
    return x.abs().flatten(1).mean(1).clamp_min(_TINY).view(-1, *([1] * (x.dim() - 1)))


def linear_lr(t: int, steps: int, lr: float, lr_end: float) -> float:
    """Step size at step t of ``steps``: linear from ``lr`` (t = 0) to ``lr_end`` (t = steps - 1)."""
    if steps <= 1:
        return lr
    return lr + (lr_end - lr) * t / (steps - 1)


def clip_code(h: torch.Tensor, lower: torch.Tensor | None, upper: torch.Tensor | None) -> torch.Tensor:
    """Clip every code element to [lower_i, upper_i]; h (B, *S), bounds (*S) or None (no bound)."""
    if lower is not None:
        h = torch.maximum(h, lower)
    if upper is not None:
        h = torch.minimum(h, upper)
    return h


def dgn_am_update(
    h: torch.Tensor,
    g: torch.Tensor,
    lr: float,
    l2_decay: float,
    lower: torch.Tensor | None,
    upper: torch.Tensor | None,
) -> torch.Tensor:
    """DGN-AM Eq. 1 (released form): ``h <- clip(h + lr * g / mean|g|) * l2_decay``.

    h, g: (B, *S) codes and d objective / d h; lower, upper: (*S) per-dimension bounds from real codes.
    """
    h = h + lr * g / per_chain_mean_abs(g)
    h = clip_code(h, lower, upper)
    return h * l2_decay


def ppgn_h_update(
    h: torch.Tensor,
    residual: torch.Tensor | None,
    grad: torch.Tensor,
    noise: torch.Tensor | None,
    eps1: float,
    eps2: float,
    eps3: float,
    lr: float,
    lower: torch.Tensor | None,
    upper: torch.Tensor | None,
    normalize: bool = True,
    relative_noise: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPGN-h Eq. 11: ``d = eps1 (R(h) - h) + eps2 grad + N(0, eps3^2)``, grad the gradient of the sampler's
    objective (Eq. 11's d log p(y|G(h))/dh with ``sampler.objective: log_softmax``; the raw activation's
    with ``raw``, as the demo config), then ``h <- clip(h + lr d / mean|d|)`` (``normalize``, released code)
    or ``h <- clip(h + lr d)`` (Eq. 11).
    ``relative_noise``: the noise std is eps3 x mean|eps2 grad| of each chain, so noise and condition keep
    the same balance for units whose activations differ in scale (an output logit, a conv unit, a readout).

    h, residual (R(h) - h), grad, noise (standard normal): (B, *S). Returns (new h, d).
    """
    d = eps2 * grad
    condition_scale = per_chain_mean_abs(d) if relative_noise else None  # (B, 1, ...)
    if residual is not None and eps1 > 0:
        d = d + eps1 * residual
    if noise is not None and eps3 > 0:
        d = d + eps3 * (noise * condition_scale if condition_scale is not None else noise)
    h = h + (lr * d / per_chain_mean_abs(d) if normalize else lr * d)
    return clip_code(h, lower, upper), d


def pixel_update(x: torch.Tensor, g: torch.Tensor, lr: float) -> torch.Tensor:
    """Normalized pixel ascent: x (B, 3, H, W) rgb01, g = d obj / d x -> clamp(x + lr g / mean|g|, 0, 1)."""
    return (x + lr * g / per_chain_mean_abs(g)).clamp(0.0, 1.0)


@dataclass
class AdamState:
    """Adam's moments for a batch of chains, (B, *S) each; ``t`` steps taken. Row b belongs to chain b."""

    m: torch.Tensor
    v: torch.Tensor
    t: int = 0

    @staticmethod
    def zeros_like(x: torch.Tensor) -> AdamState:
        return AdamState(torch.zeros_like(x, dtype=torch.float32), torch.zeros_like(x, dtype=torch.float32))


def adam_update(
    x: torch.Tensor,
    g: torch.Tensor,
    state: AdamState,
    lr: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> torch.Tensor:
    """Adam (Kingma & Ba 2015, Algorithm 1), ascending: ``m = b1 m + (1 - b1) g``,
    ``v = b2 v + (1 - b2) g^2``, ``x += lr * m_hat / (sqrt(v_hat) + eps)`` with bias-corrected m_hat, v_hat.
    x, g: (B, *S); ``state`` is updated in place. Element-wise: a chain's steps never depend on its batch."""
    b1, b2 = betas
    state.t += 1
    state.m.mul_(b1).add_(g, alpha=1 - b1)
    state.v.mul_(b2).addcmul_(g, g, value=1 - b2)
    m_hat = state.m / (1 - b1**state.t)
    v_hat = state.v / (1 - b2**state.t)
    return x + lr * m_hat / (v_hat.sqrt() + eps)
