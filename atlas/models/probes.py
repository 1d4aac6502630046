"""Layer probes: list a model's layers and capture named activations in one early-stopping pass.

Usage::

    probe = LayerProbe(model, ["features.10", "classifier.6"])
    acts = probe(x)            # {"features.10": (B, C, H, W), "classifier.6": (B, N)}

The forward pass is aborted as soon as every requested layer has produced its output, so layers
after the deepest requested one never run (baukit's ``Trace(stop=True)``).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from atlas.errors import ModelError


@dataclass(frozen=True)
class LayerInfo:
    name: str
    module_type: str
    shape: tuple[int, ...]  # output shape without the batch dimension
    units: int  # features for 2-D outputs, channels for 4-D outputs
    kind: str  # "fc", "conv" or "other"
    params: int


class _StopForward(Exception):
    pass


def _kind(shape: tuple[int, ...]) -> tuple[str, int]:
    if len(shape) == 1:
        return "fc", shape[0]
    if len(shape) == 3:
        return "conv", shape[0]
    return "other", 0


def resolve_modules(model: nn.Module, names: Iterable[str]) -> dict[str, nn.Module]:
    """Name -> module, with a one-line error (and close matches) for an unknown name."""
    table = dict(model.named_modules())
    out = {}
    for name in names:
        if name not in table or name == "":
            hint = difflib.get_close_matches(name, [n for n in table if n], n=3)
            extra = f" (did you mean {', '.join(repr(h) for h in hint)}?)" if hint else ""
            raise ModelError(f"unknown layer {name!r}{extra}; `atlas layers SPEC` lists the valid names")
        out[name] = table[name]
    return out


class LayerProbe:
    """Capture the outputs of named modules in one forward pass, stopping after the last of them."""

    def __init__(self, model: nn.Module, names: Iterable[str]) -> None:
        self.model = model
        self.names = list(dict.fromkeys(names))
        self.modules = resolve_modules(model, self.names)

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        captured: dict[str, torch.Tensor] = {}
        wanted = set(self.names)

        def make_hook(name: str):
            def hook(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
                if name not in captured:
                    captured[name] = output
                if wanted.issubset(captured):
                    raise _StopForward

            return hook

        handles = [m.register_forward_hook(make_hook(n)) for n, m in self.modules.items()]
        try:
            self.model(x)
        except _StopForward:
            pass
        finally:
            for h in handles:
                h.remove()
        missing = wanted - set(captured)
        if missing:
            raise ModelError(f"layer {sorted(missing)[0]!r} did not run in the model's forward pass")
        return {n: captured[n] for n in self.names}


def list_layers(
    model: nn.Module, example: torch.Tensor, include_containers: bool = False, stop_after: str | None = None
) -> list[LayerInfo]:
    """Every named module (leaves by default) with its output shape for ``example`` (1, C, H, W), in execution
    order; with ``stop_after`` the forward pass stops once that module (leaf or container) has run."""
    shapes: dict[str, tuple[int, ...]] = {}
    order: list[str] = []
    targets = {
        n: m
        for n, m in model.named_modules()
        if n and (include_containers or not any(True for _ in m.children()) or n == stop_after)
    }

    def make_hook(name: str):
        def hook(_m: nn.Module, _i: object, out: object) -> None:
            if name not in shapes and isinstance(out, torch.Tensor):
                shapes[name] = tuple(out.shape[1:])
                order.append(name)
            if name == stop_after:
                raise _StopForward

        return hook

    handles = [m.register_forward_hook(make_hook(n)) for n, m in targets.items()]
    try:
        with torch.no_grad():
            model(example)
    except _StopForward:
        pass
    finally:
        for h in handles:
            h.remove()
    rows = []
    for name in order:
        module = targets[name]
        kind, units = _kind(shapes[name])
        params = sum(p.numel() for p in module.parameters(recurse=False))
        rows.append(LayerInfo(name, type(module).__name__, shapes[name], units, kind, params))
    return rows
