"""Redirected ReLU gradients: chains whose unit starts dead still get a direction (Lucid's override).

Usage::

    with redirected_relus(target.conv4):   # the nn.ReLU modules of the unit's layer, while the block runs
        grad = torch.autograd.grad(objective(target(x)).sum(), x)[0]

A ReLU unit whose pre-activation is negative at the start passes no gradient (d relu / dx = 0), so a chain
maximizing it (a conv unit read at one position, a hidden fc unit behind a ReLU) never moves: its picture
stays the start. Lucid (``lucid.misc.redirected_relu_grad``) overrides the ReLU's gradient during
visualization: per example, when the exact gradient through a ReLU is zero everywhere, the incoming gradient
passes through the negative inputs too, except where it would push a negative input further down. Once any
gradient flows through the ReLU for that example, it gets the exact gradient again, so the optimum and the
values are unchanged — only a dead start gets a direction. Forward values are exact (``relu(x)``).

The chain loop *ascends* its objective, so "further down" is a negative incoming gradient here (Lucid's
override minimizes a loss: the sign is flipped). Lucid overrides every ReLU of the network; the engine
redirects only the ReLUs that produce the unit's own layer (the layer's module when it is an ``nn.ReLU``, or
the ReLUs inside it, as the toy target's ``conv4`` = conv, BatchNorm, ReLU): that is where a dead start
blocks the gradient, and every other gradient stays exact and costs nothing extra (redirecting all six ReLUs
of the toy target cost 15-20 % of a chain's time). Only ``nn.ReLU`` modules are redirected (functional
``torch.relu`` calls cannot be hooked), and only while gradients are enabled.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


class RedirectedReLU(torch.autograd.Function):
    """relu(x) forward; backward (for gradient *ascent*): the exact gradient for every example that has one,
    else the incoming gradient wherever it raises x or x > 0."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # x: (B, ...) pre-activation
        ctx.save_for_backward(x)
        return x.clamp_min(0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # grad: (B, ...) d objective / d relu(x)
        (x,) = ctx.saved_tensors
        exact = torch.ops.aten.threshold_backward(grad, x, 0)  # relu's own backward: grad where x > 0
        flows = exact.flatten(1).any(1)  # (B,) some gradient passes the ReLU exactly
        if bool(flows.all()):  # the common case: nothing to redirect
            return exact
        raising = grad.masked_fill((x <= 0) & (grad < 0), 0.0)  # never push a negative x further down
        return torch.where(flows.view(-1, *[1] * (x.dim() - 1)), exact, raising)


@contextmanager
def redirected_relus(module: nn.Module) -> Iterator[int]:
    """Within the block, every ``nn.ReLU`` of ``module`` (itself included) computes ``RedirectedReLU`` when
    gradients are on (yields how many); the hooks are removed afterwards, so the module is unchanged."""
    handles = []
    stash: dict[int, torch.Tensor] = {}

    def keep_input(relu: nn.Module, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...] | None:
        if not torch.is_grad_enabled():
            return None
        stash[id(relu)] = inputs[0]
        return (inputs[0].clone(),) if getattr(relu, "inplace", False) else None  # in-place keeps x intact

    def redirect(relu: nn.Module, _inputs: object, output: torch.Tensor) -> torch.Tensor | None:
        x = stash.pop(id(relu), None)
        return RedirectedReLU.apply(x) if x is not None else None

    relus = [m for m in module.modules() if isinstance(m, nn.ReLU)]
    for relu in relus:
        handles.append(relu.register_forward_pre_hook(keep_input))
        handles.append(relu.register_forward_hook(redirect))
    try:
        yield len(relus)
    finally:
        for h in handles:
            h.remove()
