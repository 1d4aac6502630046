"""Running a query on a shared DuckDB connection (each call takes a fresh cursor) and reading its cells."""

from __future__ import annotations

import base64
from typing import Any

import pandas as pd


def fetch_frame(conn: Any, sql: str, params: list[Any] | tuple[Any, ...] = ()) -> pd.DataFrame:
    cur = conn.cursor()
    try:
        return cur.execute(sql, list(params)).df()
    finally:
        cur.close()


def fetch_one(conn: Any, sql: str, params: list[Any] | tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
    cur = conn.cursor()
    try:
        return cur.execute(sql, list(params)).fetchone()
    finally:
        cur.close()


def placeholders(values: list[Any] | tuple[Any, ...]) -> str:
    """One ``?`` per value, for ``IN (...)`` with bound parameters."""
    return ", ".join("?" for _ in values)


def is_null(value: Any) -> bool:
    """A missing cell (None, NaN, NaT, pd.NA); a list or array cell is not missing."""
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def png_bytes(value: Any) -> bytes | None:
    """PNG bytes of a cell (DuckDB gives bytes or memoryview; missing or empty -> None)."""
    return bytes(value) if isinstance(value, bytes | bytearray | memoryview) and len(value) else None


PNG_DATA_URL = "data:image/png;base64,"  # what a dataframe's image column draws


def png_data_url(png: bytes | None) -> str | None:
    """A PNG as a ``data:`` URL (:data:`PNG_DATA_URL`)."""
    return None if png is None else PNG_DATA_URL + base64.b64encode(png).decode("ascii")
