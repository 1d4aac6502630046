"""The toy world's shapes: signed distance functions in an object's own frame, and the class table.

Every shape lives in a unit frame (radius about 1) and is a signed distance (negative inside), so one
vectorized formula renders all images of a label with anti-aliased edges at any position, scale and
rotation. Shapes are thick on purpose: at 32x32 an object is 9-13 px in radius, and strokes thinner
than ~3 px (plus signs, stars, arrows) do not survive a 256-number code.

Ten classes differ by **shape**; colours come from one palette shared by all classes. Two classes are
multifaceted: their two facets are *different shapes* (a pill is a capsule or two dots; a hook is a
crescent or an L), 50/50, kept as fine labels.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

Tensor = torch.Tensor
SDF = Callable[[Tensor, Tensor], Tensor]  # (px, py) local coordinates, any shape -> signed distance


def _circle(px: Tensor, py: Tensor, cx: float, cy: float, r: float) -> Tensor:
    return torch.hypot(px - cx, py - cy) - r


def _box(px: Tensor, py: Tensor, hx: float, hy: float, cx: float = 0.0, cy: float = 0.0) -> Tensor:
    qx, qy = (px - cx).abs() - hx, (py - cy).abs() - hy
    outside = torch.hypot(qx.clamp(min=0), qy.clamp(min=0))
    inside = torch.maximum(qx, qy).clamp(max=0)
    return outside + inside


def _triangle(px: Tensor, py: Tensor, r: float) -> Tensor:
    """Equilateral triangle with half side ``r`` centred at its centroid (Inigo Quilez's formula)."""
    k = math.sqrt(3.0)
    x, y = px.abs() - r, py + r / k
    flip = (x + k * y) > 0
    x, y = torch.where(flip, (x - k * y) / 2, x), torch.where(flip, (-k * x - y) / 2, y)
    x = x - x.clamp(-2 * r, 0)
    return -torch.hypot(x, y) * torch.sign(y)


def disk(px: Tensor, py: Tensor) -> Tensor:
    return _circle(px, py, 0, 0, 0.95)


def ring(px: Tensor, py: Tensor) -> Tensor:
    return (torch.hypot(px, py) - 0.68).abs() - 0.3


def square(px: Tensor, py: Tensor) -> Tensor:
    return _box(px, py, 0.8, 0.8)


def triangle(px: Tensor, py: Tensor) -> Tensor:
    return _triangle(px, py, 1.05)


def cross(px: Tensor, py: Tensor) -> Tensor:
    return torch.minimum(_box(px, py, 1.0, 0.34), _box(px, py, 0.34, 1.0))


def frame(px: Tensor, py: Tensor) -> Tensor:
    return _box(px, py, 0.62, 0.62).abs() - 0.22


def half_disk(px: Tensor, py: Tensor) -> Tensor:
    y = py + 0.42  # centroid of a half disk at the origin
    return torch.maximum(torch.hypot(px, y) - 1.0, -y)


def bowtie(px: Tensor, py: Tensor) -> Tensor:
    wedge = (py.abs() - 0.9 * px.abs()) / math.sqrt(1 + 0.9**2)
    return torch.maximum(_box(px, py, 0.95, 0.85), torch.minimum(wedge, _box(px, py, 0.2, 0.25)))


def capsule(px: Tensor, py: Tensor) -> Tensor:
    return torch.hypot((px.abs() - 0.62).clamp(min=0), py) - 0.38


def two_dots(px: Tensor, py: Tensor) -> Tensor:
    return torch.minimum(_circle(px, py, -0.55, 0, 0.42), _circle(px, py, 0.55, 0, 0.42))


def crescent(px: Tensor, py: Tensor) -> Tensor:
    return torch.maximum(torch.hypot(px + 0.15, py) - 1.0, -(torch.hypot(px - 0.45, py) - 0.8))


def l_shape(px: Tensor, py: Tensor) -> Tensor:
    return torch.minimum(_box(px, py, 0.3, 0.9, cx=-0.45), _box(px, py, 0.8, 0.3, cx=0.05, cy=0.6))


@dataclass(frozen=True)
class ShapeClass:
    name: str
    facets: tuple[tuple[str, SDF], ...]  # (fine name, signed distance function)


CLASSES: tuple[ShapeClass, ...] = (
    ShapeClass("disk", (("disk", disk),)),
    ShapeClass("ring", (("ring", ring),)),
    ShapeClass("square", (("square", square),)),
    ShapeClass("triangle", (("triangle", triangle),)),
    ShapeClass("cross", (("cross", cross),)),
    ShapeClass("frame", (("frame", frame),)),
    ShapeClass("half_disk", (("half_disk", half_disk),)),
    ShapeClass("bowtie", (("bowtie", bowtie),)),
    ShapeClass("pill", (("pill/capsule", capsule), ("pill/two_dots", two_dots))),
    ShapeClass("hook", (("hook/crescent", crescent), ("hook/l_shape", l_shape))),
)

CLASS_NAMES: list[str] = [c.name for c in CLASSES]
FINE_NAMES: list[str] = [name for c in CLASSES for name, _ in c.facets]
FINE_TO_CLASS: list[int] = [i for i, c in enumerate(CLASSES) for _ in c.facets]
FINE_SDFS: list[SDF] = [sdf for c in CLASSES for _, sdf in c.facets]
MULTIFACETED: list[int] = [i for i, c in enumerate(CLASSES) if len(c.facets) > 1]

# Shared palette (RGB in [0,1]): any class can take any colour, so colour never decides the class.
PALETTE: tuple[tuple[float, float, float], ...] = (
    (0.90, 0.15, 0.15),  # red
    (0.15, 0.75, 0.20),  # green
    (0.20, 0.35, 0.95),  # blue
    (0.95, 0.85, 0.15),  # yellow
    (0.15, 0.85, 0.90),  # cyan
    (0.85, 0.25, 0.85),  # magenta
    (0.95, 0.55, 0.10),  # orange
    (0.95, 0.95, 0.95),  # white
)
