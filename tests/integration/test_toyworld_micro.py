"""Micro toy world end to end: trains from scratch and passes its gates (the one test that trains it), loads
from the cache before the shipped weights, refuses corrupt files, never trains when told not to.

Every test but the first uses the shipped micro weights (``micro_cache``, or a cache filled by copying them).
How long training takes is a benchmark, not a test: ``atlas bench toyworld --preset micro``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch

from atlas.errors import AtlasError
from atlas.models.probes import LayerProbe
from atlas.toyworld import ALL_COMPONENTS, ToyWorld, bootstrap, get_preset, load_component
from atlas.toyworld.presets import PRESETS
from atlas.toyworld.shipped import MANIFEST, shipped_dir

pytestmark = pytest.mark.integration

MICRO = get_preset("micro")
READER_GATES = {f"reader_{a}_acc" for a in ("class", "facet", "colour", "position", "size", "distractor")}
READER_GATES.add("reader_cover_iou")  # the coverage map (place-bound concepts)
GATES = {"t_acc", "j_fine_acc", "t_recon_acc", "j_recon_acc", "j_facet_recon_acc", "dae_error_ratio"}
GATES |= READER_GATES


@pytest.fixture()
def no_shipped(monkeypatch, tmp_path_factory):
    """Pretend atlas ships no toy-world weights (an empty weights folder)."""
    monkeypatch.setattr("atlas.toyworld.shipped.SHIPPED_ROOT", tmp_path_factory.mktemp("no-weights"))


@pytest.fixture()
def filled_cache(tmp_path) -> tuple[str, Path]:
    """A cache holding the micro world's component files (copies of the shipped ones): (cache, world dir)."""
    world = tmp_path / "cache" / "toyworld" / shipped_dir(MICRO).name
    world.mkdir(parents=True)
    for f in shipped_dir(MICRO).iterdir():
        if f.name != MANIFEST:
            shutil.copy(f, world / f.name)
    return str(tmp_path / "cache"), world


def test_micro_trains_from_scratch_and_passes_its_gates(tmp_path, monkeypatch):
    """The real training code, from nothing, into an empty cache: all five components train, gates pass.
    One training thread (ATLAS_TRAIN_THREADS=1): on cores other work keeps busy two threads train several
    times slower (measured under a two-core hog: 369 s with two threads)."""
    monkeypatch.setenv("ATLAS_TRAIN_THREADS", "1")
    logs: list[str] = []
    report = bootstrap("micro", cache_dir=str(tmp_path), retrain=True, log=logs.append)
    assert report["passed"], report["gates"]
    assert report["sources"] == dict.fromkeys(ALL_COMPONENTS, "trained")
    assert sum("retraining" in line for line in logs) == len(ALL_COMPONENTS), logs
    assert set(report["gates"]) == GATES
    for name, gate in report["gates"].items():
        assert set(gate) >= {"value", "threshold", "passes", "passed"}
        below = gate["passes"] == "<"  # the direction a pipeline compares in (a trial read every gate as >=)
        assert gate["passed"] == (
            gate["value"] < gate["threshold"] if below else gate["value"] >= gate["threshold"]
        )
        assert below == (name == "dae_error_ratio")
    assert set(report["seconds"]) >= {"target", "judge", "generator", "dae", "reader"}
    world = tmp_path / "toyworld" / shipped_dir(MICRO).name
    assert sorted(f.stem for f in world.glob("*.pt")) == sorted(ALL_COMPONENTS)
    assert json.loads((world / "report.json").read_text())["gates"] == report["gates"]
    json.dumps(report)  # JSON-serializable as is


def test_old_cache_without_a_reader_bootstraps_only_the_reader(filled_cache, no_shipped, monkeypatch):
    """A cache made before the reader (and no shipped weights): T, J, G and the DAE stay as they are, the
    reader alone trains and its gates are checked with the others. One epoch instead of the preset's 20 (a
    reader that passes its gates is the from-scratch test's): this test is about which components train."""
    short = dataclasses.replace(MICRO, reader=dataclasses.replace(MICRO.reader, epochs=1))
    monkeypatch.setitem(PRESETS, "micro", short)
    cache, world = filled_cache
    (world / "reader.pt").unlink()
    before = {f: f.stat().st_mtime_ns for f in world.glob("*.pt")}
    with pytest.raises(AtlasError, match="reader is not trained yet"):
        load_component("reader", "micro", cache, train_if_missing=False)  # a run never trains it
    report = bootstrap("micro", cache_dir=cache, log=lambda _m: None)
    assert report["sources"] == {**dict.fromkeys(ALL_COMPONENTS[:4], "cache"), "reader": "trained"}
    assert set(report["gates"]) == GATES  # the reader's gates evaluated with the others
    others = {name: g for name, g in report["gates"].items() if name not in READER_GATES}
    assert all(g["passed"] for g in others.values()), others
    assert {f: f.stat().st_mtime_ns for f in before} == before and (world / "reader.pt").is_file()


def test_cache_hit_does_not_train_or_touch_files(filled_cache):
    cache, world = filled_cache
    files = sorted(world.glob("*.pt"))
    before = {f: f.stat().st_mtime_ns for f in files}
    logs: list[str] = []
    report = bootstrap("micro", cache_dir=cache, log=logs.append)
    assert not any("train" in line for line in logs), logs
    assert report["sources"] == dict.fromkeys(ALL_COMPONENTS, "cache")
    assert {f: f.stat().st_mtime_ns for f in files} == before


def test_empty_cache_uses_the_shipped_weights(micro_cache):
    logs: list[str] = []
    report = bootstrap("micro", cache_dir=micro_cache, log=logs.append)
    assert report["passed"], report["gates"]
    assert report["sources"] == dict.fromkeys(ALL_COMPONENTS, "shipped")
    assert not any("train" in line for line in logs), logs
    assert not list(Path(micro_cache).rglob("*.pt"))  # the cache is not filled from the shipped weights
    shipped = json.loads((shipped_dir(MICRO) / "report.json").read_text())
    shipped_gates = (
        shipped["gates"] | json.loads((shipped_dir(MICRO) / MANIFEST).read_text())["reader"]["gates"]
    )
    assert set(report["gates"]) == GATES
    for name, gate in report["gates"].items():  # re-evaluated here: the same weights, the same test split
        assert gate["value"] == pytest.approx(shipped_gates[name]["value"], abs=0.02), name


def test_shipped_micro_reader_passes_its_gate(micro_cache):
    """The attribute reader's held-out accuracy per attribute (its gate), on the shipped micro weights."""
    from atlas.toyworld.gates import evaluate_reader

    world = ToyWorld("micro", micro_cache, log=lambda _m: None)
    gates, details = evaluate_reader(world)
    assert set(gates) == READER_GATES and all(g["passed"] for g in gates.values()), gates
    assert world.sources == {"reader": "shipped"}
    judge = load_component("judge", "micro", micro_cache, train_if_missing=False)
    assert set(details["reader_class_acc_per_class"]) == set(judge.extras["class_names"])
    r = load_component("reader", "micro", micro_cache, train_if_missing=False)
    assert r.role == "reader" and r.space.size == MICRO.data.size and not r.module.training
    size = MICRO.data.size
    assert r.module(r.space.encode(torch.rand(2, 3, size, size))).shape == (2, 31 + size * size)  # + coverage


def test_components_honour_the_contract(micro_cache):
    cache = micro_cache
    size, fc = MICRO.data.size, MICRO.target.fc
    t = load_component("target", "micro", cache, train_if_missing=False)
    assert t.role == "target" and t.output_layer == "fc8" and t.space.size == size
    assert not t.random_weights and t.weights.startswith("toyworld:micro:") and t.fingerprint
    names = dict(t.module.named_modules())
    assert {"conv1", "conv2", "conv3", "conv4", "fc6", "relu6", "fc7", "relu7", "fc8"} <= set(names)
    assert not any(p.requires_grad for p in t.module.parameters()) and not t.module.training
    real = torch.rand(5, 3, size, size)
    x = t.space.encode(real)
    code = LayerProbe(t.module, ["relu6"])(x)["relu6"]
    assert code.shape == (5, fc) and code.min() >= 0
    assert t.module(x).shape == (5, 10)

    g = load_component("generator", "micro", cache, train_if_missing=False)
    assert g.role == "generator" and g.code_shape == (fc,) and g.extras["code_layer"] == "relu6"
    stats = g.extras["code_stats"]
    assert stats.mean.shape == (fc,) and (stats.upper >= stats.mean).all()
    img = g.space.decode(g.module(code))
    assert img.shape == (5, 3, size, size) and img.min() >= 0 and img.max() <= 1

    r = load_component("dae", "micro", cache, train_if_missing=False)
    assert r.role == "dae" and r.code_shape == (fc,) and r.module(code).shape == (5, fc)

    j = load_component("judge", "micro", cache, train_if_missing=False)
    f2c = j.extras["fine_to_class"]
    assert j.role == "judge" and len(f2c) == 12 and max(f2c) == 9
    assert j.module(j.space.encode(real)).shape == (5, 12)
    assert j.fingerprint != t.fingerprint


def test_missing_component_without_training_is_a_clear_error(tmp_path, no_shipped):
    with pytest.raises(AtlasError, match="not trained yet.*atlas bootstrap"):
        load_component("target", "micro", str(tmp_path), train_if_missing=False)


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupt_cache_file_is_a_clear_error_never_garbage(filled_cache, damage):
    cache, world = filled_cache
    victim = world / "dae.pt"
    blob = bytearray(victim.read_bytes())
    if damage == "truncate":
        blob = blob[: len(blob) // 2]
    else:  # flip bytes inside the tensor data (the bulk of the file)
        for i in range(len(blob) // 3, len(blob) // 3 + 64):
            blob[i] ^= 0xFF
    victim.write_bytes(bytes(blob))
    with pytest.raises(AtlasError, match=r"dae\.pt.*corrupt.*--retrain") as err:
        load_component("dae", "micro", cache, train_if_missing=True)
    assert "\n" not in str(err.value) and str(victim) in str(err.value)
    # the cache comes first, so a corrupt cache file is never bypassed; deleted, the shipped one is used
    victim.unlink()
    world_obj = ToyWorld("micro", cache, log=lambda _m: None)
    world_obj.module("dae", train_if_missing=False)
    assert world_obj.sources == {"target": "cache", "dae": "shipped"}


def test_bootstrap_command_writes_json_and_exit_code(micro_cache, tmp_path, capsys):
    from atlas.commands import bootstrap as cmd

    parser = argparse.ArgumentParser()
    cmd.add_arguments(parser)
    out = tmp_path / "gates.json"
    args = parser.parse_args(["--preset", "micro", "--cache-dir", micro_cache, "--json", str(out)])
    assert cmd.run(args) == 0
    printed = capsys.readouterr().out
    assert "t_recon_acc" in printed and "target shipped" in printed
    report = json.loads(out.read_text())
    assert report["passed"] is True and "seconds" in report
    assert report["sources"] == dict.fromkeys(ALL_COMPONENTS, "shipped")
    assert "reader_class_acc" in printed and "reader shipped" in printed

    cfg = tmp_path / "tw.yaml"
    cfg.write_text(f"toyworld:\n  preset: micro\n  cache_dir: {micro_cache}\n")
    assert cmd.run(parser.parse_args(["--config", str(cfg)])) == 0
    cfg.write_text("toyworld:\n  preset: huge\n")
    with pytest.raises(AtlasError, match="preset"):
        cmd.run(parser.parse_args(["--config", str(cfg)]))


def test_toyworld_show_writes_pngs(micro_cache, tmp_path):
    from PIL import Image

    from atlas.commands import toyworld as cmd

    parser = argparse.ArgumentParser()
    cmd.add_arguments(parser)
    args = parser.parse_args(
        ["show", "--preset", "micro", "--cache-dir", micro_cache, "--out", str(tmp_path)]
    )
    assert cmd.run(args) == 0
    for name in ("samples.png", "reconstructions.png"):
        with Image.open(tmp_path / name) as im:
            assert im.width > 100 and im.height > 100


def test_no_training_when_told_not_to_even_for_dependencies(filled_cache, no_shipped):
    cache, world = filled_cache
    (world / "target.pt").unlink()  # the generator's target is gone: must not be retrained silently
    with pytest.raises(AtlasError, match="target is not trained yet"):
        load_component("generator", "micro", cache, train_if_missing=False)
    assert not (world / "target.pt").exists()


def test_generator_trained_on_another_target_is_stale(filled_cache):
    """A cached target that differs from the one the (shipped) generator was trained on makes G stale."""
    cache, world = filled_cache
    (world / "generator.pt").unlink()  # G now comes from the shipped weights
    blob = torch.load(world / "target.pt", weights_only=True)
    blob["state_dict"]["fc8.bias"] = blob["state_dict"]["fc8.bias"] + 1.0  # another T...
    tw = ToyWorld("micro", cache, log=lambda _m: None)
    net = tw._build("target")
    net.load_state_dict(blob["state_dict"])
    from atlas.toyworld.loops import state_fingerprint

    blob["fingerprint"] = state_fingerprint(net)  # ...with a valid fingerprint of its own
    torch.save(blob, world / "target.pt")
    with pytest.raises(AtlasError, match="generator .*trained on another target"):
        load_component("generator", "micro", cache, train_if_missing=False)
