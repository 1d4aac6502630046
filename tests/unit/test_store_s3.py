"""The run store on an object store: the same writer and catalog over a real S3 API on 127.0.0.1."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from atlas.errors import AtlasError
from atlas.store import RunStore, open_run, run_query
from atlas.store.catalog import unit_sources
from atlas.store.location import Location, open_location
from atlas.store.png import encode_png
from tests.support.s3 import s3_server
from tests.unit.test_store import manifest, shard_rows

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def s3():
    server = s3_server()
    yield server
    server.stop()


def test_shards_land_as_whole_objects_and_read_back(s3, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may be written locally
    store = RunStore(s3.uri("runs", "a"))
    store.init_run(manifest(planned_shards=2))
    store.write_shard("fc8-0000", "fc8", shard_rows(units=(0, 1)))
    store.write_shard("fc8-0001", "fc8", shard_rows(units=(2,)))
    first = store.shard_files("fc8-0000")
    store.write_shard("fc8-0000", "fc8", shard_rows(units=(0, 1)))  # a late attempt: the first marker stands
    keys = s3.objects("runs/a")
    assert store.shard_files("fc8-0000") == first and f"{s3.bucket}/runs/a/{first['units']}" in keys
    assert sum("/units/layer=fc8/shard-fc8-0000~" in k for k in keys) == 1  # the late files removed
    assert f"{s3.bucket}/runs/a/_shards/fc8-0001.done" in keys
    assert not any(k.rsplit("/", 1)[-1].startswith(".") for k in keys)  # no temp objects
    assert list(tmp_path.iterdir()) == []
    assert store.completed_shards() == {"fc8-0000", "fc8-0001"}

    conn = open_run(s3.uri("runs", "a"))
    assert conn.execute("SELECT count(*), count(DISTINCT unit) FROM units").fetchone() == (3, 3)
    assert conn.execute("SELECT DISTINCT layer FROM chains").fetchall() == [("fc8",)]
    _, rows, _ = run_query(conn, "SELECT count(*) FROM images WHERE layer = 'fc8'")
    assert rows == [(6,)]
    src = unit_sources(conn, "fc8", 2)
    assert conn.execute(f"SELECT count(*) FROM {src['chains']} WHERE unit = 2").fetchone() == (2,)
    assert conn.execute("SELECT run_id, shards_done FROM run").fetchone() == ("a", 2)
    store.remove_marker("fc8-0001")  # redone after `verify --repair`: a second attempt's files, then
    store.write_shard("fc8-0001", "fc8", shard_rows(units=(2,)))
    assert sum("/units/layer=fc8/shard-fc8-0001~" in k for k in s3.objects("runs/a")) == 2
    store.finalize({"units": 3})  # the first attempt's files go: no marker names them
    assert sum("/units/layer=fc8/shard-fc8-0001~" in k for k in s3.objects("runs/a")) == 1
    assert open_run(s3.uri("runs", "a")).execute("SELECT count(*) FROM units").fetchone() == (3,)


def test_a_run_on_s3_exports_to_a_local_folder(s3, tmp_path):
    from viewer.export import ExportRequest, export_run

    store = RunStore(s3.uri("runs", "export"))
    store.init_run(manifest(planned_shards=1))
    picture = encode_png(np.full((4, 4, 3), 200, np.uint8))  # the export decodes every picture it writes
    store.write_shard("fc8-0000", "fc8", shard_rows(units=(0, 1, 2), png=picture))
    report = export_run(ExportRequest(s3.uri("runs", "export"), tmp_path / "out"), say=lambda _: None)
    assert report.layers == [("fc8", 3, 1)]
    conn = open_run(s3.uri("runs", "export"))
    for unit in range(3):
        (png,) = conn.execute(
            "SELECT png FROM images WHERE unit = ? AND kind = 'best' ORDER BY activation DESC LIMIT 1", [unit]
        ).fetchone()
        assert (tmp_path / "out" / "fc8" / f"unit-{unit}.png").read_bytes() == png


def test_unmarked_shard_is_invisible_and_reader_needs_no_extension(s3):
    store = RunStore(s3.uri("runs", "b"))
    store.init_run(manifest())
    store.write_shard("fc8-0000", "fc8", shard_rows())
    store.remove_marker("fc8-0000")
    assert open_run(s3.uri("runs", "b")).execute("SELECT count(*) FROM units").fetchone() == (0,)
    conn = open_run(s3.uri("runs", "b"), sandbox=False, include_partial=True)
    assert conn.execute("SELECT count(*) FROM units").fetchone() == (2,)
    loaded = conn.execute("SELECT extension_name FROM duckdb_extensions() WHERE loaded").fetchall()
    assert ("httpfs",) not in loaded and ("aws",) not in loaded


def test_location_pickles_to_its_uri_and_parent(s3):
    loc = open_location(s3.uri("runs", "c"))
    again = pickle.loads(pickle.dumps(loc))
    assert again == loc and again.uri == f"s3://{s3.bucket}/runs/c"
    assert loc.parent.uri == f"s3://{s3.bucket}/runs" and loc.name == "c"
    loc.check_writable()
    assert s3.objects("runs/c") == []


def test_a_store_that_keeps_uploads_other_than_written_is_refused_by_the_writable_check(s3, monkeypatch):
    """A trial: a driver without credentials wrote run.json to a store that takes unsigned uploads (moto)
    and keeps them framed (`10C7\r\n...`); only the workers noticed, blaming their own access. The
    driver's write check reads its probe back, and says so before anything of the run is written."""
    loc = open_location(s3.uri("runs", "framed"))
    plain = Location.read_bytes
    monkeypatch.setattr(Location, "read_bytes", lambda self, rel: b"10C7\r\n" + plain(self, rel))
    monkeypatch.setattr("atlas.store.location.time.sleep", lambda _s: None)
    with pytest.raises(AtlasError) as err:
        loc.check_writable()
    said = str(err.value)
    assert said.startswith(f"out_dir: s3://{s3.bucket}/runs/framed took a ") and "reads back" in said
    assert "credentials" in said and "\n" not in said and s3.objects("runs/framed") == []  # probe gone


def test_missing_bucket_is_one_line(s3):
    with pytest.raises(AtlasError) as err:
        Location(f"s3://no-such-bucket-{s3.bucket}/runs").check_writable()
    assert "no-such-bucket" in str(err.value) and "\n" not in str(err.value)


def test_local_out_dir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(AtlasError, match="is a file"):
        open_location(tmp_path / "afile" / "run").check_writable()


def test_unsupported_scheme_names_the_valid_ones():
    with pytest.raises(AtlasError, match="s3://bucket/prefix"):
        open_location("ftp://host/x")


def test_weights_and_code_stats_load_from_s3(s3, tmp_path):
    import pyarrow.fs as pafs
    import torch

    from atlas.errors import ModelError
    from atlas.models.codes import CodeStats
    from atlas.models.weights import file_fingerprint, load_state_dict_file

    net = torch.nn.Linear(3, 2)
    local = tmp_path / "w.pt"
    torch.save(net.state_dict(), local)
    stats = CodeStats(torch.zeros(4), torch.ones(4), torch.zeros(4), torch.ones(4) * 3, {}, "test")
    stats.save(tmp_path / "s.pt")
    fs = pafs.S3FileSystem(endpoint_override=s3.endpoint)
    for name in ("w.pt", "s.pt"):
        with fs.open_output_stream(f"{s3.bucket}/weights/{name}") as fh:
            fh.write((tmp_path / name).read_bytes())
    state = load_state_dict_file(s3.uri("weights", "w.pt"))
    assert torch.equal(state["weight"], net.weight.detach())
    assert file_fingerprint(s3.uri("weights", "w.pt")) == file_fingerprint(local)
    assert torch.equal(CodeStats.load(s3.uri("weights", "s.pt")).upper, stats.upper)
    with pytest.raises(ModelError, match="not found"):
        load_state_dict_file(s3.uri("weights", "missing.pt"))


def test_weights_and_code_stats_on_an_endpoint_only_the_storage_section_names(s3, tmp_path, monkeypatch):
    """No AWS_ENDPOINT_URL anywhere: the run config's storage.endpoint_override reaches the weights, the
    code statistics and their fingerprints (read once each), as it reaches out_dir."""
    import pyarrow.fs as pafs
    import torch

    from atlas.config import load_config
    from atlas.models.codes import CodeStats
    from atlas.models.registry import load_run_model
    from atlas.models.weights import file_fingerprint
    from atlas.pipeline.models_setup import build_models
    from tests.unit.test_models import tiny_cnn

    net = tiny_cnn()
    torch.save(net.state_dict(), tmp_path / "t.pt")
    CodeStats(torch.zeros(4), torch.ones(4), torch.zeros(4), torch.ones(4) * 3, {}, "test").save(
        tmp_path / "s.pt"
    )
    fs = pafs.S3FileSystem(endpoint_override=s3.endpoint)
    for name in ("t.pt", "s.pt"):
        with fs.open_output_stream(f"{s3.bucket}/elsewhere/{name}") as fh:
            fh.write((tmp_path / name).read_bytes())
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    sets = [
        "models.target.spec=python:tests.unit.test_models:tiny_cnn",
        f"models.target.weights={s3.uri('elsewhere', 't.pt')}",
        "models.target.preprocess.size=16",
        f"models.code_stats={s3.uri('elsewhere', 's.pt')}",
        f"storage.endpoint_override={s3.endpoint}",
    ]
    cfg = load_config(REPO / "configs" / "micro.yaml", sets)
    target = load_run_model(cfg, "target")
    assert torch.equal(target.module[0].weight, net[0].weight.detach())
    assert target.fingerprint == file_fingerprint(tmp_path / "t.pt")
    models = build_models(
        cfg.model_copy(update={"models": cfg.models.model_copy(update={"generator": None})})
    )
    assert torch.equal(models.code_stats.upper, torch.ones(4) * 3)
    assert models.fingerprints()["code_stats"]["fingerprint"] == file_fingerprint(tmp_path / "s.pt")


def test_the_drivers_endpoint_travels_with_the_run_to_nodes_without_it(s3, tmp_path, monkeypatch):
    """AWS_ENDPOINT_URL set only where the driver runs: the Location the actors get carries it."""
    from atlas.config import load_config
    from atlas.pipeline.driver import run_location

    cfg = load_config(REPO / "configs" / "micro.yaml", [f"out_dir={s3.uri('runs')}", "name=endpoint"])
    loc = run_location(cfg)
    assert loc.options["endpoint_override"] == s3.endpoint
    RunStore(loc).init_run(manifest())
    monkeypatch.delenv("AWS_ENDPOINT_URL")  # a worker node without the variable
    arrived = pickle.loads(pickle.dumps(loc))
    assert RunStore(arrived).manifest()["config_hash"] == manifest()["config_hash"]
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)  # a trial: an upper-case scheme ran without it
    upper = load_config(REPO / "configs" / "micro.yaml", [f"out_dir=S3://{s3.bucket}/runs", "name=endpoint"])
    assert run_location(upper).options["endpoint_override"] == s3.endpoint


def test_a_location_arriving_in_a_worker_opens_its_store_at_first_use(monkeypatch):
    """Made while Ray unpickled an actor's arguments, a store the node could not open (no region lookup, no
    route) raised before the worker's constructor, which tells the driver in one line: Ray printed its
    traceback from every actor (a trial). The copy that arrives makes its filesystem at first use."""
    from atlas.store import location

    loc = Location("s3://bucket/runs/a", {"endpoint_override": "http://127.0.0.1:9"})
    opened = []

    def unreachable(uri, *_args):
        opened.append(uri)
        raise AtlasError(f"out_dir: cannot open {uri!r}: no route to the store")

    monkeypatch.setattr(location, "make_filesystem", unreachable)
    arrived = pickle.loads(pickle.dumps(loc))
    assert opened == [] and arrived.uri == loc.uri and not arrived.local  # nothing opened on arrival
    with pytest.raises(AtlasError, match="out_dir: cannot open 's3://bucket/runs/a': no route"):
        arrived.fs  # noqa: B018 - the first use opens it
    assert opened == ["s3://bucket/runs/a"]


def test_the_object_store_lock_goes_by_heartbeat_and_a_reused_pid_never_blocks_for_good(s3):
    import json
    import os
    import socket
    import time

    from atlas.store.lock import REMOTE_LOCK, STALE_S, RunLock

    loc = open_location(s3.uri("runs", "locked"))
    here, now, old = socket.gethostname(), time.time(), time.time() - 2 * STALE_S
    for holder, busy in (
        ({"host": "other", "pid": 1, "heartbeat": now}, True),  # another driver, beating
        ({"host": "other", "pid": 1, "heartbeat": old}, False),  # it stopped beating long ago
        ({"host": here, "pid": os.getppid(), "heartbeat": now}, True),  # a live process here, beating
        ({"host": here, "pid": os.getppid(), "heartbeat": old}, False),  # its pid lives on, it does not beat
        ({"host": here, "pid": 2**22 + 7, "heartbeat": now}, False),  # crashed here a moment ago
        ({"host": here, "pid": os.getpid(), "heartbeat": old}, False),  # a pid reused since (even by us)
    ):
        loc.write_bytes(REMOTE_LOCK, json.dumps(holder).encode())
        assert (RunLock(loc).holder() is not None) == busy  # what verify says agrees with what a run does
        if busy:
            with pytest.raises(AtlasError, match="is being written by another atlas run"):
                RunLock(loc).check_free()  # what `atlas run` asks before it starts Ray
            with pytest.raises(AtlasError, match="is being written by another atlas run"):
                RunLock(loc).acquire()
        else:
            RunLock(loc).acquire().release()
            assert not loc.is_file(REMOTE_LOCK)
