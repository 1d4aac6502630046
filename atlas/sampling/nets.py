"""The engine's own frozen networks: copies of T, G and the DAE on the device, BatchNorm folded, probes.

Usage::

    nets = EngineNets(target, generator, dae, setup, fold=True)   # the caller's modules stay untouched
    probe, final = nets.probes(["fc8", "fc6"], ["fc8", "fc7"])    # LayerProbe on the target
    nets.layer_shape("conv3")                                      # -> (16, 8, 8)  (C, H, W), one probe pass
    nets.layer_order()                                             # leaf layers in execution order

Folding rewrites modules in place, so the engine folds copies (``copy.deepcopy``) and keeps their record in a
:class:`~atlas.models.fusion.BatchNormFolding`; a probe on a folded layer unfolds it first (exact outputs).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from atlas.errors import ConfigError
from atlas.models.fusion import BatchNormFolding
from atlas.models.loaded import LoadedModel
from atlas.models.probes import LayerProbe, list_layers
from atlas.sampling.compute import ComputeSetup


class EngineNets:
    def __init__(
        self,
        target: LoadedModel,
        generator: LoadedModel | None,
        dae: LoadedModel | None,
        setup: ComputeSetup,
        fold: bool,
        encoder: LoadedModel | None = None,
    ) -> None:
        """``encoder``: the network G inverts when it is not the target (``models.encoder``)."""
        if target.space is None:
            raise ConfigError(f"target {target.spec!r} declares no input space")
        if encoder is not None and encoder.space is None:
            raise ConfigError(f"encoder {encoder.spec!r} declares no input space")
        self.target, self.generator, self.dae, self.encoder = target, generator, dae, encoder
        self.space = target.space
        self.device = setup.device
        self.setup = setup
        own = _own_copy if fold else (lambda m: m)
        target_module = own(target.module)
        self.folding = BatchNormFolding(target_module)
        if fold:
            self.folding.fold()  # probes stay exact: probes() unfolds the layers they read
        self.target_module = setup.prepare(target_module, compile_ok=False)
        self.gen_module = setup.prepare(_folded(own(generator.module), fold)) if generator else None
        self.dae_module = setup.prepare(_folded(own(dae.module), fold)) if dae else None
        # the encoder is only probed at its code layer: kept unfolded, so that layer reads exactly
        self.encoder_module = setup.prepare(own(encoder.module), compile_ok=False) if encoder else None
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._order: list[str] = []
        self._before: dict[str, list[tuple[str, tuple[int, ...]]]] = {}

    @property
    def output_layer(self) -> str | None:
        return self.target.output_layer

    def resolve_layer(self, layer: str) -> str:
        """'output' -> the target's output layer; any other name as it is."""
        if layer != "output":
            return layer
        if not self.target.output_layer:
            raise ConfigError("layer 'output': the target declares no output layer; name the layer")
        return self.target.output_layer

    def probes(self, *name_lists: list[str]) -> list[LayerProbe]:
        """Probes on the target, one per list of layer names. Every named layer folded with its BatchNorm is
        unfolded first (all lists before any probe is built: an unfold swaps modules a probe holds)."""
        self.folding.unfold([n for names in name_lists for n in names])
        return [LayerProbe(self.target_module, names) for names in name_lists]

    def code_reader(self, layer: str) -> Callable[[torch.Tensor], torch.Tensor]:
        """rgb01 (B, 3, H, W) -> the encoder's ``layer`` activations (B, *L), no gradient: G's code read by
        the network G inverts, in that network's own image space (``models.encoder``)."""
        assert self.encoder is not None and self.encoder.space is not None and self.encoder_module is not None
        probe, space, setup = LayerProbe(self.encoder_module, [layer]), self.encoder.space, self.setup

        def read(rgb01: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return probe(setup.to_input(space.encode(rgb01.detach())))[layer]

        return read

    def _example(self) -> torch.Tensor:
        s = self.space.size
        return self.space.encode(torch.zeros(1, 3, s, s, device=self.device))  # (1, 3, s, s)

    def layer_shape(self, layer: str) -> tuple[int, ...]:
        """Per-example output shape of ``layer``: (U,) or (C, H, W); one batch-1 pass that stops there."""
        name = self.resolve_layer(layer)
        if name not in self._shapes:
            with torch.no_grad():
                out = self.probes([name])[0](self._example())
            self._shapes[name] = tuple(out[name].shape[1:])
        return self._shapes[name]

    def layer_order(self) -> list[tuple[str, tuple[int, ...]]]:
        """(name, shape) of the target's leaf layers in execution order (one batch-1 pass, cached)."""
        if not self._order:
            rows = list_layers(self.target_module, self._example())
            for r in rows:
                self._shapes.setdefault(r.name, r.shape)
            self._order = [r.name for r in rows]
        return [(n, self._shapes[n]) for n in self._order]

    def layers_up_to(self, layer: str) -> list[tuple[str, tuple[int, ...]]]:
        """(name, shape) of the leaf layers that run before ``layer``, and ``layer`` itself (a batch-1 pass
        that stops there, cached)."""
        name = self.resolve_layer(layer)
        if name not in self._before:
            rows = list_layers(self.target_module, self._example(), stop_after=name)
            self._before[name] = [(r.name, r.shape) for r in rows]
        return self._before[name]


def _own_copy(module: nn.Module) -> nn.Module:
    return copy.deepcopy(module)


def _folded(module: nn.Module, fold: bool) -> nn.Module:
    if fold:
        BatchNormFolding(module).fold()  # G and the DAE are never probed: their record can go
    return module
