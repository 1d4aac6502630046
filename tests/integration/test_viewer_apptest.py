"""Every viewer page under Streamlit's AppTest, on synthetic runs made here (no browser, no server)."""

from __future__ import annotations

import html
import json
import os
import re
from pathlib import Path
from urllib.parse import parse_qsl

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from atlas.bench.synthetic_run import make_synthetic_run
from atlas.store import RunStore, open_run
from tests.unit.test_viewer_data import distinct_pictures, fail_and_compose, rewrite_run
from viewer import data, state
from viewer.widgets import concept_html

pytestmark = pytest.mark.integration

APP = str(Path(__file__).resolve().parents[2] / "viewer" / "app.py")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    parent = tmp_path_factory.mktemp("runs")
    make_synthetic_run(parent / "alpha", layers={"fc8": 10, "conv3": 16}, chains=3, steps=40, real_k=3)
    make_synthetic_run(
        parent / "beta", layers={"fc8": 10}, chains=2, steps=40, methods=("dgn_am", "ppgn_h"), seed=2
    )
    return parent


@pytest.fixture(scope="module")
def old_run(tmp_path_factory):
    """A run without the truth columns of issue 16 (as written before them)."""
    run = tmp_path_factory.mktemp("old") / "old"
    make_synthetic_run(run, layers={"fc8": 10, "conv3": 16}, chains=2, steps=40, real_k=3, truth=False)
    return run


def app(run_dir: Path, monkeypatch, **params) -> AppTest:
    monkeypatch.setenv("ATLAS_RUN_DIR", str(run_dir))
    at = AppTest.from_file(APP, default_timeout=60)
    for key, value in params.items():
        at.query_params[key] = str(value)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def page_of(at: AppTest) -> str:
    """The st.navigation page the app finished on (its url_path; the overview is the root URL)."""
    assert "page" not in at.query_params  # the page is the URL path, not a query parameter
    return at.session_state["nav_page"]


def grid_tiles(at: AppTest) -> list[dict]:
    """The layer grid's tiles (one HTML block): unit, picture (a data URL, None without one), the name's
    link and text, and the tile's HTML."""
    block = next((m.value for m in at.markdown if "<div class='atlas-grid'>" in m.value), "")
    tiles = []
    for chunk in block.split("<div class='atlas-tile' data-unit='")[1:]:
        picture = re.search(r"<img src='([^']+)'", chunk)
        name = re.search(r"class='atlas-tile-name' href='([^']+)'[^>]*>([^<]*)</a>", chunk)
        assert name, chunk
        tiles.append({
            "unit": int(chunk.split("'", 1)[0]), "src": picture.group(1) if picture else None,
            "href": html.unescape(name.group(1)), "name": html.unescape(name.group(2)), "html": chunk,
        })  # fmt: skip
    return tiles


def open_tile(at: AppTest, unit: int, monkeypatch) -> AppTest:
    """Click a grid tile's name: its link opens the unit page in a new session (the browser loads it)."""
    href = next(t["href"] for t in grid_tiles(at) if t["unit"] == unit)
    path, _, query = href.partition("?")
    return app(Path(os.environ["ATLAS_RUN_DIR"]), monkeypatch, page=path, **dict(parse_qsl(query)))


def page_links(at: AppTest) -> dict[str, dict[str, str]]:
    """The page's st.page_links of its main area (the sidebar's page menu left out): label -> the query
    parameters the link carries."""
    return {link.proto.label: dict(parse_qsl(link.proto.query_string)) for link in at.main.get("page_link")}


def click_link(at: AppTest, label: str) -> AppTest:
    """Follow the page link ``label`` as the browser does: its page and its query string in one request,
    not flagged as history navigation (AppTest has no click for links)."""
    link = next(link for link in at.get("page_link") if link.proto.label == label)
    at._page_hash = link.proto.page_script_hash
    at.query_params.clear()
    wanted = dict(parse_qsl(link.proto.query_string))
    at.query_params.update(wanted)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert dict(at.query_params) == wanted  # the page keeps the link's URL: no second history entry
    return at


def n_images(at: AppTest) -> int:
    """The page's pictures: Streamlit images, and the grid's tiles with a picture."""
    return len(at.get("image")) + sum(1 for t in grid_tiles(at) if t["src"])


def tile_urls(at: AppTest) -> list[str]:
    """The page's pictures: media URLs of its Streamlit images (named by their bytes), the grid's data
    URLs."""
    media = [img.url for element in at.get("image") for img in element.proto.imgs]
    return media + [t["src"] for t in grid_tiles(at) if t["src"]]


def tile_names(at: AppTest) -> list[str]:
    return [t["name"] for t in grid_tiles(at)]


def n_charts(at: AppTest) -> int:
    return len(at.get("vega_lite_chart"))


def test_overview(runs, monkeypatch):
    at = app(runs / "alpha", monkeypatch)
    assert at.title[0].value == "alpha"
    labels = [m.label for m in at.metric]
    assert {"Units", "Chains", "Images", "Diverged chains"} <= set(labels)
    assert at.metric[labels.index("Units")].value == "26"
    assert n_charts(at) == 2 * 2 + 1  # a histogram per layer (fc8, conv3) of activation and log-prob; facets
    assert [s.value for s in at.subheader][:4] == [
        "Pictures · layer fc8",  # the synthetic run's first layer (it records no output layer)
        "Layers",
        "Distributions",
        "Diverged chains",
    ]
    assert n_images(at) == 10  # the best picture of each of fc8's 10 units
    assert page_of(at) == "overview"
    layers = at.dataframe[0].value
    shares = layers["stopped_share"].dropna()  # whole percents ("97.5%" beside "49.02%": two formats)
    assert len(shares) and ((shares == shares.round()) & shares.between(0, 100)).all(), shares.tolist()


def test_layer_grid_deep_link_sort_and_paging(runs, monkeypatch):
    at = app(runs / "alpha", monkeypatch, page="layer", layer="conv3")
    assert at.title[0].value == "Layer conv3"
    assert n_images(at) == 16
    at.selectbox(key="grid_page_size").set_value(24).run()
    at.selectbox(key="grid_sort").set_value("unit ↑").run()
    assert tile_names(at)[:3] == ["unit 0", "unit 1", "unit 2"]
    at.text_input(key="grid_units").set_value("3-5, 9").run()
    assert n_images(at) == 4
    at.text_input(key="grid_units").set_value("").run()
    best_tiles = tile_urls(at)
    at.selectbox(key="grid_picture").set_value("last").run()  # each unit's final iterate instead
    assert at.query_params["picture"] == "last" and n_images(at) == 16
    assert tile_urls(at) != best_tiles
    at.text_input(key="grid_units").set_value("999").run()  # nothing matches: clear the filters
    at.button(key="grid_clear").click().run()
    assert at.selectbox(key="grid_picture").value == "last" and n_images(at) == 16  # not a filter: kept
    at.selectbox(key="grid_picture").set_value("best").run()
    assert "picture" not in at.query_params and tile_urls(at) == best_tiles
    at = open_tile(at, 7, monkeypatch)  # a tile's name opens the unit page
    assert at.title[0].value == "conv3 · unit 7"
    assert page_of(at) == "unit" and at.query_params["unit"] == "7"


def test_layer_grid_pages(tmp_path, monkeypatch):
    make_synthetic_run(
        tmp_path / "wide", layers={"conv5": 130}, chains=1, steps=10, images_per_chain=2, real_k=0
    )
    at = app(tmp_path / "wide", monkeypatch, page="layer", layer="conv5", p=2)
    assert n_images(at) == 48
    at.button(key="grid_next_bottom").click().run()  # the pager under a long page
    assert at.query_params["p"] == "3"
    at.button(key="grid_prev").click().run()
    assert any("page **2** of 3" in m.value or "page <b>2</b> of 3" in m.value for m in at.markdown)
    at.button(key="grid_last").click().run()
    assert n_images(at) == 130 - 96
    assert at.query_params["p"] == "3"
    at.selectbox(key="grid_sort").set_value("unit ↑").run()  # a new order starts at page 1 and is linked
    assert "p" not in at.query_params and at.query_params["sort"] == "unit"  # a link's plain word
    at.text_input(key="grid_units").set_value("100-129").run()
    at.selectbox(key="grid_page_size").set_value(24).run()
    assert at.query_params["units"] == "100-129" and at.query_params["per"] == "24"
    # the link brings the same grid back in a new session; values a widget cannot take are dropped
    again = app(tmp_path / "wide", monkeypatch, page="layer", **dict(at.query_params))
    assert (
        again.selectbox(key="grid_sort").value == "unit ↑"
        and again.text_input(key="grid_units").value == "100-129"
    )
    assert tile_names(again)[:2] == ["unit 100", "unit 101"] and n_images(again) == 24
    odd = app(
        tmp_path / "wide", monkeypatch, page="layer", layer="conv5", sort="nope", per="7", judge="wrong"
    )
    assert (
        odd.selectbox(key="grid_sort").value == "activation ↓"
        and odd.selectbox(key="grid_page_size").value == 48
    )
    assert "judge" not in odd.query_params  # no judge on this layer: nothing to filter on, no filter kept
    said = " ".join(w.value for w in odd.warning)
    offered = "(this grid offers: activation, weakest, selectivity"
    assert f"sort='nope' is not one this grid can show {offered}" in said
    for written in ("rank", "rank ↑"):  # the plain word, and an older link's label
        assert (
            app(tmp_path / "wide", monkeypatch, page="layer", sort=written).selectbox(key="grid_sort").value
            == "rank ↑"
        )

    one = app(tmp_path / "wide", monkeypatch, page="layer", layer="conv5", per="192")
    assert any("showing all 130 units" in m.value for m in one.markdown)  # its count, no disabled buttons
    assert not [b for b in one.button if (b.key or "").startswith("grid_")] and n_images(one) == 130


def test_unit_page_deep_link_and_neighbours(runs, monkeypatch):
    at = app(runs / "alpha", monkeypatch, page="unit", layer="fc8", unit=4)
    assert at.title[0].value == "fc8 · unit 4"
    subheaders = [s.value for s in at.subheader]
    for name in ("Facets", "Real top-k images", "Trajectories", "Chains", "Competing units"):
        assert name in subheaders
    # facets + 3 real + 3 chains x their distinct kept images (a best = last picture once)
    images = pd.read_parquet(runs / "alpha" / "images" / "layer=fc8").query("unit == 4")
    kept = distinct_pictures(images, ("best", "last", "snapshot"))
    assert n_images(at) >= 3 + len(kept) + 1
    assert n_charts(at) == 6  # tuning, activation, log-prob, rank, prior residual, competitors
    assert at.number_input(key="w_unit").value == 4
    assert any(c.value.startswith("unit 4 itself: mean final activation") for c in at.caption)
    stopped = pd.read_parquet(runs / "alpha" / "chains" / "layer=fc8").query("unit == 3 and chain == 0")
    at3 = app(runs / "alpha", monkeypatch, page="unit", layer="fc8", unit=3)
    said = f"**stopped at step {int(stopped['stopped_step'].iloc[0])}**: its unit reached `sampler.stop_at`"
    assert sum(said in c.value for c in at3.caption) == 1  # chain 0 only
    at.button(key="unit_next_top").click().run()
    assert at.title[0].value == "fc8 · unit 5"
    assert at.query_params["unit"] == "5" and at.query_params["layer"] == "fc8"
    at.number_input(key="w_unit").set_value(9).run()
    assert at.title[0].value == "fc8 · unit 9"
    assert at.button(key="unit_next_top").disabled  # last unit
    at.number_input(key="w_unit").set_value(500).run()  # past the layer's end: said, not ignored
    assert any("Unit 500 is not in layer fc8 (units 0-9); showing unit 9" in w.value for w in at.warning)
    assert at.title[0].value == "fc8 · unit 9"  # the nearest unit ("+" on the last one), not the first


def test_previous_and_next_follow_the_grid_the_unit_page_was_opened_from(runs, monkeypatch):
    """A user's trial: a unit opened from a sorted, filtered grid (its URL carries the grid's sort and
    filters) stepped by unit number, into units the filter leaves out. They follow the grid's order now,
    and the page says where in it the unit is; a permalink (no grid) steps by unit number."""
    at = app(runs / "alpha", monkeypatch, page="unit", layer="conv3", unit=5, units="2,5,9,11", sort="unit")
    assert (
        at.button(key="unit_prev_top").label == "unit 2" and at.button(key="unit_next_top").label == "unit 9"
    )
    assert any("Unit 2 of 4 in the grid's order" in c.value for c in at.caption)
    at.button(key="unit_next_top").click().run()
    assert at.title[0].value == "conv3 · unit 9" and at.button(key="unit_next_top").label == "unit 11"
    assert at.query_params["units"] == "2,5,9,11"  # the URL keeps the grid for the next step and Back
    order = data.grid_order(open_run(runs / "alpha"), data.GridQuery("conv3", sort="activation ↓"))
    mid = order[len(order) // 2]
    at = app(runs / "alpha", monkeypatch, page="unit", layer="conv3", unit=mid, sort="activation")
    i = order.index(mid)
    assert at.button(key="unit_prev_top").label == f"unit {order[i - 1]}"
    assert at.button(key="unit_next_top").label == f"unit {order[i + 1]}"
    grid = app(runs / "alpha", monkeypatch, page="layer", layer="conv3")  # the default grid's tile links
    href = next(t["href"] for t in grid_tiles(grid) if t["unit"] == mid)  # say its sort: its order is asked
    assert href == f"unit?layer=conv3&unit={mid}&sort=activation", href
    plain = app(runs / "alpha", monkeypatch, page="unit", layer="conv3", unit=5)
    assert (
        plain.button(key="unit_prev_top").label == "unit 4"
        and plain.button(key="unit_next_top").label == "unit 6"
    )
    outside = app(
        runs / "alpha", monkeypatch, page="unit", layer="conv3", unit=6, units="2,5,9,11", sort="unit"
    )
    assert outside.button(key="unit_next_top").label == "unit 7"  # by unit number, and said (it was quiet)
    assert any("Unit 6 is not in the grid this page was opened from" in c.value for c in outside.caption)


def test_browser_back_to_an_earlier_url_shows_that_state(runs, monkeypatch):
    """Back/Forward rerun the app with the URL they went to: that URL wins over the session's state."""
    at = app(runs / "alpha", monkeypatch, page="unit", layer="fc8", unit=4)
    at.button(key="unit_next_top").click().run()
    assert at.title[0].value == "fc8 · unit 5" and at.query_params["unit"] == "5"
    monkeypatch.setattr(state, "_history_flag", lambda: True)  # what Streamlit flags a Back/Forward rerun
    at.query_params["unit"] = "4"  # the browser's Back: the earlier URL, then a rerun
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "fc8 · unit 4" and at.query_params["unit"] == "4"
    assert at.number_input(key="w_unit").value == 4
    monkeypatch.setattr(state, "_history_flag", lambda: False)  # a click
    at.button(key="unit_next_top").click().run()  # and the session goes on from there
    assert at.title[0].value == "fc8 · unit 5" and at.query_params["unit"] == "5"
    at.query_params.clear()  # the page menu opens a page without parameters: the state stays
    at.run()
    assert at.title[0].value == "fc8 · unit 5" and at.query_params["unit"] == "5"
    at.query_params["unit"] = "2"  # a click's rerun carrying a URL the browser had not yet updated
    at.run()
    assert at.title[0].value == "fc8 · unit 5" and at.query_params["unit"] == "5"


def test_history_urls_map_to_their_pages_and_keys():
    assert state.url_keys("unit") == {"run", "layer", "unit", "frame", "p", *state.GRID_PARAMS}  # from a tile
    paths = ("/", "/unit", "/nosuchpage", "/unit/extra", "/atlas", "/atlas/unit", "/atlas/nope")
    assert [state.unknown_path(p, "atlas") for p in paths] == [
        None, None, "nosuchpage", "unit/extra", None, None, "nope"
    ]  # fmt: skip
    assert state.url_keys("sql") == {"run", "q"}
    assert "unit" not in state.url_keys("layer")  # a page switch's in-between entry is not followed


@pytest.mark.parametrize("page", list(state.PAGES))
def test_every_parameter_a_page_writes_is_one_a_history_step_reads(runs, monkeypatch, page):
    """On the parent of two runs (so the URL carries ``run`` too), with a unit, a grid page and a sort."""
    at = app(runs, monkeypatch, page=page, run="alpha", layer="fc8", unit=3, p=2, sort="rank ↑")
    assert "run" in at.query_params and set(at.query_params) <= state.url_keys(page), dict(at.query_params)


def test_grid_sort_and_filters_survive_a_visit_to_a_unit(runs, monkeypatch):
    """A tile's name is a link to the unit page's own URL (the browser loads it: a new session); the grid's
    sort and filters live in the grid's URL, which the browser's Back returns to."""
    at = app(runs / "alpha", monkeypatch, page="layer", layer="conv3")
    at.selectbox(key="grid_sort").set_value("rank ↑").run()
    at.text_input(key="grid_units").set_value("3-9").run()
    grid_url = dict(at.query_params)
    assert grid_url["sort"] == "rank" and grid_url["units"] == "3-9"
    href = next(t["href"] for t in grid_tiles(at) if t["unit"] == 5)
    assert href == "unit?layer=conv3&unit=5&sort=rank&units=3-9", href  # the grid's own, to come back to
    unit = open_tile(at, 5, monkeypatch)
    assert unit.title[0].value == "conv3 · unit 5" and dict(unit.query_params) == {
        "layer": "conv3",
        "unit": "5",
        "sort": "rank",
        "units": "3-9",
    }  # the URL it loaded: no new entry
    assert "href='unit?layer=conv3&amp;unit=5'>permalink</a>" in " ".join(m.value for m in unit.markdown)
    step = "unit_prev_top" if unit.button(key="unit_next_top").disabled else "unit_next_top"  # grid order
    unit.button(key=step).click().run()  # a second run of the unit page, without the grid's widgets
    # the new session's grid link: the grid as it was, in one history entry (not the grid's defaults
    # first: a trial's Back showed those)
    assert page_links(unit)["conv3 grid"] == grid_url
    click_link(unit, "conv3 grid")
    assert unit.title[0].value == "Layer conv3"
    assert (
        unit.selectbox(key="grid_sort").value == "rank ↑" and unit.text_input(key="grid_units").value == "3-9"
    )
    assert dict(unit.query_params) == grid_url
    shown = [w.value for w in unit.warning] + [e.value for e in unit.exception]
    assert not any("Session State API" in str(text) for text in shown), shown
    back = app(runs / "alpha", monkeypatch, page="layer", **grid_url)  # Back: the grid's URL, loaded again
    assert (
        back.selectbox(key="grid_sort").value == "rank ↑" and back.text_input(key="grid_units").value == "3-9"
    )


def test_unit_page_missing_unit_and_bad_layer(runs, monkeypatch):
    at = app(runs / "alpha", monkeypatch, page="unit", layer="nope", unit=3)
    assert at.title[0].value.endswith("unit 3")  # falls back to the first layer, and says so
    assert "Layer 'nope' is not in this run" in at.warning[0].value
    at = app(runs / "alpha", monkeypatch, page="bogus", layer="nope")
    assert page_of(at) == "overview"
    said = at.warning[0].value
    assert "page 'bogus' is not a viewer page (overview, layer, unit" in said and "Layer 'nope'" in said
    at = app(runs / "alpha", monkeypatch, page="unit", layer="fc8", unit="abc")
    assert at.title[0].value == "fc8 · unit 0" and "unit 'abc' is not a unit number" in at.warning[0].value
    at = app(runs / "alpha", monkeypatch, page="bogus")
    assert at.title[0].value == "alpha"  # unknown page -> overview


def test_compare_runs(runs, monkeypatch):
    at = app(runs / "alpha", monkeypatch, page="compare", layer="fc8", unit=0)
    assert at.title[0].value == "Compare"
    assert n_images(at) == 20  # all 10 units of the small layer x 2 runs
    assert at.selectbox(key="cmp_other").value == "beta"
    assert "different targets" in at.warning[0].value  # synthetic runs of other configs: other targets


def test_compare_choices_are_in_the_url_and_come_back(runs, monkeypatch):
    at = app(runs / "alpha", monkeypatch, page="compare", layer="fc8", unit=0)
    assert not {"mode", "cmp"} & set(at.query_params)  # defaults stay out of the URL
    assert at.query_params["vs"] == "beta"  # but the other run always: the default one can change
    at.text_input(key="cmp_units_fc8").set_value("2-5").run()
    assert at.query_params["cmp"] == "2-5" and n_images(at) == 8  # 4 units x 2 runs
    again = app(runs / "alpha", monkeypatch, **dict(at.query_params), page="compare")
    assert again.text_input(key="cmp_units_fc8").value == "2-5" and n_images(again) == 8
    monkeypatch.setattr(state, "_history_flag", lambda: True)  # Back to the compare URL before the edit
    at.query_params.clear()
    at.query_params.update({"layer": "fc8", "unit": "0"})
    at.run()
    assert at.text_input(key="cmp_units_fc8").value != "2-5" and "cmp" not in at.query_params
    monkeypatch.setattr(state, "_history_flag", lambda: False)
    both = app(runs / "beta", monkeypatch, page="compare", layer="fc8", mode="methods")
    assert both.segmented_control(key="cmp_mode").value == "two methods"
    assert both.query_params["mode"] == "methods" and len(both.dataframe) == 1  # the per-method summary
    odd = app(runs / "beta", monkeypatch, page="compare", layer="fc8", mode="nope", vs="gamma")
    assert odd.segmented_control(key="cmp_mode").value == "two runs"  # values it cannot take: named, left out
    assert odd.selectbox(key="cmp_other").value == "alpha" and odd.query_params["vs"] == "alpha"
    said = " ".join(w.value for w in odd.warning)
    assert "mode='nope' is not one this page can show (this page offers: runs, methods)" in said, said
    assert "vs='gamma'" in said


def test_compare_names_the_other_run_it_cannot_read_and_defaults_to_one_that_opens(
    runs, tmp_path, monkeypatch
):
    """A user's trial: from a healthy run, Compare picked a damaged sibling by default, and a damaged page in
    the other run was reported as "Cannot read this run" with the verify command of the healthy one."""
    import shutil

    parent = tmp_path / "runs"
    for name, source in [("alpha", "alpha"), ("beta", "beta"), ("aaa-gone", "beta"), ("corrupt", "beta")]:
        shutil.copytree(runs / source, parent / name)
    next((parent / "aaa-gone" / "images").rglob("*.parquet")).unlink()  # a file a marker promises: gone
    for victim in (parent / "corrupt" / "images").rglob("*.parquet"):  # damaged pages, sizes unchanged
        data = bytearray(victim.read_bytes())
        data[4:260] = bytes(b ^ 0x5A for b in data[4:260])
        victim.write_bytes(bytes(data))
    at = app(parent / "alpha", monkeypatch, page="compare", layer="fc8")
    assert at.selectbox(key="cmp_other").value != "aaa-gone"  # the first sibling that opens
    at = app(parent / "alpha", monkeypatch, page="compare", layer="fc8", vs="aaa-gone")  # opens, less a shard
    said = " ".join(w.value for w in at.warning)
    assert "Run aaa-gone is damaged: shard" in said and str(parent / "aaa-gone") in said, said
    at = app(parent / "alpha", monkeypatch, page="compare", layer="fc8", vs="corrupt")
    said = " ".join(e.value for e in at.error)
    assert "Cannot read run corrupt:" in said and str(parent / "corrupt") in said, said
    assert "this run" not in said and f"{parent / 'alpha'} " not in said + " "


def test_a_run_with_a_lost_file_stays_browsable_without_that_shard(runs, tmp_path, monkeypatch):
    """A user's trial: one deleted Parquet file made the whole run unbrowsable (every page the error, the
    page menu and the layer picker gone). The damaged shard is left out whole, every page says which and
    how to redo it, and the rest (its layer's other shards, the other layers, SQL) is shown."""
    import shutil

    run = tmp_path / "alpha"
    shutil.copytree(runs / "alpha", run)
    lost = sorted((run / "images" / "layer=conv3").glob("*.parquet"))[0]
    shard = lost.name.removeprefix("shard-").split("~")[0].removesuffix(".parquet")
    lost.unlink()
    at = app(run, monkeypatch)
    said = " ".join(w.value for w in at.warning)
    assert f"This run is damaged: shard {shard}'s images file is missing" in said, said
    assert f"atlas verify --repair {run}" in said and not at.error, [e.value for e in at.error]
    grid = app(run, monkeypatch, page="layer", layer="conv3")
    assert not grid.error and 0 < len(grid_tiles(grid)) < 16  # the other conv3 shards' units
    shown = {tile["unit"] for tile in grid_tiles(grid)}
    lost_units = data.compact_units(sorted(set(range(16)) - shown))
    said = f"Units {lost_units} of conv3 are in the damaged shard {shard}, left out"
    assert said in texts(grid, "caption"), texts(grid, "caption")  # the grid names them
    first_lost = min(set(range(16)) - shown)
    unit = app(run, monkeypatch, page="unit", layer="conv3", unit=first_lost)
    assert f"Unit {first_lost} of conv3 is in the damaged shard {shard}, left out; showing unit" in texts(
        unit, "alert"
    )
    assert f"shard {shard}'s images file is missing" in texts(unit, "alert")  # conv3's page: conv3's damage
    assert len(grid_tiles(app(run, monkeypatch, page="layer", layer="fc8"))) == 10
    sql = app(run, monkeypatch, page="sql")
    assert not sql.error and len(sql.dataframe) == 1


def test_an_overview_over_a_damaged_file_draws_the_sections_it_can(runs, tmp_path, monkeypatch):
    """A user's trial: damaged bytes in one images file (its size unchanged: no listing sees it) stopped the
    overview at the gallery, the layer table, config and shard list gone; the error is said once and the
    sections that read other files still draw."""
    import shutil

    run = tmp_path / "alpha"
    shutil.copytree(runs / "alpha", run)
    for victim in (run / "images").rglob("*.parquet"):
        data = bytearray(victim.read_bytes())
        data[4:260] = bytes(b ^ 0x5A for b in data[4:260])
        victim.write_bytes(bytes(data))
    at = app(run, monkeypatch)
    assert len(at.error) == 1 and "atlas verify --deep" in at.error[0].value, [e.value for e in at.error]
    assert len(at.dataframe) >= 2  # the per-layer table and the shard list
    unit = app(run, monkeypatch, page="unit", layer="fc8", unit=3)  # a trial's: one error box, nothing else
    said = [e.value for e in unit.error]
    assert len(said) == 1 and said[0].startswith("This unit's pictures cannot be read: a shard file is"), said
    assert f"atlas verify --deep {run}" in said[0] and unit.title[0].value == "fc8 · unit 3"
    assert unit.button(key="unit_next_top").label == "unit 4" and len(unit.metric) > 0  # the rest draws


def test_a_truncated_console_result_offers_all_its_rows(runs, monkeypatch):
    """A user's trial: results past 5,000 rows could not be had in the viewer; a truncated result offers
    them all as CSV (the query run again, with a higher cap, when the button is clicked)."""
    from viewer.pages_impl.sql import MAX_ROWS, _all_rows_csv

    at = app(runs / "alpha", monkeypatch, page="sql", q=f"SELECT range AS i FROM range({MAX_ROWS + 7})")
    assert any("Result truncated to the first 5,000 rows" in w.value for w in at.warning)
    command = at.code[0].value  # the query itself, ready to paste (a trial read a "QUERY" placeholder)
    assert command.startswith("atlas sql ") and command.endswith(
        f"'SELECT range AS i FROM range({MAX_ROWS + 7})' --format csv > result.csv"
    )
    assert at.get("download_button") and "Download all rows" in at.get("download_button")[0].proto.label
    lines = _all_rows_csv(runs / "alpha", f"SELECT range AS i FROM range({MAX_ROWS + 7})").splitlines()
    assert lines[0] == "i" and len(lines) == MAX_ROWS + 8 and lines[-1] == str(MAX_ROWS + 6)
    assert _all_rows_csv(runs / "alpha", "DROP TABLE units").startswith("error\n")


def test_a_grid_links_flag_on_a_run_without_flags_leaves_the_unit_page_whole(old_run, monkeypatch):
    """A link's flag filter where the run records no picture flags (the grid drops it) stepped the unit page
    into a query on a missing column ("Cannot read this run"); it is left out, as the grid does."""
    at = app(old_run, monkeypatch, page="unit", layer="fc8", unit=3, flag="with weak pictures", sort="unit")
    assert not at.error and at.title[0].value == "fc8 · unit 3", [e.value for e in at.error]
    assert at.button(key="unit_next_top").label == "unit 4"


def test_compare_methods(runs, monkeypatch):
    at = app(runs / "beta", monkeypatch, page="compare", layer="fc8")
    at.segmented_control(key="cmp_mode").set_value("two methods").run()
    assert not at.exception
    assert n_images(at) == 20  # the 10 units x 2 methods
    assert len(at.dataframe) == 1  # per-method summary


def test_sql_console(runs, monkeypatch):
    at = app(runs / "alpha", monkeypatch, page="sql")
    assert at.title[0].value == "SQL console"
    assert len(at.dataframe) == 1 and not at.error  # the default example ran
    at.text_area(key="sql_text").set_value("SELECT layer, count(*) AS n FROM units GROUP BY layer ORDER BY 1")
    at.button(key="sql_run").click().run()
    frame = at.dataframe[0].value
    assert list(frame["layer"]) == ["conv3", "fc8"] and list(frame["n"]) == [16, 10]
    at.text_area(key="sql_text").set_value("SELECT * FROM read_csv('/etc/passwd')")
    at.button(key="sql_run").click().run()
    assert at.error and "refused or failed" in at.error[0].value
    assert at.selectbox(key="sql_example").value == "your query"  # not the example it started from
    assert at.query_params["q"] == "SELECT * FROM read_csv('/etc/passwd')"
    at.selectbox(key="sql_example").set_value("a unit's trajectory").run()
    example = at.text_area(key="sql_text").value
    assert "FROM steps" in example and at.query_params["q"] == example  # a picked example is in the URL
    assert not at.error and "step" in at.dataframe[0].value.columns  # the picked example ran
    reloaded = app(runs / "alpha", monkeypatch, page="sql", q=example)  # a user's trial: reload kept it
    assert reloaded.text_area(key="sql_text").value == example
    assert reloaded.selectbox(key="sql_example").value == "a unit's trajectory"
    assert "step" in reloaded.dataframe[0].value.columns
    other = example.replace("layer = 'fc8'", "layer = 'conv3'").replace("unit = 0", "unit = 12")
    assert other != example  # an example written for another layer and unit: its name all the same
    again = app(runs / "alpha", monkeypatch, page="sql", q=other)
    assert again.selectbox(key="sql_example").value == "a unit's trajectory"
    assert again.text_area(key="sql_text").value == other and again.query_params["q"] == other
    edited = app(runs / "alpha", monkeypatch, page="sql", q=other.replace("ORDER BY chain, step", "LIMIT 5"))
    assert edited.selectbox(key="sql_example").value == "your query"
    at.selectbox(key="sql_example").set_value("your query").run()  # and back: the user's own text
    assert at.text_area(key="sql_text").value == "SELECT * FROM read_csv('/etc/passwd')"
    at.text_area(key="sql_text").set_value("SELECT layer, unit, png FROM images ORDER BY unit LIMIT 3").run()
    shown = at.dataframe[0].value  # pictures drawn, and each row's unit page linked
    assert all(v.startswith("data:image/png;base64,") for v in shown["png"])
    assert list(shown["unit page"]) == [
        f"unit?layer={la}&unit={u}" for la, u in zip(shown["layer"], shown["unit"], strict=True)
    ]
    at.text_area(key="sql_text").set_value("SELECT layer, unit, layer FROM units LIMIT 1").run()
    assert list(at.dataframe[0].value.columns) == ["layer", "unit", "layer_2", "unit page"]  # no crash
    at.text_area(key="sql_text").set_value("SELECT 7 AS seven").run()  # Ctrl+Enter commits without a click
    assert list(at.dataframe[0].value["seven"]) == [7] and at.query_params["q"] == "SELECT 7 AS seven"
    linked = app(runs / "alpha", monkeypatch, page="sql", q="SELECT count(*) AS n FROM chains")
    assert linked.text_area(key="sql_text").value == "SELECT count(*) AS n FROM chains"
    assert list(linked.dataframe[0].value["n"]) == [26 * 3]  # the linked query ran


def test_sql_result_follows_the_run_picked(runs, monkeypatch):
    at = app(runs, monkeypatch, page="sql", run="alpha", q="SELECT run_id FROM run")
    assert list(at.dataframe[0].value["run_id"]) == ["alpha"]
    at.selectbox(key="w_run").set_value("beta").run()
    assert list(at.dataframe[0].value["run_id"]) == ["beta"]  # not the other run's answer


def test_run_picker_on_parent_directory(runs, monkeypatch):
    at = app(runs, monkeypatch)
    picker = at.selectbox(key="w_run")
    assert picker.options == ["alpha", "beta"]  # by name alone: a label that changes loses the pick
    assert picker.help.endswith("alpha: complete; beta: complete"), picker.help  # each run's status
    at = app(runs, monkeypatch, run="alpha", page="layer", layer="conv3")
    assert at.title[0].value == "Layer conv3"
    assert at.query_params["run"] == "alpha"


def test_run_being_written_shows_new_shards(tmp_path, monkeypatch):
    run = tmp_path / "live"
    make_synthetic_run(run, layers={"fc8": 16}, units_per_shard=8, chains=1, steps=10, max_shards=1)
    at = app(run, monkeypatch)
    assert at.metric[[m.label for m in at.metric].index("Units")].value == "8"
    make_synthetic_run(run, layers={"fc8": 16}, units_per_shard=8, chains=1, steps=10)  # finishes the run
    at.run()
    assert at.metric[[m.label for m in at.metric].index("Units")].value == "16"


def test_overview_names_the_precision_and_warns_when_shards_mix_them(tmp_path, monkeypatch):
    run = tmp_path / "mixed"
    make_synthetic_run(run, layers={"fc8": 16}, units_per_shard=8, chains=1, steps=10)
    markers = sorted((run / "_shards").glob("*.done"))
    assert len(markers) == 2

    def set_precision(marker: Path, precision: str) -> None:
        body = json.loads(marker.read_text())
        body["meta"] = {**(body.get("meta") or {}), "precision": precision}
        marker.write_text(json.dumps(body))

    for marker in markers:
        set_precision(marker, "bfloat16")
    at = app(run, monkeypatch)
    assert "computed in bfloat16" in at.caption[0].value
    assert at.caption[0].value.startswith("method `dgn_am` · created ")  # what drew the pictures
    assert not at.warning
    set_precision(markers[1], "float32")
    at = app(run, monkeypatch)
    assert "computed in" not in at.caption[0].value
    assert any(
        "mixes compute precisions (1 shard in bfloat16, 1 shard in float32)" in w.value for w in at.warning
    )
    body = json.loads(markers[1].read_text())
    del body["meta"]["precision"]  # a marker written before atlas recorded the precision
    markers[1].write_text(json.dumps(body))
    at = app(run, monkeypatch)
    assert "computed in bfloat16 (1 older shard: not recorded)" in at.caption[0].value and not at.warning
    # resumed by other code: the header names the code that started the run and the resume's
    manifest = json.loads((run / "run.json").read_text())
    manifest |= {"git_sha": "a" * 40, "resumed": ["2026-12-01T00:00:00+00:00"], "resumed_git_sha": ["b" * 40]}
    (run / "run.json").write_text(json.dumps(manifest))
    at = app(run, monkeypatch)
    assert f"git `{'a' * 10}` (resumed at `{'b' * 10}`)" in at.caption[0].value, at.caption[0].value
    assert "added later" not in at.caption[0].value
    manifest["extended"] = [
        {"2026-12-02T00:00:00+00:00": ["layer conv4"]},
        {"2026-12-03T00:00:00+00:00": ["layer fc7", "8 more units of conv4"]},
    ]
    (run / "run.json").write_text(json.dumps(manifest))  # configs that added layers and units (run_growth)
    at = app(run, monkeypatch)
    assert "added later: layer conv4; layer fc7; 8 more units of conv4" in at.caption[0].value


def test_empty_run(tmp_path, monkeypatch):
    RunStore(tmp_path / "empty").init_run({"config": {}, "config_hash": "x"})
    at = app(tmp_path / "empty", monkeypatch)
    assert at.info and "No completed shards" in at.info[0].value


def go_back(at: AppTest, page: str, url: dict[str, str], monkeypatch) -> AppTest:
    """The browser's Back (or Forward) to page ``page`` (its title in the sidebar's menu) at ``url``: a
    rerun on that page with that URL, flagged as history navigation."""
    link = next(link for link in at.sidebar.get("page_link") if link.proto.label == page)
    monkeypatch.setattr(state, "_history_flag", lambda: True)
    at._page_hash = link.proto.page_script_hash
    at.query_params.clear()
    at.query_params.update(url)
    at.run()
    monkeypatch.setattr(state, "_history_flag", lambda: False)
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_links_switch_pages_and_back_undoes_them(runs, monkeypatch):
    """Every control that opens another page is a link carrying the new page's URL: the page keeps it (one
    history entry, :func:`click_link`), and Back to the page before shows it as it was (a user's trial:
    a button's switch left an in-between entry, so Back first showed the same page again)."""
    grid = app(runs / "alpha", monkeypatch, page="layer", layer="conv3")
    grid.selectbox(key="grid_sort").set_value("rank ↑").run()
    unit = open_tile(grid, 5, monkeypatch)
    unit_url = dict(unit.query_params)
    click_link(unit, "conv3 grid")
    assert unit.title[0].value == "Layer conv3" and unit.query_params["sort"] == "rank"
    go_back(unit, "Unit", unit_url, monkeypatch)
    assert unit.title[0].value == "conv3 · unit 5" and dict(unit.query_params) == unit_url
    assert any("in the grid's order" in c.value for c in unit.caption)
    over = app(runs / "alpha", monkeypatch, layer="fc8")  # the overview, its layer fc8
    click_link(over, "conv3 grid (16 units)")
    assert over.title[0].value == "Layer conv3" and over.selectbox(key="w_layer").value == "conv3"
    go_back(over, "Overview", {"layer": "fc8"}, monkeypatch)
    assert page_of(over) == "overview" and over.selectbox(key="w_layer").value == "fc8"
    cmp = app(runs / "alpha", monkeypatch, page="compare", layer="fc8", unit=0)
    click_link(cmp, "**unit 2**")  # a unit's title on Compare opens its page, stepping by unit number
    assert cmp.title[0].value == "fc8 · unit 2" and dict(cmp.query_params) == {"layer": "fc8", "unit": "2"}
    assert not any("in the grid's order" in c.value for c in cmp.caption)


def test_page_buttons_switch_pages_and_links_are_encoded(runs, monkeypatch):
    at = app(runs / "alpha", monkeypatch)
    click_link(at, "conv3 grid (16 units)")  # a link to another page, carrying the layer it shows
    assert page_of(at) == "layer" and at.title[0].value == "Layer conv3"
    assert at.query_params["layer"] == "conv3" and "unit" not in at.query_params
    at = open_tile(at, 3, monkeypatch)
    assert page_of(at) == "unit" and at.title[0].value == "conv3 · unit 3"
    links = " ".join(m.value for m in at.markdown)
    assert "href='unit?layer=conv3&amp;unit=3'>permalink</a>" in links
    click_link(at, "conv3 grid")  # back to the grid in this tab (a tile's picture opens a new one)
    assert page_of(at) == "layer" and at.title[0].value == "Layer conv3"
    assert state.link("unit", "a b&c/d", 3, run="r 1") == "unit?run=r+1&layer=a+b%26c%2Fd&unit=3"
    assert state.link("overview") == "./"


# ---- truth columns (issue 16) ------------------------------------------------------------------
def markdown_text(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown)


def test_unit_page_shows_label_tuning_and_badges(runs, monkeypatch):
    units = pd.read_parquet(runs / "alpha" / "units" / "layer=conv3").set_index("unit")
    images = pd.read_parquet(runs / "alpha" / "images" / "layer=conv3")
    labelled = int(units["label"].first_valid_index())
    at = app(runs / "alpha", monkeypatch, page="unit", layer="conv3", unit=labelled)
    assert "Concept label" in [s.value for s in at.subheader]
    text = markdown_text(at)
    assert f"<span class='atlas-label'>{concept_html(units.loc[labelled, 'label'])}</span>" in text
    assert f"`{units.loc[labelled, 'label_runner_up']}`" in " ".join(c.value for c in at.caption)
    badges = [m.value for m in at.markdown if "-badge[p" in m.value]
    kept = distinct_pictures(images[images["unit"] == labelled], ("best", "last", "snapshot"))
    assert len(badges) >= len(kept)  # one per distinct chain picture, plus the facets
    weak = [b for b in badges if ":red-badge[:material/warning: weak]" in b]
    assert len(weak) >= int((kept["flags"] == "weak").sum())
    shown, agreement = units.loc[labelled, "label_shown"], units.loc[labelled, "reader_agreement"]
    assert f"label shown in **{100 * shown:.0f} %** of the last pictures" in text  # next to the label
    assert f"reader agreement **{agreement:.2f}**" in text
    at.segmented_control(key="unit_tuning_metric").set_value("AUROC").run()
    assert not at.exception


def test_conv_unit_page_frames_the_units_place(runs, monkeypatch):
    """A conv unit with a place-bound label: the note says where *here* is, the pictures are framed there
    (enlarged), and the toggle turns the frame off."""
    units = pd.read_parquet(runs / "alpha" / "units" / "layer=conv3").set_index("unit")
    place_bound = units[units["label"].fillna("").str.contains("here")]
    assert len(place_bound), "the synthetic run gives some conv units a place-bound label"
    unit = int(place_bound.index[0])
    y0, y1, x0, x1 = (int(v) for v in units.loc[unit, "label_cell"])
    at = app(runs / "alpha", monkeypatch, page="unit", layer="conv3", unit=unit)
    assert not at.exception
    captions = " ".join(c.value for c in at.caption)
    assert f"rows {y0}–{y1 - 1}, columns {x0}–{x1 - 1}" in captions
    assert at.toggle(key="unit_outline_cell").value is True

    def picture_urls() -> list[str]:  # each picture's media file (named by its content)
        return [url.url for im in at.get("image") for url in im.proto.imgs]

    framed = picture_urls()
    assert framed, "the unit page shows pictures"
    at.toggle(key="unit_outline_cell").set_value(False).run()
    plain = picture_urls()
    assert not at.exception and len(plain) == len(framed) and not set(plain) & set(framed)
    assert at.query_params["frame"] == "0"  # the link keeps the pictures plain
    assert f"unit={unit}&amp;frame=0'>permalink" in " ".join(m.value for m in at.markdown)  # this link too
    again = app(runs / "alpha", monkeypatch, **dict(at.query_params), page="unit")
    assert again.toggle(key="unit_outline_cell").value is False
    fc = app(runs / "alpha", monkeypatch, page="unit", layer="fc8", unit=0)
    assert not [t for t in fc.toggle if t.key == "unit_outline_cell"]  # fc units have no place


def test_a_conv_units_place_is_framed_without_a_concept_label(tmp_path, monkeypatch):
    """A run with no concept labels (a real network's) still frames a conv unit's map position, from the
    unit's spatial column and the layer's map shape in run.json."""
    run = tmp_path / "unlabelled"
    make_synthetic_run(run, layers={"fc8": 4, "conv3": 4}, chains=1, steps=10, real_k=2, truth=False)
    manifest = json.loads((run / "run.json").read_text())
    manifest["layers"] = [{"name": "fc8", "kind": "output", "shape": [4]},
                          {"name": "conv3", "kind": "conv", "shape": [4, 8, 8]}]  # fmt: skip
    (run / "run.json").write_text(json.dumps(manifest))
    at = app(run, monkeypatch, page="unit", layer="conv3", unit=1)
    assert at.toggle(key="unit_outline_cell").value is True
    framed = tile_urls(at)
    at.toggle(key="unit_outline_cell").set_value(False).run()
    assert framed and len(tile_urls(at)) == len(framed) and not set(tile_urls(at)) & set(framed)
    fc = app(run, monkeypatch, page="unit", layer="fc8", unit=0)
    assert not [t for t in fc.toggle if t.key == "unit_outline_cell"]


def test_unit_page_without_label(runs, monkeypatch):
    units = pd.concat(
        pd.read_parquet(runs / "alpha" / "units" / f"layer={layer}").assign(layer=layer)
        for layer in ("fc8", "conv3")
    )
    row = units[units["label"].isna()].iloc[0]
    at = app(runs / "alpha", monkeypatch, page="unit", layer=row["layer"], unit=int(row["unit"]))
    text = markdown_text(at)
    assert "<span class='atlas-label none'>no label</span>" in text
    assert f"best concept `{row['label_best']}` reaches only AUROC" in text
    assert "label shown in" not in text and "reader agreement **" in text  # no label: nothing to show


def test_unit_page_of_a_run_without_reader_columns(tmp_path, monkeypatch):
    """Runs written after the labels but before the attribute reader: the label, no reader line."""
    run = tmp_path / "labels-only"
    make_synthetic_run(run, layers={"fc8": 10}, chains=2, steps=40, real_k=3, reader=False)
    units = pd.read_parquet(run / "units" / "layer=fc8").set_index("unit")
    labelled = int(units["label"].first_valid_index())
    at = app(run, monkeypatch, page="unit", layer="fc8", unit=labelled)
    text = markdown_text(at)
    assert f"<span class='atlas-label'>{concept_html(units.loc[labelled, 'label'])}</span>" in text
    assert "label shown in" not in text and "reader agreement" not in text


def test_layer_grid_label_sort_and_filters(runs, monkeypatch):
    at = app(runs / "alpha", monkeypatch, page="layer", layer="conv3")
    assert "label score ↓" in at.selectbox(key="grid_sort").options
    at.selectbox(key="grid_page_size").set_value(24).run()
    at.text_input(key="grid_label").set_value("no label").run()
    units = pd.read_parquet(runs / "alpha" / "units" / "layer=conv3")
    assert n_images(at) == int(units["label"].isna().sum())
    at.text_input(key="grid_label").set_value("").run()
    at.selectbox(key="grid_flag").set_value("with weak pictures").run()
    images = pd.read_parquet(runs / "alpha" / "images" / "layer=conv3")
    weak = images[images["kind"].isin(["best", "last"]) & (images["flags"] == "weak")]
    assert n_images(at) == weak["unit"].nunique() > 0
    assert "weak</div>" in markdown_text(at)


def test_layer_grid_label_margin_unlabelled_tiles_judge_and_empty_state(runs, monkeypatch):
    units = pd.read_parquet(runs / "alpha" / "units" / "layer=conv3")
    at = app(runs / "alpha", monkeypatch, page="layer", layer="conv3")
    assert not [s for s in at.selectbox if s.key == "grid_judge"]  # no verdicts on a hidden layer
    at.selectbox(key="grid_sort").set_value("label margin ↓").run()
    tiles = [t["html"] for t in grid_tiles(at)]
    labelled = int(units["label"].notna().sum())
    assert 0 < labelled < len(tiles)
    assert all("atlas-tile-concept" in t for t in tiles[:labelled])  # labelled units first
    assert not any("atlas-tile-concept" in t for t in tiles[labelled:])
    unlabelled = units[units["label"].isna() & units["label_best"].notna()].iloc[0]
    best = concept_html(unlabelled["label_best"], wrap=False)  # a tile's line is one line: no <wbr>
    assert f"no label · best {best}" in markdown_text(at)
    assert "title='best concept " in markdown_text(at)  # why no label, as the tooltip
    at.text_input(key="grid_units").set_value("300-400").run()
    assert n_images(at) == 0
    said = at.info[0].value
    assert "units `300-400`" in said and "units 0-15" in said, said
    at.button(key="grid_clear").click().run()
    assert n_images(at) == 16 and at.text_input(key="grid_units").value == ""
    assert at.selectbox(key="grid_sort").value == "label margin ↓"  # the sort is no filter: it stays
    fc8 = app(runs / "alpha", monkeypatch, page="layer", layer="fc8")
    assert fc8.selectbox(key="grid_judge").options == ["all", "correct", "wrong"]
    fc8.selectbox(key="grid_judge").set_value("wrong").run()
    assert fc8.query_params["judge"] == "wrong"
    fc8.selectbox(key="w_layer").set_value("conv3").run()  # a layer without verdicts: no judge filter left
    assert "judge" not in fc8.query_params and n_images(fc8) == 16


def test_audit_page_lists_flagged_units(runs, monkeypatch):
    at = app(runs / "alpha", monkeypatch, page="audit", layer="fc8")
    assert at.title[0].value == "Audit" and page_of(at) == "audit"
    assert at.query_params["layer"] == "fc8"
    summary, listed = (d.value for d in at.dataframe)
    assert list(summary["layer"]) == ["conv3", "fc8"]
    images = pd.read_parquet(runs / "alpha" / "images" / "layer=fc8")
    flagged = images[images["kind"].isin(["best", "last"]) & (images["flags"].fillna("") != "")]
    chains = pd.read_parquet(runs / "alpha" / "chains" / "layer=fc8")
    per_unit = distinct_pictures(images, chains=chains).query("flags != ''").groupby("unit").size()
    assert sorted(listed["unit"]) == sorted(per_unit.index)
    assert list(listed["flagged"]) == sorted(per_unit, reverse=True)  # a best = last picture counted once
    assert all(
        link == f"unit?layer=fc8&unit={u}" for link, u in zip(listed["page"], listed["unit"], strict=True)
    )
    for row in listed.itertuples():  # the worst flagged picture beside the unit's top natural image
        mine = flagged[flagged["unit"] == row.unit]
        worst = mine[mine["natural_percentile"] == mine["natural_percentile"].min()]  # ties: any of them
        assert row._3 in {data.png_data_url(bytes(png)) for png in worst["png"]}  # "flagged picture"
        assert row._4.startswith("data:image/png;base64,")  # "top natural"
    at.toggle(key="audit_every_layer").set_value(True).run()
    assert set(at.dataframe[1].value["layer"]) == {"fc8", "conv3"}
    first = at.dataframe[1].value.iloc[0]
    click_link(at, next(label for label in page_links(at) if label.startswith("Open")))  # the first unit
    assert page_of(at) == "unit" and at.title[0].value == f"{first['layer']} · unit {first['unit']}"


def test_audit_choices_are_in_the_url_and_come_back(runs, monkeypatch):
    at = app(runs / "alpha", monkeypatch, page="audit", layer="fc8")
    assert not set(state.AUDIT_PARAMS) & set(at.query_params)  # defaults stay out of the URL
    flag = at.selectbox(key="audit_flag").options[1]
    at.toggle(key="audit_every_layer").set_value(True).run()
    at.selectbox(key="audit_flag").set_value(flag).run()
    assert at.query_params["all"] == "1" and at.query_params["flag"] == flag
    listed = at.dataframe[1].value
    again = app(runs / "alpha", monkeypatch, **dict(at.query_params), page="audit")  # the link, opened anew
    assert (
        again.toggle(key="audit_every_layer").value is True
        and again.selectbox(key="audit_flag").value == flag
    )
    assert again.dataframe[1].value[["layer", "unit"]].equals(listed[["layer", "unit"]])
    monkeypatch.setattr(state, "_history_flag", lambda: True)  # Back to the audit URL before the changes
    at.query_params.clear()
    at.query_params.update({"layer": "fc8"})
    at.run()
    assert at.toggle(key="audit_every_layer").value is False and at.selectbox(key="audit_flag").index == 0
    assert not set(state.AUDIT_PARAMS) & set(at.query_params)
    monkeypatch.setattr(state, "_history_flag", lambda: False)
    odd = app(runs / "alpha", monkeypatch, page="audit", layer="fc8", all="yes", flag="nope")
    said = " ".join(w.value for w in odd.warning)
    assert (
        "all='yes' is not one this page can show (this page offers: 1, 0)" in said and "flag='nope'" in said
    )
    assert odd.toggle(key="audit_every_layer").value is False and "flag" not in odd.query_params


@pytest.mark.parametrize("page", list(state.PAGES))
def test_old_run_without_truth_columns_renders_every_page(old_run, monkeypatch, page):
    at = app(old_run, monkeypatch, page=page, layer="conv3", unit=3)
    assert not at.error, [e.value for e in at.error]
    assert page_of(at) == page
    if page == "unit":
        assert "Concept label" not in [s.value for s in at.subheader]
        assert "-badge[p" not in markdown_text(at)
        assert n_images(at) >= 2 * 4 + 3
    if page == "layer":
        assert "label score ↓" not in at.selectbox(key="grid_sort").options
        assert n_images(at) == 16
    if page == "audit":
        assert at.info and "no faithfulness columns" in at.info[0].value
    if page == "sql":
        assert "units by label" not in at.selectbox(key="sql_example").options
        assert "label shown per layer" not in at.selectbox(key="sql_example").options


def _with_pictures_rewritten(source, run, layers: str, columns) -> None:
    """Copy run ``source`` to ``run`` with the ``images`` files of ``layers`` (a glob: ``fc8``, ``*``)
    rewritten: ``columns(table)`` -> {column: new values}; the markers record the new files' sizes."""
    import shutil

    import pyarrow.parquet as pq

    shutil.copytree(source, run)
    for path in (run / "images").glob(f"layer={layers}/*.parquet"):
        table = pq.read_table(path)
        for name, values in columns(table).items():
            table = table.set_column(table.column_names.index(name), name, [values])
        pq.write_table(table, path)
    for marker_path in (run / "_shards").glob("*.done"):  # the rewritten files' bytes, as a writer records
        marker = json.loads(marker_path.read_text())
        marker["sizes"] = {table: (run / rel).stat().st_size for table, rel in marker["files"].items()}
        marker_path.write_text(json.dumps(marker))


def test_audit_of_a_clean_layer_says_where_the_flagged_units_are(runs, tmp_path, monkeypatch):
    run = tmp_path / "clean-fc8"
    _with_pictures_rewritten(  # fc8's pictures all unflagged
        runs / "alpha",
        run,
        "fc8",
        lambda t: {"flags": ["" if f else f for f in t.column("flags").to_pylist()]},
    )
    at = app(run, monkeypatch, page="audit", layer="fc8")
    conv3 = pd.read_parquet(run / "images" / "layer=conv3")
    n = conv3[conv3["kind"].isin(["best", "last"]) & (conv3["flags"].fillna("") != "")]["unit"].nunique()
    assert n > 0
    # the sidebar's layer has no flags: the page opens on every layer, not on an empty list
    assert at.toggle(key="audit_every_layer").value is True
    assert set(at.dataframe[1].value["layer"]) == {"conv3"} and len(at.dataframe[1].value) == n
    at.toggle(key="audit_every_layer").set_value(False).run()  # the clean layer alone: where the rest are
    said = [s.value for s in at.success]
    assert any(f"Flagged units in other layers: conv3 {n}" in text for text in said), said


def test_audit_of_a_run_without_real_images_says_not_checked(runs, tmp_path, monkeypatch):
    """No picture of a run without real images has a percentile: the audit said "No unit of this
    selection has a flagged picture" in green (a trial); it says that nothing could be checked."""
    run = tmp_path / "no-real"
    _with_pictures_rewritten(
        runs / "alpha", run, "*", lambda t: {"flags": [None] * len(t), "natural_percentile": [None] * len(t)}
    )
    at = app(run, monkeypatch, page="audit", layer="fc8")
    assert not at.error and not at.success, [s.value for s in at.success]
    assert at.info and at.info[0].value.startswith("Not checked: this run's pictures have no natural")
    assert at.dataframe[0].value["checked"].sum() == 0
    checked = app(runs / "alpha", monkeypatch, page="audit", layer="fc8").dataframe[0].value
    assert (checked["checked"] <= checked["pictures"]).all() and checked["checked"].sum() > 0  # diverged: not


def test_a_grid_link_value_the_grid_cannot_take_is_named(runs, monkeypatch):
    at = app(runs / "alpha", monkeypatch, page="layer", layer="conv3", flag="off_path", per="7")
    said = " ".join(w.value for w in at.warning)
    assert "flag='off_path' is not one this grid can show" in said, said
    assert "per='7' is not one this grid can show" in said and "it is left out" in said


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    """Two runs side by side: "left" (fc8 units 2 and 3 failed; composites 10 = 3 + 5, 11 = 3 - 5) and
    "right" (composites 10 = 1 + 2, 11 = 3 + 5)."""
    parent = tmp_path_factory.mktemp("broken")
    make_synthetic_run(parent / "left", layers={"fc8": 10}, chains=2, steps=40, real_k=3)
    fail_and_compose(parent / "left")
    make_synthetic_run(parent / "right", layers={"fc8": 10}, chains=2, steps=40, real_k=3)
    fail_and_compose(parent / "right", composites={"1 + 2": 4.0, "3 + 5": 100.0}, failed=())
    return parent


def texts(at: AppTest, kind: str) -> str:
    """The text of every element of ``kind`` ("alert": warnings, errors, infos and successes)."""
    kinds = ("warning", "error", "info", "success") if kind == "alert" else (kind,)
    return " ".join(str(e.value) for k in kinds for e in at.get(k))


def test_failed_units_are_said_on_every_page(broken, monkeypatch):
    run = broken / "left"
    at = app(run, monkeypatch)
    warned = texts(at, "alert")
    assert "2 of 12 units failed" in warned and "RuntimeError: boom 2 at model.py:7" in warned
    assert f"atlas verify {run}" in warned and "--repair" in warned and "the same `atlas run`" in warned
    assert any("-badge[:material/warning: complete · 2 failed units]" in m.value for m in at.markdown)
    assert "No chain diverged" not in texts(at, "success")
    layers = at.dataframe[0].value
    assert (layers.loc[0, "units"], layers.loc[0, "composites"], layers.loc[0, "failed_units"]) == (10, 2, 2)
    picker = at.selectbox(key="w_layer")
    assert picker.options == ["fc8"] and picker.help.endswith("fc8: 10 units + 2 composites"), picker.help
    grid = app(run, monkeypatch, page="layer", layer="fc8", sort="unit ↑")
    failed_lines = [t["html"] for t in grid_tiles(grid) if "✗ failed" in t["html"]]
    assert len(failed_lines) == 2 and "RuntimeError: boom 2" in failed_lines[0]
    names = tile_names(grid)
    assert "unit 10 · 3 + 5" in names and "unit 11 · 3 - 5" in names
    unit = app(run, monkeypatch, page="unit", layer="fc8", unit=2)
    assert "This unit failed: `RuntimeError: boom 2" in texts(unit, "error") and "--repair" in texts(
        unit, "error"
    )
    assert "-1" not in [m.value for m in unit.metric]  # no sentinel rank
    audit = app(run, monkeypatch, page="audit", layer="fc8")
    assert "2 failed units have no pictures to check in layer fc8" in texts(audit, "alert")
    assert audit.dataframe[0].value.loc[0, "failed_units"] == 2


def test_unit_pickers_name_a_composites_expression(tmp_path, monkeypatch):
    """The "Open a unit" boxes under the diverged chains and the audit list name a composite as its page
    does ("fc8 · unit 10 · 3 + 5"), and its page's title keeps the asterisks of "0.7*3 + 0.3*7"."""
    run = tmp_path / "run"
    make_synthetic_run(run, layers={"fc8": 10}, chains=2, steps=40, real_k=3)
    fail_and_compose(run, composites={"3 + 5": 113.0, "0.7*3 + 0.3*7": 9.0}, failed=())

    def as_unit_10(df: pd.DataFrame, **change) -> pd.DataFrame:  # unit 0's rows again, as unit 10's
        added = df[df["unit"] == 0].assign(unit=10, **change)
        return pd.concat([df, added], ignore_index=True)

    rewrite_run(
        run, "fc8", images=lambda df: as_unit_10(df, flags="weak"),
        chains=lambda df: as_unit_10(df, diverged=True),
    )  # fmt: skip
    at = app(run, monkeypatch)
    assert "fc8 · unit 10 · 3 + 5" in at.selectbox(key="diverged_pick").options
    (diverged,) = [d.value for d in at.dataframe if "chain" in d.value.columns]
    assert set(diverged.loc[diverged["unit"] == 10, "composite"]) == {"3 + 5"}
    audit = app(run, monkeypatch, page="audit", layer="fc8")
    options = audit.selectbox(key="audit_pick").options
    assert "fc8 · unit 10 · 3 + 5" in options and "fc8 · unit 0" in options
    audit.selectbox(key="audit_pick").select_index(options.index("fc8 · unit 10 · 3 + 5")).run()
    assert "Open fc8 · unit 10 · 3 + 5" in page_links(audit)
    unit = app(run, monkeypatch, page="unit", layer="fc8", unit=11)
    assert unit.title[0].value == "fc8 · unit 11 · 0.7\\*3 + 0.3\\*7"  # markdown: shown as 0.7*3 + 0.3*7


def test_a_composites_unit_page_says_what_its_numbers_are(broken, monkeypatch):
    at = app(broken / "left", monkeypatch, page="unit", layer="fc8", unit=10)
    assert at.title[0].value == "fc8 · unit 10 · 3 + 5"
    # its terms in words, with their units' labels: "3 + 5" did not say which classes it joins (a trial)
    import duckdb

    labels = dict(
        duckdb.sql(
            f"SELECT unit, label FROM read_parquet('{broken / 'left'}/units/layer=fc8/*.parquet') "
            "WHERE unit IN (3, 5)"
        ).fetchall()
    )
    named = {u: f" ({labels[u]})" if labels.get(u) else "" for u in (3, 5)}
    assert f"a composite of unit 3{named[3]} + unit 5{named[5]}" in texts(at, "caption")
    assert any(named.values())  # the synthetic run labels most units: the test reads a label
    contrast = app(broken / "left", monkeypatch, page="unit", layer="fc8", unit=11)
    assert "a composite of unit 3" in texts(contrast, "caption") and " - unit 5" in texts(contrast, "caption")
    labels = [m.label for m in at.metric]
    assert "Log-prob sum" in labels and "Rank of unit 3" in labels and "Best log-prob" not in labels


def test_compare_keeps_different_objectives_of_one_number_apart(broken, monkeypatch):
    at = app(broken / "left", monkeypatch, page="compare", layer="fc8", cmp="2, 10-11")
    warned = texts(at, "alert")
    assert "unit 10: `3 + 5` here, `1 + 2` in right" in warned and "not compared as one unit" in warned
    said = texts(at, "caption")
    assert "summaries over all 8 units of layer fc8 that both runs hold" in said  # 10 less 2 failed
    table = at.table[0].value  # the two runs side by side, a row a measure (metrics' labels were cut)
    assert list(table.columns) == ["left", "right"] and list(table.index)[:4] == [
        "method",
        "steps",
        "forward passes per picture",  # a GA generation is one step: the budgets compare here
        "mean best activation",
    ]
    assert "left out: 2 composites and failed units (2 in left)" in said
    assert "different budgets" not in warned  # 40 steps of DGN-AM each
    assert "left: failed (RuntimeError: boom 2" in said and "not in this run" not in said
    assert "right: unit 11 is `3 + 5` there" in said  # its unit 11 is what left's unit 10 is
    links = page_links(at)
    assert list(links) == ["**unit 2**", "**unit 10 · 3 + 5**", "**unit 11 · 3 - 5**"]
    assert links["**unit 10 · 3 + 5**"] == {"layer": "fc8", "unit": "10"}
    assert at.query_params["vs"] == "right"  # the other run always in the link
    one = app(broken / "left", monkeypatch, page="compare", layer="fc8", mode="methods")
    assert "this run has one method (dgn_am)" in texts(one, "alert")
    assert "(this page offers: runs, methods)" not in texts(one, "alert")


def test_compare_says_when_the_runs_spent_different_budgets(tmp_path, monkeypatch):
    """The same sampler.steps are 150 passes of DGN-AM and 1,000 of GA: a trial compared them with nothing
    said, and the table read "1e+03"."""
    make_synthetic_run(tmp_path / "short", layers={"fc8": 10}, chains=2, steps=20, real_k=3)
    make_synthetic_run(tmp_path / "long", layers={"fc8": 10}, chains=2, steps=400, real_k=3)
    at = app(tmp_path / "short", monkeypatch, page="compare", layer="fc8", vs="long")
    warned = texts(at, "alert")
    assert "60 forward passes per picture in short, 1,200 in long" in warned, warned
    assert "long had 20.0 x the search of short" in warned
    assert list(at.table[0].value.loc["forward passes per picture"]) == ["60", "1,200"]


def test_compare_with_nothing_to_compare_suggests_another_method(tmp_path, monkeypatch):
    """A trial's PPGN-h run was told to run `sampler.method=ppgn_h` again to have something to compare."""
    for method, other in (("ppgn_h", "dgn_am"), ("dgn_am", "ppgn_h")):
        run = tmp_path / method / "solo"
        make_synthetic_run(run, layers={"fc8": 10}, chains=1, steps=20, methods=(method,))
        said = texts(app(run, monkeypatch, page="compare", layer="fc8"), "info")
        assert f"--set name=solo-{other} --set sampler.method={other}`" in said, said


def test_a_silent_units_percentiles_are_grey_not_green(tmp_path, monkeypatch):
    """A silent unit's pictures beat natural values that are all <= 0: p100 there is no success (a trial
    read a green p100 on pictures at activation -0.65)."""
    from tests.support.run_edits import set_units_column

    run = tmp_path / "silent"
    make_synthetic_run(run, layers={"fc8": 10, "conv3": 12}, chains=2, steps=20)
    set_units_column(run, "real_top1_activation", -0.5, below=4)
    shown = {}
    for unit in (1, 6):
        at = app(run, monkeypatch, page="unit", layer="conv3", unit=unit)
        badges = " ".join(m.value for m in at.markdown)
        shown[unit] = (":gray-badge[p" in badges, ":green-badge[p" in badges or ":red-badge[p" in badges)
    assert shown == {1: (True, False), 6: (False, True)}, shown


def test_a_planned_layer_not_written_yet_keeps_its_link(tmp_path, monkeypatch):
    run = tmp_path / "partial"
    make_synthetic_run(run, layers={"fc8": 10, "conv3": 16}, chains=1, steps=20, max_shards=2)
    manifest = json.loads((run / "run.json").read_text())
    manifest["layers"] = [{"name": "fc8", "kind": "output", "shape": [10], "units": 10},
                          {"name": "conv3", "kind": "conv", "shape": [16, 9, 9], "units": 16}]  # fmt: skip
    (run / "run.json").write_text(json.dumps(manifest))
    at = app(run, monkeypatch, page="layer", layer="conv3")
    assert "Layer conv3 is not written yet" in texts(at, "alert") and "not in this run" not in texts(
        at, "alert"
    )
    assert at.query_params["layer"] == "conv3"  # the link kept
    picker = at.selectbox(key="w_layer")
    assert "conv3" in picker.options and picker.help.endswith("conv3: not written yet"), picker.help
    odd = app(run, monkeypatch, page="layer", layer="conv9")
    assert "Layer 'conv9' is not in this run" in texts(odd, "alert")
    overview = app(run, monkeypatch)
    assert [m.value for m in overview.metric if m.label == "Layers"] == ["1 of 2"]


def test_a_planned_unit_of_an_interrupted_run_is_not_written_yet(tmp_path, monkeypatch):
    """A user's trial: a unit of a shard an interrupted run had not written "is not in layer fc7"."""
    run = tmp_path / "stopped"
    make_synthetic_run(run, layers={"fc8": 10}, chains=1, steps=20, max_shards=1)  # units 0-7 of 0-9
    manifest = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**manifest, "status": "interrupted"}))
    at = app(run, monkeypatch, page="unit", layer="fc8", unit=9)
    said = "Unit 9 of fc8 is not written yet (the run is interrupted: the same `atlas run` writes it)"
    assert f"{said}; showing unit 7." in texts(at, "alert"), texts(at, "alert")
    grid = app(run, monkeypatch, page="layer", layer="fc8")
    assert "Units 8-9 of fc8 are not written yet" in texts(grid, "caption")


def test_a_grid_page_past_the_last_is_named_and_units_are_listed_compactly(runs, monkeypatch):
    at = app(runs / "alpha", monkeypatch, page="layer", layer="fc8", p=999)
    assert "There is no page 999 of this grid (it has 1); showing page 1." in texts(at, "alert")
    junk = app(runs / "alpha", monkeypatch, page="layer", layer="fc8", p="abc")
    assert "The link's page 'abc' is not a page number; showing the grid's first page." in texts(
        junk, "alert"
    )
    unit = app(runs / "alpha", monkeypatch, page="unit", layer="conv3", unit=81)
    assert "Unit 81 is not in layer conv3 (units 0-15)" in texts(unit, "alert")


def test_the_facets_section_says_when_the_reader_sees_more_facets_than_were_counted(tmp_path, monkeypatch):
    """A pill unit counted one facet while its chains drew capsules and two-dot pills, and the page said
    nothing (a trial looking for multifaceted units)."""
    import numpy as np

    run = tmp_path / "run"
    make_synthetic_run(run, layers={"fc8": 10}, chains=4, steps=40, real_k=3)
    facets = ["facet:pill/capsule", "facet:pill/two_dots", "facet:pill/capsule", "facet:pill/capsule"]

    def images(df: pd.DataFrame) -> pd.DataFrame:
        df = df.copy()
        last = (df["unit"] == 8) & (df["kind"] == "last")
        df["reader_concepts"] = df["reader_concepts"].astype(object)
        df.loc[last, "reader_concepts"] = pd.Series(
            [np.array(["class:pill", facets[int(c)]], dtype=object) for c in df.loc[last, "chain"]],
            index=df.index[last],
            dtype=object,
        )
        return df

    rewrite_run(run, "fc8", units=lambda df: df.assign(facet_count=1), images=images)
    at = app(run, monkeypatch, page="unit", layer="fc8", unit=8)
    said = texts(at, "caption")
    assert "The attribute reader finds 2 facets among the chains' last pictures (pill/capsule (3), " in said
    assert "pill/two_dots (1)) where the facet layer" in said and "separates 1" in said, said
    other = app(run, monkeypatch, page="unit", layer="fc8", unit=7)  # one facet seen: nothing said
    assert "The attribute reader finds" not in texts(other, "caption")


def test_competitors_the_run_did_not_sample_cannot_be_opened(tmp_path, monkeypatch):
    """A user's trial: "Open unit 35" on a run holding fc7 0-15 opened unit 15 and said unit 35 "is not in
    layer fc7" (a layer of 256). Competitors are marked by whether the run holds them, only those can be
    opened, and a unit of the layer the run did not sample is said so."""
    run = tmp_path / "part"
    make_synthetic_run(run, layers={"fc8": 10}, chains=2, steps=40, units_per_shard=8, max_shards=1)
    manifest = json.loads((run / "run.json").read_text())
    held = list(range(8))  # the run sampled units 0-7 of fc8's 10
    manifest |= {"unit_groups": {"fc8": [held]}, "status": "complete"}
    manifest["layers"] = [{"name": "fc8", "kind": "output", "shape": [10], "units": 8}]
    (run / "run.json").write_text(json.dumps(manifest))
    steps = pd.read_parquet(run / "steps" / "layer=fc8")
    rivals = steps.groupby("unit")["top_competitor"].agg(lambda s: set(s.dropna().astype(int)))
    unit = next(u for u, r in rivals.items() if r - set(held) and r & set(held) - {u})  # both kinds
    at = app(run, monkeypatch, page="unit", layer="fc8", unit=unit)
    pick = at.selectbox(key=f"comp_pick_fc8_{unit}")
    assert pick.options and {int(o) for o in pick.options} <= set(held) - {unit}, pick.options
    table = next(d.value for d in at.dataframe if "in_atlas" in d.value.columns)
    marked = dict(zip(table["competitor"].astype(int), table["in_atlas"], strict=True))
    assert marked and all(marked[u] == (u in held) for u in marked) and not all(marked.values())
    missing = app(run, monkeypatch, page="unit", layer="fc8", unit=9)
    said = "Unit 9 of fc8 was not sampled in this run (its units of fc8: 0-7); showing unit 7."
    assert said in texts(missing, "alert"), texts(missing, "alert")
    past = app(run, monkeypatch, page="unit", layer="fc8", unit=12)
    said = "Unit 12 is not in layer fc8 (10 units; this run holds 0-7); showing unit 7."
    assert said in texts(past, "alert"), texts(past, "alert")


def test_a_grid_filter_naming_units_the_run_lacks_says_so(runs, monkeypatch):
    """A user's trial: units=3, 10-12, 99 on a layer holding 0-15 showed four units and said nothing of 99
    (Compare says it for the same filter)."""
    at = app(runs / "alpha", monkeypatch, page="layer", layer="conv3", units="3, 10-12, 99")
    said = "layer conv3 has units 0-15: the others are left out."
    assert said in texts(at, "caption"), texts(at, "caption")
    whole = app(runs / "alpha", monkeypatch, page="layer", layer="conv3", units="3, 10-12")
    assert "left out" not in texts(whole, "caption")


def test_the_audit_says_a_silent_unit_has_no_label_as_the_grid_does(tmp_path, monkeypatch):
    """A user's trial: a silent unit read "no label" beside its best concept's AUROC on the audit page, and
    "no label · silent" on the grid; and "1 flagged pictures"."""
    from tests.support.run_edits import set_units_column

    run = tmp_path / "silent"
    make_synthetic_run(run, layers={"fc8": 10, "conv3": 12}, chains=2, steps=20)
    set_units_column(run, "label", None, below=12)  # no unit has a label
    set_units_column(run, "real_top1_activation", -0.5, below=12)  # every conv3 unit is silent
    at = app(run, monkeypatch, page="audit", layer="conv3")
    at.toggle(key="audit_every_layer").set_value(True).run()
    listed = at.dataframe[1].value
    assert "silent" not in listed.columns
    expected = [
        "no label · silent" if la == "conv3" else "no label"
        for la, u in zip(listed["layer"], listed["unit"], strict=True)
    ]
    assert list(listed["label"]) == expected and "no label · silent" in expected, listed
    flagged = int(listed["flagged"].sum())
    assert f"{flagged} flagged picture{'' if flagged == 1 else 's'} " in texts(at, "caption")
