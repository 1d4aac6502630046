"""More targets in an output unit's objective (``models.ensemble``, issue 17).

A picture found by ascending one network's output often pleases that network alone: in the toy worlds a
judge trained apart reads DGN-AM's pictures far less often than T does, and the gap is the same with the
roles swapped (docs/sampling.md, "Objective algebra"). Pictures that transfer are found by ascending an
ensemble of networks trained apart (Liu et al., ICLR 2017, "Delving into transferable adversarial examples
and black-box attacks", its ensemble-based approach with equal weights), fused in their logits (Dong et al.,
CVPR 2018, "Boosting adversarial attacks with momentum", Sec. 3.2: logits fused transferred best there)::

    z_ens(x) = ( z_T(x) + sum_m z_m(x) ) / (M + 1)          # (U,) the output layers, averaged
    f_ens(x) = f(z_ens(x))                                   # the unit's objective (raw, softmax, a pair...)

The chains climb ``f_ens`` and pick their best picture by it; every number the atlas stores stays T's own
(activation, probability, objective), so the atlas is still T's, drawn with the members as a prior. Output
layers only: output unit ``i`` is class ``i`` in every member, while unit ``i`` of a hidden layer of two
networks trained apart are unrelated.

Usage::

    check_member_shapes(members, (10,))                     # T's output layer; a member that differs: error
    ens = TargetEnsemble(members, setup, fold=True)        # frozen LoadedModels with T's output classes
    f = ens.objective(z_t, img, units, objective, index)    # (B,) the objective of the mean output layer
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch

from atlas.errors import ConfigError
from atlas.models.fusion import BatchNormFolding
from atlas.models.loaded import LoadedModel
from atlas.models.probes import LayerProbe, list_layers
from atlas.sampling.compute import ComputeSetup
from atlas.sampling.objectives import Objective, layer_values
from atlas.sampling.units import Unit


class TargetEnsemble:
    def __init__(self, members: Sequence[LoadedModel], setup: ComputeSetup, fold: bool) -> None:
        """``members``: the networks besides T (each with an input space and an output layer); the caller's
        modules stay untouched (each is copied, BatchNorm folded except at its output layer)."""
        self.members = list(members)
        self.setup = setup
        self._probes: list[LayerProbe] = []
        for member in self.members:
            assert member.space is not None and member.output_layer, "check_member_shapes first"
            module = copy.deepcopy(member.module)
            if fold:
                folding = BatchNormFolding(module)
                folding.fold()
                folding.unfold([member.output_layer])  # the layer read stays exact
            module = setup.prepare(module, compile_ok=False)  # probes stop the forward: no compile
            self._probes.append(LayerProbe(module, [member.output_layer]))

    def __len__(self) -> int:
        return len(self.members)

    def objective(
        self,
        target_values: torch.Tensor,
        img: torch.Tensor,
        units: list[Unit],
        objective: Objective,
        index: torch.Tensor,
    ) -> torch.Tensor:
        """target_values (B, U) T's output layer on ``img`` (B, 3, H, W) rgb01 -> (B,) the objective of the
        mean of it and every member's output layer on the same picture (with gradient where the caller
        records one)."""
        total = target_values.float()
        for values in self.values(img, units):
            total = total + values
        return objective(total / (len(self.members) + 1), index)

    def values(self, img: torch.Tensor, units: list[Unit]) -> list[torch.Tensor]:
        """Each member's output layer on ``img`` (B, 3, H, W) rgb01, at the units' positions: M x (B, U)."""
        out = []
        for member, probe in zip(self.members, self._probes, strict=True):
            assert member.space is not None and member.output_layer is not None
            acts = probe(self.setup.to_input(member.space.encode(img)))
            out.append(layer_values(acts[member.output_layer], units).float())
        return out


def ensemble_output_layer(target: LoadedModel) -> str:
    """T's output layer, which the members join; a ConfigError when T declares none."""
    if not target.output_layer:
        raise ConfigError(
            "models.ensemble: the target declares no output layer; set models.target.output_layer"
        )
    return target.output_layer


def check_member_shapes(members: Sequence[LoadedModel], target_shape: tuple[int, ...]) -> None:
    """Every member's output layer must hold T's output units (``target_shape``, per picture), in their
    order: a ConfigError naming the first that does not (one batch-1 pass each, where its weights are)."""
    for i, member in enumerate(members):
        if member.space is None or not member.output_layer:
            raise ConfigError(
                f"models.ensemble[{i}] {member.spec!r}: declares no input space or output layer"
            )
        s, layer = member.space.size, member.output_layer
        device = next(iter(member.module.parameters()), torch.empty(0)).device
        with torch.no_grad():
            x = member.space.encode(torch.zeros(1, 3, s, s, device=device))
            shape = tuple(LayerProbe(member.module, [layer])(x)[layer].shape[1:])
        if shape != tuple(target_shape):
            raise ConfigError(
                f"models.ensemble[{i}] {member.spec!r}: output layer {layer!r} has shape {shape}, the "
                f"target's {tuple(target_shape)}; a member must have the target's classes in its order"
                + _layers_of_shape(member, x, tuple(target_shape), f"models.ensemble[{i}].output_layer")
            )


def _layers_of_shape(member: LoadedModel, x: torch.Tensor, shape: tuple[int, ...], key: str) -> str:
    """``(its layers of that shape: 'head'; name one with KEY)`` for a member whose default output layer
    is another head (a user's trial), or nothing."""
    with torch.no_grad():
        fits = [r.name for r in list_layers(member.module, x) if tuple(r.shape) == shape]
    if not fits:
        return ""
    return f" (its layers of that shape: {', '.join(repr(n) for n in fits[:4])}; name one with {key})"
