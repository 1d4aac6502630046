"""Connecting to Ray: a local instance interrupted while it starts leaves nothing running."""

from __future__ import annotations

import os

import pytest

pytestmark = pytest.mark.unit


def test_ctrl_c_while_a_local_ray_starts_shuts_it_down(monkeypatch):
    """Ctrl-C (or SIGTERM) inside ray.init left Ray's processes running (its agents for about a minute):
    ray.shutdown knows no node yet then, so the processes that ray.init started, and theirs, are ended."""
    import subprocess

    import ray

    from atlas.pipeline import cluster
    from tests.support.waiting import wait_for

    calls: list[str] = []
    started: list[subprocess.Popen] = []

    def init(**_kwargs):  # as ray.init: a raylet-like child with an agent-like child of its own, then ^C
        calls.append("init")
        started.append(subprocess.Popen(["bash", "-c", "sleep 300 & wait"]))
        wait_for(lambda: cluster._children(started[0].pid), 30, "the child's own child")
        raise KeyboardInterrupt

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "shutdown", lambda: calls.append("shutdown"))
    grandchildren: list[int] = []
    monkeypatch.setattr(cluster, "_end_trees", _recording(cluster._end_trees, grandchildren))
    with pytest.raises(KeyboardInterrupt):
        cluster.connect(None)
    assert calls == ["init", "shutdown"]
    assert started[0].wait(timeout=30) == -9  # the child, killed
    assert grandchildren  # ended too: a SIGKILL lands when the kernel gets to it, so waited for
    wait_for(
        lambda: not any(cluster._runs(pid, "/proc") for pid in grandchildren), 30, "the grandchild's end"
    )


def _recording(end_trees, seen: list[int]):
    """``end_trees`` that first notes the grandchildren it is about to end."""
    from atlas.pipeline import cluster

    def wrapped(roots: list[int]) -> None:
        seen.extend(pid for root in roots for pid in cluster._children(root))
        end_trees(roots)

    return wrapped


def test_agents_whose_raylet_died_are_ended_and_no_other_process(tmp_path, monkeypatch):
    """Only processes of this group, with parent 1 and a RAY_RAYLET_PID naming a raylet that no longer
    runs (or is a zombie) are ended: a live instance's detached workers and other groups' stay."""
    import os
    import signal

    from atlas.pipeline import cluster

    group = os.getpgrp()

    def fake(pid: int, state: str, ppid: int, pgrp: int, raylet: int | None) -> None:
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_bytes(
            b"%d (a b) %s %d %d 0 0" % (pid, state.encode(), ppid, pgrp)
        )
        env = b"HOME=/x\0" + (b"RAY_RAYLET_PID=%d\0" % raylet if raylet is not None else b"")
        (tmp_path / str(pid) / "environ").write_bytes(env)

    fake(100, "S", 1, group, 900)  # orphaned agent, raylet 900 gone: ended
    fake(101, "S", 1, group, 901)  # orphaned agent, raylet 901 a zombie: ended
    fake(901, "Z", 55, group, None)
    fake(102, "S", 1, group, 902)  # a detached worker of a live raylet: kept
    fake(902, "S", 1, group, None)
    fake(103, "S", 1, group + 1, 900)  # another process group: kept
    fake(104, "S", 7, group, 900)  # a parent of its own: kept
    fake(105, "S", 1, group, None)  # not Ray's: kept
    killed: list[int] = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: killed.append(pid) if sig == signal.SIGKILL else None)
    assert sorted(cluster.end_orphaned_agents(str(tmp_path))) == [100, 101] == sorted(killed)


def _connect_refused(monkeypatch, address: str, ray_says: str) -> str:
    """The one-line error of ``connect(address)`` when ray.init raises ConnectionError(ray_says)."""
    import ray

    from atlas.errors import ConfigError
    from atlas.pipeline import cluster

    def init(**_kwargs):
        raise ConnectionError(ray_says)

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(cluster, "probe_address", lambda _address: None)
    with pytest.raises(ConfigError) as err:
        cluster.connect(address)
    text = str(err.value)
    assert "\n" not in text
    return text


def test_what_a_failed_join_wrote_to_stderr_is_dropped_and_a_successful_ones_said(monkeypatch, capfd):
    """A trial: joining a token-auth head without its token printed seven of Ray's C++ log lines (written to
    file descriptor 2 by its core worker) before atlas's one-line error. Held back while joining: dropped
    when the join fails, written once it succeeds."""
    import ray

    from atlas.errors import ConfigError
    from atlas.pipeline import cluster

    def noisy(fails: bool):
        def init(**_kwargs):
            os.write(2, b"gcs_client.cc:210: Failed to get cluster ID: InvalidAuthToken\n")
            if fails:
                raise ConnectionError("Failed to connect to GCS within 60 seconds")

        return init

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(cluster, "probe_address", lambda _address: None)
    monkeypatch.setattr(ray, "init", noisy(fails=True))
    with pytest.raises(ConfigError, match="RAY_AUTH_MODE=token"):
        cluster.connect("10.0.0.5:6379")
    assert "gcs_client" not in capfd.readouterr().err
    monkeypatch.setattr(ray, "init", noisy(fails=False))
    cluster.connect("10.0.0.5:6379")
    assert capfd.readouterr().err == "gcs_client.cc:210: Failed to get cluster ID: InvalidAuthToken\n"


def test_a_process_ended_while_a_join_holds_stderr_back_still_says_why(monkeypatch, capfd):
    """The start's escape (a signal the main thread could not act on) ends the process from a thread while
    the join holds fd 2 back: its line must reach the real stderr, not the held-back file."""
    from atlas.pipeline import cluster

    ended = []
    monkeypatch.setattr(cluster.os, "_exit", ended.append)
    monkeypatch.setattr(cluster, "_end_trees", lambda _pids: None)
    with cluster._stderr_said_on_success():
        os.write(2, b"held back\n")
        cluster._StuckStartEscape._exit(143)
        os.write(2, b"after the escape\n")  # (os._exit would have ended the process here)
    assert ended == [143]
    said = capfd.readouterr().err  # (the join went on here: what it held back is said after it)
    assert said == "atlas: interrupted (while Ray was starting)\nafter the escape\nheld back\n"
    assert cluster._REAL_STDERR == []


def test_address_auto_without_a_cluster_says_so_and_not_to_pass_the_flag_just_given(monkeypatch):
    text = _connect_refused(  # Ray's own words: they ask for the --address flag the user just gave
        monkeypatch,
        "auto",
        "Could not find any running Ray instance. Please specify the one to connect to by setting "
        "`--address` flag or `RAY_ADDRESS` environment variable.",
    )
    assert "no Ray cluster is running on this machine" in text and "ray start --head" in text
    assert "--address` flag" not in text


def test_sigterm_while_a_local_ray_starts_is_terminated_and_shuts_ray_down(monkeypatch):
    """Ray's driver sets its own SIGTERM handler (``sys.exit(15)``) part-way through ray.init: a SIGTERM
    then was a silent exit 15; it is Terminated (exit 143, the message) and Ray is shut down."""
    import ray

    from atlas.errors import Terminated
    from atlas.pipeline import cluster

    def init(**kw):
        raise SystemExit(15)

    shut = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "shutdown", lambda: shut.append(True))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(Terminated):
        cluster.connect(None)
    assert shut == [True]
    monkeypatch.setattr(ray, "init", lambda **kw: (_ for _ in ()).throw(SystemExit(3)))  # any other exit
    with pytest.raises(SystemExit):
        cluster.connect(None)


def test_an_address_that_answers_but_refuses_ray_names_token_authentication(monkeypatch):
    """A head started with token authentication refuses a driver without its token: the address was right,
    so the message does not list address forms but says what the cluster may need."""
    text = _connect_refused(monkeypatch, "10.0.0.5:6379", "Failed to connect to GCS within 60 seconds")
    assert (
        "answers but Ray could not join it (Failed to connect to GCS" in text
        and "RAY_AUTH_MODE=token" in text
    )
    assert "expected host:port" not in text


def test_the_bundle_holder_ends_itself_once_its_raylet_is_gone():
    """A holder that outlived its Ray (parent 1, ~1 GB) ended only when killed by hand; it now watches its
    parent and leaves once the raylet that started it is gone."""
    from atlas.pipeline.holder import exit_when_orphaned

    parents, left = iter([4242, 4242, 4242, 1]), []
    exit_when_orphaned(4242, interval_s=0.0, getppid=lambda: next(parents), leave=left.append)
    assert left == [0] and next(parents, None) is None  # it looked until the parent changed, then left
    # a worker Ray started detached has parent 1 from the start: the raylet Ray named is what tells
    runs, left = iter([True, True, False]), []
    exit_when_orphaned(
        1, 4924, interval_s=0.0, getppid=lambda: 1, leave=left.append, alive=lambda _p: next(runs)
    )
    assert left == [0] and next(runs, None) is None


def test_the_bundle_holders_process_loads_neither_torch_nor_the_rest_of_atlas():
    """Its process holds one object reference: importing its module (what Ray does to start it) loaded
    torch, the engine, DuckDB and pyarrow through ``atlas.pipeline`` (1.4-2.7 s, a few hundred MB a run)."""
    import subprocess
    import sys

    code = (
        "import sys; from atlas.pipeline.holder import BundleHolder; "
        "heavy = ('torch', 'duckdb', 'pyarrow', 'atlas.config', 'atlas.store'); "
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr


def test_only_a_ray_actor_process_ends_its_exit_early():
    """The early exit (before Ray's exit handler) is registered in a Ray actor's process only: a driver or a
    test that builds a worker in its own process keeps its exit code (a failing suite must not exit 0)."""
    from atlas.pipeline.holder import end_before_rays_exit_handler

    registered = []
    assert end_before_rays_exit_handler(register=lambda *a: registered.append(a)) is False
    assert registered == []


def test_the_suites_stray_check_finds_only_atlas_actors_whose_raylet_is_gone(tmp_path):
    from tests.support.strays import orphaned_actors

    def fake(pid: int, cmdline: bytes, raylet: int | None, state: str = "S", session: bytes = b"s1") -> None:
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "cmdline").write_bytes(cmdline)
        (tmp_path / str(pid) / "stat").write_bytes(b"%d (x) %s 1 1 0 0" % (pid, state.encode()))
        env = b"HOME=/x\0ATLAS_TEST_SESSION=" + session + b"\0"
        env += b"RAY_RAYLET_PID=%d\0" % raylet if raylet is not None else b""
        (tmp_path / str(pid) / "environ").write_bytes(env)

    fake(100, b"ray::BundleHolder\0\0\0", 900)  # its raylet 900 gone: found
    fake(101, b"ray::AtlasWorker.run_shard\0", 901)  # raylet 901 a zombie: found
    fake(901, b"raylet\0", None, "Z")
    fake(102, b"ray::BundleHolder\0", 902)  # a live raylet's: not stray
    fake(902, b"raylet\0", None)
    fake(103, b"ray::IDLE\0", 900)  # Ray's own idle worker: not atlas's to judge
    fake(104, b"python\0-m\0pytest\0", 900)
    fake(105, b"ray::BundleHolder\0", 900, session=b"s2")  # another suite's (or run's): not judged here
    want = {100: "ray::BundleHolder", 101: "ray::AtlasWorker.run_shard"}
    assert orphaned_actors("s1", str(tmp_path)) == want


def test_an_interrupted_run_is_marked_first_and_ends_its_instance_when_the_signal_reached_it(
    tmp_path, monkeypatch
):
    """A SIGTERM to the whole process group (`timeout`, Slurm, systemd) reaches the local GCS and raylet
    too; shutting down, they carried no ``ray.kill``, and the run took 17-34 s to stop while its workers
    went on writing shards (a user's trial). Interrupted, the driver marks the run first; when the signal
    ended the instance's own Python helpers, it ends the instance's processes (GCS, raylet and what the
    raylet started) and waits for no actor. A signal to the driver alone keeps Ray's graceful teardown."""
    import subprocess
    import types

    import ray

    from atlas.pipeline import cluster, driver
    from atlas.store import RunStore
    from tests.support.waiting import wait_for

    raylet = subprocess.Popen(["bash", "-c", "sleep 300 & wait"])  # a raylet and the worker it started
    gcs, monitor = subprocess.Popen(["sleep", "300"]), subprocess.Popen(["sleep", "300"])
    wait_for(lambda: cluster._children(raylet.pid), 30, "the raylet's worker")
    [worker] = cluster._children(raylet.pid)
    info = lambda p: types.SimpleNamespace(process=p)  # noqa: E731 - Ray's ProcessInfo, as far as read
    processes = {"raylet": [info(raylet)], "gcs_server": [info(gcs)], "monitor": [info(monitor)]}
    monkeypatch.setattr(ray._private.worker, "_global_node", types.SimpleNamespace(all_processes=processes))
    store = RunStore(tmp_path / "run")
    seen: list[tuple[str, object]] = []
    status = lambda: store.manifest()["status"]  # noqa: E731
    monkeypatch.setattr(cluster, "kill_actors", lambda a, timeout_s: seen.append((status(), timeout_s)))
    for interrupted, expect in ((False, ("running", 10.0)), (True, ("interrupted", 10.0))):
        store.init_run({"config": {}, "config_hash": "x", "run_token": "t"})
        driver._end_actors(store, ["actor"], interrupted=interrupted, owned=True)
        assert seen.pop() == expect and raylet.poll() is None  # the instance was not signalled: left to Ray
    monitor.kill()  # as the group's SIGTERM ends it
    store.init_run({"config": {}, "config_hash": "x", "run_token": "t"})
    driver._end_actors(store, ["actor"], interrupted=True, owned=True)
    assert seen == [("interrupted", 0.0)]  # marked first, and no wait for what Ray can no longer kill
    assert raylet.wait(timeout=30) == -9 and gcs.wait(timeout=30) == -9
    wait_for(lambda: not cluster._runs(worker, "/proc"), 30, "the worker's end")


def test_a_cluster_with_no_cpu_is_told_to_add_nodes(monkeypatch):
    """A head started with --num-cpus=0 and no worker yet (cluster.yaml's head): "lower
    ray.cpus_per_worker" could not help (a trial), since no value of it fits 0 CPUs."""
    from atlas.config import RunConfig
    from atlas.errors import ConfigError
    from atlas.pipeline import cluster

    cfg = RunConfig.model_validate(
        {
            "name": "t",
            "models": {"target": "toyworld:target"},
            "sampler": {"method": "pixel"},
            "layers": [{"name": "fc8"}],
        }
    )
    layout = cluster.WorkerLayout(actors=1, cpus=1.0, gpus=0.0, threads=1)
    monkeypatch.setattr(cluster, "alive_nodes", lambda: [{"Resources": {"CPU": 0.0}}])
    with pytest.raises(ConfigError, match=r"^the Ray cluster has no node with a CPU .* add worker nodes"):
        cluster.check_feasible(cfg, layout)
    monkeypatch.setattr(cluster, "alive_nodes", lambda: [{"Resources": {"CPU": 1.0}}])
    with pytest.raises(ConfigError, match=r"^ray.cpus_per_worker: each actor needs 2 CPU"):
        cluster.check_feasible(cfg, cluster.WorkerLayout(actors=1, cpus=2.0, gpus=0.0, threads=1))
    cluster.check_feasible(cfg, layout)  # it fits
