"""The resolved form of a model spec: a frozen module plus what the rest of atlas needs to know."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from atlas.models.spaces import ImageSpace

Role = Literal["target", "generator", "dae", "judge", "reader", "encoder"]
IMAGE_ROLES = ("target", "judge", "encoder")  # roles of image networks: they read pictures in a space


@dataclass
class LoadedModel:
    """A model ready for input-gradient work: eval mode, parameters frozen (``requires_grad=False``).

    - target / judge: ``space`` is the input space; ``output_layer`` names the last layer (class logits).
    - generator: ``space`` is the output space; ``code_shape`` is the input code shape, e.g. (4096,).
    - dae: ``code_shape`` is the code shape it denoises.
    """

    module: nn.Module
    role: Role
    spec: str
    space: ImageSpace | None = None
    code_shape: tuple[int, ...] | None = None
    output_layer: str | None = None
    weights: str = "random"  # a file path, "random", or "toyworld:<hash>"
    random_weights: bool = True
    fingerprint: str = ""
    extras: dict[str, object] = field(default_factory=dict)  # e.g. code statistics for generators

    def to(self, device: torch.device | str) -> LoadedModel:
        self.module.to(device)
        return self

    def describe(self) -> str:
        w = "RANDOM weights" if self.random_weights else f"weights {self.weights}"
        return f"{self.spec} ({self.role}, {w})"


def freeze(module: nn.Module) -> nn.Module:
    """Eval mode, no parameter gradients, no in-place activations (hooks must see each layer's own output)."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    for m in module.modules():
        if isinstance(getattr(m, "inplace", None), bool):
            m.inplace = False
    return module


def generators_own_layer(generator: LoadedModel | None, reader: LoadedModel) -> str | None:
    """The layer G names as its code (its ``code_layer`` extra: T's relu6 for the toy world's G) when the
    network that reads codes (the encoder, else the target) has a layer of that name; None otherwise, so
    a run that needs no code layer (DGN-AM from a random or mean start) takes any target, as with DeePSiM."""
    name = generator.extras.get("code_layer") if generator is not None else None
    return name if name and name in dict(reader.module.named_modules()) else None
