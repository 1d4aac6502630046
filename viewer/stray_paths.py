"""A page URL with more than one path segment is redirected to its first segment.

Streamlit answers any unknown path with its ``index.html``, whose scripts load from relative URLs: under
``/unit/extra`` they resolve to ``/unit/static/...``, which is index.html again, and the browser shows a
blank page for ever (a user's trial; a stray slash or text pasted after a page's URL). Redirected to
``/unit`` (the query kept), the page loads, and a first segment that is no page gets the viewer's own "There
is no page /a" warning. Streamlit's own paths (``_stcore``, ``static``, ``media``, ...) and files pass
untouched. Pure ASGI: no Streamlit import, so it is tested without a server.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import quote

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

STREAMLIT_SEGMENTS = frozenset(
    {"static", "media", "component", "app", "auth", "~", "favicon.png", "manifest.json"}
)


def page_redirect(path: str, query: str = "", base: str = "") -> str | None:
    """Where a GET of ``path`` goes instead: ``/unit/extra`` -> ``/unit`` (``?query`` kept; under
    ``server.baseUrlPath`` ``base``, ``/base/unit/extra`` -> ``/base/unit``); None for a path of one
    segment, one of Streamlit's own (a segment starting with ``_`` or in :data:`STREAMLIT_SEGMENTS`), a
    file's (its last segment has a dot) or one outside ``base``."""
    prefix = [p for p in base.split("/") if p]
    parts = [p for p in path.split("/") if p]
    if parts[: len(prefix)] != prefix:
        return None
    parts = parts[len(prefix) :]
    if len(parts) < 2 or "." in parts[-1]:
        return None
    if any(p.startswith("_") or p in STREAMLIT_SEGMENTS for p in parts):
        return None
    page = "/".join(quote(p) for p in [*prefix, parts[0]])
    return f"/{page}" + (f"?{query}" if query else "")


class StrayPathRedirect:
    """ASGI middleware: a GET or HEAD of a page path with more than one segment (below ``base``, the
    server's ``server.baseUrlPath``) answers 307 to :func:`page_redirect`'s target; every other request
    goes to ``app``."""

    def __init__(self, app: App, base: str = "") -> None:
        self.app, self.base = app, base

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") == "http" and scope.get("method") in ("GET", "HEAD"):
            query = bytes(scope.get("query_string") or b"").decode("latin-1")
            target = page_redirect(str(scope.get("path") or ""), query, self.base)
            if target is not None:
                headers = [(b"location", target.encode("latin-1")), (b"content-length", b"0")]
                await send({"type": "http.response.start", "status": 307, "headers": headers})
                await send({"type": "http.response.body", "body": b""})
                return
        await self.app(scope, receive, send)
