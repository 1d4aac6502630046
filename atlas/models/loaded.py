"""The resolved form of a model spec: a frozen module plus what the rest of atlas needs to know."""

from __future__ import annotations

import math
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
    network that reads codes (the encoder, else the target) has a layer of that name whose output is G's
    code (its size, through G's ``code_encoder`` when it has one); None otherwise, so a run that needs no
    code layer (DGN-AM from a random or mean start) takes any target, as with DeePSiM (a trial's own
    network with a 128-wide ``relu6`` was refused with the toy G's 256-wide code)."""
    name = generator.extras.get("code_layer") if generator is not None else None
    layer = dict(reader.module.named_modules()).get(name) if name else None
    if generator is None or layer is None or reader.space is None:
        return None
    if not generator.code_shape:
        return name
    code = _layer_output(reader, layer)
    encoder = generator.extras.get("code_encoder")
    if code is not None and isinstance(encoder, nn.Module):  # a subspace G: its code is the encoder's
        try:
            with torch.no_grad():
                held = [*encoder.parameters(), *encoder.buffers()]
                code = encoder(code.to(held[0].device if held else code.device))
        except (RuntimeError, ValueError, TypeError):
            return None
    return name if code is not None and code[0].numel() == math.prod(generator.code_shape) else None


class _Reached(Exception):
    """Raised by the hook of :func:`_layer_output` once its layer has run: the rest of the net need not."""


def _layer_output(reader: LoadedModel, layer: nn.Module) -> torch.Tensor | None:
    """``layer``'s output on one grey picture through ``reader``, the net run only up to it (None when it
    fails or gives no tensor)."""
    assert reader.space is not None
    seen: list[torch.Tensor] = []

    def keep(_module: nn.Module, _inputs: object, out: object) -> None:
        if torch.is_tensor(out):
            seen.append(out)
        raise _Reached

    hook = None
    try:
        hook = layer.register_forward_hook(keep)
        device = next(reader.module.parameters(), torch.zeros(0)).device
        x = reader.space.encode(torch.full((1, 3, reader.space.size, reader.space.size), 0.5, device=device))
        with torch.no_grad():
            reader.module(x)
    except (_Reached, RuntimeError, ValueError, TypeError):
        pass
    finally:
        if hook is not None:
            hook.remove()
    return seen[0] if seen else None
