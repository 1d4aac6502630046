"""Train the target T (a classifier) jointly with a decoder from its post-ReLU fc6 code.

Loss = cross-entropy(T(x), y) + recon_weight * (L1(dec(relu6), x) + L1 of image gradients).

T stays a classifier (it is judged, and used, by its class logits); the auxiliary reconstruction path only
makes its fc6 keep what a picture needs (colour, position, outline), which a plain classifier throws away
and which the generator later has to put back. The decoder is G's initialisation.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from atlas.toyworld.dataset import ToyData
from atlas.toyworld.loops import cosine_lr, edge_l1, epoch_batches, progress, set_lr, target_space, threads
from atlas.toyworld.nets import Generator, TargetNet
from atlas.toyworld.presets import ToyWorldConfig
from atlas.toyworld.shapes import CLASS_NAMES


def train_target(
    cfg: ToyWorldConfig, data: ToyData, log: Callable[[str], None] = print
) -> tuple[TargetNet, Generator]:
    tc, size = cfg.target, cfg.data.size
    torch.manual_seed(tc.seed)
    net = TargetNet(tc.widths, tc.fc, len(CLASS_NAMES), size)
    dec = Generator(tc.fc, cfg.generator.width, size)
    space = target_space(size)
    params = list(net.parameters()) + (list(dec.parameters()) if tc.recon_weight > 0 else [])
    opt = torch.optim.Adam(params, lr=tc.lr)
    gen = torch.Generator().manual_seed(tc.seed)
    steps_per_epoch = len(data) // tc.batch
    total, step = tc.epochs * steps_per_epoch, 0
    net.train()
    dec.train()
    with threads(), progress(total, "toyworld: target T") as bar:
        for _epoch in range(tc.epochs):
            for idx in epoch_batches(len(data), tc.batch, gen):
                x = data.rgb01(idx)  # (B, 3, S, S)
                h = net.code(space.encode(x))  # (B, D)
                loss = F.cross_entropy(net.head(h), data.labels[idx])
                if tc.recon_weight > 0:
                    r = dec(h)
                    loss = loss + tc.recon_weight * (F.l1_loss(r, x) + edge_l1(r, x))
                set_lr(opt, cosine_lr(tc.lr, step, total))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    return net.eval(), dec.eval()
