"""Priors: the term that pulls a chain toward realistic pictures.

Learned priors on the code (PPGN, Nguyen et al. 2017, Eq. 11's first term ``eps1 (R(h) - h)``)::

    DaePrior(dae).residual(h, acts)            # R(h) - h with R the denoising autoencoder on codes
    JointPrior("relu6").residual(h, acts)      # E(G(h)) - h, E = target up to the code layer; E(G(h)) is read
                                               # from the same target pass that computes the objective

Hand-made pixel priors (the baselines; survey section 4): ``decay_toward_grey`` (L2 decay), ``gaussian_blur``
(every k steps), ``jitter`` (random translation before the target), ``total_variation`` (penalty).
All functions state their shapes; none of them keeps state.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from atlas.sampling.manifold import encode_code

# ----------------------------------------------------------------------------------- learned code priors


class DaePrior:
    """R(h) - h with R a denoising autoencoder on raw codes (PPGN-h proper)."""

    name = "dae"
    needs_layers: tuple[str, ...] = ()

    def __init__(self, dae: nn.Module) -> None:
        self.dae = dae

    def residual(self, h: torch.Tensor, acts: dict[str, torch.Tensor]) -> torch.Tensor:
        """h: (B, *S) -> (B, *S)."""
        with torch.no_grad():
            return (self.dae(h).float() - h).detach()


class JointPrior:
    """E(G(h)) - h with E the target up to ``code_layer`` (Noiseless Joint PPGN-h)."""

    name = "joint"

    def __init__(self, code_layer: str, encoder: nn.Module | None = None) -> None:
        self.code_layer = code_layer
        self.encoder = encoder  # the code layer's activations -> G's code (subspace generators), else as is
        self.needs_layers = (code_layer,)

    def residual(self, h: torch.Tensor, acts: dict[str, torch.Tensor]) -> torch.Tensor:
        """h: (B, *S); acts[code_layer] (B, *L) -> E(G(h)) (B, *S) from the objective's own forward pass."""
        with torch.no_grad():
            e = encode_code(acts[self.code_layer].detach(), self.encoder).reshape(h.shape)
        return e - h.detach()


# -------------------------------------------------------------------------------------- pixel priors


def decay_toward_grey(x: torch.Tensor, decay: float) -> torch.Tensor:
    """L2 decay in pixel space: x (B, 3, H, W) rgb01 -> 0.5 + decay * (x - 0.5)."""
    if decay >= 1.0:
        return x
    return 0.5 + decay * (x - 0.5)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, H, W) with reflect padding; kernel radius ceil(3 sigma)."""
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    kx = k.view(1, 1, 1, -1).repeat(c, 1, 1, 1)  # (C, 1, 1, K)
    ky = k.view(1, 1, -1, 1).repeat(c, 1, 1, 1)  # (C, 1, K, 1)
    pad = min(radius, x.shape[-1] - 1, x.shape[-2] - 1)
    if pad < radius:  # tiny images: shrink the kernel to what reflect padding allows
        return gaussian_blur(x, sigma=max(pad / 3.0, 1e-3)) if pad >= 1 else x
    y = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), kx, groups=c)
    return F.conv2d(F.pad(y, (0, 0, radius, radius), mode="reflect"), ky, groups=c)


def jitter(x: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Translate each picture by its own (dy, dx), wrapping: x (B, C, H, W), shifts (B, 2) ints -> x'."""
    b, _, h, w = x.shape
    ys = (torch.arange(h, device=x.device).view(1, h) - shifts[:, :1]) % h  # (B, H)
    xs = (torch.arange(w, device=x.device).view(1, w) - shifts[:, 1:]) % w  # (B, W)
    bi = torch.arange(b, device=x.device).view(b, 1, 1)
    return x.permute(0, 2, 3, 1)[bi, ys.view(b, h, 1), xs.view(b, 1, w)].permute(0, 3, 1, 2)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Anisotropic mean absolute total variation per picture: (B, C, H, W) -> (B,)."""
    dy = (x[:, :, 1:, :] - x[:, :, :-1, :]).abs().mean(dim=(1, 2, 3))
    dx = (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().mean(dim=(1, 2, 3))
    return dx + dy
