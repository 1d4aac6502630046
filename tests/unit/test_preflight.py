"""Pre-flight called directly, bring-your-own factory declarations (own weights, image space, multi-head),
and unit selections that are never expanded before they are checked."""

from __future__ import annotations

import dataclasses
import re
import textwrap
import threading
from dataclasses import replace as replace_layout

import pytest
import torch
import torch.nn.functional as F

from atlas.cli import main
from atlas.config import ComputeConfig, FacetConfig, SamplerConfig, UnitSelection, config_from_dict, replace
from atlas.errors import AtlasError, ConfigError
from atlas.models import load_model
from atlas.models.weights import module_fingerprint
from atlas.pipeline.models_setup import build_models
from atlas.pipeline.preflight import preflight, preflight_config
from atlas.sampling import Engine
from tests.unit.byo_factories import net

pytestmark = pytest.mark.unit
SPEC = "python:tests.unit.byo_factories"


def config(**changes):
    data = {
        "name": "t",
        "models": {"target": f"{SPEC}:good", "allow_random_weights": True},
        "layers": [{"name": "fc8"}, {"name": "conv2", "units": "0-3"}],
        "sampler": {"method": "pixel", "steps": 2, "chains_per_unit": 2, "start": "random"},
        "facets": {"real_images": None},
        "compute": {"device": "cpu"},
    }
    data.update(changes)
    return config_from_dict(data)


def test_report_names_what_the_workers_use():
    cfg = config()
    report = preflight(cfg, build_models(cfg))
    assert report.layer_shapes == {"fc8": (10,), "conv2": (8, 16, 16)}
    assert (report.output_layer, report.facet_layer, report.code_layer) == ("fc8", "relu7", None)
    assert any("RANDOM weights" in w for w in report.warnings)


def test_facet_layer_from_config_and_disabled():
    cfg = config(facets={"real_images": None, "layer": "fc6"})
    assert preflight(cfg, build_models(cfg)).facet_layer == "fc6"
    cfg = config(facets={"real_images": None, "enabled": False, "layer": "fc6"})
    report = preflight(cfg, build_models(cfg))
    assert report.facet_layer is None and any("facets.enabled is false" in w for w in report.warnings)


def test_concept_folders_too_small_to_be_scored_are_a_warning(tmp_path):
    """A labelled folder (one subfolder per concept) whose concepts hold fewer than 10 images gave NULL
    labels in silence: the labels never score them."""
    from PIL import Image

    from atlas.pipeline.preflight import check_real_images

    for concept, n in (("dogs", 12), ("cats", 3), ("striped", 2)):
        (tmp_path / concept).mkdir()
        for i in range(n):
            Image.new("RGB", (8, 8), (i * 9, 0, 0)).save(tmp_path / concept / f"{i}.png")
    cfg = config(facets={"real_images": str(tmp_path)})
    _, count, warnings = check_real_images(cfg)
    assert count == 17
    assert warnings == [
        "facets.real_images: concept folders with fewer than 10 images are not scored as labels ('cats', "
        "'striped'); give each concept 10 or more"
    ]


def test_a_real_image_folder_too_large_for_every_worker_names_the_limit(tmp_path, monkeypatch):
    """Every worker holds the folder as float32 at the target's size: past the warning size the pre-flight
    names facets.real_limit with a sample that fits; the limit's sample is what it counts, and decodes."""
    from PIL import Image

    from atlas.pipeline import preflight as pre
    from atlas.pipeline.preflight import check_real_images

    for i in range(12):
        Image.new("RGB", (8, 8), (i * 9, 0, 0)).save(tmp_path / f"{i:02d}.png")
    (tmp_path / "99.png").write_bytes(b"not an image")  # the 13th file: outside a sample of 12 even steps
    size = build_models(config()).target.space.size
    monkeypatch.setattr(pre, "REAL_IMAGES_WARN_BYTES", 10 * 3 * size * size * 4)  # 10 images' worth
    cfg = config(facets={"real_images": str(tmp_path)})
    with pytest.raises(AtlasError, match="99.png"):
        check_real_images(cfg)
    limited = config(facets={"real_images": str(tmp_path), "real_limit": 6})
    assert check_real_images(limited)[1] == 6
    assert not any("GB as float32" in w for w in preflight(limited, build_models(limited)).warnings)
    big = config(facets={"real_images": str(tmp_path), "real_limit": 12})
    said = [w for w in preflight(big, build_models(big)).warnings if "real_limit" in w]
    assert said == [
        f"facets.real_images: 12 images take {12 * 3 * size * size * 4 / 1e9:.1f} GB as float32 at {size} px "
        "in every worker, and each layer passes them all through the target; set facets.real_limit "
        "(e.g. 5) to use an evenly spaced sample of them"
    ]


def test_settings_a_method_ignores_or_falls_back_from_are_warnings():
    from atlas.pipeline.preflight import preflight_config

    none = {"real_images": None}
    maco = config(
        sampler={"method": "maco", "steps": 2, "chains_per_unit": 2, "start": "random"}, facets=none
    )
    assert any("MACO fixes the 1/f power-law spectrum" in w for w in preflight_config(maco))
    accent = config(sampler={"method": "accentuation", "steps": 2, "start": "random"}, facets=none)
    assert any(
        "accentuation accentuates real images and the run has none" in w for w in preflight_config(accent)
    )
    with_g = {"target": f"{SPEC}:good", "generator": f"{SPEC}:generator", "allow_random_weights": True}
    sampler = {"method": "ga", "steps": 2, "chains_per_unit": 2, "start": "random", "diversity": 1.0}
    ga = config(models=with_g, sampler=sampler)
    said = preflight(ga, build_models(ga)).warnings
    assert "sampler.diversity is a gradient term: sampler.method ga ignores it" in said
    pixel = config(models=with_g)  # a generator with a pixel method: no warning, it scores the manifold
    assert not any("unused" in w for w in preflight(pixel, build_models(pixel)).warnings)


def test_a_start_the_method_does_not_use_and_a_folder_of_few_images_are_warnings(tmp_path):
    """A trial compared methods with --set sampler.method=... on the demo config: maco's chains started
    random beside the others' real starts, and a one-image folder ran in silence (both chains from it)."""
    from PIL import Image

    from atlas.config.advice import config_warnings
    from atlas.pipeline.preflight import check_real_images

    said = config_warnings(config(sampler={"method": "maco", "start": "facet_seeded"}))
    assert said == [
        "sampler.start facet_seeded does not apply to sampler.method maco: it draws its own random phase "
        "(chains of code methods start from the unit's facets; compare them from sampler.start: random)"
    ]
    assert config_warnings(config(sampler={"method": "fourier", "start": "random"})) == []
    assert config_warnings(config(sampler={"method": "fourier"})) == []  # the default start: not set
    assert config_warnings(config(sampler={"method": "pixel", "start": "mean"})) == []
    assert (
        "its chains start from the unit's top real images"
        in config_warnings(config(sampler={"method": "accentuation", "start": "mean"}))[0]
    )
    Image.new("RGB", (8, 8), (90, 0, 0)).save(tmp_path / "one.png")
    _, count, warnings = check_real_images(config(facets={"real_images": str(tmp_path)}))
    assert count == 1 and warnings == [
        "facets.real_images: 1 image only, fewer than facets.top_k_real 9: every unit's dataset examples, "
        "natural percentiles rest on them, and real-image starts are at most 1 distinct picture; use a "
        "folder of a few hundred"
    ]
    enough = config(facets={"real_images": str(tmp_path), "top_k_real": 1})
    assert check_real_images(enough)[2] == []
    for i in range(11):
        Image.new("RGB", (8, 8), (i * 9, 0, 0)).save(tmp_path / f"{i}.png")
    limited = check_real_images(config(facets={"real_images": str(tmp_path), "real_limit": 3}))[2]
    assert limited[0].startswith("facets.real_images: 3 images only") and limited[0].endswith(
        "raise facets.real_limit (the folder holds more)"
    )  # the limit, not the folder


def test_a_generator_whose_pictures_ignore_the_code_is_a_warning():
    """A randomly initialized DeePSiM G saved to a file drew one flat picture for every unit, in silence
    (a user's trial): weights loaded from a file are not named random, so the pre-flight draws two codes."""
    with_g = {"target": f"{SPEC}:good", "generator": f"{SPEC}:generator", "allow_random_weights": True}
    cfg = config(models=with_g, sampler={"method": "dgn_am", "steps": 2, "start": "random"})
    models = build_models(cfg)
    models.generator = dataclasses.replace(models.generator, random_weights=False)  # as if from a file
    said = [w for w in preflight(cfg, models).warnings if "two codes far apart" in w]
    assert said == []  # a generator that draws from its code
    with torch.no_grad():
        for p in models.generator.module.parameters():
            if p.dim() > 1:
                p.mul_(1e-6)  # every weight near 0: the biases draw one picture
    said = [w for w in preflight(cfg, models).warnings if "two codes far apart" in w]
    assert len(said) == 1 and said[0].startswith(f"models.generator (python:{SPEC[7:]}:generator): two codes")
    assert "are its weights trained" in said[0]


def test_toyworld_images_for_another_target_is_a_warning_unless_starts_need_them():
    cfg = config(facets={"real_images": "toyworld"})
    assert any("not a toy-world model" in w for w in preflight(cfg, build_models(cfg)).warnings)
    # a method that starts its own way under the default seeded start: said too (fourier ran without a word,
    # the key's default for a user's own network: a trial), once for methods whose own warning says it
    for method, said in (("fourier", 1), ("maco", 0), ("accentuation", 0)):
        sampler = {"method": method, "steps": 2, "chains_per_unit": 2, "start": "facet_seeded"}
        cfg = config(facets={"real_images": "toyworld"}, sampler=sampler)
        warned = preflight_config(cfg)
        assert sum("not a toy-world model" in w for w in warned) == said, warned
        assert sum("real images" in w for w in warned) == 1, warned


def test_cuda_on_a_cluster_is_a_warning_not_an_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a driver without a GPU
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    cfg = config(compute={"device": "cuda"})
    models = build_models(cfg)
    with pytest.raises(ConfigError, match="no visible CUDA device"):
        preflight(cfg, models)
    report = preflight(cfg, models, address="ray://head:10001")
    assert any("workers must have one" in w for w in report.warnings)


def test_multi_head_model_names_its_output_and_facet_layers():
    cfg = config(
        models={
            "target": {"spec": f"{SPEC}:two_heads", "output_layer": "head_b"},
            "allow_random_weights": True,
        },
        layers=[{"name": "head_b"}, {"name": "head_a"}],
        facets={"real_images": None, "layer": "feat"},
    )
    models = build_models(cfg)
    assert models.target.output_layer == "head_b"
    report = preflight(cfg, models)
    assert report.layer_shapes == {"head_b": (7,), "head_a": (5,)}
    assert (report.output_layer, report.facet_layer) == ("head_b", "feat")
    default = preflight(replace(cfg, facets=FacetConfig(real_images=None)), models)
    assert default.facet_layer == "head_a" and any("set facets.layer" in w for w in default.warnings)
    engine = Engine(
        models.target,
        None,
        None,
        cfg.sampler,
        cfg.facets,
        ComputeConfig(batch_size=4),
        torch.device("cpu"),
    )
    assert engine.facet_layer == "feat" and engine.layer_info("head_b")[0] == "output"
    assert not any("outputs" in w for w in report.warnings)  # output_layer named: nothing to say
    assert engine.layer_info("head_a")[0] == "fc"
    [unit] = engine.map_units("head_b", [3], seed=0)
    assert unit.status == "ok", unit.error


def test_a_multi_head_model_without_an_output_layer_is_told_which_head_was_taken():
    """A user's trial: a forward returning (logits, aux) ran on the last-run 3-unit head in silence; the
    pre-flight names the heads, the one taken and the key that names another (ensemble members too)."""
    cfg = config(
        models={"target": f"{SPEC}:two_heads", "allow_random_weights": True},
        layers=[{"name": "head_b"}],
        facets={"real_images": None, "layer": "feat"},
    )
    models = build_models(cfg)
    said = [w for w in preflight(cfg, models).warnings if "outputs" in w]
    assert said == [
        f"models.target ({SPEC}:two_heads): the forward returns 2 outputs ('head_a', 'head_b'); the output "
        "layer is 'head_b', the module that runs last; name the head whose units are the classes with "
        "models.target.output_layer"
    ]
    assert models.target.output_layer == "head_b"  # the documented default stays
    single = build_models(config(models={"target": f"{SPEC}:good", "allow_random_weights": True}))
    assert "output_note" not in single.target.extras


def test_engine_uses_the_config_rule_for_missing_models():
    target = load_model(f"{SPEC}:good", allow_random_weights=True)
    with pytest.raises(ConfigError, match="models.generator: sampler.method 'dgn_am' needs a generator"):
        Engine(target, None, None, SamplerConfig(method="dgn_am"), FacetConfig(), ComputeConfig(), "cpu")


def test_a_fingerprint_reads_zero_dimensional_tensors(tmp_path, monkeypatch, capsys):
    """BatchNorm's num_batches_tracked is a 0-dim int64: a factory that loads its own weights of a network
    with BatchNorm crashed `atlas layers` and `atlas run` with a traceback (a user's trial)."""
    bn = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(1))
    before = module_fingerprint(bn)
    bn[1].num_batches_tracked += 1
    assert module_fingerprint(bn) != before  # the 0-dim value is hashed, not skipped
    name = f"own_bn_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(
        "from torch import nn\n\n"
        "def build():\n"
        "    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),"
        " nn.Flatten(), nn.Linear(4, 3))\n\n"
        "build.atlas_image_space = {'size': 32}\n"
        "build.atlas_loads_own_weights = True\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["layers", f"python:{name}:build"]) == 0
    assert "loaded by the factory (parameter fingerprint" in capsys.readouterr().out


def test_factory_that_loads_its_own_trained_weights(tmp_path, monkeypatch, capsys):
    torch.manual_seed(0)
    model = net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.rand(16, 3, 32, 32), torch.randint(0, 10, (16,))
    for _ in range(5):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    weights = tmp_path / "trained.pt"
    torch.save(model.state_dict(), weights)
    expected = module_fingerprint(model)
    name = f"own_weights_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(
            f"""
            import torch
            from tests.unit.byo_factories import net

            def build():
                m = net()
                m.load_state_dict(torch.load({str(weights)!r}, weights_only=True))
                return m

            build.atlas_loads_own_weights = True
            build.atlas_image_space = {{"size": 32}}
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = f"python:{name}:build"

    loaded = load_model(spec)  # no weights file, random weights not allowed
    assert not loaded.random_weights and loaded.fingerprint == expected and "own weights" in loaded.weights
    assert expected != module_fingerprint(net())
    assert torch.allclose(loaded.module(x), model.eval()(x))

    assert main(["layers", spec]) == 0
    out = capsys.readouterr().out
    assert "RANDOM" not in out and f"loaded by the factory (parameter fingerprint {expected})" in out

    cfg = config(models={"target": spec}, layers=[{"name": "fc8"}])
    models = build_models(cfg)
    record = models.fingerprints()["target"]
    assert record["fingerprint"] == expected and record["random_weights"] is False
    assert record["weights"] != "random"
    assert not any("RANDOM" in w for w in preflight(cfg, models).warnings)


def test_explicit_weights_file_wins_over_own_weights(tmp_path, monkeypatch):
    other = net()
    path = tmp_path / "other.pt"
    torch.save(other.state_dict(), path)
    name = f"own_file_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(
        "from tests.unit.byo_factories import net\n\n"
        "def build():\n    return net()\n\n"
        "build.atlas_loads_own_weights = True\nbuild.atlas_image_space = {'size': 32}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    from atlas.config import ModelConfig

    loaded = load_model(ModelConfig(spec=f"python:{name}:build", weights=str(path)))
    assert loaded.weights == str(path) and not loaded.random_weights


# --------------------------------------------------------------------------------------- unit selection


def test_huge_range_is_two_integers_checked_before_expansion():
    sel = UnitSelection.parse("0-999999999", "units")
    assert sel.ranges == ((0, 999_999_999),) and sel.size_bound == 1_000_000_000
    with pytest.raises(ConfigError, match="range 0-999999999 is out of range; layer 'fc8' has units 0-9"):
        sel.resolve(10, "layers.0.units", "fc8")
    assert sel.to_yaml() == "0-999999999"  # compact: never a billion-item list
    assert UnitSelection.parse(sel.to_yaml(), "units") == sel


@pytest.mark.parametrize(
    "value, form",
    [("0-3,2", [0, 1, 2, 3]), ([3, 1, 3], [3, 1]), ("all", "all"), (7, [7]), ("10-20000,5", "10-20000,5")],
)
def test_to_yaml_keeps_the_old_list_form_for_small_selections(value, form):
    sel = UnitSelection.parse(value, "units")
    assert sel.to_yaml() == form
    again = UnitSelection.parse(form, "units")
    assert again.resolve(20001) == sel.resolve(20001)


def test_new_optional_keys_are_not_written_at_their_defaults():
    data = config().to_dict()
    assert "output_layer" not in data["models"]["target"] and "layer" not in data["facets"]
    data = config(facets={"real_images": None, "layer": "fc6"}).to_dict()
    assert data["facets"]["layer"] == "fc6"
    assert config_from_dict(data).facets.layer == "fc6"


@pytest.mark.parametrize(("variant", "lower"), [("fc6", 0.0), ("fc8", -30.0)])
def test_deepsim_without_code_stats_gets_ppgns_clip_range(variant, lower, tmp_path):
    """No models.code_stats and no real codes: a DeePSiM generator's codes are clipped to PPGN's [0, 30]
    ([-30, 30] for the signed fc8 code), as documented; a code-stats file overrides it."""
    cfg = config(
        models={"target": f"{SPEC}:good", "generator": f"deepsim:{variant}", "allow_random_weights": True},
        sampler={"method": "dgn_am", "steps": 2, "chains_per_unit": 1, "start": "random"},
    )
    stats = build_models(cfg).code_stats
    assert stats is not None and "PPGN clip range" in stats.source
    assert float(stats.lower.min()) == lower and float(stats.upper.max()) == 30.0
    toy = config(models={"target": f"{SPEC}:good", "allow_random_weights": True})
    assert build_models(toy).code_stats is None  # no generator, no bounds


def test_code_stats_of_another_layer_are_said_and_older_files_pass(tmp_path):
    """A code-stats file records the network and layer its codes were read from: statistics of another
    layer of the same size passed in silence (a user's trial: fc6's bounds on fc7's code)."""
    from atlas.models.codes import CodeStats

    codes = torch.rand(20, 16)
    path, older = tmp_path / "stats.pt", tmp_path / "older.pt"
    CodeStats.from_codes(codes, "t", read_from=(f"{SPEC}:good", "relu6")).save(path)
    CodeStats.from_codes(codes, "t").save(older)  # as files written before the record was kept
    assert (
        CodeStats.load(path).read_from == (f"{SPEC}:good", "relu6")
        and CodeStats.load(older).read_from is None
    )
    said = {}
    for file, layer in ((path, "relu6"), (path, "fc6"), (older, "fc6")):
        models = {"target": f"{SPEC}:good", "generator": f"{SPEC}:generator", "allow_random_weights": True}
        cfg = config(
            models=models | {"code_layer": layer, "code_stats": str(file)},
            sampler={"method": "dgn_am", "steps": 2, "chains_per_unit": 1, "start": "random"},
        )
        said[file.name, layer] = [w for w in preflight(cfg, build_models(cfg)).warnings if "code_stats" in w]
    assert said[path.name, "relu6"] == [] and said[older.name, "fc6"] == []
    assert said[path.name, "fc6"] == [
        f"models.code_stats: {path} holds statistics of {SPEC}:good's 'relu6', but the run reads its code "
        f"from {SPEC}:good's 'fc6'; recompute them for it (atlas code-stats --config ... --images DIR)"
    ]


def test_a_dae_for_another_code_is_refused_before_anything_runs(tmp_path):
    """PPGN-h's DAE must denoise G's code: a DAE trained on another generator's code failed every unit in
    the workers, and the run was marked complete."""
    from atlas.models.dae import ResidualMLPDAE

    path = tmp_path / "dae32.pt"
    torch.save(ResidualMLPDAE(32, hidden=8, blocks=1).state_dict(), path)
    models = {"target": f"{SPEC}:good", "generator": "deepsim:fc8", "allow_random_weights": True}
    sampler = {"method": "ppgn_h", "steps": 2, "chains_per_unit": 1, "start": "random"}
    cfg = config(
        models={**models, "dae": {"spec": "dae:residual_mlp", "weights": str(path)}}, sampler=sampler
    )
    with pytest.raises(
        ConfigError,
        match=r"models.dae: the generator's code has shape \(1000,\) and the DAE "
        r"fails on it .*made for codes of shape \(32,\)\); train one on this generator's code",
    ):
        preflight(cfg, build_models(cfg))
    torch.save(ResidualMLPDAE(1000, hidden=8, blocks=1).state_dict(), path)  # this G's code: accepted
    assert preflight(cfg, build_models(cfg)).layer_shapes["fc8"] == (10,)


def test_connect_without_address_starts_a_new_local_ray(monkeypatch):
    """No address: a fresh local instance (address='local'), so a stale /tmp/ray/ray_current_cluster left by
    a crashed cluster is never joined; an address (or RAY_ADDRESS) is joined as given."""
    import ray

    from atlas.pipeline import cluster

    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: calls.append(kw))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert cluster.connect(None) is True
    assert calls[-1]["address"] == "local" and calls[-1]["num_cpus"] >= 1
    assert calls[-1]["_system_config"]["worker_niceness"] == 0  # actors not starved by other work
    probed = []
    monkeypatch.setattr(cluster, "probe_address", probed.append)  # nothing listens here: see the next test
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    cluster.connect(None)
    assert calls[-1] == {"address": "127.0.0.1:6379", "logging_level": "WARNING"} and probed == [None]


@pytest.mark.parametrize(
    "address, says",
    [
        ("not a host", "Ray address 'not a host' is not valid; expected host:port"),
        ("10.0.0.5", "is not valid"),
        ("host:99999", "is not valid"),
        ("ray://", "is not valid"),
        ("::1:6379", "is not valid"),  # IPv6 goes in brackets: [::1]:6379
        (
            "http://127.0.0.1:8265",
            "is a dashboard URL, what `ray job submit` takes; `atlas run` joins the "
            "head's GCS port: give 127.0.0.1:PORT, PORT the head's `ray start --head --port` (6379 "
            "unless set)",
        ),  # RAY_ADDRESS as Ray's job docs set it
        ("127.0.0.1:8265", "is Ray's dashboard and job-submission port, not the head's GCS port"),
        ("127.0.0.1:10001", "Ray Client port (use ray://host:10001)"),
        ("127.0.0.1:{port}", "nothing answers at Ray address '127.0.0.1:{port}'"),
        (
            "no-such-host.invalid:6379",
            "the host of Ray address 'no-such-host.invalid:6379' cannot be resolved",
        ),
    ],
)
def test_a_ray_address_is_checked_before_ray_starts(address, says, monkeypatch):
    import socket

    from atlas.pipeline.cluster import check_address, probe_address

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address, says = address.format(port=port), says.format(port=port)
    with pytest.raises(ConfigError, match=re.escape(says)) as err:
        probe_address(address)
    assert str(err.value).startswith("--address (or ray.address): ")
    monkeypatch.setenv("RAY_ADDRESS", address)
    with pytest.raises(ConfigError, match="^RAY_ADDRESS: "):
        probe_address(None)
    monkeypatch.delenv("RAY_ADDRESS")
    with socket.socket() as server:  # something listening: accepted (Ray then does the rest)
        server.bind(("127.0.0.1", 0))
        server.listen()
        for ok in (f"127.0.0.1:{server.getsockname()[1]}", f"ray://127.0.0.1:{server.getsockname()[1]}"):
            probe_address(ok, answer_timeout_s=0.5)  # it says nothing: undecided, left to Ray
    assert check_address("[::1]:6379") == ("::1", 6379)
    for fine in ("auto", "local", None):  # Ray's own words, and no address (a local instance)
        assert check_address(fine) is None
        probe_address(fine)


def test_a_local_out_dir_is_refused_wherever_actors_may_run_on_another_node(monkeypatch):
    from atlas.pipeline import cluster

    nodes, client = [{"Alive": True}], [False]
    monkeypatch.setattr(cluster, "alive_nodes", lambda: nodes)
    monkeypatch.setattr(cluster, "_client_mode", lambda: client[0])
    one = config()
    cluster.check_storage(one, True, "/data/runs/x")  # one node, no autoscaling, a local driver: fine
    cluster.check_storage(one, False, "s3://b/x")
    for cfg, is_client, n_nodes, why in (
        (config(ray={"autoscaling": True}), False, 1, "ray.autoscaling lets Ray add nodes"),
        (one, True, 1, "this driver joined through Ray Client"),
        (one, False, 2, "the Ray cluster has 2 nodes"),
    ):
        client[0] = is_client
        nodes[:] = [{"Alive": True}] * n_nodes
        with pytest.raises(ConfigError, match=f"^out_dir: /data/runs/x is a local path but {why}"):
            cluster.check_storage(cfg, True, "/data/runs/x")
        cluster.check_storage(replace(cfg, storage=replace(cfg.storage, shared=True)), True, "/data/runs/x")


def test_the_device_each_actor_gets_is_checked_against_the_layout(monkeypatch):
    import ray

    from atlas.pipeline import cluster

    resources = {"CPU": 16.0, "GPU": 2.0}
    monkeypatch.setattr(ray, "cluster_resources", lambda: resources)
    assert cluster.plan_layout(config(compute={"device": "cpu"}), 8).gpus == 0  # no GPU held idle
    layout = cluster.plan_layout(config(compute={"device": "auto"}), 8)
    assert (layout.actors, layout.gpus) == (2, 1.0)
    for device in ("cuda", "cuda:0", "auto", "cpu"):
        cluster.check_device(config(compute={"device": device}), layout)
    with pytest.raises(ConfigError, match=r"^compute.device: cuda:1, but each actor sees only its own 1 GPU"):
        cluster.check_device(config(compute={"device": "cuda:1"}), layout)
    resources.pop("GPU")
    cfg = config(compute={"device": "cuda"})
    with pytest.raises(
        ConfigError, match=r"^compute.device: cuda but the actors get no GPU .* set ray.gpus_per_worker: 1"
    ):
        cluster.check_device(cfg, cluster.plan_layout(cfg, 8))
    cfg = config(compute={"device": "cuda"}, ray={"gpus_per_worker": 1, "autoscaling": True})  # GPUs to come
    cluster.check_device(cfg, cluster.plan_layout(cfg, 8))


def test_device_and_gpus_per_worker_that_contradict_each_other_are_said_before_any_cluster():
    """A trial: device cuda with gpus_per_worker 0 passed `config --check` with a cluster address and was
    refused only after connecting; device cpu with GPUs per worker reserved GPUs no actor used, silently."""
    from atlas.pipeline.preflight import check_device

    cfg = config(compute={"device": "cuda"}, ray={"gpus_per_worker": 0})
    for local in (True, False):
        with pytest.raises(ConfigError, match=r"^compute.device: cuda but ray.gpus_per_worker: 0 gives"):
            check_device(cfg, local)
    notes = check_device(config(compute={"device": "cpu"}, ray={"gpus_per_worker": 1}), local=False)
    assert notes == [
        "ray.gpus_per_worker: 1 reserves GPUs for actors that compute on the CPU (compute.device: cpu); "
        "use device auto or cuda, or drop gpus_per_worker"
    ]
    assert check_device(config(compute={"device": "auto"}, ray={"gpus_per_worker": 1}), local=False) == []


def test_more_workers_than_the_cluster_holds_run_as_many_as_fit_and_say_so(monkeypatch):
    import ray

    from atlas.pipeline import cluster

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0})
    layout = cluster.plan_layout(config(ray={"num_workers": 5}), 8)
    assert layout.actors == 2 and "ray.num_workers 5 asks for more actors than this cluster holds at once " \
        "(2 x 1 CPU); 2 run" in layout.note  # fmt: skip
    assert cluster.plan_layout(config(ray={"num_workers": 5, "autoscaling": True}), 8).actors == 5
    assert cluster.plan_layout(config(ray={"num_workers": 2}), 8).note is None
    assert cluster.plan_layout(config(ray={"num_workers": 5}), 1).note is None  # one shard: one actor anyway


def test_composite_objectives_and_named_layers_are_checked_before_anything_runs():
    """Issue 17: an objective naming a unit outside the layer, an unknown diversity or accentuation layer."""
    cfg = config(layers=[{"name": "fc8", "objectives": ["3 - 12"]}])
    with pytest.raises(ConfigError, match=r"^layers\.0\.objectives: unit 12 in '3 - 12' is out of range"):
        preflight(cfg, build_models(cfg))
    cfg = config(
        sampler={
            "method": "pixel",
            "steps": 2,
            "start": "random",
            "diversity": 1.0,
            "diversity_layer": "nope",
        }
    )
    with pytest.raises(ConfigError, match=r"^sampler\.diversity_layer: "):
        preflight(cfg, build_models(cfg))
    cfg = config(
        sampler={"method": "accentuation", "steps": 2, "start": "random", "accentuation": {"layer": "nope"}}
    )
    with pytest.raises(ConfigError, match=r"^sampler\.accentuation\.layer: "):
        preflight(cfg, build_models(cfg))
    ok = config(
        layers=[{"name": "fc8", "pairs": [[1, 2]]}],
        sampler={"method": "fourier", "steps": 2, "start": "random"},
    )
    assert preflight(ok, build_models(ok)).layer_shapes == {"fc8": (10,)}


def test_an_out_dir_inside_rays_job_copy_is_refused_relative_or_absolute(tmp_path, monkeypatch):
    """Under `ray job submit` the working directory is Ray's temporary copy: `runs` and `$PWD/runs` both
    land there, and Ray deletes it."""
    from atlas.pipeline.driver import RAY_WORKING_DIR_CACHE, run_location

    job = tmp_path / RAY_WORKING_DIR_CACHE / "_ray_pkg_0123"
    job.mkdir(parents=True)
    monkeypatch.chdir(job)
    for out in ("runs", str(job / "runs"), f"file://{job}/runs"):
        with pytest.raises(ConfigError, match="lands in Ray's temporary copy of the job's working directory"):
            run_location(config(out_dir=out))
    assert run_location(config(out_dir=str(tmp_path / "elsewhere"))).local


def test_printed_commands_carry_the_stores_endpoint():
    from atlas.pipeline.driver import format_summary

    summary = {"units": 1, "chains": 2, "images": 3, "rows": {"units": 1}, "wall_seconds": 1.0,
               "units_per_minute": 60.0, "shards_run": 1, "shards_skipped": 0, "shards": 1, "diverged": 0,
               "errors": 0, "run_dir": "s3://b/atlas/demo", "endpoint": "http://127.0.0.1:9000"}  # fmt: skip
    text = format_summary(summary)
    assert "browse: AWS_ENDPOINT_URL=http://127.0.0.1:9000 atlas view s3://b/atlas/demo" in text
    assert "atlas view s3://b/atlas/demo" in format_summary({**summary, "endpoint": None})


def test_actors_are_capped_by_each_nodes_memory_and_reserve_it(monkeypatch):
    """A 32-core 64 GB node started 32 actors of ~4 GB (CPUs alone were counted): each actor now reserves
    its memory (Ray's ``memory`` resource) and the count fits every node's CPUs and memory at once."""
    import ray

    from atlas.pipeline import cluster

    gb = cluster.GB
    nodes = [
        {"Alive": True, "Resources": {"CPU": 32.0, "memory": 45 * gb}},
        {"Alive": True, "Resources": {"CPU": 0.0, "memory": 500 * gb}},  # a head with no CPU hosts none
        {"Alive": True, "Resources": {"CPU": 2.0, "memory": 100 * gb}},
    ]
    monkeypatch.setattr(ray, "nodes", lambda: nodes)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 34.0, "memory": 645 * gb})
    cfg = config()
    layout = cluster.plan_layout(cfg, 100)
    assert layout.actors == 34 and layout.memory == 0
    need, estimated = cluster.actor_memory(cfg, int(0.71 * gb))  # AlexNet + DeePSiM fc6 + CaffeNet
    assert estimated and need == int(3.84 * gb)
    fitted = cluster.fit_memory(cfg, layout, need, estimated)
    assert fitted.actors == 11 + 2 and fitted.memory == need  # 45 // 3.84 on the big node, CPUs on the small
    assert "13 actor(s) fit this cluster's memory (3.8 GB each, estimated from the models" in fitted.note
    assert "not the 34 its CPUs/GPUs hold" in fitted.note and "3.8 GB" in fitted.describe()
    # few shards: fewer actors than fit, nothing to say
    few = cluster.fit_memory(cfg, cluster.plan_layout(cfg, 4), need, estimated)
    assert few.actors == 4 and few.note is None
    # set in the config: used as given; more than any node offers is refused, naming the key
    set_cfg = config(ray={"memory_per_worker_gb": 20})
    assert cluster.actor_memory(set_cfg, 10**12) == (20 * 10**9, False)
    assert cluster.fit_memory(set_cfg, layout, 20 * 10**9, False).actors == 2 + 2
    too_big = r"^ray.memory_per_worker_gb: 200 GB per actor but no node .* 100.0 GB"
    with pytest.raises(ConfigError, match=too_big):
        cluster.fit_memory(config(ray={"memory_per_worker_gb": 200}), layout, 200 * 10**9, False)
    # an estimate above every node: one actor per node gets the most a node offers, and the note says so
    big = cluster.fit_memory(cfg, layout, 200 * 10**9, True)
    assert big.memory == int(100 * gb) and big.actors == 1 and "more than any node offers Ray" in big.note
    # reserve_memory: a configured amount before any model loads, an estimate once the models' size is known
    assert cluster.reserve_memory(set_cfg, layout).memory == 20 * 10**9
    assert cluster.reserve_memory(set_cfg, layout, 10**9) is layout  # already reserved
    assert cluster.reserve_memory(cfg, layout) is layout  # the estimate waits for the bundle
    assert cluster.reserve_memory(cfg, layout, int(0.71 * gb)).memory == need
    gpu_need, _ = cluster.actor_memory(cfg, int(0.71 * gb), gpus=1.0)  # the weights move to the device
    assert gpu_need == int(2.42 * gb)
    # CPUs split across nodes, not memory, lower the count: fitted without blaming memory
    nodes[:] = [{"Alive": True, "Resources": {"CPU": 3.0, "memory": 200 * gb}}] * 2
    split = cluster.fit_memory(config(ray={"cpus_per_worker": 2}), replace_layout(layout, cpus=2.0, actors=3),
                               need, estimated)  # fmt: skip
    assert split.actors == 2 and split.note is None
    # nodes that report no memory to Ray: nothing to fit or reserve
    nodes[:] = [{"Alive": True, "Resources": {"CPU": 4.0}}]
    assert cluster.fit_memory(cfg, layout, need, estimated) == layout
    # an autoscaling cluster keeps its count (nodes may come) and reserves only a configured amount (nodes
    # yet to come may hold less than an estimate)
    scaling = config(ray={"autoscaling": True})
    assert cluster.fit_memory(scaling, layout, need, True) is layout
    assert cluster.fit_memory(scaling, layout, need, False) == replace_layout(layout, memory=need)


def test_the_bundles_tensor_bytes_count_each_shared_tensor_once():
    import torch

    from atlas.models import LoadedModel
    from atlas.pipeline.models_setup import RunModels, WorkerBundle

    net = torch.nn.Linear(10, 10)  # 110 float32: 440 bytes
    target = LoadedModel(net, "target", "python:x")
    models = RunModels(target, None, None, None, None, encoder=target)  # the encoder is the target: once
    bundle = WorkerBundle(models, LoadedModel(torch.nn.Linear(10, 1), "judge", "python:y"), torch.zeros(4, 3))
    assert bundle.tensor_bytes() == 440 + 44 + 48


def _serve_once(answer: bytes) -> tuple[int, threading.Thread]:
    """A server on 127.0.0.1 that, for two connections (the probe's connect, then its question), reads a
    client's first bytes and answers ``answer`` (then hangs up)."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def serve() -> None:
        with server:
            for _ in range(2):
                conn, _ = server.accept()
                with conn:
                    if conn.recv(64):
                        conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server.getsockname()[1], thread


def test_a_ray_address_where_another_service_answers_is_refused_before_ray_retries_for_ever(monkeypatch):
    """A dashboard on a non-default port (HTTP/1) hung `ray.init` for 13 minutes; Ray's GCS speaks gRPC,
    which answers an HTTP/2 preface with a SETTINGS frame."""
    from atlas.pipeline.cluster import probe_address

    port, served = _serve_once(b"HTTP/1.1 505 HTTP Version Not Supported\r\n\r\n")
    with pytest.raises(ConfigError, match="answers, but not as Ray's GCS does .*a dashboard's HTTP"):
        probe_address(f"127.0.0.1:{port}")
    served.join()
    port, served = _serve_once(b"\x00\x00\x06\x04\x00\x00\x00\x00\x00" + bytes(6))  # a gRPC server's SETTINGS
    probe_address(f"127.0.0.1:{port}")
    served.join()
    monkeypatch.setenv("RAY_USE_TLS", "1")  # a TLS handshake would come first: not probed
    port, served = _serve_once(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    probe_address(f"127.0.0.1:{port}", answer_timeout_s=0.5)


@pytest.mark.parametrize(
    "role, spec, says",
    [
        (
            "target",
            "torchvision:alexnett",
            "models.target: unknown torchvision model 'alexnett' (did you mean",
        ),
        (
            "target",
            "python:nomodule_here:build",
            "models.target: spec 'python:nomodule_here:build': cannot import",
        ),
        ("generator", "deepsim:fc66", "models.generator: unknown DeePSiM variant 'fc66'; valid: fc6"),
    ],
)
def test_a_typo_in_a_model_spec_is_named_before_the_checks_it_would_mislead(role, spec, says):
    """A user's trial: with the default `start: facet_seeded` and the toy world's real images, a mistyped
    target spec was reported as a sampler.start problem ('the target is not a toy-world model'), so a
    newcomer fixed the wrong key. The spec is checked first, without building the model."""
    from atlas.pipeline.preflight import preflight_config

    models = {"target": "toyworld:target", "generator": "toyworld:generator", role: spec}
    sampler = {"method": "dgn_am", "start": "facet_seeded"}
    cfg = config(models=models, sampler=sampler, facets={"real_images": "toyworld"})
    with pytest.raises(AtlasError, match=re.escape(says)):
        preflight_config(cfg)
