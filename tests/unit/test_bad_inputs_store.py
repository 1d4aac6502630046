"""Bad input to the commands that read runs (`atlas sql`, `atlas verify`, `atlas view`): exit 2, one
`atlas: error:` line naming the culprit, no traceback, nothing written, and the run unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest

from atlas.cli import main
from atlas.store import RunStore, open_run
from tests.unit.test_store import manifest, shard_rows

pytestmark = pytest.mark.unit


@pytest.fixture()
def run(tmp_path) -> Path:
    store = RunStore(tmp_path / "run")
    store.init_run(manifest())
    store.write_shard("fc8-0000", "fc8", shard_rows(units=(0, 1)))
    (tmp_path / "afile").write_text("not a run")
    (tmp_path / "empty").mkdir()
    (tmp_path / "lost" / "_shards").mkdir(parents=True)  # a run whose run.json was deleted
    (tmp_path / "lost" / "_shards" / "fc8-0000.done").write_text("{}")
    RunStore(tmp_path / "project" / "runs" / "r1").init_run(manifest())  # a project's folder, runs below
    return tmp_path / "run"


CASES = [
    (["sql", "{tmp}/missing", "SELECT 1"], ("missing", "does not exist")),
    (["sql", "{tmp}/empty", "SELECT 1"], ("empty", "not an atlas run")),
    (["sql", "{tmp}/afile", "SELECT 1"], ("afile",)),
    (["sql", "ftp://host/run", "SELECT 1"], ("ftp://", "s3://bucket/prefix")),
    (["sql", "s3://", "SELECT 1"], ("names no bucket",)),
    (["sql", "file://runs/demo", "SELECT 1"], ("names the host 'runs'", "file:///data/runs")),
    (["sql", "{run}", "DROP TABLE units"], ("read-only", "DROP")),
    (["sql", "{run}", "SELECT 1; DROP TABLE units"], ("one statement at a time",)),
    (["sql", "{run}", "DELETE FROM units"], ("read-only", "DELETE")),
    (["sql", "{run}", "INSERT INTO units SELECT * FROM units"], ("read-only", "INSERT")),
    (["sql", "{run}", "CREATE TABLE x AS SELECT 1"], ("read-only", "CREATE")),
    (["sql", "{run}", "COPY units TO '{tmp}/leak.csv'"], ("read-only", "COPY")),
    (["sql", "{run}", "ATTACH '{tmp}/leak.db' AS leak"], ("read-only", "ATTACH")),
    (["sql", "{run}", "INSTALL httpfs"], ("read-only",)),
    (["sql", "{run}", "LOAD httpfs"], ("read-only",)),
    (["sql", "{run}", "SET enable_external_access=true"], ("read-only",)),
    (["sql", "{run}", "SELECT * FROM read_csv('/etc/passwd')"], ("/etc/passwd",)),
    (["sql", "{run}", "SELECT * FROM read_parquet('{tmp}/afile')"], ("afile",)),
    (["sql", "{run}", "SELECT * FROM nonexistent_table"], ("nonexistent_table",)),
    (["sql", "{run}", "SELEC 1"], ("syntax error",)),
    (["sql", "{run}", ""], ("empty query",)),
    (["sql", "", "SELECT 1"], ("RUN_DIR: '' is an empty path",)),
    (["verify", ""], ("RUN: '' is an empty path",)),
    (["view", ""], ("RUN_DIR: '' is an empty path",)),
    (["config", ""], ("CONFIG: empty path",)),
    (["bench", "viewer", "--run", ""], ("--run: empty path",)),
    (["toyworld", "show", "--no-train", "--out", ""], ("--out: empty path",)),
    (["bootstrap", "--config", ""], ("--config: empty path",)),
    (["bootstrap", "--preset", "micro", "--cache-dir", ""], ("--cache-dir: empty path",)),
    (["verify", "{tmp}/missing"], ("missing", "does not exist")),
    (["verify", "{tmp}/empty"], ("not an atlas run",)),
    (["view", "{tmp}/missing"], ("missing", "does not exist")),
    (["view", "{tmp}/empty"], ("empty", "not an atlas run")),
    (["view", "{tmp}/lost"], ("lost holds completed shards but no run.json", "the same `atlas run`")),
    (["sql", "{tmp}/lost", "SELECT 1"], ("lost holds completed shards but no run.json",)),
    (["verify", "{tmp}/lost"], ("lost holds completed shards but no run.json",)),
    (["view", "{tmp}/project"], ("project holds no atlas run, but {tmp}/project/runs holds runs (r1)",)),
    (["sql", "{tmp}/project", "SELECT 1"], ("pass one of them, e.g. {tmp}/project/runs/r1",)),
    # a URI where atlas writes locally: refused, not written to a local `s3:` folder and said done (a trial)
    (
        ["export", "{run}", "--out", "s3://b/exports/demo"],
        ("--out: 's3://b/exports/demo' is a URI", "local path"),
    ),
    (["verify", "{run}", "--json", "gs://b/v.json"], ("--json: 'gs://b/v.json' is a URI",)),
    # the run folder itself: the example given is a file outside it, not one inside it that is refused next
    (
        ["verify", "{run}", "--json", "{run}"],
        ("is inside the run", "; write it outside, e.g. ", "-verify.json"),
    ),
    (["bench", "viewer", "--run", "{run}", "--json", "s3://b/r.json"], ("--json: 's3://b/r.json' is a URI",)),
    (["bench", "quality", "--out", "s3://b/grids"], ("--out: 's3://b/grids' is a URI",)),
    (["view", "{run}", "--port", "70000"], ("--port", "70000 is not an integer from 1 to 65535")),
    (["view", "{run}", "--host", ""], ("--host: empty", "127.0.0.1")),
    (["view", "{run}", "--host", "no such.invalid"], ("--host 'no such.invalid': no such address",)),
    (["view", "{run}", "--host", "8.8.8.8"], ("--host 8.8.8.8: not an address of this machine",)),
]


@pytest.mark.parametrize("argv, expect", CASES, ids=[" ".join(c[0][:3])[:60] for c in CASES])
def test_run_readers_refuse_bad_input_in_one_line(run, tmp_path, capsys, argv, expect):
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    argv = [a.replace("{tmp}", str(tmp_path)).replace("{run}", str(run)) for a in argv]
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse's own checks (option types) exit from the parser
        code = stop.code
    assert code == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("atlas: error:"), err
    assert "Traceback" not in err
    for fragment in expect:
        assert fragment.replace("{tmp}", str(tmp_path)) in lines[0], lines[0]
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before, "something was written"
    assert open_run(run).execute("SELECT count(*) FROM units").fetchone() == (2,)


def test_view_and_run_view_refuse_a_port_in_use_before_any_work(run, tmp_path, capsys):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        assert main(["view", str(run), "--port", port]) == 2
        assert f"--port {port}: already in use on 127.0.0.1; choose another" in capsys.readouterr().err
        assert main(["run", str(tmp_path / "no-config-read-yet.yaml"), "--view", "--port", port]) == 2
        assert f"--port {port}: already in use" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "x.yaml"), "--port", port]) == 2
    assert "used only with --view" in capsys.readouterr().err


def test_view_refuses_a_run_json_that_is_not_json(run, capsys):
    (run / "run.json").write_text("{not json")
    assert main(["view", str(run)]) == 2
    assert "run.json is not valid JSON" in capsys.readouterr().err


def test_an_argument_with_bytes_that_are_not_utf8_is_one_line(capsys):
    with pytest.raises(SystemExit) as stop:  # what Python makes of the byte 0xff in argv
        main(["sql", "pr\udcffistine", "SELECT 1"])
    assert stop.value.code == 2
    assert (
        capsys.readouterr().err
        == "atlas: error: argument 'pr\\udcffistine' holds bytes that are not UTF-8 text\n"
    )


def test_view_serves_a_run_with_damaged_shards_said_and_refuses_a_damaged_run_json(run, capsys, monkeypatch):
    """Damaged shards (an unreadable marker, a file gone): `atlas view` says so in one line and serves the
    rest (the pages leave those shards out and say which); a run.json the readers refuse: one line, exit 2,
    no server."""
    import json
    import subprocess

    from atlas.commands.options import free_port

    class Started(Exception):
        pass

    def started(*_a, **_k):
        raise Started

    monkeypatch.setattr(subprocess, "Popen", started)
    port = str(free_port("127.0.0.1", 8697))
    marker = run / "_shards" / "fc8-0000.done"
    marker.write_text(json.dumps({**json.loads(marker.read_text()), "rows": {"units": None}}))
    with pytest.raises(Started):
        main(["view", str(run), "--port", port])
    err = capsys.readouterr().err
    assert err.startswith("atlas: warning: run ") and len(err.splitlines()) == 1, err
    assert "shard fc8-0000's marker is unreadable; `atlas verify" in err
    assert err.rstrip().endswith("the viewer shows the rest"), err
    manifest = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**manifest, "status": "bananas"}))
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: pytest.fail("the server started"))
    assert main(["view", str(run), "--port", port]) == 2
    err = capsys.readouterr().err
    assert 'status = "bananas"' in err and len(err.splitlines()) == 1, err
