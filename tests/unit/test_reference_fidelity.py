"""Where atlas follows the papers' released code rather than a reading of the equations, or a peer's own
constants: PPGN's released condition gradient, Lucid's jitter range, Nguyen et al. 2016's facet seeds
clustered on high-layer features. Tiny tensors and the tiny random world (tests/unit/tiny_models.py)."""

from __future__ import annotations

import math

import pytest
import torch

from atlas.config import ComputeConfig, FacetConfig, SamplerConfig, config_from_dict
from atlas.errors import ConfigError
from atlas.sampling import Engine, facets
from atlas.sampling.objectives import Objective, log_softmax
from atlas.sampling.transforms import robustness_theta
from tests.unit.tiny_models import tiny_world

pytestmark = pytest.mark.unit


def test_the_released_ppgn_condition_moves_the_unit_alone_by_one_minus_p():
    v = torch.tensor([[0.1, 0.2, 0.3, 0.4]], requires_grad=True)
    index = torch.tensor([0])
    exact = torch.autograd.grad(Objective("log_softmax")(v, index).sum(), v)[0]
    released_value = Objective("log_softmax", gradient="released")(v, index)
    released = torch.autograd.grad(released_value.sum(), v)[0]
    p = torch.softmax(v.detach(), dim=1)
    assert released_value.item() == pytest.approx(log_softmax(v.detach())[0, 0].item())  # the same value
    assert torch.allclose(released, torch.tensor([[1 - p[0, 0].item(), 0.0, 0.0, 0.0]]))
    assert torch.allclose(exact, torch.eye(4)[:1] - p)  # Eq. 11 as printed: every unit by its p


def test_the_released_condition_needs_the_log_softmax_objective():
    data = {"models": {"target": "toyworld:target", "generator": "toyworld:generator"}, "layers": ["fc8"]}
    ok = config_from_dict(data, ["sampler.method=ppgn_h", "sampler.objective=log_softmax",
                                 "sampler.ppgn_h.condition=released", "models.dae=toyworld:dae"])  # fmt: skip
    assert ok.sampler.ppgn_h.condition == "released"
    with pytest.raises(
        ConfigError, match="sampler.ppgn_h.condition: 'released' .* sampler.objective is 'raw'"
    ):
        config_from_dict(data, ["sampler.method=ppgn_h", "sampler.objective=raw",
                                "sampler.ppgn_h.condition=released", "models.dae=toyworld:dae"])  # fmt: skip
    default = config_from_dict(data)
    assert "condition" not in default.to_dict()["sampler"]["ppgn_h"]  # older configs keep their hash


def test_the_robustness_jitter_spans_lucids_range():
    """Lucid's jitter(8) at 224 px is a random crop offset in [0, 8): the picture moves over 8 px in all."""
    side, jitter = 224, 8 / 224
    u = torch.tensor([[0.5, 0.5, 1.0, 0.0, 0.5], [0.5, 0.5, 0.0, 1.0, 0.5]])  # the extreme shifts
    theta = robustness_theta(u, pad=0.0, jitter=jitter, scale=(1.0, 1.0), rotate=0.0)
    shift_px = theta[:, :, 2] * side / 2  # normalized coordinates span 2 per side
    assert shift_px[0, 0].item() == pytest.approx(4.0) and shift_px[1, 1].item() == pytest.approx(4.0)
    assert shift_px[0, 1].item() == pytest.approx(-4.0) and shift_px[1, 0].item() == pytest.approx(-4.0)
    assert not math.isclose(shift_px.abs().max().item(), 8.0)


def test_pixel_facet_seeds_are_clustered_on_the_facet_layer(monkeypatch):
    """Nguyen et al. 2016: the top images are clustered on high-layer (fc7) features, not on the unit's own
    layer; before, pixel chains clustered the fc8 logits of their seeds."""
    t, g, d, r = tiny_world()
    seen: list[tuple[int, ...]] = []
    kmeans = facets.kmeans

    def spy(feats, k, seed):
        seen.append(tuple(feats.shape))
        return kmeans(feats, k, seed)

    monkeypatch.setattr(facets, "kmeans", spy)
    engine = Engine(
        t, None, None, SamplerConfig(method="pixel", steps=2, chains_per_unit=3, start="facet_seeded"),
        FacetConfig(max_facets=3, seed_pool=20), ComputeConfig(batch_size=8, autocast="none"), "cpu", real=r,
    )  # fmt: skip
    [unit] = engine.map_units("fc8", [1], seed=0)
    assert unit.status == "ok" and [c.start for c in unit.chains] == [f"facet_seed:{i}" for i in range(3)]
    facet_dim = engine.real.facet_features.shape[1]  # relu7 of the tiny target: 32
    assert seen and seen[0] == (20, facet_dim) and facet_dim != 10  # not the 10 fc8 logits
