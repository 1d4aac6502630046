"""Model registry, DeePSiM generators, weights loading and layer probes (random weights, no downloads)."""

from __future__ import annotations

import os
import pickle
import random
import re

import pytest
import torch
from torch import nn

from atlas.config import ModelConfig, PreprocessConfig
from atlas.errors import ModelError
from atlas.models import LayerProbe, list_layers, load_model
from atlas.models.deepsim import DeePSiMGenerator
from atlas.models.spaces import deepsim_space, torchvision_space

pytestmark = pytest.mark.unit


# A tiny model importable through the python: scheme (this test module is importable as tests.unit...).
def tiny_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 5)
    )


class Recorder(nn.Module):
    """Sequential net that records which layers ran."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)
        self.c = nn.Linear(4, 2)
        self.ran: list[str] = []

    def forward(self, x):
        for name in ("a", "b", "c"):
            self.ran.append(name)
            x = getattr(self, name)(x)
        return x


def test_probe_stops_after_deepest_requested_layer():
    net = Recorder()
    acts = LayerProbe(net, ["a", "b"])(torch.randn(3, 4))
    assert set(acts) == {"a", "b"} and acts["b"].shape == (3, 4)
    assert net.ran == ["a", "b"], "layer c ran although only a and b were requested"


def test_probe_unknown_layer_suggests():
    with pytest.raises(ModelError, match=r"unknown layer 'bb' \(did you mean 'b'"):
        LayerProbe(Recorder(), ["bb"])


def test_probe_gradients_flow_to_input():
    net = (
        load_model("python:tests.unit.test_models:tiny_cnn", allow_random_weights=True, **{})
        if False
        else None
    )  # noqa: SIM108 (python scheme tested below)
    del net
    model = tiny_cnn().eval()
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    acts = LayerProbe(model, ["0"])(x)
    (g,) = torch.autograd.grad(acts["0"][:, 1].sum(), x)
    assert g.abs().sum() > 0


def test_torchvision_alexnet_layers_random():
    m = load_model("torchvision:alexnet", allow_random_weights=True)
    assert m.random_weights and m.output_layer == "classifier.6"
    rows = {r.name: r for r in list_layers(m.module, m.space.encode(torch.rand(1, 3, 256, 256)))}
    assert rows["features.10"].shape == (256, 13, 13) and rows["features.10"].kind == "conv"
    assert rows["classifier.6"].units == 1000 and rows["classifier.6"].kind == "fc"


def test_a_torchvision_model_fine_tuned_to_other_classes_loads_with_them(tmp_path):
    """A state dict saved from ``resnet18(num_classes=10)`` is the 10-class model; a change elsewhere than
    the classifier's output count is still a shape error naming the tensor."""
    import torchvision

    tuned = torchvision.models.resnet18(num_classes=10)
    torch.save(tuned.state_dict(), tmp_path / "r18-10.pt")
    m = load_model(ModelConfig(spec="torchvision:resnet18", weights=str(tmp_path / "r18-10.pt")))
    assert m.module.fc.out_features == 10 and torch.equal(m.module.fc.weight, tuned.fc.weight)
    state = tuned.state_dict()
    state["fc.weight"] = torch.zeros(10, 256)  # other inputs: no resnet18 of any class count
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(
        ModelError, match=r"'fc.weight' has shape \(10, 256\), the model expects \(1000, 512\)"
    ):
        load_model(ModelConfig(spec="torchvision:resnet18", weights=str(tmp_path / "bad.pt")))


def test_the_fine_tuned_class_count_is_read_from_the_main_head_not_an_aux_one():
    """Inception v3's AuxLogits.fc.weight ends in .fc.weight too, and comes first in its state dict."""
    import torchvision

    from atlas.models.registry import _fine_tuned_classes

    with torch.device("meta"):
        tuned = torchvision.models.inception_v3(
            weights=None, num_classes=10, aux_logits=True, init_weights=False
        )
    state = tuned.state_dict()
    assert _fine_tuned_classes("inception_v3", state) == {"num_classes": 10}
    assert _fine_tuned_classes("inception_v3", {f"module.{k}": v for k, v in state.items()}) == {
        "num_classes": 10
    }


def test_torchvision_unknown_name_suggests():
    with pytest.raises(ModelError, match="did you mean alexnet"):
        load_model("torchvision:alexnett", allow_random_weights=True)


def test_unknown_scheme():
    from atlas.errors import AtlasError  # the spec's own check (a ConfigError) speaks before the registry

    with pytest.raises(AtlasError, match="unknown model scheme 'torchvison'.*did you mean 'torchvision'"):
        load_model("torchvison:alexnet")


def test_real_network_without_weights_refused():
    with pytest.raises(ModelError, match="has no weights file.*allow_random_weights"):
        load_model("torchvision:alexnet")


def test_state_dict_roundtrip_and_errors(tmp_path, monkeypatch):
    path = tmp_path / "tiny.pt"
    torch.save(tiny_cnn().state_dict(), path)
    spec = "python:tests.unit.test_models:tiny_cnn"
    pre = PreprocessConfig(size=8)
    m = load_model(ModelConfig(spec=spec, weights=str(path), preprocess=pre))
    assert not m.random_weights and m.space.size == 8 and len(m.fingerprint) == 16
    ref = tiny_cnn()
    ref.load_state_dict(torch.load(path, weights_only=True))
    x = torch.randn(2, 3, 8, 8)
    assert torch.allclose(m.module(x), ref.eval()(x))

    # wrong key
    state = torch.load(path, weights_only=True)
    state["4.weightt"] = state.pop("4.weight")
    bad = tmp_path / "badkey.pt"
    torch.save(state, bad)
    with pytest.raises(ModelError, match=r"missing keys '4.weight'.*unexpected keys '4.weightt'"):
        load_model(ModelConfig(spec=spec, weights=str(bad), preprocess=pre))

    # shape mismatch names the tensor
    state = torch.load(path, weights_only=True)
    state["4.weight"] = torch.zeros(5, 17)
    shape = tmp_path / "shape.pt"
    torch.save(state, shape)
    with pytest.raises(
        ModelError, match=r"tensor '4.weight' has shape \(5, 17\), the model expects \(5, 16\)"
    ):
        load_model(ModelConfig(spec=spec, weights=str(shape), preprocess=pre))

    # a '~' the shell did not expand (quoted, or in a YAML file) names the home folder
    monkeypatch.setenv("HOME", str(tmp_path))
    home = load_model(ModelConfig(spec=spec, weights=f"~/{path.name}", preprocess=pre))
    assert home.fingerprint == m.fingerprint

    # NaN weights (a diverged training) are refused, naming the tensor
    state = torch.load(path, weights_only=True)
    state["4.weight"][0, 0] = float("nan")
    diverged = tmp_path / "nan.pt"
    torch.save(state, diverged)
    with pytest.raises(ModelError, match=r"tensor '4.weight' holds NaN or infinite values"):
        load_model(ModelConfig(spec=spec, weights=str(diverged), preprocess=pre))


def test_missing_corrupt_and_pickle_files_refused(tmp_path):
    spec = "python:tests.unit.test_models:tiny_cnn"
    pre = PreprocessConfig(size=8)
    with pytest.raises(ModelError, match="not found"):
        load_model(ModelConfig(spec=spec, weights=str(tmp_path / "nope.pt"), preprocess=pre))
    corrupt = tmp_path / "corrupt.pt"
    rng = random.Random(0)
    payloads = [bytes(rng.randrange(256) for _ in range(200)) for _ in range(50)]
    good = tmp_path / "good.pt"
    torch.save(tiny_cnn().state_dict(), good)
    payloads += [good.read_bytes()[:300], b"PK\x03\x04" + bytes(100), b"\x80\x02}q\x00."]
    for payload in payloads:  # arbitrary bytes fail in many ways; each must be one clear ModelError
        corrupt.write_bytes(payload)
        with pytest.raises(ModelError, match="corrupt|does not hold a state dict|refused"):
            load_model(ModelConfig(spec=spec, weights=str(corrupt), preprocess=pre))
    for text in ("conv1.weight: [0.1, 0.2]\n", '{"conv1.weight": [0.1]}'):  # torch says "KeyError: 101"
        corrupt.write_text(text)
        with pytest.raises(ModelError, match=rf"holds text starting {re.escape(repr(text.strip()))}, not"):
            load_model(ModelConfig(spec=spec, weights=str(corrupt), preprocess=pre))

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    evil = tmp_path / "evil.pt"
    torch.save({"weight": Payload()}, evil, pickle_protocol=pickle.HIGHEST_PROTOCOL)
    with pytest.raises(ModelError, match="refused: it holds pickled Python objects"):
        load_model(ModelConfig(spec=spec, weights=str(evil), preprocess=pre))


def test_python_scheme_needs_preprocessing_and_factory():
    with pytest.raises(ModelError, match="declares no input size; set models.target.preprocess.size"):
        load_model("python:tests.unit.test_models:tiny_cnn", allow_random_weights=True)
    with pytest.raises(ModelError, match=r"has no callable 'nothing'; its callables: Recorder, test_"):
        load_model("python:tests.unit.test_models:nothing", allow_random_weights=True)
    with pytest.raises(ModelError, match="cannot import module 'no_such_pkg.mod'.*is it on PYTHONPATH"):
        load_model("python:no_such_pkg.mod:f", allow_random_weights=True)


def test_a_module_that_imports_a_missing_package_is_not_blamed_on_pythonpath(tmp_path, monkeypatch):
    (tmp_path / "needs_timm.py").write_text("import timm_not_installed\n\ndef build():\n    pass\n")
    (tmp_path / "bad_name.py").write_text("from os import no_such_name\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModelError) as err:
        load_model("python:needs_timm:build", allow_random_weights=True)
    said = str(err.value)
    assert "module 'needs_timm' was found but importing it failed (it imports 'timm_not_installed'" in said
    assert "PYTHONPATH" not in said
    with pytest.raises(ModelError, match="cannot import name 'no_such_name'") as err:
        load_model("python:bad_name:build", allow_random_weights=True)
    assert "PYTHONPATH" not in str(err.value)


@pytest.mark.parametrize(
    "variant, code", [("fc6", (4096,)), ("fc7", (4096,)), ("fc8", (1000,)), ("pool5", (256, 6, 6))]
)
def test_deepsim_output_shapes(variant, code):
    g = DeePSiMGenerator(variant).eval()
    with torch.no_grad():
        out = g(torch.zeros(1, *code))
    assert out.shape == (1, 3, 256, 256)


def test_deepsim_fc6_parameters_and_key_layout(tmp_path):
    g = DeePSiMGenerator("fc6")
    n = sum(p.numel() for p in g.parameters())
    assert 55e6 < n < 57e6
    keys = list(g.state_dict())
    assert keys[:2] == ["G.defc7.weight", "G.defc7.bias"]
    for name in (
        "defc6",
        "defc5",
        "deconv5",
        "conv5_1",
        "deconv4",
        "conv4_1",
        "deconv3",
        "conv3_1",
        "deconv2",
        "deconv1",
        "deconv0",
    ):
        assert f"G.{name}.weight" in keys
    # A state dict in upconvGAN layout (written here) loads into deepsim:fc6.
    path = tmp_path / "upconv_fc6.pt"
    torch.save({k: torch.full_like(v, 0.01) for k, v in g.state_dict().items()}, path)
    loaded = load_model(ModelConfig(spec="deepsim:fc6", weights=str(path)), "generator")
    assert loaded.module.G.defc7.weight[0, 0].item() == pytest.approx(0.01)
    assert loaded.code_shape == (4096,) and not loaded.random_weights
    # the same file saved from the bare network (no "G." prefix): the wrapper's prefix is added
    torch.save({k[2:]: torch.full_like(v, 0.02) for k, v in g.state_dict().items()}, path)
    loaded = load_model(ModelConfig(spec="deepsim:fc6", weights=str(path)), "generator")
    assert loaded.module.G.defc7.weight[0, 0].item() == pytest.approx(0.02)
    with pytest.raises(ModelError, match="is a generator; it cannot be the target"):
        load_model(ModelConfig(spec="deepsim:fc6", weights=str(path)), "target")
    with pytest.raises(ModelError, match="unknown DeePSiM variant 'fc9'"):
        load_model("deepsim:fc9", "generator", allow_random_weights=True)


def test_space_conversion_deepsim_to_torchvision_roundtrip():
    """DeePSiM BGR mean-subtracted 256x256 -> canonical RGB -> AlexNet input, explicitly."""
    src, dst = deepsim_space(), torchvision_space(224)
    rgb = torch.rand(2, 3, 256, 256)
    encoded = src.encode(rgb)
    # BGR order, Caffe mean subtracted, 0-255 scale
    assert torch.allclose(encoded[:, 0], rgb[:, 2] * 255 - 104.0, atol=1e-4)
    assert torch.allclose(src.decode(encoded), rgb, atol=1e-5)
    x = dst.encode(src.decode(encoded))
    assert x.shape == (2, 3, 224, 224)
    crop = rgb[..., 16:240, 16:240]
    assert torch.allclose(dst.decode(x), crop, atol=1e-5)
    caffe = src.__class__(
        size=227, channel_order="BGR", value_scale=255.0, mean=(104.0, 117.0, 123.0), geometry="center_crop"
    )
    assert caffe.encode(rgb).shape == (2, 3, 227, 227)


def test_a_kept_picture_is_what_the_target_reads():
    """A centre-cropping space keeps the crop it reads (256 -> the 227 centre, as act_max.py saves it); a
    resizing space keeps the picture at its own size; a gray space keeps the luminance."""
    from atlas.models.spaces import ImageSpace

    rgb = torch.rand(2, 3, 256, 256)
    crop = ImageSpace(size=227, geometry="center_crop").seen(rgb)
    assert torch.equal(crop, rgb[..., 14:241, 14:241])
    assert torch.equal(ImageSpace(size=32, geometry="resize").seen(rgb), rgb)
    small = torch.rand(1, 3, 20, 20)  # smaller than the crop: the space enlarges it, the store keeps it
    assert torch.equal(ImageSpace(size=227, geometry="center_crop").seen(small), small)
    gray = ImageSpace(size=227, channel_order="gray", geometry="center_crop").seen(rgb)
    assert gray.shape == (2, 3, 227, 227) and torch.equal(gray[:, 0], gray[:, 2])


def test_shrinking_a_picture_reads_every_pixel():
    """A resize to a smaller target is antialiased: every pixel of G's 256 px picture reaches a 32 px
    target's input (plain bilinear read about 6 % of them: an ascent could hide its pattern in the rest)."""
    from atlas.models.spaces import ImageSpace

    rgb = torch.rand(1, 3, 256, 256, requires_grad=True)
    ImageSpace(size=32).encode(rgb).sum().backward()
    assert bool((rgb.grad != 0).all())
    stripes = torch.zeros(1, 3, 256, 256)
    stripes[..., ::2] = 1.0  # one-pixel stripes: seen as their mean grey, not as black or white
    assert torch.allclose(ImageSpace(size=32).fit(stripes), torch.full((1, 3, 32, 32), 0.5), atol=0.02)


def test_the_way_a_picture_reaches_the_target_is_said():
    from atlas.models.spaces import ImageSpace, conversion

    g = deepsim_space()
    assert conversion(g, ImageSpace(size=32)) == "256x256 BGR -> 32x32 RGB (resized to 32x32, antialiased)"
    crop = ImageSpace(size=227, geometry="center_crop")
    assert conversion(g, crop) == "256x256 BGR -> 227x227 RGB (centre 227x227 crop)"
    assert conversion(ImageSpace(size=32), ImageSpace(size=64)).endswith("(resized to 64x64 (enlarged))")


def test_random_weights_are_deterministic():
    a = load_model("deepsim:fc8", "generator", allow_random_weights=True)
    b = load_model("deepsim:fc8", "generator", allow_random_weights=True)
    assert torch.equal(a.module.G.defc7.weight, b.module.G.defc7.weight)
    assert all(not p.requires_grad for p in a.module.parameters())


def test_infinite_values_are_refused_in_parameters_only():
    """A buffer may hold -inf on purpose (an attention mask); a parameter may not, nor anything NaN."""
    from atlas.models.weights import apply_state_dict

    class Masked(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 2)
            self.register_buffer("mask", torch.full((2, 2), float("-inf")).triu(1))

    state = Masked().state_dict()
    apply_state_dict(Masked(), state, "masked.pt")
    for key, bad in (("lin.weight", float("inf")), ("mask", float("nan"))):
        broken = {k: v.clone() for k, v in state.items()}
        broken[key][0, 0] = bad
        with pytest.raises(ModelError, match=f"tensor '{key}' holds NaN or infinite values"):
            apply_state_dict(Masked(), broken, "masked.pt")


def test_the_config_knows_every_model_scheme_the_registry_loads():
    from atlas.config import MODEL_SCHEMES
    from atlas.models.registry import SCHEMES

    assert set(MODEL_SCHEMES) == set(SCHEMES)
