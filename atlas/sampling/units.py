"""Units: what a chain maximizes — (layer, index[, spatial position]) of the target network.

Usage::

    unit = Unit("conv3", 17, kind="conv", spatial="center", position=(4, 4))
    unit.describe()          # -> "conv3:17 @ (4,4)"
    kind_of(shape=(64, 8, 8), is_output=False)   # -> "conv"

Kinds: ``output`` (the target's logits layer), ``fc`` (a hidden 2-D layer, one value per unit) and ``conv``
(a hidden 4-D layer; a unit is a channel, read at one position (``spatial="center"``, as DGN-AM and PPGN do)
or averaged over the map (``spatial="mean"``, the channel objective)).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from atlas.errors import ConfigError

Kind = Literal["output", "fc", "conv"]
Spatial = Literal["center", "mean"]


@dataclass(frozen=True)
class Unit:
    layer: str
    index: int
    kind: Kind = "fc"
    spatial: Spatial | None = None  # conv units only
    position: tuple[int, int] | None = None  # (y, x) for conv units read at one position

    def describe(self, what: str | None = None) -> str:
        """``layer:index`` (or ``layer: what``, e.g. a composite's text) with where a conv unit is read:
        ``conv3:17 @ (4,4)``, ``conv3: 1 + 3 @ (4,4)``, ``conv3:17 mean``."""
        base = f"{self.layer}:{self.index}" if what is None else f"{self.layer}: {what}"
        if self.kind != "conv" and self.spatial is None:
            return base
        if self.spatial == "mean":
            return f"{base} mean"
        if self.position is not None:
            return f"{base} @ ({self.position[0]},{self.position[1]})"
        return base

    @property
    def spatial_label(self) -> str | None:
        """What the store records as the unit's spatial mode: None, 'mean' or 'center (y,x)'."""
        if self.spatial is None:
            return None
        if self.spatial == "mean" or self.position is None:
            return self.spatial
        return f"{self.spatial} ({self.position[0]},{self.position[1]})"


def kind_of(shape: tuple[int, ...], is_output: bool) -> Kind:
    """Kind of a layer from its per-example output shape: (U,) -> fc/output, (C, H, W) -> conv; an output
    layer of shape (U, 1, 1) (SqueezeNet's pooled classifier) is 'output' too, read at its one position."""
    if len(shape) == 1 or (is_output and _one_position(shape)):
        return "output" if is_output else "fc"
    if len(shape) == 3:
        return "conv"
    raise ConfigError(
        f"layer output of shape {tuple(shape)} has no units; choose a layer with a (U,) or (C, H, W) output"
    )


def layer_kind(
    name: str, shape: tuple[int, ...], output_layer: str | None, declared: str = "auto", key: str = "layers"
) -> Kind:
    """The one rule for a layer's unit kind (driver, pre-flight, engine): ``declared`` ('auto', 'output',
    'fc', 'conv', as ``layers[].kind``) checked against the layer's shape and the target's output layer.

    auto: the output layer is 'output', (U,) layers 'fc', (C, H, W) layers 'conv'. ``key`` prefixes errors."""
    if len(shape) not in (1, 3):
        raise ConfigError(
            f"{key}.name: layer {name!r} has output shape {tuple(shape)}; "
            "only fc (N,) and conv (C, H, W) layers have units"
        )
    if declared == "auto":
        return kind_of(shape, name == output_layer)
    fits = {"fc": len(shape) == 1, "conv": len(shape) == 3, "output": len(shape) == 1 or _one_position(shape)}
    if not fits[declared]:
        raise ConfigError(
            f"{key}.kind: {declared!r} does not fit layer {name!r} of shape {tuple(shape)}; use kind: auto"
        )
    if declared == "output" and name != output_layer:
        raise ConfigError(
            f"{key}.kind: 'output' but the target's output layer is {output_layer!r}; "
            f"set models.target.output_layer: {name} instead"
        )
    return declared  # type: ignore[return-value]


def _one_position(shape: tuple[int, ...]) -> bool:
    return len(shape) == 3 and tuple(shape[1:]) == (1, 1)


def center_of(shape: tuple[int, ...]) -> tuple[int, int]:
    """Centre position (y, x) of a (C, H, W) map, as DGN-AM reads conv5 at xy = 6 of 13x13."""
    return shape[1] // 2, shape[2] // 2


def make_unit(layer: str, index: int, shape: tuple[int, ...], is_output: bool, spatial: Spatial) -> Unit:
    """A Unit for ``index`` of a layer with per-example output ``shape``; validates the index."""
    kind = kind_of(shape, is_output)
    n = shape[0]
    if not 0 <= index < n:
        raise ConfigError(f"unit {index} is out of range for layer {layer!r}; it has units 0-{n - 1}")
    if kind == "conv":
        pos = center_of(shape) if spatial == "center" else None
        return Unit(layer, index, kind, spatial, pos)
    return Unit(layer, index, kind)
