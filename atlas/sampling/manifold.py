"""On-manifold score of a picture: does the generator reproduce it from the code the target reads in it?

Usage::

    err = reconstruction_error(nets, images01, codes)   # (B, 3, H, W) rgb01, (B, D) codes E(x) -> (B,)

For a picture x, E(x) is the target's code-layer activation (the layer G inverts: ``models.code_layer``;
through G's code encoder when it has one, :func:`encode_code`)
and G(E(x)) the picture G draws from it; the error is the mean squared difference of x and G(E(x)) in the
target's input encoding. Natural images have a spread of errors; a picture G reproduces worse than almost
every natural image lies off the image manifold G learned (``images.manifold_percentile``: the share of
natural images reproduced *worse* than the picture; flag ``off_manifold`` below 0.01). Works for every
method (pixel pictures too) whenever the run has a generator and a code layer.
"""

from __future__ import annotations

import torch
from torch import nn

from atlas.sampling.nets import EngineNets

OFF_MANIFOLD_PERCENTILE = 0.01


def encode_code(acts: torch.Tensor, encoder: nn.Module | None) -> torch.Tensor:
    """E(x): the code layer's activations (B, *L) -> G's code (B, D): flattened, or through the generator's
    ``extras["code_encoder"]`` (a subspace generator's whitened coefficients, atlas.models.subspace)."""
    if encoder is None:
        return acts.float().flatten(1)
    return encoder(acts.float()).float().flatten(1)


@torch.no_grad()
def reconstruction_error(nets: EngineNets, images01: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """images01 (B, 3, H, W) rgb01, codes (B, D) -> (B,) mean squared error of x vs G(E(x)), T's encoding."""
    assert nets.generator is not None and nets.gen_module is not None
    gen = nets.generator
    h = codes.to(nets.device).float().view(codes.shape[0], *gen.code_shape)  # type: ignore[misc]
    redrawn = gen.space.decode(nets.gen_module(h).float())  # type: ignore[union-attr]  # (B, 3, H', W')
    x = nets.space.encode(images01.to(nets.device).float())
    y = nets.space.encode(redrawn.clamp(0, 1))
    return (x - y).pow(2).flatten(1).mean(1).cpu()
