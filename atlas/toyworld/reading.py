"""The attribute reader's reading of pictures: does a unit's picture show the unit's label? (issue 16)

Usage::

    reader = Reader(loaded_reader, device)          # toyworld.load_component("reader", ...)
    decoded = reader(images)                        # images (N, H, W, 3) uint8 -> Decoded (N pictures)
    decoded.concepts(0)                             # ['class:pill', 'facet:pill/two_dots', 'colour:red', ...]
    reader_verdict(reader, result.chains, "red pill")
    # ReaderVerdict(label_shown=0.75, agreement=0.9, pictures={(chain, kind, i): [concepts], ...})

A picture's class is the class with the most probability summed over its facets (as the judge's rule,
``judging.py``) and its facet the most probable fine label of that class; colour, position (3 x 3 cell),
size and distractor are each head's most probable value. A unit's verdict is over its chains' last pictures
(diverged chains left out unless all diverged, as the judge's):

- ``label_shown``: the share of them whose decoded concepts satisfy the unit's label
  (``concepts.shows``: a conjunction ``red pill`` needs colour and class); None without a label, or for a
  label outside the toy vocabulary;
- ``agreement``: the mean over the attributes class, colour, position, size and distractor of the share of
  those pictures that agree with the attribute's most common value (1.0: every chain drew the same thing;
  facets are left out: a multifaceted unit's chains *should* differ there).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from atlas.models.loaded import LoadedModel
from atlas.sampling.concepts import cell_coverage, here_parts
from atlas.toyworld.concepts import picture_concepts, shows
from atlas.toyworld.shapes import FINE_TO_CLASS

AGREEMENT_ATTRIBUTES = ("cls", "colour", "position", "size", "distractor")


@dataclass
class Decoded:
    """The reader's values for N pictures, each (N,) int64: class, fine label, colour, row, col, size bin,
    distractor (0/1); and ``cover`` (N, S, S) bool, the object's pixels (None: a reader without the map)."""

    cls: np.ndarray
    fine: np.ndarray
    colour: np.ndarray
    row: np.ndarray
    col: np.ndarray
    size: np.ndarray
    distractor: np.ndarray
    cover: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.cls)

    @property
    def position(self) -> np.ndarray:
        """(N,) the 3 x 3 cell, row-major."""
        return self.row * 3 + self.col

    def concepts(self, i: int, cell: tuple[int, int, int, int] | None = None) -> list[str]:
        """Picture ``i``'s atomic concepts (``concepts.picture_concepts``), and with a conv unit's ``cell``
        (``atlas.map_cells.cell_of``) the ``here:`` parts the coverage map shows there."""
        out = picture_concepts(
            int(self.fine[i]), int(self.colour[i]), int(self.row[i]), int(self.col[i]), int(self.size[i]),
            bool(self.distractor[i]),
        )  # fmt: skip
        if cell is None or self.cover is None:
            return out
        coverage = cell_coverage(torch.from_numpy(self.cover[i : i + 1]), cell)  # (1,)
        return out + [part for part, on in here_parts(coverage).items() if bool(on[0])]

    def select(self, idx: Sequence[int]) -> Decoded:
        pick = list(idx)
        return Decoded(
            *(None if (v := getattr(self, f)) is None else v[pick] for f in self.__dataclass_fields__)
        )


@torch.no_grad()
def decode_heads(module: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The reader's values on encoded pictures x (N, 3, S, S): {attribute: (N,) long}, attributes as
    :class:`Decoded`'s (class from the fine probabilities summed per class; fine within that class)."""
    heads = module.split(module(x).float())  # type: ignore[operator]
    p = torch.softmax(heads["fine"], dim=1)  # (N, F)
    f2c = torch.tensor(FINE_TO_CLASS, device=p.device)
    per_class = torch.zeros(p.shape[0], int(f2c.max()) + 1, device=p.device).index_add_(1, f2c, p)
    cls = per_class.argmax(1)  # (N,)
    fine = torch.where(f2c[None, :] == cls[:, None], p, torch.full_like(p, -1.0)).argmax(1)
    out = {"cls": cls, "fine": fine} | {
        k: heads[k].argmax(1) for k in ("colour", "row", "col", "size", "distractor")
    }
    if "cover" in heads:  # (N, S, S) the object's pixels
        out["cover"] = heads["cover"] > 0
    return out


class Reader:
    """The attribute reader on uint8 pictures (``__call__``) or canonical RGB tensors (``decode01``)."""

    def __init__(self, reader: LoadedModel, device: torch.device, batch: int = 512) -> None:
        self.model, self.device, self.batch = reader, device, batch
        reader.module.to(device)

    @torch.no_grad()
    def decode01(self, rgb01: torch.Tensor) -> Decoded:
        """(N, 3, H, W) float RGB in [0, 1] -> Decoded."""
        parts = []
        for i in range(0, len(rgb01), self.batch):
            x = self.model.space.encode(rgb01[i : i + self.batch].to(self.device).float())  # type: ignore[union-attr]
            parts.append(decode_heads(self.model.module, x))
        return Decoded(**{k: torch.cat([p[k] for p in parts]).cpu().numpy() for k in parts[0]})

    def __call__(self, images: np.ndarray) -> Decoded:
        """images (N, H, W, 3) uint8 -> Decoded."""
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255
        return self.decode01(x)


def agreement(decoded: Decoded) -> float:
    """Mean over AGREEMENT_ATTRIBUTES of the share of pictures agreeing with the attribute's modal value."""
    n = len(decoded)
    shares = [Counter(getattr(decoded, a).tolist()).most_common(1)[0][1] / n for a in AGREEMENT_ATTRIBUTES]
    return float(np.mean(shares))


@dataclass
class ReaderVerdict:
    """A unit's reading (see the module docstring); ``pictures``: (chain, kind, i) -> decoded concepts of
    each decoded picture (kind last / best / snapshot; i the snapshot's index, else 0)."""

    label_shown: float | None
    agreement: float | None
    pictures: dict[tuple[int, str, int], list[str]] = field(default_factory=dict)


def _kept_pictures(chains: Sequence[Any], snapshots: bool) -> list[tuple[tuple[int, str, int], np.ndarray]]:
    out = []
    for c in chains:
        out += [((c.chain, "last", 0), c.last.image), ((c.chain, "best", 0), c.best.image)]
        if snapshots:
            out += [((c.chain, "snapshot", i), s.image) for i, s in enumerate(c.snapshots)]
    return out


def reader_verdict(
    reader: Reader,
    chains: Sequence[Any],
    label: str | None,
    snapshots: bool = False,
    cell: tuple[int, int, int, int] | None = None,
) -> ReaderVerdict | None:
    """The unit's reading from its chains' pictures (see the module docstring); None without chains.
    Decodes every chain's last and best picture (``snapshots``: the snapshots too; the worker leaves them
    out, they are early pictures and would triple the reader's cost). ``cell``: a conv unit's place in the
    picture (``atlas.map_cells.cell_of``): each picture's concepts then include the ``here:`` parts there,
    so a place-bound label (``colour:red@here``) can be checked."""
    if not chains:
        return None
    pictures = _kept_pictures(chains, snapshots)
    decoded = reader(np.stack([image for _, image in pictures]))
    index = {key: i for i, (key, _) in enumerate(pictures)}
    concepts = {key: decoded.concepts(i, cell) for key, i in index.items()}
    kept = [c for c in chains if not c.diverged] or list(chains)
    last_keys = [(c.chain, "last", 0) for c in kept]
    lasts = [index[key] for key in last_keys]
    shown = [shows(concepts[key], label) for key in last_keys] if label is not None else [None]
    label_shown = None if shown[0] is None else sum(bool(s) for s in shown) / len(shown)
    return ReaderVerdict(label_shown, agreement(decoded.select(lasts)), concepts)
