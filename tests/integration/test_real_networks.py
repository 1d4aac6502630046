"""Real-network path on random weights: AlexNet + DeePSiM fc6 through `atlas run`, bring-your-own
models, code statistics and DAE training from an image folder, and refusing missing weights."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from atlas.config import load_config
from atlas.pipeline import run_atlas
from atlas.store import open_run

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


def atlas_cli(*args, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "atlas", *args], capture_output=True, text=True, timeout=timeout, cwd=REPO
    )


def test_alexnet_deepsim_random_weights_tiny_selection(tmp_path, ray_session):
    cfg = load_config(
        REPO / "configs" / "alexnet-deepsim.yaml",
        [
            f"out_dir={tmp_path}",
            "models.allow_random_weights=true",
            "models.target.weights=null",
            "models.generator.weights=null",
            "models.encoder.weights=null",  # CaffeNet, which G inverts
            "layers=[{name: classifier.6, units: [0, 1]}]",
            "sampler.chains_per_unit=2",
            "sampler.steps=3",
            "sampler.record_every=1",
            "compute.batch_size=4",
            "ray.num_workers=1",
            "ray.cpus_per_worker=2",
        ],
    )
    summary = run_atlas(cfg, progress=False)
    assert summary["units"] == 2 and summary["chains"] == 4
    conn = open_run(summary["run_dir"])
    assert conn.execute("SELECT count(*) FROM chains").fetchone()[0] == 4
    w, h = conn.execute("SELECT width, height FROM images WHERE kind = 'last' LIMIT 1").fetchone()
    assert (w, h) == (227, 227)  # G draws 256 px; kept is the centre crop the target reads (act_max.py's)
    manifest = (Path(summary["run_dir"]) / "run.json").read_text()
    assert '"random_weights": true' in manifest  # outputs record which weights were used
    # the joint prior read G's code from CaffeNet's relu6 (no layer of AlexNet's): the workers had the encoder
    fingerprints = json.loads(manifest)["fingerprints"]
    assert fingerprints["encoder"]["spec"] == "python:atlas.models.caffenet:caffenet"
    assert json.loads(manifest)["code_layer"] == "relu6"


def test_real_config_without_weights_is_refused_exit_2(tmp_path, capsys):
    proc = atlas_cli("run", "configs/alexnet-deepsim.yaml", "--set", f"out_dir={tmp_path}")
    assert proc.returncode == 2
    assert proc.stderr.startswith("atlas: error: models.target: weights file 'weights/alexnet.pth' not found")
    assert "Traceback" not in proc.stderr
    from atlas.cli import main  # the second case in this process (the same main, no interpreter start)

    code = main(["run", str(REPO / "configs/alexnet-deepsim.yaml"), "--set", f"out_dir={tmp_path}"]
                + ["--set", "models.target.weights=null"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "has no weights file" in err and "allow_random_weights" in err
    assert not any(tmp_path.iterdir())


def test_bring_your_own_model_end_to_end(tmp_path, ray_session):
    from atlas.examples.tiny_cnn import build

    weights = tmp_path / "tiny_cnn.pt"
    torch.manual_seed(0)
    torch.save(build().state_dict(), weights)
    cfg = load_config(
        REPO / "configs" / "byo-tiny-cnn.yaml",
        [f"out_dir={tmp_path}", f"models.target.weights={weights}", "sampler.steps=5", "ray.num_workers=1"],
    )
    summary = run_atlas(cfg, progress=False)
    assert summary["units"] == 10 + 8 and summary["errors"] == 0
    conn = open_run(summary["run_dir"])
    kinds = dict(conn.execute("SELECT layer, any_value(kind) FROM units GROUP BY layer").fetchall())
    assert kinds == {"fc8": "output", "conv3": "conv"}


def _image_folder(path: Path, n: int) -> Path:
    path.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(path / f"img{i:03d}.png")
    return path


def test_code_stats_and_train_dae_from_a_folder(tmp_path):
    images = _image_folder(tmp_path / "imgs", 24)
    stats_out, dae_out = tmp_path / "stats.pt", tmp_path / "dae.pt"
    weights = tmp_path / "tiny.pt"
    from atlas.examples.tiny_cnn import build

    torch.save(build().state_dict(), weights)
    common = [
        "--config",
        "configs/byo-tiny-cnn.yaml",
        "--images",
        str(images),
        "--set",
        f"models.target.weights={weights}",
        "--set",
        "models.code_layer=relu6",
    ]
    proc = atlas_cli("code-stats", *common, "--out", str(stats_out))
    assert proc.returncode == 0, proc.stderr
    assert "statistics of 24 images are rough" in proc.stderr  # written, but said to be rough (< 100)
    from atlas.models import CodeStats

    stats = CodeStats.load(stats_out)
    assert stats.upper.shape == (128,) and (stats.upper >= stats.mean).all()
    assert stats.read_from == ("python:atlas.examples.tiny_cnn:build", "relu6")  # where the codes were read
    proc = atlas_cli("train-dae", *common, "--out", str(dae_out), "--epochs", "2", "--hidden", "32")
    assert proc.returncode == 0, proc.stderr
    assert "held-out error" in proc.stdout
    from atlas.config import ModelConfig
    from atlas.models import load_model

    dae = load_model(ModelConfig(spec="dae:residual_mlp", weights=str(dae_out)), "dae")
    assert dae.code_shape == (128,)
    assert dae.module(torch.zeros(2, 128)).shape == (2, 128)
