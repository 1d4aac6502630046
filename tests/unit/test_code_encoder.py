"""models.encoder: G's code read by a network of its own (the one G inverts), not by the target."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from atlas.config import ComputeConfig, FacetConfig, PpgnConfig, SamplerConfig, config_from_dict
from atlas.errors import ConfigError
from atlas.models.spaces import ImageSpace
from atlas.pipeline.preflight import _foreign_code
from atlas.sampling import Engine
from tests.unit.tiny_models import pixel_config, tiny_target, tiny_world

pytestmark = pytest.mark.unit
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def world(one_torch_thread):
    return tiny_world()


def engine(world, encoder=None, **sampler):
    t, g, d, r = world
    base = dict(
        steps=6,
        chains_per_unit=3,
        record_every=1,
        start="facet_seeded",
        method="ppgn_h",
        ppgn_h=PpgnConfig(prior="joint", eps1=0.1, lr=0.1),
    )
    base.update(sampler)
    facets = FacetConfig(max_facets=2, seed_pool=20, top_k_real=3)
    return Engine(
        t, g, d, SamplerConfig(**base), facets, ComputeConfig(batch_size=64), CPU, real=r, encoder=encoder
    )


def chains(results):
    return [
        (c.start, [row["activation"] for row in c.trajectory], c.last_code) for u in results for c in u.chains
    ]


def test_an_encoder_that_is_the_target_gives_the_targets_results(world):
    """The encoder's own pass reads the same code the target's pass held: every start, prior step and
    stored code is the same."""
    plain = engine(world).map_units("fc8", [1, 4], seed=0)
    twin = tiny_target(0)  # the same weights, loaded apart
    own = engine(world, encoder=twin).map_units("fc8", [1, 4], seed=0)
    assert all(u.status == "ok" for u in plain + own), [u.error for u in plain + own]
    for (s1, a1, c1), (s2, a2, c2) in zip(chains(plain), chains(own), strict=True):
        assert s1 == s2 and s1.startswith("facet_seed:")
        torch.testing.assert_close(torch.tensor(a1), torch.tensor(a2))
        torch.testing.assert_close(c1, c2)


def test_another_encoder_changes_the_starts_the_prior_and_the_codes(world):
    plain = engine(world).map_units("fc8", [1], seed=0)
    other = engine(world, encoder=tiny_target(7)).map_units("fc8", [1], seed=0)
    assert other[0].status == "ok", other[0].error
    (_, a1, c1), (_, a2, c2) = chains(plain)[0], chains(other)[0]
    assert a1 != a2  # other start codes and another pull of the prior
    assert not torch.allclose(c1, c2)
    # the last code is the encoder's reading of the last picture
    e = engine(world, encoder=tiny_target(7))
    last = e.map_units("fc8", [1], seed=0)[0].chains[0]
    picture = torch.from_numpy(last.last.image).permute(2, 0, 1)[None].float() / 255.0
    read = e.code_reader(picture).flatten(1)[0]
    torch.testing.assert_close(read, last.last_code, atol=0.05, rtol=0.05)  # the PNG's 8 bits


def test_an_encoder_reads_pictures_in_its_own_space(world):
    """A BGR 0-255 encoder at twice the size (as CaffeNet beside a torchvision target) reads each picture
    in its own space; its code layer is named in it."""
    from collections import OrderedDict

    from torch import nn

    from atlas.models.loaded import LoadedModel, freeze
    from atlas.models.probes import LayerProbe

    tiny = tiny_target(7).module
    module = freeze(nn.Sequential(OrderedDict([("down", nn.AvgPool2d(2)), ("net", tiny)])))
    space = ImageSpace(
        size=32, channel_order="BGR", value_scale=255.0, mean=(104.0, 117.0, 123.0), std=(64.0,) * 3
    )
    enc = LoadedModel(module, "encoder", "tiny:encoder", space=space)
    t, g, d, r = world
    e = Engine(t, g, d, SamplerConfig(steps=3, chains_per_unit=2, start="facet_seeded", method="dgn_am"),
               FacetConfig(max_facets=2, seed_pool=20), ComputeConfig(batch_size=64), CPU, real=r,
               code_layer="net.relu6", encoder=enc)  # fmt: skip
    res = e.map_units("fc8", [0], seed=0)
    assert res[0].status == "ok", res[0].error
    picture = torch.rand(2, 3, 16, 16)
    want = LayerProbe(module, ["net.relu6"])(space.encode(picture))["net.relu6"]
    torch.testing.assert_close(e.code_reader(picture), want)
    assert res[0].chains[0].last_code is not None and res[0].chains[0].last_code.shape == (32,)


def test_the_target_never_probes_the_encoders_layer(world):
    e = engine(world, encoder=tiny_target(7))
    steps, final = e._probe_lists("fc8")
    assert "encoder:relu6" not in steps + final and "relu6" not in steps
    assert e.code_key == "encoder:relu6" and "relu6" not in e.layers_read("fc8")


def test_config_encoder_needs_a_generator_and_is_an_image_network(tmp_path):
    base = ["models.target=toyworld:target", "layers=[{name: fc8, units: [0]}]", f"out_dir={tmp_path}"]
    with pytest.raises(ConfigError, match=r"models.encoder: it reads G's code, and no generator is given"):
        config_from_dict({}, [*base, "sampler.method=pixel", "models.encoder=toyworld:target"])
    with pytest.raises(ConfigError, match=r"encoder: 'toyworld:generator' is the toy world's generator"):
        config_from_dict(
            {}, [*base, "models.generator=toyworld:generator", "models.encoder=toyworld:generator"]
        )
    cfg = config_from_dict(
        {}, [*base, "models.generator=toyworld:generator", "models.encoder=toyworld:target"]
    )
    assert cfg.models.encoder.spec == "toyworld:target"


def test_a_deepsim_generator_read_through_another_network_is_a_warning():
    def models(target, encoder=None, layer="classifier.2"):
        gen = SimpleNamespace(spec="deepsim:fc6")
        return SimpleNamespace(generator=gen, encoder=encoder, code_layer=layer, target=target)

    def cfg(prior="joint", start="random", real=None):
        sampler = SimpleNamespace(method="ppgn_h", ppgn_h=SimpleNamespace(prior=prior), start=start)
        return SimpleNamespace(sampler=sampler, facets=SimpleNamespace(real_images=real))

    alexnet = SimpleNamespace(spec="torchvision:alexnet")
    caffenet = SimpleNamespace(spec="python:atlas.models.caffenet:caffenet")
    [said] = _foreign_code(cfg(), models(alexnet))
    assert said.startswith("models.code_layer: deepsim:fc6 inverts CaffeNet's fc6 code, but the joint prior")
    assert "E(G(h)) reads torchvision:alexnet's 'classifier.2', another network's units" in said
    want = "set models.encoder to CaffeNet (python:atlas.models.caffenet:caffenet with its weights) and "
    assert said.endswith(want + "models.code_layer to relu6")
    assert "sampler.start 'facet_seeded'" in _foreign_code(cfg("dae", "facet_seeded"), models(alexnet))[0]
    assert "the on-manifold score" in _foreign_code(cfg("dae", real="imgs"), models(alexnet))[0]
    assert _foreign_code(cfg("dae"), models(alexnet)) == []  # nothing reads the code
    # an encoder that is not CaffeNet is the same mistake; CaffeNet, as encoder or target, is none
    [wrong] = _foreign_code(cfg(), models(alexnet, encoder=alexnet))
    assert wrong.startswith("models.encoder: deepsim:fc6 inverts CaffeNet's fc6 code")
    assert _foreign_code(cfg(), models(alexnet, encoder=caffenet, layer="relu6")) == []
    assert _foreign_code(cfg(), models(caffenet, layer="relu6")) == []


def test_preflight_reads_the_code_layer_in_the_encoder_and_wants_one_named():
    from atlas.pipeline.models_setup import RunModels
    from atlas.pipeline.preflight import preflight_models
    from tests.unit.tiny_models import tiny_generator

    target, gen, _, _ = tiny_world()
    cfg = pixel_config()  # the code layer is checked against G whatever the method
    encoder = tiny_target(7)
    named = RunModels(target, gen, None, None, "relu6", encoder=encoder)
    assert preflight_models(cfg, named).code_layer == "relu6"
    with pytest.raises(ConfigError, match=r"in models.encoder: unknown layer 'fc9'"):
        preflight_models(cfg, RunModels(target, gen, None, None, "fc9", encoder=encoder))
    with pytest.raises(ConfigError, match=r"layer 'fc8' outputs 10 values .* the generator's code has 32"):
        preflight_models(cfg, RunModels(target, gen, None, None, "fc8", encoder=encoder))
    bare = tiny_generator()
    bare.extras.pop("code_layer")
    with pytest.raises(ConfigError, match=r"models.code_layer: models.encoder is set, so name its layer"):
        preflight_models(cfg, RunModels(target, bare, None, None, None, encoder=encoder))


def test_bench_throughput_reads_the_code_through_the_configs_encoder(tmp_path):
    """`atlas bench throughput --config configs/alexnet-deepsim.yaml` (the README's GPU command) stopped at
    PPGN-h: "unknown layer 'relu6'": the benchmark built its engine without the config's encoder, whose
    layer the joint prior reads. It loads the run's models as a worker does, and counts the encoder's
    pass in a chain-step's FLOPs."""
    from atlas.bench.throughput import ThroughputSetup, flops_per_chain_step, run_throughput

    base = ["models.target=toyworld:target", "models.generator=toyworld:generator", "toyworld.preset=micro",
            f"toyworld.cache_dir={tmp_path}", "layers=[{name: fc8, units: [0]}]", f"out_dir={tmp_path}",
            "sampler.method=ppgn_h", "sampler.ppgn_h.prior=joint", "compute.device=cpu"]  # fmt: skip
    with_encoder = [*base, "models.encoder=toyworld:target", "models.code_layer=relu6"]
    setups = [ThroughputSetup.from_config(config_from_dict({}, s)) for s in (base, with_encoder)]
    assert setups[0].encoder is None and setups[1].encoder is not None and setups[1].code_layer == "relu6"
    report = run_throughput(setups[1], batches=[2], methods=["ppgn_h/joint"], repeats=1, min_seconds=0.01,
                            log=lambda _s: None)  # fmt: skip
    assert report["methods"]["ppgn_h/joint"]["by_batch"][2] > 0
    flops = [flops_per_chain_step(_engine_of(s), "fc8") for s in setups]
    assert flops[1] > flops[0]  # the encoder's forward pass on top


def _engine_of(setup):
    from atlas.bench.throughput import _engine, methods_for

    return _engine(setup, methods_for(setup)["ppgn_h/joint"], 2, torch.device("cpu"))
