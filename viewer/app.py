"""atlas viewer — Streamlit entry point.

    streamlit run viewer/app.py -- RUN_DIR        (or: atlas view RUN_DIR)

RUN_DIR is a run (holds run.json) or a directory of runs (a run picker lists them), as a local path or a
URI (``s3://bucket/atlas/demo``; credentials and endpoint from the usual ``AWS_*`` variables). The
``ATLAS_RUN_DIR`` environment variable overrides the argument (used by tests). All data is read through
``atlas.store.catalog`` (DuckDB views over the run's Parquet; sandboxed). Deep links:
``/unit?layer=fc8&unit=7`` (pages are routed by ``st.navigation``: ``/`` overview, ``/layer``, ``/unit``,
``/compare``, ``/audit``, ``/sql``; ``run`` picks a run under a parent directory; ``p`` is the layer grid's
page). The older ``?page=unit&layer=fc8&unit=7`` opens the same page.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import duckdb
import streamlit as st

# `streamlit run viewer/app.py` puts viewer/ (not the project root) on sys.path; make `viewer` importable
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from atlas.errors import AtlasError  # noqa: E402
from atlas.store.catalog import open_run  # noqa: E402
from atlas.store.location import Location, open_location  # noqa: E402
from atlas.store.manifest import MARKER_SUFFIX, RUN_FILE, SHARDS_DIR, list_runs, read_manifest  # noqa: E402
from viewer import data, state, widgets  # noqa: E402
from viewer.context import Context  # noqa: E402
from viewer.pages_impl import audit, compare, layer, overview, sql, unit  # noqa: E402

RENDERERS = {
    "overview": overview.render,
    "layer": layer.render,
    "unit": unit.render,
    "compare": compare.render,
    "audit": audit.render,
    "sql": sql.render,
}


def root_dir() -> Location | None:
    arg = os.environ.get("ATLAS_RUN_DIR") or (sys.argv[1] if len(sys.argv) > 1 else None)
    return open_location(arg) if arg else None


def run_token(run: Location) -> tuple[int, int, int]:
    """Changes whenever a shard completes or run.json is rewritten (one listing and one stat)."""
    markers = run.list_files(SHARDS_DIR, suffix=MARKER_SUFFIX)
    newest = max((m.mtime_ns or 0 for m in markers), default=0)
    try:
        info = run.fs.get_file_info(run.full(RUN_FILE))
        run_mtime = info.mtime_ns or 0
    except OSError:
        run_mtime = 0
    return len(markers), newest, run_mtime


@st.cache_resource(max_entries=8, show_spinner=False)
def _connection(uri: str, token: tuple[int, int, int]):
    # a new token (new shards) opens a new connection: a run being written shows its new units; damaged
    # shards are left out (every page says so: render_page), the rest stays browsable
    return open_run(uri, skip_damaged=True)


def connection(run: Location):
    return _connection(run.uri, run_token(run))


@st.cache_data(max_entries=64, show_spinner=False)
def _unit_ids(uri: str, token: tuple[int, int, int], layer: str) -> list[int]:
    return data.unit_ids(_connection(uri, token), layer)


@st.cache_data(max_entries=16, show_spinner=False)
def _run_manifest(uri: str, token: tuple[int, int, int]) -> dict:
    """run.json of the run at ``uri`` ({} when it does not read), read again when a shard lands."""
    return _manifest(open_location(uri)) or {}


def _fail(message: str) -> NoReturn:
    st.error(message)
    st.stop()


def open_root() -> tuple[list[Location], bool]:
    """The runs of the directory given (itself when it is a run) and whether it holds several."""
    try:
        root = root_dir()
        if root is None:
            _fail("No run given. Start the viewer with `atlas view RUN_DIR`.")
        if not root.is_dir():
            _fail(f"Run `{root}` does not exist.")
        multi_run = not root.is_file(RUN_FILE)
    except AtlasError as exc:
        _fail(str(exc))
    runs = list_runs(root) if multi_run else [root]
    if not runs:
        _fail(f"`{root}` holds no atlas run (no run.json in it or in its subdirectories).")
    return runs, multi_run


def _manifest(run: Location) -> dict | None:
    try:
        return read_manifest(run)
    except AtlasError:
        return None


def pick_run(runs: list[Location], multi_run: bool) -> Location:
    """The run shown: the only one, or the one chosen in the sidebar's run picker.

    The sidebar's pickers (runs here, layers in :func:`sidebar`) show each option by its name alone, a
    label that never changes while the viewer is open: the browser keeps a selectbox's pick by its label,
    so a label that changed as shards landed (a layer's written size, a run's status) no longer matched,
    the pick fell back to the first option, and every open page switched to the first layer or run on its
    own. What the labels said is in the pickers' help."""
    if not multi_run:
        return runs[0]
    names = [r.name for r in runs]
    manifests = [_manifest(r) for r in runs]
    statuses = {r.name: run_status(m) for r, m in zip(runs, manifests, strict=True)}
    if state.get("run") not in names:
        first = names[data.default_run(manifests)]  # the newest complete run
        if state.get("run"):  # a link to a run this folder does not hold (renamed, another machine's)
            state.notice(f"Run {state.get('run')!r} is not in this folder; showing {first} instead.")
        state.set_("run", first)
    with st.sidebar:  # options by name alone (the docstring)
        st.selectbox("Run", names, key=state.bind_widget("run"), on_change=state.from_widget, args=("run",),
                     help="; ".join(f"{name}: {status}" for name, status in statuses.items()))  # fmt: skip
    return runs[names.index(state.get("run"))]


def run_status(manifest: dict | None) -> str:
    """A run's status for the picker: run.json's (complete, interrupted, running, incomplete), or
    "damaged" when it does not read."""
    if manifest is None:
        return "damaged"
    status = manifest.get("status")
    return status if isinstance(status, str) and status else "unknown"


def open_context(run_dir: Location, multi_run: bool) -> Context:
    """Connection, run info and layers of ``run_dir`` (a bad run stops the script with its error)."""
    try:
        conn = connection(run_dir)
        info = data.run_info(conn)
        layer_list = data.layers(conn, info.get("config"))
        composites = data.composite_counts(conn)
    except AtlasError as exc:
        _fail(str(exc))
    ctx = Context(
        conn=conn,
        run_dir=run_dir,
        info=info,
        layers=layer_list,
        siblings=[r for r in list_runs(run_dir.parent) if r != run_dir],
        open_other=connection,
        multi_run=multi_run,
        unit_ids=lambda name: _unit_ids(run_dir.uri, run_token(run_dir), name),
        manifest=_run_manifest(run_dir.uri, run_token(run_dir)),
        composites=composites,
    )
    names = ctx.layer_names
    asked = state.get("layer")
    if names and asked not in names and asked not in ctx.unwritten_layers:  # a planned one: "not written yet"
        if asked is not None:  # a stale or mistyped link
            state.notice(f"Layer {asked!r} is not in this run; showing {names[0]} instead.")
        state.set_("layer", names[0])
    return ctx


def sidebar(ctx: Context, multi_run: bool) -> None:
    """The page menu, layer picker, run status and the Refresh button."""
    with st.sidebar:
        page_menu(ctx.pages, multi_run)
        if ctx.layers:
            unwritten = ctx.unwritten_layers
            sizes = "; ".join(
                f"{name}: {'not written yet' if name in unwritten else ctx.size_text(name)}"
                for name in [*ctx.layer_names, *unwritten]
            )
            st.selectbox(  # options by name alone (pick_run's docstring); their sizes in the help
                "Layer",
                [*ctx.layer_names, *unwritten],
                key=state.bind_widget("layer"),
                on_change=state.layer_from_sidebar,
                help="the layer of the Layer grid, Unit, Compare and Audit pages; picked on the overview or "
                f"the SQL console, it opens that layer's grid. {sizes}",
            )
        st.divider()
        status = ctx.info.get("status") or "unknown"
        done, planned = ctx.info.get("shards_done"), ctx.info.get("planned_shards")
        shards = f"{done}/{planned} shards" if planned else f"{done} shards"
        st.caption(f"**{ctx.run_dir.name}** · {status} · {shards}")
        st.button("Refresh", icon=":material/refresh:", help="re-read the run (new shards appear)")


def page_menu(pages: dict[str, st.Page], multi_run: bool) -> None:
    """A link per page, carrying the query parameters that page will show (:func:`state.link_params`), so
    a switch is one history entry and one Back undoes it. st.navigation's own menu switched with the old
    page's parameters and the page then wrote its own: two entries, and Back first showed the same page
    again (a user's trial)."""
    for name, page in pages.items():
        st.page_link(page, query_params=state.link_params(name, multi_run), width="stretch")
    st.divider()


def render_page(name: str, ctx: Context) -> None:
    """Draw page ``name``; a run that cannot be read shows one error line instead."""
    said = state.take_notice()
    if said:
        st.warning(said, icon=":material/link_off:")
    if ctx.conn.damage:
        layer = state.get("layer") if name in LAYER_PAGES else None  # that layer's damage named first
        st.warning(
            data.damaged_note(ctx.conn.damage, ctx.run_dir.uri, layer=layer), icon=":material/broken_image:"
        )
    try:
        if not ctx.layers and name != "sql":
            overview.render_empty(ctx)
        elif name in LAYER_PAGES and state.get("layer") in ctx.unwritten_layers:
            not_written(ctx, state.get("layer"))
        else:
            RENDERERS[name](ctx)
    except (AtlasError, duckdb.Error) as exc:  # e.g. a shard file damaged after its marker was written
        st.error(data.cannot_read(exc, ctx.run_dir.uri), icon=":material/error:")


LAYER_PAGES = ("layer", "unit", "compare", "audit")  # pages about the sidebar's layer


def not_written(ctx: Context, layer: str) -> None:
    """A layer run.json plans but no completed shard holds yet: said, and the link kept."""
    st.title(f"Layer {layer}")
    status = ctx.info.get("status")
    when = (
        "this page fills in when its first shard lands (checked every 5 s; **Refresh** checks now)"
        if status == "running"
        else f"the run is {status or 'not finished'}: the same `atlas run` resumes it and writes this layer"
    )
    st.info(
        f"Layer {layer} is not written yet: the run plans it, but none of its shards has completed; {when}. "
        f"Written so far: {', '.join(ctx.layer_names)}.",
        icon=":material/hourglass_empty:",
    )


def make_pages(draw: Callable[[str], None]) -> dict[str, st.Page]:
    """One st.Page per viewer page, routed by url_path (the overview at the root URL); ``draw(name)``
    draws page ``name``."""
    return {
        name: st.Page(
            lambda name=name: draw(name),
            title=title,
            icon=state.PAGE_ICONS[name],
            url_path=state.url_path(name) or name,
            default=name == state.DEFAULT_PAGE,
        )
        for name, title in state.PAGES.items()
    }


def page_name(pages: dict[str, st.Page], current: st.Page) -> str:
    """The viewer's name of page ``current`` (what st.navigation runs: the page the browser asked for)."""
    return next(name for name, page in pages.items() if page.url_path == current.url_path)


def route(pages: dict[str, st.Page], here: str, multi_run: bool) -> None:
    """Stay on page ``here``, or switch first when a callback (the sidebar's layer picker on a page about
    every layer) or a ``?page=`` link asked for another."""
    wanted = state.take_pending()
    if wanted is not None and wanted != here:
        state.set_("page", wanted)
        params = state.params_for(wanted, multi_run)
        st.session_state["nav_synced"] = params  # the URL switch_page writes is ours, not a history step
        st.switch_page(pages[wanted], query_params=params)
    state.set_("page", here)


def main() -> None:
    st.set_page_config(page_title="atlas viewer", page_icon="🗺️", layout="wide")
    widgets.inject_css()
    state.init_from_query_params()
    state.keep_widget_state()
    pages = make_pages(lambda name: render_page(name, ctx))  # ctx: opened below, before a page is drawn
    current = st.navigation(list(pages.values()), position="hidden")  # the menu: page_menu's links
    here = page_name(pages, current)
    state.follow_history(here)  # Back / Forward, or a link from another page: the URL's state
    runs, multi_run = open_root()
    run_dir = pick_run(runs, multi_run)
    ctx = open_context(run_dir, multi_run)
    ctx.pages = pages
    route(pages, here, multi_run)
    sidebar(ctx, multi_run)
    current.run()
    state.sync_query_params(multi_run)
    if ctx.info.get("status") == "running":
        _follow(run_dir, run_token(run_dir))


def _follow(run: Location, token: tuple[int, int, int]) -> None:
    """While the run is being written, look for new shards every few seconds and redraw when one lands."""

    @st.fragment(run_every=5)
    def follow_run() -> None:
        if run_token(run) != token:
            st.rerun()

    follow_run()


main()
