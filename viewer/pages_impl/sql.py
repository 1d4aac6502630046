"""SQL console: read-only DuckDB over the run.

Each query runs on its own private sandboxed connection (``atlas.store.catalog.query_run``), never on
the connection the pages share: no statement, however wrapped, can change what another session sees.
Plus the statement check, a timeout and a row cap."""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from atlas.errors import AtlasError
from atlas.store.catalog import query_run
from viewer import data, state
from viewer.context import Context

MAX_ROWS = 5_000
TIMEOUT_S = 10.0


def _load_example() -> None:
    name = st.session_state.get("sql_example")
    template = data.EXAMPLE_QUERIES.get(name)
    if template:
        layer = state.get("layer") or "fc8"
        unit = state.get("unit") if state.get("unit") is not None else 0
        st.session_state["sql_text"] = template.format(layer=layer, unit=unit)


def _display(value):
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(bytes(value))} bytes>"
    return value


def render(ctx: Context) -> None:
    st.title("SQL console")
    st.caption(
        "Read-only DuckDB over this run. Views: `units`, `chains`, `images`, `steps`, `activations` "
        "(each with a `layer` column); tables `run`, `shards`, `files`. "
        f"One statement at a time · results capped at {MAX_ROWS:,} rows · {TIMEOUT_S:g} s limit."
    )
    if "sql_text" not in st.session_state:
        st.session_state["sql_example"] = "mean activation per layer"
        _load_example()
    st.selectbox("Example queries", list(data.EXAMPLE_QUERIES), key="sql_example", on_change=_load_example)
    sql = st.text_area("Query", key="sql_text", height=160)
    run = st.button("Run query", type="primary", icon=":material/play_arrow:", key="sql_run")

    if run or "sql_result" not in st.session_state:
        start = time.perf_counter()
        try:
            columns, rows, truncated = query_run(ctx.run_dir, sql, max_rows=MAX_ROWS, timeout_s=TIMEOUT_S)
            st.session_state["sql_result"] = (
                "ok",
                sql,
                columns,
                rows,
                truncated,
                time.perf_counter() - start,
            )
        except AtlasError as exc:
            st.session_state["sql_result"] = ("error", sql, str(exc))
    result = st.session_state["sql_result"]
    if result[0] == "error":
        st.error(f"**Query refused or failed:** {result[2]}", icon=":material/error:")
    else:
        _, ran_sql, columns, rows, truncated, seconds = result
        frame = pd.DataFrame([[_display(v) for v in r] for r in rows], columns=columns)
        note = f"{len(rows):,} row{'s' if len(rows) != 1 else ''} · {seconds * 1000:.0f} ms"
        if truncated:
            st.warning(f"Result truncated to the first {MAX_ROWS:,} rows.")
        st.caption(note)
        st.dataframe(frame, hide_index=True)

    with st.expander("Schema", icon=":material/schema:"):
        for table in ("units", "chains", "images", "steps", "activations", "run", "shards", "files"):
            cols = ctx.conn.cursor().execute(f"DESCRIBE {table}").fetchall()
            st.markdown(f"**{table}**: " + ", ".join(f"`{c[0]}` {c[1].lower()}" for c in cols))
