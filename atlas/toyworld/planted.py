"""Planted units: a target variant whose extra units have a truth known by construction (issue 16 item 5).

Usage::

    target = planted_target("default")          # LoadedModel, spec toyworld:planted; layer "planted"
    target.extras["planted"]                    # [{"unit": 0, "kind": "concept", "concept": "red pill"}, ...]
    # in a config: models.target: toyworld:planted, layers: [{name: planted}]

The toy target T, unchanged (same layers, same outputs), plus one layer ``planted`` of units read from T's
code (relu6, the layer G inverts, which keeps colour, position and size), the next layer (relu7) and the
input:

- **concept units**: the minimum of fixed linear readouts, one per atomic part of the concept and per
  layer (relu6 and relu7), each fitted (ridge least squares, train split) to its part's indicator; ``cyan
  pill`` is min(cyan@relu6, cyan@relu7, pill@relu6, pill@relu7). A conjunction so fires only when both
  parts do, and an image must satisfy two layers' readouts at once: one linear readout alone reaches its
  natural maximum on pictures G draws without the concept (magenta pills for ``cyan pill``, bowties for
  ``class:cross``; docs/truth.md), so its truth held on natural images only. Their label must come out as
  the concept;
- **silent units**: ``relu(w . relu6 - b)`` with b above every natural image's value: 0 on all natural images
  (no label; nothing natural drives them);
- **fooling units** (after Geirhos et al. 2023): a concept unit's readout plus a hidden path,
  ``gain * relu(r(x) - tau)`` with r(x) the mean absolute response of the input to a 2x2 checkerboard
  filter and tau above every natural image's r: on natural images they are exactly their concept unit, but
  a high-frequency input reaches them through a path natural images never take. Pictures that use it
  are unfaithful: the truth columns should flag them.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from atlas.models.loaded import LoadedModel, freeze

# Concepts T's code represents: a readout of relu6 fitted to each ranks that concept first on held-out images.
# Not "red pill" (relu6 barely tells red from orange pills: precision 0.35 among its top 20) nor "class:hook"
# (its readout ranks the crescent facet above the class); docs/truth.md.
CONCEPTS = ("cyan pill", "blue ring", "class:cross", "colour:green", "size:large", "pos:top-left")
SILENT = 2
FOOLING = ("cyan pill", "blue ring", "class:cross")  # concept readouts that get the hidden path
RIDGE = 1e-4
TRAP_MARGIN = 1.5  # tau = this x the largest checkerboard response of a natural (train) image
TRAP_GAIN = 10.0


class Checkerboard(nn.Module):
    """r(x): mean absolute response of each channel to a 2x2 checkerboard, averaged: (B, 3, S, S) -> (B,)."""

    def __init__(self) -> None:
        super().__init__()
        k = torch.tensor([[1.0, -1.0], [-1.0, 1.0]]).view(1, 1, 2, 2).repeat(3, 1, 1, 1) / 4
        self.register_buffer("kernel", k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = nn.functional.conv2d(x, self.kernel, groups=3)  # (B, 3, S-1, S-1)
        return r.abs().mean((1, 2, 3))


class PlantedTarget(nn.Module):
    """T's layers by their own names, plus ``readout6``, ``readout7``, ``checkerboard`` and ``planted``
    (B, P); forward returns T's logits."""

    def __init__(self, base: nn.Module, readout6: nn.Linear, readout7: nn.Linear, parts: torch.Tensor,
                 silent: torch.Tensor, fooling: torch.Tensor, tau: float) -> None:  # fmt: skip
        super().__init__()
        for name, module in base.named_children():
            self.add_module(name, module)
        self.readout6 = readout6  # relu6, G's code (D) -> R6 part readouts
        self.readout7 = readout7  # relu7 (D7) -> R7 part readouts
        self.register_buffer("parts", parts)  # (P, R6 + R7) bool: the readouts a unit is the minimum of
        self.register_buffer("silent", silent)  # (P,) bool: relu-gated silent units
        self.register_buffer("fooling", fooling)  # (P,) float: 1 for units with the hidden path
        self.checkerboard = Checkerboard()
        self.tau = tau
        self.planted = nn.Identity()

    def encode(self, rgb01: torch.Tensor) -> torch.Tensor:
        """Canonical RGB (B, 3, S, S) -> this target's input (its image space, kept for the trap check)."""
        return self.space.encode(rgb01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pool1(self.conv1(x))
        h = self.pool2(self.conv2(h))
        h = self.pool3(self.conv3(h))
        code = self.relu6(self.fc6(self.flatten(self.conv4(h))))
        h7 = self.relu7(self.fc7(code))
        logits = self.fc8(h7)
        scores = torch.cat([self.readout6(code), self.readout7(h7)], dim=1)  # (B, R)
        inf = torch.tensor(float("inf"), dtype=scores.dtype, device=scores.device)
        per_part = torch.where(self.parts, scores[:, None, :], inf)  # (B, P, R): inf off a unit's parts
        units = per_part.amin(-1)  # (B, P)
        units = torch.where(self.silent.bool(), torch.relu(units), units)
        trap = torch.relu(self.checkerboard(x) - self.tau)  # (B,) 0 on every natural image
        self.planted(units + TRAP_GAIN * trap[:, None] * self.fooling)
        return logits


def _features(
    module: nn.Module, images01: torch.Tensor, space: Any, batch: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """relu6 (N, D) and relu7 (N, D7) of natural images."""
    six, seven = [], []
    with torch.no_grad():
        for i in range(0, images01.shape[0], batch):
            code = module.code(space.encode(images01[i : i + batch]))
            six.append(code), seven.append(module.relu7(module.fc7(code)))
    return torch.cat(six), torch.cat(seven)


def _ridge(feats: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Class-balanced least squares with a ridge: feats (N, F), target (N,) bool -> (w (F,), b).

    Positives and negatives weigh half each (a concept on 1 % of the images would otherwise be fitted
    mostly by the negatives, and its readout would detect a broader concept)."""
    y = target.float()
    n, pos = y.numel(), float(y.sum())
    weight = torch.where(y > 0, n / (2 * max(pos, 1.0)), n / (2 * max(n - pos, 1.0)))  # (N,)
    x = torch.cat([feats, torch.ones(n, 1)], dim=1)  # (N, F+1)
    a = x.T @ (x * weight[:, None]) + RIDGE * n * torch.eye(x.shape[1])
    w = torch.linalg.solve(a, x.T @ (weight * y))
    return w[:-1], float(w[-1])


def _linear(rows: list[torch.Tensor], bias: list[float]) -> nn.Linear:
    layer = nn.Linear(rows[0].numel(), len(rows))
    with torch.no_grad():
        layer.weight.copy_(torch.stack(rows))
        layer.bias.copy_(torch.tensor(bias))
    return layer


def planted_target(
    preset: str = "default", cache_dir: str | os.PathLike[str] | None = None, *, train_if_missing: bool = True
) -> LoadedModel:
    """T with the planted layer (see the module docstring); deterministic for a given toy world.
    ``train_if_missing=False``: a T neither cached nor shipped raises ``NotTrained`` instead of training."""
    from atlas.toyworld.api import load_component
    from atlas.toyworld.concepts import requirements, toy_concepts
    from atlas.toyworld.world import ToyWorld

    base = load_component("target", preset, cache_dir, train_if_missing=train_if_missing, log=lambda _m: None)
    train = ToyWorld(preset, cache_dir, log=lambda _m: None).data("train")
    concepts = toy_concepts(train)
    images = train.rgb01()
    six, seven = _features(base.module, images, base.space)  # (N, D), (N, D7)
    gen = torch.Generator().manual_seed(16)
    rows6, bias6, rows7, bias7, part_index, units = [], [], [], [], {}, []

    def part(name: str) -> list[tuple[int, int]]:  # (layer, row) of one atomic concept's two readouts
        if name not in part_index:
            member = concepts.members[:, concepts.names.index(name)]
            for feats, rows, bias in ((six, rows6, bias6), (seven, rows7, bias7)):
                w, b = _ridge(feats, member)
                rows.append(w), bias.append(b)
            part_index[name] = [(6, len(rows6) - 1), (7, len(rows7) - 1)]
        return part_index[name]

    unit_parts: list[list[tuple[int, int]]] = []
    for name in CONCEPTS:
        (atoms,) = requirements(name)
        unit_parts.append([i for atom in sorted(atoms) for i in part(atom)])
        units.append({"kind": "concept", "concept": name})
    for _ in range(SILENT):
        w = torch.randn(six.shape[1], generator=gen) / six.shape[1] ** 0.5
        rows6.append(w), bias6.append(-float((six @ w).max()) - 1.0)
        unit_parts.append([(6, len(rows6) - 1)]), units.append({"kind": "silent"})
    for name in FOOLING:
        unit_parts.append(unit_parts[CONCEPTS.index(name)])
        units.append({"kind": "fooling", "concept": name})
    readout6, readout7 = _linear(rows6, bias6), _linear(rows7, bias7)
    parts = torch.zeros(len(units), len(rows6) + len(rows7), dtype=torch.bool)
    for u, idx in enumerate(unit_parts):
        for layer, row in idx:  # relu7's readouts follow relu6's
            parts[u, row if layer == 6 else len(rows6) + row] = True
    silent = torch.tensor([u["kind"] == "silent" for u in units])
    fooling = torch.tensor([1.0 if u["kind"] == "fooling" else 0.0 for u in units])
    with torch.no_grad():
        natural_r = Checkerboard()(base.space.encode(images)).max()
    module = PlantedTarget(
        base.module, readout6, readout7, parts, silent, fooling, TRAP_MARGIN * float(natural_r)
    )
    module.space = base.space
    for i, u in enumerate(units):
        u["unit"] = i
    return LoadedModel(
        freeze(module),
        "target",
        "toyworld:planted",
        space=base.space,
        output_layer=base.output_layer,
        weights=base.weights,
        random_weights=False,
        fingerprint=base.fingerprint + "+planted",
        extras=dict(base.extras) | {"planted": units},
    )
