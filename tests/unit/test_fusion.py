"""BatchNorm folding: same outputs and input gradients, exact undo, probes on a folded layer stay exact."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from atlas.models.fusion import BatchNormFolding
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
    folding = BatchNormFolding(net)
    assert sorted(folding.fold()) == ["0.0", "1.0", "3"]
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())
    y, g = _out_and_grad(net, x)
    torch.testing.assert_close(y, ref_y, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(g, ref_g, atol=1e-5, rtol=1e-5)
    assert folding.fold() == []  # idempotent
    assert sorted(folding.unfold(["0.0", "1.0", "3", "nope"])) == ["0.0", "1.0", "3"]
    after = net.state_dict()
    assert set(after) == set(before) and all(torch.equal(before[k], after[k]) for k in before)


def test_keep_and_training_mode_are_respected():
    folding = BatchNormFolding(_net())
    assert sorted(folding.fold(keep=["1.0"])) == ["0.0", "3"]
    assert sorted(folding.folded) == ["0.0", "3"]
    assert BatchNormFolding(_net().train()).fold() == []


def test_probe_on_a_folded_layer_after_unfold_is_exact():
    net, x = _net(), torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        conv_ref = LayerProbe(net, ["0.0"])(x)["0.0"]
        block_ref = LayerProbe(net, ["0"])(x)["0"]
    folding = BatchNormFolding(net)
    folding.fold()
    with torch.no_grad():
        block = LayerProbe(net, ["0"])(x)["0"]  # the block's output is unchanged while folded
        torch.testing.assert_close(block, block_ref, atol=1e-5, rtol=1e-5)
        folding.unfold(["0.0"])
        torch.testing.assert_close(LayerProbe(net, ["0.0"])(x)["0.0"], conv_ref)


def test_unfold_follows_the_module_to_its_dtype_and_is_permanent():
    net, x = _net(), torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        ref = net(x)
    folding = BatchNormFolding(net)
    folding.fold()
    net.to(torch.float64)  # the module moves after folding (as Engine.prepare moves it to the device)
    assert sorted(folding.unfold(["1.1", "3"])) == ["1.0", "3"]  # a BatchNorm's own name unfolds its pair
    with torch.no_grad():
        torch.testing.assert_close(net(x.double()).float(), ref, atol=1e-5, rtol=1e-5)
    assert folding.fold() == []  # unfolded layers stay exact; "0.0" is still folded
    assert folding.folded == ["0.0"]


def test_sequential_subclass_with_own_forward_is_not_folded():
    class Residual(nn.Sequential):
        def forward(self, x):
            return x + super().forward(x)

    net = nn.Sequential(Residual(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4))).eval()
    assert BatchNormFolding(net).fold() == []


def _bn_target():
    """tiny_target with a BatchNorm after conv1 (non-trivial statistics)."""
    from collections import OrderedDict

    from atlas.models.loaded import LoadedModel, freeze
    from tests.unit.tiny_models import tiny_target

    base = tiny_target()
    kids = OrderedDict(base.module.named_children())
    bn = nn.BatchNorm2d(8)
    with torch.no_grad():
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.1, 0.1)
    items = list(kids.items())
    items.insert(1, ("bn1", bn))
    return LoadedModel(
        freeze(nn.Sequential(OrderedDict(items))), "target", "tiny:bn", space=base.space, output_layer="fc8"
    )


@pytest.mark.parametrize("layer", ["fc8", "conv1", "bn1"])
def test_engine_with_folding_matches_engine_without(layer):
    from atlas.config import ComputeConfig, FacetConfig, SamplerConfig
    from atlas.sampling import Engine
    from tests.unit.tiny_models import tiny_world

    _, g, d, real = tiny_world()
    cfg = SamplerConfig(steps=5, chains_per_unit=2, record_every=1, start="random", method="dgn_am")
    out = {}
    for fold in (False, True):
        t = _bn_target()
        eng = Engine(
            t,
            g,
            d,
            cfg,
            FacetConfig(),
            ComputeConfig(autocast="none", fold_batchnorm=fold),
            torch.device("cpu"),
            real=real,
        )
        assert ("conv1" in eng.nets.folding.folded) == fold  # folded when built; probes unfold what they read
        assert isinstance(t.module[1], nn.BatchNorm2d)  # the caller's module is never rewritten
        out[fold] = eng.map_units(layer, [1, 3], seed=0)
        if fold and layer != "fc8":
            assert "conv1" not in eng.nets.folding.folded  # the probed layer was unfolded, for good
    for a, b in zip(out[False], out[True], strict=True):
        assert a.status == b.status == "ok"
        for ca, cb in zip(a.chains, b.chains, strict=True):
            torch.testing.assert_close(ca.final_activations, cb.final_activations, atol=1e-4, rtol=1e-4)
