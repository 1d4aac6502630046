"""A generator over a whitened principal subspace of a spatial code layer (atlas.models.subspace, issue 17):
the subspace itself, and the engine turning the code layer's maps into its coefficients (real starts, the
joint prior, the last pictures' codes)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from atlas.config import ComputeConfig, FacetConfig, PpgnConfig, SamplerConfig
from atlas.models.codes import CodeStats
from atlas.models.loaded import LoadedModel, freeze
from atlas.models.probes import LayerProbe
from atlas.models.spaces import ImageSpace
from atlas.models.subspace import CodeSubspace, SubspaceGenerator
from atlas.sampling import Engine
from tests.unit.tiny_models import SIZE, TinyReal, tiny_target

pytestmark = pytest.mark.unit
CPU = torch.device("cpu")


def low_rank_maps(n: int = 200, rank: int = 5, seed: int = 0) -> torch.Tensor:
    """(n, 4, 3, 3) nonnegative maps that span ``rank`` directions around a positive mean."""
    g = torch.Generator().manual_seed(seed)
    basis = torch.randn(rank, 36, generator=g)
    coef = torch.randn(n, rank, generator=g) * torch.linspace(3, 1, rank)
    return (40 + coef @ basis).clamp_min(0).view(n, 4, 3, 3)  # the mean keeps every value > 0


def test_subspace_round_trip_whitened_coefficients_and_seeded_fit():
    maps = low_rank_maps()
    sub = CodeSubspace.fit(maps, k=5)
    z = sub.encode(maps)  # (N, 5)
    assert z.shape == (200, 5)
    assert torch.allclose(z.mean(0), torch.zeros(5), atol=1e-3)
    assert torch.allclose(z.std(0), torch.ones(5), atol=1e-3)  # whitened: DGN-AM's decay is a N(0, I) prior
    assert torch.allclose(sub.decode(z), maps, atol=1e-3)  # all 5 directions kept
    assert sub.explained(maps) == pytest.approx(1.0, abs=1e-4)
    small = CodeSubspace.fit(maps, k=2)
    assert 0.3 < small.explained(maps) < 0.99 and (small.decode(small.encode(maps)) >= 0).all()
    again = CodeSubspace.fit(maps, k=2)
    assert torch.equal(small.basis, again.basis)  # the randomized PCA is seeded
    with pytest.raises(ValueError, match="subspace size 0"):
        CodeSubspace.fit(maps, k=0)


def spatial_world(k: int = 8):
    """The tiny target, a tiny G from its pool2 map (16, 4, 4), wrapped in a k-dim subspace of real maps."""
    target, real = tiny_target(0), TinyReal()
    with torch.no_grad():
        maps = LayerProbe(target.module, ["pool2"])(target.space.encode(real.images))[
            "pool2"
        ]  # (N, 16, 4, 4)
    torch.manual_seed(5)
    g_map = nn.Sequential(
        nn.ConvTranspose2d(16, 8, 4, 2, 1), nn.LeakyReLU(0.3), nn.ConvTranspose2d(8, 3, 4, 2, 1)
    )
    with torch.no_grad():
        for m in g_map:
            if isinstance(m, nn.ConvTranspose2d):
                m.weight.mul_(3.0)
    sub = CodeSubspace.fit(maps, k)
    gen = LoadedModel(
        freeze(SubspaceGenerator(sub, nn.Sequential(g_map, nn.Sigmoid()))),
        "generator",
        "tiny:subspace",
        space=ImageSpace(size=SIZE, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)),
        code_shape=(k,),
        extras={
            "code_layer": "pool2",
            "code_encoder": freeze(sub),
            "code_stats": CodeStats.from_codes(sub.encode(maps), "tiny pool2 subspace"),
        },
    )
    return target, gen, real, sub, maps


def engine(target, gen, real, **sampler):
    base = dict(steps=8, chains_per_unit=2, record_every=1, objective="log_softmax", start="real")
    base.update(sampler)
    compute = ComputeConfig(batch_size=16, autocast="none")  # float32: codes compared exactly
    return Engine(target, gen, None, SamplerConfig(**base), FacetConfig(), compute, CPU, real=real)


def test_engine_reads_real_codes_through_the_generators_encoder_and_dgn_am_raises_the_unit():
    target, gen, real, sub, maps = spatial_world()
    eng = engine(target, gen, real, method="dgn_am")
    results = eng.map_units("fc8", [0, 3], seed=0)
    assert all(u.status == "ok" for u in results), [u.error for u in results]
    assert eng.real is not None and eng.real.codes is not None
    assert torch.allclose(eng.real.codes, sub.encode(maps), atol=1e-4)  # (N, k): not the flat map
    for u in results:
        for c in u.chains:
            vals = [row["log_prob"] for row in c.trajectory]
            assert max(vals) > vals[0]  # the code ascent raised the unit
            assert c.start.startswith("real")


def test_joint_prior_residual_is_in_the_subspace():
    target, gen, real, sub, _ = spatial_world()
    eng = engine(target, gen, real, method="ppgn_h", ppgn_h=PpgnConfig(prior="joint", eps1=0.1, eps3=0.0))
    prior = eng.sampler.prior
    z = torch.zeros(2, sub.k)
    with torch.no_grad():
        pictures = gen.module(z)  # (2, 3, S, S) rgb01
        acts = LayerProbe(target.module, ["pool2"])(target.space.encode(pictures))
    residual = prior.residual(z, acts)
    assert residual.shape == (2, sub.k)
    assert torch.allclose(residual, sub.encode(acts["pool2"]) - z, atol=1e-5)  # E(G(h)) - h, E = encoder o T
    (u,) = eng.map_units("fc8", [1], seed=0)
    assert u.status == "ok" and all(
        torch.isfinite(torch.tensor(row["log_prob"])) for row in u.chains[0].trajectory
    )


def test_toy_world_spatial_generator_trains_on_t_conv4_maps_and_redraws_better_than_the_mean(tmp_path):
    """One epoch on the shipped micro T: G draws from the whitened subspace of T's conv4 maps."""
    import dataclasses

    from atlas.errors import AtlasError
    from atlas.toyworld import ToyWorld
    from atlas.toyworld.presets import MICRO
    from atlas.toyworld.train_generator import maps_of, train_spatial_generator

    world = ToyWorld("micro", tmp_path, log=lambda *a, **k: None)  # empty cache: the shipped T
    cfg = dataclasses.replace(
        MICRO, generator=dataclasses.replace(MICRO.generator, code_layer="conv4", subspace=16, epochs=1)
    )
    data, target = world.data("train"), world.module("target", train_if_missing=False)
    g = train_spatial_generator(cfg, data, target, log=lambda *a: None)
    assert isinstance(g, SubspaceGenerator) and g.subspace.k == 16
    maps = maps_of(target, data.images[:256], cfg.data.size)  # (256, C4, 4, 4)
    x = data.rgb01(torch.arange(256))
    with torch.no_grad():
        redrawn = g(g.subspace.encode(maps))  # (256, 3, 16, 16)
    assert redrawn.shape == x.shape
    assert (redrawn - x).abs().mean() < (x.mean(0, keepdim=True) - x).abs().mean()
    for bad, says in [
        (dict(subspace=8), "generator.subspace needs generator.code_layer 'conv4'"),
        (dict(code_layer="fc7"), "generator.code_layer 'fc7'"),
        (dict(code_layer="conv4", adv_weight=0.1), "generator.adv_weight needs"),
        (dict(code_layer="conv4"), r"generator.subspace 0 with code_layer 'conv4' must be in 1\.\.768"),
    ]:
        with pytest.raises(AtlasError, match=says):
            dataclasses.replace(MICRO, generator=dataclasses.replace(MICRO.generator, **bad))


def test_fit_leaves_the_random_state_refuses_a_rank_it_cannot_hold_and_persists_the_clamp():
    maps = low_rank_maps(rank=5)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    CodeSubspace.fit(maps, k=3)
    assert torch.equal(torch.rand(3), expected)  # the caller's random stream goes on as if nothing ran
    with pytest.raises(ValueError, match="exceeds the codes' rank"):
        CodeSubspace.fit(maps, k=8)  # 5 directions of variance
    signed = CodeSubspace.fit(maps - 40, k=5)
    assert not bool(signed.nonnegative) and (signed.decode(signed.encode(maps - 40)) < 0).any()
    restored = CodeSubspace((4, 3, 3), 5)  # default: clamps at 0
    restored.load_state_dict(signed.state_dict())
    assert not bool(restored.nonnegative)  # the clamp flag travels with the weights


def test_preflight_refuses_a_code_layer_the_encoder_cannot_read():
    from atlas.errors import ConfigError
    from atlas.pipeline.models_setup import RunModels
    from atlas.pipeline.preflight import preflight_models
    from tests.unit.tiny_models import pixel_config

    target, gen, _, _, _ = spatial_world()
    cfg = pixel_config()  # the code layer is checked against G whatever the method (no G needed for pixels)
    stats = gen.extras["code_stats"]
    assert preflight_models(cfg, RunModels(target, gen, None, stats, "pool2")).code_layer == "pool2"
    with pytest.raises(ConfigError, match="code encoder cannot read layer 'relu6'"):
        preflight_models(cfg, RunModels(target, gen, None, stats, "relu6"))


@pytest.mark.parametrize("code_layer", [None, "pool2"])
def test_code_stats_and_train_dae_read_codes_through_the_encoder_whoever_names_the_layer(
    code_layer, monkeypatch
):
    """`atlas code-stats` / `train-dae` (atlas.real_codes) give the coefficients the run uses, also when the
    config names models.code_layer itself (the engine reads through G's encoder either way)."""
    from types import SimpleNamespace

    import atlas.sampling
    from atlas import real_codes as rc
    from atlas.config import config_from_dict

    target, gen, real, sub, _ = spatial_world()
    monkeypatch.setattr(
        rc, "load_run_model", lambda cfg, role: {"target": target, "encoder": None}.get(role, gen)
    )
    monkeypatch.setattr(
        atlas.sampling, "load_image_folder", lambda *a, **k: SimpleNamespace(images=real.images)
    )
    models = {"target": "python:tests.unit.byo_factories:good", "generator": "python:x:y"}
    cfg = config_from_dict(
        {
            "models": {
                **models,
                "allow_random_weights": True,
                **({"code_layer": code_layer} if code_layer else {}),
            },
            "layers": [{"name": "fc8"}],
            "sampler": {"method": "dgn_am", "start": "random"},
            "facets": {"real_images": None},
        }
    )
    codes, layer = rc.real_codes(cfg, "imgs", None, log=lambda *a: None)
    probe = LayerProbe(target.module, ["pool2"])
    with torch.no_grad():
        expected = sub.encode(probe(target.space.encode(real.images))["pool2"])
    assert layer == "pool2" and codes.shape == (len(real.images), sub.k)
    assert torch.allclose(codes, expected, atol=1e-4)
