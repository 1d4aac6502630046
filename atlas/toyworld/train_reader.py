"""Train the attribute reader on natural toy images: fine label, colour, position bin, size bin, distractor.

The reader (``nets.ReaderNet``) tells what a picture shows in the concept vocabulary of
``atlas.toyworld.concepts``, so the atlas can check whether a unit's pictures show the unit's label
(issue 16). It is trained on the train split only (targets: ``concepts.attribute_targets``, bins by the
split's own tertiles), with J's augmentation (blur, lower contrast) so a slightly soft synthetic picture
reads like the natural one; it never sees a generated image. Loss: the sum of one cross-entropy per head,
plus ``ReaderConfig.cover_weight`` x the per-pixel binary cross-entropy of its coverage map against the
object's mask (where the object is: the place-bound ``here:`` concepts of conv units).

One torch thread (``TRAIN_THREADS``): on 2 cores shared with other jobs, a step of this small net took
0.25 s wall on one thread and 2.8-3.3 s on two (the second thread spins at every barrier while the core is
busy elsewhere); on idle cores one thread is as fast as two for nets this size (the team's design notes).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from atlas.toyworld.concepts import attribute_targets
from atlas.toyworld.dataset import ToyData
from atlas.toyworld.loops import (
    cosine_lr,
    epoch_batches,
    optimizer_step,
    own_rng,
    progress,
    reader_space,
    threads,
)
from atlas.toyworld.nets import ReaderNet
from atlas.toyworld.presets import ToyWorldConfig
from atlas.toyworld.train_judge import augment

TRAIN_THREADS = 1


def build_reader(cfg: ToyWorldConfig) -> ReaderNet:
    rc = cfg.reader
    return ReaderNet(rc.widths, rc.squeeze, rc.hidden, cfg.data.size)


def reader_loss(
    net: ReaderNet,
    logits: torch.Tensor,
    targets: dict[str, torch.Tensor],
    mask: torch.Tensor | None = None,
    cover_weight: float = 1.0,
) -> torch.Tensor:
    """Sum over heads of the cross-entropy, plus ``cover_weight`` x the coverage map's per-pixel binary
    cross-entropy against ``mask``; logits (B, sum of head sizes + S * S), targets {head: (B,) long},
    mask (B, S, S) bool (the object's pixels)."""
    parts = net.split(logits)
    cover = parts.pop("cover", None)
    loss = sum(F.cross_entropy(part, targets[name]) for name, part in parts.items())
    if mask is not None and cover is not None:
        loss = loss + cover_weight * F.binary_cross_entropy_with_logits(cover, mask.float())
    return loss  # type: ignore[return-value]


@own_rng
def train_reader(cfg: ToyWorldConfig, data: ToyData, log: Callable[[str], None] = print) -> ReaderNet:
    rc = cfg.reader
    torch.manual_seed(rc.seed)
    net = build_reader(cfg)
    space = reader_space(cfg.data.size)
    targets = attribute_targets(data)
    assert data.attributes is not None  # attribute_targets checked it
    masks = data.attributes.mask  # (N, S, S) bool
    one_object = data.single().nonzero().flatten()  # attributes describe one object: two-object images out
    opt = torch.optim.Adam(net.parameters(), lr=rc.lr)
    gen = torch.Generator().manual_seed(rc.seed)
    total, step = rc.epochs * (len(one_object) // rc.batch), 0
    net.train()
    with threads(TRAIN_THREADS), progress(total, "toyworld: reader") as bar:
        for _epoch in range(rc.epochs):
            for batch in epoch_batches(len(one_object), rc.batch, gen):
                idx = one_object[batch]
                x = augment(data.rgb01(idx), rc.blur_p, rc.blur_sigma, gen)
                truth = {k: v[idx] for k, v in targets.items()}
                loss = reader_loss(net, net(space.encode(x)), truth, masks[idx], rc.cover_weight)
                optimizer_step(opt, loss, cosine_lr(rc.lr, step, total))
                step += 1
                bar.update(1)
    return net.eval()
