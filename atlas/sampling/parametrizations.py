"""Parametrizations: how a picture is made from the optimized state (lucent ``param/``: params, image_f).

Usage::

    param = GeneratorParam(generator)      # state h (B, *code_shape) -> rgb01 = decode(G(h))
    param = PixelParam(size=32)            # state x (B, 3, S, S) in [0, 1] -> rgb01 = x
    rgb01 = param.image(state)             # differentiable, (B, 3, H, W) canonical RGB

The generator is just another parametrization: DGN-AM, PPGN-h and the pixel baselines share one chain loop
(`atlas.sampling.chain`); what differs is this image function, the prior term and the update rule.
"""

from __future__ import annotations

import torch
from torch import nn

from atlas.models.loaded import LoadedModel


class PixelParam:
    """The state is the picture itself: (B, 3, size, size) canonical RGB in [0, 1]."""

    name = "pixel"

    def __init__(self, size: int) -> None:
        self.size = size

    def state_shape(self) -> tuple[int, ...]:
        return (3, self.size, self.size)

    def image(self, state: torch.Tensor) -> torch.Tensor:
        return state  # (B, 3, S, S)


class GeneratorParam:
    """The state is a code h of G: (B, *code_shape) -> canonical RGB ``G.space.decode(G(h))`` (B, 3, H, W)."""

    name = "generator"

    def __init__(self, generator: LoadedModel, module: nn.Module | None = None) -> None:
        if generator.space is None or generator.code_shape is None:
            raise ValueError("a generator LoadedModel needs .space (its output space) and .code_shape")
        self.generator = generator
        self.module = module if module is not None else generator.module  # e.g. a torch.compile'd module

    def state_shape(self) -> tuple[int, ...]:
        return tuple(self.generator.code_shape)

    def image(self, state: torch.Tensor) -> torch.Tensor:
        """The picture the target reads and the store keeps: G's output clamped to [0, 1]. The clamp is
        straight-through (its gradient is the identity), so the code step of Eq. 1 is DGN-AM's, while every
        recorded activation belongs to the stored picture (G's raw output may leave [0, 1]: DeePSiM's last
        deconvolution has no squashing)."""
        rgb = self.generator.space.decode(self.module(state).float())  # (B, 3, H, W), nominally [0, 1]
        return rgb + (rgb.clamp(0, 1) - rgb).detach()
