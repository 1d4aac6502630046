"""Redirected ReLU gradients (Lucid's override): exact values, exact gradients where any flows, a direction
for dead starts; and the engine's chains on a conv unit that starts dead."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from atlas.config import ComputeConfig, FacetConfig, SamplerConfig
from atlas.sampling import Engine
from atlas.sampling.relu_redirect import RedirectedReLU, redirected_relus
from tests.unit.tiny_models import tiny_world

pytestmark = pytest.mark.unit


def _grad(fn, x: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    return torch.autograd.grad(fn(x).sum(), x)[0]


def test_values_are_relu_and_live_examples_keep_the_exact_gradient():
    x = torch.tensor([[-1.0, 2.0, -3.0], [0.5, -0.5, 4.0]])
    assert torch.equal(RedirectedReLU.apply(x), torch.relu(x))
    w = torch.tensor([1.0, -2.0, 3.0])
    exact = _grad(lambda v: torch.relu(v) @ w, x)
    assert torch.equal(_grad(lambda v: RedirectedReLU.apply(v) @ w, x), exact)


def test_a_dead_example_gets_the_raising_part_of_the_incoming_gradient_only():
    # row 0 dead (every input <= 0), row 1 alive: only row 0 is redirected
    x = torch.tensor([[-1.0, -2.0, -3.0], [1.0, -2.0, -3.0]])
    w = torch.tensor([1.0, -2.0, 3.0])  # ascent: raise inputs 0 and 2, lower input 1
    g = _grad(lambda v: RedirectedReLU.apply(v) @ w, x)
    assert g[0].tolist() == [1.0, 0.0, 3.0]  # lowering an already negative input is never passed on
    assert g[1].tolist() == [1.0, 0.0, 0.0]  # exact: only the live input
    assert _grad(lambda v: torch.relu(v) @ w, x)[0].abs().sum() == 0  # the exact gradient is none at all


@pytest.mark.parametrize("inplace", [False, True])
def test_context_redirects_every_relu_module_and_leaves_the_module_as_it_was(inplace):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(inplace=inplace), nn.Linear(3, 1))
    with torch.no_grad():
        net[0].bias.fill_(-100.0)  # every hidden unit dead on ordinary inputs
    x = torch.randn(5, 4)
    assert _grad(net, x).abs().sum() == 0
    with redirected_relus(net) as n:
        assert n == 1
        redirected = _grad(net, x)
        with torch.no_grad():
            assert torch.equal(net(x), torch.zeros(5, 1) + net[2].bias)  # values stay exact
    assert redirected.abs().sum() > 0
    assert _grad(net, x).abs().sum() == 0  # hooks gone
    assert not net[1]._forward_hooks and not net[1]._forward_pre_hooks


def test_engine_chains_of_a_dead_conv_unit_move_only_with_redirected_gradients(one_torch_thread):
    t, g, d, r = tiny_world()
    with torch.no_grad():
        t.module.conv2.bias[3] -= 0.5  # conv2 unit 3 at the centre: about -0.5 on the mean start picture
    facets = FacetConfig()
    fp32 = ComputeConfig(autocast="none")

    def unit(mode: str):
        cfg = SamplerConfig(method="dgn_am", steps=30, chains_per_unit=2, start="mean", relu_gradient=mode)
        rows = Engine(t, g, d, cfg, facets, fp32, torch.device("cpu"), real=r).map_units("relu2", [3], seed=0)
        return [c.last.activation for c in rows[0].chains], rows[0]

    stuck, row = unit("exact")
    assert stuck == [0.0, 0.0]  # a ReLU redirect cannot reach (a functional one) leaves the unit so: said
    assert row.status == "ok" and "no gradient reached the unit in any chain" in (row.error or ""), row.error
    moved, row = unit("redirected")
    assert min(moved) > 0.0 and row.error is None


def test_a_negated_unit_already_at_zero_behind_a_relu_is_said_to_be_at_its_floor(one_torch_thread):
    """``-3`` on a unit 0 at the starts behind a ReLU: nothing lowers it (lowering a negative input is never
    redirected), and the note says the objective is at its top, not that a ReLU cut the gradient off (a
    trial read the cut-off note on such a unit and looked for a functional ReLU)."""
    from atlas.sampling.objectives import parse_composite

    t, g, d, r = tiny_world()
    with torch.no_grad():
        t.module.conv2.bias[3] -= 0.5  # conv2 unit 3 at the centre: about -0.5 on the mean start picture
    cfg = SamplerConfig(method="dgn_am", steps=10, chains_per_unit=2, start="mean")
    engine = Engine(t, g, d, cfg, FacetConfig(), ComputeConfig(autocast="none"), torch.device("cpu"), real=r)
    n = 16  # relu2: conv2's channels
    (row,) = engine.map_units("relu2", [n], seed=0, composites=(parse_composite("-3", n),))
    assert [c.last.activation for c in row.chains] == [0.0, 0.0]
    assert "no picture lowers them further" in (row.error or "") and "no gradient reached" not in row.error
