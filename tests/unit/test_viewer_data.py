"""viewer/data/ on a small synthetic run: what the pages get (counts, order, shaped values) is checked
against the Parquet files read back directly with pandas, not against the viewer's own queries."""

from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest

from atlas.bench.synthetic_run import make_synthetic_run
from atlas.errors import ConfigError
from atlas.store.catalog import open_run
from viewer import data

pytestmark = pytest.mark.unit

LAYERS = {"fc8": 10, "conv3": 12}  # config order is not alphabetical on purpose
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("viewer-data") / "run"
    info = make_synthetic_run(
        run_dir, layers=LAYERS, chains=2, steps=40, images_per_chain=4, real_k=3, methods=("dgn_am", "ppgn_h")
    )
    conn = open_run(run_dir)
    yield run_dir, info, conn
    conn.close()


def written(run_dir, table: str, layer: str) -> pd.DataFrame:
    """A table of one layer as written (all its shard files), read without the viewer."""
    return pd.read_parquet(run_dir / table / f"layer={layer}")


def distinct_pictures(images: pd.DataFrame, kinds=("best", "last"), chains: pd.DataFrame | None = None):
    """One row per distinct picture of ``kinds`` (a chain's best picture that is its last once: the same
    step, or a stopped chain's stop step, ``chains.stopped_step``, where its last picture froze): unit,
    chain, step, flags (the union of the rows' flags, comma-separated), checked (a row with a percentile or
    a flag: a diverged chain's pictures have neither)."""
    rows = images[images["kind"].isin(kinds)]
    if chains is not None and "stopped_step" in chains:
        stops = chains.set_index(["unit", "chain"])["stopped_step"]
        stop = [stops.get((u, c)) for u, c in zip(rows["unit"], rows["chain"], strict=True)]
        frozen = [
            k == "last" and s is not None and pd.notna(s) for k, s in zip(rows["kind"], stop, strict=True)
        ]
        rows = rows.assign(step=[s if f else t for f, s, t in zip(frozen, stop, rows["step"], strict=True)])
    rows = rows.assign(checked=rows["natural_percentile"].notna() | (rows["flags"].fillna("") != ""))
    return (
        rows.groupby(["unit", "chain", "step"])
        .agg(
            flags=(
                "flags",
                lambda fl: ",".join(sorted({f for text in fl for f in str(text or "").split(",") if f})),
            ),
            checked=("checked", "any"),
        )
        .reset_index()
    )


def test_layers_in_config_order_with_unit_counts(run):
    _, _, conn = run
    info = data.run_info(conn)
    assert data.layers(conn, info["config"]) == list(LAYERS.items())
    assert data.layers(conn) == sorted(LAYERS.items())  # no config: by name


def test_run_stats_match_rows_written(run):
    run_dir, info, conn = run
    stats = data.run_stats(conn, data.run_info(conn)["created"])
    for table in ("units", "chains", "images", "steps"):
        assert stats[table] == info["rows"][table]
    diverged = sum(int(written(run_dir, "chains", layer)["diverged"].sum()) for layer in LAYERS)
    assert stats["diverged_chains"] == diverged
    assert stats["diverged_fraction"] == pytest.approx(diverged / info["rows"]["chains"])
    assert stats["units_per_min"] is None or stats["units_per_min"] > 0


def test_layer_table_follows_order_and_matches_written_means(run):
    run_dir, _, conn = run
    table = data.layer_table(conn, list(LAYERS))
    assert list(table["layer"]) == list(LAYERS)
    assert list(table["units"]) == list(LAYERS.values())
    for rec in table.to_dict("records"):
        units, chains = written(run_dir, "units", rec["layer"]), written(run_dir, "chains", rec["layer"])
        assert rec["mean_best_activation"] == pytest.approx(units["best_activation"].mean())
        assert rec["chains"] == len(chains)
        assert rec["median_best_step"] == pytest.approx(chains["best_step"].median())
        assert rec["steps"] == chains["steps"].max()
        assert (
            rec["stopped_share"] == pytest.approx(chains["stopped_step"].notna().mean())
            and rec["stopped_share"]
        )
    stats = data.layer_stats(conn, "conv3")
    assert stats is not None and stats["units"] == 12
    assert data.layer_stats(conn, "nope") is None


def test_parse_units_uses_the_config_parser():
    assert data.parse_units(" 3, 10-20 ") == ((3, 3), (10, 20))
    assert data.parse_units("") == () and data.parse_units("all") == ()
    for bad in ("20-10", "x", "3;4", "-1"):
        with pytest.raises(ConfigError):
            data.parse_units(bad)
    assert data.format_units([7, 0, 1, 2, 3, 9, 10]) == "0-3, 7, 9-10"
    assert data.parse_units(data.format_units([0, 1, 2, 3, 7])) == ((0, 3), (7, 7))


def test_expand_units_never_lists_more_than_the_limit():
    units, total = data.expand_units(((5, 6), (0, 10**12), (3, 3)), 24)
    assert units == list(range(24)) and total == 10**12 + 1
    assert data.expand_units(((9, 9), (2, 4), (3, 5)), 24) == ([2, 3, 4, 5, 9], 5)
    assert data.units_from([0, 2, 4, 6, 8], 4, 2) == [4, 6]
    assert data.units_from([0, 2, 4, 6, 8], 5, 2) == [0, 2]  # not a unit of the layer: from the start
    assert data.units_from([0, 2, 4], None, 8) == [0, 2, 4]


def test_grid_sorted_filtered_paged_with_each_units_best_image(run):
    run_dir, _, conn = run
    units = written(run_dir, "units", "conv3")
    images = written(run_dir, "images", "conv3")
    q = data.GridQuery(layer="conv3", sort="activation ↓", page_size=5)
    assert data.grid_count(conn, q) == 12
    expected = units.sort_values(["best_activation", "unit"], ascending=[False, True])["unit"].tolist()
    pages = [data.grid_page(conn, data.GridQuery(**{**q.__dict__, "page": p})) for p in range(3)]
    assert [len(p) for p in pages] == [5, 5, 2]
    assert [int(u) for p in pages for u in p["unit"]] == expected
    for rec in pages[0].to_dict("records"):
        best = images[(images["unit"] == rec["unit"]) & (images["kind"] == "best")]
        assert rec["png"] == best.loc[best["activation"].idxmax(), "png"] and rec["png"].startswith(PNG)
    filtered = data.GridQuery(layer="conv3", sort="unit ↑", units=data.parse_units("3-5, 9"))
    assert data.grid_count(conn, filtered) == 4
    assert data.grid_page(conn, filtered)["unit"].tolist() == [3, 4, 5, 9]
    none = data.GridQuery(layer="conv3", min_facets=data.max_facet_count(conn, "conv3") + 1)
    assert data.grid_count(conn, none) == 0 and data.grid_page(conn, none).empty
    assert data.max_facet_count(conn, "conv3") == int(units["facet_count"].max())
    # every page at once, as the grid's order and its download (a user's trial: no way to get the grid's
    # units out of the viewer), and the unit page's previous / next
    assert data.grid_order(conn, q) == expected
    table = data.grid_table(conn, q)
    assert table["unit"].tolist() == expected and "png" not in table
    assert {"best_activation", "facet_count", "composite", "label_best"} <= set(table.columns)
    assert list(table.columns[:2]) == ["layer", "unit"] and set(table["layer"]) == {"conv3"}  # a file alone
    assert data.grid_table(conn, filtered)["unit"].tolist() == data.grid_order(conn, filtered) == [3, 4, 5, 9]


@pytest.mark.parametrize("picture", ["best", "last"])
def test_grid_tiles_show_each_units_most_activating_picture_of_the_chosen_kind(run, picture):
    run_dir, _, conn = run
    images = written(run_dir, "images", "fc8")
    page = data.grid_page(conn, data.GridQuery(layer="fc8", sort="unit ↑", picture=picture))
    assert page["unit"].tolist() == list(range(10))
    for rec in page.to_dict("records"):
        mine = images[(images["unit"] == rec["unit"]) & (images["kind"] == picture)]
        top = mine.loc[mine["activation"].idxmax()]
        assert rec["png"] == top["png"] and rec["picture_activation"] == pytest.approx(top["activation"])
    if picture == "last":  # the synthetic run's last pictures are not its best ones: the switch shows
        best = data.grid_page(conn, data.GridQuery(layer="fc8", sort="unit ↑"))
        assert (best["png"] != page["png"]).any()


@pytest.mark.parametrize("picture", ["best", "last"])
@pytest.mark.parametrize("sort", ["activation ↓", "activation ↑"])
def test_an_activation_sort_follows_the_numbers_on_the_tiles(run, picture, sort):
    """A user's trial: tiles of last pictures, sorted by the best pictures' activation, read out of order."""
    _, _, conn = run
    q = data.GridQuery(layer="conv3", sort=sort, picture=picture, page_size=64)
    shown = data.grid_page(conn, q)["picture_activation"].tolist()
    assert shown == sorted(shown, reverse=sort.endswith("↓")) and len(shown) > 10
    assert data.grid_order(conn, q) == data.grid_page(conn, q)["unit"].tolist()
    if picture == "last":
        best = data.grid_order(conn, data.GridQuery(layer="conv3", sort=sort, picture="best"))
        assert best != data.grid_order(conn, q)  # the order did change with the pictures shown


def test_unit_view_shapes_what_was_written(run):
    run_dir, _, conn = run
    ids = data.unit_ids(conn, "fc8")
    assert ids == list(range(10))
    view = data.unit_view(conn, "fc8", 4, ids)
    assert (view.prev, view.next) == (3, 5)
    assert data.unit_view(conn, "fc8", 9).next is None  # neighbours queried when no ids are given
    row = written(run_dir, "units", "fc8").set_index("unit").loc[4]
    assert view.row["best_activation"] == pytest.approx(row["best_activation"])
    images = written(run_dir, "images", "fc8")
    images = images[images["unit"] == 4]
    best = images[images["kind"] == "best"]
    # one tile per facet, in facet order, each the facet's most activating best image
    assert view.facets["facet"].tolist() == sorted(best["facet"].unique())
    for rec in view.facets.to_dict("records"):
        of_facet = best[best["facet"] == rec["facet"]]
        assert rec["activation"] == pytest.approx(of_facet["activation"].max())
        assert rec["png"] == of_facet.loc[of_facet["activation"].idxmax(), "png"]
    real = images[images["kind"] == "real"]
    assert view.real["rank"].tolist() == [1, 2, 3]
    assert view.real["activation"].tolist() == sorted(real["activation"], reverse=True)
    # 2 chains x 2 methods, each with best, last and two snapshots by step
    assert sorted(view.chain_images) == view.chains["chain"].tolist() == [0, 1, 2, 3]
    for kept in view.chain_images.values():
        assert kept["kind"].tolist() == ["best", "last", "snapshot", "snapshot"]
        assert kept["step"].iloc[2] < kept["step"].iloc[3]
        assert all(p.startswith(PNG) for p in kept["png"])
    assert len(view.steps) == len(written(run_dir, "steps", "fc8").query("unit == 4"))
    assert view.metrics == list(data.TRAJECTORY_METRICS)
    assert not view.competitors.empty and 4 not in set(view.competitors["competitor"])


def test_unit_view_of_a_missing_unit(run):
    _, _, conn = run
    view = data.unit_view(conn, "fc8", 99, data.unit_ids(conn, "fc8"))
    assert view.row is None and view.facets.empty and view.real.empty and view.chain_images == {}
    assert (view.prev, view.next) == (9, None)


def test_best_image_map_per_method(run):
    run_dir, _, conn = run
    chains = written(run_dir, "chains", "fc8")
    images = written(run_dir, "images", "fc8").merge(
        chains[["unit", "chain", "method"]], on=["unit", "chain"]
    )
    for method in ("dgn_am", "ppgn_h", None):
        got = data.best_image_map(conn, "fc8", [1, 2, 7], method)
        assert sorted(got) == [1, 2, 7]
        for unit, rec in got.items():
            best = images[(images["unit"] == unit) & (images["kind"] == "best")]
            best = best if method is None else best[best["method"] == method]
            assert rec["activation"] == pytest.approx(best["activation"].max())
            assert rec["png"] == best.loc[best["activation"].idxmax(), "png"]
    assert data.methods(conn) == ["dgn_am", "ppgn_h"] == data.methods(conn, "fc8")
    assert data.best_image_map(conn, "fc8", []) == {}


def test_methods_of_one_layer():
    """An ensemble run names the ensemble on its output layer's chains only: one method per layer, which
    Compare must not offer as two methods to compare (they share no layer)."""
    import duckdb

    conn = duckdb.connect()
    conn.execute("CREATE TABLE chains AS SELECT * FROM (VALUES ('fc8', 'dgn_am[ensemble=5]'), "
                 "('conv2', 'dgn_am'), ('conv2', NULL)) t(layer, method)")  # fmt: skip
    assert data.methods(conn) == ["dgn_am", "dgn_am[ensemble=5]"]
    assert data.methods(conn, "fc8") == ["dgn_am[ensemble=5]"] and data.methods(conn, "conv2") == ["dgn_am"]


def test_shards_schema_and_console(run):
    run_dir, info, conn = run
    shards = data.shards(conn)
    assert len(shards) == info["shards"] and "done_time" not in shards
    assert shards["done"].str.fullmatch(r"\d\d:\d\d:\d\d").all()
    schema = data.schema(conn)
    assert list(schema) == list(data.SCHEMA_TABLES)
    assert ("best_activation", "double") in schema["units"]
    ok = data.console_query(run_dir, "SELECT unit, png FROM images WHERE kind = 'best' LIMIT 2", 10, 10.0)
    assert ok.error is None and len(ok.frame) == 2 and not ok.truncated
    assert ok.frame["png"].str.startswith("data:image/png;base64,").all()  # drawn as pictures
    capped = data.console_query(run_dir, "SELECT unit FROM units", 5, 10.0)
    assert len(capped.frame) == 5 and capped.truncated
    refused = data.console_query(run_dir, "COPY units TO '/tmp/atlas-viewer-data.csv'", 10, 10.0)
    assert refused.frame is None and "read-only" in refused.error


def test_every_example_query_runs_on_a_run_with_every_column(run):
    run_dir, info, _ = run
    for name in data.example_names(data.truth(run[2])):
        sql = data.EXAMPLE_QUERIES[name].format(layer="fc8", unit=3)
        result = data.console_query(run_dir, sql, 1000, 10.0)
        assert result.error is None, (name, result.error)
        assert len(result.frame) > 0 or name in ("diverged chains", "units with no label"), name
    where_sql = data.EXAMPLE_QUERIES["where the shards ran (precision, device, host)"]
    where = data.console_query(run_dir, where_sql, 10, 10.0)
    assert where.frame["shards"].sum() == info["shards"]


# ---- truth columns (issue 16) ------------------------------------------------------------------
@pytest.fixture(scope="module")
def old_run(tmp_path_factory):
    """A run without the truth columns (the shape of runs written before issue 16)."""
    run_dir = tmp_path_factory.mktemp("viewer-data-old") / "old"
    make_synthetic_run(run_dir, layers=LAYERS, chains=2, steps=40, real_k=3, truth=False)
    conn = open_run(run_dir)
    yield run_dir, conn
    conn.close()


def test_no_label_names_the_rule_that_refused_it():
    """A unit without a label whose best concept passes the AUROC threshold was refused by another rule:
    the unit page says which, never "reaches only 0.95 (< 0.85)"."""
    base = {"label": None, "label_best": "green pill", "label_runner_up": "red pill", "label_margin": 0.01}
    low = data.label_view(base | {"label_score": 0.80, "label_top_share": 0.9})
    few = data.label_view(base | {"label_score": 0.953, "label_top_share": 0.35})
    silent = data.label_view(base | {"label_score": 0.953, "label_top_share": 0.9})
    assert data.no_label_reason(low) == "best concept `green pill` reaches only AUROC **0.800** (< 0.85)"
    said = data.no_label_reason(few)
    assert "**0.953**, but only 35% of the unit's top 20 natural images show it (a label needs 50%)" in said
    assert "no natural image activates the unit" in data.no_label_reason(silent)
    dead = base | {"label_score": 0.7, "label_top_share": 0.15, "kind": "fc", "real_top1_activation": -13.7}
    assert data.no_label_reason(data.label_view(dead)).startswith("no natural image activates the unit")
    assert data.is_silent(dead) and not data.is_silent(dead | {"kind": "output"})
    assert not data.is_silent(dead | {"real_top1_activation": 0.2}) and not data.is_silent(base)


def test_synthetic_truth_columns_are_consistent(run):
    from atlas.sampling import concepts

    assert (data.LABEL_THRESHOLD, data.WEAK_PERCENTILE, data.TOP_K, data.TOP_SHARE) == (
        concepts.LABEL_THRESHOLD,
        concepts.WEAK_PERCENTILE,
        concepts.TOP_K,
        concepts.TOP_SHARE,
    )
    run_dir, _, _ = run
    for layer in LAYERS:
        units = written(run_dir, "units", layer)
        assert (units["label"].isna() == (units["label_score"] < data.LABEL_THRESHOLD)).all()
        for r in units.itertuples():
            assert 6 <= len(r.tuning_concepts) == len(r.tuning_auroc) == len(r.tuning_mean) <= 10
            assert r.tuning_concepts[0] == r.label_best and r.tuning_concepts[1] == r.label_runner_up
            assert list(r.tuning_auroc) == sorted(r.tuning_auroc, reverse=True)
            assert r.label_margin == pytest.approx(r.tuning_auroc[0] - r.tuning_auroc[1])
        images = written(run_dir, "images", layer)
        real, synth = images[images["kind"] == "real"], images[images["kind"] != "real"]
        assert real["natural_percentile"].isna().all() and real["flags"].isna().all()  # not checked
        p = synth["natural_percentile"]
        assert p.dropna().between(0, 1).all()
        assert ((synth["flags"] == "weak") == (p < data.WEAK_PERCENTILE)).all()
        assert (units["label_shown"].isna() == units["label"].isna()).all()  # no label: nothing to show
        assert units["label_shown"].dropna().between(0, 1).all() and units["reader_agreement"].notna().all()
        read = synth[synth["kind"].isin(["last", "best"])]["reader_concepts"]
        assert read.map(len).ge(4).all() and real["reader_concepts"].isna().all()
        assert synth[synth["kind"] == "snapshot"]["reader_concepts"].isna().all()


def test_old_shape_run_lacks_truth_columns_and_keeps_every_other_value(old_run):
    old_dir, _ = old_run
    new_dir = old_dir.parent / "same"  # the same run with truth columns: every other value is the same
    make_synthetic_run(new_dir, layers=LAYERS, chains=2, steps=40, real_k=3)
    for table, columns in (
        ("units", (*data.LABEL_COLUMNS, *data.READER_COLUMNS)),
        ("images", (*data.PICTURE_COLUMNS, "reader_concepts")),
    ):
        for layer in LAYERS:
            old, new = written(old_dir, table, layer), written(new_dir, table, layer)
            assert not set(columns) & set(old.columns) and set(columns) <= set(new.columns)
            pd.testing.assert_frame_equal(new[old.columns], old)


def test_percentile_text_and_flags():
    assert data.percentile_text(0.9973) == "p99.7"
    assert data.percentile_text(0.98996) == "p98.9"  # rounded down: a weak picture never reads p99.0
    assert data.percentile_text(0.993) == "p99.3"
    assert data.percentile_text(1.0) == "p100" and data.percentile_text(None) is None
    assert data.percentile_text(float("nan")) is None
    assert data.split_flags("weak,off_path") == ["weak", "off_path"]
    assert data.split_flags("") == [] and data.split_flags(None) == []


def test_unit_view_label_and_badges_match_what_was_written(run):
    run_dir, _, conn = run
    assert data.truth(conn) == data.Truth(labels=True, pictures=True, reader=True)
    units = written(run_dir, "units", "conv3").set_index("unit")
    images = written(run_dir, "images", "conv3")
    for unit in (0, 5, 11):
        view = data.unit_view(conn, "conv3", unit)
        row, lab = units.loc[unit], view.label
        assert lab is not None and lab.best == row["label_best"] and lab.runner_up == row["label_runner_up"]
        assert lab.label == (None if pd.isna(row["label"]) else row["label"])
        assert lab.score == pytest.approx(row["label_score"]) and lab.margin == pytest.approx(
            row["label_margin"]
        )
        assert lab.tuning["concept"].tolist() == list(row["tuning_concepts"])
        assert lab.tuning["mean"].tolist() == pytest.approx(list(row["tuning_mean"]))
        assert lab.tuning["is_label"].tolist() == [c == row["label"] for c in row["tuning_concepts"]]
        shown = row["label_shown"]
        assert lab.label_shown == (None if pd.isna(shown) else pytest.approx(shown))
        assert lab.reader_agreement == pytest.approx(row["reader_agreement"])
        mine = images[(images["unit"] == unit) & (images["kind"] != "real")]
        for chain, kept in view.chain_images.items():
            src = mine[mine["chain"] == chain].set_index(["kind", "step"])
            for rec in kept.to_dict("records"):
                got = src.loc[(rec["kind"], rec["step"])]
                p = got["natural_percentile"]
                assert rec["natural_percentile"] == (None if pd.isna(p) else pytest.approx(p))
                assert rec["badge"] == data.percentile_text(p)
                assert rec["flags"] == data.split_flags(got["flags"])
        assert view.facets["badge"].notna().all()


def test_grid_label_sort_and_filters_match_what_was_written(run):
    run_dir, _, conn = run
    units = written(run_dir, "units", "conv3")
    images = written(run_dir, "images", "conv3")
    assert "label score ↓" in data.sorts(True) and "label score ↓" not in data.sorts(False)
    page = data.grid_page(conn, data.GridQuery(layer="conv3", sort="label score ↓", page_size=100))
    expected = units.sort_values(["label_score", "unit"], ascending=[False, True])
    assert page["unit"].tolist() == expected["unit"].tolist()
    assert page["label_score"].tolist() == pytest.approx(expected["label_score"].tolist())
    text = str(units["label"].dropna().iloc[0])[:4].upper()  # case-insensitive substring
    hits = units[units["label"].fillna("").str.lower().str.contains(text.lower(), regex=False)]
    q = data.GridQuery(layer="conv3", sort="unit ↑", label_text=text, page_size=100)
    assert data.grid_page(conn, q)["unit"].tolist() == sorted(hits["unit"]) and data.grid_count(
        conn, q
    ) == len(hits)
    q = data.GridQuery(layer="conv3", sort="unit ↑", label_text="no label", page_size=100)
    assert data.grid_page(conn, q)["unit"].tolist() == sorted(units.loc[units["label"].isna(), "unit"])
    copied = text[:2] + "\u200b" + text[2:]  # from an overview caption, its hidden break included
    q = data.GridQuery(layer="conv3", sort="unit ↑", label_text=copied, page_size=100)
    assert data.grid_count(conn, q) == len(hits)
    results = distinct_pictures(images, chains=written(run_dir, "chains", "conv3"))
    weak = results[results["flags"].str.split(",").apply(lambda f: "weak" in f)]
    q = data.GridQuery(layer="conv3", sort="unit ↑", flag="weak", page_size=100)
    page = data.grid_page(conn, q)
    assert page["unit"].tolist() == sorted(weak["unit"].unique()) and len(page) > 0
    counts = weak.groupby("unit").size()
    assert [fc.get("weak") for fc in page["flag_counts"]] == counts.loc[page["unit"]].tolist()


def test_flag_summary_and_flagged_units_match_what_was_written(run):
    run_dir, _, conn = run
    assert data.flag_names(conn) == ["weak"]
    summary = data.flag_summary(conn).set_index("layer")
    listed = data.flagged_units(conn)
    for layer in LAYERS:
        images = written(run_dir, "images", layer)
        results = distinct_pictures(images, chains=written(run_dir, "chains", layer))  # best = last: once
        assert len(results) < (images["kind"].isin(["best", "last"])).sum()  # the run has such pairs
        flagged = results[results["flags"].fillna("") != ""]
        rec = summary.loc[layer]
        assert (rec["pictures"], rec["flagged"], rec["weak"]) == (len(results), len(flagged), len(flagged))
        assert rec["flagged_units"] == flagged["unit"].nunique()
        checked = results["checked"].sum()
        assert 0 < checked <= len(results)  # a diverged chain's pictures have no percentile: not checked
        assert rec["checked"] == checked and rec["flagged_share"] == pytest.approx(len(flagged) / checked)
        mine = listed[listed["layer"] == layer].set_index("unit")
        per_unit = flagged.groupby("unit").size()
        assert sorted(mine.index) == sorted(per_unit.index)
        assert (mine.loc[per_unit.index, "flagged"] == per_unit).all()
        labels = written(run_dir, "units", layer).set_index("unit")["label"]
        assert mine["label"].fillna("-").tolist() == labels.loc[mine.index].fillna("-").tolist()
    assert listed["flagged"].is_monotonic_decreasing
    one = data.flagged_units(conn, ("best",), layer="fc8", flag="weak")
    assert set(one["layer"]) <= {"fc8"} and (one["flagged"] <= one["pictures"]).all()


def test_old_shape_run_is_shaped_without_truth(old_run):
    _, conn = old_run
    assert data.truth(conn) == data.Truth(labels=False, pictures=False)
    view = data.unit_view(conn, "fc8", 3)
    assert view.label is None and view.row is not None and "label" not in view.row
    for kept in view.chain_images.values():
        assert kept["badge"].isna().all() and kept["flags"].map(len).sum() == 0
    page = data.grid_page(conn, data.GridQuery(layer="fc8", sort="label score ↓"))  # falls back to unit order
    assert page["unit"].tolist() == list(range(10)) and page["label"].isna().all()
    assert page["flag_counts"].tolist() == [{}] * 10
    assert set(data.example_names(data.truth(conn))) == set(data.EXAMPLE_QUERIES) - set(data.TRUTH_EXAMPLES)


def test_run_with_labels_but_no_reader_columns(tmp_path):
    """Runs written after the labels but before the attribute reader: label shown, no reader line."""
    run_dir = tmp_path / "labels-only"
    make_synthetic_run(run_dir, layers={"fc8": 10}, chains=2, steps=40, real_k=3, reader=False)
    conn = open_run(run_dir)
    try:
        assert data.truth(conn) == data.Truth(labels=True, pictures=True, reader=False)
        view = data.unit_view(conn, "fc8", 3)
        assert (
            view.label is not None and view.label.label_shown is None and view.label.reader_agreement is None
        )
        assert "label shown per layer" not in data.example_names(data.truth(conn))
        assert "units by label" in data.example_names(data.truth(conn))
    finally:
        conn.close()


def test_badges_show_the_path_percentile_and_fall_back_to_path_z():
    from viewer.data.unit import _path_badge, badge_text, label_view

    assert badge_text(0.997, _path_badge(0.45, -7.0)) == "p99.7 · path p45"
    assert badge_text(0.997, _path_badge(None, -0.3)) == "p99.7 · path -0.3"  # a run before path_percentile
    assert badge_text(0.997, _path_badge(None, None)) == "p99.7"
    row = {
        "label": "class:disk",
        "label_score": 0.99,
        "dissection_label": "white disk",
        "dissection_iou": 0.12,
    }
    lab = label_view(row)
    assert (lab.dissection_label, lab.dissection_iou) == ("white disk", 0.12)
    assert label_view({"label": None, "label_score": 0.5}).dissection_iou is None  # older runs: no dissection


def test_union_labels_get_a_caption_naming_both_concepts():
    from viewer.pages_impl.unit import union_note

    note = union_note("class:ring|frame")
    assert note is not None and note.startswith(
        "a union: the unit detects `class:ring` or `class:frame` alike"
    )
    assert union_note("class:ring") is None and union_note(None) is None and union_note("red pill") is None


def test_place_bound_labels_get_their_cell_framed_on_the_pictures():
    import io

    import numpy as np
    from PIL import Image

    from viewer.data import is_place_bound, label_view, outline_cell
    from viewer.pages_impl.unit import place_note

    lab = label_view({"label": "colour:red@here", "label_score": 0.9, "label_cell": [16, 20, 8, 12]})
    assert lab.cell == (16, 20, 8, 12)
    assert label_view({"label": "class:ring", "label_score": 0.9}).cell is None  # fc units, older runs
    assert is_place_bound("colour:red@here") and is_place_bound("here:edge")
    assert not is_place_bound("red pill") and not is_place_bound(None)
    note = place_note("here:edge", (16, 20, 8, 12))
    assert note is not None and "rows 16–19, columns 8–11" in note
    assert place_note("class:ring", (16, 20, 8, 12)) is None and place_note("here:edge", None) is None

    pixels = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    framed = np.asarray(Image.open(io.BytesIO(outline_cell(buf.getvalue(), (16, 20, 8, 12)))))
    assert framed.shape == (128, 128, 3)  # enlarged 4 x (nearest) to at least 128 px; lines 2 px wide
    assert np.array_equal(framed[64:80, 32:48], np.kron(pixels[16:20, 8:12], np.ones((4, 4, 1), np.uint8)))
    assert (framed[62:64, 32:48] == 255).all() and (framed[60:62, 32:48] == 0).all()  # white, then black
    assert (framed[64:80, 48:50] == 255).all() and (framed[64:80, 50:52] == 0).all()
    assert (framed[80:82, 32:48] == 255).all() and (framed[64:80, 28:30] == 0).all()
    assert outline_cell(buf.getvalue(), None) == buf.getvalue() and outline_cell(None, (0, 1, 0, 1)) is None


def test_a_conv_units_place_without_a_label_is_its_map_position_on_each_picture():
    """Real networks have no concept labels (no cell): the frame comes from the unit's map position and the
    layer's map size in run.json, as a block of each picture at its own size."""
    import io

    import numpy as np
    import pandas as pd
    from PIL import Image

    from viewer.data import UnitView, outline_cell, unit_place, with_outlined_cell

    manifest = {"layers": [{"name": "features.11", "kind": "conv", "shape": [256, 13, 13]},
                           {"name": "fc8", "kind": "output", "shape": [1000]}]}  # fmt: skip
    assert unit_place({"spatial": "center (6,6)"}, "features.11", manifest) == ((6, 6), (13, 13))
    assert unit_place({"spatial": "mean"}, "features.11", manifest) is None  # the map's mean: everywhere
    assert unit_place({"spatial": None}, "fc8", manifest) is None
    assert unit_place({"spatial": "center (6,6)"}, "features.11", {}) is None  # shapes not recorded
    assert unit_place(None, "features.11", manifest) is None

    def png(side: int) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(np.full((side, side, 3), 90, np.uint8)).save(buf, format="PNG")
        return buf.getvalue()

    empty = pd.DataFrame()
    view = UnitView("features.11", 3, {"spatial": "center (6,6)"}, None, None,
                    facets=pd.DataFrame({"png": [png(227)]}), real=pd.DataFrame({"png": [png(64)]}),
                    chain_images={0: pd.DataFrame({"png": [png(227), None]})}, chains=empty, steps=empty,
                    competitors=empty)  # fmt: skip
    framed = with_outlined_cell(view, unit_place(view.row, "features.11", manifest))
    # 6 of 13 over 227 px: rows and columns 104-121; over 64 px: 29-33 (enlarged 2 x to 128 px)
    assert framed.facets["png"][0] == outline_cell(png(227), (104, 122, 104, 122))
    assert framed.real["png"][0] == outline_cell(png(64), (29, 34, 29, 34))
    assert (
        framed.chain_images[0]["png"][0] == framed.facets["png"][0]
        and framed.chain_images[0]["png"][1] is None
    )
    assert with_outlined_cell(view, None) is view  # no label cell, no place: as it was


def test_each_layers_histogram_is_binned_over_its_own_range():
    """Layers differ in scale by orders of magnitude: one shared axis would leave each but the widest a
    sliver. Every finite value is counted once, in its own layer's bins."""
    import numpy as np
    import pandas as pd

    from viewer import widgets

    rng = np.random.default_rng(0)
    small, large = rng.normal(0, 0.01, 50), rng.normal(500, 100, 80)
    dist = pd.DataFrame(
        {
            "layer": ["conv"] * 52 + ["fc8"] * 80,
            "best_activation": [*small, float("nan"), float("inf"), *large],
        }
    )
    charts = widgets.layer_histograms(dist, "best_activation")
    assert len(charts) == 2
    for chart, values in zip(charts, (small, large), strict=True):
        bins = chart.data
        assert bins["units"].sum() == len(values) and len(bins) <= 24
        assert bins["start"].min() == values.min() and np.isclose(bins["end"].max(), values.max())
    in_run_order = widgets.layer_histograms(dist, "best_activation", order=["fc8", "conv"])
    assert [c.data["layer"].iloc[0] for c in in_run_order] == ["fc8", "conv"]  # the run's order, not a-z
    sure = pd.DataFrame({"layer": ["fc8"] * 10, "best_log_prob": [0.0] * 10})  # every class sure: all 0
    [one] = widgets.layer_histograms(sure, "best_log_prob")
    bar = one.data.iloc[0]
    assert one.data["units"].tolist() == [10] and bar["start"] < 0 < bar["end"]
    assert one.to_dict()["encoding"]["x"]["scale"]["domain"] == [-1.0, 1.0]  # a window around the value
    assert bar["end"] - bar["start"] < 0.1  # with a narrow bar in it


def test_model_differences_name_the_networks_whose_weights_differ():
    mine = {"fingerprints": {"target": {"spec": "t", "fingerprint": "aa"}, "generator": {"fingerprint": "g"}}}
    assert data.model_differences(mine, mine) == []
    other = {"fingerprints": {"target": {"fingerprint": "bb"}, "generator": "g", "dae": {"fingerprint": "d"}}}
    assert data.model_differences(mine, other) == ["targets"]  # the DAE is recorded by one run only
    assert data.model_differences({}, other) == []  # an old run without fingerprints: nothing to say


def test_a_snapshot_of_the_last_step_is_not_shown_twice():
    from viewer.pages_impl.unit import _without_repeats

    kept = pd.DataFrame(
        {"kind": ["best", "last", "snapshot", "snapshot"], "step": [95, 100, 50, 100], "png": [b"x"] * 4}
    )
    assert list(zip(*_without_repeats(kept)[["kind", "step"]].to_dict("list").values(), strict=True)) == [
        ("best", 95),
        ("snapshot", 50),
        ("last", 100),
    ]  # fmt: skip  (best, the way there in step order, the end)
    assert len(_without_repeats(kept[kept["kind"] != "last"])) == 3  # no last picture: nothing to drop
    stopped = pd.DataFrame(
        {"kind": ["best", "last", "snapshot", "snapshot", "snapshot"], "step": [6, 100, 0, 6, 20],
         "png": [b"x"] * 5}
    )  # fmt: skip
    shown = _without_repeats(stopped, 6.0)  # stopped at step 6: later snapshots are all its last picture
    assert list(zip(shown["kind"], shown["step"], strict=True)) == [
        ("best = last", 6),  # its picture froze at its best: shown once
        ("snapshot", 0),
    ]
    assert len(_without_repeats(stopped, float("nan"))) == 5  # never stopped
    at_end = pd.DataFrame({"kind": ["best", "last", "snapshot", "snapshot"], "step": [100, 100, 50, 100],
                           "png": [b"x"] * 4})  # fmt: skip
    shown = _without_repeats(at_end)  # its best is its last: the last step's snapshot is that picture too
    assert list(zip(shown["kind"], shown["step"], strict=True)) == [("best = last", 100), ("snapshot", 50)]


def test_console_results_draw_png_cells_as_pictures_up_to_a_row_count():
    png = data.PNG_MAGIC + b"rest"
    frame = data.result_frame(["unit", "png", "blob"], [(1, png, b"\x00\x01")])
    assert frame.loc[0, "png"].startswith("data:image/png;base64,") and frame.loc[0, "blob"] == "<2 bytes>"
    assert data.picture_columns(frame) == ["png"]  # found whatever dtype pandas gives text columns
    many = data.result_frame(["png"], [(png,)] * (data.PICTURE_ROWS + 1))
    assert data.picture_columns(many) == [] and many.loc[0, "png"] == f"<{len(png)} bytes>"


def test_float_noise_around_zero_reads_as_zero_and_seeds_as_text():
    """A sure class's log-prob (-1.3e-43) is 0 on screen and on a chart's axis, never -1e-26; NaN stays
    missing; 64-bit seeds are text (a number column cannot show them exactly)."""
    import numpy as np

    from viewer import widgets

    cleaned = widgets.without_noise(pd.Series([-1.29e-43, 0.5, float("nan"), -3e-17, -2.0]))
    assert cleaned[[0, 1, 3, 4]].tolist() == [0.0, 0.5, 0.0, -2.0] and np.isnan(cleaned[2])
    assert (
        widgets.fmt(widgets.snap(-1.29e-43)) == "0" and widgets.fmt(5e-10) == "5e-10"
    )  # activations as they are
    chains = pd.DataFrame({"chain": [0, 1], "seed": [2**62 + 1, 5], "final_log_prob": [-1e-16, -1.5]})
    table, config = widgets.chain_table(chains)
    assert table["seed"].tolist() == [str(2**62 + 1), "5"] and table["final_log_prob"].tolist() == [0.0, -1.5]
    assert set(config) == {"seed", "final_log_prob"}


def test_compared_runs_are_summarized_over_the_units_both_hold(run):
    import numpy as np

    run_dir, _info, conn = run
    every = data.stats_over(conn, "fc8", data.unit_ids(conn, "fc8"))
    two = data.stats_over(conn, "fc8", [0, 1])
    units = written(run_dir, "units", "fc8")
    assert np.isclose(every["mean_best_activation"], units["best_activation"].mean())
    assert np.isclose(two["mean_best_activation"], units[units.unit.isin([0, 1])]["best_activation"].mean())
    assert data.stats_over(conn, "fc8", [])["mean_best_activation"] is None


def test_synthetic_runs_write_what_real_runs_write():
    """The viewer's tests browse synthetic runs: their thresholds and strings must be the real ones."""
    from atlas.bench import synthetic_run
    from atlas.sampling import concepts

    assert synthetic_run.LABEL_THRESHOLD == concepts.LABEL_THRESHOLD
    assert synthetic_run.WEAK_PERCENTILE == concepts.WEAK_PERCENTILE


def test_a_picture_that_does_not_decode_is_named_not_a_traceback(monkeypatch):
    import streamlit as st

    from viewer import widgets

    said: list[str] = []
    monkeypatch.setattr(st, "caption", lambda text, **_: said.append(text))
    widgets.picture(b"\x89PNG not a picture", caption="unit 3")  # a damaged shard's bytes
    assert said and "picture unreadable" in said[0] and "atlas verify --deep" in said[0]


def test_a_folder_of_runs_opens_on_its_newest_complete_run():
    from viewer.data import default_run

    runs = [
        {"status": "complete", "created": "2026-11-01T10:00:00+00:00"},  # "alpha"
        {"status": "complete", "created": "2026-11-03T10:00:00+00:00"},  # "beta": newest complete
        {"status": "running", "created": "2026-12-01T10:00:00+00:00"},  # "gamma": still being written
        None,  # "zeta": run.json does not read
    ]
    assert default_run(runs) == 1
    assert default_run([runs[2], None]) == 0  # nothing complete: the newest
    assert default_run([None, None]) == 1 and default_run([]) == 0


def test_trajectories_end_where_their_chain_stopped():
    from viewer.data import until_stopped

    steps = pd.DataFrame(
        {"chain": [0, 0, 0, 1, 1, 1], "step": [0, 10, 20, 0, 10, 20], "activation": [1.0, 5, 5, 1, 2, 3]}
    )
    chains = pd.DataFrame({"chain": [0, 1], "stopped_step": [2.0, None]})  # chain 0 stopped at step 2
    out = until_stopped(steps, chains)
    assert out[out["chain"] == 0][["step", "activation"]].values.tolist() == [[0, 1.0], [2, 5.0]]
    assert out[out["chain"] == 1]["step"].tolist() == [0, 10, 20]  # ran to the end: untouched
    assert until_stopped(steps, chains.drop(columns="stopped_step")).equals(steps)  # an older run


def test_competitors_count_only_the_steps_a_chain_ran(run):
    """A chain stopped at step 2 (sampler.stop_at) keeps recording its frozen rows: they are no steps on which
    a competitor led, so the count stops with the chain, as its trajectory line does."""
    _, _, conn = run
    steps = pd.DataFrame(
        {"chain": [0, 0, 0, 0, 1, 1], "step": [0, 10, 20, 30, 0, 10], "top_competitor": [7, 6, 6, 6, 6, 4]}
    )
    chains = pd.DataFrame({"chain": [0, 1], "stopped_step": [2.0, None]})
    comp = data.unit_competitors(conn, "fc8", 4, steps=steps, chains=chains).set_index("competitor")
    # chain 0: step 0 (7) and the row that holds its stop (6); chain 1: both rows (6; 4 is the unit itself)
    assert comp.loc[6, "times_top_competitor"] == 2 and comp.loc[7, "times_top_competitor"] == 1
    assert 4 not in comp.index
    unstopped = chains.assign(stopped_step=None)
    assert (
        data.unit_competitors(conn, "fc8", 4, steps=steps, chains=unstopped)
        .set_index("competitor")
        .loc[6, "times_top_competitor"]
        == 4
    )


def rewrite_run(run_dir, layer: str, units=None, images=None, chains=None) -> None:
    """Rewrite ``layer``'s units, images and chains files through ``units(df) -> df`` / ``images(df) -> df``
    / ``chains(df) -> df`` (the last shard's file takes rows added), as failed units and composites of a
    real run would be written; the markers then record no sizes, as old runs' do."""
    from pathlib import Path

    for table, change in (("units", units), ("images", images), ("chains", chains)):
        if change is None:
            continue
        files = sorted(Path(run_dir, table, f"layer={layer}").glob("*.parquet"))
        frames = [pd.read_parquet(f) for f in files]
        whole = change(pd.concat(frames, ignore_index=True))
        for f, frame in zip(files, frames, strict=True):
            mine = whole["unit"].between(frame["unit"].min(), frame["unit"].max())
            last = f == files[-1]
            (whole[mine | (whole["unit"] > frame["unit"].max())] if last else whole[mine]).to_parquet(
                f, index=False
            )
    for marker in Path(run_dir, "_shards").glob("*.done"):
        content = json.loads(marker.read_text())
        content.pop("sizes", None)
        marker.write_text(json.dumps(content))


FAILED_UNITS = (2, 3)
COMPOSITES = {"3 + 5": 113.0, "3 - 5": 57.0}  # expression -> its (summed) best log-prob


def fail_and_compose(
    run_dir, layer: str = "fc8", n: int = 10, composites=COMPOSITES, failed=FAILED_UNITS, column: bool = True
):
    """Units ``failed`` of ``layer`` failed (no pictures) and ``composites`` added as units n, n+1, ...;
    without ``column``, no ``composite`` column (a run before it: only the objective says it)."""

    def units(df: pd.DataFrame) -> pd.DataFrame:
        bad = df["unit"].isin(failed)
        df.loc[bad, ["best_activation", "best_log_prob", "mean_last_activation"]] = None
        df.loc[bad, ["best_rank", "facet_count", "n_chains"]] = [-1, 0, 0]
        df.loc[bad, "status"] = "error"
        df.loc[bad, "error"] = [f"RuntimeError: boom {u} at model.py:7" for u in df.loc[bad, "unit"]]
        added = []
        for k, (text, log_prob) in enumerate(composites.items()):
            row = df[df["unit"] == 0].iloc[0].copy()
            row["unit"], row["composite"] = n + k, text
            row["objective"], row["best_log_prob"], row["best_rank"] = f"raw[{layer}: {text}]", log_prob, 3
            added.append(row)
        out = pd.concat([df, pd.DataFrame(added)], ignore_index=True)
        return out if column else out.drop(columns=["composite"])

    rewrite_run(run_dir, layer, units=units, images=lambda df: df[~df["unit"].isin(failed)])


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    """fc8 of 10 units, 2 of them failed, and 2 composites (units 10 and 11)."""
    run_dir = tmp_path_factory.mktemp("broken") / "run"
    make_synthetic_run(run_dir, layers={"fc8": 10}, chains=2, steps=40, real_k=3)
    fail_and_compose(run_dir)
    conn = open_run(run_dir)
    yield run_dir, conn
    conn.close()


def test_failed_units_and_composites_stay_out_of_layer_statistics(broken):
    run_dir, conn = broken
    units = written(run_dir, "units", "fc8")
    own = units[units["composite"].isna() & (units["status"] != "error")]
    table = data.layer_table(conn, ["fc8"]).iloc[0]
    assert (table["units"], table["composites"], table["failed_units"]) == (10, 2, 2)
    assert table["mean_best_log_prob"] == pytest.approx(own["best_log_prob"].mean())  # no +113
    assert table["mean_facets"] == pytest.approx(own["facet_count"].mean())  # no failed 0 facets
    assert sorted(data.distributions(conn)["unit"]) == sorted(own["unit"])
    stats = data.run_stats(conn, data.run_info(conn)["created"])
    assert stats["failures"]["count"] == 2 and stats["failures"]["first_unit"] == ("fc8", 2)
    assert stats["failures"]["first_error"] == "RuntimeError: boom 2 at model.py:7"
    assert stats["composites"] == 2
    assert data.composite_counts(conn) == {"fc8": 2}
    kinds = data.unit_kinds(conn, "fc8")
    assert {u: k["composite"] for u, k in kinds.items()} == {2: None, 3: None, 10: "3 + 5", 11: "3 - 5"}
    assert {u for u, k in kinds.items() if k["status"] == "error"} == set(FAILED_UNITS)
    page = data.grid_page(conn, data.GridQuery("fc8", sort="selectivity (log-prob) ↓", page_size=100))
    assert page["unit"].tolist()[-2:] == [10, 11]  # contrasts after the layer's own units, not first
    for sort in data.sorts(labels=True):  # every sort: composites after the own units (failed ones too)
        order = data.grid_page(conn, data.GridQuery("fc8", sort=sort, page_size=100))["unit"].tolist()
        assert sorted(order[-2:]) == [10, 11] and sorted(order[:-2]) == list(range(10)), (sort, order)
    assert page.set_index("unit").loc[10, "composite"] == "3 + 5"
    assert data.unit_row(conn, "fc8", 10)["composite"] == "3 + 5"
    assert data.unit_row(conn, "fc8", 4)["composite"] is None
    assert page.set_index("unit").loc[2, "error"].startswith("RuntimeError: boom 2")
    summary = data.flag_summary(conn).set_index("layer")
    assert summary.loc["fc8", "failed_units"] == 2
    assert data.unit_name(10, "3 + 5") == "unit 10 · 3 + 5" and data.unit_name(4, None) == "unit 4"
    assert data.first_term("0.7*3 + 0.3*7") == "3"


def test_composites_of_runs_before_the_composite_column_are_read_from_the_objective(tmp_path):
    run_dir = tmp_path / "old"
    make_synthetic_run(run_dir, layers={"fc8": 10}, chains=1, steps=20, real_k=0)
    fail_and_compose(run_dir, composites={"1 + 2": 9.0}, failed=(), column=False)
    conn = open_run(run_dir)
    try:
        assert "composite" not in data.table_columns(conn, "units")
        assert data.composite_counts(conn) == {"fc8": 1}
        assert data.unit_kinds(conn, "fc8") == {10: {"composite": "1 + 2", "status": "ok", "error": None}}
        assert data.unit_row(conn, "fc8", 10)["composite"] == "1 + 2"  # the unit page's title says it
        assert data.unit_row(conn, "fc8", 3)["composite"] is None
        assert data.layer_table(conn, ["fc8"]).iloc[0]["units"] == 10
    finally:
        conn.close()


def test_compare_matches_composites_by_expression_not_number():
    ids, other_ids = [0, 1, 10, 11], [0, 1, 10, 11, 12]
    mine = {10: {"composite": "3 + 5"}, 11: {"composite": "3 - 5"}}
    theirs = {10: {"composite": "1 + 2"}, 11: {"composite": "3 + 5"}, 12: {"composite": "3 - 5"}}
    matched, differ = data.match_units(ids, mine, other_ids, theirs)
    assert matched == {0: 0, 1: 1, 10: 11, 11: 12}
    assert differ == {10: ("3 + 5", "1 + 2"), 11: ("3 - 5", "3 + 5")}
    matched, differ = data.match_units([0, 10], {10: {"composite": "3 + 5"}}, [0, 10], {})
    assert matched == {0: 0} and differ == {10: ("3 + 5", None)}  # unit 10 is an own unit there


def test_throughput_leaves_out_the_idle_time_between_an_interrupt_and_its_resume(tmp_path):
    from datetime import UTC, datetime

    run_dir = tmp_path / "resumed"
    make_synthetic_run(run_dir, layers={"fc8": 10}, chains=1, steps=20, real_k=0, units_per_shard=2)
    t0 = 1_700_000_000.0
    times = [t0 + 60, t0 + 120, t0 + 3600 + 60, t0 + 3600 + 120, t0 + 3600 + 180]  # an hour idle between
    for marker, t in zip(sorted((run_dir / "_shards").glob("*.done")), times, strict=True):
        content = json.loads(marker.read_text())
        marker.write_text(json.dumps({**content, "time": t}))
    created = datetime.fromtimestamp(t0, UTC).isoformat()
    resumed = [datetime.fromtimestamp(t0 + 3600, UTC).isoformat()]
    manifest = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({**manifest, "created": created, "resumed": resumed}))
    conn = open_run(run_dir)
    try:
        stats = data.run_stats(conn, created, resumed)
        assert stats["wall_s"] == pytest.approx(120 + 180)  # each session to its last shard
        assert stats["units_per_min"] == pytest.approx(10 / 300 * 60)
        assert data.run_stats(conn, created)["wall_s"] == pytest.approx(3600 + 180)  # without the resume
        # SQL's run table says the same (a trial's recipe divided by the whole span, idle hour included)
        assert conn.execute("SELECT sessions, work_seconds FROM run").fetchone() == (2, pytest.approx(300))
    finally:
        conn.close()
    from atlas.store.sessions import work_seconds

    assert work_seconds([], []) is None and work_seconds([], [10.0, 20.0, 30.0]) == pytest.approx(30)


def test_unit_lists_are_named_compactly():
    assert data.compact_units([0, 1, 2, 3, 4, 5, 6, 7, 96]) == "0-7, 96"
    assert data.compact_units([5]) == "5"
    assert data.compact_units(list(range(0, 40, 2))) == "0, 2, 4, 6, 8, 10, … (14 more ranges, to 38)"


def test_a_best_picture_that_is_the_last_is_shown_once_with_both_pictures_flags():
    from viewer.pages_impl.unit import _without_repeats

    kept = pd.DataFrame(
        {
            "kind": ["best", "last", "snapshot"],
            "step": [100, 100, 50],
            "png": [b"x"] * 3,
            "badge": ["p99.5", "p99.5 · path p0", "p80.0"],
            "flags": [[], ["off_path"], ["weak"]],
        }
    )  # fmt: skip  (a DGN-AM chain whose best step is its last)
    shown = _without_repeats(kept)
    assert list(zip(shown["kind"], shown["step"], strict=True)) == [("best = last", 100), ("snapshot", 50)]
    merged = shown.iloc[0]
    assert merged["flags"] == ["off_path"] and merged["badge"] == "p99.5 · path p0"  # the union, not one copy


def test_the_judge_metric_gives_the_share_read_right_so_a_tie_is_no_bare_cross():
    from viewer.pages_impl.unit import judge_metric

    tie = {"judge_label": "half_disk", "judge_correct": False, "judge_prob": 0.5}
    value, delta, tip = judge_metric(tie)
    assert (value, delta) == ("✗ half_disk", "50% its class") and "a tie included" in tip
    value, delta, _ = judge_metric({"judge_label": "ring", "judge_correct": True, "judge_prob": 0.75})
    assert (value, delta) == ("✓ ring", "75% its class")
    assert judge_metric({"judge_label": "ring", "judge_correct": False, "judge_prob": None})[1] is None


def test_the_overview_says_which_layers_found_their_best_pictures_near_their_starts():
    from viewer.pages_impl.overview import _early_best

    table = pd.DataFrame(
        {
            "layer": ["fc8", "fc7", "conv4", "old"],
            "median_best_step": [4.0, 60.0, 10.0, None],
            "steps": [100, 100, 100, None],
            "stopped_share": [0.975, 0.49, None, None],
        }
    )
    assert _early_best(table) == [("fc8", 4.0, 100, 0.975), ("conv4", 10.0, 100, None)]


def test_the_unit_page_warns_when_the_judge_and_the_reader_read_the_pictures_apart():
    from viewer.pages_impl.unit import readers_disagree

    lab = data.LabelView(label="class:bowtie", score=0.99, best="class:bowtie", runner_up=None, margin=None,
                         tuning=pd.DataFrame(), top_share=None, silent=False, label_shown=1.0)  # fmt: skip
    said = readers_disagree(lab, {"judge_prob": 0.0})
    assert said and "J reads the unit's class in 0%" in said and "`class:bowtie` in 100%" in said
    assert readers_disagree(lab, {"judge_prob": 0.75}) is None  # close enough
    assert readers_disagree(lab, {"judge_prob": None}) is None  # no judge (hidden layers)
    hidden = data.LabelView(label="colour:red", score=0.99, best="colour:red", runner_up=None, margin=None,
                            tuning=pd.DataFrame(), top_share=None, silent=False, label_shown=1.0)  # fmt: skip
    assert readers_disagree(hidden, {"judge_prob": 0.0}) is None  # J reads classes only
    union = dataclasses.replace(lab, label="class:half_disk|pill", best="class:half_disk|pill")
    assert readers_disagree(union, {"judge_prob": 0.5}) is None  # J may read the other half as pill


def test_the_grid_leaves_out_or_keeps_only_the_units_no_natural_image_activates(tmp_path):
    """Silent hidden units (real top-1 <= 0) ranked first by facets in a trial's fc7 (25 of the 33 units
    with 3+ facets): the grid can leave them out, or show them alone."""
    from tests.support.run_edits import set_units_column

    run_dir = tmp_path / "run"
    make_synthetic_run(run_dir, layers={"fc8": 10, "conv3": 12}, chains=2, steps=20)
    set_units_column(run_dir, "real_top1_activation", -0.5, below=4)  # units 0-3: no real image fires them
    conn = open_run(run_dir)
    try:
        count = {
            n: data.grid_count(conn, data.GridQuery("conv3", natural=n)) for n in (None, "active", "silent")
        }
        assert count == {None: 12, "active": 8, "silent": 4}
        page = data.grid_page(conn, data.GridQuery("conv3", natural="silent", sort="unit ↑"))
        assert list(page["unit"]) == [0, 1, 2, 3]
        assert data.silent_count(conn, "conv3") == 4
        assert data.silent_count(conn, "fc8") == 0  # output units are logits: never silent
        assert data.grid_count(conn, data.GridQuery("fc8", natural="active")) == 10
    finally:
        conn.close()


def test_compare_summaries_say_how_recognizable_and_how_flagged_and_which_settings_differ(run):
    """A Fourier run's mean activation (65.8) beside DGN-AM's (70.7) read as parity; its judge accuracy
    (60 % vs 100 %), flagged pictures (52 % vs 0 %) and half the steps were not on the page."""
    run_dir, _, conn = run
    units = list(range(10))
    stats = data.stats_over(conn, "fc8", units)
    written_units = written(run_dir, "units", "fc8")
    assert stats["judge_accuracy"] == pytest.approx(written_units["judge_correct"].astype(float).mean())
    # the Audit page's share: distinct pictures (a best = last picture once) over those checked (a trial
    # read 55 % on Compare and 100 % on Audit for one run)
    pictures = distinct_pictures(written(run_dir, "images", "fc8"), chains=written(run_dir, "chains", "fc8"))
    flagged = (pictures["flags"].fillna("") != "").sum()
    assert stats["flagged_share"] == pytest.approx(flagged / pictures["checked"].sum())
    audit = data.flag_summary(conn).set_index("layer").loc["fc8"]
    assert stats["flagged_share"] == pytest.approx(audit["flagged_share"])
    assert stats["steps"] == written(run_dir, "chains", "fc8")["steps"].max()
    assert stats["passes"] == written(run_dir, "chains", "fc8")["passes"].max() > 0  # the budget, per picture
    assert data.stats_over(conn, "fc8", [])["judge_accuracy"] is None
    ours = {"name": "a", "sampler": {"method": "dgn_am", "steps": 100}, "layers": [{"name": "fc8"}]}
    theirs = {"name": "b", "sampler": {"method": "fourier", "steps": 50}, "layers": [{"name": "conv3"}]}
    assert data.setting_differences(ours, theirs) == [
        "sampler.method: dgn_am vs fourier",
        "sampler.steps: 100 vs 50",
    ]
    # two DGN-AM runs: PPGN-h's settings (used by neither) are left out, and the broadest come first
    ours["sampler"] |= {"ppgn_h": {"lr": 1.0}, "dgn_am": {"lr": 0.1}}
    theirs["sampler"] |= {"method": "dgn_am", "ppgn_h": {"lr": 0.5}, "dgn_am": {"lr": 0.2}}
    assert data.setting_differences(ours, theirs) == [
        "sampler.steps: 100 vs 50",
        "sampler.dgn_am.lr: 0.1 vs 0.2",
    ]
    # a DAE neither run reads (the demo's beside a maco run) is left out; one that a run reads is kept
    maco = {"name": "m", "sampler": {"method": "maco"}, "models": {"target": "t"}}
    demo = {"name": "d", "sampler": {"method": "dgn_am"}, "models": {"target": "t", "dae": "toyworld:dae"}}
    assert data.setting_differences(demo, maco) == ["sampler.method: dgn_am vs maco"]
    ppgn = {"name": "p", "sampler": {"method": "ppgn_h"}, "models": {"target": "t", "dae": "toyworld:dae"}}
    assert data.setting_differences(ppgn, maco) == [
        "models.dae: toyworld:dae vs –",
        "sampler.method: ppgn_h vs maco",
    ]
    # run.json leaves a newer key out at its default: said as that default, and no difference when the
    # other run names the same value (a trial read "sampler.stop_at: 1.0 vs –" for a run at stop_at 0)
    assert data.setting_differences({"sampler": {"stop_at": 1.0}}, {"sampler": {}}) == [
        "sampler.stop_at: 1.0 vs 0.0 (default)"
    ]
    assert data.setting_differences({"sampler": {"stop_at": 0.0}}, {"sampler": {}}) == []


def test_a_chain_with_one_recorded_step_is_drawn_as_a_dot():
    """A chain stopped at its start has one trajectory row: as a line it was in the legend and nowhere on
    the chart."""
    from viewer import widgets

    steps = pd.DataFrame({"chain": [0, 1, 1, 1], "step": [0, 0, 5, 10], "activation": [1.0, 0.5, 0.7, 0.9]})
    chart = widgets.trajectory_chart(steps, "activation", "activation")
    lines, dots = chart.layer
    assert len(lines.data) == 4 and dots.data["chain"].tolist() == ["0"]
    assert chart.to_dict()["layer"][1]["mark"]["type"] == "point"
    every = pd.DataFrame({"chain": [0, 0, 1, 1], "step": [0, 5, 0, 5], "activation": [1.0, 1.2, 0.5, 0.7]})
    assert len(widgets.trajectory_chart(every, "activation", "activation").layer) == 1  # no empty dots layer


def test_a_stopped_chains_card_says_what_it_spent_of_its_budget():
    from viewer.pages_impl.unit import _passes_text

    assert _passes_text({"passes": 300, "steps": 100, "stopped_step": None}) == " · 300 forward passes"
    assert _passes_text({"passes": 300, "steps": 100, "stopped_step": 2}) == (
        " · 6 of its 300 forward passes spent when it stopped"
    )
    assert _passes_text({"passes": 300, "steps": 100, "stopped_step": 0}).startswith(" · 0 of its 300")
    assert _passes_text({"passes": None, "steps": 100, "stopped_step": 2}) == ""


def test_a_unit_whose_chains_found_their_best_early_says_its_pictures_are_near_their_starts():
    """The demo's fc8 chains stop at steps 1-3 of 100: a trial read those pictures as synthesized."""
    from viewer.pages_impl.unit import _near_start_note

    early = pd.DataFrame({"best_step": [1, 3, 2, 100], "steps": [100] * 4, "stopped_step": [1, 3, 2, None]})
    said = _near_start_note(early, {"start": "facet_seeded"})
    assert said.startswith("**Near their starts:** half of its chains found their best pictures by step 3 of")
    assert "(3 of 4 stopped by `sampler.stop_at`)" in said and "top real images" in said
    late = early.assign(best_step=[40, 90, 100, 100], stopped_step=[None] * 4)
    assert _near_start_note(late, {"start": "facet_seeded"}) is None
    assert "top real images" not in _near_start_note(early, {"start": "mean"})


def test_a_silent_units_tuning_chart_draws_dots_not_bars():
    """Below 0 on every concept, bars from 0 (or from below the lowest) gave lengths that meant nothing."""
    from viewer import widgets

    tuning = pd.DataFrame(
        {"concept": ["a", "b"], "mean": [-10.4, -7.8], "auroc": [0.6, 0.7], "is_label": [0, 0]}
    )
    assert widgets.tuning_chart(tuning, "mean", threshold=0.85).to_dict()["mark"]["type"] == "circle"
    active = tuning.assign(mean=[1.0, -0.5])
    assert widgets.tuning_chart(active, "mean", threshold=0.85).to_dict()["mark"]["type"] == "bar"
    # a few concepts: high enough for its axes, which Streamlit fits inside the height (a trial's 3 concept
    # folders drew their names on one spot over no bars at 112 px); many: a row each
    assert widgets.tuning_chart(active, "mean", threshold=0.85).to_dict()["height"] >= 190
    many = pd.DataFrame({"concept": list("abcdefghijkl"), "mean": 1.0, "auroc": 0.9, "is_label": 0})
    assert widgets.tuning_chart(many, "mean", threshold=0.85).to_dict()["height"] >= 24 * 12 + 60


def test_a_run_that_cannot_be_read_is_sent_to_the_check_that_finds_why():
    """A damaged page (bytes changed, size kept) is seen only by `atlas verify --deep`: a user's trial told
    to run the plain check got "0 bad". DuckDB's error quoting the damaged bytes is shown printable."""
    import duckdb

    from atlas.errors import AtlasError
    from viewer.data import cannot_read

    said = cannot_read(duckdb.Error("don't know what type: \x8f\x01"), "/runs/r")
    assert said.startswith("Cannot read this run: a shard file is damaged (don't know what type: ??).")
    assert "\x8f" not in said
    assert "`atlas verify --deep /runs/r` names" in said and "`atlas verify --deep --repair /runs/r`" in said
    said = cannot_read(AtlasError("shard fc8-00000's units file is missing"), "/runs/r")
    assert "`atlas verify /runs/r` names" in said and "--deep" not in said
    own = "run.json is not valid JSON (Expecting value); remove run.json and rerun the same `atlas run`"
    said = cannot_read(AtlasError(own), "/runs/r", "r")  # its own fix alone (a trial was given two)
    assert said == f"Cannot read run r: {own}." and "verify" not in said


def test_a_running_run_that_no_driver_writes_is_told_apart(tmp_path):
    """run.json says "running" after a driver's SIGKILL: the overview says no `atlas run` writes it (a user's
    trial saw "running" for ever), not while a driver holds the run's lock."""
    from atlas.store.location import open_location
    from atlas.store.lock import RunLock
    from viewer.data import driver_gone

    run = open_location(str(tmp_path / "run"))
    (tmp_path / "run").mkdir()
    assert driver_gone(run, "running") and not driver_gone(run, "complete")
    lock = RunLock(run)
    lock.acquire()
    try:
        assert not driver_gone(run, "running")
    finally:
        lock.release()
    assert driver_gone(run, "running")


def test_grid_sorts_the_units_with_most_flagged_pictures_first(run):
    """Where to audit: the units with the most flagged pictures (distinct, of the grid's picture kinds)
    first, then by activation; offered, and taken by `atlas export --sort flagged`, where flags exist."""
    run_dir, _, conn = run
    units = written(run_dir, "units", "conv3").set_index("unit")
    pictures = distinct_pictures(
        written(run_dir, "images", "conv3"), chains=written(run_dir, "chains", "conv3")
    )
    flagged = pictures[pictures["flags"].fillna("") != ""].groupby("unit").size()
    assert "flagged pictures ↓" in data.sorts(True, True) and "flagged pictures ↓" not in data.sorts(True)
    assert data.SORT_WORDS["flagged"] == "flagged pictures ↓"
    page = data.grid_page(conn, data.GridQuery(layer="conv3", sort="flagged pictures ↓", page_size=100))
    counts = [int(flagged.get(u, 0)) for u in page["unit"]]
    assert len(page) == len(units) and counts[0] > 0 and counts == sorted(counts, reverse=True)
    for n in set(counts):  # within a count: the strongest first
        acts = [units.loc[u, "best_activation"] for u, c in zip(page["unit"], counts, strict=True) if c == n]
        assert acts == sorted(acts, reverse=True)
    assert [sum(fc.values()) > 0 for fc in page["flag_counts"]] == [c > 0 for c in counts]


def test_the_damaged_note_counts_shards_and_names_another_run():
    from atlas.store.catalog import UNMARKED

    two = {"fc8-00000": "is damaged: shard fc8-00000's images file is missing", "fc8-00001": "is damaged: x"}
    said = data.damaged_note(two, "/runs/a")
    assert said.startswith(
        "This run is damaged: shard fc8-00000's images file is missing (and 1 more damaged"
    )
    assert "their units are left out of every page" in said and "atlas verify --repair /runs/a" in said
    only_markers = {UNMARKED: "says it is complete but only 3 of its 4 shards have their marker in _shards/"}
    said = data.damaged_note(only_markers, "/runs/b", "b")
    assert said.startswith("Run b says it is complete") and "more" not in said and "left out" not in said
    said = data.damaged_note({**two, **only_markers}, "/runs/a")
    assert "(and 1 more damaged shard)" in said  # the missing markers are no shard left out
    layered = {"conv4-00000": "is damaged: shard conv4-00000's units file is cut short", **two}
    assert "shard conv4-00000's" in data.damaged_note(layered, "/runs/a")  # no layer: the first
    said = data.damaged_note(layered, "/runs/a", layer="fc8")  # fc8's pages name an fc8 shard
    assert said.startswith("This run is damaged: shard fc8-00000's images file") and "(and 2 more" in said


def test_planned_units_a_page_cannot_show_say_why():
    """A user's trial: a damaged or interrupted run's planned units were "not in layer fc7"."""
    manifest = {
        "unit_groups": {"fc7": [list(range(32)), [40, 41]]},
        "units_per_shard": 16,
        "status": "complete",
    }
    assert data.planned_units(manifest, "fc7") == [*range(32), 40, 41] and data.planned_units({}, "fc7") == []
    damage = {"fc7-00001": "is damaged: x"}
    held = list(range(16)) + [40, 41]
    assert data.missing_units(manifest, damage, "fc7", [20, 99], held) == [
        "Unit 20 of fc7 is in the damaged shard fc7-00001, left out"
    ]  # 99 is planned by no group: the caller names the layer's range
    assert data.missing_units(manifest, damage, "fc7", [3, 40], held) == []  # shown
    interrupted = {**manifest, "status": "interrupted"}
    said = data.missing_units(interrupted, {}, "fc7", list(range(34)), list(range(16)) + [40, 41])
    assert said == [
        "Units 16-31 of fc7 are not written yet (the run is interrupted: the same `atlas run` writes them)"
    ]
    both = data.missing_units(
        {**manifest, "status": "running"},
        {"fc7-00000": "x"},
        "fc7",
        [*range(32), 40, 41],
        list(range(16, 32)),
    )
    assert both == [
        "Units 0-15 of fc7 are in the damaged shard fc7-00000, left out",
        "Units 40-41 of fc7 are not written yet (being built: the page fills in as its shards land)",
    ]
    assert (
        data.missing_units({"unit_groups": {"fc7": "junk"}}, {}, "fc7", [1], []) == []
    )  # a hand-edited run.json


def test_the_label_filter_finds_silent_units_as_the_tiles_name_them(tmp_path):
    """A user's trial: tiles read "no label · silent" and the label filter `silent` found nothing."""
    from tests.support.run_edits import set_units_column

    run_dir = tmp_path / "silent"
    make_synthetic_run(run_dir, layers={"fc8": 10, "conv3": 12}, chains=1, steps=20)
    set_units_column(run_dir, "real_top1_activation", -0.5, below=4)
    conn = open_run(run_dir)
    try:
        for said in ("silent", "No label · silent"):
            q = data.GridQuery(layer="conv3", sort="unit ↑", label_text=said, page_size=100)
            assert data.grid_page(conn, q)["unit"].tolist() == [0, 1, 2, 3], said
    finally:
        conn.close()


def test_picture_captions_show_their_text_as_it_is():
    """Streamlit renders an image's caption as Markdown: a weighted composite's ``0.7*3 + 0.3*7`` read
    "0.73 + 0.37", its middle in italics (a trial); every mark is escaped, and nothing else changes."""
    from viewer.widgets import plain_caption

    assert plain_caption("unit 12 · 0.7*3 + 0.3*7") == "unit 12 · 0.7\\*3 + 0.3\\*7"
    assert plain_caption("#1 · act 3.2 · cats/tabby_1_2.jpg") == "#1 · act 3.2 · cats/tabby\\_1\\_2.jpg"
    assert plain_caption("a [b](c) `d` ~e~ <f> \\") == "a \\[b\\](c) \\`d\\` \\~e\\~ \\<f\\> \\\\"


def test_numbers_read_as_numbers_whatever_their_type():
    """A DuckDB count (numpy int64) of 1,000 read "1e+03" on Compare (a trial)."""
    import numpy as np

    from viewer import widgets

    assert [widgets.fmt(v) for v in (np.int64(1000), 1000, 1000.0, 999.6)] == ["1,000"] * 4
    assert widgets.fmt(5000.0) == "5,000"
    shown = [widgets.fmt(v) for v in (np.int32(7), 0.000123, 12.345, -2.5e4)]
    assert shown == ["7", "0.000123", "12.3", "-25,000"]
    assert [widgets.fmt(v) for v in (None, float("nan"), np.bool_(True), False)] == ["–", "–", "yes", "no"]


def test_a_console_query_past_its_limit_names_the_command_line_for_more_time(run):
    """A user's trial: the viewer's timeout said "give it longer (atlas sql --timeout)", which the viewer
    has no control for."""
    run_dir, _, _ = run
    slow = "SELECT count(*) FROM range(3000000000) a, range(100) b"
    said = data.console_query(run_dir, slow, 10, 0.2).error
    assert said.startswith("query cancelled after") and "(limit 0.2 s)" in said, said
    assert f"run it outside the viewer with more time: atlas sql {run_dir} --timeout 0.8" in said, said
