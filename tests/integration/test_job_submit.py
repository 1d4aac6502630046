"""`ray job submit` against a local head started with `ray start --head` (own port and temp dir):
the demo pipeline runs as a Ray job and its Parquet output is checked."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from atlas.store import open_run
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).parent / "ray")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_head(temp: Path) -> None:
    """Stop only this head's processes (``ray stop`` would also kill the test session's own Ray): every
    process whose command line names the head's temp dir, TERM then KILL."""

    def mine() -> list[int]:
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) not in (os.getpid(), os.getppid()):
                with contextlib.suppress(OSError):
                    if str(temp).encode() in (entry / "cmdline").read_bytes():
                        pids.append(int(entry.name))
        return pids

    for _ in range(3):  # a test head needs no graceful shutdown; processes may spawn while we sweep
        for pid in mine():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(AssertionError):
            wait_for(lambda: not mine(), 10, f"the Ray head in {temp} to stop")
            return


@pytest.fixture(scope="module")
def ray_head():
    temp = Path("/tmp") / f"atlas-ray-{os.getpid()}"  # short: Ray's socket paths have a length limit
    # the venv first on PATH, so the job's `atlas` and `python` are the ones atlas is installed in
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        # `ray start --head` in token mode needs a token and creates none (on a fresh machine there is no
        # ~/.ray/auth_token until something calls ray.init): the head and its clients share the test's own
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
        # as docs/pipeline.md advises for `ray start`: the job's supervisor, driver and actors at niceness 0,
        # not Ray's 15 (at 15 a busy machine starves the job: 15 s quiet took 135 s under a two-core hog)
        "RAY_worker_niceness": "0",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    env.pop("RAY_ADDRESS", None)

    def start_head() -> tuple[subprocess.CompletedProcess, int]:
        dash = free_port()
        started = subprocess.run(
            [
                RAY,
                "start",
                "--head",
                "--port",
                str(free_port()),
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
                # own agent ports: another Ray instance of the test session may hold the defaults
                "--dashboard-agent-listen-port",
                str(free_port()),
                "--dashboard-agent-grpc-port",
                str(free_port()),
                "--runtime-env-agent-port",
                str(free_port()),
                "--metrics-export-port",
                str(free_port()),
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        return started, dash

    # a head can fail to start (a port from free_port() taken before Ray binds it; a busy machine): 3 tries
    for _ in range(3):
        started, dash = start_head()
        if started.returncode == 0:
            break
        stop_head(temp)
    else:
        raise AssertionError(
            f"`ray start --head` failed 3 times; last output: {(started.stdout + started.stderr)[-800:]}"
        )
    address = f"http://127.0.0.1:{dash}"
    last: list[str] = []

    def accepts_jobs() -> bool:  # the head's job agent registers a little after `ray start` returns
        probe = subprocess.run(
            [RAY, "job", "submit", "--address", address, "--no-wait", "--", "true"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        last[:] = [(probe.stdout + probe.stderr)[-600:]]
        return probe.returncode == 0

    try:
        try:
            wait_for(accepts_jobs, 180, "the Ray head to accept jobs (its job agent)", interval_s=2.0)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last answer: {last[0] if last else '-'}") from None
        yield address, env
    finally:
        stop_head(temp)


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
    assert "temporary copy of the job's working directory" in error and "out_dir=" in error
    assert "Traceback" not in logs
