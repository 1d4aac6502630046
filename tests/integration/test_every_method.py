"""Issue 17's acceptance: every sampler method runs through ``atlas run`` (the Ray pipeline, workers,
Parquet) on the demo world and on the AlexNet + DeePSiM config with random weights, an output and a conv
unit each, with nothing but ``sampler.method`` changed (accentuation also needs real images to start from)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from atlas.config import load_config
from atlas.pipeline import run_atlas
from atlas.store import open_run

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
METHODS = ("dgn_am", "ppgn_h", "pixel", "fourier", "maco", "accentuation", "ga", "cmaes")
TINY = ["sampler.chains_per_unit=2", "sampler.steps=2", "sampler.record_every=1", "compute.batch_size=4"]
TINY += ["ray.num_workers=1", "ray.cpus_per_worker=2"]


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    """A few RGB files: the real images a real-network config's accentuation starts from."""
    folder = tmp_path_factory.mktemp("real-images")
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8)).save(folder / f"{i}.png")
    return folder


def _ran_every_unit(run_dir: str, method: str, units: int) -> None:
    conn = open_run(run_dir)
    assert conn.execute("SELECT count(*) FROM chains").fetchone()[0] == 2 * units
    assert conn.execute("SELECT count(*) FROM chains WHERE diverged").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM images WHERE kind = 'last'").fetchone()[0] == 2 * units
    methods = {m for (m,) in conn.execute("SELECT DISTINCT method FROM chains").fetchall()}
    assert len(methods) == 1 and methods.pop().startswith(method), methods


@pytest.mark.parametrize("method", METHODS)
def test_method_runs_on_the_demo_world(method, tmp_path, micro_cache, ray_session):
    cfg = load_config(
        REPO / "configs" / "demo.yaml",
        [
            f"out_dir={tmp_path}",
            f"toyworld.cache_dir={micro_cache}",  # empty: the default world's shipped weights
            "layers=[{name: fc8, units: [0]}, {name: conv4, units: [1]}]",
            f"sampler.method={method}",
            "facets.real_limit=200",  # every 10th of the 2,000 test images: the first pass per layer 10x less
            *TINY,
        ],
    )
    summary = run_atlas(cfg, progress=False)
    assert summary["units"] == 2
    _ran_every_unit(summary["run_dir"], method, 2)
    query = "SELECT DISTINCT real_index FROM images WHERE kind = 'real'"
    indices = [i for (i,) in open_run(summary["run_dir"]).execute(query).fetchall()]
    assert indices and all(i % 10 == 0 for i in indices), indices  # their places in the whole split


@pytest.mark.parametrize("method", METHODS)
def test_method_runs_on_alexnet_deepsim_random_weights(method, tmp_path, image_folder, ray_session):
    overrides = [
        f"out_dir={tmp_path}",
        "models.allow_random_weights=true",
        "models.target.weights=null",
        "models.generator.weights=null",
        "models.encoder.weights=null",  # CaffeNet, which G inverts
        "layers=[{name: classifier.6, units: [0]}, {name: features.10, units: [3]}]",
        f"sampler.method={method}",
        *TINY,
    ]
    if method == "accentuation":
        overrides.append(f"facets.real_images={image_folder}")
    summary = run_atlas(load_config(REPO / "configs" / "alexnet-deepsim.yaml", overrides), progress=False)
    assert summary["units"] == 2
    _ran_every_unit(summary["run_dir"], method, 2)
    if method == "accentuation":  # a user's real images are named by their file in the folder
        query = "SELECT DISTINCT real_name FROM images WHERE kind = 'real'"
        names = {n for (n,) in open_run(summary["run_dir"]).execute(query).fetchall()}
        assert names and names <= {f"{i}.png" for i in range(6)}, names


def test_an_ensemble_joins_output_units_through_atlas_run(tmp_path, ray_session, capsys):
    """``models.ensemble`` (a random ResNet-18 beside the random AlexNet: another architecture, the same
    1,000 classes) reaches the workers through the bundle: output units' chains name it in their method,
    the conv unit's do not, and run.json fingerprints the member."""
    overrides = [
        f"out_dir={tmp_path}",
        "models.allow_random_weights=true",
        "models.target.weights=null",
        "models.generator.weights=null",
        "models.encoder.weights=null",
        "models.ensemble=[torchvision:resnet18]",
        "layers=[{name: classifier.6, units: [0]}, {name: features.10, units: [3]}]",
        *TINY,
    ]
    summary = run_atlas(load_config(REPO / "configs" / "alexnet-deepsim.yaml", overrides), progress=False)
    assert summary["units"] == 2
    said = capsys.readouterr().err
    assert "models.ensemble[0] (torchvision:resnet18) runs on RANDOM weights" in said
    conn = open_run(summary["run_dir"])
    methods = dict(conn.execute("SELECT layer, method FROM units").fetchall())
    assert methods == {"classifier.6": "ppgn_h/joint[ensemble=2]", "features.10": "ppgn_h/joint"}, methods
    fingerprints = json.loads((Path(summary["run_dir"]) / "run.json").read_text())["fingerprints"]
    assert [m["spec"] for m in fingerprints["ensemble"]] == ["torchvision:resnet18"]
