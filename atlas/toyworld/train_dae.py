"""Train the DAE R(h) on T's post-ReLU fc6 codes: a residual MLP on standardized codes.

Training pairs: clean code h, noisy code h + noise * std * eps; loss = MSE in standardized units. The output
layer starts at zero, so the DAE starts as the identity and can only learn to improve on it (a plain MLP
DAE was worse than the identity in the prototype).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from atlas.toyworld.loops import cosine_lr, epoch_batches, optimizer_step, own_rng, progress, threads
from atlas.toyworld.nets import CodeDAE
from atlas.toyworld.presets import ToyWorldConfig


@own_rng
def train_dae(cfg: ToyWorldConfig, codes: torch.Tensor, log: Callable[[str], None] = print) -> CodeDAE:
    """codes: (N, D) clean training codes -> trained, eval-mode DAE."""
    dc = cfg.dae
    torch.manual_seed(dc.seed)
    dae = CodeDAE(codes.shape[1], dc.hidden, dc.blocks)
    mean, std = codes.mean(0), codes.std(0).clamp(min=1e-3)
    dae.mean.copy_(mean)
    dae.std.copy_(std)
    z = (codes - mean) / std  # (N, D)
    opt = torch.optim.Adam(dae.parameters(), lr=dc.lr)
    gen = torch.Generator().manual_seed(dc.seed)
    total, step = dc.epochs * (len(z) // dc.batch), 0
    dae.train()
    with threads(), progress(total, "toyworld: DAE") as bar:
        for _epoch in range(dc.epochs):
            for idx in epoch_batches(len(z), dc.batch, gen):
                clean = z[idx]
                noisy = clean + dc.noise * torch.randn(clean.shape, generator=gen)
                # R works on raw codes; compare in standardized units
                out = (dae(noisy * std + mean) - mean) / std
                loss = F.mse_loss(out, clean)
                optimizer_step(opt, loss, cosine_lr(dc.lr, step, total))
                step += 1
                bar.update(1)
    return dae.eval()


@torch.no_grad()
def dae_error_ratio(dae: CodeDAE, codes: torch.Tensor, noise: float, seed: int = 99) -> tuple[float, float]:
    """(DAE error, identity error) on held-out codes (N, D) with noise in per-dimension std units."""
    gen = torch.Generator().manual_seed(seed)
    std = dae.std
    noisy = codes + noise * std * torch.randn(codes.shape, generator=gen)
    err = (((dae(noisy) - codes) / std) ** 2).mean().item()
    ident = (((noisy - codes) / std) ** 2).mean().item()
    return err, ident
