"""Denoising autoencoder on generator codes: the learned prior of PPGN-h (Nguyen et al. 2017).

R(h) reconstructs a clean code from a noisy one; PPGN-h's prior term is ``eps1 * (R(h) - h)`` (Eq. 11),
which by Alain & Bengio (2014) approximates ``eps1 * sigma^2 * d log p(h) / dh``.
The network works on standardized codes ``(h - mean) / std`` and predicts a residual, so an untrained
network starts as the identity (a plain MLP DAE did worse than the identity in our prototype).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from atlas.errors import ModelError


class ResidualMLPDAE(nn.Module):
    """h (B, D) -> R(h) (B, D): standardize, residual MLP blocks, de-standardize."""

    def __init__(self, dim: int, hidden: int = 1024, blocks: int = 2) -> None:
        super().__init__()
        self.dim, self.hidden, self.blocks = dim, hidden, blocks
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        self.inp = nn.Linear(dim, hidden)
        self.body = nn.ModuleList(
            nn.Sequential(
                nn.LayerNorm(hidden), nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, hidden)
            )
            for _ in range(blocks)
        )
        self.out = nn.Linear(hidden, dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        z = (h - self.mean) / self.std  # (B, D)
        x = self.inp(z)  # (B, hidden)
        for block in self.body:
            x = x + block(x)
        return (z + self.out(x)) * self.std + self.mean  # (B, D)

    def set_standardization(self, codes: torch.Tensor) -> None:
        self.mean.copy_(codes.mean(0))
        self.std.copy_(codes.std(0).clamp_min(1e-3))

    @staticmethod
    def from_state_dict(state: Mapping[str, torch.Tensor], source: str) -> ResidualMLPDAE:
        """Infer dim/hidden/blocks from a state dict's shapes, then load it strictly."""
        from atlas.models.weights import apply_state_dict

        if "inp.weight" not in state:
            raise ModelError(
                f"state dict {source!r} is not a residual_mlp DAE (no 'inp.weight'); train one with "
                "`atlas train-dae`"
            )
        hidden, dim = state["inp.weight"].shape
        blocks = len({k.split(".")[1] for k in state if k.startswith("body.")})
        module = ResidualMLPDAE(int(dim), int(hidden), blocks)
        apply_state_dict(module, state, source)
        return module


def train_dae(
    codes: torch.Tensor,
    *,
    hidden: int = 1024,
    blocks: int = 2,
    epochs: int = 20,
    noise: float = 0.5,
    lr: float = 1e-3,
    batch: int = 128,
    seed: int = 0,
    holdout: float = 0.1,
    log=print,
) -> tuple[ResidualMLPDAE, dict[str, float]]:
    """Train R on real codes (N, D): minimize ||R(h + n) - h||^2 with n ~ N(0, (noise * std)^2).

    Returns the DAE and a report comparing its held-out error with the identity's (R(h) = h): a DAE
    is useful as a PPGN-h prior only when it beats the identity.
    """
    gen = torch.Generator().manual_seed(seed)
    codes = codes.detach().float().flatten(1)  # (N, D)
    order = torch.randperm(len(codes), generator=gen)
    n_hold = max(1, int(len(codes) * holdout))
    held, train = codes[order[:n_hold]], codes[order[n_hold:]]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        dae = ResidualMLPDAE(codes.shape[1], hidden, blocks)
    dae.set_standardization(train)
    opt = torch.optim.Adam(dae.parameters(), lr=lr)
    std = dae.std

    def noisy(h: torch.Tensor) -> torch.Tensor:
        return h + torch.randn(h.shape, generator=gen) * noise * std

    for epoch in range(epochs):
        perm = torch.randperm(len(train), generator=gen)
        total = 0.0
        for start in range(0, len(train), batch):
            h = train[perm[start : start + batch]]
            loss = (((dae(noisy(h)) - h) / std) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(h)
        log(f"train-dae: epoch {epoch + 1}/{epochs} loss {total / len(train):.4f}")
    dae.eval()
    with torch.no_grad():
        h_noisy = noisy(held)
        dae_err = (((dae(h_noisy) - held) / std) ** 2).mean().item()
        id_err = (((h_noisy - held) / std) ** 2).mean().item()
    return dae, {
        "heldout_error": dae_err,
        "identity_error": id_err,
        "codes": len(codes),
        "dim": codes.shape[1],
    }
