"""Sampling building blocks: objectives, update rules, pixel priors, facets, seeds, image folders."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from atlas.sampling import chain_seed, cluster_facets, kmeans, load_image_folder
from atlas.sampling.objectives import Objective, layer_values, unit_readout
from atlas.sampling.priors import gaussian_blur, jitter, total_variation
from atlas.sampling.steps import dgn_am_update, linear_lr, ppgn_h_update
from atlas.sampling.units import Unit

pytestmark = pytest.mark.unit


def test_objectives_and_readout():
    v = torch.tensor([[1.0, 3.0, 2.0], [0.0, 0.0, 5.0]])
    idx = torch.tensor([0, 2])
    assert torch.allclose(Objective("raw")(v, idx), torch.tensor([1.0, 5.0]))
    assert torch.allclose(Objective("log_softmax")(v, idx), torch.log_softmax(v, 1)[[0, 1], [0, 2]])
    r = unit_readout(v, idx)
    assert r["rank"].tolist() == [2, 0] and r["top_competitor"].tolist() == [1, 0]
    assert Objective("softmax").describe(Unit("fc8", 3, "output")) == "softmax[fc8:3]"


def test_layer_values_conv_positions():
    acts = torch.arange(2 * 3 * 4 * 4, dtype=torch.float).view(2, 3, 4, 4)
    units = [Unit("c", 0, "conv", "center", (1, 2)), Unit("c", 1, "conv", "mean")]
    v = layer_values(acts, units)
    assert torch.equal(v[0], acts[0, :, 1, 2]) and torch.allclose(v[1], acts[1].mean((1, 2)))


def test_dgn_am_update_normalizes_clips_decays():
    h = torch.zeros(2, 4)
    g = torch.tensor([[1.0, 1.0, 1.0, 1.0], [100.0, -100.0, 100.0, 100.0]])
    out = dgn_am_update(h, g, lr=1.0, l2_decay=0.5, lower=torch.zeros(4), upper=torch.full((4,), 0.8))
    assert torch.allclose(out, torch.tensor([[0.4] * 4, [0.4, 0.0, 0.4, 0.4]]))
    assert linear_lr(0, 11, 1.0, 0.0) == 1.0 and abs(linear_lr(10, 11, 1.0, 0.0)) < 1e-12


def test_ppgn_h_update_terms():
    """d = eps1 R(h) + eps2 grad + eps3 noise (Eq. 11); the step divides d by mean|d| (here 1.25, not 1)."""
    h = torch.ones(1, 4)
    res, grad = torch.full((1, 4), -0.5), torch.tensor([[4.0, 0.0, 0.0, 0.0]])
    noise = torch.tensor([[0.0, 2.0, 0.0, 0.0]])
    kw = dict(eps1=1.0, eps2=1.0, eps3=0.25, lr=0.5, lower=None, upper=None)
    new, d = ppgn_h_update(h, res, grad, noise, **kw)
    torch.testing.assert_close(d, torch.tensor([[3.5, 0.0, -0.5, -0.5]]))
    torch.testing.assert_close(new, h + 0.5 * d / 1.125)  # mean|d| = 4.5 / 4
    raw, _ = ppgn_h_update(h, res, grad, noise, normalize=False, **kw)
    torch.testing.assert_close(raw, h + 0.5 * d)


def test_ppgn_h_update_eq11_is_unnormalized():
    """Eq. 11 as printed: h + lr d (noise keeps its size); normalized: h + lr d / mean|d| (released code)."""
    h = torch.zeros(2, 4)
    grad = torch.tensor([[4.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.4]])
    noise = torch.tensor([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
    kw = dict(eps1=0.0, eps2=1.0, eps3=0.5, lr=0.1, lower=None, upper=None)
    raw, d = ppgn_h_update(h, None, grad, noise, normalize=False, **kw)
    torch.testing.assert_close(d, grad + 0.5 * noise)
    torch.testing.assert_close(raw, 0.1 * (grad + 0.5 * noise))
    norm, _ = ppgn_h_update(h, None, grad, noise, normalize=True, **kw)
    torch.testing.assert_close(norm.abs().mean(1), torch.full((2,), 0.1))  # every chain moves lr per element
    assert not torch.allclose(raw, norm)


def test_ppgn_h_relative_noise_keeps_the_step_whatever_the_units_scale():
    """noise: relative scales the noise by each chain's mean |eps2 grad|: a unit 1000x smaller gets the same
    normalized step (absolute noise would swamp its gradient)."""
    torch.manual_seed(0)
    h, grad, noise = torch.zeros(2, 16), torch.randn(2, 16), torch.randn(2, 16)
    kw = dict(eps1=0.0, eps2=1.0, eps3=0.5, lr=0.1, lower=None, upper=None)
    big, d = ppgn_h_update(h, None, grad, noise, relative_noise=True, **kw)
    small, _ = ppgn_h_update(h, None, grad / 1000, noise, relative_noise=True, **kw)
    torch.testing.assert_close(big, small)
    scale = grad.abs().mean(1, keepdim=True)  # (2, 1)
    torch.testing.assert_close(d, grad + 0.5 * scale * noise)
    swamped, _ = ppgn_h_update(h, None, grad / 1000, noise, **kw)  # absolute: mostly noise
    assert not torch.allclose(swamped, big, atol=1e-3)


def test_pixel_priors():
    x = torch.rand(3, 3, 8, 8)
    assert gaussian_blur(x, 1.0).shape == x.shape
    assert total_variation(gaussian_blur(x, 1.0)).mean() < total_variation(x).mean()
    s = jitter(x, torch.tensor([[1, 0], [0, 2], [0, 0]]))
    assert torch.equal(s[0], torch.roll(x[0], 1, dims=1)) and torch.equal(s[1], torch.roll(x[1], 2, dims=2))
    assert torch.equal(s[2], x[2])


def _three_directions(noise=0.05, per=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.eye(3, 16) * 5
    return torch.cat([base[i] + noise * torch.randn(per, 16, generator=g) for i in range(3)])


def test_cluster_facets_criterion():
    x = _three_directions()
    labels = cluster_facets(x, distance=0.35, max_facets=8)
    assert labels == [0] * 4 + [1] * 4 + [2] * 4
    assert cluster_facets(x, distance=1.5, max_facets=8) == [0] * 12  # lenient: one facet
    assert len(set(cluster_facets(x, distance=0.35, max_facets=2))) == 2  # capped
    valid = torch.ones(12, dtype=torch.bool)
    valid[5] = False
    assert cluster_facets(x, 0.35, 8, valid)[5] == -1


def test_the_default_facet_layer_is_never_a_layer_that_passes_its_input_through():
    """CaffeNet's fc7 block is fc7, relu7, drop7: its penultimate layer is relu7, not the Dropout after it."""
    from torch import nn

    from atlas.models.caffenet import caffenet as caffenet_net
    from atlas.sampling.facets import default_facet_layer, pass_through_layers

    head = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Dropout(0.5), nn.Identity(), nn.Linear(3, 2))
    layers = [(str(i), (3,)) for i in range(4)] + [("4", (2,))]
    assert pass_through_layers(head) == {"2", "3"}
    assert default_facet_layer(layers, "4") == "3"  # without the skip: the Identity
    assert default_facet_layer(layers, "4", pass_through_layers(head)) == "1"
    assert default_facet_layer(layers[:3], "2", {"2"}) == "1"  # an output layer is itself, never skipped
    caffenet = pass_through_layers(caffenet_net(num_classes=10))
    assert {"drop6", "drop7"} <= caffenet and "relu7" not in caffenet


def test_kmeans_finds_the_clusters_deterministically():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(30, 8, generator=g) * 0.1 + 3
    b = torch.randn(10, 8, generator=g) * 0.1 - 3
    centers, labels = kmeans(torch.cat([a, b]), k=2, seed=0)
    first = int(labels[0])
    assert (labels[:30] == first).all() and (labels[30:] == 1 - first).all()
    assert torch.allclose(centers[first], a.mean(0), atol=1e-5)
    assert torch.allclose(centers[1 - first], b.mean(0), atol=1e-5)
    c1, l1 = kmeans(torch.cat([a, b]), 2, seed=7)
    c2, l2 = kmeans(torch.cat([a, b]), 2, seed=7)
    assert torch.equal(c1, c2) and torch.equal(l1, l2)


def test_chain_seed_stable():
    # Stored seeds re-run chains on resume and on other machines: the value is fixed across processes,
    # Python's hash seed and versions (sha256 of the key, not hash()).
    assert chain_seed(0, "fc8", 1, 2) == 2981651705209329037
    assert len({chain_seed(0, "fc8", u, c) for u in range(5) for c in range(5)}) == 25
    assert chain_seed(0, "fc8", 1, 2) != chain_seed(1, "fc8", 1, 2)


def test_load_image_folder(tmp_path):
    from PIL import Image

    Image.fromarray(np.full((20, 30, 3), 200, np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "sub").mkdir()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "sub" / "b.jpg")
    (tmp_path / "notes.txt").write_text("x")
    real = load_image_folder(tmp_path, size=8)
    assert real.images.shape == (2, 3, 8, 8) and abs(float(real.images[0].mean()) - 200 / 255) < 1e-3
    assert real.names == ["a.png", "sub/b.jpg"]  # what the atlas stores and shows: the path inside the folder


def test_a_real_limit_samples_the_folder_evenly_and_keeps_each_images_place(tmp_path):
    """A folder sorted by class subfolders: its first files are one class, an evenly spaced sample holds
    every class; each image keeps its position among all the files (what ``images.real_index`` stores)."""
    from PIL import Image

    from atlas.sampling.real import evenly_spaced

    assert evenly_spaced(10, 4) == [0, 2, 5, 7] and evenly_spaced(3, 5) == [0, 1, 2]
    assert evenly_spaced(4, None) == [0, 1, 2, 3] and evenly_spaced(2000, 200)[:3] == [0, 10, 20]
    for cls in ("cats", "dogs", "owls"):
        (tmp_path / cls).mkdir()
        for i in range(4):
            Image.new("RGB", (8, 8), (i, 0, 0)).save(tmp_path / cls / f"{i}.png")
    real = load_image_folder(tmp_path, size=8, limit=3)
    assert real.names == ["cats/0.png", "dogs/0.png", "owls/0.png"] and real.images.shape[0] == 3
    assert real.source_index == [0, 4, 8]
    assert real.concepts is not None and real.concepts.members.sum(0).tolist() == [1, 1, 1]
    assert load_image_folder(tmp_path, size=8).source_index is None


def test_the_toy_worlds_real_limit_samples_its_test_split_with_its_ground_truth():
    from atlas.toyworld import real_images

    whole, part = real_images("micro", split="test"), real_images("micro", split="test", limit=50)
    kept = part.source_index
    assert len(kept) == 50 and kept == sorted(set(kept)) and whole.source_index is None
    assert torch.equal(part.images, whole.images[kept]) and torch.equal(part.labels, whole.labels[kept])
    assert torch.equal(part.concepts.members, whole.concepts.members[kept])
    assert torch.equal(part.concepts.masks, whole.concepts.masks[kept])
    assert set(part.labels.tolist()) == set(whole.labels.tolist())  # every class in the sample


def test_deep_grayscale_images_keep_their_brightness(tmp_path):
    """A 16-bit PNG (PIL mode I;16) or a float TIFF (F) is scaled from its depth: PIL's own RGB conversion
    clips at 255, and a mid-grey 16-bit picture came out white."""
    from PIL import Image

    Image.fromarray(np.full((8, 8), 32768, np.uint16)).save(tmp_path / "a16.png")  # mid grey in 16 bits
    Image.fromarray(np.full((8, 8), 0.25, np.float32)).save(tmp_path / "b.tiff")  # a quarter, as a float
    assert Image.open(tmp_path / "a16.png").mode.startswith("I")
    means = [round(float(m), 2) for m in load_image_folder(tmp_path, size=8).images.mean(dim=(1, 2, 3))]
    assert means == [0.5, 0.25]


@pytest.mark.parametrize("native", [True, False])
def test_compute_auto_picks_bf16_only_where_the_cpu_runs_it_faster(monkeypatch, native):
    from atlas.config import ComputeConfig
    from atlas.sampling import compute

    monkeypatch.setattr(compute, "cpu_bf16_is_faster", lambda: native)
    cpu = torch.device("cpu")
    auto = compute.ComputeSetup.resolve(ComputeConfig(), cpu)
    assert auto.dtype == (torch.bfloat16 if native else None)
    assert auto.channels_last  # channels_last pays on CPU in float32 too (docs/sampling.md, "CPU precision")
    off = compute.ComputeSetup.resolve(ComputeConfig(autocast="none", channels_last=False), cpu)
    assert off.dtype is None and not off.channels_last
    forced = compute.ComputeSetup.resolve(ComputeConfig(autocast="bf16", channels_last=False), cpu)
    assert forced.dtype == torch.bfloat16 and not forced.channels_last


def test_compute_on_cuda_runs_contiguous_with_cudnns_autotuner_scoped_to_the_work():
    """auto on CUDA: bf16, contiguous tensors and cuDNN's autotuner (together 1.2-1.5x on an H200, README
    "GPU"); the autotuner is on only inside ``kernels()`` and the process's setting comes back. Resolving
    for a CUDA device needs no GPU (nothing is allocated)."""
    from atlas.config import ComputeConfig
    from atlas.sampling import compute

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    auto = compute.ComputeSetup.resolve(ComputeConfig(), cuda)
    assert auto.dtype == torch.bfloat16 and not auto.channels_last and auto.cudnn_benchmark
    forced = compute.ComputeSetup.resolve(ComputeConfig(channels_last=True, cudnn_benchmark=False), cuda)
    assert forced.channels_last and not forced.cudnn_benchmark
    assert not compute.ComputeSetup.resolve(ComputeConfig(), cpu).cudnn_benchmark  # CPU: no cuDNN
    before = torch.backends.cudnn.benchmark
    try:
        torch.backends.cudnn.benchmark = False
        with auto.kernels():
            assert torch.backends.cudnn.benchmark
            with forced.kernels():  # off in the config: left as it is
                assert torch.backends.cudnn.benchmark
        assert not torch.backends.cudnn.benchmark
    finally:
        torch.backends.cudnn.benchmark = before


def test_channels_last_takes_auto_and_booleans_only():
    from atlas.config import ComputeConfig
    from atlas.errors import ConfigError

    assert (
        ComputeConfig().channels_last == "auto" and ComputeConfig(channels_last=False).channels_last is False
    )
    for bad in ("sometimes", 1, 0.0):  # a Literal's True matches 1: refused as the boolean keys refuse it
        with pytest.raises(
            ConfigError, match=rf"^channels_last: invalid value {bad!r}; valid: 'auto', true, false$"
        ):
            ComputeConfig(channels_last=bad)


def test_auto_precision_is_measured_once_per_run_and_cpu_kind_and_kept_on_resume(tmp_path, monkeypatch):
    """The measured answer can flip on busy cores (a resume on the same machine once wrote 2 of 9 shards
    in bf16): the run records it per CPU kind, its workers take it, and a resume keeps it."""
    from atlas.config import ComputeConfig
    from atlas.pipeline import driver
    from atlas.pipeline.worker import run_compute
    from atlas.sampling import compute
    from atlas.store import RunStore

    store = RunStore(tmp_path / "run")
    monkeypatch.setattr(compute, "cpu_bf16_is_faster", lambda: False)
    first = driver._cpu_autocast(store)
    assert first == {compute.cpu_kind(): "none"}
    store.init_run({"config": {}, "config_hash": "abc", "cpu_autocast": first})
    monkeypatch.setattr(compute, "cpu_bf16_is_faster", lambda: True)  # the cores are quieter now
    assert driver._cpu_autocast(store) == first  # a resume keeps the run's precision
    cpu, auto = torch.device("cpu"), ComputeConfig()
    assert run_compute(auto, cpu, {"cpu_autocast": first}).autocast == "none"
    other = {"cpu_autocast": {"another CPU | AVX2 | no native bf16 | torch 2": "none"}}
    assert run_compute(auto, cpu, other).autocast == "auto"  # a kind the run has not seen measures itself
    assert run_compute(ComputeConfig(autocast="bf16"), cpu, {"cpu_autocast": first}).autocast == "bf16"
    assert run_compute(auto, torch.device("cuda"), {"cpu_autocast": first}).autocast == "auto"


def test_auto_precision_is_kept_per_machine_so_runs_minutes_apart_compute_alike(tmp_path, monkeypatch):
    """Measured per run, two runs of one model minutes apart computed in bf16 and in float32: the first
    measurement on a machine is kept in the cache's record, and every later run takes it."""
    import json

    from atlas.pipeline import driver
    from atlas.sampling import compute
    from atlas.store import RunStore

    record = tmp_path / "cache" / "cpu-precision.json"
    monkeypatch.setattr(compute, "cpu_bf16_is_faster", lambda: False)
    assert compute.machine_cpu_autocast(record) == "none"
    assert json.loads(record.read_text()) == {compute.cpu_kind(): "none"}
    monkeypatch.setattr(compute, "cpu_bf16_is_faster", lambda: True)  # a noisy second measurement
    assert compute.machine_cpu_autocast(record) == "none"  # not measured again
    assert driver._cpu_autocast(RunStore(tmp_path / "next-run"), record) == {compute.cpu_kind(): "none"}
    record.write_text(json.dumps({"another CPU | AVX2 | no native bf16 | torch 2": "none"}))
    assert compute.machine_cpu_autocast(record) == "bf16"  # this kind is new: measured and added
    assert json.loads(record.read_text()) == {
        "another CPU | AVX2 | no native bf16 | torch 2": "none",
        compute.cpu_kind(): "bf16",
    }
    record.write_text("{not json")
    assert compute.machine_cpu_autocast(record) == "bf16"  # a damaged record: measured again, rewritten
    assert json.loads(record.read_text()) == {compute.cpu_kind(): "bf16"}
    assert compute.machine_cpu_autocast(None) == "bf16"  # no record: measured now


def test_capped_instruction_set_means_no_native_bf16(monkeypatch):
    """ATEN_CPU_CAPABILITY=avx2 makes torch run as on a CPU without AVX-512: auto must not pick bf16 there."""
    from atlas.sampling import compute

    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert not compute.cpu_has_native_bf16()


def test_compute_fp16_on_cpu_runs_float32():
    """fp16 autocast is for CUDA (loss-scaling caveats); a CPU worker of such a config runs float32."""
    from atlas.config import ComputeConfig
    from atlas.sampling import compute

    setup = compute.ComputeSetup.resolve(ComputeConfig(autocast="fp16"), torch.device("cpu"))
    assert setup.dtype is None and setup.channels_last


def test_an_image_linked_to_nothing_is_an_error_naming_it(tmp_path):
    from PIL import Image

    from atlas.errors import AtlasError
    from atlas.sampling.real import load_image_folder

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "b.png").symlink_to(tmp_path / "gone.png")
    with pytest.raises(AtlasError, match=r"image '.*b\.png' is a link to nothing .*; fix or remove it"):
        load_image_folder(tmp_path, 8)


def test_the_engine_picks_the_facet_layer_preflight_names_when_a_batchnorm_before_the_output_is_folded():
    """A folded BatchNorm becomes an nn.Identity in the engine's copy: still the network's own layer there."""
    from collections import OrderedDict

    from torch import nn

    from atlas.config import ComputeConfig, FacetConfig, SamplerConfig
    from atlas.models.loaded import LoadedModel, freeze
    from atlas.models.spaces import ImageSpace
    from atlas.sampling import Engine
    from atlas.sampling.facets import default_facet_layer, pass_through_layers

    norm = nn.BatchNorm1d(6).eval()
    net = nn.Sequential(OrderedDict([("flat", nn.Flatten()), ("fc1", nn.Linear(48, 6)), ("bn1", norm),
                                     ("drop", nn.Dropout(0.5)), ("out", nn.Linear(6, 3))]))  # fmt: skip
    model = LoadedModel(freeze(net), "target", "tiny:bn-head", space=ImageSpace(size=4), output_layer="out")
    shapes = [("flat", (48,)), ("fc1", (6,)), ("bn1", (6,)), ("drop", (6,)), ("out", (3,))]
    assert default_facet_layer(shapes, "out", pass_through_layers(net)) == "bn1"  # preflight's answer
    engine = Engine(
        model, None, None, SamplerConfig(method="pixel", steps=1, chains_per_unit=1, start="random"),
        FacetConfig(real_images=None), ComputeConfig(batch_size=2, autocast="none"), torch.device("cpu"),
    )  # fmt: skip
    assert engine.nets.folding.folded_norms == {"bn1"} and engine.facet_layer == "bn1"


def test_a_last_picture_that_reads_higher_becomes_the_best_at_the_step_it_was_drawn():
    """read_kept_as_stored: both pictures read again in float32; the higher becomes the best. A chain that
    stopped (stop_at) holds its stop step's picture to the end: its step is the stop step, not the last."""
    from atlas.config import ComputeConfig
    from atlas.sampling.chain import TargetReadout, read_kept_as_stored
    from atlas.sampling.compute import ComputeSetup
    from atlas.sampling.stats import ChainTracker

    tracker = ChainTracker(3, 10, torch.device("cpu"))
    dark, bright = torch.full((3, 3, 4, 4), 0.2), torch.full((3, 3, 4, 4), 0.6)
    readout = {k: torch.zeros(3) for k in ("activation", "log_prob", "rank", "top_competitor")}
    tracker.observe(0, dark, readout, torch.tensor([1.0, 1.0, 1.0]))  # the chains' own readings: best at 0
    tracker.stop(torch.tensor([False, True, False]), 4)  # chain 1 stopped at step 4, its picture frozen
    tracker.observe(30, torch.stack([bright[0], bright[1], dark[2]]), readout, torch.zeros(3))
    brightness = lambda x: {"out": x.mean(dim=(2, 3))[:, :1].repeat(1, 2)}  # noqa: E731  (B, 2), twice
    probe = TargetReadout(encode=lambda x: x, probe=brightness, final_probe=brightness, layer="out")
    setup = ComputeSetup.resolve(ComputeConfig(), torch.device("cpu"))
    units = [Unit("out", 0, "output")] * 3
    read_kept_as_stored(tracker, probe, setup, units, Objective("raw"), torch.zeros(3, dtype=torch.long))
    assert tracker.best_step.tolist() == [30, 4, 0]  # brighter last: the best; chain 1 at its stop step
    assert torch.equal(tracker.best_img[0], bright[0]) and torch.equal(tracker.best_img[2], dark[2])
    assert tracker.best_read["activation"].tolist() == pytest.approx([0.6, 0.6, 0.2], abs=1 / 255)
