"""The viewer in a real headless Chromium (Debian ``chromium`` driven by Playwright's Python API).

Starts ``atlas view`` (the command module's streamlit command line) on a free 127.0.0.1 port against a
synthetic run made here, loads the overview, a layer grid and a unit page (deep link), checks that images
decode (naturalWidth > 0) and charts render, and saves screenshots under ``test-artifacts/``.
A missing browser is a failure, not a skip: CI installs it (``.ci/run``).

No fixed sleeps: every step waits for the thing it needs (the server's health endpoint, a heading, a number
of decoded images, charts drawn into a canvas/svg, a text) with a generous bound (``WAIT_S``; a slow, busy
machine takes its time), and a test that gives up says what it was waiting for and what the page showed.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pandas as pd
import pytest
from playwright.sync_api import Error as PlaywrightError

from atlas.bench.synthetic_run import make_synthetic_run
from atlas.commands.view import streamlit_command

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = os.environ.get("ATLAS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
WAIT_S = float(os.environ.get("ATLAS_BROWSER_WAIT_S", "120"))  # bound of every wait (server start: 2x)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def runs_parent(tmp_path_factory):
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def server(runs_parent):
    parent = runs_parent
    make_synthetic_run(
        parent / "demo", layers={"fc8": 10, "conv3": 64}, chains=4, images_per_chain=5, real_k=6, steps=120
    )
    make_synthetic_run(
        parent / "demo-b", layers={"fc8": 10, "conv3": 64}, chains=3, methods=("ppgn_h", "dgn_am"), seed=3
    )
    with _serving(parent / "demo", parent / "streamlit.log") as url:
        yield url


@contextlib.contextmanager
def _serving(run: Path, log_path: Path):
    """``atlas view``'s Streamlit on ``run`` (a run or a folder of runs), on a free port: its URL, once
    the health endpoint answers."""
    port = _free_port()
    log = open(log_path, "w")  # noqa: SIM115 - closed at exit
    proc = subprocess.Popen(
        streamlit_command(str(run), port, "127.0.0.1"), stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 2 * WAIT_S
    while True:  # poll the health endpoint until it answers 200 (or the process dies, or the bound passes)
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=5) as resp:
                if resp.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            exited = proc.poll() is not None
            why = f"exited with {proc.returncode}" if exited else f"no answer in {2 * WAIT_S:g} s"
            proc.kill()
            log.close()
            pytest.fail(
                f"streamlit did not start ({why}) waiting for {url}/_stcore/health to return 200; its log:\n"
                f"{log_path.read_text()[-3000:]}"
            )
        time.sleep(0.25)
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: install Debian's `chromium` package "
            "(apt-get install chromium; .ci/run does this) or point ATLAS_CHROMIUM at a Chromium binary"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture()
def page(browser):
    ARTIFACTS.mkdir(exist_ok=True)
    context = browser.new_context(viewport={"width": 1440, "height": 1000}, device_scale_factor=1)
    p = context.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    yield p
    context.close()
    assert not errors, f"JavaScript errors: {errors}"


# the page's state, for the conditions below and for the message of a wait that gives up
STATE_JS = """() => {
  const imgs = Array.from(
    document.querySelectorAll('[data-testid="stMain"] img, [data-testid="stImage"] img'));
  const charts = Array.from(document.querySelectorAll('[data-testid="stVegaLiteChart"]'));
  const drawn = charts.filter(c => Array.from(c.querySelectorAll('canvas, svg.marks'))
                                       .some(e => e.getBoundingClientRect().width > 0));
  return {
    images: imgs.length,
    images_decoded: imgs.filter(i => i.complete && i.naturalWidth > 0).length,
    charts: charts.length,
    charts_drawn: drawn.length,
    running: !!document.querySelector('[data-testid="stStatusWidget"]'),
    headings: Array.from(document.querySelectorAll('h1, h2, h3')).map(h => h.innerText).slice(0, 8),
  };
}"""


SOURCES_JS = """() => Array.from(document.querySelectorAll('[data-testid="stMain"] img')).map(i => i.src)"""


def _state(page) -> dict:
    try:
        return page.evaluate(STATE_JS)
    except PlaywrightError as exc:  # e.g. mid-navigation
        return {"error": str(exc).splitlines()[0]}


def _wait_until(page, condition_js: str, what: str, arg=None, timeout_s: float | None = None) -> None:
    """Poll until ``condition_js(state, arg)`` holds in the page; else fail saying what was awaited."""
    timeout_s = WAIT_S if timeout_s is None else timeout_s
    js = f"(arg) => {{ const state = ({STATE_JS})(); return ({condition_js})(state, arg); }}"
    try:
        page.wait_for_function(js, arg=arg, timeout=timeout_s * 1000, polling=250)
    except PlaywrightError:
        pytest.fail(f"gave up after {timeout_s:g} s waiting for {what} on {page.url}; page: {_state(page)}")


def _quiet_sources(page, what: str, unlike: list[str] | None = None, polls: int = 4) -> list[str]:
    """The page's picture sources once the page is quiet: no script run, every image decoded and the same
    sources on ``polls`` polls in a row (Streamlit replaces elements while a rerun streams in); with
    ``unlike``, also none of those sources left."""
    js = f"""(arg) => {{
      const s = ({STATE_JS})();
      const now = ({SOURCES_JS})();
      const key = JSON.stringify(now);
      const w = window.__atlasQuiet = (window.__atlasQuiet && window.__atlasQuiet.key === key)
        ? {{key, n: window.__atlasQuiet.n + 1}} : {{key, n: 1}};
      const fresh = !arg.unlike || now.every(src => !arg.unlike.includes(src));
      return !s.running && s.images > 0 && s.images_decoded === s.images && fresh && w.n >= arg.polls;
    }}"""
    try:
        page.wait_for_function(js, arg={"unlike": unlike, "polls": polls}, timeout=WAIT_S * 1000, polling=250)
    except PlaywrightError:
        now = page.evaluate(SOURCES_JS)
        left = (
            "" if unlike is None else f"{sum(src in unlike for src in now)} of {len(now)} pictures unchanged "
        )
        pytest.fail(
            f"gave up after {WAIT_S:g} s waiting for {what} on {page.url}; {left}(before: "
            f"{len(unlike or [])}); page: {_state(page)}"
        )
    return page.evaluate(SOURCES_JS)


def _wait_visible(locator, what: str, timeout_s: float | None = None) -> None:
    timeout_s = WAIT_S if timeout_s is None else timeout_s
    try:
        locator.first.wait_for(state="visible", timeout=timeout_s * 1000)
    except PlaywrightError:
        page = locator.page
        pytest.fail(f"gave up after {timeout_s:g} s waiting for {what} on {page.url}; page: {_state(page)}")


def _settle(page, expect_title: str, images: int = 0, charts: int = 0) -> None:
    """Wait for the page's heading, then until the script run has finished with at least ``images`` images
    decoded and ``charts`` charts drawn (Streamlit streams elements while the script runs)."""
    _wait_visible(page.get_by_role("heading", name=expect_title), f"the heading {expect_title!r}")
    _wait_until(
        page,
        "(s, want) => !s.running && s.images_decoded >= want.images && s.images_decoded === s.images"
        " && s.charts_drawn >= want.charts",
        f"{expect_title!r} to finish running with >= {images} images decoded and >= {charts} charts drawn",
        arg={"images": images, "charts": charts},
    )


def _query(url: str) -> dict[str, str]:
    """A URL's (or a relative link's) query parameters, one value each."""
    return {k: v[0] for k, v in parse_qs(urlparse(url).query).items()}


def _wait_url(page, pattern, what: str) -> None:  # a glob, or a predicate of the URL
    try:
        page.wait_for_url(pattern, timeout=WAIT_S * 1000)
    except PlaywrightError:
        pytest.fail(f"gave up after {WAIT_S:g} s waiting for {what}; URL {page.url}; page: {_state(page)}")


def _image_widths(page) -> list[int]:
    return page.eval_on_selector_all(
        '[data-testid="stImage"] img, [data-testid="stMain"] img', "els => els.map(e => e.naturalWidth)"
    )


def _charts(page) -> int:
    return int(_state(page)["charts_drawn"])


def _shot(page, name: str) -> Path:
    """Screenshot of the whole page: Streamlit scrolls inside its main container, so grow the viewport."""
    path = ARTIFACTS / f"viewer-{name}.png"
    size = page.viewport_size
    height = page.evaluate(
        """() => Math.max(...Array.from(document.querySelectorAll(
              '[data-testid="stMain"], [data-testid="stAppViewContainer"], section.main'))
            .map(e => e.scrollHeight), document.body.scrollHeight)"""
    )
    before = _state(page)
    page.set_viewport_size({"width": size["width"], "height": min(int(height) + 40, 8000)})
    # charts re-layout to the new size: wait until as many are drawn (and images decoded) as before, then
    # for two animation frames so the re-layout reaches the screen
    _wait_until(
        page,
        "(s, want) => s.charts_drawn >= want.charts_drawn && s.images_decoded >= want.images_decoded",
        f"the page to redraw after resizing for the {name!r} screenshot",
        arg={k: before.get(k, 0) for k in ("charts_drawn", "images_decoded")},
    )
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(size)
    return path


def test_overview(server, page):
    page.goto(f"{server}/?page=overview")
    _settle(page, "demo", charts=3)  # the three distribution charts
    assert page.get_by_text("Distributions").count() >= 1
    assert _charts(page) >= 3, "the three distribution charts should render"
    assert _shot(page, "overview").stat().st_size > 10_000
    before = page.evaluate("() => history.length")  # a layer's grid link: one history entry, one Back
    page.get_by_role("link", name="conv3 grid").first.click()
    _settle(page, "Layer conv3", images=48)
    _wait_url(page, "**/layer?layer=conv3", "the URL of the grid the overview's link opened")
    assert page.evaluate("() => history.length") == before + 1
    page.go_back()
    _settle(page, "demo", charts=3)
    # the sidebar's layer picker on the overview (about every layer) opens the picked layer's grid
    page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').first.click()
    page.get_by_role("option").filter(has_text="conv3").first.click()
    _wait_visible(
        page.get_by_role("heading", name="Layer conv3"), "the grid of the layer picked on the overview"
    )
    _wait_url(page, "**/layer?layer=conv3*", "the URL of the grid the overview's layer picker opened")
    page.goto(f"{server}/nosuchpage?layer=fc8")  # a mistyped path is named, not silently the overview
    _wait_visible(page.get_by_text("There is no page /nosuchpage"), "the notice naming the unknown path")
    page.goto(f"{server}/nosuchpage/extra?layer=fc8")  # two segments: blank for ever (scripts never loaded)
    _wait_visible(page.get_by_text("There is no page /nosuchpage"), "a two-segment path, at its first one")


def test_layer_grid(server, page):
    page.goto(f"{server}/?page=layer&layer=conv3")
    _settle(page, "Layer conv3", images=48)  # a full first page of the 64-unit grid
    widths = _image_widths(page)
    assert len(widths) >= 48 and all(w > 0 for w in widths), widths
    _wait_visible(page.get_by_text("page 1 of 2"), "the pager text 'page 1 of 2'")
    # pictures to look at: 6 tiles a row at 1440 px, each picture 128-200 px, every tile as high as the rest
    tiles = page.eval_on_selector_all(
        ".atlas-grid .atlas-tile",
        """els => els.map(e => { const r = e.getBoundingClientRect(), i = e.querySelector('img');
             return [Math.round(r.top), Math.round(r.height), i ? i.getBoundingClientRect().width : 0]; })""",
    )
    assert len(tiles) == 48, tiles
    assert all(128 <= width <= 200 for _, _, width in tiles), tiles
    assert max(h for _, h, _ in tiles) - min(h for _, h, _ in tiles) <= 2, tiles  # one line a caption
    assert len({top for top, _, _ in tiles}) == 8, tiles  # 48 tiles in rows of 6
    # small pictures drawn 4 x larger show their pixels, not a blur (a trial found the grid's blurred)
    rendering = page.eval_on_selector_all(
        ".atlas-grid img", "els => [...new Set(els.map(e => getComputedStyle(e).imageRendering))]"
    )
    assert rendering == ["pixelated"], rendering
    # every tile's lines inside its border (Streamlit's tiles once let their last line spill over it)
    spill = page.eval_on_selector_all(
        ".atlas-grid .atlas-tile",
        """els => els.map(e => { const last = e.lastElementChild;
             return e.getBoundingClientRect().bottom - last.getBoundingClientRect().bottom; })""",
    )
    assert min(spill) >= 4, spill  # at least the tile's bottom padding's worth of room under the last line
    _shot(page, "layer-grid")
    # a tile's picture links to its unit's page, opened in a new tab (the grid stays as it is)
    anchor = page.locator("a.atlas-tile-picture").first
    href = anchor.get_attribute("href") or ""
    assert href.startswith("unit?layer=conv3&unit="), href
    with page.expect_popup() as opened:
        anchor.click()
    tab = opened.value
    unit = _query(href)["unit"]
    _wait_visible(tab.get_by_role("heading", name=f"conv3 · unit {unit}"), "the unit page a picture opened")
    tab.close()
    # paging keeps working and updates the URL
    page.get_by_role("button", name="Next").first.click()
    _wait_visible(page.get_by_text("page 2 of 2"), "the pager text 'page 2 of 2' after clicking Next")
    _wait_url(page, "**/layer?layer=conv3&p=2", "the URL (page as its path) to carry p=2 after paging")
    # the sidebar's page menu opens a page and the URL follows
    page.locator('[data-testid="stSidebar"]').get_by_role("link", name="Unit", exact=True).click()
    _wait_visible(page.get_by_role("heading", name="conv3 · unit 0"), "the unit page opened from the menu")
    _wait_url(page, "**/unit?layer=conv3&unit=0", "the URL of the unit page opened from the menu")


def test_unit_deep_link(server, page):
    page.goto(f"{server}/?page=unit&layer=fc8&unit=7")
    # facets + 6 real images + 4 chains x 5 kept images; four trajectories + competitors
    _settle(page, "fc8 · unit 7", images=26, charts=5)
    _wait_url(page, "**/unit?layer=fc8&unit=7", "the ?page=unit link to become the unit page's path")
    widths = _image_widths(page)
    assert len(widths) >= 26 and all(w > 0 for w in widths), widths
    assert _charts(page) >= 5
    sources = page.locator('[data-testid="stImage"] img').evaluate_all("(els) => els.map((e) => e.src)")
    assert sources and all(".png" in src for src in sources), sources[:3]  # the stored pixels, not a JPEG
    chained = page.eval_on_selector_all(  # a chain card's pictures use its width: 5 a row, not 8
        '[data-testid="stHorizontalBlock"]:has(.atlas-chain-head) [data-testid="stImage"] img',
        "els => els.map(e => e.getBoundingClientRect().width)",
    )
    assert chained and all(width >= 128 for width in chained), chained
    _shot(page, "unit")
    # the deep link survives a reload and neighbour navigation updates it
    page.reload()
    _settle(page, "fc8 · unit 7", images=26)
    page.get_by_role("button", name="unit 8").first.click()
    _wait_visible(page.get_by_role("heading", name="fc8 · unit 8"), "the heading 'fc8 · unit 8' (clicked)")
    _wait_url(page, "**unit=8**", "the URL to carry unit=8 (synced when the script run ends)")
    # the browser's Back returns to unit 7, page and URL alike (checked once the run has ended)
    page.go_back()
    _settle(page, "fc8 · unit 7")
    assert "unit=7" in page.url, page.url


def test_back_and_forward_step_through_what_the_session_showed(server, page):
    page.goto(f"{server}/layer?layer=conv3&sort=rank+%E2%86%91")
    _settle(page, "Layer conv3", images=48)
    first = page.locator("a.atlas-tile-name").first  # a tile's name: a link, loaded as a new page
    unit = int(first.inner_text().split()[-1])
    first.click()
    _settle(page, f"conv3 · unit {unit}")
    other = unit + 1 if unit < 63 else unit - 1  # conv3 has units 0-63: the next one, or the previous
    page.get_by_role("button", name=f"unit {other}").first.click()
    _settle(page, f"conv3 · unit {other}")
    _wait_url(page, lambda url: _query(url).get("unit") == str(other), f"the URL to carry unit={other}")
    assert _query(page.url).get("sort") == "rank", page.url  # the grid the tile was on, to return to
    page.go_back()
    _settle(page, f"conv3 · unit {unit}")
    assert f"unit={unit}" in page.url, (
        page.url
    )  # the run has ended: the session did not write unit {other} back
    page.go_back()  # to the grid, its sort order kept
    _settle(page, "Layer conv3", images=48)
    # the run writes the grid's URL when it ends, which a busy machine may not have reached when the page
    # looks settled (a page switch leaves a parameterless entry in between): wait for it
    _wait_url(page, "**sort=rank**", "the grid's URL to carry its sort order again after Back")
    page.go_forward()
    _settle(page, f"conv3 · unit {unit}")
    assert f"unit={unit}" in page.url, page.url
    # the unit page a tile's link opened (a session of its own) returns to the grid as the tile left it
    page.get_by_role("link", name="conv3 grid").first.click()
    _settle(page, "Layer conv3", images=48)
    _wait_url(page, lambda url: _query(url).get("sort") == "rank", "the grid's sort order after its link")


def test_back_resets_the_grid_controls_the_earlier_url_lacks(server, page):
    """The filter box shows what the tiles use after Back (a key popped from the session, not re-set,
    left the browser's box showing the filter, and the next click applied it again)."""
    page.goto(f"{server}/layer?layer=conv3")
    _settle(page, "Layer conv3", images=48)
    units = page.get_by_label("Units")
    units.fill("3-9")
    units.press("Enter")
    _wait_url(page, "**units=3-9**", "the URL to carry the units filter")
    _wait_visible(page.get_by_text("showing all 7 units"), "the filtered grid (7 units, one page)")
    page.go_back()
    _wait_visible(page.get_by_text("showing 1–48 of 64 units"), "the whole grid after Back")
    _wait_until(page, "() => document.querySelector('input[aria-label=\"Units\"]')?.value === ''",
                "the Units box to be empty after Back")  # fmt: skip
    page.get_by_role("button", name="Next").first.click()  # the next click keeps the grid whole
    _wait_visible(page.get_by_text("page 2 of 2"), "page 2 of the whole grid")


def test_unit_label_and_faithfulness_badges(server, runs_parent, page):
    units = pd.read_parquet(runs_parent / "demo" / "units" / "layer=fc8")
    images = pd.read_parquet(runs_parent / "demo" / "images" / "layer=fc8")
    weak_units = set(images.loc[images["flags"] == "weak", "unit"])
    row = units[units["label"].notna() & units["unit"].isin(weak_units)].iloc[0]
    unit = int(row["unit"])
    page.goto(f"{server}/unit?layer=fc8&unit={unit}")
    _settle(page, f"fc8 · unit {unit}", images=20, charts=6)  # the tuning chart too
    label = page.locator("span.atlas-label")
    _wait_visible(label, f"the label {row['label']!r}")
    assert label.first.inner_text() == row["label"]
    _wait_visible(page.get_by_text(f"runner-up {row['label_runner_up']}"), "the runner-up caption")
    badge = page.get_by_text(re.compile(r"^p(\d{1,2}\.\d|100)$"))
    _wait_visible(badge, "a natural-percentile badge (p99.7)")
    results = images[(images["unit"] == unit) & images["kind"].isin(["best", "last"])]
    assert badge.count() >= results.groupby(["chain", "step"]).ngroups  # a best = last picture once
    _wait_visible(page.get_by_text(re.compile(r"\bweak$")), "a 'weak' flag badge")
    _shot(page, "unit-label")


def test_conv_unit_frames_its_place(server, runs_parent, page):
    """A conv unit with a place-bound label: the caption says where *here* is, and the frame toggle redraws
    every picture (framed, then plain)."""
    units = pd.read_parquet(runs_parent / "demo" / "units" / "layer=conv3")
    row = units[units["label"].fillna("").str.contains("here")].iloc[0]
    unit, (y0, y1, x0, x1) = int(row["unit"]), (int(v) for v in row["label_cell"])
    page.goto(f"{server}/unit?layer=conv3&unit={unit}")
    _settle(page, f"conv3 · unit {unit}", images=20)
    label = page.locator("span.atlas-label")
    _wait_visible(label, f"the label {row['label']!r}")
    assert label.first.inner_text() == row["label"]  # `colour:red@here` whole, not a markdown directive
    where = f"rows {y0}–{y1 - 1}, columns {x0}–{x1 - 1}"
    _wait_visible(page.get_by_text(where, exact=False), f"the place-bound caption ({where})")
    _shot(page, "unit-conv-place")
    framed = _quiet_sources(page, "the framed pictures")
    toggle = page.get_by_role("switch", name="Frame the unit's place on its pictures")
    _wait_visible(toggle, "the frame toggle")
    assert toggle.first.is_checked()
    page.get_by_text("Frame the unit's place on its pictures").click()  # off: the plain pictures (its label)
    _wait_until(
        page,
        "() => document.querySelector('[role=switch][aria-label^=\"Frame the unit\"]')?.checked === false",
        "the frame toggle to turn off",
    )
    plain = _quiet_sources(page, "every picture to be replaced by its unframed version", unlike=framed)
    assert len(plain) == len(framed) and not set(plain) & set(framed)


def _console_query(page, sql: str) -> None:
    """Type ``sql`` into the console and run it: the text is committed (the box left, Streamlit's rerun
    over) before the button is pressed, so a busy machine cannot run the box's previous text."""
    box = page.locator("textarea").first
    box.fill(sql)
    box.press("Tab")
    # taken: the page writes the user's own query into its URL (?q=) once its rerun has the text
    typed = lambda url: parse_qs(urlparse(url).query).get("q") == [sql]  # noqa: E731
    _wait_url(page, typed, "the console's ?q= to be the typed query")
    _wait_until(page, "(s) => !s.running", "the console to take the typed query")
    page.get_by_role("button", name="Run query").click()


def test_compare_and_sql(server, page):
    page.goto(f"{server}/?page=compare&layer=fc8&unit=0")
    _settle(page, "Compare", images=16)
    assert all(w > 0 for w in _image_widths(page))
    assert len(_image_widths(page)) >= 16
    _shot(page, "compare")
    page.goto(f"{server}/?page=sql")
    _settle(page, "SQL console")
    _wait_visible(page.locator("textarea"), "the SQL text area")
    _console_query(page, "COPY units TO '/tmp/atlas-browser-leak.csv'")
    _wait_visible(page.get_by_text("Query refused or failed"), "the refusal of a COPY statement")
    assert not Path("/tmp/atlas-browser-leak.csv").exists()
    _shot(page, "sql-refused")
    _console_query(
        page,
        "SELECT layer, count(*) AS units, avg(best_activation) AS mean_best "
        "FROM units GROUP BY layer ORDER BY 1",
    )
    _wait_visible(page.get_by_text("2 rows"), "the query result '2 rows'")
    _wait_visible(page.locator('[data-testid="stDataFrame"]'), "the result table")
    _shot(page, "sql")
    # a ?q= link's query is the session's once: the console opened later from the menu does not bring it back
    page.goto(f"{server}/sql?q=SELECT+42+AS+linked")
    _wait_visible(page.get_by_text("1 row"), "the linked query's result")
    _console_query(page, "SELECT 3 AS three")
    nav = page.locator('[data-testid="stSidebar"]')
    nav.get_by_role("link", name="Overview", exact=True).click()
    _settle(page, "demo")
    nav.get_by_role("link", name="SQL console", exact=True).click()
    _settle(page, "SQL console")
    assert "42 AS linked" not in page.locator("textarea").first.input_value()


def test_open_pages_stay_put_while_shards_land(browser, tmp_path):
    """The sidebar's pickers name each layer and run by labels that do not change while a run is written:
    a label with the layer's written size or the run's status changed as shards landed, the browser's
    pick no longer matched it, and every open page fell back to the first layer (an overview or a console
    turned into that layer's grid, a unit page into another layer's unit)."""
    parent, done = tmp_path / "runs", tmp_path / "done"
    layers = {"fc8": 10, "conv3": 16}
    make_synthetic_run(parent / "live", layers=layers, chains=1, steps=20, max_shards=3)  # conv3: 8 of 16
    make_synthetic_run(parent / "other", layers=layers, chains=1, steps=20, seed=1)
    make_synthetic_run(done, layers=layers, chains=1, steps=20)  # what "live" holds once it is complete
    context = browser.new_context(viewport={"width": 1440, "height": 1000}, device_scale_factor=1)
    with _serving(parent, tmp_path / "streamlit.log") as url:
        pages = {"unit": context.new_page(), "overview": context.new_page()}
        pages["unit"].goto(f"{url}/unit?run=live&layer=conv3&unit=5")
        _settle(pages["unit"], "conv3 · unit 5")
        pages["overview"].goto(f"{url}/?run=live")
        _settle(pages["overview"], "live")
        shutil.rmtree(parent / "live")
        shutil.copytree(done, parent / "live")  # the rest of its shards land, and it is complete
        for name, page in pages.items():  # each page sees it (it follows a running run every 5 s)
            page.get_by_role("button", name="Refresh").click()
            done_text = page.get_by_text(re.compile(r"complete · (\d+)/\1 shards"))
            _wait_visible(done_text, f"the {name} page to see the run complete")
        _settle(pages["unit"], "conv3 · unit 5")
        _settle(pages["overview"], "live")
        assert _query(pages["unit"].url) == {"run": "live", "layer": "conv3", "unit": "5"}, pages["unit"].url
        assert urlparse(pages["overview"].url).path == "/", pages["overview"].url
    context.close()


def test_one_back_undoes_a_switch_from_the_page_menu(server, page):
    """A page picked in the sidebar's menu is one history entry: one Back returns to the page before (a
    user's trial: the menu's switch left the old page's parameters on the new page's path as an entry of
    its own, and Back first landed there, showing the same page again)."""
    page.goto(f"{server}/layer?layer=conv3&sort=rank+%E2%86%91")
    _settle(page, "Layer conv3", images=48)
    before = page.evaluate("() => history.length")
    page.locator('[data-testid="stSidebar"]').get_by_role("link", name="Audit").click()
    _wait_url(page, "**/audit?**layer=conv3**", "the audit page's URL")
    _settle(page, "Audit")
    _wait_url(page, lambda url: "sort" not in _query(url), "the audit URL without the grid's sort")
    assert page.evaluate("() => history.length") == before + 1
    page.go_back()
    _settle(page, "Layer conv3", images=48)
    _wait_url(page, "**/layer?**sort=rank**", "the grid's URL, its sort order kept, after one Back")


def test_back_from_the_grid_link_returns_to_the_unit_page_in_the_grids_order(server, page):
    """A user's trial: Back after a unit page's grid button showed the unit page without the grid's sort
    (its caption and previous/next by the grid's order gone); and the button left an in-between entry,
    so the first Back showed the grid again. The grid link is one entry, one Back undoes it."""
    page.goto(f"{server}/layer?layer=conv3&sort=rank+%E2%86%91")
    _settle(page, "Layer conv3", images=48)
    first = page.locator("a.atlas-tile-name").first
    unit = int(first.inner_text().split()[-1])
    first.click()
    _settle(page, f"conv3 · unit {unit}")
    _wait_visible(page.get_by_text("in the grid's order"), "the caption of the grid's order")
    before = page.evaluate("() => history.length")
    page.get_by_role("link", name="conv3 grid").first.click()
    _settle(page, "Layer conv3", images=48)
    _wait_url(page, "**/layer?**sort=rank**", "the grid's URL after its link")
    assert page.evaluate("() => history.length") == before + 1
    page.go_back()
    _settle(page, f"conv3 · unit {unit}")
    _wait_visible(page.get_by_text("in the grid's order"), "the grid's order on the unit page after Back")
    _wait_url(page, lambda url: _query(url).get("sort") == "rank", "the unit page's URL with the sort")


def test_back_from_a_picked_example_returns_to_the_consoles_first_one(server, page):
    """A picked example is in the URL (a user's trial reloaded one and got the first example); Back from
    it shows the console's first example again, and Forward the picked one, named as such."""
    page.goto(f"{server}/sql")
    _settle(page, "SQL console")
    _wait_until(page, "() => (document.querySelector('textarea')?.value || '').includes('FROM units')",
                "the console's first example in its box")  # fmt: skip
    first = page.locator("textarea").first.input_value()
    assert "FROM units" in first and "q" not in _query(page.url)
    page.locator('[data-testid="stMain"] [data-testid="stSelectbox"]').first.click()
    page.get_by_role("option").filter(has_text="diverged chains").first.click()
    _wait_url(page, lambda url: "FROM chains WHERE diverged" in _query(url).get("q", ""), "the example's q")
    page.go_back()
    _wait_until(page, "(s, want) => document.querySelector('textarea')?.value === want",
                "the first example's text after Back", arg=first)  # fmt: skip
    page.go_forward()
    _wait_until(page, "() => (document.querySelector('textarea')?.value || '').includes('WHERE diverged')",
                "the picked example after Forward")  # fmt: skip
    _wait_until(page, "() => document.querySelector('input[aria-label=\"Example queries\"]')?.value === "
                "'diverged chains'", "the example named in its box")  # fmt: skip
