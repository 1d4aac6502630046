"""A user's SQL on a run connection (:func:`atlas.store.catalog.open_run`): exactly one read-only
statement, a timeout, a row cap and DuckDB's error on one line.

Usage::

    from atlas.store.queries import query_run, run_query
    columns, rows, truncated = query_run("runs/demo", "SELECT layer, count(*) FROM units GROUP BY layer")

The connection's sandbox (the catalog's) is what makes a query harmless; the statement check here is a
first line of defence and gives the clear messages (``the SQL console is read-only: ...``).
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import duckdb

from atlas.errors import AtlasError, first_line
from atlas.store.catalog import RUN_TABLES, open_run
from atlas.store.location import Location

# statement types the console runs; DESCRIBE / SHOW / SUMMARIZE / FROM-first parse as SELECT
READ_ONLY_STATEMENTS = frozenset({"SELECT", "EXPLAIN"})

_EXPLAIN_OPTION = r"(?:ANALY[SZ]E|FORMAT\s+\w+)"
_EXPLAIN_PREFIX = re.compile(
    rf"(?is)EXPLAIN\b|ANALY[SZ]E\b|\(\s*{_EXPLAIN_OPTION}(?:\s*,\s*{_EXPLAIN_OPTION})*\s*\)"
)


def _without_leading_comments(sql: str) -> str:
    text = sql.lstrip()
    while text.startswith(("--", "/*")):
        end = text.find("\n") if text.startswith("--") else text.find("*/")
        text = "" if end < 0 else text[end + (1 if text.startswith("--") else 2) :].lstrip()
    return text


def _explained(sql: str) -> str:
    """The statement an ``EXPLAIN [ANALYZE] [(options)]`` explains (comments between the words skipped;
    a parenthesis counts as options only when it holds option words, else it is the query's)."""
    text = _without_leading_comments(sql)
    while (head := _EXPLAIN_PREFIX.match(text)) is not None:
        text = _without_leading_comments(text[head.end() :])
    return text


_DOLLAR_QUOTE = re.compile(r"\$(?:[A-Za-z_]\w*)?\$")  # $$...$$ or $tag$...$tag$ ($1 is a parameter)
_NAME_CHAR = re.compile(r"[\w$]")  # a $ after one is part of a name (a$b$c), no dollar quote
_E_PREFIX = re.compile(r"(?:^|[^\w$])[eE]$")  # the E of an E'...' string, whose backslashes escape


def _comment_end(text: str, i: int) -> int:
    """The index after the comment opening at text[i] (-1: still open), or i when none opens there."""
    if text.startswith("--", i):
        end = text.find("\n", i)
        return len(text) if end < 0 else end + 1
    if text.startswith("/*", i):  # DuckDB nests them: /* a /* b */ c */ is one comment
        depth, j = 1, i + 2
        while depth:
            opens, closes = text.find("/*", j), text.find("*/", j)
            if closes < 0:
                return -1
            if 0 <= opens < closes:
                depth, j = depth + 1, opens + 2
            else:
                depth, j = depth - 1, closes + 2
        return j
    return i


def _literal_end(text: str, i: int) -> int:
    """The index after the string, quoted name or $$ string opening at text[i] (-1: still open), or i
    when none opens there."""
    c = text[i]
    if c == "$":
        tag = _DOLLAR_QUOTE.match(text, i) if i == 0 or not _NAME_CHAR.match(text[i - 1]) else None
        end = -1 if tag is None else text.find(tag.group(), tag.end())
        return i if tag is None else -1 if end < 0 else end + len(tag.group())
    if c not in "'\"":
        return i
    escapes = c == "'" and _E_PREFIX.search(text, max(i - 2, 0), i) is not None  # E'it\'s'
    j = i + 1
    while j < len(text):
        if escapes and text[j] == "\\":
            j += 2
        elif text[j] != c:
            j += 1
        elif text.startswith(c, j + 1):  # '' (or "") stands for one
            j += 2
        else:
            return j + 1
    return -1


def script_state(text: str) -> tuple[bool, bool]:
    """(holds SQL, ends a statement) for the text typed so far: whether anything outside comments is there,
    and whether its last token outside quotes and comments is ``;``. A ``;`` at a line's end inside a
    string or a ``/* */`` comment, or one followed by ``-- a comment``, is read as DuckDB's parser reads it
    (a trial's script ending in a comment line failed on an "empty query")."""
    i = 0
    code = ended = False
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        after = _comment_end(text, i)
        if after != i:
            if after < 0:
                return code, False
            i = after
            continue
        code, after = True, _literal_end(text, i)
        if after < 0:
            return True, False
        ended, i = after == i and text[i] == ";", max(after, i + 1)
    return code, ended


def split_statements(sql: str) -> list[str]:
    """The statements of a script line such as ``SELECT 1; SELECT 2;``, each as its own text (quotes and
    comments respected by DuckDB's parser); the text as it is when it does not parse (its error follows)."""
    try:
        return [s.query for s in duckdb.extract_statements(sql)] or [sql]
    except (duckdb.Error, TypeError, UnicodeError):
        return [sql]


def check_read_only(sql: str) -> None:
    """Raise :class:`AtlasError` unless ``sql`` is exactly one read-only statement."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise AtlasError(first_line(exc)) from exc
    except (TypeError, UnicodeError):  # text with undecodable bytes (surrogate escapes)
        raise AtlasError("the query holds bytes that are not UTF-8 text; write it in UTF-8") from None
    if not statements:
        raise AtlasError("empty query; write one statement, e.g. SELECT * FROM units LIMIT 5")
    if len(statements) > 1:
        raise AtlasError(f"one statement at a time please ({len(statements)} given)")
    kind = statements[0].type.name
    if kind == "EXPLAIN":  # EXPLAIN ANALYZE runs its statement: that one must be read-only too
        inner = _explained(statements[0].query)
        if not inner.strip():
            raise AtlasError("the SQL console could not tell what this EXPLAIN explains; EXPLAIN a SELECT")
        check_read_only(inner)
        return
    if kind == "MULTI" and re.search(r"(?i)\b(UN)?PIVOT\b", sql):  # leading, or in a subquery
        raise AtlasError(
            "a PIVOT without its IN list first creates a type from the data (a write); name the values, "
            "e.g. PIVOT units ON layer IN ('fc8', 'fc7') USING count(*), or use GROUP BY"
        )
    if kind not in READ_ONLY_STATEMENTS:  # named by its own first word: DuckDB files USE under SET, ...
        word = re.match(r"\s*([A-Za-z]+)", statements[0].query or "")
        shown = word.group(1).upper() if word else kind
        if shown in ("WITH", "FROM"):  # WITH x AS (...) DELETE ...: the statement's own kind
            shown = kind
        raise AtlasError(
            f"the SQL console is read-only: {shown} statements are refused "
            "(use SELECT, WITH, FROM, DESCRIBE, SHOW, SUMMARIZE or EXPLAIN)"
        )


_HINTS = ("Did you mean", "Candidate bindings")  # the lines of DuckDB's messages that help a user fix a query


def query_error(exc: BaseException) -> str:
    """DuckDB's error on one line: its first line plus its hints ("Did you mean "units"?", the candidate
    columns), and the run's tables when the one named is not among them."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    if not lines:
        return type(exc).__name__
    hints = [ln for ln in lines[1:] if ln.startswith(_HINTS)]
    unknown_table = lines[0].startswith("Catalog Error: Table with name")
    if unknown_table:  # DuckDB may suggest its own catalog's tables (pg_sequences): not the run's
        hints = [h for h in hints if not _suggests_other_than(h, RUN_TABLES)]
    text = "; ".join([lines[0], *hints])
    if "disabled by configuration" in lines[0]:  # read_csv('/etc/passwd'), read_parquet(...), ATTACH
        return (
            f"{text}; a query reads only the run's tables ({', '.join(RUN_TABLES)}), no other file: copy "
            "the run (atlas sql --format csv) to join it with your own data"
        )
    if reads_damaged_bytes(exc, lines[0]):
        said = printable(text)  # damaged bytes in the text
        return (
            f"reading the run's files failed ({said}): a shard file is probably damaged; `atlas verify "
            "--deep` on the run names it, and with --repair the same `atlas run` redoes it"
        )
    return text + (f" (the run's tables: {', '.join(RUN_TABLES)})" if unknown_table else "")


_DAMAGE_WORDS = ("out of buffer", "corrupt", "checksum", "decompress", "parquet", "thrift", "page header")


def printable(text: str) -> str:
    """``text`` with every unprintable character as '?': a damaged page's bytes quoted in DuckDB's error."""
    return "".join(c if c.isprintable() else "?" for c in text).strip()


def reads_damaged_bytes(exc: BaseException, first: str) -> bool:
    """Did the query fail reading the run's Parquet bytes rather than on its own SQL? DuckDB's Parquet
    reader raises its bare ``duckdb.Error`` ("don't know what type: ...", a Thrift decode of a damaged page
    header) or an I/O / invalid-input error that names the damage ("Out of buffer", a checksum)."""
    if type(exc) is duckdb.Error:
        return True
    if isinstance(exc, duckdb.IOException | duckdb.InvalidInputException):
        return any(word in first.lower() for word in _DAMAGE_WORDS)
    return False


def _suggests_other_than(hint: str, tables: tuple[str, ...]) -> bool:
    """A 'Did you mean "pg_sequences"?' hint naming none of ``tables`` (an internal DuckDB table)."""
    named = re.findall(r'"([^"]+)"', hint)
    return bool(named) and not any(name in tables for name in named)


def run_query(
    conn: duckdb.DuckDBPyConnection,
    sql: str,
    *,
    max_rows: int | None = 10_000,
    timeout_s: float = 10.0,
    read_only: bool = True,
) -> tuple[list[str], list[tuple[Any, ...]], bool]:
    """Run one statement with a timeout and a row cap (None: every row): ``(columns, rows, truncated)``.

    A refused, failing or timed-out query raises :class:`AtlasError` with DuckDB's one-line message.
    """
    cur, (columns, rows) = _executed(conn, sql, timeout_s, read_only, lambda c: _fetch(c, max_rows))
    cur.close()
    keep = len(rows) if max_rows is None else max_rows
    return columns, rows[:keep], len(rows) > keep


STREAM_BATCH = 10_000  # rows a streamed answer holds in Python at once


def stream_query(
    conn: duckdb.DuckDBPyConnection, sql: str, *, timeout_s: float = 10.0, read_only: bool = True
) -> tuple[list[str], Iterator[list[tuple[Any, ...]]]]:
    """Run one statement as :func:`run_query` does (the timeout covers running it) and hand its rows over
    in batches of :data:`STREAM_BATCH`: an export of every row holds one batch in Python at a time, where a
    whole answer as tuples took 0.8-1.2 GB for 230,000 image rows or 10 million integers (a user's trial).
    The batches' cursor closes when they are read to the end (or the iterator is closed)."""
    cur, _ = _executed(conn, sql, timeout_s, read_only)
    if not cur.description:
        cur.close()
        return [], iter(())
    columns = [d[0] for d in cur.description]
    json_columns = [i for i, d in enumerate(cur.description) if str(d[1]).upper() in ("JSON", "JSON[]")]

    def batches() -> Iterator[list[tuple[Any, ...]]]:
        try:
            while rows := _fetch_batch(cur):
                if json_columns:
                    rows = [
                        tuple(_as_json_text(v) if i in json_columns else v for i, v in enumerate(r))
                        for r in rows
                    ]
                yield rows
        finally:
            cur.close()

    return columns, batches()


def _fetch_batch(cur: duckdb.DuckDBPyConnection) -> list[tuple[Any, ...]]:
    """The next :data:`STREAM_BATCH` rows; an error DuckDB raises while it computes them (a cast that fails
    on row 2,920,000) is one line, as one raised when the statement starts (a reviewer's find: it printed a
    traceback and left an export half-written)."""
    try:
        return cur.fetchmany(STREAM_BATCH)
    except duckdb.Error as exc:
        raise AtlasError(query_error(exc)) from exc


def _executed(
    conn: duckdb.DuckDBPyConnection,
    sql: str,
    timeout_s: float,
    read_only: bool,
    fetch: Callable[[duckdb.DuckDBPyConnection], Any] | None = None,
) -> tuple[duckdb.DuckDBPyConnection, Any]:
    """``sql`` checked (``read_only``), run on a cursor of its own within ``timeout_s`` and, in the same
    bounded thread, ``fetch(cursor)``: (the cursor, still open, what fetch returned)."""
    if read_only:
        check_read_only(sql)
    cur = conn.cursor()
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            cur.execute(sql)
            if fetch is not None:
                outcome["result"] = fetch(cur)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            outcome["error"] = exc

    _run_bounded(work, cur, timeout_s, outcome)
    return cur, outcome.get("result")


class QueryTimeout(AtlasError):
    """A statement cancelled at its time limit; ``longer`` says how to give it more time."""

    NARROW = "narrow it (WHERE layer = ... AND unit = ..., a LIMIT)"

    def __init__(self, elapsed: float, limit: float, longer: str = "give it longer (atlas sql --timeout)"):
        self.elapsed, self.limit = elapsed, limit
        super().__init__(
            f"query cancelled after {elapsed:.1f} s (limit {limit:g} s); {self.NARROW} or {longer}"
        )


def _interrupt(done: threading.Event, cur: duckdb.DuckDBPyConnection, wait_s: float = 5.0) -> bool:
    """Interrupt ``cur``'s statement until its work is ``done`` (at most ``wait_s``; an interrupt that lands
    before DuckDB has begun the statement is lost, so it is sent again); whether the work ended."""
    deadline = time.monotonic() + wait_s
    while not done.is_set() and time.monotonic() < deadline:
        cur.interrupt()
        done.wait(0.05)
    return done.is_set()


def _run_bounded(
    work: Any, cur: duckdb.DuckDBPyConnection, timeout_s: float, outcome: dict[str, Any]
) -> None:
    """Run ``work`` (which executes on ``cur`` and puts an ``error`` in ``outcome``) in a thread for at most
    ``timeout_s``: past it, or on Ctrl-C, the statement is interrupted; its error is raised as one line."""
    done = threading.Event()  # set when work ends: Thread.is_alive() can say False after a join that a
    # signal interrupted (CPython 3.11) while the statement still runs, and closing its cursor then waited

    def run() -> None:
        try:
            work()
        finally:
            done.set()

    start = time.monotonic()
    try:
        threading.Thread(target=run, name="atlas-sql", daemon=True).start()
        done.wait(timeout_s)
    except KeyboardInterrupt:  # Ctrl-C: stop the query too, so the connection can close
        if _interrupt(done, cur):
            with contextlib.suppress(duckdb.Error):  # "connection is busy": the interrupt's own end
                cur.close()
        raise
    if not done.is_set():
        stopped = _interrupt(done, cur)
        elapsed = time.monotonic() - start
        if stopped:  # a statement still running keeps its cursor
            cur.close()
        raise QueryTimeout(elapsed, timeout_s)
    if "error" in outcome:
        cur.close()
        raise AtlasError(query_error(outcome["error"])) from outcome["error"]


class JsonText(str):
    """A value of a DuckDB ``JSON`` column: its text everywhere (a table cell, CSV), and the nested data it
    holds where the answer is JSON itself (``atlas sql --format json``), not a string of escaped JSON."""


def _fetch(cur: duckdb.DuckDBPyConnection, max_rows: int | None) -> tuple[list[str], list[tuple[Any, ...]]]:
    """(columns, rows) of an executed statement: every row, or max_rows + 1 (to tell a cut result). The
    values of JSON columns (and lists of JSON) are :class:`JsonText`."""
    if not cur.description:
        return [], []
    columns = [d[0] for d in cur.description]
    rows = cur.fetchall() if max_rows is None else cur.fetchmany(max_rows + 1)
    json_columns = [i for i, d in enumerate(cur.description) if str(d[1]).upper() in ("JSON", "JSON[]")]
    if json_columns:
        rows = [tuple(_as_json_text(v) if i in json_columns else v for i, v in enumerate(r)) for r in rows]
    return columns, rows


def _as_json_text(value: Any) -> Any:
    if isinstance(value, list):
        return [_as_json_text(v) for v in value]
    return JsonText(value) if isinstance(value, str) else value


def query_run(
    run: str | os.PathLike[str] | Location,
    sql: str,
    *,
    max_rows: int = 10_000,
    timeout_s: float = 10.0,
    skip_damaged: bool = False,
) -> tuple[list[str], list[tuple[Any, ...]], bool]:
    """Run one untrusted statement on a private, sandboxed connection that is closed afterwards
    (``skip_damaged``: over the run's sound shards, as :func:`open_run` says; the viewer's console).

    Read-only by construction: whatever a statement manages to do (``EXPLAIN ANALYZE DROP TABLE units``
    runs the DROP), it does to a throwaway in-memory catalog that no other session reads; the data
    itself is Parquet that the sandbox cannot write. The statement check in :func:`run_query` stays as a
    first line of defence and for clear messages."""
    conn = open_run(run, skip_damaged=skip_damaged)
    try:
        return run_query(conn, sql, max_rows=max_rows, timeout_s=timeout_s)
    finally:
        conn.close()
