"""The toy world's concept vocabulary: ground truth from the renderer as a labelled probe set (issue 16).

Usage::

    concepts = toy_concepts(data)            # ToyData with attributes -> ConceptSet over its N images

Concepts (each a set of images): ``class:<name>``; ``facet:<name>`` for the facets of multifaceted classes;
``colour:<name>`` (the object's palette colour); ``pos:<row>-<col>`` (object centre in a 3 x 3 grid of the
positions' tertiles); ``size:small|medium|large`` (radius tertiles); ``distractor`` (a dot of another colour);
and the conjunctions ``<colour> <class>``.
"""

from __future__ import annotations

import torch

from atlas.sampling.concepts import ConceptSet
from atlas.toyworld.dataset import ToyAttributes, ToyData
from atlas.toyworld.shapes import CLASS_NAMES, FINE_NAMES, FINE_TO_CLASS, MULTIFACETED

COLOUR_NAMES = ("red", "green", "blue", "yellow", "cyan", "magenta", "orange", "white")  # PALETTE order
ROWS, COLS, SIZES = ("top", "middle", "bottom"), ("left", "centre", "right"), ("small", "medium", "large")


def _tertile(x: torch.Tensor) -> torch.Tensor:
    """(N,) -> (N,) long bin 0, 1, 2 by the values' own tertiles."""
    edges = torch.quantile(x.float(), torch.tensor([1 / 3, 2 / 3]))
    return torch.bucketize(x.float(), edges, right=True)


def toy_concepts(data: ToyData) -> ConceptSet:
    """The concept vocabulary over ``data``'s images (needs the renderer's attributes)."""
    a = data.attributes
    if a is None:
        raise ValueError("toy images without renderer attributes have no ground-truth concepts")
    cols: dict[str, torch.Tensor] = {}
    for c, name in enumerate(CLASS_NAMES):
        cols[f"class:{name}"] = data.labels == c
    for f, name in enumerate(FINE_NAMES):
        if FINE_TO_CLASS[f] in MULTIFACETED:
            cols[f"facet:{name}"] = data.fine == f
    cols.update(_attribute_columns(a))
    for k, colour in enumerate(COLOUR_NAMES):
        for c, cls in enumerate(CLASS_NAMES):
            cols[f"{colour} {cls}"] = (a.colour == k) & (data.labels == c)
    return ConceptSet(list(cols), torch.stack(list(cols.values()), dim=1))


def _attribute_columns(a: ToyAttributes) -> dict[str, torch.Tensor]:
    """colour, position (3 x 3), size and distractor concepts: name -> (N,) bool."""
    cols = {f"colour:{name}": a.colour == k for k, name in enumerate(COLOUR_NAMES)}
    row, col = _tertile(a.cy), _tertile(a.cx)
    for i, r in enumerate(ROWS):
        for j, c in enumerate(COLS):
            cols[f"pos:{r}-{c}"] = (row == i) & (col == j)
    size = _tertile(a.radius)
    cols.update({f"size:{name}": size == i for i, name in enumerate(SIZES)})
    cols["distractor"] = a.distractor.bool()
    return cols
