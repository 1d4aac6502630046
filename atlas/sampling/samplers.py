"""Samplers: a parametrization + a prior + an update rule, plugged into the shared chain loop.

Usage::

    s = DgnAm(GeneratorParam(G), DgnAmConfig(), lower, upper)
    s = PpgnH(GeneratorParam(G), DaePrior(dae) or JointPrior("relu6"), PpgnConfig(), lower, upper)
    s = PixelAscent(PixelParam(32), PixelConfig())
    outcome = run_chains(s, start_states, ...)     # atlas.sampling.chain

Each sampler answers four questions for the loop: how an image is made from the state (``param``), what the
target sees (``view``: jitter for pixels), what is added to the objective (``penalty``: TV), and how the state
moves given the objective's gradient (``update``: DGN-AM Eq. 1, PPGN-h Eq. 11, pixel ascent).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from atlas.config import DgnAmConfig, PixelConfig, PpgnConfig
from atlas.sampling import priors, steps
from atlas.sampling.fourier import FourierParam, PhaseParam
from atlas.sampling.parametrizations import GeneratorParam, PixelParam
from atlas.sampling.seeds import randint_per_chain, randn_per_chain

Gens = list[torch.Generator]


class Sampler:
    """Base: no view transform, no penalty, no prior, no snapshots, no resets, no per-batch state."""

    name = "base"
    param: GeneratorParam | PixelParam | FourierParam | PhaseParam
    prior: priors.DaePrior | priors.JointPrior | None = None
    snapshot_every: int = 0  # 0: no snapshots
    snapshot_threshold: float = 0.0
    reset_every: int = 0
    redraw: Callable[[Gens], torch.Tensor] | None = None  # gens -> fresh starts (B, *S), every reset_every

    def begin(self, state: torch.Tensor) -> None:
        """Called once per batch with the start states (B, *S), before the first step (optimizer state)."""

    @property
    def views_randomly(self) -> bool:
        """True when ``view`` shows the target a random transform of the picture (jitter, crops): the loop
        then reads the picture itself once more, without gradient, for what it keeps and records."""
        return False

    def view(self, img: torch.Tensor, t: int, gens: Gens) -> torch.Tensor:
        return img

    def penalty(self, img: torch.Tensor) -> torch.Tensor | None:
        return None

    def update(
        self,
        state: torch.Tensor,
        grad: torch.Tensor,
        residual: torch.Tensor | None,
        t: int,
        n_steps: int,
        gens: Gens,
    ) -> torch.Tensor:
        """-> the new state (B, *S)."""
        raise NotImplementedError

    def describe(self) -> str:
        return self.name


class DgnAm(Sampler):
    """DGN-AM (Nguyen et al. 2016): ascend the unit through a fixed generator, Eq. 1."""

    name = "dgn_am"

    def __init__(
        self, param: GeneratorParam, cfg: DgnAmConfig, lower: torch.Tensor | None, upper: torch.Tensor | None
    ) -> None:
        self.param, self.cfg, self.lower, self.upper = param, cfg, lower, upper

    def update(self, state, grad, residual, t, n_steps, gens):
        lr = steps.linear_lr(t, n_steps, self.cfg.lr, self.cfg.lr_end)
        return steps.dgn_am_update(state, grad, lr, self.cfg.l2_decay, self.lower, self.upper)


class PpgnH(Sampler):
    """PPGN-h (Nguyen et al. 2017), Eq. 11, with a DAE prior or the joint prior E(G(h))."""

    name = "ppgn_h"

    def __init__(
        self,
        param: GeneratorParam,
        prior: priors.DaePrior | priors.JointPrior,
        cfg: PpgnConfig,
        lower: torch.Tensor | None,
        upper: torch.Tensor | None,
        redraw: Callable[[Gens], torch.Tensor] | None = None,
    ) -> None:
        self.param, self.prior, self.cfg, self.lower, self.upper = param, prior, cfg, lower, upper
        self.snapshot_every = cfg.save_every
        self.snapshot_threshold = cfg.threshold
        self.reset_every = cfg.reset_every
        self.redraw = redraw

    def describe(self) -> str:
        """``ppgn_h/dae`` (released normalized step), ``ppgn_h/dae[eq11]`` (Eq. 11's step as printed),
        ``ppgn_h/dae[released]`` (the released sampler's condition gradient), or both."""
        marks = [
            m
            for m, on in (("eq11", self.cfg.step == "eq11"), ("released", self.cfg.condition == "released"))
            if on
        ]
        return f"ppgn_h/{self.prior.name}" + (f"[{','.join(marks)}]" if marks else "")

    def update(self, state, grad, residual, t, n_steps, gens):
        noise = None
        if self.cfg.eps3 > 0:
            noise = randn_per_chain(gens, tuple(state.shape[1:]), state.device)
        new, _direction = steps.ppgn_h_update(
            state,
            residual,
            grad,
            noise,
            self.cfg.eps1,
            self.cfg.eps2,
            self.cfg.eps3,
            self.cfg.lr,
            self.lower,
            self.upper,
            normalize=self.cfg.step == "normalized",
            relative_noise=self.cfg.noise == "relative",
        )
        return new


class PixelAscent(Sampler):
    """Pixel-space gradient ascent with optional hand-made priors (L2 decay, blur every k, jitter, TV)."""

    name = "pixel"

    def __init__(self, param: PixelParam, cfg: PixelConfig) -> None:
        self.param, self.cfg = param, cfg

    def describe(self) -> str:
        c = self.cfg
        parts = [
            f"l2={c.l2_decay:g}" if c.l2_decay < 1 else "",
            f"blur={c.blur_sigma:g}/{c.blur_every}" if c.blur_every else "",
            f"jitter={c.jitter}" if c.jitter else "",
            f"tv={c.tv:g}" if c.tv else "",
        ]
        parts = [p for p in parts if p]
        return "pixel" + (f"[{','.join(parts)}]" if parts else "")

    @property
    def views_randomly(self) -> bool:
        return self.cfg.jitter > 0

    def view(self, img, t, gens):
        if self.cfg.jitter <= 0:
            return img
        shifts = randint_per_chain(gens, -self.cfg.jitter, self.cfg.jitter + 1, 2, img.device)  # (B, 2)
        return priors.jitter(img, shifts)

    def penalty(self, img):
        return self.cfg.tv * priors.total_variation(img) if self.cfg.tv > 0 else None

    def update(self, state, grad, residual, t, n_steps, gens):
        x = steps.pixel_update(state, grad, self.cfg.lr)
        x = priors.decay_toward_grey(x, self.cfg.l2_decay)
        if self.cfg.blur_every and (t + 1) % self.cfg.blur_every == 0:
            x = priors.gaussian_blur(x, self.cfg.blur_sigma)
        return x
