"""A page URL of more than one segment (`/unit/extra`) was a blank page for ever: it is redirected to its
first segment, and Streamlit's own paths pass untouched (viewer.stray_paths; no server)."""

from __future__ import annotations

import asyncio

import pytest

from viewer.stray_paths import StrayPathRedirect, page_redirect

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "path, query, base, expected",
    [
        ("/unit/extra", "", "", "/unit"),
        ("/unit/extra/more/", "layer=fc8&unit=3", "", "/unit?layer=fc8&unit=3"),
        ("/a b/c", "", "", "/a%20b"),
        ("/atlas/unit/extra", "unit=3", "atlas", "/atlas/unit?unit=3"),
        ("/unit", "", "", None),  # a page
        ("/unit/", "", "", None),
        ("/", "", "", None),
        ("/unit/_stcore/health", "", "", None),  # Streamlit's own, under a page's path too
        ("/static/js/index.js", "", "", None),
        ("/unit/static/js/index.js", "", "", None),
        ("/media/abc123", "", "", None),
        ("/component/x/y", "", "", None),
        ("/unit/favicon.png", "", "", None),  # a file
        ("/atlas/unit", "", "atlas", None),  # one segment below the base
        ("/other/unit/x", "", "atlas", None),  # outside the base
    ],
)
def test_which_paths_are_redirected_where(path, query, base, expected):
    assert page_redirect(path, query, base) == expected


def test_the_middleware_answers_307_for_a_stray_path_and_passes_everything_else():
    seen, sent = [], []

    async def app(scope, receive, send):
        seen.append(scope["path"])

    async def send(message):
        sent.append(message)

    async def receive():
        return {}

    def call(**scope):
        asyncio.run(
            StrayPathRedirect(app)(
                {"type": "http", "method": "GET", "query_string": b"", **scope}, receive, send
            )
        )

    call(path="/unit/extra", query_string=b"unit=3")
    assert sent[0]["status"] == 307 and (b"location", b"/unit?unit=3") in sent[0]["headers"] and not seen
    call(path="/unit/extra", method="POST")  # not a page load
    call(path="/unit")
    call(type="websocket", path="/_stcore/stream")
    assert seen == ["/unit/extra", "/unit", "/_stcore/stream"] and len(sent) == 2
