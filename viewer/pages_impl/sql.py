"""SQL console: read-only DuckDB over the run.

Each query runs on its own private sandboxed connection (``atlas.store.queries.query_run``), never on
the connection the pages share: no statement, however wrapped, can change what another session sees.
Plus the statement check, a timeout and a row cap."""

from __future__ import annotations

import shlex
from typing import Any

import pandas as pd
import streamlit as st

from viewer import data, state
from viewer.context import Context

MAX_ROWS = 5_000
DOWNLOAD_ROWS = 1_000_000  # a truncated result's CSV download (made when clicked)
DOWNLOAD_TIMEOUT_S = 120.0
TIMEOUT_S = 10.0
OWN = state.OWN_QUERY  # the example box once the text is the user's own (also what a ?q= link opens)


def _load_example() -> None:
    """The example picked into the box; "your query" brings back the user's own text (a user's trial lost
    it to an example, with no way back but the browser's Back)."""
    name = st.session_state.get("sql_example")
    example = state.example_text(name)
    if name == OWN and st.session_state.get("sql_own_text"):
        st.session_state["sql_text"] = st.session_state["sql_own_text"]
    elif example:
        st.session_state["sql_text"] = example


def _own_text() -> None:
    """The text was edited: it is the user's own query now (and goes into the URL as ?q=), kept apart so
    that picking "your query" after an example brings it back."""
    st.session_state["sql_example"] = OWN
    st.session_state["sql_own_text"] = st.session_state.get("sql_text")


def unit_links(frame: pd.DataFrame, run: str | None = None) -> list[str | None] | None:
    """Each row's unit page (``unit?layer=..&unit=..``) when the result has ``layer`` and ``unit``
    columns (None for a row without both); None when it has not."""
    if not {"layer", "unit"} <= set(map(str, frame.columns)):
        return None

    def one(layer: Any, unit: Any) -> str | None:
        try:
            return state.link("unit", layer, int(unit), run) if isinstance(layer, str) else None
        except (TypeError, ValueError):  # a NULL or non-numeric unit
            return None

    return [one(layer, unit) for layer, unit in zip(frame["layer"], frame["unit"], strict=True)]


def _all_rows_csv(run_dir: Any, sql: str) -> str:
    """The whole result of ``sql`` (up to :data:`DOWNLOAD_ROWS`) as CSV, for the truncated result's download
    (run only when clicked); a failure is the file's one line."""
    result = data.console_query(run_dir, sql, DOWNLOAD_ROWS, DOWNLOAD_TIMEOUT_S)
    if result.error is not None:
        return f"error\n{result.error!r}\n"
    return result.frame.to_csv(index=False)


def _result(result: data.ConsoleResult, run: str | None, run_dir: Any = None) -> None:
    """The result table: PNG columns drawn as pictures, and a link to each row's unit page when the
    result has ``layer`` and ``unit`` columns; a truncated one offers all its rows as CSV."""
    if result.error is not None:
        st.error(f"**Query refused or failed:** {result.error}", icon=":material/error:")
        return
    frame = result.frame
    n = len(frame)
    if result.truncated:
        run_uri = getattr(run_dir, "uri", "RUN")
        st.warning(
            f"Result truncated to the first {MAX_ROWS:,} rows; the download below has up to "
            f"{DOWNLOAD_ROWS:,} of them, and this command streams every row:"
        )
        st.code(f"atlas sql {shlex.quote(run_uri)} {shlex.quote(result.sql)} --format csv > result.csv",
                language="bash")  # fmt: skip
        if run_dir is not None:
            every = f"Download all rows (CSV, up to {DOWNLOAD_ROWS:,})"
            st.download_button(every, lambda: _all_rows_csv(run_dir, result.sql), file_name="atlas-query.csv",
                               mime="text/csv", icon=":material/download:", key="sql_download")  # fmt: skip
    pictures = data.picture_columns(frame)
    config: dict = {c: st.column_config.ImageColumn(c, width=PICTURE_ROW_PX + 8) for c in pictures}
    links = unit_links(frame, run)
    if links is not None and "unit page" not in frame.columns:
        frame = frame.assign(**{"unit page": links})
        config["unit page"] = st.column_config.LinkColumn("unit page", display_text="open", width="small")
    blobs = n > data.PICTURE_ROWS and any(frame[c].astype(str).str.endswith(" bytes>").any() for c in frame)
    more = f" · pictures are drawn for results up to {data.PICTURE_ROWS} rows" if blobs else ""
    took = f"{result.seconds * 1000:.0f} ms with opening the run (a sandboxed connection per query)"
    st.caption(f"{n:,} row{'s' if n != 1 else ''} · {took}{more}")
    row, rows = (PICTURE_ROW_PX, PICTURE_ROWS_SHOWN) if pictures else (35, SHOWN_ROWS)  # 35: Streamlit's
    height = 38 + row * min(n, rows) + 3  # header, rows, border: a short result whole, never 7.5 rows
    st.dataframe(frame, hide_index=True, column_config=config, row_height=row, height=height)


SHOWN_ROWS = 12  # rows the result table shows before it scrolls
PICTURE_ROW_PX = 96  # a result with pictures: rows high enough to see them (~90 px)
PICTURE_ROWS_SHOWN = 8  # ... and as many rows as fit a 900 px screen under the query box


def render(ctx: Context) -> None:
    st.title("SQL console")
    st.caption(
        "Read-only DuckDB over this run. Views: `units`, `chains`, `images`, `steps`, `activations` "
        "(each with a `layer` column); tables `run`, `shards`, `files`. "
        f"One statement at a time · results capped at {MAX_ROWS:,} rows · {TIMEOUT_S:g} s limit."
    )
    examples = [OWN, *data.example_names(data.truth(ctx.conn))]
    if "sql_text" not in st.session_state:
        state.console_from_url(st.session_state.pop("nav_sql", None))  # the first URL's ?q=, used once
    if st.session_state.get("sql_example") not in examples:  # an example this run cannot run: the text's own
        st.session_state["sql_example"] = OWN
        st.session_state["sql_own_text"] = st.session_state.get("sql_text")
    st.selectbox("Example queries", examples, key="sql_example", on_change=_load_example)
    sql = st.text_area("Query", key="sql_text", height=160, on_change=_own_text)
    run = st.button("Run query", type="primary", icon=":material/play_arrow:", key="sql_run",
                    help="or Ctrl+Enter in the box; a new example runs when picked")  # fmt: skip
    shown = st.session_state.get("sql_result")
    stale = shown is None or (shown.sql, shown.run) != (sql, str(ctx.run_dir))
    if run or stale:  # the result on screen is always of the text in the box, on the run shown
        with st.spinner("Running the query ...", show_time=True):
            st.session_state["sql_result"] = data.console_query(ctx.run_dir, sql, MAX_ROWS, TIMEOUT_S)
    _result(st.session_state["sql_result"], ctx.run_dir.name if ctx.multi_run else None, ctx.run_dir)
    with st.expander("Schema", icon=":material/schema:"):
        for table, cols in data.schema(ctx.conn).items():
            st.markdown(f"**{table}**: " + ", ".join(f"`{name}` {kind}" for name, kind in cols))
