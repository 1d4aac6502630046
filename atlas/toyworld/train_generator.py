"""Train the generator G to invert T's post-ReLU fc6 code (DeePSiM losses, scaled down), or T's conv4 map.

fc6 (``generator.code_layer: relu6``): G starts from the decoder trained jointly with T and is fine-tuned on
codes of the *frozen, eval-mode* T. conv4 (issue 17): a :class:`SpatialGenerator` trained from scratch on the
maps' projections on their top-k principal directions (``generator.subspace: k``) and driven by the whitened
coefficients (:class:`atlas.models.subspace.SubspaceGenerator`). The loss is the same:

    loss = pixel_weight   * 10 * wMSE(G(h), x) + edge_weight * L1(grad G(h), grad x)
         + feature_weight * sum_l L1(C_l(G(h)), C_l(x))          (C: fixed random conv comparator, not T)
         + adv_weight     * softplus(-D(G(h), h))                 (D: conditioned on the code; optional)

wMSE weighs each pixel 1 + ``object_weight`` on the objects' pixels (the renderer's masks), normalized by the
mean weight (plain MSE at 0): the background is most of a picture and otherwise dominates the loss. J is
never used here. The pixel and edge terms keep colour, contrast and sharp outlines; the comparator's
features reward local structure without rewarding whatever pleases T.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from atlas.models.subspace import CodeSubspace, SubspaceGenerator
from atlas.toyworld.dataset import ToyData
from atlas.toyworld.loops import (
    cosine_lr,
    edge_l1,
    epoch_batches,
    optimizer_step,
    own_rng,
    progress,
    target_space,
    threads,
)
from atlas.toyworld.nets import CodeDiscriminator, Comparator, Generator, SpatialGenerator, TargetNet
from atlas.toyworld.presets import ToyWorldConfig


@torch.no_grad()
def _read_t(read, target: TargetNet, images01: torch.Tensor, size: int, batch: int) -> torch.Tensor:
    """``read(T's encoded input batch)`` over (N, 3, S, S) rgb01 images (float or uint8/255), eval-mode T."""
    space = target_space(size)
    target.eval()
    out = []
    for i in range(0, len(images01), batch):
        x = images01[i : i + batch]
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x
        out.append(read(space.encode(x)))
    return torch.cat(out)


def codes_of(target: TargetNet, images01: torch.Tensor, size: int, batch: int = 500) -> torch.Tensor:
    """(N, 3, S, S) rgb01 (float or uint8/255) -> (N, D) post-ReLU fc6 codes of eval-mode T."""
    return _read_t(target.code, target, images01, size, batch)


def maps_of(target: TargetNet, images01: torch.Tensor, size: int, batch: int = 500) -> torch.Tensor:
    """(N, 3, S, S) rgb01 (float or uint8/255) -> (N, C4, h, w) post-ReLU conv4 maps of eval-mode T."""
    return _read_t(target.conv_map, target, images01, size, batch)


@own_rng
def train_generator(
    cfg: ToyWorldConfig,
    data: ToyData,
    target: TargetNet,
    decoder: Generator,
    log: Callable[[str], None] = print,
) -> Generator:
    """G from the fc6 code, fine-tuned from T's decoder."""
    gc, size = cfg.generator, cfg.data.size
    torch.manual_seed(gc.seed)
    with threads():
        codes = codes_of(target, data.images, size)  # (N, D)
    if cfg.target.recon_weight > 0:
        g = copy.deepcopy(decoder)
    else:
        g = Generator(codes.shape[1], gc.width, size, cfg.target.pools)
    return fit_generator(cfg, data, g, codes, log)


@own_rng
def train_spatial_generator(
    cfg: ToyWorldConfig, data: ToyData, target: TargetNet, log: Callable[[str], None] = print
) -> SubspaceGenerator:
    """G from T's conv4 map, trained from scratch, wrapped so that its code is the maps' top-k whitened
    principal coefficients (``generator.subspace: k``, fitted on the training maps first: a k the maps cannot
    hold fails before the training)."""
    gc, size = cfg.generator, cfg.data.size
    torch.manual_seed(gc.seed)
    with threads():
        maps = maps_of(target, data.images, size)  # (N, C4, h, w)
        sub = CodeSubspace.fit(maps, gc.subspace, seed=gc.seed)  # leaves the random state as it was
    log(f"toyworld: G's code = {gc.subspace} whitened principal coefficients of conv4 "
        f"({sub.explained(maps):.3f} of the maps' variance)")  # fmt: skip
    with torch.no_grad():  # G learns to draw the maps it will be given: their projections on the subspace
        projected = torch.cat([sub.decode(sub.encode(maps[i : i + 2000])) for i in range(0, len(maps), 2000)])
    g = fit_generator(cfg, data, SpatialGenerator(maps.shape[1], gc.width, cfg.target.pools), projected, log)
    return SubspaceGenerator(sub, g).eval()


def fit_generator(
    cfg: ToyWorldConfig, data: ToyData, g: nn.Module, codes: torch.Tensor, log: Callable[[str], None] = print
) -> nn.Module:
    """Train g on (image, code) pairs: codes (N, *code) of ``data``'s images, in order (the loss above)."""
    gc, size = cfg.generator, cfg.data.size
    objects = data.attributes.objects if gc.object_weight and data.attributes is not None else None
    comp = Comparator()
    disc = CodeDiscriminator(codes.shape[1], max(8, gc.width // 2), size) if gc.adv_weight > 0 else None
    opt = torch.optim.Adam(g.parameters(), lr=gc.lr)
    opt_d = torch.optim.Adam(disc.parameters(), lr=gc.lr, betas=(0.5, 0.99)) if disc is not None else None
    gen = torch.Generator().manual_seed(gc.seed)
    total, step = gc.epochs * (len(data) // gc.batch), 0
    g.train()
    with threads(), progress(total, "toyworld: generator G") as bar:
        for _epoch in range(gc.epochs):
            for idx in epoch_batches(len(data), gc.batch, gen):
                x, h = data.rgb01(idx), codes[idx]
                r = g(h)
                w = None if objects is None else 1 + gc.object_weight * objects[idx].float()[:, None]
                loss = gc.pixel_weight * 10 * weighted_mse(r, x, w) + gc.edge_weight * edge_l1(r, x)
                if gc.feature_weight > 0:
                    fr, fx = comp(r), comp(x)
                    loss = loss + gc.feature_weight * sum(
                        F.l1_loss(a, b) for a, b in zip(fr, fx, strict=True)
                    )
                if disc is not None:
                    loss = loss + gc.adv_weight * F.softplus(-disc(r, h)).mean()
                lr = cosine_lr(gc.lr, step, total)
                optimizer_step(opt, loss, lr)
                if disc is not None and opt_d is not None and step % gc.d_every == 0:
                    d_loss = F.softplus(-disc(x, h)).mean() + F.softplus(disc(r.detach(), h)).mean()
                    optimizer_step(opt_d, d_loss, lr)
                step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    g.eval()
    return g


def weighted_mse(r: torch.Tensor, x: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
    """Mean squared error of (B, 3, S, S) pictures, each pixel weighted by w (B, 1, S, S) and normalized by
    the mean weight; plain MSE without w."""
    if w is None:
        return F.mse_loss(r, x)
    return ((r - x) ** 2 * w).mean() / w.mean()
