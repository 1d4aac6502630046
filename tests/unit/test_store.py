"""Run store: atomic idempotent shard writes, manifest checks, DuckDB catalog and its sandbox."""

from __future__ import annotations

import contextlib
import json
import os
import re
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest

from atlas.bench.synthetic_run import make_synthetic_run
from atlas.config import config_data_hash
from atlas.errors import AtlasError
from atlas.store import RunStore, decode_png, encode_png, open_run, run_query
from atlas.store.queries import check_read_only
from atlas.store.schema import SCHEMA_VERSION, SCHEMAS

pytestmark = pytest.mark.unit


def manifest(config_hash: str | None = None, **extra):
    """A run.json's fields; ``config_hash`` by default the config's own (what `atlas verify` checks)."""
    config = extra.pop("config", {"name": "t", "layers": ["fc8"]})
    return {
        "config": config,
        "config_hash": config_hash or config_data_hash(config),
        "fingerprints": {"target": "sha256:0"},
        "versions": {"atlas": "0.1.0"},
        "git_sha": "deadbeef",
        "created": "2026-11-23T00:00:00+00:00",
        **extra,
    }


def shard_rows(units=(0, 1), chains=2, png=b"\x89PNG fake"):
    rows = {"units": [], "chains": [], "images": [], "steps": [], "activations": []}
    for u in units:
        rows["units"].append({"unit": u, "kind": "output", "best_activation": 1.0 + u, "facet_count": 1})
        for c in range(chains):
            rows["chains"].append({"unit": u, "chain": c, "seed": c, "diverged": False, "method": "dgn_am"})
            rows["images"].append({"unit": u, "chain": c, "kind": "best", "step": 5, "png": png})
            rows["steps"].extend({"unit": u, "chain": c, "step": s, "activation": 0.1 * s} for s in range(3))
            rows["activations"].append(
                {"unit": u, "chain": c, "values": np.arange(4, dtype=np.float32), "top_units": [u]}
            )
    return rows


@pytest.fixture()
def store(tmp_path):
    s = RunStore(tmp_path / "run")
    s.init_run(manifest(planned_shards=2))
    return s


def test_write_shard_layout_and_counts(store):
    counts = store.write_shard("fc8-0000", "fc8", shard_rows())
    assert counts == {"units": 2, "chains": 4, "images": 4, "steps": 12, "activations": 4}
    run = Path(store.uri)
    files = store.shard_files("fc8-0000")
    assert set(files) == set(counts) and all((run / rel).is_file() for rel in files.values())
    assert re.fullmatch(r"units/layer=fc8/shard-fc8-0000~[0-9a-f]{8}\.parquet", files["units"])
    assert (run / "_shards" / "fc8-0000.done").is_file()
    assert not list(run.rglob("*.tmp"))
    assert store.completed_shards() == {"fc8-0000"}
    marker = json.loads((run / "_shards" / "fc8-0000.done").read_text())
    assert marker["rows"]["steps"] == 12 and marker["layer"] == "fc8"


def test_schema_metadata_and_uncompressed_png(store):
    store.write_shard("fc8-0000", "fc8", shard_rows())
    path = Path(store.uri) / store.shard_files("fc8-0000")["images"]
    f = pq.ParquetFile(path)
    meta = f.schema_arrow.metadata
    assert meta[b"atlas.schema_version"] == str(SCHEMA_VERSION).encode()
    assert meta[b"atlas.table"] == b"images" and meta[b"atlas.shard"] == b"fc8-0000"
    assert "layer" not in f.schema_arrow.names  # the partition directory carries it
    col = f.metadata.row_group(0).column(f.schema_arrow.names.index("png"))
    assert col.compression == "UNCOMPRESSED"
    assert f.schema_arrow.field("unit").type == SCHEMAS["images"].field("unit").type


def test_retry_overwrites_no_duplicates(store):
    store.write_shard("fc8-0000", "fc8", shard_rows(units=(0, 1)))
    store.write_shard("fc8-0001", "fc8", shard_rows(units=(2,)))
    store.write_shard("fc8-0000", "fc8", shard_rows(units=(0, 1)))  # retried shard
    conn = open_run(Path(store.uri))
    assert conn.execute("SELECT count(*), count(DISTINCT unit) FROM units").fetchone() == (3, 3)
    assert (
        conn.execute("SELECT count(*) FROM (SELECT DISTINCT unit, chain, step FROM steps)").fetchone()[0]
        == conn.execute("SELECT count(*) FROM steps").fetchone()[0]
    )


def test_marker_written_last(store, monkeypatch):
    from atlas.store.location import Location

    order = []
    real = Location.write_bytes

    def spy(self, rel, data):
        order.append(rel.rsplit("/", 1)[-1])
        real(self, rel, data)

    monkeypatch.setattr(Location, "write_bytes", spy)
    store.write_shard("fc8-0000", "fc8", shard_rows())
    assert order[-1] == "fc8-0000.done"
    assert all(name.endswith(".parquet") for name in order[:-1]) and len(order) == 6


def test_failed_write_leaves_no_marker_and_no_partial_rows(store, monkeypatch):
    from atlas.store.location import Location

    real = Location.write_bytes

    def boom(self, rel, data):
        if rel.startswith("steps/"):
            raise AtlasError("cannot write steps: disk full")
        real(self, rel, data)

    monkeypatch.setattr(Location, "write_bytes", boom)
    with pytest.raises(AtlasError):
        store.write_shard("fc8-0000", "fc8", shard_rows())
    assert store.completed_shards() == set()
    conn = open_run(Path(store.uri))  # files without a marker are not shown
    assert conn.execute("SELECT count(*) FROM units").fetchone() == (0,)
    assert open_run(Path(store.uri), include_partial=True).execute(
        "SELECT count(*) FROM units"
    ).fetchone() == (2,)


def test_bad_rows_fail_before_writing(store):
    with pytest.raises(ValueError, match="unknown column"):
        store.write_shard("fc8-0000", "fc8", {"units": [{"unit": 1, "bogus": 2}]})
    with pytest.raises(ValueError, match="unknown table"):
        store.write_shard("fc8-0000", "fc8", {"unitz": []})
    with pytest.raises(ValueError, match="safe file name"):
        store.write_shard("../x", "fc8", {})
    assert not (Path(store.uri) / "units").exists()


def test_layer_key_in_rows_is_dropped(store):
    store.write_shard("fc8-0000", "fc8", {"units": [{"unit": 3, "layer": "fc8"}]})
    conn = open_run(Path(store.uri))
    assert conn.execute("SELECT layer, unit FROM units").fetchall() == [("fc8", 3)]


def test_config_hash_refusal_and_resume(store):
    first = json.loads((Path(store.uri) / "run.json").read_text())["git_sha"]
    store.init_run(manifest() | {"git_sha": "f00d"})  # same hash: resume is fine (here by other code)
    data = json.loads((Path(store.uri) / "run.json").read_text())
    assert data["status"] == "running" and len(data["resumed"]) == 1
    assert data["git_sha"] == first and data["resumed_git_sha"] == ["f00d"]  # the starting code kept
    store.init_run(manifest(config_hash="zzz"))  # the same config under another hash (an older atlas's)
    assert json.loads((Path(store.uri) / "run.json").read_text())["config_hash"] == "zzz"
    copied = manifest(config_hash="yyy") | {"config": {"name": "copy", "layers": ["fc8"]}}
    store.init_run(copied)  # a run copied to another folder resumes under that folder's name
    other = manifest(config_hash="xxx") | {"config": {"name": "t", "layers": ["fc7"], "ray": {"x": 1}}}
    with pytest.raises(
        AtlasError, match=r"different config \(layers.0 differs: the run's fc8, this config's fc7\)"
    ):
        store.init_run(other)  # what differs, named with both values (ray is not a result: not named)
    paired = RunStore(str(Path(store.uri).parent / "paired"))
    paired.init_run(manifest(config={"name": "t", "layers": [{"name": "fc8", "pairs": [[1, 2]]}]}))
    more = manifest(config={"name": "t", "layers": [{"name": "fc8", "pairs": [[1, 2], [4, 6]]}]})
    with pytest.raises(AtlasError, match=r"keeps its settings \(composite objectives among them: fixed with"):
        paired.init_run(more)  # a trial appended a pair to a run's layer


def test_a_config_that_adds_layers_extends_the_run(tmp_path):
    fc8 = {"name": "fc8", "units": "all"}
    store = RunStore(str(tmp_path / "r"))
    store.init_run(manifest(config={"seed": 0, "layers": [fc8]}))
    grown = {"seed": 0, "layers": [{"name": "conv3", "units": "0-7"}, fc8], "ray": {"actors": 4}}
    store.init_run(manifest(config_hash="grown", config=grown))  # a new layer, in any position
    data = json.loads((tmp_path / "r" / "run.json").read_text())
    assert data["config"] == grown and data["config_hash"] == "grown"
    assert [list(e.values()) for e in data["extended"]] == [[["layer conv3"]]]
    conv3, conv4 = grown["layers"][0], {"name": "conv4"}
    cases = [  # what a run cannot take, named
        ({"seed": 1, "layers": [conv3, fc8, conv4]}, r"\(seed differs: the run's 0, this config's 1\)"),
        ({"seed": 0, "layers": [conv3, {"name": "fc8", "units": "0-3"}, conv4]}, r"\(layers.1.units diff"),
        ({"seed": 0, "layers": [fc8, conv4]}, r"\(layer conv3 left out\); a run takes new"),
    ]
    for config, message in cases:
        with pytest.raises(AtlasError, match=message):
            store.init_run(manifest(config_hash="other", config=config))
    assert json.loads((tmp_path / "r" / "run.json").read_text())["config"] == grown  # nothing written


def test_more_units_of_a_held_layer_extend_the_run_when_its_groups_grow(tmp_path):
    store = RunStore(str(tmp_path / "r"))
    fc8 = {"name": "fc8", "units": "0-3"}
    store.init_run(manifest(config={"layers": [fc8]}, unit_groups={"fc8": [[0, 1, 2, 3]]}))
    wider = {"layers": [{"name": "fc8", "units": "all"}]}
    groups = {"fc8": [[0, 1, 2, 3], [4, 5, 6, 7, 8, 9]]}  # the held group first, then the new units
    store.init_run(manifest(config_hash="wider", config=wider, unit_groups=groups))
    data = json.loads((tmp_path / "r" / "run.json").read_text())
    assert [list(e.values()) for e in data["extended"]] == [[["6 more units of fc8"]]]
    assert data["unit_groups"] == groups
    for other in ({"fc8": [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]]}, {"fc8": [[4, 5, 6, 7, 8, 9]]}):  # cut otherwise
        again = manifest(config_hash="again", config={"layers": [{"name": "fc8", "units": "0-9"}]})
        refused = r"\(layers.0.units differs: the run's all, this config's 0-9\); a run takes new layers"
        with pytest.raises(AtlasError, match=refused):
            store.init_run(again | {"unit_groups": other})


def test_unit_groups_keep_the_held_cut_and_add_the_rest():
    from atlas.pipeline.plan import plan_groups, unit_groups

    assert unit_groups(None, [0, 1, 2]) == [[0, 1, 2]]
    assert unit_groups([[0, 1, 2]], [0, 1, 2]) == [[0, 1, 2]]
    assert unit_groups([[0, 1, 2]], [0, 1, 2, 3, 4, 10]) == [[0, 1, 2], [3, 4, 10]]  # 10: a composite
    assert unit_groups([[0, 1, 2], [3]], [3, 2, 1, 0, 5]) == [[0, 1, 2], [3], [5]]
    assert unit_groups([[0, 1, 2]], [0, 1]) == [[0, 1]]  # leaves out held units: the manifest check refuses
    shards = plan_groups({"fc8": [[0, 1, 2], [3, 4, 10]], "conv": [[7]]}, 2)
    assert [(s.id, s.units) for s in shards] == [
        ("fc8-00000", (0, 1)),
        ("fc8-00001", (2,)),  # the held group's cut, as the run made it
        ("fc8-00002", (3, 4)),
        ("fc8-00003", (10,)),
        ("conv-00000", (7,)),
    ]


def test_layer_extension_names_added_layers_and_what_blocks_them():
    from atlas.config import layer_extension

    old = {"sampler": {"steps": 100}, "layers": [{"name": "fc8", "units": "all"}], "out_dir": "runs"}
    assert layer_extension(old, old) == ([], [], [])
    wider = {**old, "layers": [*old["layers"], {"name": "conv4", "units": "0-3"}], "out_dir": "s3://b/x"}
    assert layer_extension(old, wider) == (["conv4"], [], [])  # where it is written is no result setting
    fewer = {**old, "layers": [{"name": "conv4"}], "sampler": {"steps": 50}}
    assert layer_extension(old, fewer) == (["conv4"], ["sampler.steps"], ["fc8"])
    moved = {**old, "layers": [{"name": "conv4"}, {"name": "fc8", "units": "0-3"}]}
    assert layer_extension(old, moved) == (["conv4"], ["layers.1.units"], [])  # named where it is now
    assert layer_extension(old, moved, units_may_grow={"fc8"}) == (["conv4"], [], [])


def test_config_differences_name_dotted_keys():
    from atlas.config import config_differences

    old = {"sampler": {"steps": 100, "dgn_am": {"lr": 0.5}}, "layers": [{"name": "fc8", "units": "all"}]}
    new = {"sampler": {"steps": 50, "dgn_am": {"lr": 0.5}}, "layers": [{"name": "fc8", "units": "0-3"}],
           "compute": {"batch_size": 8}, "seed": 1}  # fmt: skip
    assert config_differences(old, new) == ["layers.0.units", "sampler.steps", "seed"]
    assert config_differences(old, old) == []
    # a key that only one records, at null (another atlas version wrote it): the hash differs, so it is named
    assert config_differences({"models": {"encoder": None, "dae": None}}, {"models": {"dae": None}}) == [
        "models.encoder"
    ]


def test_resume_refuses_other_weights_behind_the_same_config(store):
    weights = {"target": {"weights": "t.pt", "fingerprint": "aaaa"}, "dae": {"fingerprint": "random:0"}}
    fresh = store.uri + "-2"
    other = RunStore(fresh)
    other.init_run(manifest(fingerprints=weights))
    other.init_run(manifest(fingerprints=weights))  # the same: a resume
    changed = {**weights, "target": {"weights": "t.pt", "fingerprint": "bbbb"}}
    with pytest.raises(AtlasError, match="was made with other target weights .*aaaa, now bbbb"):
        other.init_run(manifest(fingerprints=changed))
    before = json.loads((Path(fresh) / "run.json").read_text())
    assert before["fingerprints"] == weights and len(before["resumed"]) == 1  # the refusal wrote nothing
    other.init_run(manifest(fingerprints={}))  # an old run.json without them: nothing to compare


def test_resume_refuses_another_precision_and_names_the_runs_values(tmp_path):
    """compute is out of the config hash (where and how fast), but compute.autocast changes what a chain
    draws: a resume under another one is refused before one run holds shards of two precisions (a trial);
    a re-run of the run's first command after it grew names what the run now holds."""
    store = RunStore(str(tmp_path / "r"))
    config = {"seed": 0, "layers": [{"name": "fc8", "units": "0-7"}], "compute": {"autocast": "auto"}}
    store.init_run(manifest(config=config))
    batch = {**config, "compute": {"autocast": "auto", "batch_size": 8}}
    store.init_run(manifest(config=batch))  # another batch size: where and how fast, not what
    with pytest.raises(
        AtlasError,
        match=r"was made with compute.autocast: auto, and this config says none: "
        r"its shards would be computed in two precisions; resume with --set compute.autocast=auto",
    ):
        store.init_run(manifest(config={**config, "compute": {"autocast": "none"}}))
    first = {**config, "layers": [{"name": "fc8", "units": "0-3"}]}
    with pytest.raises(AtlasError, match=r"\(layers.0.units differs: the run's 0-7, this config's 0-3\)"):
        store.init_run(manifest(config_hash="first", config=first))
    # a layer key names the new config's position: the run's value is its layer of that name
    two = RunStore(str(tmp_path / "two"))
    two.init_run(
        manifest(config={"layers": [{"name": "fc8", "units": "0-9"}, {"name": "c5", "units": "0-7"}]})
    )
    moved = {"layers": [{"name": "c5", "units": "0-3"}, {"name": "fc8", "units": "0-9"}]}
    with pytest.raises(AtlasError, match=r"\(layers.0.units differs: the run's 0-7, this config's 0-3\)"):
        two.init_run(manifest(config_hash="moved", config=moved))


def test_resume_refuses_an_ensemble_member_with_other_weights(store):
    """``fingerprints.ensemble`` is a list (members in order): each member is compared as ``ensemble[i]``."""
    weights = {"target": {"fingerprint": "aaaa"}, "ensemble": [{"fingerprint": "m1"}, {"fingerprint": "m2"}]}
    other = RunStore(store.uri + "-3")
    other.init_run(manifest(fingerprints=weights))
    other.init_run(manifest(fingerprints=weights))  # the same members: a resume
    changed = {**weights, "ensemble": [{"fingerprint": "m1"}, {"fingerprint": "m9"}]}
    with pytest.raises(AtlasError, match=r"was made with other ensemble\[1\] weights .*m2, now m9"):
        other.init_run(manifest(fingerprints=changed))


def test_finalize(store):
    store.write_shard("fc8-0000", "fc8", shard_rows())
    store.finalize({"units": 2})
    assert json.loads((Path(store.uri) / "summary.json").read_text())["units"] == 2
    assert json.loads((Path(store.uri) / "run.json").read_text())["status"] == "complete"
    # written again (a resume, an extension): a pipeline read the finished run's totals while it ran (a trial)
    store.init_run(manifest())
    assert json.loads((Path(store.uri) / "run.json").read_text())["status"] == "running"
    assert not (Path(store.uri) / "summary.json").exists()


def test_png_roundtrip():
    img = (np.random.default_rng(0).random((8, 6, 3)) * 255).astype(np.uint8)
    assert np.array_equal(decode_png(encode_png(img)), img)
    with pytest.raises(ValueError):
        encode_png(img.astype(np.float32))


def test_open_run_errors(tmp_path):
    with pytest.raises(AtlasError, match="does not exist"):
        open_run(tmp_path / "nope")
    with pytest.raises(AtlasError, match="no run.json"):
        open_run(tmp_path)


def test_catalog_views_empty_tables_and_run_table(store):
    store.write_shard("fc8-0000", "fc8", {"units": [{"unit": 1}]})
    conn = open_run(Path(store.uri))
    assert conn.execute("SELECT count(*) FROM steps").fetchone() == (0,)  # empty view still binds
    assert conn.execute("SELECT count(*) FROM images WHERE layer = 'fc8'").fetchone() == (0,)
    run = conn.execute("SELECT config_hash, shards_done, planned_shards FROM run").fetchone()
    assert run == (manifest()["config_hash"], 1, 2)
    assert conn.execute("SELECT shard, units_rows FROM shards").fetchall() == [("fc8-0000", 1)]


def test_shards_table_says_where_and_in_what_precision_each_shard_ran(store):
    meta = {"seconds": 1.5, "precision": "bfloat16", "device": "cpu", "host": "node-a", "batch_size": 256}
    store.write_shard("fc8-0000", "fc8", {"units": [{"unit": 1}]}, meta=meta)
    store.write_shard("fc8-0001", "fc8", {"units": [{"unit": 2}]}, meta={"precision": "float32"})
    store.write_shard("fc8-0002", "fc8", {"units": [{"unit": 3}]})  # a marker without provenance
    store.write_shard("fc8-0003", "fc8", {"units": [{"unit": 4}]}, meta={"batch_size": "big"})  # not a count
    conn = open_run(Path(store.uri))
    rows = conn.execute(
        "SELECT shard, precision, device, host, seconds, batch_size FROM shards ORDER BY shard"
    ).fetchall()
    assert rows == [
        ("fc8-0000", "bfloat16", "cpu", "node-a", 1.5, 256),
        ("fc8-0001", "float32", None, None, None, None),
        ("fc8-0002", None, None, None, None, None),
        ("fc8-0003", None, None, None, None, None),
    ]


def test_new_nullable_column_unions_by_name(store):
    store.write_shard("fc8-0000", "fc8", shard_rows(units=(0,)))
    # an older file lacking a column that later files have: union_by_name fills nulls
    old = Path(store.uri) / "units" / "layer=conv3" / "shard-conv3-0000.parquet"
    old.parent.mkdir(parents=True)
    table = pq.read_table(Path(store.uri) / store.shard_files("fc8-0000")["units"])
    pq.write_table(table.drop_columns(["judge_prob"]), old)
    old_marker = {"layer": "conv3", "rows": {"units": 1}}  # an older run's: no attempt tags, no `files`
    (Path(store.uri) / "_shards" / "conv3-0000.done").write_text(json.dumps(old_marker))
    conn = open_run(Path(store.uri))
    assert conn.execute("SELECT layer, judge_prob FROM units ORDER BY layer").fetchall() == [
        ("conv3", None),
        ("fc8", None),
    ]


def test_reader_columns_and_a_shard_written_before_them(store):
    """The attribute reader's columns (issue 16) round-trip; a shard written before them reads as null."""
    rows = shard_rows(units=(0,))
    rows["units"][0] |= {"label": "red pill", "label_shown": 0.75, "reader_agreement": 0.9}
    for img in rows["images"]:
        img["reader_concepts"] = ["class:pill", "colour:red", "pos:top-left", "size:large"]
    store.write_shard("fc8-0000", "fc8", rows)
    run = Path(store.uri)
    for table, dropped in (("units", ["label_shown", "reader_agreement"]), ("images", ["reader_concepts"])):
        old = run / table / "layer=conv3" / "shard-conv3-0000.parquet"
        old.parent.mkdir(parents=True)
        pq.write_table(pq.read_table(run / store.shard_files("fc8-0000")[table]).drop_columns(dropped), old)
    old_marker = {"layer": "conv3", "rows": {"units": 1, "images": 4}}  # an older run's marker
    (run / "_shards" / "conv3-0000.done").write_text(json.dumps(old_marker))
    conn = open_run(run)
    got = conn.execute("SELECT layer, label_shown, reader_agreement FROM units ORDER BY layer").fetchall()
    assert got == [("conv3", None, None), ("fc8", 0.75, 0.9)]
    hits = conn.execute(
        "SELECT layer, count(*) FILTER (WHERE list_contains(reader_concepts, 'colour:red')) FROM images "
        "GROUP BY layer ORDER BY layer"
    ).fetchall()
    assert hits == [("conv3", 0), ("fc8", 2)]


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("syn") / "run"
    make_synthetic_run(run, layers={"fc8": 10, "conv3": 16}, chains=2, steps=40, images_per_chain=3, real_k=2)
    return run


def test_synthetic_run_counts(synthetic_run):
    conn = open_run(synthetic_run)
    assert conn.execute("SELECT count(*) FROM units").fetchone() == (26,)
    assert conn.execute("SELECT count(*) FROM chains").fetchone() == (52,)
    assert conn.execute("SELECT count(*) FROM images WHERE kind = 'real'").fetchone() == (52,)
    png = conn.execute("SELECT png FROM images WHERE kind = 'best' LIMIT 1").fetchone()[0]
    assert decode_png(png).shape == (48, 48, 3)
    assert conn.execute("SELECT status FROM run").fetchone() == ("complete",)


def test_the_python_example_of_the_sql_docs_runs(synthetic_run):
    """docs/sql.md's "From Python": a picture by ``execute(...).fetchone()`` (rows left unread), then a
    DataFrame by ``sql(...).df()`` on the same connection (DuckDB 2 refused it: an unfinished result)."""
    run = open_run(synthetic_run)
    png = run.execute(
        "SELECT png FROM images WHERE layer='fc8' AND unit=7 AND kind='best' ORDER BY activation DESC"
    ).fetchone()[0]  # more rows than the one fetched
    assert decode_png(png).shape == (48, 48, 3)
    best = run.sql("SELECT layer, unit, best_activation FROM units ORDER BY best_activation DESC").df()
    assert len(best) == 26
    run.execute("SELECT * FROM images").fetchone()
    assert run.execute("SELECT count(*) FROM units").fetchone() == (26,)


def test_run_query_good_and_capped(synthetic_run):
    conn = open_run(synthetic_run)
    cols, rows, truncated = run_query(
        conn, "SELECT layer, count(*) AS n FROM units GROUP BY layer ORDER BY 1"
    )
    assert cols == ["layer", "n"] and rows == [("conv3", 16), ("fc8", 10)] and not truncated
    cols, rows, truncated = run_query(conn, "SELECT * FROM range(100)", max_rows=7)
    assert len(rows) == 7 and truncated
    assert run_query(conn, "DESCRIBE units")[1]
    assert run_query(conn, "FROM steps LIMIT 1;")[1]


@pytest.mark.timeout(600)  # a hang guard (pytest-timeout), not a speed check: uncancelled, it runs for hours
def test_run_query_timeout(synthetic_run):
    conn = open_run(synthetic_run)
    slow = "SELECT count(*) FROM range(100000000000) a WHERE hash(a.range) % 7 = 3"
    with pytest.raises(AtlasError, match="cancelled"):
        run_query(conn, slow, timeout_s=0.5)
    assert run_query(conn, "SELECT 1")[1] == [(1,)]  # the connection still works


REFUSED = [
    "COPY units TO '/tmp/atlas-leak.csv'",
    "COPY (SELECT 1) TO '{run}/units/leak.parquet'",
    "ATTACH '/tmp/atlas-leak.db' AS leak",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET enable_external_access = true",
    "SET threads = 1",
    "RESET lock_configuration",
    "PRAGMA memory_limit = '64GB'",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_text('/etc/hostname')",
    "SELECT * FROM glob('/etc/*')",
    "SELECT * FROM read_parquet('{run}/../**/*.parquet')",
    "EXPORT DATABASE '/tmp/atlas-leak-export'",
]


@pytest.mark.parametrize("sql", REFUSED)
def test_console_refuses(synthetic_run, sql):
    sql = sql.format(run=synthetic_run)
    conn = open_run(synthetic_run)
    with pytest.raises(AtlasError):
        run_query(conn, sql)
    # and DuckDB's own sandbox refuses it too, even without the statement-type check
    with pytest.raises(AtlasError):
        run_query(conn, sql, read_only=False)
    assert not os.path.exists("/tmp/atlas-leak.csv") and not os.path.exists("/tmp/atlas-leak.db")
    assert not (synthetic_run / "units" / "leak.parquet").exists()
    assert conn.execute("SELECT current_setting('enable_external_access')").fetchone() == (False,)


def test_read_only_check_messages():
    with pytest.raises(AtlasError, match="read-only: COPY"):
        check_read_only("COPY units TO 'x.csv'")
    with pytest.raises(AtlasError, match="one statement"):
        check_read_only("SELECT 1; SELECT 2")
    with pytest.raises(AtlasError, match="read-only: CREATE"):
        check_read_only("CREATE TABLE t AS SELECT 1")
    for sql, word in (("CHECKPOINT", "CHECKPOINT"), ("use memory", "USE"), ("INSTALL httpfs", "INSTALL")):
        with pytest.raises(AtlasError, match=f"read-only: {word} statements are refused"):
            check_read_only(sql)  # named by their own word, not DuckDB's kind (CALL, SET, LOAD)
    check_read_only("WITH a AS (SELECT 1) SELECT * FROM a")


def test_unsandboxed_connection_is_ordinary(synthetic_run, tmp_path):
    """sandbox=False: settings and outside files are open (the sandboxed connection refuses both)."""
    outside = tmp_path / "outside.csv"
    outside.write_text("a\n1\n2\n")
    conn = open_run(synthetic_run, sandbox=False)
    conn.execute("SET threads = 1")
    assert conn.execute("SELECT current_setting('threads')").fetchone() == (1,)
    assert conn.execute(f"SELECT sum(a) FROM read_csv('{outside}')").fetchone() == (3,)
    assert conn.execute("SELECT count(*) FROM units").fetchone()[0] > 0
    sandboxed = open_run(synthetic_run)
    with pytest.raises(Exception, match="(?i)configuration|locked"):
        sandboxed.execute("SET threads = 1")
    with pytest.raises(Exception, match="(?i)permission|external|access"):
        sandboxed.execute(f"SELECT * FROM read_csv('{outside}')")


def test_unit_sources_read_only_the_right_files(synthetic_run):
    from atlas.store.catalog import unit_sources

    conn = open_run(synthetic_run)
    marker = json.loads((synthetic_run / "_shards" / "conv3-00001.done").read_text())
    assert marker["units"] == [8, 15]
    src = unit_sources(conn, "conv3", 9)
    assert "shard-conv3-00001~" in src["images"] and "conv3-00000" not in src["images"]
    for table in ("units", "chains", "images", "steps", "activations"):
        direct = conn.execute(f"SELECT count(*) FROM {src[table]} WHERE unit = 9").fetchone()
        view = conn.execute(f"SELECT count(*) FROM {table} WHERE layer = 'conv3' AND unit = 9").fetchone()
        assert direct == view and direct[0] > 0, table
    several = unit_sources(conn, "conv3", [1, 12])
    assert "conv3-00000" in several["units"] and "conv3-00001" in several["units"]
    none = unit_sources(conn, "conv3", 999)
    assert conn.execute(f"SELECT count(*) FROM {none['units']}").fetchone() == (0,)


def test_overlapping_attempts_at_one_shard_read_as_one_and_the_loser_is_swept(store, monkeypatch):
    """Two attempts at one shard (an actor Ray restarted while the old one still writes): the marker that
    lands names its own attempt's files, so every table reads from that one attempt, never a mix; the
    other attempt's files go when the run finishes. A shard of an older run (untagged file, marker
    without ``files``) still reads and is left alone."""
    import atlas.store.writer as writer
    from atlas.store.verify import verify_run

    real_write_json = writer.write_json

    class Killed(Exception):
        pass

    def killed_before_its_marker(loc, rel, data):
        raise Killed

    def another_attempt_meanwhile(loc, rel, data):  # B writes all its tables, dies; then A's marker
        monkeypatch.setattr(writer, "write_json", killed_before_its_marker)
        with pytest.raises(Killed):
            store.write_shard("fc8-0000", "fc8", shard_rows(chains=3, png=b"\x89PNG B"))
        real_write_json(loc, rel, data)

    monkeypatch.setattr(writer, "write_json", another_attempt_meanwhile)
    store.write_shard("fc8-0000", "fc8", shard_rows(chains=2, png=b"\x89PNG A"))
    monkeypatch.setattr(writer, "write_json", real_write_json)
    run = Path(store.uri)
    assert len(list(run.glob("*/layer=fc8/shard-fc8-0000~*.parquet"))) == 10  # both attempts' files
    legacy = run / "units" / "layer=conv3" / "shard-conv3-0000.parquet"
    legacy.parent.mkdir()
    legacy.write_bytes((run / store.shard_files("fc8-0000")["units"]).read_bytes())
    (run / "_shards" / "conv3-0000.done").write_text(json.dumps({"layer": "conv3", "rows": {"units": 2}}))

    def read(conn):
        return (
            conn.execute("SELECT count(*) FROM chains").fetchone()[0],
            conn.execute("SELECT list(DISTINCT png) FROM images").fetchone()[0],
            conn.execute("SELECT layer, count(*) FROM units GROUP BY layer ORDER BY layer").fetchall(),
        )

    assert read(open_run(run)) == (4, [b"\x89PNG A"], [("conv3", 2), ("fc8", 2)])
    assert verify_run(run).bad == {}
    store.finalize({"units": 2})
    assert len(list(run.glob("*/layer=fc8/shard-fc8-0000~*.parquet"))) == 5 and legacy.is_file()
    assert read(open_run(run)) == (4, [b"\x89PNG A"], [("conv3", 2), ("fc8", 2)])
    # a late attempt (the old actor, cut off, finishing after the run): the first marker stands
    marker = (run / "_shards" / "fc8-0000.done").read_bytes()
    store.write_shard("fc8-0000", "fc8", shard_rows(chains=3, png=b"\x89PNG C"))
    assert (run / "_shards" / "fc8-0000.done").read_bytes() == marker
    assert len(list(run.glob("*/layer=fc8/shard-fc8-0000~*.parquet"))) == 5
    assert read(open_run(run)) == (4, [b"\x89PNG A"], [("conv3", 2), ("fc8", 2)])


def test_an_unreadable_marker_is_damage_not_a_missing_shard(tmp_path):
    """A marker that is not JSON would hide its shard's rows (its files are named nowhere): the run is
    refused as damaged, verify --repair removes the marker, and a resumed run redoes the shard."""
    from atlas.config import load_config
    from atlas.pipeline.driver import _completed_shards, config_hash
    from atlas.pipeline.plan import plan_shards
    from atlas.store.verify import verify_run

    cfg = load_config(Path(__file__).parents[2] / "configs" / "micro.yaml")
    store = RunStore(tmp_path / "run")
    store.init_run(manifest(config_hash(cfg), planned_shards=2))
    store.write_shard("fc8-00000", "fc8", shard_rows(units=(0, 1)))
    store.write_shard("fc8-00001", "fc8", shard_rows(units=(2,)))
    run = Path(store.uri)
    (run / "_shards" / "fc8-00001.done").write_text("not json")
    with pytest.raises(AtlasError, match=r"damaged: shard fc8-00001's marker is unreadable; `atlas verify"):
        open_run(run)
    assert verify_run(run).bad == {"fc8-00001": "its marker is unreadable"}
    planned = {"config_hash": config_hash(cfg), "units_per_shard": 2}
    assert _completed_shards(store, store.manifest(), planned, plan_shards({"fc8": [0, 1, 2]}, 2)) == {
        "fc8-00000"
    }
    store.write_shard("fc8-00001", "fc8", shard_rows(units=(2,)))  # redone: replaces the unreadable one
    assert open_run(run).execute("SELECT count(*) FROM units").fetchone() == (3,)


def test_a_partial_read_takes_one_attempt_of_each_unfinished_shard(store):
    """include_partial (a crashed run) shows the newest attempt of a shard without a marker, never two
    attempts' rows at once."""
    import atlas.store.writer as writer

    def killed(loc, rel, data):
        raise RuntimeError("killed before the marker")

    run = Path(store.uri)
    real_write_json = writer.write_json
    writer.write_json = killed
    try:
        for png in (b"\x89PNG old", b"\x89PNG new"):
            for earlier in run.glob("*/layer=fc8/*.parquet"):  # the first attempt's files: long ago
                os.utime(earlier, ns=(10**18, 10**18))
            with pytest.raises(RuntimeError):
                store.write_shard("fc8-0000", "fc8", shard_rows(units=(0, 1), png=png))
    finally:
        writer.write_json = real_write_json
    assert open_run(run).execute("SELECT count(*) FROM units").fetchone() == (0,)
    conn = open_run(run, include_partial=True)
    assert conn.execute("SELECT count(*), count(DISTINCT unit) FROM units").fetchone() == (2, 2)
    assert conn.execute("SELECT list(DISTINCT png) FROM images").fetchone() == ([b"\x89PNG new"],)


def test_verify_finds_a_truncated_shard_and_repair_reopens_it(store, tmp_path, capsys):
    from atlas.cli import main
    from atlas.store.verify import verify_run

    store.write_shard("fc8-0000", "fc8", shard_rows(units=(0, 1)))
    store.write_shard("fc8-0001", "fc8", shard_rows(units=(2,)))
    run = Path(store.uri)
    assert verify_run(run).bad == {}
    victim = run / store.shard_files("fc8-0001")["units"]
    victim.write_bytes(victim.read_bytes()[:40])  # truncated, marker still there
    report = verify_run(run)
    assert set(report.bad) == {"fc8-0001"} and "unreadable" in report.bad["fc8-0001"]
    with pytest.raises(AtlasError) as err:
        open_run(run)
    assert "atlas verify" in str(err.value) and "\n" not in str(err.value)
    assert main(["verify", str(run), "--json", str(tmp_path / "v.json")]) == 1
    said = json.loads((tmp_path / "v.json").read_text())  # the result a pipeline reads (a trial: text only)
    assert said["exit_code"] == 1 and list(said["bad"]) == ["fc8-0001"] and said["repaired"] == []
    assert said["shards"] == 2 and said["planned_shards"] == 2 and said["deep_rows"] is None
    capsys.readouterr()
    import os

    with pytest.MonkeyPatch.context() as mp:  # a read-only mount (a trial: a bare "Read-only file system")
        mp.setattr(os, "access", lambda path, mode: not (str(path) == str(run) and mode == os.W_OK))
        assert main(["verify", str(run), "--repair"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"run {run} is read-only here, and --repair removes" in err, err
    assert store.completed_shards() == {"fc8-0000", "fc8-0001"}  # nothing removed
    assert main(["verify", str(run), "--repair", "--json", str(tmp_path / "v.json")]) == 0
    said = json.loads((tmp_path / "v.json").read_text())
    assert said["exit_code"] == 0 and said["repaired"] == ["fc8-0001"] and said["shards"] == 1
    assert ": 1 of 2 planned shards complete" in capsys.readouterr().out  # after the repair (a trial: 2 of 2)
    assert main(["verify", str(run), "--json", str(run / "run.json")]) == 2  # never over the run's own files
    (tmp_path / "v.json").write_text('{"exit_code": 0}')  # an earlier result: gone when this one fails
    assert main(["verify", str(tmp_path / "no-run"), "--json", str(tmp_path / "v.json")]) == 2
    assert not (tmp_path / "v.json").exists()
    (tmp_path / "link").symlink_to(run)
    assert main(["verify", str(run), "--json", str(tmp_path / "link" / "v.json")]) == 2  # nor through a link
    assert store.completed_shards() == {"fc8-0000"}
    assert open_run(run).execute("SELECT count(*) FROM units").fetchone() == (2,)


def test_verify_names_shards_with_failed_units_and_repair_has_them_redone(store, capsys):
    """A unit that failed in the workers (a model that raised) has no pictures; its shard is complete, so
    only verify finds it: named with the error, exit 1, and --repair has the shard redone."""
    from atlas.cli import main
    from atlas.store.verify import verify_run

    store.write_shard("fc8-0000", "fc8", shard_rows(units=(0, 1)))
    failed = shard_rows(units=(2, 3))
    failed["units"][1].update(status="error", error="ValueError: this net only takes batch 1 at my.py:9")
    store.write_shard("fc8-0001", "fc8", failed)
    store.finalize({"units": 4})
    run = Path(store.uri)
    report = verify_run(run)
    assert report.bad == {} and report.failed == {
        "fc8-0001": (1, "ValueError: this net only takes batch 1 at my.py:9")
    }
    assert main(["verify", str(run)]) == 1
    out = capsys.readouterr().out
    assert "shard fc8-0001: 1 unit failed (no pictures): ValueError: this net only takes batch 1" in out
    assert "0 bad, 1 with failed units" in out and "once the units' error is fixed, run `atlas verify" in out
    assert (run / "summary.json").is_file()
    assert main(["verify", str(run), "--repair"]) == 0
    assert store.completed_shards() == {"fc8-0000"}
    assert open_run(run).execute("SELECT status FROM run").fetchone() == ("incomplete",)
    assert not (run / "summary.json").exists()  # the finished run's totals went with its finish (a trial)


def test_a_damaged_complete_run_is_refused_by_sql_and_found_by_verify(store, capsys):
    """A finished run missing a shard's file, or markers, answers no query (it would answer from part of
    the run); verify names the damage and --repair marks the run incomplete so `atlas run` redoes it."""
    from atlas.cli import main
    from atlas.store.verify import verify_run

    run = Path(store.uri)
    store.write_shard("fc8-0000", "fc8", shard_rows(units=(0, 1)))
    store.write_shard("fc8-0001", "fc8", shard_rows(units=(2,)))
    store.finalize({"units": 3})
    (run / store.shard_files("fc8-0001")["units"]).unlink()
    with pytest.raises(
        AtlasError, match=r"is damaged: shard fc8-0001's units file is missing; `atlas verify"
    ):
        open_run(run)
    assert main(["verify", str(run), "--repair"]) == 0
    assert open_run(run).execute("SELECT status, shards_done FROM run").fetchone() == ("incomplete", 1)

    store.write_shard("fc8-0001", "fc8", shard_rows(units=(2,)))  # redone, then the marker lost
    store.finalize({"units": 3})
    (run / "_shards" / "fc8-0000.done").unlink()
    with pytest.raises(AtlasError, match=r"says it is complete but only 1 of its 2 shards have their marker"):
        open_run(run)
    assert verify_run(run).unmarked == 1 and main(["verify", str(run)]) == 1
    assert "1 planned shard(s) have no marker" in capsys.readouterr().out


def test_verify_names_the_planned_shards_without_a_marker(tmp_path, capsys):
    """A trial: `1 planned shard(s) have no marker` named none; run.json's plan (its units' groups and
    ray.units_per_shard) gives their ids, in the text and the --json record."""
    import json

    from atlas.cli import main

    config = {"name": "t", "layers": ["fc8"], "ray": {"units_per_shard": 2}}
    store = RunStore(tmp_path / "run")
    store.init_run(manifest(config=config, planned_shards=2, unit_groups={"fc8": [[0, 1, 2]]}))
    store.write_shard("fc8-00000", "fc8", shard_rows(units=(0, 1)))
    store.write_shard("fc8-00001", "fc8", shard_rows(units=(2,)))
    store.finalize({"units": 3})
    (tmp_path / "run" / "_shards" / "fc8-00001.done").unlink()
    capsys.readouterr()
    assert main(["verify", str(tmp_path / "run"), "--json", str(tmp_path / "v.json")]) == 1
    said = capsys.readouterr().out
    assert "1 planned shard(s) have no marker although the run says it is complete (fc8-00001)" in said
    assert json.loads((tmp_path / "v.json").read_text())["unmarked_shards"] == ["fc8-00001"]


def test_an_interrupted_run_says_so_in_verify_and_sql_and_resumes(store, capsys):
    """Ctrl-C marks the run interrupted; verify counts the shards still to do (no damage: exit 0), a query
    answers with a note on stderr, and the next `atlas run` (init_run) sets it running again."""
    from atlas.cli import main

    run = Path(store.uri)
    store.write_shard("fc8-0000", "fc8", shard_rows(units=(0, 1)))
    from atlas.pipeline.driver import _interrupted  # what the driver raises on Ctrl-C

    said = str(_interrupted(store, 2))
    assert said == "interrupted: 1 of 2 shards complete; the same `atlas run` resumes from there"
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"
    assert main(["verify", str(run)]) == 0
    out = capsys.readouterr().out
    assert "1 of 2 planned shards complete" in out and "the run is interrupted" in out, out
    assert main(["verify", str(run), "--complete"]) == 1  # a script's "is it done?" (a trial read the text)
    assert capsys.readouterr().out.splitlines()[-1] == "not complete: the run is interrupted (--complete)"
    assert main(["sql", str(run), "SELECT count(*) AS n FROM units", "--format", "csv"]) == 0
    said = capsys.readouterr()
    assert said.out.splitlines() == ["n", "2"]
    assert said.err.strip() == "atlas: note: the run is interrupted: results cover its 1 of 2 complete shards"
    store.init_run(manifest(planned_shards=2))  # the same `atlas run` again
    assert json.loads((run / "run.json").read_text())["status"] == "running"
    from atlas.store.lock import RunLock

    assert RunLock(store.loc).holder() is None
    report = run.parent / "verify.json"
    main(["verify", str(run), "--json", str(report)])  # running, and no writer holds the lock: it died
    assert (
        "the run is marked running, but no atlas run is writing it (its driver was killed or lost): the "
        "same `atlas run` finishes the 1 missing" in " ".join(capsys.readouterr().out.split())
    )
    assert json.loads(report.read_text())["writer"] is None
    assert json.loads(report.read_text())["writer_alive"] is False  # a monitor tells it from a live run
    with RunLock(store.loc):  # a live writer: verify names it
        assert RunLock(store.loc).holder()["pid"] == os.getpid()
        main(["verify", str(run), "--json", str(report)])
        assert f"being written by atlas run (pid {os.getpid()} on " in capsys.readouterr().out
        said = json.loads(report.read_text())
        assert said["writer_alive"] is True and said["writer"]["pid"] == os.getpid()
    store.finalize({"units": 2})
    store.mark_interrupted()  # only a running run is marked
    assert json.loads((run / "run.json").read_text())["status"] == "complete"
    said = str(_interrupted(store, 2))  # a SIGTERM while Ray shuts down, after the run was finished
    assert said.startswith("interrupted after the run was complete (") and said.endswith("nothing is lost")
    assert json.loads((run / "run.json").read_text())["status"] == "complete"


def test_a_run_or_shard_from_a_newer_atlas_is_refused_in_one_line(store):
    from atlas.store.schema import SCHEMA_VERSION
    from atlas.store.verify import verify_run

    run = Path(store.uri)
    store.write_shard("fc8-0000", "fc8", shard_rows(units=(0, 1)))
    marker = run / "_shards" / "fc8-0000.done"
    marker.write_text(json.dumps(json.loads(marker.read_text()) | {"schema_version": SCHEMA_VERSION + 1}))
    report = verify_run(run, repair=True)
    assert report.bad == {} and "schema version" in report.newer["fc8-0000"]  # reported, never repaired
    assert marker.exists()
    data = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps(data | {"schema_version": 999}))
    with pytest.raises(AtlasError, match="written by a newer atlas"):  # no resume adds older shards to it
        store.init_run(manifest(planned_shards=2))
    with pytest.raises(
        AtlasError, match=f"newer atlas \\(schema version 999; this atlas reads up to {SCHEMA_VERSION}"
    ):
        open_run(run)


def test_a_run_json_with_a_wrong_type_is_named_not_an_arrow_error(store):
    run = Path(store.uri)
    data = json.loads((run / "run.json").read_text())
    for field, value in (
        ("planned_shards", "x"),
        ("created", 5),
        ("status", [1]),
        ("planned_shards", 10**30),
    ):
        (run / "run.json").write_text(json.dumps(data | {field: value}))
        with pytest.raises(AtlasError, match=f"its run.json holds {field} = .*; the file is damaged"):
            open_run(run)


def test_verify_flags_row_counts_that_disagree_with_the_marker(store):
    store.write_shard("fc8-0000", "fc8", shard_rows(units=(0, 1)))
    marker = Path(store.uri) / "_shards" / "fc8-0000.done"
    data = json.loads(marker.read_text())
    data["rows"]["chains"] = 99
    marker.write_text(json.dumps(data))
    from atlas.store.verify import verify_run

    assert "99" in verify_run(Path(store.uri)).bad["fc8-0000"]


def test_run_lock_refuses_a_second_writer_and_dies_with_its_holder(tmp_path):
    import subprocess
    import sys

    from atlas.store.location import open_location
    from atlas.store.lock import RunLock

    loc = open_location(tmp_path / "run")
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import time\nfrom atlas.store.location import open_location as o\n"
         "from atlas.store.lock import RunLock\n"
         f"lock = RunLock(o({str(loc.path)!r})).acquire()\nprint('held', flush=True)\ntime.sleep(600)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(AtlasError, match=f"pid {holder.pid}.*or use another name"):
            RunLock(loc).acquire()
        with pytest.raises(AtlasError, match=f"pid {holder.pid}.*wait for it to finish, then repair it$"):
            RunLock(loc, elsewhere=", then repair it").acquire()  # what verify --repair says
    finally:
        holder.kill()
        holder.wait(timeout=30)
    with RunLock(loc):  # the kernel released the dead holder's lock
        pass


def test_run_lock_leaves_no_file_and_a_lock_on_a_removed_file_is_taken_again(tmp_path, monkeypatch):
    """The holder removes ``.atlas.lock`` as it lets go (no file left in a finished run); a driver that
    opened the old file just before then, and locks it just after, must not hold a lock nobody else sees."""
    import fcntl
    import os

    from atlas.store.location import open_location
    from atlas.store.lock import LOCAL_LOCK, RunLock

    loc = open_location(tmp_path / "run")
    with RunLock(loc):
        assert (tmp_path / "run" / LOCAL_LOCK).exists()
    assert not (tmp_path / "run" / LOCAL_LOCK).exists()

    path = tmp_path / "run" / LOCAL_LOCK
    path.write_text("")
    stale = os.stat(path).st_ino
    real_flock, swaps = fcntl.flock, []

    def flock_after_the_holder_let_go(fh, op):  # the old holder unlinks and a third driver makes a new file
        if not swaps and op & fcntl.LOCK_EX:
            path.unlink()
            path.write_text("")
            swaps.append(stale)
        return real_flock(fh, op)

    monkeypatch.setattr(fcntl, "flock", flock_after_the_holder_let_go)
    lock = RunLock(loc).acquire()
    try:
        assert swaps and os.fstat(lock._fh.fileno()).st_ino == os.stat(path).st_ino  # the file now there
    finally:
        lock.release()


def test_a_look_at_the_lock_never_makes_a_starting_driver_think_the_run_is_busy(tmp_path, monkeypatch):
    """`atlas run` and `atlas verify` look at the lock (a shared flock, a moment long): a driver taking it
    then retries instead of refusing with 'pid None on None'."""
    import fcntl
    import time

    from atlas.store.location import open_location
    from atlas.store.lock import LOCAL_LOCK, RunLock

    loc = open_location(tmp_path / "run")
    (tmp_path / "run").mkdir()
    look = open(tmp_path / "run" / LOCAL_LOCK, "a+")  # noqa: SIM115 - closed by the patched sleep
    fcntl.flock(look, fcntl.LOCK_SH)  # what RunLock.holder() takes while it looks
    monkeypatch.setattr(time, "sleep", lambda _s: look.close())  # the look ends before the retry
    lock = RunLock(loc).acquire()
    assert lock.held and look.closed
    lock.release()


WRAPPED_WRITES = [
    "DROP TABLE units",
    "EXPLAIN ANALYZE DROP TABLE units",
    "EXPLAIN ANALYZE DROP VIEW chains",
    "EXPLAIN ANALYZE CREATE TABLE units2 AS SELECT * FROM units",
    "EXPLAIN ANALYZE ALTER TABLE units RENAME TO gone",
    "WITH x AS (SELECT 1) SELECT * FROM x; DROP TABLE units",
    "/* harmless */ DROP VIEW images",
    "-- comment\nEXPLAIN ANALYZE DROP VIEW steps",
    "EXPLAIN ANALYZE DELETE FROM units",
    "EXPLAIN ANALYZE INSERT INTO units SELECT * FROM units",
    "EXPLAIN ANALYZE CREATE OR REPLACE VIEW images AS SELECT 1 AS x",
    "EXPLAIN ANALYZE COPY units TO '/tmp/atlas-leak.csv'",
    "EXPLAIN ANALYZE ATTACH '/tmp/atlas-leak.db' AS leak",
    "EXPLAIN ANALYZE SET lock_configuration=false",
]


@pytest.mark.parametrize("sql", WRAPPED_WRITES)
def test_console_queries_cannot_change_what_another_session_sees(store, sql):
    from atlas.store.queries import query_run

    store.write_shard("fc8-0000", "fc8", shard_rows(units=(0, 1)))
    shared = open_run(Path(store.uri))  # the viewer pages' connection
    tables = ("units", "chains", "images")
    before = {t: shared.execute(f"SELECT count(*) FROM {t}").fetchone() for t in tables}
    with contextlib.suppress(AtlasError):  # refused or failed: fine either way
        query_run(Path(store.uri), sql)
    after = {t: shared.execute(f"SELECT count(*) FROM {t}").fetchone() for t in tables}
    assert after == before
    fresh = open_run(Path(store.uri))  # and a new session
    assert {t: fresh.execute(f"SELECT count(*) FROM {t}").fetchone() for t in before} == before
    assert not Path("/tmp/atlas-leak.csv").exists() and not Path("/tmp/atlas-leak.db").exists()


def test_gcs_gives_up_in_seconds_and_says_when_credentials_are_missing(monkeypatch):
    """The GCS client retries for 15 minutes by default: an unreachable bucket looked like a hang."""
    import pickle

    from atlas.store.location import open_location
    from atlas.uri_filesystem import GCS_RETRY_S, storage_reason

    loc = open_location("gs://some-bucket/runs")
    assert loc.fs.__reduce__()[1][0]["retry_time_limit"].total_seconds() == GCS_RETRY_S <= 60
    worker = pickle.loads(pickle.dumps(loc))  # a worker's copy writes shards: the client's own patience
    assert worker == loc and worker.fs.__reduce__()[1][0]["retry_time_limit"] is None
    noisy = OSError("google::cloud::Status(UNAVAILABLE: Could not create a OAuth2 access token " + "x" * 900)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    assert storage_reason(noisy).startswith("no Google Cloud credentials on this machine")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/keys/sa.json")
    assert "GOOGLE_APPLICATION_CREDENTIALS (/keys/sa.json) were refused" in storage_reason(noisy)
    assert len(storage_reason(OSError("y" * 900))) == 300
    denied = OSError("When getting information for key 'atlas' in bucket 'b': AWS Error ACCESS_DENIED during "
                     "HeadObject operation: No response body.")  # fmt: skip
    assert storage_reason(denied).startswith("access denied, the store refused these credentials (When ")
    lookup = OSError("AWS Error NETWORK_CONNECTION during HeadBucket: curlCode: 6, Could not resolve host: "
                     "b.s3.us-east-1.amazonaws.com")  # fmt: skip
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)  # a trial's moto bucket, looked up on AWS
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    assert storage_reason(lookup).endswith("; an S3-compatible store other than AWS: set AWS_ENDPOINT_URL "
                                           "(or storage.endpoint_override)")  # fmt: skip
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")  # set: not what went wrong
    assert "AWS_ENDPOINT_URL" not in storage_reason(lookup)


@pytest.mark.parametrize(
    "field, value",
    [
        ("rows", None),
        ("rows", {"units": "sixteen"}),
        ("rows", {"units": -1}),
        ("units", ["a", "b"]),
        ("units", "0-7"),
        ("time", "yesterday"),
        ("files", {"units": "../../elsewhere/units/layer=conv3/shard-conv3-0000.parquet"}),
        ("files", {"units": "/etc/passwd"}),
        ("files", {"units": 7}),
    ],
)
def test_a_marker_field_of_the_wrong_type_is_damage_to_every_reader(synthetic_run, tmp_path, field, value):
    """A hand-edited or damaged marker: `atlas sql` (and the viewer) refuse the run in one line, `atlas
    verify` names the shard bad, so its --repair is the fix the refusal names (no tracebacks, no file
    read outside the run)."""
    import shutil

    from atlas.errors import AtlasError
    from atlas.store.verify import verify_run

    run = tmp_path / "run"
    shutil.copytree(synthetic_run, run)
    path = run / "_shards" / "conv3-00000.done"
    marker = json.loads(path.read_text())
    marker[field] = value
    path.write_text(json.dumps(marker))
    with pytest.raises(
        AtlasError, match="shard conv3-00000's marker is unreadable; `atlas verify .* --repair`"
    ):
        open_run(run)
    report = verify_run(run)
    assert report.bad == {"conv3-00000": "its marker is unreadable"}
    verify_run(run, repair=True)
    assert not path.exists() and verify_run(run).bad == {}


def test_verify_finds_another_shards_file_in_place_and_a_run_json_the_readers_refuse(synthetic_run, tmp_path):
    import shutil

    from atlas.errors import AtlasError
    from atlas.store.verify import verify_run

    run = tmp_path / "run"
    shutil.copytree(synthetic_run, run)
    first = next((run / "units" / "layer=conv3").glob("shard-conv3-00000*.parquet"))
    second = next((run / "units" / "layer=conv3").glob("shard-conv3-00001*.parquet"))
    shutil.copy(second, first)  # same row count, units 8-15 where the marker says 0-7
    report = verify_run(run)
    assert report.bad["conv3-00000"].endswith("holds units 8-15, its marker says 0-7"), report.bad
    manifest = json.loads((run / "run.json").read_text())
    for field, value, says in [
        ("status", "bananas", 'status = "bananas", not one of running, complete, incomplete, interrupted'),
        ("planned_shards", "many", 'planned_shards = "many", not a number in range'),
        ("layers", "x", 'layers = "x", not a list of {name, shape} entries'),  # the viewer read it: a crash
        ("layers", [{"name": 3}], 'layers = [{"name": 3}], not a list'),
        ("layers", [{"name": "fc8", "shape": ["10"]}], "not a list of {name, shape} entries"),
    ]:
        (run / "run.json").write_text(json.dumps({**manifest, field: value}))
        for reader in (open_run, verify_run):
            with pytest.raises(AtlasError, match=re.escape(says)):
                reader(run)


def test_check_run_refuses_what_open_run_refuses_without_reading_tables(synthetic_run, tmp_path):
    import shutil

    from atlas.errors import AtlasError
    from atlas.store.catalog import check_run

    check_run(synthetic_run)  # a sound run passes
    run = tmp_path / "run"
    shutil.copytree(synthetic_run, run)
    next((run / "steps" / "layer=conv3").glob("*.parquet")).unlink()
    with pytest.raises(
        AtlasError, match=r"is damaged: shard conv3-\d+'s steps file is missing; `atlas verify"
    ):
        check_run(run)


def test_verify_deep_finds_damaged_bytes_and_pictures_the_quick_check_passes(
    synthetic_run, store, tmp_path, capsys
):
    import shutil

    from atlas.store.verify import verify_run

    run = tmp_path / "copy"
    shutil.copytree(synthetic_run, run)
    sound = verify_run(run, deep=True)
    assert sound.bad == {}
    con = duckdb.connect()
    (pictures,) = con.execute(f"SELECT count(png) FROM read_parquet('{run}/images/*/*.parquet')").fetchone()
    rows = sum(
        con.execute(f"SELECT count(*) FROM read_parquet('{run}/{t}/*/*.parquet')").fetchone()[0]
        for t in ("units", "chains", "images", "steps", "activations")
        if (run / t).exists()
    )
    assert (sound.deep_rows, sound.deep_pictures) == (rows, pictures) and pictures > 0
    from atlas.cli import main

    assert main(["verify", str(run), "--deep"]) == 0
    said = capsys.readouterr().out
    assert f"(deep: {rows:,} rows read page by page, {pictures:,} pictures decoded), 0 bad" in said, said
    assert verify_run(run).deep_pictures == 0  # the quick check decodes nothing
    victim = max((run / "images").rglob("*.parquet"), key=lambda p: p.stat().st_size)
    data = bytearray(victim.read_bytes())
    middle = len(data) // 3  # inside the data pages, far from the footer
    data[middle : middle + 64] = bytes(b ^ 0xFF for b in data[middle : middle + 64])
    victim.write_bytes(bytes(data))
    assert verify_run(run).bad == {}  # the footer still reads: the quick check cannot see it
    (shard,) = verify_run(run, deep=True).bad.items()
    assert "has damaged data" in shard[1] or "does not decode" in shard[1], shard

    assert main(["verify", str(run), "--deep"]) == 1  # its fix is the deep repair: a quick one sees nothing
    assert f"run `atlas verify {run} --deep --repair`, then" in capsys.readouterr().out
    assert main(["verify", str(run), "--deep", "--repair"]) == 0 and capsys.readouterr()
    assert verify_run(run, deep=True).bad == {}  # the marker is gone: the same `atlas run` redoes the shard

    store.write_shard("fc8-0000", "fc8", shard_rows(units=(0, 1), png=b"\x89PNG not a picture"))
    assert verify_run(store.uri).bad == {}
    bad = verify_run(store.uri, deep=True).bad
    assert set(bad) == {"fc8-0000"} and "its picture does not decode" in bad["fc8-0000"], bad


def test_a_query_that_fails_on_damaged_bytes_points_at_verify_deep(synthetic_run, tmp_path):
    """DuckDB's Parquet reader fails on a damaged page header with a bare error ("don't know what type")
    or "Out of buffer": the message says a shard file is damaged and how to find and redo it; errors of
    the query itself stay as DuckDB words them."""
    import shutil

    import duckdb

    from atlas.store.queries import query_error

    damaged = ("reading the run's files failed", "`atlas verify --deep` on the run names it")
    said = query_error(duckdb.Error("don't know what type: \x0e"))
    assert all(part in said for part in damaged) and "\x0e" not in said
    said = query_error(duckdb.InvalidInputException("Invalid Input Error: Out of buffer"))
    assert all(part in said for part in damaged)
    for own in (duckdb.InvalidInputException("Invalid Input Error: boom"), duckdb.ConversionException("x")):
        assert "verify" not in query_error(own)
    run = tmp_path / "copy"  # a real damaged page header: the first data page of a file
    shutil.copytree(synthetic_run, run)
    victim = max((run / "steps").rglob("*.parquet"), key=lambda p: p.stat().st_size)
    data = bytearray(victim.read_bytes())
    data[4:260] = bytes(b ^ 0x5A for b in data[4:260])
    victim.write_bytes(bytes(data))
    with pytest.raises(AtlasError, match="a shard file is probably damaged"):
        run_query(open_run(run), "SELECT * FROM steps", max_rows=None)


def test_a_full_disk_at_the_lock_is_one_line_naming_the_file(tmp_path):

    from atlas.store.location import open_location
    from atlas.store.lock import LOCAL_LOCK, RunLock

    run = tmp_path / "run"
    run.mkdir()
    (run / LOCAL_LOCK).symlink_to("/dev/full")  # a file that takes no write (ENOSPC; truncate: EINVAL)
    with pytest.raises(AtlasError) as err:
        RunLock(open_location(run)).acquire()
    message = str(err.value)
    assert message.startswith(f"cannot write the run's lock file {run / LOCAL_LOCK}: ")
    assert "\n" not in message


def test_a_lost_run_json_is_rewritten_only_for_the_config_its_markers_name(tmp_path):
    from atlas.store.writer import RunStore

    store = RunStore(str(tmp_path / "run"))
    store.init_run(manifest("abc123"))
    store.write_shard("fc8-0000", "fc8", shard_rows(), meta={"config_hash": "abc123"})
    (tmp_path / "run" / "run.json").unlink()
    with pytest.raises(AtlasError, match="do not name this config"):
        store.init_run(manifest("other"))
    assert not (tmp_path / "run" / "run.json").exists()
    store.init_run(manifest("abc123"))  # the config that made the shards: taken up again
    restored = json.loads((tmp_path / "run" / "run.json").read_text())
    assert restored["config_hash"] == "abc123" and restored["adopted"]
    (tmp_path / "run" / "run.json").unlink()
    store.write_shard("fc8-0001", "fc8", shard_rows(units=(2,)))  # a marker that names no config
    with pytest.raises(AtlasError, match="do not name this config"):
        store.init_run(manifest("abc123"))


def test_a_driver_that_gets_the_lock_late_skips_what_the_other_finished(tmp_path):
    from atlas.pipeline.driver import _still_to_do
    from atlas.pipeline.plan import plan_shards
    from atlas.store.writer import RunStore

    store = RunStore(str(tmp_path / "run"))
    store.init_run(manifest())
    todo = plan_shards({"fc8": [0, 1, 2, 3]}, 2)  # planned before the lock: both shards to do
    store.write_shard(todo[0].id, "fc8", shard_rows(units=(0, 1)))  # meanwhile, by the driver then holding it
    assert [s.id for s in _still_to_do(store, todo)] == [todo[1].id]


def test_finalize_sweeps_the_temporaries_of_writes_killed_mid_way(tmp_path):
    from atlas.store.writer import RunStore

    store = RunStore(str(tmp_path / "run"))
    store.init_run(manifest())
    store.write_shard("fc8-0000", "fc8", shard_rows())
    part = next((tmp_path / "run" / "units").rglob("*.parquet")).parent
    left = part / ".shard-fc8-0001~ab12.parquet.4242.0123456789ab.tmp"  # a worker killed while writing
    left.write_bytes(b"half a file")
    keep = tmp_path / "run" / ".atlas.lock"
    keep.write_text("{}")
    store.finalize({"units": 2})
    assert not left.exists() and keep.exists()
    assert open_run(tmp_path / "run").execute("SELECT count(*) FROM units").fetchone() == (2,)


@pytest.mark.parametrize(
    "content, said",
    [
        ("[1, 2]", "holds a JSON list, not an object"),
        ('"run"', "holds a JSON string, not an object"),
        ("null", "holds a JSON null, not an object"),
        ("42", "holds a JSON number, not an object"),
        ("{}", "has no 'config'"),
        ('{"config": {}, "config_hash": "abc123", "fingerprints": "x"}', "its 'fingerprints' is \"x\""),
        ('{"config": "oops", "config_hash": "abc123"}', "its 'config' is \"oops\""),
    ],
)
def test_a_damaged_run_json_is_one_line_with_the_fix_for_every_reader(tmp_path, content, said):
    """Valid JSON of the wrong shape: the writer's resume check, `atlas sql`/`verify` and the viewer all
    refuse it in one line that names what is wrong and how to recover the finished shards."""
    from atlas.store.manifest import read_manifest

    store = RunStore(tmp_path / "run")
    store.init_run(manifest())
    (tmp_path / "run" / "run.json").write_text(content)
    for read in (store.manifest, lambda: read_manifest(tmp_path / "run")):
        with pytest.raises(AtlasError) as err:
            read()
        text = str(err.value)
        assert said in text and "damaged" in text and "rerun the same command" in text and "\n" not in text


def test_a_folder_of_other_files_is_no_run_to_write_into(tmp_path):
    """`--set out_dir=. --set name=photos` where photos/ holds the user's pictures: refused, untouched."""
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "cat.png").write_bytes(b"not ours")
    (photos / "album").mkdir()
    store = RunStore(photos)
    for call in (store.check_own_folder, lambda: store.init_run(manifest())):
        with pytest.raises(AtlasError, match=r"holds files no atlas run writes \('album', 'cat.png'\)"):
            call()
    assert sorted(p.name for p in photos.iterdir()) == ["album", "cat.png"]
    ours = tmp_path / "run"  # what an interrupted first start leaves (lock, workers' records): a run's own
    (ours / "_workers").mkdir(parents=True)
    (ours / ".atlas.lock").write_text("")
    RunStore(ours).init_run(manifest())
    (ours / "notes.txt").write_text("a user's note beside a run")  # beside run.json: the run is still its own
    RunStore(ours).check_own_folder()


def test_a_run_inside_another_run_is_refused(tmp_path):
    """out_dir pointed at a run (or one of its table folders): the new run would sit among its files."""
    outer = tmp_path / "base"
    RunStore(outer).init_run(manifest())
    for inner in (outer / "micro", outer / "units" / "micro"):
        with pytest.raises(AtlasError, match=rf"out_dir: {inner} is inside the run {outer}; give the run a"):
            RunStore(inner).check_own_folder()
        assert not inner.exists()
    RunStore(tmp_path / "beside").check_own_folder()  # a sibling is fine


def test_a_truncated_file_of_a_complete_run_is_damage_the_quick_check_sees(store):
    """`atlas run` on a complete run answers 'nothing to do' after check_run, which reads no table: the
    bytes each marker recorded make a truncated (or overwritten) file damage it names, with the fix."""
    from atlas.store.catalog import check_run

    run = Path(store.uri)
    store.write_shard("fc8-0000", "fc8", shard_rows(units=(0, 1)))
    store.write_shard("fc8-0001", "fc8", shard_rows(units=(2,)))
    store.finalize({"units": 3})
    check_run(run)
    victim = run / store.shard_files("fc8-0000")["images"]
    written = victim.stat().st_size
    victim.write_bytes(victim.read_bytes()[:100])
    for check in (check_run, open_run):
        with pytest.raises(AtlasError) as err:
            check(run)
        assert f"shard fc8-0000's images file holds 100 bytes, {written:,} were written" in str(err.value)
        assert "atlas verify" in str(err.value) and "--repair" in str(err.value)
    # the fix it names works: verify sees the same damage, also in a valid file of other bytes (the same
    # rows written again uncompressed), and --repair has the shard redone
    from atlas.store.verify import verify_run

    other = run / store.shard_files("fc8-0001")["units"]
    pq.write_table(pq.read_table(other), other, compression="none")
    report = verify_run(run, repair=True)
    assert "unreadable" in report.bad["fc8-0000"] and "were written" in report.bad["fc8-0001"]
    assert store.completed_shards() == set()


def test_resume_refuses_other_network_code_unless_allowed_and_records_it(store):
    prints = {
        "target": {"weights": "t.pt", "fingerprint": "aaaa", "code": "c0de", "code_files": ["mynet.py"]}
    }
    fresh = store.uri + "-code"
    run = RunStore(fresh)
    run.init_run(manifest(fingerprints=prints))
    changed = {"target": {**prints["target"], "code": "c1de"}}
    with pytest.raises(
        AtlasError, match=r"other code of its target \(mynet.py changed since.*--allow-code-change"
    ):
        run.init_run(manifest(fingerprints=changed))
    assert "resumed_code_change" not in json.loads((Path(fresh) / "run.json").read_text())  # wrote nothing
    run.init_run(manifest(fingerprints=changed), allow_code_change=True)
    written = json.loads((Path(fresh) / "run.json").read_text())
    assert written["fingerprints"]["target"]["code"] == "c1de"  # later resumes compare with this code
    assert [list(entry.values()) for entry in written["resumed_code_change"]] == [[["target: mynet.py"]]]
    run.init_run(manifest(fingerprints=changed))  # the same code again: a plain resume
    run.init_run(manifest(fingerprints={"target": {"fingerprint": "aaaa"}}))  # no code recorded: not compared


def test_verify_says_when_run_jsons_config_was_edited_after_the_run(synthetic_run, tmp_path, capsys):
    """A config edited inside run.json went unnoticed (an operator's trial): the viewer and SQL then show
    settings the pictures were not made with. `atlas verify` says so (exit 1, even with --repair, which
    cannot mend it); the untouched run and one whose resume rewrote both fields pass."""
    import shutil

    from atlas.cli import main

    run = tmp_path / "run"
    shutil.copytree(synthetic_run, run)
    assert main(["verify", str(run)]) == 0
    assert "config was changed" not in capsys.readouterr().out
    data = json.loads((run / "run.json").read_text())
    edited = {**data, "config": {**data["config"], "seed": data["config"]["seed"] + 1}}
    (run / "run.json").write_text(json.dumps(edited))
    for extra in ([], ["--repair"]):
        assert main(["verify", str(run), *extra]) == 1
        out = capsys.readouterr().out
        assert "run.json: its config was changed after the run wrote it" in out, out
    assert open_run(run).execute("SELECT count(*) FROM units").fetchone()[0] > 0  # still readable
    (run / "run.json").write_text(json.dumps({**edited, "config_hash": config_data_hash(edited["config"])}))
    assert main(["verify", str(run)]) == 0
    import hashlib  # an untouched run an older atlas hashed otherwise: never called edited

    older = {
        "name kept": json.dumps(
            {k: v for k, v in edited["config"].items() if k != "out_dir"}, sort_keys=True
        ),
        "the whole config": json.dumps(edited["config"], sort_keys=True),
    }
    for text in older.values():
        for digest in (
            hashlib.sha256(text.encode()).hexdigest(),
            hashlib.sha256(text.encode()).hexdigest()[:16],
        ):
            (run / "run.json").write_text(json.dumps({**edited, "config_hash": digest}))
            assert main(["verify", str(run)]) == 0, capsys.readouterr().out


def test_a_lock_file_a_full_disk_refuses_is_one_line_naming_it_and_leaves_nothing(tmp_path, monkeypatch):
    """A user's trial on a full tmpfs: `atlas: error: No space left on device` (the close of the unwritten
    lock file raised again, without a path) and an empty run folder with its lock file left behind."""
    import errno
    import io

    from atlas.errors import AtlasError
    from atlas.store.location import open_location
    from atlas.store.lock import LOCAL_LOCK, RunLock

    run = tmp_path / "run"
    lock = RunLock(open_location(run))

    class FullDisk(io.StringIO):  # what a full disk does to the lock file: its flush and close both fail
        def flush(self):
            raise OSError(errno.ENOSPC, "No space left on device")

        def close(self):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(lock, "_lock_file", lambda _path: FullDisk())
    with pytest.raises(AtlasError) as caught:
        lock.acquire()
    said = str(caught.value)
    assert said.startswith(f"cannot write the run's lock file {run / LOCAL_LOCK}: No space left on device")
    assert not run.exists()  # the folder it made, gone again


def test_verify_complete_passes_a_finished_sound_run(tmp_path, capsys):
    from atlas.bench.synthetic_run import make_synthetic_run
    from atlas.cli import main

    make_synthetic_run(tmp_path / "done", layers={"fc8": 4}, chains=1, steps=4, images_per_chain=2, real_k=0)
    assert main(["verify", str(tmp_path / "done"), "--complete"]) == 0
    assert "not complete" not in capsys.readouterr().out
    make_synthetic_run(
        tmp_path / "half", layers={"fc8": 16}, chains=1, steps=4, images_per_chain=2, real_k=0, max_shards=1
    )
    assert main(["verify", str(tmp_path / "half"), "--complete"]) == 1  # still "running"
    assert capsys.readouterr().out.splitlines()[-1] == "not complete: the run is running (--complete)"


def test_a_run_folder_that_takes_no_file_says_to_make_it_writable(tmp_path, monkeypatch):
    """A resume in a read-only run folder (a trial): "choose another path" would start another run, so the
    error says to make the folder writable, or to pick another out_dir or name for a new run."""
    from atlas.store.location import open_location

    (tmp_path / "runs" / "r").mkdir(parents=True)
    monkeypatch.setattr("atlas.atomic.os.access", lambda path, mode: False)  # root passes any permission
    with pytest.raises(
        AtlasError,
        match=r"^the run folder out_dir/name: .*/r is not writable; make it "
        r"writable to write \(or resume\) the run there, or choose another out_dir or name",
    ):
        open_location(str(tmp_path / "runs" / "r")).check_writable()
    with pytest.raises(AtlasError, match=r"^out_dir: .*/runs is not writable; choose another path$"):
        open_location(str(tmp_path / "runs" / "new")).check_writable()


def test_verify_says_when_a_running_runs_writer_cannot_be_told(store, capsys, monkeypatch):
    """A folder that takes no file locks (ENOLCK, e.g. some network mounts): verify does not call the
    driver dead, and --json's writer_alive is null (unknown), not false."""
    import errno
    import fcntl

    from atlas.cli import main

    run = Path(store.uri)
    store.write_shard("fc8-0000", "fc8", shard_rows(units=(0, 1)))
    store.init_run(manifest(planned_shards=2))  # running, one shard to come
    (run / ".atlas.lock").write_text("{}")  # a lock file, as a killed driver leaves it

    def no_locks(*_a):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    report = run.parent / "verify.json"
    assert main(["verify", str(run), "--json", str(report)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "the run is marked running; whether an atlas run is writing it cannot be told here" in out
    said = json.loads(report.read_text())
    assert said["writer"] is None and said["writer_alive"] is None
