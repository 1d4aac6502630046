"""`ray job submit` against a local head started with `ray start --head` (own port and temp dir):
the demo pipeline runs as a Ray job and its Parquet output is checked."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from atlas.store import open_run

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).parent / "ray")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_head(tmp_path_factory):
    temp = Path("/tmp") / f"atlas-ray-{os.getpid()}"  # short: Ray's socket paths have a length limit
    port, dash = free_port(), free_port()
    # the venv first on PATH, so the job's `atlas` and `python` are the ones atlas is installed in
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    env.pop("RAY_ADDRESS", None)
    subprocess.run(
        [
            RAY,
            "start",
            "--head",
            "--port",
            str(port),
            "--node-ip-address",
            "127.0.0.1",
            "--temp-dir",
            str(temp),
            "--num-cpus",
            "2",
            "--dashboard-host",
            "127.0.0.1",
            "--dashboard-port",
            str(dash),
            "--include-dashboard",
            "true",
            "--disable-usage-stats",
        ],
        check=True,
        capture_output=True,
        env=env,
        timeout=120,
    )
    try:
        yield f"http://127.0.0.1:{dash}", env
    finally:
        subprocess.run([RAY, "stop", "--force"], capture_output=True, env=env, timeout=60)


def test_demo_config_through_ray_job_submit(tmp_path, micro_cache, ray_head):
    """As the README says: `RAY_AUTH_MODE=token ray job submit --working-dir . -- atlas run CONFIG`."""
    address, env = ray_head
    out = tmp_path / "runs"
    proc = subprocess.run(
        [
            RAY,
            "job",
            "submit",
            "--address",
            address,
            "--working-dir",
            str(REPO),
            "--",
            "atlas",
            "run",
            "configs/micro.yaml",
            "--no-progress",
            "--set",
            f"out_dir={out}",
            "--set",
            f"toyworld.cache_dir={micro_cache}",
            "--set",
            "layers.1.units=0-1",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        cwd=REPO,
    )
    logs = proc.stdout + proc.stderr
    assert proc.returncode == 0, logs[-3000:]
    assert "succeeded" in logs and "atlas: 12 units" in logs
    conn = open_run(out / "micro")
    assert conn.execute("SELECT count(*) FROM units").fetchone()[0] == 12
    assert conn.execute("SELECT count(*) FROM chains").fetchone()[0] == 24
    assert (
        conn.execute("SELECT count(*) FROM images WHERE kind = 'last' AND octet_length(png) > 0").fetchone()[
            0
        ]
        == 24
    )


def test_relative_out_dir_under_job_submit_is_refused_with_the_fix(micro_cache, ray_head):
    """A shipped config's relative `out_dir: runs` would resolve inside Ray's copy of the working
    directory (deleted by Ray): the job fails at once with a one-line fix, writing nothing."""
    address, env = ray_head
    proc = subprocess.run(
        [
            RAY, "job", "submit", "--address", address, "--working-dir", str(REPO), "--",
            "atlas", "run", "configs/micro.yaml", "--no-progress",
            "--set", f"toyworld.cache_dir={micro_cache}",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        cwd=REPO,
    )  # fmt: skip
    logs = proc.stdout + proc.stderr
    assert proc.returncode != 0, logs[-3000:]
    errors = {line for line in logs.splitlines() if line.startswith("atlas: error:")}  # (ray repeats logs)
    assert len(errors) == 1, logs[-3000:]
    (error,) = errors
    assert "temporary copy of the working directory" in error and "out_dir=" in error
    assert "Traceback" not in logs
