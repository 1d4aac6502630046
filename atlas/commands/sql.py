"""``atlas sql RUN_DIR [QUERY]``: read-only SQL over a run's Parquet tables (DuckDB views).

Without QUERY, an interactive prompt (line editing and history on a terminal): statements end with ``;``,
``.tables`` lists the views, ``.schema [TABLE]`` their columns, ``.help``, ``.quit``; Ctrl-C clears the
statement being typed (or stops the one running). Piped, the statements run in order (the last one may
lack its ``;``); a failing one is named by its number and line. Tables: units, chains, images, steps,
activations (each with a ``layer`` column), plus ``run`` (manifest), ``shards`` (completed shards) and
``files`` (the Parquet files behind the tables).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import decimal
import json
import math
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TextIO

from atlas.commands.options import int_in, positive_int, positive_number
from atlas.errors import AtlasError, Terminated, naming_stdout
from atlas.tables import format_table as text_table

MAX_TIMEOUT_S = 86_400.0  # a day: longer is a typo (and inf overflows the timer)
SCREEN_MAX_ROWS = 10_000  # the default row cap of the formats meant for a screen (csv and json: none)
FORMATS = ("table", "line", "markdown", "csv", "json")

HELP = (
    "Query a run with SQL (DuckDB, read-only): tables units, chains, images, steps, activations, run, shards,"
    " files."
)

EXAMPLES = """examples:
  atlas sql runs/demo "SELECT layer, count(*) AS units, avg(best_activation) FROM units GROUP BY layer"
  atlas sql runs/demo "SELECT unit, facet_count FROM units WHERE layer='fc8' ORDER BY facet_count DESC"
  atlas sql runs/demo --format csv "SELECT * FROM steps WHERE layer='fc8' AND unit=7" > unit7.csv
  atlas sql runs/demo "SELECT count(*) FROM chains" --format json   # options go anywhere
  atlas sql runs/demo --format line "SELECT * FROM units WHERE layer='fc8' AND unit=7"   # one row, whole
  atlas sql runs/demo ".schema chains"                             # the columns of a table
  atlas sql runs/demo            # interactive; end statements with ';', .help, .quit to leave
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run_dir",
        metavar="RUN_DIR",
        help="run directory or URI such as s3://bucket/atlas/demo (holds run.json)",
    )
    parser.add_argument(
        "query",
        metavar="QUERY",
        nargs="?",
        help="one SQL statement (or .tables, .schema [TABLE]); omit (or '-') for a prompt, or to read a "
        "script of statements from a pipe",
    )
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="table",
        help="table (cells cut at --width), line (one 'column = value' line each), markdown, csv or json",
    )
    parser.add_argument(
        "--max-rows",
        type=positive_int,
        default=None,
        metavar="N",
        help=f"row cap (default: {SCREEN_MAX_ROWS:,} for table, line and markdown; none for csv and json)",
    )
    parser.add_argument(
        "--width",
        type=int_in(0, 100_000, "characters"),
        default=40,
        metavar="N",
        help="table format: cut cells longer than N characters (0: never)",
    )
    parser.add_argument(
        "--timeout",
        type=positive_number(MAX_TIMEOUT_S, "seconds"),
        default=60.0,
        help="seconds before a query is cancelled",
    )


def row_cap(args: argparse.Namespace) -> int | None:
    """--max-rows, else the format's default: exports (csv, json) are whole, screens are capped."""
    if args.max_rows is not None:
        return args.max_rows
    return None if args.format in ("csv", "json") else SCREEN_MAX_ROWS


PNG_AS_TEXT = "\\x89PNG"  # a PNG's bytes cast to text (SUMMARIZE's min and max of a png column)


def _cell(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(bytes(value))} bytes>"
    if isinstance(value, str) and value.startswith(PNG_AS_TEXT):
        return "<PNG bytes as text>"
    return value


def iso_duration(value: dt.timedelta) -> str:
    """ISO 8601 duration of a DuckDB INTERVAL (as Python's timedelta), exact to the microsecond:
    ``P1DT2H0M3.5S``, ``PT0H0M0.000001S``, ``-PT0H0M30S``."""
    sign = "-" if value < dt.timedelta(0) else ""
    value = abs(value)
    hours, rest = divmod(value.seconds, 3_600)
    minutes, seconds = divmod(rest, 60)
    fraction = f".{value.microseconds:06d}".rstrip("0") if value.microseconds else ""
    clock = (
        f"T{hours}H{minutes}M{seconds}{fraction}S"
        if value.seconds or value.microseconds or not value.days
        else ""
    )
    return f"{sign}P{f'{value.days}D' if value.days else ''}{clock}"


def _json_cell(value: Any) -> Any:
    """Strict JSON: NaN and infinities (no JSON number) as null, within lists and maps too; DECIMALs as
    numbers; times in ISO 8601 (timestamps, dates, intervals as durations)."""
    from atlas.store.queries import JsonText

    if isinstance(value, JsonText):  # a JSON column's value: the data it holds
        try:
            return json.loads(value)
        except ValueError:
            return str(value)
    value = _cell(value)
    if isinstance(value, decimal.Decimal):  # DuckDB types a literal 0.5 DECIMAL: a number, not "0.5"
        value = int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list | tuple):
        return [_json_cell(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_cell(v) for k, v in value.items()}
    if isinstance(value, dt.timedelta):
        return iso_duration(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    return value


def csv_line(cells: list[Any]) -> str:
    """One RFC 4180 line, ended by a newline as DuckDB's own COPY ... TO ends it (CRLF left a carriage
    return on each line's last cell for awk, cut and base64 -d: a user's trial): a field with a comma,
    quote or line break is quoted, and so is an empty string, so that it reads back apart from NULL (an
    empty cell)."""
    return ",".join(_csv_field(v) for v in cells) + "\n"


def _csv_field(value: Any) -> str:
    if value is None:
        return ""
    text = str(value)
    if text == "" or any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def _csv_cell(value: Any) -> Any:
    """A CSV cell other tools read back: lists and structs as JSON, booleans as true/false, times in ISO
    8601, NULL as an empty cell."""
    value = _cell(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple | dict):
        return json.dumps(_json_cell(value), default=str)
    if isinstance(value, dt.timedelta | dt.datetime | dt.date | dt.time):
        return _json_cell(value)
    return value


def _text(value: Any, width: int = 40) -> str:
    """A value for the screen (``width`` 0: never cut)."""
    value = _cell(value)
    if value is None:
        text = "NULL"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        text = f"{value:.6g}" if width else repr(value)  # whole values: every digit
    elif isinstance(value, dt.timedelta):
        text = iso_duration(value)
    elif isinstance(value, list | tuple):  # as DuckDB prints a list: [class:disk, 0.97]
        text = "[" + ", ".join(_text(v, 0) for v in value) + "]"
    else:
        text = str(value)
    return text if not width or len(text) <= width else text[: width - 1] + "…"


def format_table(columns: list[str], rows: list[tuple[Any, ...]], width: int = 40) -> str:
    """DuckDB-like text table: numbers (and NULL-only columns) right-aligned, cells cut at ``width``."""

    def is_number(v: Any) -> bool:
        return v is None or isinstance(v, int | float) and not isinstance(v, bool)

    numeric = [i for i in range(len(columns)) if all(is_number(row[i]) for row in rows)]
    return text_table(columns, rows, align_right=numeric, cell=lambda v: _text(_on_one_line(v), width))


def _on_one_line(value: Any) -> Any:
    """A text value's line breaks as ``\\n`` (``\\r``): a table row is one line (a break split the grid)."""
    if isinstance(value, str) and ("\n" in value or "\r" in value):
        return type(value)(value.replace("\r", "\\r").replace("\n", "\\n"))
    return value


def format_lines(columns: list[str], rows: list[tuple[Any, ...]]) -> str:
    """One ``column = value`` line per column, a ``-- row N --`` header per row (wide rows, whole values)."""
    pad = max((len(c) for c in columns), default=0)
    out = []
    for n, row in enumerate(rows, 1):
        out.append(f"-- row {n} --")
        out.extend(f"{c.ljust(pad)} = {_text(v, 0)}" for c, v in zip(columns, row, strict=True))
    return "\n".join(out)


def format_markdown(columns: list[str], rows: list[tuple[Any, ...]]) -> str:
    """A GitHub-flavoured Markdown table (whole values; ``|`` and line breaks escaped)."""

    def md(value: Any) -> str:
        text = value if isinstance(value, str) and value in columns else _text(value, 0)
        return text.replace("|", "\\|").replace("\n", " ")

    out = ["| " + " | ".join(md(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    out.extend("| " + " | ".join(md(v) for v in row) + " |" for row in rows)
    return "\n".join(out)


EXPLAIN_COLUMNS = ["explain_key", "explain_value"]  # what DuckDB's EXPLAIN (ANALYZE) answers


def json_records(columns: list[str], rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    from atlas.tables import unique_names

    keys = unique_names(columns)  # SELECT 1 AS a, 2 AS a keeps both
    return [dict(zip(keys, (_json_cell(v) for v in row), strict=True)) for row in rows]


def write_result(
    columns: list[str],
    rows: list[tuple[Any, ...]],
    truncated: bool,
    fmt: str,
    out: TextIO,
    width: int = 40,
) -> None:
    if fmt == "csv":
        write_stream(columns, [rows], "csv", out)
    elif fmt == "json":  # as an export of every row: one array, a record a line
        write_stream(columns, [rows], "json", out)
    elif list(columns) == EXPLAIN_COLUMNS:  # a query plan: DuckDB's drawing, as it is (a table cell cuts it)
        for key, plan in rows:
            out.write(f"{key}:\n{plan}\n")
    else:
        if columns:
            shown = {"line": format_lines, "markdown": format_markdown}.get(fmt)
            out.write((shown(columns, rows) if shown else format_table(columns, rows, width)) + "\n")
        count = f"{len(rows)} row{'s' if len(rows) != 1 else ''}{', truncated' if truncated else ''}"
        if fmt == "markdown":  # pasted as it is into a document: the count goes to stderr
            print(f"atlas: note: {count}", file=sys.stderr)
        else:
            out.write(f"({count})\n")
    if truncated and fmt in ("csv", "json"):
        print(f"atlas: warning: result truncated to {len(rows)} rows (--max-rows)", file=sys.stderr)


def write_stream(
    columns: list[str], batches: Iterable[list[tuple[Any, ...]]], fmt: str, out: TextIO, end: str = "\n"
) -> None:
    """Every row of an answer as CSV or JSON (``fmt``), written batch by batch as it is read: the same
    cells as :func:`write_result`; JSON is one array with a record a line (``end`` after its ``]``)."""
    if fmt == "csv":
        from atlas.tables import unique_names

        out.write(csv_line(unique_names(columns)))  # the JSON records' keys: `a, a_2`, not `a, a` (a trial)
        for rows in batches:
            out.writelines(csv_line([_csv_cell(v) for v in row]) for row in rows)
        return
    first = True
    out.write("[")
    for rows in batches:
        for record in json_records(columns, rows):
            out.write(("\n" if first else ",\n") + json.dumps(record, default=str, allow_nan=False))
            first = False
    out.write(("\n]" if not first else "]") + end)


DOT_HELP = """.tables            the tables (views) of the run
.schema [TABLE]    every table's columns and types, or one table's
.help              this list
.quit              leave (also .exit, \\q, Ctrl-D)
Statements end with ';'. Ctrl-C clears the statement being typed, or stops the one running."""

_OWN = r"NOT internal AND table_name NOT LIKE '\_%' ESCAPE '\'"  # the run's own: no registered _arrow_*
SCHEMA_SQL = (
    'SELECT table_name AS "table", column_name AS "column", data_type AS type FROM duckdb_columns() '
    f"WHERE {_OWN} ORDER BY table_name, column_index;"
)
TABLES_SQL = f"SELECT DISTINCT table_name AS name FROM duckdb_columns() WHERE {_OWN} ORDER BY name;"


def dot_command(text: str) -> str | None:
    """A dot command as the SQL it stands for (``.tables``, ``.schema [TABLE]``), ``""`` for ``.help``,
    None for ``.quit``; raises ValueError naming the valid ones."""
    word, _, rest = text.strip().rstrip(";").strip().partition(" ")
    rest = rest.strip()
    if word in (".quit", ".exit", "\\q") and not rest:
        return None
    if word == ".tables" and not rest:
        return TABLES_SQL
    if word == ".schema":
        if not rest:
            return SCHEMA_SQL
        if not rest.replace("_", "").isalnum():
            raise ValueError(f".schema takes one table name, not {rest!r}")
        return f'SELECT column_name AS "column", column_type AS type FROM (DESCRIBE "{rest}");'
    if word == ".help" and not rest:
        return ""
    raise ValueError(
        f"unknown command {text.strip().split()[0]}; valid: .tables, .schema [TABLE], .help, .quit"
    )


_QUIT = object()  # what a dot command line gives for .quit
_CANCELLED = object()  # Ctrl-C at the prompt


def _read_or_cancel(
    read_line: Callable[[bool], str | None], continued: bool, say: Callable[[str], None]
) -> Any:
    """The next line, None at the end of input, _CANCELLED on Ctrl-C (the session goes on)."""
    try:
        return read_line(continued)
    except KeyboardInterrupt as exc:
        if isinstance(exc, Terminated):  # SIGTERM ends the session (a scheduler, `timeout`): not a Ctrl-C
            raise
        say("")  # the prompt's line ends
        return _CANCELLED


def _dot_line(text: str, number: int, complain: Callable[..., None], say: Callable[[str], None]) -> Any:
    """A typed dot command: the SQL it stands for, None when answered here (.help, or refused), _QUIT."""
    try:
        sql = dot_command(text)
    except ValueError as exc:
        complain(str(exc), number)
        return None
    if sql is None:
        return _QUIT
    if not sql:
        say(DOT_HELP)
        return None
    return sql


def _statements(
    read_line: Callable[[bool], str | None], complain: Callable[..., None], say: Callable[[str], None]
) -> Iterator[tuple[int, str]]:
    """(first line number, text) of the SQL statements typed (each ending with ';' outside quotes and
    comments, the last one maybe without), dot commands answered (.tables, .schema, .help) or ended on
    (.quit). ``read_line(continued)`` gives the next line, None at the end of input, or raises
    KeyboardInterrupt (Ctrl-C: the statement being typed is dropped)."""
    from atlas.store.queries import script_state

    buffer: list[str] = []
    first = number = 0
    held = False
    while True:
        line = _read_or_cancel(read_line, bool(buffer), say)
        if line is _CANCELLED:
            buffer.clear()
            held = False
            continue
        if line is None:  # end of input: a last statement without its ';' still runs (comments alone: none)
            if script_state("\n".join(buffer))[0]:
                yield first, "\n".join(buffer)
            return
        number += 1
        stripped = line.strip()
        if stripped.startswith((".", "\\")) and not script_state("\n".join(buffer))[0]:  # a dot command
            buffer.clear()  # comment lines before it are no statement
            held = False
            stripped = _dot_line(stripped, number, complain, say)
            if stripped is _QUIT:
                return
            if stripped is None:
                continue
        first = first if buffer else number  # a statement's first line (blank lines before it skipped)
        if stripped or buffer:
            buffer.append(stripped)
        held = held or ";" in stripped  # a ';' seen: checked on each line until a statement ends there
        if held and script_state(text := "\n".join(buffer)) == (True, True):  # (`SELECT 1; /* c` + `*/`)
            yield first, text
            buffer.clear()
            held = False


def _line_reader(editing: bool) -> Callable[[bool], str | None]:
    """``read(continued)`` -> the next line of standard input (None at its end). ``editing`` (stdin and
    stdout a terminal): input() with readline's line editing and history; else plain reads, the prompt on
    stderr (only when stdin is a terminal), so that stdout holds results only."""
    prompts = ("atlas> ", "  ...> ")
    if editing:
        with contextlib.suppress(ImportError):  # a Python built without it: plain input() still works
            import readline  # noqa: F401 - input() edits lines and keeps history once it is loaded

        def read(continued: bool) -> str | None:
            try:
                return input(prompts[continued])
            except EOFError:
                sys.stderr.write("\n")
                return None

        return read
    tty = sys.stdin.isatty()

    def read_plain(continued: bool) -> str | None:
        if tty:
            sys.stderr.write(prompts[continued])
            sys.stderr.flush()
        return sys.stdin.readline() or None

    return read_plain


class _Console:
    """What a prompt or a piped script of statements prints: results on stdout, errors on stderr (a
    script's named by statement number and line). A script's csv and json are exports, streamed a batch at
    a time as a one-shot query's (a trial's piped 3-million-row JSON took 2 GB held whole); its JSON is one
    document: a one-statement script's rows, as a one-shot query's, else a list of
    ``{"statement": N, "rows": [...]}``."""

    def __init__(self, args: argparse.Namespace, one_shot: bool = False) -> None:
        self.args = args
        self.tty = sys.stdin.isatty()
        self.failed = 0
        self.written = 0
        # a script's JSON: [{"statement": N, "rows": [...]}, ...] (a one-statement script's: its rows)
        self.listed = args.format == "json" and not self.tty and not one_shot

    def complain(self, message: str, where: tuple[int, int] | int | None = None) -> None:
        self.failed += 1
        if self.tty or where is None:
            text = f"error: {message}"
        elif isinstance(where, int):
            text = f"atlas: error: line {where}: {message}"
        else:
            text = f"atlas: error: statement {where[0]} (line {where[1]}): {message}"
        print(text, file=sys.stderr, flush=True)

    def say(self, text: str) -> None:
        print(text, file=sys.stdout if sys.stdout.isatty() else sys.stderr, flush=True)

    def answer(self, conn: Any, number: int, sql: str) -> None:
        """Run statement ``number`` and write its answer; raises AtlasError if it fails (with nothing
        written, unless DuckDB raised while its rows streamed: those written stay)."""
        from atlas.store.queries import run_query, stream_query

        cap, fmt = row_cap(self.args), self.args.format
        if cap is None:  # an export of every row: a batch at a time
            columns, batches = stream_query(conn, sql, timeout_s=self.args.timeout)
        else:
            columns, rows, truncated = run_query(conn, sql, max_rows=cap, timeout_s=self.args.timeout)
            batches = [rows]
            if truncated and self.listed:
                print(f"atlas: warning: statement {number} truncated to {len(rows)} rows", file=sys.stderr)
        with naming_stdout():
            if self.listed:
                head = "[\n" if not self.written else ",\n"
                sys.stdout.write(f'{head}{{"statement": {number}, "rows": ')
                self.written += 1  # the document's record is open from here: closed whatever happens
                try:
                    write_stream(columns, batches, "json", sys.stdout, end="}")
                except (AtlasError, KeyboardInterrupt) as exc:  # cut while its rows streamed
                    sys.stdout.write(f'\n], "error": {json.dumps(str(exc) or "interrupted")}}}')
                    raise
                sys.stdout.flush()
                return
            else:
                if self.written and fmt in ("csv", "markdown") and not self.tty:
                    sys.stdout.write("\n")  # a blank line between results
                if cap is None:
                    write_stream(columns, batches, fmt, sys.stdout)
                else:
                    write_result(columns, rows, truncated, fmt, sys.stdout, self.args.width)
            sys.stdout.flush()
        self.written += 1

    def finish(self) -> int:
        if self.listed:
            with naming_stdout():
                sys.stdout.write("\n]\n" if self.written else "[]\n")  # after its last record's "}"
        if self.failed and not self.tty:  # a script: a failed statement fails the command, as a bad query
            s = "s" if self.failed > 1 else ""
            print(f"atlas: error: {self.failed} statement{s} failed", file=sys.stderr)
            return 2
        return 0


def _interactive(conn: Any, args: argparse.Namespace, error_type: type) -> int:
    from atlas.store.queries import split_statements

    console = _Console(args)
    if console.tty:
        print("atlas sql — end statements with ';'  (.help, .tables, .schema, .quit)", file=sys.stderr)
    read_line = _line_reader(console.tty and sys.stdout.isatty())
    typed = _statements(read_line, console.complain, console.say)
    statements = ((line, s) for line, text in typed for s in split_statements(text))
    if not console.tty:  # a script: read whole first (its text is small), so that a one-statement
        statements = list(statements)  # script answers as a one-shot query does
        console.listed = console.listed and len(statements) != 1
    for number, (line, sql) in enumerate(statements, 1):
        try:
            console.answer(conn, number, sql)
        except error_type as exc:
            console.complain(str(exc), (number, line))
        except KeyboardInterrupt as exc:  # Ctrl-C stops the query (run_query interrupts it), not the session
            if isinstance(exc, Terminated):  # SIGTERM stops the session too
                raise
            console.complain("interrupted", (number, line))
    return console.finish()


def _partial_note(conn: Any) -> str | None:
    """For stderr: a run that is not complete answers for its complete shards only (None when complete)."""
    row = conn.execute("SELECT status, shards_done, planned_shards FROM run").fetchone()
    if row is None or row[0] == "complete":
        return None
    status, done, planned = row
    of = f" of {planned}" if planned is not None else ""
    shards = "shard" if done == 1 and not of else "shards"
    said = status or "of unknown status"
    if status == "running":  # as verify and the viewer say: a killed driver leaves it "running"
        said = "running (or its driver died: `atlas verify` tells)"
    return f"atlas: note: the run is {said}: results cover its {done}{of} complete {shards}"


def run(args: argparse.Namespace) -> int:
    import duckdb

    from atlas.errors import AtlasError
    from atlas.store.catalog import open_run
    from atlas.store.location import open_location

    if args.query == "-":  # the usual spelling of "read standard input"
        args.query = None
    conn = open_run(open_location(args.run_dir, what="RUN_DIR"))
    note = _partial_note(conn)
    try:
        if args.query is None:
            if note:
                print(note, file=sys.stderr)
            return _interactive(conn, args, AtlasError)
        query = args.query
        if query.strip().startswith("."):  # .tables, .schema [TABLE] as a one-shot query
            try:
                query = dot_command(query)
            except ValueError as exc:
                raise AtlasError(f"QUERY: {exc}") from None
            if query is None:  # .quit as a one-shot query: nothing to leave
                return 0
            if not query:
                print(DOT_HELP)
                return 0
        _Console(args, one_shot=True).answer(conn, 1, query)
        if note:  # after the answer: an error stays the one line on stderr
            print(note, file=sys.stderr)
        return 0
    finally:
        with contextlib.suppress(duckdb.Error):  # a statement an interrupt left running: the process ends
            conn.close()
