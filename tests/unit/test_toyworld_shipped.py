"""The toy worlds shipped as package data: current config hashes, verified fingerprints, clear errors.

Loads the shipped files only (no training, no gate evaluation): cheap.
"""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path

import pytest
import torch

from atlas.errors import AtlasError
from atlas.toyworld import ALL_COMPONENTS, COMPONENTS, PRESETS, ToyWorld, config_hash, load_component
from atlas.toyworld.presets import SHIPPED_PRESETS, reader_hash
from atlas.toyworld.shipped import (
    MANIFEST,
    SHIPPED_ROOT,
    add_shipped_reader,
    file_sha256,
    load_shipped_file,
    shipped_dir,
)

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]


def _reship(preset: str) -> str:
    return f"`atlas bootstrap --preset {preset} --retrain --ship` (see docs/toyworld.md, 'Shipped weights')"


@pytest.mark.parametrize("preset", SHIPPED_PRESETS)
def test_shipped_weights_match_the_current_preset(preset):
    cfg = PRESETS[preset]
    shipped = sorted(p.name for p in SHIPPED_ROOT.glob(f"{preset}-*") if p.is_dir())
    assert shipped == [shipped_dir(cfg).name], (
        f"the {preset!r} preset now hashes to {config_hash(cfg)} but atlas ships {shipped}: the preset (or "
        f"FORMAT_VERSION) changed, so the shipped weights are stale; re-ship them with {_reship(preset)}"
    )
    manifest = json.loads((shipped_dir(cfg) / MANIFEST).read_text())
    assert manifest["config_hash"] == config_hash(cfg) and manifest["preset"] == preset
    for name, entry in manifest["files"].items():
        path = shipped_dir(cfg) / name
        assert file_sha256(path) == entry["sha256"] and path.stat().st_size == entry["bytes"], name
    report = json.loads((shipped_dir(cfg) / "report.json").read_text())
    assert report["passed"] and report["config_hash"] == config_hash(cfg)
    assert report["sources"] == dict.fromkeys(COMPONENTS, "trained")  # trained from scratch by --ship
    made = manifest["made"]
    assert {"command", "machine", "seeds", "wall_seconds_total"} <= set(made)
    reader = manifest.get("reader")
    assert reader is not None and "reader.pt" in manifest["files"], (
        f"atlas ships no attribute reader for {preset!r}; add one with "
        f"`atlas bootstrap --preset {preset} --ship-reader` (docs/toyworld.md, 'Shipped weights')"
    )
    assert reader["reader_hash"] == reader_hash(cfg), (
        f"the {preset!r} reader settings (or READER_FORMAT_VERSION) changed, so the shipped reader is stale; "
        f"re-ship it with `atlas bootstrap --preset {preset} --ship-reader`"
    )
    assert reader["gates"] and all(g["passed"] for g in reader["gates"].values())
    assert {"command", "machine", "seed", "wall_seconds_total"} <= set(reader["made"])


@pytest.mark.parametrize("preset", SHIPPED_PRESETS)
def test_shipped_weights_load_and_their_fingerprints_verify(preset, tmp_path):
    world = ToyWorld(preset, tmp_path, log=lambda _m: None)  # an empty cache
    manifest = json.loads((shipped_dir(world.cfg) / MANIFEST).read_text())
    for name in ALL_COMPONENTS:
        world.module(name, train_if_missing=False)  # checks sha256, format, hash, state-dict fingerprint
        assert (
            world.fingerprint(name, train_if_missing=False) == manifest["files"][f"{name}.pt"]["fingerprint"]
        )
    assert world.sources == dict.fromkeys(ALL_COMPONENTS, "shipped")
    g = load_component("generator", preset, tmp_path, train_if_missing=False)
    assert g.extras["code_stats"].mean.shape == (world.cfg.target.fc,)
    assert not list(tmp_path.rglob("*.pt"))  # loading never copies them into the cache


def test_only_the_shipped_presets_have_shipped_weights():
    folders = {p.name.split("-")[0] for p in SHIPPED_ROOT.iterdir() if p.is_dir()}
    assert folders == set(SHIPPED_PRESETS) and set(SHIPPED_PRESETS) <= set(PRESETS)


def test_shipped_weights_are_package_data():
    """Found through importlib.resources, i.e. installed with the package (pyproject package-data)."""
    root = resources.files("atlas.toyworld") / "weights"
    for cfg in (PRESETS[p] for p in SHIPPED_PRESETS):
        folder = root / shipped_dir(cfg).name
        for name in (*[f"{c}.pt" for c in ALL_COMPONENTS], "report.json", "config.json", MANIFEST):
            assert (folder / name).is_file(), f"{folder / name} missing from the installed package"


@pytest.fixture()
def shipped_copy(tmp_path, monkeypatch):
    """A copy of the shipped weights that the loader uses instead of the package's: (folder, cfg)."""
    cfg = PRESETS["micro"]
    root = tmp_path / "weights"
    shutil.copytree(shipped_dir(cfg), root / shipped_dir(cfg).name)
    monkeypatch.setattr("atlas.toyworld.shipped.SHIPPED_ROOT", root)
    return root / shipped_dir(cfg).name, cfg


def _flip(path, at: float = 1 / 3, n: int = 64) -> None:
    blob = bytearray(path.read_bytes())
    start = int(len(blob) * at)
    for i in range(start, start + n):
        blob[i] ^= 0xFF
    path.write_bytes(bytes(blob))


def _one_line_error(cache, name: str = "dae") -> str:
    with pytest.raises(AtlasError) as err:
        load_component(name, "micro", cache, train_if_missing=True)  # would train if it fell through
    message = str(err.value)
    assert "\n" not in message
    return message


def test_corrupt_shipped_file_is_a_one_line_error_never_a_retrain(shipped_copy, tmp_path):
    folder, _cfg = shipped_copy
    _flip(folder / "dae.pt")
    message = _one_line_error(tmp_path / "cache")
    assert str(folder / "dae.pt") in message and "sha256" in message
    assert "reinstall atlas" in message and "atlas bootstrap --preset micro --retrain" in message
    assert not (tmp_path / "cache").exists()  # nothing trained, nothing written


def test_shipped_file_with_matching_manifest_but_bad_weights_is_caught(shipped_copy, tmp_path):
    """Past the manifest's sha256 (updated to the damaged bytes), the state-dict fingerprint catches it."""
    folder, _cfg = shipped_copy
    blob = torch.load(folder / "dae.pt", weights_only=True)
    key = next(iter(blob["state_dict"]))
    blob["state_dict"][key] = blob["state_dict"][key] + 1.0
    torch.save(blob, folder / "dae.pt")
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["files"]["dae.pt"]["sha256"] = file_sha256(folder / "dae.pt")
    (folder / MANIFEST).write_text(json.dumps(manifest))
    message = _one_line_error(tmp_path / "cache")
    assert str(folder / "dae.pt") in message and "fingerprint" in message


@pytest.mark.parametrize("damage", ["manifest", "missing", "other-config"])
def test_broken_shipped_folder_is_a_one_line_error(shipped_copy, tmp_path, damage):
    folder, _cfg = shipped_copy
    if damage == "manifest":
        (folder / MANIFEST).write_text("{not json")
        culprit = folder / MANIFEST
    elif damage == "missing":
        (folder / "judge.pt").unlink()
        culprit = folder / "judge.pt"
    else:
        manifest = json.loads((folder / MANIFEST).read_text())
        manifest["config_hash"] = "000000000000"
        (folder / MANIFEST).write_text(json.dumps(manifest))
        culprit = folder / MANIFEST
    message = _one_line_error(tmp_path / "cache", "judge")
    assert str(culprit) in message and "--retrain" in message


def test_the_cache_comes_before_the_shipped_weights(shipped_copy, tmp_path):
    folder, _cfg = shipped_copy
    _flip(folder / "judge.pt")  # would fail if it were read
    cache = tmp_path / "cache"
    world_dir = cache / "toyworld" / folder.name
    world_dir.mkdir(parents=True)
    shutil.copy(SHIPPED_ROOT / folder.name / "judge.pt", world_dir / "judge.pt")  # the package's intact copy
    world = ToyWorld("micro", cache, log=lambda _m: None)
    world.module("judge", train_if_missing=False)
    assert world.sources == {"judge": "cache"}


def _drop_reader(folder) -> None:
    """Make ``folder`` look shipped before the reader existed (no reader.pt, no manifest entries)."""
    (folder / "reader.pt").unlink()
    manifest = json.loads((folder / MANIFEST).read_text())
    del manifest["files"]["reader.pt"], manifest["reader"]
    (folder / MANIFEST).write_text(json.dumps(manifest))


def test_a_world_shipped_without_a_reader_keeps_working(shipped_copy, tmp_path):
    """Old caches and folders shipped before the reader: T, J, G, DAE load; the reader is simply absent
    (never trained behind the user's back), and a run's bundle gets None (null reader columns)."""
    from atlas.config import load_config
    from atlas.pipeline.models_setup import load_reader

    folder, cfg = shipped_copy
    _drop_reader(folder)
    cache = tmp_path / "cache"
    assert load_shipped_file(cfg, "reader") is None
    world = ToyWorld("micro", cache, log=lambda _m: None)
    for name in COMPONENTS:
        world.module(name, train_if_missing=False)
    with pytest.raises(AtlasError) as err:
        load_component("reader", "micro", cache, train_if_missing=False)
    assert "\n" not in str(err.value) and "atlas bootstrap --preset micro" in str(err.value)
    run_cfg = load_config(
        REPO / "configs" / "micro.yaml", [f"toyworld.cache_dir={cache}", "models.target=toyworld:target"]
    )
    logs: list[str] = []
    assert load_reader(run_cfg, log=logs.append) is None and "label_shown stays empty" in logs[0]
    assert not cache.exists() or not list(cache.rglob("*.pt"))  # nothing trained


def test_stale_reader_is_not_used(shipped_copy, tmp_path, monkeypatch):
    """A reader trained with other settings (another reader hash) is stale: an error when training is off."""
    monkeypatch.setattr("atlas.toyworld.world.reader_hash", lambda cfg: "000000000000")
    with pytest.raises(AtlasError, match="other reader settings"):
        load_component("reader", "micro", tmp_path / "cache", train_if_missing=False)


def test_add_shipped_reader_leaves_the_other_files_alone(shipped_copy, tmp_path):
    folder, cfg = shipped_copy
    reader_file = tmp_path / "reader.pt"
    shutil.copy(folder / "reader.pt", reader_file)
    _drop_reader(folder)
    before = {f.name: file_sha256(f) for f in folder.iterdir() if f.name != MANIFEST}
    cache_folder = tmp_path / "trained"
    cache_folder.mkdir()
    shutil.copy(reader_file, cache_folder / "reader.pt")
    gates = {"reader_class_acc": {"value": 0.5, "threshold": 0.4, "passed": True}}
    add_shipped_reader(cache_folder, cfg, gates, {"command": "test"}, root=folder.parent)
    assert {
        f.name: file_sha256(f) for f in folder.iterdir() if f.name not in (MANIFEST, "reader.pt")
    } == before
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["files"]["reader.pt"]["sha256"] == file_sha256(folder / "reader.pt")
    assert manifest["reader"]["reader_hash"] == reader_hash(cfg) and manifest["reader"]["gates"] == gates
    world = ToyWorld("micro", tmp_path / "cache", log=lambda _m: None)
    world.module("reader", train_if_missing=False)
    assert world.sources == {"reader": "shipped"}
