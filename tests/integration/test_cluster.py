"""A multi-node Ray cluster on this machine and an S3 API on 127.0.0.1: the run lives in the object
store, actors get their models from the driver, and losing an actor, a node or the driver loses nothing.

Cluster: a head with no CPUs (the driver only), worker node "cpu" (1 CPU) and worker node "gpu" (1 CPU,
declares 1 GPU: the one-actor-per-GPU path schedules there; torch then sees no CUDA and computes on CPU).
Each worker node has its own empty ``ATLAS_CACHE``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from atlas.config import load_config
from atlas.errors import ConfigError
from atlas.pipeline import run_atlas
from atlas.pipeline.cluster import LOCAL_SYSTEM_CONFIG
from atlas.store import open_run
from atlas.store.location import open_location
from tests.support.local_ray import start_local_ray
from tests.support.s3 import s3_server
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.cluster]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def s3():
    server = s3_server()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def cluster(s3, tmp_path_factory):
    """Head (0 CPU) + two 1-CPU worker nodes with their own empty caches; the shared local Ray (if any)
    is stopped for the module and restarted afterwards."""
    import ray
    from ray.cluster_utils import Cluster

    had_local = ray.is_initialized()
    ray.shutdown()
    caches = {name: tmp_path_factory.mktemp(f"node-cache-{name}") for name in ("cpu", "gpu")}
    c = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 0, "_system_config": dict(LOCAL_SYSTEM_CONFIG)}
    )
    nodes = {
        "cpu": c.add_node(num_cpus=1, env_vars={"ATLAS_CACHE": str(caches["cpu"])}),
        "gpu": c.add_node(num_cpus=1, num_gpus=1, env_vars={"ATLAS_CACHE": str(caches["gpu"])}),
    }
    ray.init(address=c.address, logging_level="ERROR", log_to_driver=False)
    wait_for(lambda: len([n for n in ray.nodes() if n["Alive"]]) == 3, 120, "three alive Ray nodes")
    yield {"cluster": c, "nodes": nodes, "caches": caches}
    ray.shutdown()
    c.shutdown()
    if had_local:
        start_local_ray()


def micro(out_dir: str, cache: str, *extra: str):
    return load_config(
        REPO / "configs" / "micro.yaml", [f"out_dir={out_dir}", f"toyworld.cache_dir={cache}", *extra]
    )


def counts(uri: str) -> dict[str, int]:
    conn = open_run(uri)
    q = {
        "units": "SELECT count(*) FROM units",
        "distinct_units": "SELECT count(*) FROM (SELECT DISTINCT layer, unit FROM units)",
        "chains": "SELECT count(*) FROM chains",
        "distinct_chains": "SELECT count(*) FROM (SELECT DISTINCT layer, unit, chain FROM chains)",
        "images": "SELECT count(*) FROM images",
        "distinct_images": "SELECT count(*) FROM "
        "(SELECT DISTINCT layer, unit, chain, kind, step, real_index FROM images)",
    }
    return {k: conn.execute(sql).fetchone()[0] for k, sql in q.items()}


def markers(uri: str) -> dict[str, bytes]:
    loc = open_location(uri)
    return {e.name: loc.read_bytes(f"_shards/{e.name}") for e in loc.list_files("_shards", suffix=".done")}


def workers(uri: str) -> list[dict]:
    loc = open_location(uri)
    return [
        json.loads(loc.read_bytes(f"_workers/{e.name}")) for e in loc.list_files("_workers", suffix=".json")
    ]


def assert_exact(uri: str, units: int, chains_per_unit: int) -> None:
    got = counts(uri)
    assert got["units"] == got["distinct_units"] == units, got
    assert got["chains"] == got["distinct_chains"] == units * chains_per_unit, got
    assert got["images"] == got["distinct_images"] > 0, got


def twenty_unit_run(s3, cache: str, prefix: str, workers: int, steps: int):
    """A micro run of 10 two-unit shards into s3://.../<prefix>, started in a thread:
    (run uri, config, thread, outcome dict, log lines)."""
    cfg = micro(
        s3.uri(prefix),
        cache,
        "ray.gpus_per_worker=0",
        f"ray.num_workers={workers}",
        "ray.units_per_shard=2",
        f"sampler.steps={steps}",
        "layers.1.units=0-9",
    )
    logs: list[str] = []
    outcome: dict = {}
    thread = threading.Thread(target=lambda: outcome.update(run_atlas(cfg, progress=False, log=logs.append)))
    return s3.uri(prefix, "micro"), cfg, thread, outcome, logs


def test_s3_run_on_three_nodes_gpu_actor_shipped_models(cluster, s3, micro_cache, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = s3.uri("runs")
    cfg = micro(uri, micro_cache)
    summary = run_atlas(cfg, progress=False, log=lambda *_: None)
    run = f"{uri}/micro"
    assert summary["run_dir"] == run
    assert_exact(run, 14, cfg.sampler.chains_per_unit)
    assert list(tmp_path.iterdir()) == [], "an s3:// run wrote to local disk"
    (info,) = workers(run)  # one GPU in the cluster: one actor, on the GPU node
    assert info["cuda_visible_devices"] == "0" and info["device"] == "cpu" and info["shipped"]
    assert info["node"] == cluster["nodes"]["gpu"].node_id
    for cache in cluster["caches"].values():  # no actor trained or even looked for a toy world
        assert list(cache.iterdir()) == []

    sql = subprocess.run(
        [sys.executable, "-m", "atlas", "sql", run, "SELECT count(*) AS n FROM units", "--format", "csv"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert sql.returncode == 0, sql.stderr
    assert sql.stdout.split() == ["n", "14"]

    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("ATLAS_RUN_DIR", run)
    at = AppTest.from_file(str(REPO / "viewer" / "app.py"), default_timeout=120).run()
    assert not at.exception, at.exception
    assert any("micro" in t.value for t in at.title)


def test_local_out_dir_on_a_multi_node_cluster_is_refused(cluster, micro_cache, tmp_path):
    out = tmp_path / "runs"
    with pytest.raises(ConfigError) as err:
        run_atlas(micro(str(out), micro_cache), progress=False, log=lambda *_: None)
    message = str(err.value)
    assert "s3://" in message and "storage.shared" in message and "\n" not in message
    assert not out.exists(), "a refused run wrote files"
    cli = subprocess.run(
        [sys.executable, "-m", "atlas", "run", str(REPO / "configs" / "micro.yaml"), "--no-progress",
         "--address", cluster["cluster"].address, "--set", f"out_dir={out}",
         "--set", f"toyworld.cache_dir={micro_cache}"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert cli.returncode == 2, cli.stderr[-2000:]
    errors = [line for line in cli.stderr.splitlines() if line.startswith("atlas: error:")]
    assert len(errors) == 1 and "storage.shared" in errors[0] and "Traceback" not in cli.stderr
    assert not out.exists(), "a refused run wrote files"


def test_actor_sigkill_under_cpu_load_counts_one_death(cluster, s3, micro_cache):
    run, cfg, thread, outcome, logs = twenty_unit_run(s3, micro_cache, "sigkill", workers=1, steps=30)
    hog = [
        subprocess.Popen([sys.executable, "-c", f"import os\nwhile os.getppid() == {os.getpid()}: pass"])
        for _ in range(2)
    ]  # both cores busy until the kill below (or until this process dies: no orphans)
    try:
        thread.start()
        wait_for(lambda: markers(run) and workers(run), 600, "a worker that finished a shard")
        os.kill(workers(run)[0]["pid"], signal.SIGKILL)
        thread.join(timeout=900)
    finally:
        for p in hog:
            p.kill()
    assert not thread.is_alive() and outcome, f"run did not complete after the kill; log: {logs}"
    assert_exact(run, 20, cfg.sampler.chains_per_unit)
    assert any("1 worker death(s) survived" in line for line in logs), logs


def test_killed_driver_resumes_from_markers_in_the_store(cluster, s3, micro_cache):
    run = s3.uri("driver", "micro")
    args = [
        sys.executable, "-m", "atlas", "run", str(REPO / "configs" / "micro.yaml"), "--no-progress",
        "--address", cluster["cluster"].address,
        "--set", f"out_dir={s3.uri('driver')}", "--set", f"toyworld.cache_dir={micro_cache}",
        "--set", "ray.gpus_per_worker=0", "--set", "ray.num_workers=2", "--set", "ray.units_per_shard=2",
        "--set", "sampler.steps=30", "--set", "layers.1.units=0-9",
    ]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: markers(run) or proc.poll() is not None, 600, "the first completed shard")
    finally:
        proc.kill()
        proc.wait(timeout=60)
    before = markers(run)
    assert 1 <= len(before) < 10, f"{len(before)} shards were complete when the driver was killed"
    rerun = subprocess.run(args, capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "already complete" in rerun.stdout + rerun.stderr
    # the workers find their models through the run's BundleHolder: no object reference in their
    # constructor's arguments, so Ray has no restart to warn about (ray-project/ray#53727)
    assert "constructor arguments in the object store" not in rerun.stdout + rerun.stderr
    after = markers(run)
    assert len(after) == 10
    assert {k: after[k] for k in before} == before, "a completed shard was recomputed"
    assert_exact(run, 20, 2)


def test_removed_node_mid_run_loses_nothing(cluster, s3, micro_cache):
    """Last in the module: it takes the "cpu" node away (its actor cannot be placed again)."""
    run, cfg, thread, outcome, logs = twenty_unit_run(s3, micro_cache, "node", workers=2, steps=60)
    thread.start()
    node = cluster["nodes"]["cpu"]
    wait_for(
        lambda: markers(run) and any(w["node"] == node.node_id for w in workers(run)),
        600,
        "a completed shard and a worker on the node to remove",
    )
    done_at_removal = len(markers(run))
    cluster["cluster"].remove_node(node)
    thread.join(timeout=900)
    assert done_at_removal < 10, "the run finished before the node was removed: nothing was tested"
    assert not thread.is_alive() and outcome, f"run did not complete after the node was removed; log: {logs}"
    assert_exact(run, 20, cfg.sampler.chains_per_unit)
    assert outcome["shards"] == 10
