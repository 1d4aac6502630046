"""atlas viewer — Streamlit entry point.

    streamlit run viewer/app.py -- RUN_DIR        (or: atlas view RUN_DIR)

RUN_DIR is a run (holds run.json) or a directory of runs (a run picker lists them), as a local path or a
URI (``s3://bucket/atlas/demo``; credentials and endpoint from the usual ``AWS_*`` variables). The
``ATLAS_RUN_DIR`` environment variable overrides the argument (used by tests). All data is read through
``atlas.store.catalog`` (DuckDB views over the run's Parquet; sandboxed). Deep links:
``?page=unit&layer=fc8&unit=7`` (``page`` in overview | layer | unit | compare | sql; ``run`` picks a run
under a parent directory; ``p`` is the layer grid's page).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import duckdb
import streamlit as st

# `streamlit run viewer/app.py` puts viewer/ (not the project root) on sys.path; make `viewer` importable
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from atlas.errors import AtlasError  # noqa: E402
from atlas.store.catalog import open_run  # noqa: E402
from atlas.store.location import Location, open_location  # noqa: E402
from atlas.store.manifest import MARKER_SUFFIX, RUN_FILE, SHARDS_DIR, list_runs  # noqa: E402
from viewer import data, state, widgets  # noqa: E402
from viewer.context import Context  # noqa: E402
from viewer.pages_impl import compare, layer, overview, sql, unit  # noqa: E402

RENDERERS = {
    "overview": overview.render,
    "layer": layer.render,
    "unit": unit.render,
    "compare": compare.render,
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
    # a new token (new shards) opens a new connection: a run being written shows its new units
    return open_run(uri)


def connection(run: Location):
    return _connection(run.uri, run_token(run))


@st.cache_data(max_entries=64, show_spinner=False)
def _unit_ids(uri: str, token: tuple[int, int, int], layer: str) -> list[int]:
    return data.unit_ids(_connection(uri, token), layer)


def main() -> None:
    st.set_page_config(page_title="atlas viewer", page_icon=":material/map:", layout="wide")
    widgets.inject_css()
    state.init_from_query_params()

    try:
        root = root_dir()
        if root is None:
            st.error("No run given. Start the viewer with `atlas view RUN_DIR`.")
            st.stop()
        if not root.is_dir():
            st.error(f"Run `{root}` does not exist.")
            st.stop()
        multi_run = not root.is_file(RUN_FILE)
    except AtlasError as exc:
        st.error(str(exc))
        st.stop()
    runs = [root] if not multi_run else list_runs(root)
    if not runs:
        st.error(f"`{root}` holds no atlas run (no run.json in it or in its subdirectories).")
        st.stop()
    names = [r.name for r in runs]

    with st.sidebar:
        st.markdown("## :material/map: atlas")
        if multi_run:
            if state.get("run") not in names:
                state.set_("run", names[-1])
            st.selectbox(
                "Run", names, key=state.bind_widget("run"), on_change=state.from_widget, args=("run",)
            )
        run_dir = runs[names.index(state.get("run"))] if multi_run else root

    try:
        conn = connection(run_dir)
        info = data.run_info(conn)
        layer_list = data.layers(conn, info.get("config"))
    except AtlasError as exc:
        st.error(str(exc))
        st.stop()

    layer_names = [name for name, _ in layer_list]
    if layer_names and state.get("layer") not in layer_names:
        state.set_("layer", layer_names[0])

    with st.sidebar:
        st.radio(
            "Page",
            list(state.PAGES),
            format_func=lambda p: f"{state.PAGE_ICONS[p]} {state.PAGES[p]}",
            key=state.bind_widget("page"),
            on_change=state.from_widget,
            args=("page",),
        )
        if layer_names:
            sizes = dict(layer_list)
            st.selectbox(
                "Layer",
                layer_names,
                format_func=lambda name: f"{name}  ·  {sizes[name]:,} units",
                key=state.bind_widget("layer"),
                on_change=state.from_widget,
                args=("layer",),
            )
        st.divider()
        status = info.get("status") or "unknown"
        done, planned = info.get("shards_done"), info.get("planned_shards")
        st.caption(
            f"**{run_dir.name}** · {status}"
            + (f" · {done}/{planned} shards" if planned else f" · {done} shards")
        )
        st.button("Refresh", icon=":material/refresh:", help="re-read the run (new shards appear)")

    siblings = [r for r in list_runs(run_dir.parent) if r != run_dir]
    ctx = Context(
        conn=conn,
        run_dir=run_dir,
        info=info,
        layers=layer_list,
        siblings=siblings,
        open_other=connection,
        multi_run=multi_run,
        unit_ids=lambda name: _unit_ids(run_dir.uri, run_token(run_dir), name),
    )
    page = state.get("page")
    try:
        if not layer_names and page != "sql":
            overview.render_empty(ctx)
        else:
            RENDERERS[page](ctx)
    except (AtlasError, duckdb.Error) as exc:  # e.g. a shard file damaged after its marker was written
        first = next((ln for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
        st.error(
            f"Cannot read this run: {first}. `atlas verify {run_dir.uri}` names bad shards; "
            "`--repair` has them redone by the next `atlas run`.",
            icon=":material/error:",
        )
    state.sync_query_params(multi_run)
    if info.get("status") == "running":
        _follow(run_dir, run_token(run_dir))


def _follow(run: Location, token: tuple[int, int, int]) -> None:
    """While the run is being written, look for new shards every few seconds and redraw when one lands."""

    @st.fragment(run_every=5)
    def follow_run() -> None:
        if run_token(run) != token:
            st.rerun()

    follow_run()


main()
