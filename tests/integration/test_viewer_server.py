"""The viewer's server goes down with the process that started it, even one killed outright."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request

import pytest

from atlas.bench.synthetic_run import make_synthetic_run
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def test_atlas_view_killed_with_sigkill_leaves_no_server(tmp_path):
    run = tmp_path / "run"
    make_synthetic_run(run, layers={"fc8": 4}, chains=1, steps=10)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    view = subprocess.Popen(
        [sys.executable, "-m", "atlas", "view", str(run), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    health = f"http://127.0.0.1:{port}/_stcore/health"
    try:
        wait_for(lambda: _answers(health), 120, "the viewer to answer")
        os.kill(view.pid, signal.SIGKILL)  # no handler runs: the server must notice by itself
        view.wait()
        wait_for(lambda: not _answers(health), 60, "the orphaned server to stop")
    finally:
        if view.poll() is None:
            view.kill()


def test_a_port_in_use_is_answered_with_one_that_is_free():
    from atlas.commands.options import check_listen
    from atlas.errors import AtlasError

    held = []
    try:
        for _ in range(50):  # two neighbouring ports in use: the next one is no answer
            first = socket.socket()
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            second = socket.socket()
            try:
                second.bind(("127.0.0.1", port + 1))
            except OSError:
                first.close()
                continue
            held = [first, second]
            break
        for s in held:
            s.listen()
        with pytest.raises(AtlasError) as err:
            check_listen("127.0.0.1", port)  # atlas view and atlas run --view
        said = str(err.value)
        assert f"--port {port}: already in use" in said and f"--port {port + 1} " not in said
        suggested = int(said.split("e.g. --port ")[1].split()[0])
        with socket.socket() as probe:  # free indeed
            probe.bind(("127.0.0.1", suggested))
    finally:
        for s in held:
            s.close()
