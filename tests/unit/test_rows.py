"""Sampling results -> store rows (atlas/pipeline/rows.py): counts, values, NaN handling, schema fit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from atlas.pipeline.rows import merge_rows, unit_rows
from atlas.sampling.results import ChainResult, ImageRecord, UnitResult
from atlas.store import decode_png
from atlas.store.schema import SCHEMAS, to_table

pytestmark = pytest.mark.unit


def _image(value: int) -> np.ndarray:
    return np.full((4, 6, 3), value, np.uint8)  # (H, W, 3)


def _chain(chain: int, last: float, best: float, diverged: bool = False) -> ChainResult:
    return ChainResult(
        chain=chain,
        seed=100 + chain,
        start=f"facet_seed:{chain}",
        facet=chain % 2,
        last=ImageRecord(20, _image(10 + chain), last, -0.5, 1),
        best=ImageRecord(15, _image(20 + chain), best, -0.1, 0, kind="best"),
        best_step=15,
        snapshots=[ImageRecord(10, _image(30), 1.0, -2.0, 3, kind="snapshot")],
        trajectory=[{"step": s, "activation": float(s) / 10, "log_prob": math.nan} for s in (0, 10, 20)],
        diverged=diverged,
        final_activations=torch.tensor([0.5, 3.0, -1.0, math.nan, 2.0]),  # (U,) = 5 units
        seconds=0.25,
    )


def _result() -> UnitResult:
    return UnitResult(
        layer="fc8",
        unit=1,
        kind="output",
        spatial=None,
        objective="raw[fc8:1]",
        method="ppgn_h/dae",
        facet_count=2,
        chains=[_chain(0, 2.0, 2.5), _chain(1, math.nan, 3.5, diverged=True)],
        real_topk=[(7, 4.0, _image(200)), (3, 2.0, _image(201))],
        real_names={7: "cats/tabby.jpg"},  # index 3 has no file (a set without files, as the toy world)
        best_activation=3.5,
        best_log_prob=-0.1,
        best_rank=0,
    )


def _rows(**kw):
    args = dict(steps=20, keep_snapshots=True, activations_full_max=8, activations_top_k=2)
    args.update(kw)
    return unit_rows(_result(), "fc8-0000", **args)


def test_one_unit_row_with_its_summary_numbers():
    (row,) = _rows(judge={"judge_label": "hook", "judge_correct": True, "judge_prob": 0.75})["units"]
    assert (row["unit"], row["kind"], row["shard"], row["n_chains"], row["facet_count"]) == (
        1,
        "output",
        "fc8-0000",
        2,
        2,
    )
    assert row["mean_last_activation"] == 2.0  # the diverged chain is left out
    assert row["real_top1_activation"] == 4.0 and row["real_top9_mean"] == 3.0
    assert row["activation_ratio"] == pytest.approx(3.5 / 4.0)
    assert (row["judge_label"], row["judge_correct"], row["judge_prob"]) == ("hook", True, 0.75)
    assert _rows()["units"][0]["judge_label"] is None  # no judge: empty verdict columns
    assert _rows()["units"][0]["composite"] is None  # the layer's own unit


def test_chains_images_steps_and_nan_become_null():
    rows = _rows()
    chains = rows["chains"]
    assert [c["chain"] for c in chains] == [0, 1] and chains[1]["diverged"] is True
    assert chains[1]["final_activation"] is None  # NaN is stored as null
    assert chains[0]["start"] == "facet_seed:0" and chains[0]["steps"] == 20
    kinds = [(i["chain"], i["kind"]) for i in rows["images"]]
    assert kinds == [(0, "last"), (0, "best"), (0, "snapshot"), (1, "last"), (1, "best"), (1, "snapshot")] + [
        (None, "real"),
        (None, "real"),
    ]
    best = rows["images"][1]
    assert (best["step"], best["width"], best["height"], best["activation"]) == (15, 6, 4, 2.5)
    assert np.array_equal(decode_png(best["png"]), _image(20))  # the picture round-trips
    real = rows["images"][-2]
    assert (real["real_index"], real["activation"], real["facet"]) == (7, 4.0, None)
    assert real["real_name"] == "cats/tabby.jpg" and rows["images"][-1]["real_name"] is None
    assert best["real_name"] is None  # synthetic pictures have no file
    assert len(rows["steps"]) == 6 and all(s["log_prob"] is None for s in rows["steps"])
    assert [s["step"] for s in rows["steps"][:3]] == [0, 10, 20]
    assert len(_rows(keep_snapshots=False)["images"]) == 6  # no snapshot rows


def test_activations_full_or_top_k_only():
    full = _rows()["activations"][0]
    assert full["values"][:3] == [0.5, 3.0, -1.0] and math.isnan(full["values"][3])
    assert full["top_units"] == [1, 4] and full["top_values"] == [3.0, 2.0]  # NaN never ranks
    narrow = _rows(activations_full_max=4, activations_top_k=3)["activations"][0]
    assert narrow["values"] is None and narrow["top_units"] == [1, 4, 0]  # wide layer: top-k only


def test_rows_fit_the_store_schema_and_merge():
    rows = _rows()
    for table, table_rows in rows.items():
        names = set(SCHEMAS[table].names)
        for r in table_rows:
            assert set(r) <= names, (table, set(r) - names)
        assert to_table(table, table_rows, shard="fc8-0000").num_rows == len(table_rows)  # the write path
    merged = merge_rows([rows, _rows()])
    assert {t: len(v) for t, v in merged.items()} == {t: 2 * len(v) for t, v in rows.items()}


def test_reader_columns_with_and_without_a_reader():
    from atlas.toyworld.reading import ReaderVerdict

    pictures = {
        (0, "last", 0): ["class:hook", "colour:red"],
        (0, "best", 0): ["class:disk"],
        (0, "snapshot", 0): ["class:ring"],
        (1, "last", 0): ["class:hook", "colour:blue"],
    }
    rows = _rows(reader=ReaderVerdict(label_shown=0.5, agreement=0.8, pictures=pictures))
    (unit,) = rows["units"]
    assert (unit["label_shown"], unit["reader_agreement"]) == (0.5, 0.8)
    read = {(i["chain"], i["kind"]): i["reader_concepts"] for i in rows["images"] if i["kind"] != "real"}
    assert read[(0, "last")] == ["class:hook", "colour:red"] and read[(0, "best")] == ["class:disk"]
    assert read[(0, "snapshot")] == ["class:ring"] and read[(1, "last")] == ["class:hook", "colour:blue"]
    assert read[(1, "best")] is None  # not decoded: null
    assert all("reader_concepts" not in i for i in rows["images"] if i["kind"] == "real")  # real: null
    for table, table_rows in rows.items():
        table_ = to_table(table, table_rows)
        assert table_.num_rows == len(table_rows)
    images = to_table("images", rows["images"]).to_pylist()
    (last0,) = [i for i in images if (i["chain"], i["kind"]) == (0, "last")]
    assert last0["reader_concepts"] == ["class:hook", "colour:red"]  # a list<string> column
    none = _rows(reader=ReaderVerdict(label_shown=None, agreement=1.0))["units"][0]
    assert none["label_shown"] is None and none["reader_agreement"] == 1.0  # no label: null
    plain = _rows()
    assert plain["units"][0]["label_shown"] is None and plain["units"][0]["reader_agreement"] is None
    assert all(i.get("reader_concepts") is None for i in plain["images"])  # no reader: null columns
    assert to_table("units", plain["units"]).column("label_shown").null_count == 1
