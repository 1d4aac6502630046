"""Today's pixel-family peers, plugged into the shared chain loop like the pixel baseline.

Usage::

    s = FourierAscent(FourierParam(32, 1.0), cfg.sampler.fourier)                    # Lucid / Lucent
    s = Maco(PhaseParam(mean_amplitude_spectrum(real, 32)), cfg.sampler.maco, "real")  # Fel et al. 2023
    s = Accentuation(FourierParam(32), cfg.sampler.accentuation, features, "pool1")  # Hamblin et al. 2024
    results = run_chains(s, readout, objective, units, start, gens, ...)           # atlas.sampling.chain

Each answers the chain loop's questions (``param``, ``view``, ``penalty``, ``update``; ``begin`` resets the
per-batch optimizer state). The optimizer is Adam with per-element moments (``steps.adam_update``) — the
peers' own choice (Lucid: Adam 0.05; Horama: NAdam 1.0) — so a chain's steps never depend on its batch.
Every random draw (transform, crop, noise) comes from the chain's own generator.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from atlas.config import AccentuationConfig, FourierConfig, MacoConfig, RobustnessFields
from atlas.sampling import steps
from atlas.sampling.fourier import FourierParam, PhaseParam
from atlas.sampling.samplers import Gens, Sampler
from atlas.sampling.transforms import crop_noise, crop_theta, rand_per_chain, robustness_theta, warp

Features = Callable[[torch.Tensor], torch.Tensor]  # rgb01 (B, 3, H, W) -> (B, ...) an early layer's output


def robust_view(img: torch.Tensor, cfg: RobustnessFields, gens: Gens) -> torch.Tensor:
    """Lucid's transformation robustness: one random pad + jitter + scale + rotate warp per chain."""
    u = rand_per_chain(gens, 4, img.device)
    theta = robustness_theta(u, cfg.pad, cfg.jitter, (cfg.scale_min, cfg.scale_max), cfg.rotate)
    return warp(img, theta)


def transforms_on(cfg: RobustnessFields) -> bool:
    """Do the robustness transforms change the picture at all (pad, jitter, rotation or a zoom range)?"""
    return bool(cfg.pad or cfg.jitter or cfg.rotate or cfg.scale_min != 1 or cfg.scale_max != 1)


class _AdamSampler(Sampler):
    """Adam ascent on the state, moments reset for every batch of chains (``begin``)."""

    lr: float
    _adam: steps.AdamState | None = None

    def begin(self, state: torch.Tensor) -> None:
        self._adam = steps.AdamState.zeros_like(state)

    def update(self, state, grad, residual, t, n_steps, gens):
        if self._adam is None or self._adam.m.shape != state.shape:  # called without begin(): fresh moments
            self._adam = steps.AdamState.zeros_like(state)
        return steps.adam_update(state, grad, self._adam, self.lr)


class FourierAscent(_AdamSampler):
    """Lucid/Lucent feature visualization (Olah et al. 2017): ascend the unit through the 1/f-scaled,
    colour-decorrelated Fourier parametrization, seen through random pad/jitter/scale/rotate."""

    name = "fourier"

    def __init__(self, param: FourierParam, cfg: FourierConfig) -> None:
        self.param, self.cfg, self.lr = param, cfg, cfg.lr

    def describe(self) -> str:
        return f"fourier[lr={self.cfg.lr:g},decay={self.cfg.decay_power:g}]"

    @property
    def views_randomly(self) -> bool:
        return transforms_on(self.cfg)

    def view(self, img, t, gens):
        return robust_view(img, self.cfg, gens)


class Maco(_AdamSampler):
    """MACO (Fel et al. 2023): ascend the unit through the Fourier *phase* only, the magnitude fixed at the
    mean amplitude spectrum of natural images; the target sees a random crop of the picture plus noise."""

    name = "maco"

    def __init__(self, param: PhaseParam, cfg: MacoConfig, spectrum: str) -> None:
        self.param, self.cfg, self.lr = param, cfg, cfg.lr
        self.spectrum = spectrum  # the magnitude actually used: "real" or "power_law" (the fallback)

    def describe(self) -> str:
        return f"maco[spectrum={self.spectrum}]"

    views_randomly = True  # MACO's random crops, always

    def view(self, img, t, gens):
        u = rand_per_chain(gens, 1, img.device)
        normal = torch.stack([torch.randn(2, generator=g, device=img.device) for g in gens])
        seen = warp(img, crop_theta(u, normal, (self.cfg.crop_min, self.cfg.crop_max)))
        if self.cfg.noise > 0:
            seen = seen + crop_noise(gens, tuple(seen.shape), self.cfg.noise).to(seen.dtype)
        return seen


class Accentuation(_AdamSampler):
    """Feature accentuation (Hamblin et al. 2024): from a real image x0, maximize
    ``f(x) - weight * ||phi(x) - phi(x0)||^2 / ||phi(x0)||^2`` with phi an early layer of the target, through
    the Fourier parametrization started at x0 (``FourierParam.from_image``) and the robustness transforms.

    phi is read on the picture itself (untransformed), so the distance compares like with like."""

    name = "accentuation"

    def __init__(self, param: FourierParam, cfg: AccentuationConfig, features: Features, layer: str) -> None:
        self.param, self.cfg, self.lr = param, cfg, cfg.lr
        self.features, self.layer = features, layer
        self._ref: torch.Tensor | None = None  # (B, F) phi(x0) of the batch in flight

    def describe(self) -> str:
        return f"accentuation[{self.layer},w={self.cfg.weight:g}]"

    def begin(self, state: torch.Tensor) -> None:
        super().begin(state)
        with torch.no_grad():
            self._ref = self.features(self.param.image(state)).detach().float().flatten(1)

    @property
    def views_randomly(self) -> bool:
        return transforms_on(self.cfg)

    def view(self, img, t, gens):
        return robust_view(img, self.cfg, gens)

    def penalty(self, img):
        if self.cfg.weight <= 0 or self._ref is None:
            return None
        return self.cfg.weight * relative_distance(self.features(img).float().flatten(1), self._ref)


def relative_distance(phi: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """(B, F), (B, F) -> (B,) ``||phi - ref||^2 / ||ref||^2`` per chain (scale-free across layers)."""
    return (phi - ref).pow(2).sum(1) / ref.pow(2).sum(1).clamp_min(1e-8)


def default_accent_layer(layers: list[tuple[str, tuple[int, ...]]], input_size: int) -> str | None:
    """The accentuation distance's default layer: the first (C, H, W) layer whose resolution is below the
    input's (the end of the first conv block: toy world ``pool1``, AlexNet ``features.0``), else the first
    (C, H, W) layer; None when the target has none."""
    maps = [(name, shape) for name, shape in layers if len(shape) == 3]
    for name, shape in maps:
        if shape[1] < input_size:
            return name
    return maps[0][0] if maps else None
