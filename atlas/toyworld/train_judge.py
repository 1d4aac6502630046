"""Train the held-out judge J on fine (facet-level) labels (half and half on an image with two objects).
J is only ever used for evaluation.

Augmentation: a random Gaussian blur (probability ``blur_p``, sigma up to ``blur_sigma``) and a contrast
reduction to 0.6-1.0, so J judges *shape* the way a person would and does not fail a clean, slightly soft
picture; it never sees a generated image.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from atlas.toyworld.dataset import ToyData
from atlas.toyworld.loops import (
    cosine_lr,
    epoch_batches,
    gaussian_blur,
    judge_space,
    optimizer_step,
    own_rng,
    progress,
    threads,
)
from atlas.toyworld.nets import JudgeNet
from atlas.toyworld.presets import ToyWorldConfig
from atlas.toyworld.shapes import FINE_NAMES


def augment(x: torch.Tensor, blur_p: float, blur_sigma: float, gen: torch.Generator) -> torch.Tensor:
    """(B, 3, S, S) rgb01 -> blurred / lower-contrast copies (per-image random)."""
    b = len(x)
    sigma = torch.rand(b, generator=gen) * blur_sigma * (torch.rand(b, generator=gen) < blur_p)
    x = torch.where((sigma > 0.05)[:, None, None, None], gaussian_blur(x, sigma), x)
    c = 0.6 + 0.4 * torch.rand(b, 1, 1, 1, generator=gen)
    m = x.mean((1, 2, 3), keepdim=True)
    return m + (x - m) * c


@own_rng
def train_judge(cfg: ToyWorldConfig, data: ToyData, log: Callable[[str], None] = print) -> JudgeNet:
    jc, size = cfg.judge, cfg.data.size
    torch.manual_seed(jc.seed)
    net = JudgeNet(jc.widths, len(FINE_NAMES))
    space = judge_space(size)
    opt = torch.optim.Adam(net.parameters(), lr=jc.lr)
    gen = torch.Generator().manual_seed(jc.seed)
    total, step = jc.epochs * (len(data) // jc.batch), 0
    net.train()
    with threads(), progress(total, "toyworld: judge J") as bar:
        for _epoch in range(jc.epochs):
            for idx in epoch_batches(len(data), jc.batch, gen):
                x = augment(data.rgb01(idx), jc.blur_p, jc.blur_sigma, gen)
                loss = F.cross_entropy(net(space.encode(x)), data.fine_targets(idx, len(FINE_NAMES)))
                optimizer_step(opt, loss, cosine_lr(jc.lr, step, total))
                step += 1
                bar.update(1)
    return net.eval()
