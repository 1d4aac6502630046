"""Layer probes: list a model's layers and capture named activations in one early-stopping pass.

Usage::

    probe = LayerProbe(model, ["features.10", "classifier.6"])
    acts = probe(x)            # {"features.10": (B, C, H, W), "classifier.6": (B, N)}

The forward pass is aborted as soon as every requested layer has produced its output, so layers
after the deepest requested one never run (baukit's ``Trace(stop=True)``).
"""

from __future__ import annotations

import difflib
import itertools
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
    calls: int = 1  # times the module ran in one forward pass; probes read its first call
    last_call: int = 0  # order of its last call among all hooked calls (highest: the network's end)


class _StopForward(Exception):
    pass


def _kind(shape: tuple[int, ...]) -> tuple[str, int]:
    if len(shape) == 1:
        return "fc", shape[0]
    if len(shape) == 3:
        return "conv", shape[0]
    return "other", 0


SMALL_NETWORK = 16  # modules: an unknown layer's error lists them all; a larger network's, close matches


def resolve_modules(model: nn.Module, names: Iterable[str]) -> dict[str, nn.Module]:
    """Name -> module, with a one-line error (and close matches) for an unknown name."""
    table = dict(model.named_modules())
    out = {}
    for name in names:
        if name not in table or name == "":
            named = [n for n in table if n]
            hint = difflib.get_close_matches(name, named, n=3)
            extra = f" (did you mean {', '.join(repr(h) for h in hint)}?)" if hint else ""
            if len(named) <= SMALL_NETWORK:  # a small network's names, said at once (a trial's 6-layer net)
                valid = ", ".join(repr(n) for n in named) or "none (the network has no named submodules)"
                raise ModelError(f"unknown layer {name!r}{extra}; the network's layers are {valid}")
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
                if name in captured:  # a module called twice is read at its first call
                    return
                if wanted.issubset({*captured, name}):
                    captured[name] = output
                    raise _StopForward
                # the forward goes on: a later in-place op (F.relu(x, inplace=True)) must not change it
                captured[name] = output.clone() if isinstance(output, torch.Tensor) else output

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
    calls: dict[str, int] = {}
    last_call: dict[str, int] = {}
    tick = itertools.count(1)  # every hooked call, in the order they run
    targets = {
        n: m
        for n, m in model.named_modules()
        if n and (include_containers or not any(True for _ in m.children()) or n == stop_after)
    }

    def make_hook(name: str):
        def hook(_m: nn.Module, _i: object, out: object) -> None:
            if isinstance(out, torch.Tensor):
                if name not in shapes:
                    shapes[name] = tuple(out.shape[1:])
                    order.append(name)
                calls[name] = calls.get(name, 0) + 1
                last_call[name] = next(tick)
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
        rows.append(
            LayerInfo(
                name, type(module).__name__, shapes[name], units, kind, params, calls[name], last_call[name]
            )
        )
    return rows


def forward_outputs(model: nn.Module, example: torch.Tensor) -> tuple[str | None, list[str | None]]:
    """(the leaf module that ran last, as :func:`last_leaf` of :func:`list_layers` finds it; for each tensor
    the forward returns, in order (one tensor, or a tuple, list or dict of them: a multi-head network), the
    leaf that computed it, None where none did: ``torch.cat`` in ``forward``). One forward pass of
    ``example``, no gradient."""
    produced: dict[int, tuple[str, torch.Tensor]] = {}  # id -> (its producer, the tensor: kept, so no
    # later tensor takes a freed one's id)
    ran_last: list[str] = []
    leaves = {n: m for n, m in model.named_modules() if n and not any(True for _ in m.children())}

    def make_hook(name: str):
        def hook(_m: nn.Module, _i: object, out: object) -> None:
            if isinstance(out, torch.Tensor):
                produced[id(out)] = (name, out)
                ran_last[:] = [name]

        return hook

    handles = [m.register_forward_hook(make_hook(n)) for n, m in leaves.items()]
    try:
        with torch.no_grad():
            out = model(example)
        values = (
            list(out.values()) if isinstance(out, dict) else out if isinstance(out, tuple | list) else [out]
        )
        heads = [
            produced[id(v)][0] if id(v) in produced else None for v in values if isinstance(v, torch.Tensor)
        ]
        return (ran_last[0] if ran_last else None), heads
    finally:
        for h in handles:
            h.remove()


def last_leaf(rows: list[LayerInfo]) -> str | None:
    """The module that ran last in the forward pass (``list_layers`` rows of leaves): a network's output
    layer, whatever the order its modules were registered in (a dropout defined last but applied before
    the classifier)."""
    return max(rows, key=lambda r: r.last_call).name if rows else None
