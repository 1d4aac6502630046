"""Target ensembles (``models.ensemble``, issue 17): config, objective, engine, toy-world members."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from atlas.config import ComputeConfig, FacetConfig, SamplerConfig, config_from_dict
from atlas.errors import AtlasError, ConfigError
from atlas.models.loaded import LoadedModel, freeze
from atlas.sampling import Engine
from atlas.sampling.compute import ComputeSetup
from atlas.sampling.ensemble import TargetEnsemble, check_member_shapes
from atlas.sampling.objectives import Objective, layer_values, parse_composite
from atlas.sampling.units import make_unit
from tests.unit.tiny_models import tiny_target, tiny_world

pytestmark = pytest.mark.unit

BASE = {
    "name": "e",
    "models": {"target": "toyworld:target", "generator": "toyworld:generator"},
    "layers": [{"name": "fc8", "units": [0]}],
}


def _config(ensemble):
    data = copy.deepcopy(BASE)
    data["models"]["ensemble"] = ensemble
    return config_from_dict(data)


def test_config_takes_members_as_spec_strings_or_mappings():
    cfg = _config(["toyworld:target2", {"spec": "torchvision:resnet18", "weights": "r.pt"}])
    assert [m.spec for m in cfg.models.ensemble] == ["toyworld:target2", "torchvision:resnet18"]
    assert cfg.models.ensemble[1].weights == "r.pt"


def test_a_config_without_members_keeps_its_hash_and_dump():
    """``models.ensemble`` left out is omitted from the dump, so older runs' config hashes stay the same."""
    from atlas.config.section import to_plain

    plain = config_from_dict(copy.deepcopy(BASE))
    assert plain.models.ensemble == [] and "ensemble" not in to_plain(plain)["models"]
    assert to_plain(_config(["toyworld:target2"]))["models"]["ensemble"][0]["spec"] == "toyworld:target2"


@pytest.mark.parametrize(
    ("ensemble", "says"),
    [
        (["toyworld:target"], r"models.ensemble\[0\]: 'toyworld:target' is models.target again"),
        (["toyworld:target2", "toyworld:target2"], r"models.ensemble\[1\]: .* is models.ensemble\[0\] again"),
        (["toyworld:judge"], r"models.ensemble\[0\]: 'toyworld:judge' is the toy world's judge, not an "
         "ensemble member; use toyworld:target2"),
        (["toyworld:targt2"], r"unknown toy-world component 'targt2'; valid here: toyworld:target2 \.\.\. "
         "target9"),
        (["toyworld:dae"], "not an ensemble member"),
    ],
)  # fmt: skip
def test_bad_members_are_one_line_errors_naming_the_member(ensemble, says):
    with pytest.raises(ConfigError, match=says) as err:
        _config(ensemble)
    assert "\n" not in str(err.value)


def test_a_member_with_other_weights_is_another_network():
    data = copy.deepcopy(BASE)
    data["models"]["target"] = {"spec": "torchvision:resnet18", "weights": "a.pt"}
    data["models"]["generator"] = None
    data["sampler"] = {"method": "fourier"}
    data["models"]["ensemble"] = [{"spec": "torchvision:resnet18", "weights": "b.pt"}]
    assert len(config_from_dict(data).models.ensemble) == 1
    data["models"]["ensemble"] = [{"spec": "torchvision:resnet18", "weights": "a.pt"}]
    with pytest.raises(ConfigError, match="is models.target again"):
        config_from_dict(data)


def _negated(model: LoadedModel) -> LoadedModel:
    """The same network with its logits negated: a member that disagrees with T about every class."""
    m = copy.deepcopy(model)
    with torch.no_grad():
        m.module.fc8.weight.neg_()
        m.module.fc8.bias.neg_()
    return LoadedModel(freeze(m.module), "target", "tiny:negated", space=m.space, output_layer="fc8")


def _setup() -> ComputeSetup:
    return ComputeSetup.resolve(ComputeConfig(autocast="none"), torch.device("cpu"))


def test_the_ensemble_objective_is_the_objective_of_the_mean_output_layer():
    t, other = tiny_target(0), tiny_target(5)
    img = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    units = [make_unit("fc8", u, (10,), True, "center") for u in (0, 3, 3, 7)]
    index = torch.tensor([0, 3, 3, 7])

    def z(model):
        with torch.no_grad():
            return layer_values(model.module(model.space.encode(img)), units)  # (4, 10)

    for kind in ("raw", "log_softmax"):
        objective = Objective(kind)
        ens = TargetEnsemble([other, _negated(t)], _setup(), fold=True)
        with torch.no_grad():
            got = ens.objective(z(t), img, units, objective, index)
        want = objective((z(t) + z(other) + z(_negated(t))) / 3, index)
        assert torch.allclose(got, want, atol=1e-5), kind
        same = TargetEnsemble([copy.deepcopy(t)], _setup(), fold=False)
        with torch.no_grad():  # a member that is T again changes nothing
            assert torch.allclose(same.objective(z(t), img, units, objective, index), objective(z(t), index))
    pair = Objective("log_softmax", (parse_composite("2 + 5", 10),), 10)  # a composite: of the mean too
    ens = TargetEnsemble([other], _setup(), fold=False)
    with torch.no_grad():
        got = ens.objective(z(t), img, units, pair, torch.tensor([10] * 4))
    assert torch.allclose(got, pair((z(t) + z(other)) / 2, torch.tensor([10] * 4)), atol=1e-5)


def test_a_member_without_the_targets_classes_is_refused():
    odd = tiny_target(1)
    odd.module.fc8 = torch.nn.Linear(32, 7)
    with pytest.raises(ConfigError, match=r"models.ensemble\[1\] 'tiny:target': output layer 'fc8' has shape "
                       r"\(7,\), the target's \(10,\)"):  # fmt: skip
        check_member_shapes([tiny_target(2), odd], (10,))
    with pytest.raises(ConfigError) as caught:  # a layer of the target's shape: named, with the key
        check_member_shapes([tiny_target(2), odd], (32,))
    assert str(caught.value).endswith(
        "(its layers of that shape: 'fc6', 'relu6', 'fc7', 'relu7'; name one with "
        "models.ensemble[0].output_layer)"
    )
    with pytest.raises(ConfigError) as caught:
        check_member_shapes([odd], (3,))
    assert str(caught.value).endswith("a member must have the target's classes in its order")


def _engine(ensemble=(), **sampler):
    t, g, d, real = tiny_world()
    cfg = SamplerConfig(**({"chains_per_unit": 2, "record_every": 2, "method": "dgn_am"} | sampler))
    return Engine(
        t, g, d, cfg, FacetConfig(enabled=False), ComputeConfig(autocast="none"), torch.device("cpu"),
        real=real, truth=False, ensemble=list(ensemble),
    )  # fmt: skip


def test_the_method_string_counts_the_networks_where_the_ensemble_joins():
    eng = _engine([tiny_target(7)], steps=1)
    assert eng.method_text("fc8") == "dgn_am[ensemble=2]"
    assert eng.method_text("fc7") == "dgn_am"  # hidden units: the target alone
    assert _engine([tiny_target(7)], steps=1, diversity=3.0).method_text("fc8") == (
        "dgn_am[diversity=3,ensemble=2]"
    )


def test_chains_climb_the_ensemble_but_store_the_targets_own_numbers():
    """With a member that disagrees about every class (T's logits negated) the chains climb the mean of
    the two, which for raw logits is zero everywhere: nothing to climb (only DGN-AM's L2 decay moves the
    code). Without it they climb T's logit.
    In both runs the stored activation is T's own reading of the stored picture."""
    (alone,) = _engine(steps=10, start="mean", start_noise=0.3).map_units("fc8", [4], seed=0)
    t = tiny_world()[0]
    (against,) = _engine([_negated(t)], steps=10, start="mean", start_noise=0.3).map_units("fc8", [4], seed=0)
    assert alone.status == against.status == "ok", against.error
    for res in (alone, against):
        for c in res.chains:
            picture = torch.from_numpy(c.last.image).float().permute(2, 0, 1)[None] / 255  # (1, 3, H, W)
            with torch.no_grad():
                own = t.module(t.space.encode(picture))[0, 4]
            assert c.last.activation == pytest.approx(float(own), rel=1e-3, abs=1e-3)
    climbed = [c.last.activation - c.trajectory[0]["activation"] for c in alone.chains]
    still = [c.last.activation - c.trajectory[0]["activation"] for c in against.chains]
    assert min(climbed) > 10 * max(abs(s) for s in still)  # measured: 0.06 against 0.001 (L2 decay alone)


def test_hidden_layers_run_on_the_target_alone():
    (plain,) = _engine(steps=4, start="mean", start_noise=0.3).map_units("fc7", [2], seed=0)
    (ens,) = _engine([_negated(tiny_world()[0])], steps=4, start="mean", start_noise=0.3).map_units(
        "fc7", [2], seed=0
    )
    assert [c.last.activation for c in plain.chains] == [c.last.activation for c in ens.chains]


def test_gradient_free_search_and_start_pools_rank_by_the_ensemble():
    """With the negated member the ensemble's raw objective is 0 for every picture: GA keeps no better
    code than another and a start pool picks no better draw, where T alone climbs and picks its best."""
    t = tiny_world()[0]

    def climb(ensemble, **sampler):
        (res,) = _engine(ensemble, **sampler).map_units("fc8", [4], seed=0)
        assert res.status == "ok", res.error
        return res

    ga = dict(method="ga", steps=4, start="mean", start_noise=0.3)
    alone, against = climb([], **ga), climb([_negated(t)], **ga)
    assert against.method.endswith("ensemble=2]")
    gain = [
        sum(c.last.activation - c.trajectory[0]["activation"] for c in r.chains) for r in (alone, against)
    ]
    assert gain[0] > gain[1], gain
    pool = dict(steps=1, start="random", start_pool=8, record_every=1)
    alone, against = climb([], **pool), climb([_negated(t)], **pool)
    starts = [sum(c.trajectory[0]["activation"] for c in r.chains) for r in (alone, against)]
    assert starts[0] > starts[1], starts  # T alone starts from its best draws


def test_members_read_the_picture_as_the_target_keeps_it():
    """A center-crop target keeps (and reads) the crop of G's larger picture: the members read that crop
    too, not the border T never sees."""
    from atlas.sampling.chain import TargetReadout

    seen_by_members = []

    class Recorder:
        def objective(self, values, img, units, objective, index):
            seen_by_members.append(tuple(img.shape))
            return objective(values, index)

    crop = lambda x: x[..., 2:-2, 2:-2]  # noqa: E731  what a center-crop space keeps
    readout = TargetReadout(encode=crop, probe=None, final_probe=None, layer="fc8", seen=crop)
    readout.ensemble = Recorder()  # type: ignore[assignment]
    values, index = torch.zeros(2, 10), torch.tensor([1, 2])
    readout.climbed(values, torch.zeros(2, 3, 20, 20), [], Objective("raw"), index)
    assert seen_by_members == [(2, 3, 16, 16)]


@pytest.mark.parametrize(
    ("factory", "says"),
    [
        ("one_picture", r"models.ensemble\[0\]: a forward pass on a batch of 2 pictures failed"),
        ("no_grad", r"models.ensemble\[0\]: layer .* does not depend differentiably on the input"),
    ],
)
def test_preflight_holds_members_to_the_targets_checks(factory, says):
    from atlas.models.registry import load_model
    from atlas.pipeline.models_setup import RunModels
    from atlas.pipeline.preflight import preflight_models
    from tests.unit.tiny_models import pixel_config

    cfg = pixel_config()
    target = load_model(cfg.models.target, allow_random_weights=True)
    member = load_model(f"python:tests.unit.byo_factories:{factory}", allow_random_weights=True)
    with pytest.raises(AtlasError, match=says):
        preflight_models(cfg, RunModels(target, None, None, None, None, ensemble=[member]))


def test_a_member_that_needs_contiguous_memory_turns_channels_last_off():
    from atlas.models.registry import load_model
    from atlas.pipeline.models_setup import RunModels
    from atlas.pipeline.preflight import preflight_models
    from tests.unit.tiny_models import pixel_config

    cfg = pixel_config()  # compute.device cpu: channels_last auto is on
    target = load_model(cfg.models.target, allow_random_weights=True)
    member = load_model("python:tests.unit.byo_factories:views_flat", allow_random_weights=True)
    report = preflight_models(cfg, RunModels(target, None, None, None, None, ensemble=[member]))
    assert report.contiguous_only and any(
        w.startswith("models.ensemble[0] fails in the channels_last") for w in report.warnings
    )
    alone = preflight_models(cfg, RunModels(target, None, None, None, None))
    assert not alone.contiguous_only


def test_a_member_of_the_targets_spec_in_another_input_space_is_named():
    """A user's trial gave a member of the target's own network only ``preprocess: {size: 32}``: it read
    pictures at mean 0 / std 1 against the target's 0.5 / 0.25, unsaid. Another network's space is its own."""
    from atlas.config import ModelConfig
    from atlas.models.registry import load_model
    from atlas.pipeline.models_setup import RunModels
    from atlas.pipeline.preflight import preflight_models
    from tests.unit.tiny_models import pixel_config

    cfg = pixel_config()
    target = load_model(cfg.models.target, allow_random_weights=True)
    spec = cfg.models.target.spec
    apart = load_model(ModelConfig(spec=spec, preprocess={"size": 32, "mean": [0.0] * 3, "std": [1.0] * 3}),
                       allow_random_weights=True)  # fmt: skip
    same = load_model(spec, allow_random_weights=True)
    report = preflight_models(cfg, RunModels(target, None, None, None, None, ensemble=[same, apart]))
    said = [w for w in report.warnings if "reads pictures as" in w]
    assert len(said) == 1 and said[0].startswith(f"models.ensemble[1] ({spec}) reads pictures as 32x32 RGB")
    assert said[0].endswith("give it the target's preprocess") and "std=(0.25, 0.25, 0.25)" in said[0]


def test_member_load_errors_name_the_member_in_their_hints():
    from atlas.errors import ModelError
    from atlas.models.registry import load_run_ensemble

    cfg = _config([{"spec": "torchvision:resnet18", "weights": "/nowhere/r.pt"}])
    with pytest.raises(ModelError) as err:
        load_run_ensemble(cfg)
    said = str(err.value)
    assert said.startswith("models.ensemble[0]") and "models.target" not in said and "\n" not in said, said


def test_run_models_fingerprint_their_members_in_order():
    from atlas.pipeline.models_setup import RunModels

    t, g = tiny_target(0), tiny_target(1)
    a, b = tiny_target(2), tiny_target(3)
    a.fingerprint, b.fingerprint = "aaa", "bbb"
    one = RunModels(t, None, None, None, None, ensemble=[a, b]).fingerprints()["ensemble"]
    two = RunModels(t, None, None, None, None, ensemble=[b, a]).fingerprints()["ensemble"]
    assert [m["fingerprint"] for m in one] == ["aaa", "bbb"] and one != two
    assert "ensemble" not in RunModels(t, g, None, None, None).fingerprints()
    assert RunModels(t, g, None, None, None, ensemble=[a]).networks() == [t, g, a]


def test_toy_world_members_train_as_t_with_their_own_seed_and_come_from_the_cache(tmp_path, monkeypatch):
    from atlas.toyworld.world import MEMBERS, ToyWorld, member_seed

    seeds: list[int] = []

    def fake_train_target(cfg, data, log):
        from atlas.toyworld.nets import Generator, TargetNet
        from atlas.toyworld.shapes import CLASS_NAMES

        seeds.append(cfg.target.seed)
        c = cfg.target
        net = TargetNet(c.widths, c.fc, len(CLASS_NAMES), cfg.data.size, c.pools)
        return net, Generator(c.fc, cfg.generator.width, cfg.data.size, c.pools)

    monkeypatch.setattr("atlas.toyworld.train_target.train_target", fake_train_target)
    monkeypatch.setattr(ToyWorld, "data", lambda self, split: None)
    world = ToyWorld("micro", tmp_path, log=lambda _m: None)
    assert MEMBERS[0] == "target2" and MEMBERS[-1] == "target9"
    first = world.loaded("target3")
    assert seeds == [member_seed(world.cfg, "target3")] != [world.cfg.target.seed]
    assert world.sources["target3"] == "trained" and first.spec == "toyworld:target3"
    assert first.output_layer == "fc8" and any((tmp_path / "toyworld").rglob("target3.pt"))
    again = ToyWorld("micro", tmp_path, log=lambda _m: None)
    assert again.loaded("target3").fingerprint == first.fingerprint and seeds == [seeds[0]]
    assert again.sources["target3"] == "cache"
    with pytest.raises(AtlasError, match="not trained yet"):
        again.module("target4", train_if_missing=False)


def test_preflight_checks_the_members_and_names_the_layers_they_leave_alone():
    from atlas.config import replace
    from atlas.config.layers import LayerConfig
    from atlas.pipeline.models_setup import RunModels
    from atlas.pipeline.preflight import preflight_models
    from tests.unit.tiny_models import pixel_config

    target, member = tiny_target(0), tiny_target(4)
    cfg = pixel_config()  # layers: fc8
    report = preflight_models(cfg, RunModels(target, None, None, None, None, ensemble=[member]))
    assert not [w for w in report.warnings if "joins the objectives" in w]
    assert "models.ensemble[0] (tiny:target) runs on RANDOM weights" in " ".join(report.warnings)
    both = replace(cfg, layers=[*cfg.layers, LayerConfig(name="fc7")])
    report = preflight_models(both, RunModels(target, None, None, None, None, ensemble=[member]))
    (said,) = [w for w in report.warnings if "joins the objectives" in w]
    assert "output layer 'fc8' only; the run's other layers (fc7) use the target alone" in said
    odd = tiny_target(5)
    odd.module.fc8 = torch.nn.Linear(32, 4)
    with pytest.raises(ConfigError, match=r"models.ensemble\[1\] .* has shape \(4,\), the target's \(10,\)"):
        preflight_models(cfg, RunModels(target, None, None, None, None, ensemble=[member, odd]))


@pytest.mark.parametrize("text", ["9", "-1", "two", ""])
def test_bootstrap_members_takes_0_to_8(text):
    import argparse

    from atlas.commands.bootstrap import members_count

    assert members_count("4") == 4
    with pytest.raises(argparse.ArgumentTypeError, match="a whole number from 0 to 8"):
        members_count(text)


def test_config_check_names_the_ensemble_and_refuses_a_member_of_other_classes():
    """`atlas config --check` loads the members as a run does: a line naming them, or a one-line error."""
    from atlas.commands.config_cmd import _check
    from tests.unit.tiny_models import pixel_config

    member = {"spec": "python:tests.unit.byo_factories:undeclared", "preprocess": {"size": 32}}
    data = pixel_config().model_dump(mode="json")
    data["models"]["ensemble"] = [member]
    lines = _check(config_from_dict(data))
    assert any(
        line.startswith("# ensemble: fc8's chains climb the objective of the mean output layer of the target "
                        "and python:tests.unit.byo_factories:undeclared (2 networks)")
        for line in lines
    ), lines  # fmt: skip
    data["models"]["ensemble"] = [member | {"output_layer": "fc7"}]
    with pytest.raises(
        ConfigError, match=r"models.ensemble\[0\] .*'fc7' has shape \(32,\), the target's \(10,\)"
    ):
        _check(config_from_dict(data))


def test_a_run_of_hidden_layers_alone_leaves_its_members_unloaded(monkeypatch):
    """Members join the output layer's objectives only: a run without it does not load them (a toy world's
    are trained on demand, minutes each) and the pre-flight says they are unused."""
    from atlas.errors import ModelError
    from atlas.models import registry
    from atlas.pipeline.models_setup import build_models
    from atlas.pipeline.preflight import preflight_models
    from tests.unit.tiny_models import pixel_config

    loaded = []
    load = registry.load_run_ensemble
    monkeypatch.setattr(registry, "load_run_ensemble", lambda run, *a: loaded.append(run) or load(run, *a))
    monkeypatch.setattr("atlas.pipeline.models_setup.load_run_ensemble", registry.load_run_ensemble)
    data = pixel_config().model_dump(mode="json")
    data["models"]["ensemble"] = [
        {"spec": "python:tests.unit.byo_factories:undeclared", "preprocess": {"size": 32}}
    ]
    data["layers"] = [{"name": "fc7"}]
    cfg = config_from_dict(data)
    models = build_models(cfg)
    assert models.ensemble == [] and loaded == []
    said = [w for w in preflight_models(cfg, models).warnings if "ensemble" in w]
    assert said == [
        "models.ensemble is unused: none of the run's layers (fc7) is the target's output layer 'fc8', whose "
        "objectives it joins; its members were not loaded"
    ]
    missing = {"spec": "torchvision:resnet18", "weights": "/nowhere/r.pt"}  # still held to its file
    with pytest.raises(ModelError, match=r"^models.ensemble\[1\]: weights file '/nowhere/r.pt' not found"):
        build_models(
            config_from_dict(
                data | {"models": data["models"] | {"ensemble": [*data["models"]["ensemble"], missing]}}
            )
        )
    data["layers"] = [{"name": "fc7"}, {"name": "output"}]  # the alias names it too
    assert len(build_models(config_from_dict(data)).ensemble) == 1 and len(loaded) == 1


def test_a_chain_steps_flops_count_the_members_passes_on_output_layers():
    from atlas.bench.throughput import flops_per_chain_step

    alone, ens = _engine(steps=1), _engine([tiny_target(7), tiny_target(8)], steps=1)
    assert flops_per_chain_step(ens, "fc8") > flops_per_chain_step(alone, "fc8") * 1.2
    assert flops_per_chain_step(ens, "fc7") == flops_per_chain_step(alone, "fc7")  # hidden: T alone


def test_config_check_never_trains_a_member_it_lacks(tmp_path, monkeypatch, capsys):
    """A user's trial: `atlas config --check` with `models.ensemble=[toyworld:target2]` trained the member
    for 7 minutes into the shared cache. A check trains nothing: one line says what would."""
    from atlas.cli import main

    def no_training(*args, **kwargs):
        raise AssertionError("a check trained a network")

    monkeypatch.setattr("atlas.toyworld.train_target.train_target", no_training)
    micro = Path(__file__).resolve().parents[2] / "configs" / "micro.yaml"
    argv = ["config", str(micro), "--check", "--set", f"toyworld.cache_dir={tmp_path}"]
    assert main([*argv, "--set", "models.ensemble=[toyworld:target3]"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "models.ensemble[0]: 'toyworld:target3' is not trained yet" in err, err
    assert "`atlas bootstrap --preset micro --members 2` trains it" in err, err
    assert not list(tmp_path.rglob("target3.pt"))
    pairs = ["--set", "toyworld.preset=pairs", "--set", "models.ensemble=[toyworld:target2,toyworld:target5]"]
    assert main([*argv, *pairs]) == 2  # T untrained too: one bootstrap for T and every member the run lists
    err = capsys.readouterr().err.strip()
    assert "models.target: 'toyworld:target' is not trained yet" in err, err
    assert "`atlas bootstrap --preset pairs --members 4` trains it and the run's ensemble members" in err, err


def test_config_check_never_trains_the_planted_targets_base(tmp_path, monkeypatch, capsys):
    """`toyworld:planted` is T plus planted units: a check on a world whose T is not trained yet says so
    in one line, as for any toy-world network, instead of training T first."""
    from atlas.cli import main

    def no_training(*args, **kwargs):
        raise AssertionError("a check trained a network")

    monkeypatch.setattr("atlas.toyworld.train_target.train_target", no_training)
    micro = Path(__file__).resolve().parents[2] / "configs" / "micro.yaml"
    argv = ["config", str(micro), "--check", "--set", f"toyworld.cache_dir={tmp_path}"]
    planted = ["--set", "models.target=toyworld:planted", "--set", "layers=[{name: planted}]"]
    assert main([*argv, *planted, "--set", "toyworld.preset=pairs"]) == 2  # a preset that ships no weights
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "'toyworld:planted' is not trained yet" in err, err
    assert "`atlas bootstrap --preset pairs` trains it" in err, err
    assert not list(tmp_path.rglob("*.pt"))
