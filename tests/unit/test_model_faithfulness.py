"""What atlas records belongs to the model and the picture: activations recomputed from the stored
pictures, layers read as the network computes them, the output layer the network ends with, and models
atlas cannot climb refused before anything runs. Tiny ``python:`` models (tests/unit/byo_factories.py)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from atlas.config import (
    ComputeConfig,
    FacetConfig,
    ModelConfig,
    PreprocessConfig,
    SamplerConfig,
    config_from_dict,
)
from atlas.errors import ConfigError, ModelError
from atlas.models import LayerProbe, list_layers, load_model, model_layers
from atlas.models.probes import last_leaf
from atlas.models.spaces import ImageSpace
from atlas.models.weights import apply_state_dict, load_state_dict_file
from atlas.pipeline.models_setup import build_models
from atlas.pipeline.preflight import preflight
from atlas.sampling import Engine

pytestmark = pytest.mark.unit
SPEC = "python:tests.unit.byo_factories"
CPU = torch.device("cpu")


@dataclasses.dataclass
class TinySet:
    images: torch.Tensor  # (N, 3, H, W) rgb01


def target(name: str = "good"):
    return load_model(f"{SPEC}:{name}", allow_random_weights=True)


def recomputed(model, layer: str, unit: int, image: np.ndarray) -> float:
    """The unit's value on a stored picture (uint8 HWC), read as the network computes it (float32)."""
    rgb01 = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        acts = LayerProbe(model.module, [layer])(model.space.encode(rgb01))[layer][0]
    if acts.dim() == 3:  # a conv unit: read at the centre, as the engine does
        acts = acts[:, acts.shape[1] // 2, acts.shape[2] // 2]
    return float(acts[unit])


def run_engine(t, g, layer: str, units: list[int], autocast: str = "none", **sampler):
    base = dict(steps=12, chains_per_unit=2, record_every=4, start="random")
    base.update(sampler)
    engine = Engine(
        t, g, None, SamplerConfig(**base), FacetConfig(enabled=False, real_images=None),
        ComputeConfig(batch_size=8, autocast=autocast), CPU,
    )  # fmt: skip
    results = engine.map_units(layer, units, seed=0)
    assert all(r.status == "ok" for r in results), [r.error for r in results]
    return results


def assert_records_match_pictures(t, results, layer: str) -> None:
    for r in results:
        for c in r.chains:
            for rec in (c.best, c.last):
                again = recomputed(t, layer, r.unit, rec.image)
                assert again == pytest.approx(rec.activation, rel=0.05, abs=0.05), (r.unit, rec.kind)


@pytest.mark.parametrize("layer", ["fc8", "conv2"])
def test_a_generator_whose_pictures_leave_0_1_is_read_on_the_stored_picture(layer):
    t, g = target(), load_model(f"{SPEC}:wide_generator", "generator", allow_random_weights=True)
    with torch.no_grad():
        raw = g.space.decode(g.module(torch.randn(4, 16)))
    assert raw.min() < -0.5 and raw.max() > 1.5  # the premise: G's own pictures leave [0, 1]
    results = run_engine(t, g, layer, [0, 2], method="dgn_am", dgn_am={"lr": 1.0, "lr_end": 0.01})
    assert_records_match_pictures(t, results, layer)


@pytest.mark.parametrize("method", [{"method": "pixel", "pixel": {"jitter": 4}}, {"method": "fourier"}])
def test_methods_that_climb_a_random_view_keep_what_the_picture_itself_reads(method):
    t = target()
    results = run_engine(t, None, "conv2", [0, 1, 2], steps=15, **method)
    assert_records_match_pictures(t, results, "conv2")


@pytest.mark.parametrize("method", ["dgn_am", "pixel", "ga"])
def test_stored_activations_are_a_float32_reading_of_the_stored_picture_in_any_precision(method):
    """Chains that climb in bf16 keep their pictures' numbers as a user's float32 forward pass of the stored
    8-bit picture gives them (a user's trial: bf16 numbers 1-3 % off, and two pictures tied), and the
    activations table's vector is the last picture's."""
    t = target()
    g = load_model(f"{SPEC}:generator", "generator", allow_random_weights=True) if method != "pixel" else None
    results = run_engine(t, g, "fc8", [0, 3], autocast="bf16", method=method, steps=6)
    for r in results:
        for c in r.chains:
            for rec in (c.best, c.last):
                again = recomputed(t, "fc8", r.unit, rec.image)
                assert again == pytest.approx(rec.activation, rel=1e-5, abs=1e-6), (r.unit, rec.kind)
            assert float(c.final_activations[r.unit]) == pytest.approx(c.last.activation, rel=1e-6)


def test_an_in_place_op_after_a_probed_layer_does_not_change_its_reading():
    t = target("in_place")
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        conv1 = t.module.conv1(x)
        read = LayerProbe(t.module, ["conv1", "conv2"])(x)
    assert conv1.min() < 0  # the premise: the in-place ReLU after it would zero these
    assert torch.equal(read["conv1"], conv1)


def test_the_default_output_layer_is_the_module_that_runs_last():
    assert target("dropout_last").output_layer == "fc"  # not the dropout registered after it
    assert target("two_heads").output_layer == "head_b"


def test_a_pooled_conv_classifier_is_an_output_layer():
    cfg = config_from_dict(
        {
            "models": {"target": f"{SPEC}:pooled_classifier", "allow_random_weights": True},
            "layers": [{"name": "pool"}],
            "sampler": {"method": "pixel", "steps": 2, "chains_per_unit": 1, "start": "random"},
            "facets": {"real_images": None},
        }
    )
    models = build_models(cfg)
    report = preflight(cfg, models)
    assert report.output_layer == "pool" and report.layer_shapes == {"pool": (5, 1, 1)}
    [unit] = run_engine(models.target, None, "pool", [3], method="pixel", steps=2, chains_per_unit=1)
    assert unit.kind == "output" and np.isfinite(unit.best_log_prob)


def test_a_target_without_input_gradients_is_refused_for_gradient_methods_only():
    data = {
        "models": {
            "target": f"{SPEC}:no_grad",
            "generator": f"{SPEC}:generator",
            "allow_random_weights": True,
        },
        "layers": [{"name": "body.fc8"}],
        "sampler": {"method": "dgn_am", "steps": 2, "chains_per_unit": 1, "start": "random"},
        "facets": {"real_images": None},
    }
    cfg = config_from_dict(data)
    with pytest.raises(ModelError, match="'body.fc8' does not depend differentiably.*use ga or cmaes"):
        preflight(cfg, build_models(cfg))
    data["sampler"] = {**data["sampler"], "method": "ga"}
    ga = config_from_dict(data)
    assert preflight(ga, build_models(ga)).layer_shapes == {"body.fc8": (10,)}
    data["models"].pop("generator")  # GA and CMA-ES search a generator's code: the way out says so
    data["sampler"] = {**data["sampler"], "method": "pixel"}
    pixel = config_from_dict(data)
    with pytest.raises(
        ModelError, match=r"use ga or cmaes \(forward passes only\), which search a generator's"
    ):
        preflight(pixel, build_models(pixel))


def test_a_module_that_runs_twice_is_counted_and_named_in_a_warning():
    t = target("shared_relu")
    rows = {r.name: r for r in list_layers(t.module, torch.zeros(1, 3, 16, 16))}
    assert rows["relu"].calls == 2 and rows["relu"].shape == (4, 16, 16)  # read at its first call
    assert last_leaf(list(rows.values())) == "fc"
    cfg = config_from_dict(
        {
            "models": {"target": f"{SPEC}:shared_relu", "allow_random_weights": True},
            "layers": [{"name": "relu", "units": "0-1"}],
            "sampler": {"method": "pixel", "steps": 2, "chains_per_unit": 1, "start": "random"},
            "facets": {"real_images": None},
        }
    )
    report = preflight(cfg, build_models(cfg))
    assert any("'relu' runs 2 times" in w and "first call" in w for w in report.warnings)


def test_a_one_channel_network_reads_the_pictures_luminance():
    t = target("gray")
    assert t.space.channels == 1 and t.space.describe().startswith("16x16 gray")
    rgb = torch.rand(2, 3, 16, 16)
    x = t.space.encode(rgb)
    luma = 0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2]
    assert x.shape == (2, 1, 16, 16) and torch.allclose(x[:, 0], (luma - 0.5) / 0.25, atol=1e-6)
    assert ImageSpace(size=4, channel_order="gray").decode(torch.zeros(1, 1, 4, 4)).shape == (1, 3, 4, 4)
    results = run_engine(t, None, "fc", [0, 1], method="pixel", steps=3)
    for picture in (c.last.image for r in results for c in r.chains):  # kept as the network reads it
        assert (picture[..., 0] == picture[..., 1]).all() and (picture[..., 1] == picture[..., 2]).all()
    assert_records_match_pictures(t, results, "fc")  # the grey picture drives the unit as recorded
    # colour photographs: their top images are kept as the network reads them
    real = torch.rand(12, 3, 16, 16)
    cfg = SamplerConfig(method="pixel", steps=2, chains_per_unit=1, start="random")
    engine = Engine(t, None, None, cfg, FacetConfig(top_k_real=3), ComputeConfig(), CPU, real=TinySet(real))
    (unit,) = engine.map_units("fc", [0], seed=0)
    assert len(unit.real_topk) == 3
    for _, value, picture in unit.real_topk:
        assert (picture[..., 0] == picture[..., 1]).all() and (picture[..., 1] == picture[..., 2]).all()
        assert recomputed(t, "fc", 0, picture) == pytest.approx(value, abs=0.02)  # its luminance, 8 bits
    with pytest.raises(ConfigError, match="mean: channel_order gray has one channel"):
        PreprocessConfig(channel_order="gray", mean=[0.5, 0.5, 0.5])
    rgb_space = PreprocessConfig(channel_order="RGB", mean=[0.5])  # the same net told it reads RGB
    with pytest.raises(ModelError, match="another number of channels.*channel_order .gray.*or --gray"):
        model_layers(
            load_model(ModelConfig(spec=f"{SPEC}:gray", preprocess=rgb_space), allow_random_weights=True)
        )
    gray_space = PreprocessConfig(channel_order="gray", mean=[0.5])  # an RGB net told it reads gray
    with pytest.raises(ModelError, match="another number of channels than the 1 .*or leave out --gray"):
        model_layers(
            load_model(ModelConfig(spec=f"{SPEC}:good", preprocess=gray_space), allow_random_weights=True)
        )


def test_checkpoints_as_people_save_them_load(tmp_path):
    t = target()
    state = t.module.state_dict()
    path = tmp_path / "ckpt.pt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in state.items()}, "best_acc": np.float64(0.9),
                "history": np.zeros(3)}, path)  # fmt: skip
    loaded = load_state_dict_file(path)  # numpy beside the tensors: allowed by name, nothing else
    fresh = target()
    apply_state_dict(fresh.module, loaded, str(path))  # Lightning's "model." prefix: stripped
    assert all(
        torch.equal(a, b) for a, b in zip(fresh.module.state_dict().values(), state.values(), strict=True)
    )
    torch.save({"epoch": 3, "net": state}, path)
    with pytest.raises(
        ModelError, match="holds keys 'epoch', 'net'; atlas reads one at the top level or under"
    ):
        load_state_dict_file(path)


def test_a_file_without_batchnorm_counters_loads_as_pytorch_loads_it(tmp_path):
    """Older and converted checkpoints lack BatchNorm's ``num_batches_tracked``; PyTorch fills it in."""
    import torchvision as tv

    state = tv.models.resnet18(weights=None).state_dict()
    kept = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "old.pt"
    torch.save({f"module.{k}": v for k, v in kept.items()}, path)  # DataParallel's prefix too
    model = load_model(ModelConfig(spec="torchvision:resnet18", weights=str(path)))
    assert torch.equal(model.module.state_dict()["conv1.weight"], state["conv1.weight"])
    torch.save({k: v for k, v in kept.items() if k != "bn1.running_var"}, path)  # a real key still counts
    with pytest.raises(ModelError, match="missing keys 'bn1.running_var'"):
        load_model(ModelConfig(spec="torchvision:resnet18", weights=str(path)))


def test_torchvision_googlenet_takes_its_pretrained_layout(tmp_path):
    import torchvision as tv

    path = tmp_path / "googlenet.pt"
    torch.save(tv.models.googlenet(weights=None, aux_logits=False, init_weights=False).state_dict(), path)
    model = load_model(ModelConfig(spec="torchvision:googlenet", weights=str(path)))
    assert model.module.transform_input and model.module.aux1 is None and model.output_layer == "fc"


def test_caffenet_has_the_papers_layout():
    model = load_model("python:atlas.models.caffenet:caffenet", allow_random_weights=True)
    rows = {r.name: r for r in list_layers(model.module, torch.zeros(1, 3, 227, 227))}
    counted = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")
    assert sum(rows[n].units for n in counted) == 10_568  # REFERENCE: CaffeNet's unit count
    assert rows["conv1"].shape == (96, 55, 55) and rows["pool5"].shape == (256, 6, 6)
    assert model.output_layer == "fc8" and model.space.channel_order == "BGR" and model.space.size == 227


class _RunsCode:
    """A pickle that calls a numpy function which runs code (numpy.testing's runstring)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        from numpy.testing._private.utils import runstring

        return runstring, (f"open({self.marker!r}, 'w').write('ran')", {})


def test_a_checkpoint_that_would_run_code_through_numpy_is_refused(tmp_path):
    marker, path = tmp_path / "ran", tmp_path / "evil.pt"
    torch.save({"state_dict": target().module.state_dict(), "meta": _RunsCode(str(marker))}, path)
    with pytest.raises(ModelError, match=r"refused: it holds pickled Python objects \(numpy.testing"):
        load_state_dict_file(path)
    assert not marker.exists()


def test_a_forward_that_changes_its_input_in_place_passes_the_gradient_check():
    cfg = config_from_dict(
        {
            "models": {"target": f"{SPEC}:centres_in_place", "allow_random_weights": True},
            "layers": [{"name": "body.fc8"}],
            "sampler": {"method": "pixel", "steps": 2, "chains_per_unit": 1, "start": "random"},
            "facets": {"real_images": None},
        }
    )
    assert preflight(cfg, build_models(cfg)).layer_shapes == {"body.fc8": (10,)}
