"""A generator over a whitened principal subspace of a target layer (a low-dimensional code for a spatial G).

Usage::

    maps = target_conv4_maps                       # (N, C, H, W) real codes of a spatial layer
    sub = CodeSubspace.fit(maps, k=512)            # top-k principal directions, whitened
    z = sub.encode(maps)                           # (N, k): mean 0, std 1 per coefficient (= sub(maps))
    g = SubspaceGenerator(sub, spatial_g)          # z (B, k) -> picture: spatial_g(sub.decode(z))

Why: a generator from a spatial layer (DeePSiM's pool5 G, Dosovitskiy & Brox 2016) draws far more of a picture
than one from fc6, but code ascent in the whole map fools the target with fragments (Nguyen et al. 2016 found
the same for pool5 against fc6). Restricting the map to its top-k principal directions of real codes keeps
whole shapes and is a Gaussian prior in disguise: with whitened coefficients z, DGN-AM's L2 decay of the code
pulls toward the mean map along ``-z`` = the gradient of log N(z; 0, I), and the code bounds clip each
coefficient to its real range. ``encode`` is what turns a code layer's activations into this G's code, for
real starts, the joint prior and the on-manifold score (``extras["code_encoder"]`` of the generator).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class CodeSubspace(nn.Module):
    """x (B, *L) <-> z (B, k): z = ((flatten(x) - mean) @ basis) / scale; decode clamps at 0 when the layer
    is post-ReLU (``nonnegative``). basis (D, k) orthonormal columns, scale (k,) the coefficients' std."""

    def __init__(self, layer_shape: tuple[int, ...], k: int, nonnegative: bool = True) -> None:
        super().__init__()
        d = math.prod(int(s) for s in layer_shape)
        self.layer_shape = tuple(int(s) for s in layer_shape)
        self.register_buffer("nonnegative", torch.tensor(nonnegative))  # () bool: decode clamps at 0
        self.register_buffer("mean", torch.zeros(d))  # (D,)
        self.register_buffer("basis", torch.zeros(d, k))  # (D, k)
        self.register_buffer("scale", torch.ones(k))  # (k,)

    @property
    def k(self) -> int:
        return int(self.basis.shape[1])

    @staticmethod
    def fit(codes: torch.Tensor, k: int, seed: int = 0, nonnegative: bool | None = None) -> CodeSubspace:
        """Top-k principal directions of real codes (N, *L): randomized PCA (Halko et al. 2011), seeded."""
        flat = codes.detach().float().flatten(1)  # (N, D)
        n, d = flat.shape
        if not 1 <= k <= min(n - 1, d):
            raise ValueError(f"subspace size {k} must be in 1..{min(n - 1, d)} for {n} codes of {d} values")
        mean = flat.mean(0)
        devices = [flat.device] if flat.is_cuda else []
        with torch.random.fork_rng(devices=devices):  # the caller's random state stays as it was
            torch.manual_seed(seed)
            _, s, v = torch.pca_lowrank(flat - mean, q=min(k + 16, d, n), center=False, niter=4)
        if s[k - 1] <= 1e-6 * s[0]:
            raise ValueError(f"subspace size {k} exceeds the codes' rank (direction {k} has no variance)")
        nonneg = bool((flat >= 0).all()) if nonnegative is None else nonnegative
        sub = CodeSubspace(tuple(codes.shape[1:]), k, nonneg)
        sub.mean.copy_(mean)
        sub.basis.copy_(v[:, :k])
        sub.scale.copy_((s[:k] / max(n - 1, 1) ** 0.5).clamp_min(1e-8))
        return sub

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, *L) layer activations -> (B, k) whitened coefficients (float32, also under autocast)."""
        with torch.autocast(x.device.type, enabled=False):
            flat = x.float().flatten(1)
            return ((flat - self.mean) @ self.basis) / self.scale

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, k) -> (B, *L) the map in the subspace (clamped at 0 for a post-ReLU layer; float32)."""
        with torch.autocast(z.device.type, enabled=False):
            flat = self.mean + (z.float() * self.scale) @ self.basis.T  # (B, D)
            flat = torch.where(self.nonnegative, flat.clamp_min(0.0), flat)
        return flat.view(-1, *self.layer_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The code encoder (``extras["code_encoder"]`` of a subspace generator): :meth:`encode`."""
        return self.encode(x)

    def explained(self, codes: torch.Tensor) -> float:
        """Share of the codes' variance about the subspace's mean that their projection keeps."""
        flat = codes.detach().float().flatten(1) - self.mean
        return float((flat @ self.basis).pow(2).sum() / flat.pow(2).sum().clamp_min(1e-12))


class SubspaceGenerator(nn.Module):
    """z (B, k) -> G(decode(z)) (B, 3, S, S): a spatial generator driven by whitened subspace coefficients."""

    def __init__(self, subspace: CodeSubspace, generator: nn.Module) -> None:
        super().__init__()
        self.subspace = subspace
        self.generator = generator

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.generator(self.subspace.decode(z))
