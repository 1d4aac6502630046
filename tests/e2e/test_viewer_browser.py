"""The viewer in a real headless Chromium (Debian ``chromium`` driven by Playwright's Python API).

Starts ``atlas view`` (the command module's streamlit command line) on a free 127.0.0.1 port against a
synthetic run made here, loads the overview, a layer grid and a unit page (deep link), checks that images
decode (naturalWidth > 0) and charts render, and saves screenshots under ``test-artifacts/``.
A missing browser is a failure, not a skip: CI installs it (``.ci/run``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from atlas.commands.view import streamlit_command
from atlas.store.synthetic import make_synthetic_run

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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    parent = tmp_path_factory.mktemp("runs")
    make_synthetic_run(
        parent / "demo", layers={"fc8": 10, "conv3": 64}, chains=4, images_per_chain=5, real_k=6, steps=120
    )
    make_synthetic_run(
        parent / "demo-b", layers={"fc8": 10, "conv3": 64}, chains=3, methods=("ppgn_h", "dgn_am"), seed=3
    )
    port = _free_port()
    log = open(parent / "streamlit.log", "w")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(
        streamlit_command(str(parent / "demo"), port, "127.0.0.1"), stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                if resp.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            log.close()
            pytest.fail(f"streamlit did not start:\n{(parent / 'streamlit.log').read_text()[-3000:]}")
        time.sleep(0.5)
    yield url
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


def _settle(page, expect_title: str, timeout_ms: int = 45_000) -> None:
    """Wait until the script finished (title shown, no running indicator) and images are loaded."""
    page.get_by_role("heading", name=expect_title).first.wait_for(timeout=timeout_ms)
    # Streamlit streams elements while the script runs: wait until the page stops growing and every image
    # has loaded (same count of images and charts on consecutive polls)
    deadline = time.monotonic() + timeout_ms / 1000
    previous = None
    while time.monotonic() < deadline:
        state = page.evaluate(
            """() => [document.images.length,
                      Array.from(document.images).every(img => img.complete),
                      document.querySelectorAll('[data-testid="stVegaLiteChart"]').length,
                      !!document.querySelector('[data-testid="stStatusWidget"]')]"""
        )
        if state == previous and state[1] and not state[3]:
            break
        previous = state
        page.wait_for_timeout(700)
    page.wait_for_timeout(800)  # charts (vega-embed) draw asynchronously


def _image_widths(page) -> list[int]:
    return page.eval_on_selector_all(
        '[data-testid="stImage"] img, [data-testid="stMain"] img', "els => els.map(e => e.naturalWidth)"
    )


def _charts(page) -> int:
    return page.locator('[data-testid="stVegaLiteChart"] canvas, [data-testid="stVegaLiteChart"] svg').count()


def _shot(page, name: str) -> Path:
    """Screenshot of the whole page: Streamlit scrolls inside its main container, so grow the viewport."""
    path = ARTIFACTS / f"viewer-{name}.png"
    size = page.viewport_size
    height = page.evaluate(
        """() => Math.max(...Array.from(document.querySelectorAll(
              '[data-testid="stMain"], [data-testid="stAppViewContainer"], section.main'))
            .map(e => e.scrollHeight), document.body.scrollHeight)"""
    )
    page.set_viewport_size({"width": size["width"], "height": min(int(height) + 40, 8000)})
    page.wait_for_timeout(1500)  # charts re-layout to the new size
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(size)
    return path


def test_overview(server, page):
    page.goto(f"{server}/?page=overview")
    _settle(page, "demo")
    assert page.get_by_text("Distributions").count() >= 1
    assert _charts(page) >= 3, "the three distribution charts should render"
    assert _shot(page, "overview").stat().st_size > 10_000


def test_layer_grid(server, page):
    page.goto(f"{server}/?page=layer&layer=conv3")
    _settle(page, "Layer conv3")
    widths = _image_widths(page)
    assert len(widths) >= 48 and all(w > 0 for w in widths), widths
    assert page.get_by_text("page 1 of 2").count() >= 1
    _shot(page, "layer-grid")
    # paging keeps working and updates the URL
    page.get_by_role("button", name="Next").first.click()
    page.get_by_text("page 2 of 2").first.wait_for(timeout=30_000)
    page.wait_for_url("**p=2**", timeout=30_000)


def test_unit_deep_link(server, page):
    page.goto(f"{server}/?page=unit&layer=fc8&unit=7")
    _settle(page, "fc8 · unit 7")
    widths = _image_widths(page)
    # facets + 6 real images + 4 chains x 5 kept images
    assert len(widths) >= 26 and all(w > 0 for w in widths), widths
    assert _charts(page) >= 5  # four trajectories + competitors
    _shot(page, "unit")
    # the deep link survives a reload and neighbour navigation updates it
    page.reload()
    _settle(page, "fc8 · unit 7")
    page.get_by_role("button", name="unit 8").first.click()
    page.get_by_role("heading", name="fc8 · unit 8").first.wait_for(timeout=30_000)
    page.wait_for_url("**unit=8**", timeout=30_000)  # the URL is synced when the script run ends


def test_compare_and_sql(server, page):
    page.goto(f"{server}/?page=compare&layer=fc8&unit=0")
    _settle(page, "Compare")
    assert all(w > 0 for w in _image_widths(page))
    assert len(_image_widths(page)) >= 16
    _shot(page, "compare")
    page.goto(f"{server}/?page=sql")
    _settle(page, "SQL console")
    page.locator("textarea").first.fill("COPY units TO '/tmp/atlas-browser-leak.csv'")
    page.get_by_role("button", name="Run query").click()
    page.get_by_text("Query refused or failed").first.wait_for(timeout=30_000)
    assert not Path("/tmp/atlas-browser-leak.csv").exists()
    _shot(page, "sql-refused")
    page.locator("textarea").first.fill(
        "SELECT layer, count(*) AS units, avg(best_activation) AS mean_best "
        "FROM units GROUP BY layer ORDER BY 1"
    )
    page.get_by_role("button", name="Run query").click()
    page.get_by_text("2 rows").first.wait_for(timeout=30_000)
    assert page.locator('[data-testid="stDataFrame"]').count() >= 1
    _shot(page, "sql")
