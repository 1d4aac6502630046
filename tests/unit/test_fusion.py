"""BatchNorm folding: same outputs and input gradients, exact undo, probes on a folded layer stay exact."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from atlas.models.fusion import fold_batchnorm, folded, unfold
from atlas.models.probes import LayerProbe

pytestmark = pytest.mark.unit


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU()),
        nn.Sequential(nn.ConvTranspose2d(8, 4, 4, 2, 1), nn.BatchNorm2d(4), nn.LeakyReLU(0.2)),
        nn.Flatten(),
        nn.Linear(4 * 16 * 16, 10),
        nn.BatchNorm1d(10),
    )
    net.train()
    for _ in range(5):  # non-trivial running statistics
        net(torch.randn(16, 3, 8, 8) * 3 + 1)
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.weight.data.uniform_(0.5, 2.0)
            m.bias.data.normal_()
    return net.eval()


def _out_and_grad(net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.detach().clone().requires_grad_()
    y = net(x)
    return y.detach(), torch.autograd.grad((y * torch.arange(10.0)).sum(), x)[0]


def test_folding_keeps_outputs_and_input_gradients_and_undoes_exactly():
    net, x = _net(), torch.randn(5, 3, 8, 8)
    ref_y, ref_g = _out_and_grad(net, x)
    before = copy.deepcopy(net.state_dict())
    assert sorted(fold_batchnorm(net)) == ["0.0", "1.0", "3"]
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())
    y, g = _out_and_grad(net, x)
    torch.testing.assert_close(y, ref_y, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(g, ref_g, atol=1e-5, rtol=1e-5)
    assert fold_batchnorm(net) == []  # idempotent
    assert sorted(unfold(net, ["0.0", "1.0", "3", "nope"])) == ["0.0", "1.0", "3"]
    after = net.state_dict()
    assert set(after) == set(before) and all(torch.equal(before[k], after[k]) for k in before)


def test_keep_and_training_mode_are_respected():
    net = _net()
    assert sorted(fold_batchnorm(net, keep=["1.0"])) == ["0.0", "3"]
    assert sorted(folded(net)) == ["0.0", "3"]
    other = _net().train()
    assert fold_batchnorm(other) == []


def test_probe_on_a_folded_layer_after_unfold_is_exact():
    net, x = _net(), torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        conv_ref = LayerProbe(net, ["0.0"])(x)["0.0"]
        block_ref = LayerProbe(net, ["0"])(x)["0"]
    fold_batchnorm(net)
    with torch.no_grad():
        block = LayerProbe(net, ["0"])(x)["0"]  # the block's output is unchanged while folded
        torch.testing.assert_close(block, block_ref, atol=1e-5, rtol=1e-5)
        unfold(net, ["0.0"])
        torch.testing.assert_close(LayerProbe(net, ["0.0"])(x)["0.0"], conv_ref)
