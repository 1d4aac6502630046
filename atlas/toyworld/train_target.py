"""Train the target T (a classifier) jointly with a decoder from its post-ReLU fc6 code.

Phase 1 (joint): loss = ce_weight * CE(T(x), y) + recon_weight * (10 * MSE(dec(relu6), x) + L1 of image
gradients). Phase 2 (head): fc7 and fc8 alone, on the frozen eval-mode code, with CE. y is one-hot, or half
and half on an image with two objects (``DataConfig.second_p``).

T stays a classifier (it is judged, and used, by its class logits); the auxiliary reconstruction path only
makes its fc6 keep what a picture needs (colour, position, outline), which a plain classifier throws away
and which the generator later has to put back. Measured on the micro world (1000 steps): with CE weight 1
the decoder never got past per-image mean colour (L1 0.10); without CE it reached 0.06. So the joint phase
weights CE low, and phase 2 buys the accuracy back without touching fc6. The decoder is G's initialisation.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

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
from atlas.toyworld.nets import Generator, TargetNet
from atlas.toyworld.presets import ToyWorldConfig
from atlas.toyworld.shapes import CLASS_NAMES


@own_rng
def train_target(
    cfg: ToyWorldConfig, data: ToyData, log: Callable[[str], None] = print
) -> tuple[TargetNet, Generator]:
    tc, size = cfg.target, cfg.data.size
    torch.manual_seed(tc.seed)
    net = TargetNet(tc.widths, tc.fc, len(CLASS_NAMES), size, tc.pools)
    dec = Generator(tc.fc, cfg.generator.width, size, tc.pools)
    space = target_space(size)
    params = list(net.parameters()) + (list(dec.parameters()) if tc.recon_weight > 0 else [])
    opt = torch.optim.Adam(params, lr=tc.lr)
    gen = torch.Generator().manual_seed(tc.seed)
    total, step = tc.epochs * (len(data) // tc.batch), 0
    net.train()
    dec.train()
    with threads(), progress(total, "toyworld: target T (joint)") as bar:
        for _epoch in range(tc.epochs):
            for idx in epoch_batches(len(data), tc.batch, gen):
                x = data.rgb01(idx)  # (B, 3, S, S)
                h = net.code(space.encode(x))  # (B, D)
                loss = tc.ce_weight * F.cross_entropy(net.head(h), data.class_targets(idx, len(CLASS_NAMES)))
                if tc.recon_weight > 0:
                    r = dec(h)
                    loss = loss + tc.recon_weight * (10 * F.mse_loss(r, x) + edge_l1(r, x))
                optimizer_step(opt, loss, cosine_lr(tc.lr, step, total))
                step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    net.eval()
    if tc.head_epochs > 0:
        train_head(net, data, tc.head_epochs, tc.lr, tc.seed, size)
    return net.eval(), dec.eval()


def train_head(net: TargetNet, data: ToyData, epochs: int, lr: float, seed: int, size: int) -> None:
    """Phase 2: fc7/fc8 on frozen eval-mode codes (fc6 and below do not change)."""
    from atlas.toyworld.train_generator import codes_of

    with threads():
        codes = codes_of(net, data.images, size)  # (N, D)
    head = [net.fc7, net.fc8]
    opt = torch.optim.Adam([p for m in head for p in m.parameters()], lr=lr)
    gen = torch.Generator().manual_seed(seed + 100)
    batch = 128
    total, step = epochs * (len(codes) // batch), 0
    with threads(), progress(total, "toyworld: target T (head)") as bar:
        for _epoch in range(epochs):
            for idx in epoch_batches(len(codes), batch, gen):
                loss = F.cross_entropy(net.head(codes[idx]), data.class_targets(idx, len(CLASS_NAMES)))
                optimizer_step(opt, loss, cosine_lr(lr, step, total, warmup=10))
                step += 1
                bar.update(1)
