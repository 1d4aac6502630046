"""The exported atlas's ``index.html``: one static page that opens from the folder in any browser (no server,
no script, no file from the network): per layer its contact sheets and a grid of its units, each picture a
link to the full-size PNG beside it."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from urllib.parse import quote

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #222; }
h1 { font-size: 1.5rem; margin: 0 0 .2rem; } h2 { font-size: 1.15rem; margin: 2rem 0 .3rem; }
.meta, .note { color: #666; } .meta code { color: #333; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(132px, 1fr)); gap: 10px; }
figure { margin: 0; } figure img { width: 100%; aspect-ratio: 1; object-fit: contain; background: #eee;
  image-rendering: pixelated; display: block; }
figcaption { font-size: 12px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
figcaption .sub { color: #777; } .failed { color: #b00; }
.empty { aspect-ratio: 1; background: #f1f1f1; color: #999; display: flex; align-items: center;
  justify-content: center; font-size: 12px; }
nav a { margin-right: .8rem; }
"""


@dataclass(frozen=True)
class SiteTile:
    href: str | None  # the unit's PNG, relative to index.html; None: the unit has no picture
    title: str  # "unit 7", "unit 10 · 3 + 5"
    lines: tuple[str, ...] = ()  # further caption lines (its activation, its label)
    failed: bool = False


@dataclass(frozen=True)
class SiteLayer:
    name: str
    anchor: str  # the section's id (the layer's folder name)
    summary: str  # "10 units · best pictures"
    sheets: tuple[str, ...] = ()  # contact sheets, relative to index.html
    tiles: tuple[SiteTile, ...] = field(default_factory=tuple)


def _href(path: str) -> str:
    return html.escape(quote(path), quote=True)


def _tile(t: SiteTile) -> str:
    title = html.escape(t.title)
    if t.href is not None:
        picture = f"<a href='{_href(t.href)}'><img src='{_href(t.href)}' alt='{title}' loading='lazy'></a>"
    else:
        picture = f"<div class='empty'>{'failed' if t.failed else 'no image'}</div>"
    lines = "".join(
        f"<br><span class='{'failed' if t.failed else 'sub'}' title='{html.escape(x, quote=True)}'>"
        f"{html.escape(x)}</span>"
        for x in t.lines
    )
    return f"<figure>{picture}<figcaption title='{title}'>{title}{lines}</figcaption></figure>"


def index_html(title: str, meta: list[str], layers: list[SiteLayer]) -> str:
    """The page: ``title``, ``meta`` lines (the run, when, what was exported), a link per layer, then each
    layer's sheets and tiles."""
    nav = " ".join(
        f"<a href='#{html.escape(x.anchor, quote=True)}'>{html.escape(x.name)}</a>" for x in layers
    )
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>{html.escape(title)}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        *(f"<div class='meta'>{html.escape(line)}</div>" for line in meta),
        f"<nav>{nav}</nav>",
    ]
    for layer in layers:
        sheets = " · ".join(
            f"<a href='{_href(s)}'>{html.escape(s.rsplit('/', 1)[-1])}</a>" for s in layer.sheets
        )
        parts += [
            f"<h2 id='{html.escape(layer.anchor, quote=True)}'>{html.escape(layer.name)}</h2>",
            f"<div class='note'>{html.escape(layer.summary)}"
            f"{' · contact sheets: ' + sheets if sheets else ''}</div>",
            "<div class='grid'>",
            *(_tile(t) for t in layer.tiles),
            "</div>",
        ]
    parts.append("</body></html>\n")
    return "\n".join(parts)
