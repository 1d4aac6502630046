"""Render the toy world: vectorized, deterministic by seed, exactly balanced over fine labels.

Usage::

    from atlas.toyworld.dataset import render_split
    data = render_split(cfg.data, "test")      # ToyData(images uint8 (N,3,S,S), labels (N,), fine (N,))

One image: a background (a palette colour darkened and mixed with grey, plus a soft linear gradient), one
object (shape by fine label, colour from the shared palette, never the background's colour; random
position, radius and rotation; anti-aliased from its signed distance), sometimes a small distractor dot,
and a little pixel noise. With ``DataConfig.second_p`` > 0 that share of the images holds a second object
of another class (``ToyData.second_fine``); the two sit in opposite halves (left / right or top / bottom)
and do not overlap. Training targets then give each of the two classes half (``class_targets``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F

from atlas.toyworld.presets import DataConfig
from atlas.toyworld.shapes import CLASSES, FINE_SDFS, FINE_TO_CLASS, PALETTE

SPLIT_OFFSETS = {"train": 1, "test": 2}


@dataclass
class ToyAttributes:
    """What the renderer drew in each image: the ground truth behind every picture (issue 16)."""

    colour: torch.Tensor  # (N,) long, the object's PALETTE index
    cx: torch.Tensor  # (N,) float, object centre x in [-1, 1] (left to right)
    cy: torch.Tensor  # (N,) float, object centre y in [-1, 1] (top to bottom)
    radius: torch.Tensor  # (N,) float, object radius in half-image units
    distractor: torch.Tensor  # (N,) bool, a small dot of another colour is present
    mask: torch.Tensor  # (N, S, S) bool, the object's pixels (coverage >= 0.5)
    objects: torch.Tensor  # (N, S, S) bool, every object's pixels (the second object's too; distractor not)

    @staticmethod
    def cat(parts: list[ToyAttributes]) -> ToyAttributes:
        return ToyAttributes(
            *(torch.cat([getattr(p, f) for p in parts]) for f in ToyAttributes.__dataclass_fields__)
        )


@dataclass
class ToyData:
    images: torch.Tensor  # (N, 3, S, S) uint8 RGB
    labels: torch.Tensor  # (N,) long, class ids
    fine: torch.Tensor  # (N,) long, fine (facet-level) ids
    attributes: ToyAttributes | None = None  # the renderer's ground truth (of the first object)
    second_fine: torch.Tensor | None = None  # (N,) long, the second object's fine label, -1: none

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, idx: list[int]) -> ToyData:
        """The images at ``idx``, with their labels and ground truth."""
        i = torch.tensor(idx, dtype=torch.long)
        a = self.attributes
        return ToyData(
            self.images[i],
            self.labels[i],
            self.fine[i],
            None
            if a is None
            else ToyAttributes(*(getattr(a, f)[i] for f in ToyAttributes.__dataclass_fields__)),
            None if self.second_fine is None else self.second_fine[i],
        )

    def second_labels(self, idx: torch.Tensor | None = None) -> torch.Tensor:
        """(N,) long (or those of ``idx``): the second object's class, -1 where the image has one object."""
        labels = self.labels if idx is None else self.labels[idx]
        if self.second_fine is None:
            return torch.full_like(labels, -1)
        fine = self.second_fine if idx is None else self.second_fine[idx]
        return torch.where(fine >= 0, torch.tensor(FINE_TO_CLASS)[fine.clamp(min=0)], -1)

    def single(self) -> torch.Tensor:
        """(N,) bool: the images with one object (all of them in a one-object world)."""
        return self.second_labels() < 0

    def class_targets(self, idx: torch.Tensor, n_classes: int) -> torch.Tensor:
        """(B, n_classes) training targets: one-hot, or half and half on a two-object image."""
        return _two_hot(self.labels[idx], self.second_labels(idx), n_classes)

    def fine_targets(self, idx: torch.Tensor, n_fine: int) -> torch.Tensor:
        """(B, n_fine) training targets over fine labels, as :meth:`class_targets`."""
        second = self.second_fine[idx] if self.second_fine is not None else torch.full_like(idx, -1)
        return _two_hot(self.fine[idx], second, n_fine)

    def rgb01(self, idx: torch.Tensor | slice | None = None) -> torch.Tensor:
        x = self.images if idx is None else self.images[idx]
        return x.float() / 255.0


def _two_hot(first: torch.Tensor, second: torch.Tensor, n: int) -> torch.Tensor:
    """first (B,), second (B,) with -1 for none -> (B, n): 1 on first, or 0.5 on each of the two."""
    out = F.one_hot(first, n).float()
    two = second >= 0
    out[two] = 0.5 * (out[two] + F.one_hot(second[two], n).float())
    return out


def _facet_table() -> tuple[torch.Tensor, torch.Tensor]:
    """Per class: its number of facets (C,) and its first fine label (C,)."""
    n_facets = torch.tensor([len(c.facets) for c in CLASSES])
    first_fine = torch.tensor([FINE_TO_CLASS.index(c) for c in range(len(CLASSES))])
    return n_facets, first_fine


def balanced_fine_labels(n: int, gen: torch.Generator) -> torch.Tensor:
    """(n,) fine labels: classes cycle (balanced), facets of a class alternate (50/50), then shuffled."""
    n_classes = len(CLASSES)
    i = torch.arange(n)
    cls, k = i % n_classes, i // n_classes
    n_facets, first_fine = _facet_table()
    fine = first_fine[cls] + k % n_facets[cls]
    return fine[torch.randperm(n, generator=gen)]


def render(n: int, cfg: DataConfig, seed: int, chunk: int = 4096) -> ToyData:
    """Render ``n`` images (deterministic for a given seed and config)."""
    gen = torch.Generator().manual_seed(seed)
    fine = balanced_fine_labels(n, gen)
    labels = torch.tensor(FINE_TO_CLASS)[fine]
    second = _second_fine(labels, cfg.second_p, gen) if cfg.second_p > 0 else None
    images = torch.empty(n, 3, cfg.size, cfg.size, dtype=torch.uint8)
    attrs = []
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        part_second = None if second is None else second[start:stop]
        images[start:stop], part = _render_chunk(fine[start:stop], cfg, gen, part_second)
        attrs.append(part)
    return ToyData(images, labels, fine, ToyAttributes.cat(attrs), second)


def _second_fine(labels: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor:
    """(N,) fine label of a second object of another class with probability ``p``, else -1."""
    n, n_classes = len(labels), len(CLASSES)
    other = (labels + torch.randint(1, n_classes, (n,), generator=gen)) % n_classes  # never the first class
    n_facets, first_fine = _facet_table()
    facet = (torch.rand(n, generator=gen) * n_facets[other]).long()
    has = torch.rand(n, generator=gen) < p
    return torch.where(has, first_fine[other] + facet, -1)


def _object_alpha(
    fine: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor, r: torch.Tensor, theta: torch.Tensor,
    gx: torch.Tensor, gy: torch.Tensor,
) -> torch.Tensor:  # fmt: skip
    """(n, 1, S, S) anti-aliased coverage of each image's object (fine label, centre, radius, rotation)."""
    s = gx.shape[0]
    dx, dy = gx[None] - cx[:, None, None], gy[None] - cy[:, None, None]
    c, sn = torch.cos(theta)[:, None, None], torch.sin(theta)[:, None, None]
    px = (c * dx + sn * dy) / r[:, None, None]
    py = (-sn * dx + c * dy) / r[:, None, None]
    sdf = torch.empty(len(fine), s, s)
    for f, fn in enumerate(FINE_SDFS):
        sel = fine == f
        if sel.any():
            sdf[sel] = fn(px[sel], py[sel])
    px_per_unit = r[:, None, None] * s / 2
    return (0.5 - sdf * px_per_unit).clamp(0, 1)[:, None]


def _render_chunk(
    fine: torch.Tensor, cfg: DataConfig, gen: torch.Generator, second: torch.Tensor | None = None
) -> tuple[torch.Tensor, ToyAttributes]:
    n, s = len(fine), cfg.size
    u = lambda *shape: torch.rand(*shape, generator=gen)  # noqa: E731
    palette = torch.tensor(PALETTE)  # (P, 3)
    p = len(palette)

    # pixel centre coordinates in [-1, 1]
    coords = (torch.arange(s, dtype=torch.float32) + 0.5) / s * 2 - 1
    gy, gx = torch.meshgrid(coords, coords, indexing="ij")  # (S, S)

    # background: palette colour (not the object's), darkened, mixed with grey, soft gradient
    obj_idx = torch.randint(0, p, (n,), generator=gen)
    bg_idx = (obj_idx + torch.randint(1, p, (n,), generator=gen)) % p
    mix = 0.25 + 0.35 * u(n, 1)
    grey = 0.05 + 0.35 * u(n, 1)
    bg = palette[bg_idx] * mix + grey * (1 - mix) * 0.6  # (n, 3)
    ang = u(n) * 2 * math.pi
    grad = (torch.cos(ang)[:, None, None] * gx + torch.sin(ang)[:, None, None] * gy) * (0.12 * u(n))[
        :, None, None
    ]
    img = bg[:, :, None, None] + grad[:, None]  # (n, 3, S, S)

    # object: radius, centre, rotation, colour
    r_lo, r_hi = cfg.radius
    r = r_lo + (r_hi - r_lo) * u(n)  # (n,) in half-image units
    cx = (u(n) * 2 - 1) * (1 - r) * 0.85
    cy = (u(n) * 2 - 1) * (1 - r) * 0.85
    theta = u(n) * 2 * math.pi
    if second is not None:  # extra draws only here: one-object worlds render exactly as before
        cx, cy, second_alpha, second_colour = _second_object(second, bg_idx, r, cx, cy, gx, gy, cfg, gen)
    alpha = _object_alpha(fine, cx, cy, r, theta, gx, gy)  # (n, 1, S, S), anti-aliased
    colour = palette[obj_idx] * (0.8 + 0.2 * u(n, 1))
    img = img * (1 - alpha) + colour[:, :, None, None] * alpha
    if second is not None:
        img = img * (1 - second_alpha) + second_colour[:, :, None, None] * second_alpha
    objects = alpha[:, 0] >= 0.5
    if second is not None:
        objects = objects | (second_alpha[:, 0] >= 0.5)

    # distractor: a small dot of another colour, sometimes
    has = u(n) < cfg.distractor_p
    d_idx = (obj_idx + torch.randint(1, p, (n,), generator=gen)) % p
    dcx, dcy = u(n) * 1.8 - 0.9, u(n) * 1.8 - 0.9
    d_r = 0.1 + 0.04 * u(n)
    d_sdf = torch.hypot(gx[None] - dcx[:, None, None], gy[None] - dcy[:, None, None]) - d_r[:, None, None]
    d_alpha = ((0.5 - d_sdf * s / 2).clamp(0, 1) * has[:, None, None])[:, None]
    img = img * (1 - d_alpha) + palette[d_idx][:, :, None, None] * d_alpha

    img = img + cfg.noise * torch.randn(img.shape, generator=gen)
    truth = ToyAttributes(obj_idx, cx, cy, r, has, alpha[:, 0] >= 0.5, objects)
    return (img.clamp(0, 1) * 255).round().to(torch.uint8), truth


def _second_object(
    second: torch.Tensor, bg_idx: torch.Tensor, r: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor,
    gx: torch.Tensor, gy: torch.Tensor, cfg: DataConfig, gen: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """Place the second objects: (cx, cy) of the first object, moved into one half where an image has two,
    and the second object's coverage (n, 1, S, S) (0 where none) and colour (n, 3), never the background's."""
    n, p = len(second), len(PALETTE)
    u = lambda *shape: torch.rand(*shape, generator=gen)  # noqa: E731
    r_lo, r_hi = cfg.radius
    r2 = r_lo + (r_hi - r_lo) * u(n)
    horizontal, side = u(n) < 0.5, torch.where(u(n) < 0.5, -1.0, 1.0)

    def along(radius: torch.Tensor) -> torch.Tensor:  # distance from the centre line: no overlap, in frame
        return 0.05 + radius + u(n) * (0.95 - 2 * radius).clamp(min=0)

    def across(radius: torch.Tensor) -> torch.Tensor:
        return (u(n) * 2 - 1) * (1 - radius) * 0.85

    a1, c1, a2, c2 = side * along(r), across(r), -side * along(r2), across(r2)
    two = second >= 0
    cx = torch.where(two, torch.where(horizontal, a1, c1), cx)
    cy = torch.where(two, torch.where(horizontal, c1, a1), cy)
    cx2, cy2 = torch.where(horizontal, a2, c2), torch.where(horizontal, c2, a2)
    alpha = _object_alpha(second.clamp(min=0), cx2, cy2, r2, u(n) * 2 * math.pi, gx, gy)
    alpha = alpha * two[:, None, None, None]
    idx = (bg_idx + torch.randint(1, p, (n,), generator=gen)) % p
    colour = torch.tensor(PALETTE)[idx] * (0.8 + 0.2 * u(n, 1))
    return cx, cy, alpha, colour


@lru_cache(maxsize=8)
def render_split(cfg: DataConfig, split: str) -> ToyData:
    """The train or test split of a world (memoized in-process; rendering is faster than reading a file)."""
    if split not in SPLIT_OFFSETS:
        from atlas.errors import AtlasError

        raise AtlasError(f"unknown split {split!r}; valid splits: {', '.join(SPLIT_OFFSETS)}")
    n = cfg.n_train if split == "train" else cfg.n_test
    return render(n, cfg, seed=cfg.seed * 1000 + SPLIT_OFFSETS[split])
