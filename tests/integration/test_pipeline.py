"""The distributed job on the micro toy world and one shared local Ray: exact row counts, resume,
worker SIGKILL, driver kill, and errors before any actor starts."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from atlas.config import load_config, replace
from atlas.errors import AtlasError
from atlas.map_cells import cell_of
from atlas.pipeline import run_atlas
from atlas.pipeline.driver import format_summary
from atlas.sampling.compute import cpu_kind
from atlas.sampling.units import center_of
from atlas.store import open_run
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


def micro_config(tmp_path, cache, *extra):
    return load_config(
        REPO / "configs" / "micro.yaml", [f"out_dir={tmp_path}", f"toyworld.cache_dir={cache}", *extra]
    )


def wait_for_holder_gone(run_dir) -> None:
    """Until the BundleHolder actor of the run in ``run_dir`` (its run.json's token) is gone."""
    import ray

    token = json.loads((run_dir / "run.json").read_text())["run_token"]

    def holder_gone() -> bool:
        try:
            ray.get_actor(f"atlas-bundle-{token}")
        except ValueError:
            return True
        return False

    wait_for(holder_gone, 120, "the run's BundleHolder to be gone")


def table_count(run_dir, table, where=""):
    conn = open_run(run_dir)
    return conn.execute(f"SELECT count(*) FROM {table} {where}").fetchone()[0]


def distinct_count(run_dir, table, keys):
    conn = open_run(run_dir)
    return conn.execute(f"SELECT count(*) FROM (SELECT DISTINCT {keys} FROM {table})").fetchone()[0]


def worker_pid_after_a_shard(run_dir: Path) -> int | None:
    """The pid of the run's first worker once a shard is complete (None before)."""
    infos = sorted((run_dir / "_workers").glob("*.json")) if (run_dir / "_workers").exists() else []
    done = list((run_dir / "_shards").glob("*.done")) if (run_dir / "_shards").exists() else []
    return json.loads(infos[0].read_text())["pid"] if infos and done else None


def test_row_counts_exact_and_rerun_writes_nothing(tmp_path, micro_cache, ray_session, monkeypatch):
    import ray

    cfg = micro_config(tmp_path, micro_cache)
    handler = signal.getsignal(signal.SIGTERM)
    kill, status_at_teardown = ray.kill, []

    def teardown(actor, **kw):  # Ray's teardown (kill, then shutdown) comes after the run is complete:
        status_at_teardown.append(json.loads((tmp_path / "micro" / "run.json").read_text())["status"])
        kill(actor, **kw)  # a shutdown resets SIGTERM below Python: a signal then ended the driver at once

    monkeypatch.setattr(ray, "kill", teardown)
    summary = run_atlas(cfg, progress=False)
    monkeypatch.setattr(ray, "kill", kill)
    assert status_at_teardown and set(status_at_teardown) == {"complete"}
    assert signal.getsignal(signal.SIGTERM) is handler  # a program embedding atlas keeps its own
    run_dir = Path(summary["run_dir"])
    units = 10 + 4  # fc8 all (10 classes) + conv2 0-3
    chains = units * cfg.sampler.chains_per_unit
    assert summary["units"] == units and summary["chains"] == chains
    recorded = json.loads((run_dir / "run.json").read_text())["cpu_autocast"]  # auto's answer, measured once
    assert summary["precision"] == [{"bf16": "bfloat16", "none": "float32"}[recorded[cpu_kind()]]]
    assert table_count(run_dir, "units") == units
    assert table_count(run_dir, "chains") == chains
    assert table_count(run_dir, "activations") == chains
    # last + best per chain, plus the real top-k per unit
    assert table_count(run_dir, "images", "WHERE kind IN ('last', 'best')") == 2 * chains
    assert table_count(run_dir, "images", "WHERE kind = 'real'") == units * cfg.facets.top_k_real
    assert distinct_count(run_dir, "chains", "layer, unit, chain") == chains
    assert table_count(run_dir, "units", "WHERE layer = 'fc8' AND kind = 'output'") == 10
    manifest = json.loads((run_dir / "run.json").read_text())
    assert manifest["config_hash"] and manifest["fingerprints"]["target"]["spec"] == "toyworld:target"
    assert manifest["fingerprints"]["reader"]["spec"] == "toyworld:reader"  # provenance of label_shown
    assert table_count(run_dir, "units", "WHERE reader_agreement IS NULL") == 0
    spent = 3 * cfg.sampler.steps  # DGN-AM: a gradient step is 3 forward-pass equivalents
    assert table_count(run_dir, "chains", f"WHERE passes = {spent}") == chains
    where = open_run(run_dir).execute("SELECT DISTINCT precision, device, host FROM shards").fetchall()
    assert where == [(summary["precision"][0], "cpu", socket.gethostname())]  # each shard's provenance
    batches = open_run(run_dir).execute("SELECT DISTINCT batch_size FROM shards").fetchall()
    assert batches == [(cfg.compute.batch_size,)]  # no back-off on the CPU

    files = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*.parquet")}
    written = json.loads((run_dir / "summary.json").read_text())
    record = (run_dir / "run.json").read_bytes()
    again = run_atlas(cfg, progress=False)
    assert (run_dir / "run.json").read_bytes() == record  # provenance (git sha, reader) kept as it was
    assert again["shards_run"] == 0 and again["shards_skipped"] == summary["shards"]
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("*.parquet")} == files
    assert json.loads((run_dir / "summary.json").read_text()) == written  # the run's record, not the no-op's
    assert format_summary(again).startswith(f"atlas: nothing to do: all {summary['shards']} shards")
    assert f"({units} units, {chains} chains" in format_summary(again)
    with monkeypatch.context() as m:  # nothing to write, so no lock either: a run on read-only media reruns
        from atlas.pipeline import driver

        def no_lock(*_a, **_k):
            raise AssertionError("the no-op rerun of a complete run took the run's lock")

        m.setattr(driver, "RunLock", no_lock)
        assert run_atlas(cfg, progress=False)["nothing_to_do"]
        # another precision computes nothing in a complete run: nothing to do, not a refused mix
        other = replace(
            cfg, compute=replace(cfg.compute, autocast="none" if cfg.compute.autocast != "none" else "bf16")
        )
        assert run_atlas(other, progress=False)["nothing_to_do"]

    gone = next(run_dir.glob("units/layer=fc8/*.parquet"))  # damage: the rerun says so, names the repair
    gone.rename(tmp_path / "aside.parquet")
    with pytest.raises(AtlasError, match=r"is damaged: shard fc8-\d+'s units file is missing; `atlas verify"):
        run_atlas(cfg, progress=False)
    (tmp_path / "aside.parquet").rename(gone)

    # a resume (one shard left to do) over a shard whose file was lost meanwhile: refused before any work
    # (a trial waited for the rest to run first), the repair named, the run as it was
    manifest["status"] = "interrupted"
    (run_dir / "run.json").write_text(json.dumps(manifest))
    redo = next((run_dir / "_shards").glob("conv2-*.done"))
    redo.unlink()
    gone.rename(tmp_path / "aside.parquet")
    with pytest.raises(AtlasError, match=r"is damaged: shard fc8-\d+'s units file is missing; `atlas verify"):
        run_atlas(cfg, progress=False)
    assert json.loads((run_dir / "run.json").read_text())["status"] == "interrupted"
    assert not redo.exists()  # nothing ran
    (tmp_path / "aside.parquet").rename(gone)
    assert run_atlas(cfg, progress=False)["shards_run"] == 1  # the lost shard's file back: the rest runs
    assert json.loads((run_dir / "run.json").read_text())["status"] == "complete"
    assert table_count(run_dir, "units") == units

    (run_dir / "run.json").rename(tmp_path / "lost-run.json")  # lost: no config may adopt its shards
    with pytest.raises(AtlasError, match="holds completed shards but no run.json"):
        run_atlas(micro_config(tmp_path, micro_cache, "sampler.steps=2"), progress=False)
    assert not (run_dir / "run.json").exists()
    adopted = run_atlas(cfg, progress=False)  # the config its markers name: the run is taken up again
    assert adopted["shards_run"] == 0 and table_count(run_dir, "units") == units
    manifest = json.loads((run_dir / "run.json").read_text())
    assert manifest["status"] == "complete" and manifest["adopted"]
    (run_dir / "run.json").unlink()  # lost again, and a shard still to do: taken up, the rest run
    next((run_dir / "_shards").glob("conv2-*.done")).unlink()
    partial = run_atlas(cfg, progress=False)
    assert partial["shards_run"] == 1 and table_count(run_dir, "units") == units

    marker = next((run_dir / "_shards").glob("fc8-*.done"))  # garbage: the shard is done again (a trial's
    marker.write_text("garbage")  # rerun counted it complete, ran nothing and failed at its end)
    redone = run_atlas(cfg, progress=False)
    assert redone["shards_run"] == 1 and table_count(run_dir, "units") == units
    assert json.loads(marker.read_text())["files"]


def test_different_config_in_same_run_dir_refused(tmp_path, micro_cache, ray_session):
    run_atlas(micro_config(tmp_path, micro_cache, "layers.1.units=0-1"), progress=False)
    refused = r"different config \(sampler.steps differs: the run's 12, this config's 5\); a run takes new"
    with pytest.raises(AtlasError, match=refused):
        run_atlas(
            micro_config(tmp_path, micro_cache, "sampler.steps=5", "layers.1.units=0-1"), progress=False
        )
    # shard ids depend on the shard size: another size would take the old shards for new ones (smaller:
    # units written twice; larger: units lost), also for a run an older atlas made (no units_per_shard)
    run_json = tmp_path / "micro" / "run.json"
    for size, older, hint in (
        ("1", False, "--set ray.units_per_shard=4"),
        ("8", False, "--set ray.units_per_shard=4"),
        ("1", True, "the ray.units_per_shard it was made with"),
    ):
        if older:  # no units_per_shard in its run.json
            run_json.write_text(json.dumps(json.loads(run_json.read_text()) | {"units_per_shard": None}))
        says = rf"its shard \S+ \(units \d+-\d+\) is cut otherwise .* resume with {hint}"
        with pytest.raises(AtlasError, match=says):
            run_atlas(
                micro_config(tmp_path, micro_cache, f"ray.units_per_shard={size}", "layers.1.units=0-1"),
                progress=False,
            )


def test_a_finished_run_takes_new_layers(tmp_path, micro_cache, ray_session):
    from atlas.store.verify import verify_run

    only_fc8 = tmp_path / "fc8.yaml"
    micro = (REPO / "configs" / "micro.yaml").read_text()
    only_fc8.write_text(micro.replace('  - {name: conv2, units: "0-3"}\n', ""))
    first_cfg = load_config(only_fc8, [f"out_dir={tmp_path}", f"toyworld.cache_dir={micro_cache}"])
    first = run_atlas(first_cfg, progress=False)
    run_dir = tmp_path / "micro"
    fc8_files = {p: p.stat().st_mtime_ns for p in run_dir.glob("*/layer=fc8/*.parquet")}
    assert fc8_files and not list(run_dir.glob("*/layer=conv2"))
    said: list[str] = []
    grown_cfg = micro_config(tmp_path, micro_cache, "layers.1.units=0-1")
    grown = run_atlas(grown_cfg, progress=False, log=said.append)
    assert grown["shards_run"] == 1 and grown["shards_skipped"] == first["shards"]  # only the new layer ran
    assert any(line.startswith("extending ") and line.endswith(" with layer conv2") for line in said), said
    assert {p: p.stat().st_mtime_ns for p in run_dir.glob("*/layer=fc8/*.parquet")} == fc8_files
    manifest = json.loads((run_dir / "run.json").read_text())
    assert manifest["status"] == "complete" and manifest["planned_shards"] == first["shards"] + 1
    assert [list(e.values()) for e in manifest["extended"]] == [[["layer conv2"]]]
    assert [layer["name"] for layer in manifest["layers"]] == ["fc8", "conv2"]
    assert table_count(run_dir, "units", "WHERE layer = 'conv2'") == 2
    assert table_count(run_dir, "units", "WHERE layer = 'fc8'") == first["units"]
    report = verify_run(run_dir)
    assert not report.bad and not report.unmarked and report.shards == first["shards"] + 1
    # more units of a held layer: only they run, in shards of their own (the held shard keeps its cut)
    said.clear()
    more = run_atlas(
        micro_config(tmp_path, micro_cache, "layers.1.units=0-3"), progress=False, log=said.append
    )
    assert more["shards_run"] == 1 and any(line.endswith(" with 2 more units of conv2") for line in said), (
        said
    )
    assert table_count(run_dir, "units", "WHERE layer = 'conv2'") == 4
    assert distinct_count(run_dir, "chains", "layer, unit, chain") == table_count(run_dir, "chains")
    assert json.loads((run_dir / "run.json").read_text())["unit_groups"]["conv2"] == [[0, 1], [2, 3]]
    assert not verify_run(run_dir).bad
    # the units it holds stay: a selection that leaves some out is another run
    refused = r"different config \(layers.1.units differs: the run's 0-3, this config's 1-3\); a run takes"
    with pytest.raises(AtlasError, match=refused):
        run_atlas(micro_config(tmp_path, micro_cache, "layers.1.units=1-3"), progress=False)


def test_worker_sigkill_mid_run_completes_without_loss_or_duplicates(tmp_path, micro_cache, ray_session):
    cfg = micro_config(
        tmp_path,
        micro_cache,
        "sampler.steps=40",
        "ray.units_per_shard=2",
        "ray.num_workers=1",
        "layers.1.units=0-9",
    )
    run_dir = tmp_path / cfg.name
    outcome: dict = {}
    thread = threading.Thread(target=lambda: outcome.update(run_atlas(cfg, progress=False)))
    thread.start()

    pid = wait_for(lambda: worker_pid_after_a_shard(run_dir), 600, "a worker that finished its first shard")
    os.kill(pid, signal.SIGKILL)
    thread.join(timeout=900)
    assert not thread.is_alive() and outcome, "run did not complete (900 s) after the worker was killed"
    units = 10 + 10
    assert table_count(run_dir, "units") == units
    assert distinct_count(run_dir, "units", "layer, unit") == units
    chains = units * cfg.sampler.chains_per_unit
    assert table_count(run_dir, "chains") == chains == distinct_count(run_dir, "chains", "layer, unit, chain")
    images = table_count(run_dir, "images")
    assert images == distinct_count(run_dir, "images", "layer, unit, chain, kind, step, real_index")


def test_a_hung_worker_is_killed_and_its_shards_done_by_its_restart(tmp_path, micro_cache, ray_session):
    """SIGSTOP: the actor neither answers nor dies, so Ray never restarts it; the pool's stall limit does."""
    cfg = micro_config(
        tmp_path,
        micro_cache,
        "sampler.steps=20",
        "ray.units_per_shard=2",
        "ray.num_workers=1",
        "ray.stall_timeout_s=10",
        "layers.1.units=0-5",
    )
    run_dir = tmp_path / cfg.name
    outcome: dict = {}
    logs: list[str] = []
    thread = threading.Thread(target=lambda: outcome.update(run_atlas(cfg, progress=False, log=logs.append)))
    thread.start()

    pid = wait_for(lambda: worker_pid_after_a_shard(run_dir), 600, "a worker that finished its first shard")
    os.kill(pid, signal.SIGSTOP)
    try:
        thread.join(timeout=900)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)  # if the pool did not
    assert not thread.is_alive() and outcome, f"run did not complete after the worker hung; log: {logs}"
    assert any("answered nothing for 10 s" in line for line in logs), logs
    assert table_count(run_dir, "units") == distinct_count(run_dir, "units", "layer, unit") == 10 + 6


@pytest.mark.parametrize("fails_at", ["update", "start"])
def test_a_run_that_raises_leaves_no_bundle_holder(tmp_path, micro_cache, ray_session, monkeypatch, fails_at):
    """The driver kills the run's BundleHolder itself: a traceback that keeps the driver's frames (pytest's,
    a notebook's) would otherwise keep its handle, and the holder, for as long as Ray runs. So too when
    what fails comes between the holder's start and the pool's (the progress bar's own start)."""
    from atlas.pipeline import driver

    class FailingBar:
        def __init__(self, *_a, **_k):
            if fails_at == "start":
                raise RuntimeError("the progress bar broke")

        def update(self, _n):
            raise RuntimeError("the progress bar broke")

        def close(self):
            pass

    monkeypatch.setattr(driver, "progress_bar", FailingBar)
    cfg = micro_config(tmp_path, micro_cache, "sampler.steps=2", "layers.1.units=0-1")
    with pytest.raises(RuntimeError, match="the progress bar broke") as caught:
        run_atlas(cfg, progress=True, log=lambda _m: None)
    wait_for_holder_gone(tmp_path / cfg.name)
    assert caught.tb is not None  # the traceback, and the driver's frames in it, still held here


def test_a_closed_output_pipe_stops_the_run_as_interrupted_never_as_a_success(
    tmp_path, micro_cache, ray_session, monkeypatch
):
    """`atlas run ... | head -1`: once head exits, the next progress write raises BrokenPipeError. It ended
    the run with exit status 0 and run.json still 'running' (a user's trial); now it is an interrupt: the run
    marked interrupted (resumable), SIGPIPE's exit status 141, the message naming the pipe."""
    from atlas.errors import Interrupted
    from atlas.pipeline import driver

    class PipeGoneBar:
        def __init__(self, *_a, **_k):
            pass

        def update(self, _n):
            raise BrokenPipeError(32, "Broken pipe")

        def close(self):  # its last line goes to the same closed pipe
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(driver, "progress_bar", PipeGoneBar)
    layer = "layers=[{name: conv2, units: 0-2}]"
    cfg = micro_config(tmp_path, micro_cache, "sampler.steps=2", layer, "ray.units_per_shard=1")
    said = r"interrupted \(its output pipe closed\): [12] of 3 shards complete; the same `atlas run` resumes"
    with pytest.raises(Interrupted, match=said) as caught:
        run_atlas(cfg, progress=True, log=lambda _m: None)
    assert caught.value.exit_code == 141
    assert json.loads((tmp_path / cfg.name / "run.json").read_text())["status"] == "interrupted"
    wait_for_holder_gone(tmp_path / cfg.name)  # the actors ended though the bar's close failed too


def test_a_worker_tells_the_holder_the_units_done_inside_a_shard(tmp_path, micro_cache):
    """After each batch the worker tells the run's holder how many of the shard's units are done (the
    driver's bar moves inside a shard: a 64-unit shard of a real network takes minutes)."""
    from atlas.pipeline import AtlasWorker, Shard
    from atlas.store import RunStore

    told: list[tuple[str, int]] = []

    class Holder:  # the BundleHolder's method, as a fire-and-forget call records it
        class shard_progress:  # noqa: N801 - the actor method's name
            @staticmethod
            def remote(shard: str, units: int) -> None:
                told.append((shard, units))

    cfg = micro_config(tmp_path, micro_cache, "sampler.steps=2", "compute.batch_size=2")  # a unit per batch
    RunStore(tmp_path / "told").init_run({"config": cfg.to_dict(), "config_hash": "x"})
    worker = AtlasWorker(cfg.to_dict(), str(tmp_path / "told"), threads=1)
    worker.holder = Holder()
    worker.run_shard(Shard("fc8-00000", "fc8", (0, 1, 2, 3)))
    assert told == [("fc8-00000", n) for n in range(5)]  # from 0 (a new attempt), then one unit a batch


def _actor_pid(handle) -> int:
    import ray

    return ray.get(handle.__ray_call__.remote(lambda _self: os.getpid()))


def test_killed_actors_are_dead_when_kill_actors_returns(ray_session):
    """Each handle is held until Ray says its actor is dead: none is left to exit gracefully."""
    import ray

    from atlas.pipeline.cluster import kill_actors
    from atlas.pipeline.holder import BundleHolder

    ref = ray.put(b"x")
    holders = [ray.remote(BundleHolder).options(num_cpus=0, max_restarts=0).remote([ref]) for _ in range(2)]
    pids = [_actor_pid(h) for h in holders]
    assert kill_actors(holders) == []
    for holder in holders:
        with pytest.raises(ray.exceptions.RayActorError):
            ray.get(holder.get.remote(), timeout=30)
    gone = lambda: not any(Path(f"/proc/{pid}").exists() for pid in pids)  # noqa: E731
    wait_for(gone, 30, "the killed actors' processes to end")


def test_a_dropped_actor_exits_before_rays_exit_handler(ray_session):
    """A holder whose last handle goes (no kill) exits at the first Python exit hook: Ray's own exit handler,
    which sometimes hung and left it running with parent 1, never starts (its log says when it does)."""
    import ray

    from atlas.pipeline.holder import BundleHolder

    logs = Path(ray._private.worker._global_node.get_logs_dir_path())
    holder = ray.remote(BundleHolder).options(num_cpus=0, max_restarts=0).remote([ray.put(b"x")])
    pid = _actor_pid(holder)
    del holder
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), 60, "the dropped holder's process to end")
    [log] = logs.glob(f"python-core-worker-*_{pid}.log")
    assert "Destructing CoreWorkerProcessImpl" not in log.read_text()  # Ray's exit handler never ran


def test_killed_driver_then_rerun_completes(tmp_path, micro_cache):
    args = [
        sys.executable,
        "-m",
        "atlas",
        "run",
        str(REPO / "configs" / "micro.yaml"),
        "--no-progress",
        "--set",
        f"out_dir={tmp_path}",
        "--set",
        f"toyworld.cache_dir={micro_cache}",
        "--set",
        "ray.units_per_shard=2",
        "--set",
        "sampler.steps=30",
        "--set",
        "layers.1.units=0-9",
    ]
    env = {**os.environ, "RAY_ADDRESS": ""}
    run_dir = tmp_path / "micro"
    proc = subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    wait_for(
        lambda: proc.poll() is not None or list((run_dir / "_shards").glob("*.done")),
        600,
        "the driver's first completed shard",
    )
    assert proc.poll() is None, "the driver ended before it could be killed mid-run"
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its local Ray instance
    proc.wait(timeout=30)
    done_before = len(list((run_dir / "_shards").glob("*.done")))
    assert done_before >= 1
    manifest = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(
        json.dumps(manifest | {"git_sha": "c0ffee" * 6})
    )  # started by older code
    rerun = subprocess.run(args, env=env, capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "already complete" in rerun.stdout + rerun.stderr
    resumed = json.loads((run_dir / "run.json").read_text())
    assert resumed["git_sha"] == "c0ffee" * 6 and len(resumed["resumed_git_sha"]) == 1  # both codes kept
    if resumed["resumed_git_sha"][0]:  # this checkout's sha (None outside a git checkout)
        assert "started by code at git c0ffeec0ff and resumes at" in rerun.stdout + rerun.stderr
    assert len(list((run_dir / "_shards").glob("*.done"))) == 10
    units = 20
    assert table_count(run_dir, "units") == units == distinct_count(run_dir, "units", "layer, unit")
    again = subprocess.run(args, env=env, capture_output=True, text=True, timeout=900)  # nothing left to do
    assert again.returncode == 0 and f"({units} units, " in again.stdout  # the whole run's counts


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["layers.0.name=fc9"], "unknown layer 'fc9'"),
        (["layers.1.units=[0, 999]"], "unit 999 is out of range"),
        (["models.generator=deepsim:fc6", "models.generator.weights=/nonexistent/g.pt"], "not found"),
        (["models.generator=deepsim:fc6", "models.generator.weights=CORRUPT"], "corrupt"),
    ],
)
def test_bad_runs_fail_before_any_actor_and_write_nothing(tmp_path, micro_cache, overrides, message):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a torch file at all")
    overrides = [o.replace("CORRUPT", str(corrupt)) for o in overrides]
    out = tmp_path / "runs"
    cfg = micro_config(out, micro_cache, *overrides)
    with pytest.raises(AtlasError, match=message):
        run_atlas(cfg, progress=False)
    assert not out.exists(), "a failed validation wrote files"


def test_cli_bad_layer_is_one_line_exit_2(tmp_path, micro_cache):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "atlas",
            "run",
            str(REPO / "configs" / "micro.yaml"),
            "--set",
            f"out_dir={tmp_path}",
            "--set",
            f"toyworld.cache_dir={micro_cache}",
            "--set",
            "layers.0.name=fc9",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("atlas: error:") and "unknown layer 'fc9'" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_worker_is_a_plain_class(tmp_path, micro_cache):
    """AtlasWorker runs a shard without Ray."""
    from atlas.pipeline import AtlasWorker, Shard
    from atlas.store import RunStore

    cfg = micro_config(tmp_path, micro_cache, "sampler.steps=4")
    RunStore(tmp_path / "plain").init_run({"config": cfg.to_dict(), "config_hash": "x"})
    worker = AtlasWorker(cfg.to_dict(), str(tmp_path / "plain"), threads=1)
    folded = worker.engine.nets.folding.folded  # fixed as the worker starts (Engine.prepare): no shard
    assert folded  # unfolds a BatchNorm that changes another layer's bits, whatever order shards come in
    summary = worker.run_shard(Shard("fc8-00000", "fc8", (0, 1)))
    assert summary["units"] == 2 and summary["rows"]["units"] == 2
    assert torch.get_num_threads() >= 1
    # the attribute reader (shipped with the micro world) reads every unit's pictures
    conn = open_run(tmp_path / "plain")
    units = conn.execute("SELECT label, label_shown, reader_agreement FROM units").fetchall()
    assert all(a is not None and 0 < a <= 1 for _, _, a in units)
    assert all((label is None) == (shown is None) for label, shown, _ in units)
    read = conn.execute("SELECT kind, reader_concepts FROM images").fetchall()
    assert all(c[0].startswith("class:") and len(c) >= 4 for kind, c in read if kind != "real")
    assert all(c is None for kind, c in read if kind == "real")
    # a conv unit is read at its cell: every picture gets exactly one of background / edge / interior there
    worker.run_shard(Shard("conv2-00000", "conv2", (0, 1)))
    conn = open_run(tmp_path / "plain")  # sees the new shard's files
    assert worker.engine.nets.folding.folded == folded
    from atlas.pipeline.driver import _run_unit_errors

    assert _run_unit_errors(RunStore(tmp_path / "plain").loc) == 0
    failing = worker.run_shard(Shard("fc8-00009", "fc8", (98,)))  # a unit that fails: counted in its marker
    assert failing["errors"] == 1 and _run_unit_errors(RunStore(tmp_path / "plain").loc) == 1
    cells = conn.execute("SELECT DISTINCT label_cell FROM units WHERE layer = 'conv2'").fetchall()
    shape = worker.engine.nets.layer_shape("conv2")  # (C, h, w)
    assert [tuple(c) for (c,) in cells] == [cell_of(center_of(shape), shape[1:], (16, 16))]
    assert (
        conn.execute("SELECT count(*) FROM units WHERE layer = 'fc8' AND label_cell IS NOT NULL").fetchone()[
            0
        ]
        == 0
    )
    read = conn.execute(
        "SELECT reader_concepts FROM images WHERE layer = 'conv2' AND kind = 'last'"
    ).fetchall()
    parts = {"here:background", "here:edge", "here:interior"}
    assert read and all(len(parts & set(c)) == 1 for (c,) in read)


def test_second_run_into_a_locked_run_is_one_line_exit_2(tmp_path, micro_cache, ray_session, capsys):
    """Another `atlas run` holds the run: exit 2 with one line, and the holder's files are untouched."""
    from atlas.cli import main
    from atlas.store.location import open_location
    from atlas.store.lock import RunLock

    run = tmp_path / "micro"
    with RunLock(open_location(run)):
        before = sorted(p.name for p in run.iterdir())
        code = main(
            ["run", str(REPO / "configs" / "micro.yaml"), "--no-progress",
             "--set", f"out_dir={tmp_path}", "--set", f"toyworld.cache_dir={micro_cache}"]
        )  # fmt: skip
        err = capsys.readouterr().err
        assert code == 2, err
        lines = [ln for ln in err.splitlines() if ln.startswith("atlas: error:")]
        assert len(lines) == 1 and "being written by another atlas run" in lines[0], err
        assert sorted(p.name for p in run.iterdir()) == before


def test_a_worker_that_cannot_see_the_run_refuses_to_start(tmp_path, micro_cache, ray_session):
    """Each actor checks, from its own node, that it sees the run.json the driver wrote (with the driver's
    token): one that does not (another node's disk, a missing mount) stops with a one-line reason, told
    through the pool. (One that finds another run's run.json: the unit tier, test_dispatch.)"""
    import ray

    from atlas.pipeline import AtlasWorker, Shard
    from atlas.pipeline.dispatch import run_pool

    cfg = micro_config(tmp_path, micro_cache)
    remote = ray.remote(AtlasWorker).options(num_cpus=0, max_restarts=0)
    actor = remote.remote(
        cfg.to_dict(), str(tmp_path / "unseen"), 1, None, "the driver's", True
    )  # as the driver
    with pytest.raises(AtlasError) as caught:
        run_pool(
            [actor],
            [Shard("fc8-00000", "fc8", (0,))],
            max_restarts=0,
            max_shard_retries=1,
            start_timeout_s=cfg.ray.start_timeout_s,  # the run's own: the test waits for the refusal
            log=lambda _m: None,
        )
    message = str(caught.value)
    assert message.startswith("no atlas worker could start: out_dir: this worker finds no run.json at ")
    assert "every node must reach out_dir" in message and "\n" not in message
    assert not (tmp_path / "unseen").exists()


def test_a_python_model_from_the_drivers_own_files_reaches_workers_without_them(
    tmp_path, micro_cache, ray_session, monkeypatch
):
    """A `python:` target whose module only the driver can import (a folder on the driver's sys.path, not
    installed): its code travels by value with the shipped models, so the actors need no copy."""
    source = (REPO / "tests" / "unit" / "byo_factories.py").read_text()
    # the factory's module, and the network's own class in a sibling module of the driver's folder
    (tmp_path / "driver_only_nets.py").write_text(
        source.replace("return net()", "return Wrapped(net())") + "\nfrom driver_only_layers import Wrapped\n"
    )
    (tmp_path / "driver_only_layers.py").write_text(
        "from torch import nn\n\n\nclass Wrapped(nn.Module):\n    def __init__(self, inner):\n"
        "        super().__init__()\n        self.inner = inner\n\n    def forward(self, x):\n"
        "        return self.inner(x)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = micro_config(
        tmp_path,
        micro_cache,
        "models.target=python:driver_only_nets:good",
        "models.allow_random_weights=true",
        "models.generator=null",
        "models.dae=null",
        "sampler.method=pixel",
        "sampler.start=random",
        "sampler.steps=2",
        "facets.real_images=null",
        "layers=[{name: inner.fc8, units: 0-1}]",
    )
    summary = run_atlas(cfg, progress=False)
    assert summary["units"] == 2
    assert table_count(tmp_path / cfg.name, "units", "WHERE layer = 'inner.fc8'") == 2
    # the network's own code is fingerprinted: a rerun by other code is refused, unless allowed
    recorded = json.loads((tmp_path / cfg.name / "run.json").read_text())["fingerprints"]["target"]
    assert sorted(recorded["code_files"]) == ["driver_only_layers.py", "driver_only_nets.py"]
    layers = tmp_path / "driver_only_layers.py"
    layers.write_text(layers.read_text().replace("return self.inner(x)", "return 2 * self.inner(x)"))
    with pytest.raises(AtlasError, match="other code of its target .*driver_only_layers.py"):
        run_atlas(cfg, progress=False)
    assert run_atlas(cfg, progress=False, allow_code_change=True)["nothing_to_do"]
