"""Fold frozen BatchNorm layers into the convolution or linear layer right before them (inference speed).

Usage::

    folding = BatchNormFolding(G)        # G: the caller's own copy (folding rewrites it in place)
    folding.fold()                       # every Conv/ConvTranspose/Linear -> BatchNorm pair of a Sequential
    folding.unfold(["conv1.0"])          # a requested layer *is* a folded conv: put its exact output back

An eval-mode BatchNorm is an affine map per channel, ``y = s (x - mean) + beta`` with
``s = gamma / sqrt(var + eps)``, so ``BN(W x + b) = (s W) x + s (b - mean) + beta``: the pair becomes one
layer and the BatchNorm an ``nn.Identity`` (its name keeps its output). The forward and the input gradient of
the whole network are unchanged (up to rounding); the BatchNorm's own passes, forward and backward, vanish.

Only the folded layer's *own* output changes (it now includes the BatchNorm), so a probe on that layer (or on
its BatchNorm, whose module object changes) calls ``unfold`` first. Unfolding is permanent: a later
``fold`` leaves those layers alone, so probes built on them stay valid. Folding is in place and idempotent;
its record lives in the ``BatchNormFolding`` object (the Engine folds its own copies of the caller's nets).
Modules in training mode, lazy (uninitialized) layers and Sequential subclasses with their own ``forward``
are never folded.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

_FOLDABLE = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
    nn.Linear,
)


@dataclass
class _Fold:
    parent: nn.Sequential
    index: int  # position of the BatchNorm in parent
    layer: nn.Module
    weight: torch.Tensor  # the layer's original parameters (restored by unfold)
    bias: torch.Tensor | None
    norm: nn.Module
    norm_name: str


def _pairs(module: nn.Module) -> Iterable[tuple[str, str, nn.Sequential, int]]:
    """(layer name, BatchNorm name, parent Sequential, BatchNorm index) of every foldable pair."""
    for seq_name, seq in module.named_modules():
        if not isinstance(seq, nn.Sequential) or type(seq).forward is not nn.Sequential.forward:
            continue  # a subclass with its own forward may not run its children in order
        kids = list(seq.named_children())  # names: "0", "1", ... or an OrderedDict's keys
        for i in range(len(kids) - 1):
            (layer_key, layer), (norm_key, norm) = kids[i], kids[i + 1]
            if not isinstance(layer, _FOLDABLE) or not isinstance(norm, nn.modules.batchnorm._BatchNorm):
                continue
            if norm.training or layer.training or norm.running_mean is None or norm.running_var is None:
                continue
            if getattr(layer, "groups", 1) != 1 and isinstance(layer, nn.modules.conv._ConvTransposeNd):
                continue
            if isinstance(layer.weight, nn.parameter.UninitializedParameter):
                continue
            prefix = f"{seq_name}." if seq_name else ""
            yield f"{prefix}{layer_key}", f"{prefix}{norm_key}", seq, i + 1


class BatchNormFolding:
    """The folds of one module, recorded here (never on the module): fold, unfold exactly, list."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self._folds: dict[str, _Fold] = {}  # layer name -> the pair folded now
        self._exact: set[str] = set()  # names unfolded for a probe: never folded again

    @property
    def folded(self) -> list[str]:
        """Names of the layers currently folded."""
        return list(self._folds)

    @property
    def folded_norms(self) -> set[str]:
        """Names of the BatchNorm layers folded away now (an ``nn.Identity`` stands in their place)."""
        return {fold.norm_name for fold in self._folds.values()}

    @torch.no_grad()
    def fold(self, keep: Iterable[str] = ()) -> list[str]:
        """Fold every eval-mode BatchNorm into the layer before it, except pairs named (either half) in
        ``keep`` or unfolded before; -> names of the layers folded by this call."""
        keep = set(keep) | self._exact
        done = []
        for name, norm_name, parent, index in list(_pairs(self.module)):
            if name in keep or norm_name in keep or name in self._folds:
                continue
            layer, norm = parent[index - 1], parent[index]
            self._folds[name] = _Fold(
                parent, index, layer, layer.weight.detach().clone(), _clone(layer.bias), norm, norm_name
            )
            _fold_pair(layer, norm)
            parent[index] = nn.Identity()
            done.append(name)
        return done

    @torch.no_grad()
    def unfold(self, names: Iterable[str]) -> list[str]:
        """Undo, for good, the folds of the named layers or BatchNorms (exact: the original parameters come
        back, on the device and in the dtype the module has now); -> layer names unfolded."""
        names = set(names)
        undone = []
        for name, fold in list(self._folds.items()):
            if name not in names and fold.norm_name not in names:
                continue
            del self._folds[name]
            w = fold.layer.weight
            w.copy_(fold.weight.to(device=w.device, dtype=w.dtype))
            if fold.bias is None:
                fold.layer.register_parameter("bias", None)
            else:
                fold.layer.bias = nn.Parameter(
                    fold.bias.to(device=w.device, dtype=w.dtype), requires_grad=False
                )
            fold.parent[fold.index] = fold.norm.to(device=w.device, dtype=w.dtype)
            undone.append(name)
        self._exact.update(names)
        return undone


def _fold_pair(layer: nn.Module, norm: nn.Module) -> None:
    """``BN(W x + b) = (s W) x + s (b - mean) + beta``, s = gamma / sqrt(var + eps): rewrite the layer."""
    scale = 1.0 / torch.sqrt(norm.running_var + norm.eps)
    if norm.affine:
        scale = norm.weight * scale
    shift = -norm.running_mean * scale + (norm.bias if norm.affine else 0.0)
    # Output channels are dim 0 of a conv / linear weight, dim 1 of a transposed conv's.
    shape = [1] * layer.weight.dim()
    shape[1 if isinstance(layer, nn.modules.conv._ConvTransposeNd) else 0] = -1
    layer.weight.mul_(scale.view(shape).to(layer.weight.dtype))
    bias = shift if layer.bias is None else layer.bias * scale + shift
    layer.bias = nn.Parameter(bias.to(layer.weight.dtype), requires_grad=False)


def _clone(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach().clone()
