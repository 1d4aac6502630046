"""``atlas sql RUN_DIR [QUERY]``: read-only SQL over a run's Parquet tables (DuckDB views).

Without QUERY, an interactive prompt: statements end with ``;``, ``.tables`` lists the views,
``.quit`` exits; at the end of its input the last statement runs without its ``;``. Tables: units,
chains, images, steps, activations (each with a ``layer`` column), plus ``run`` (manifest), ``shards``
(completed shards) and ``files`` (the Parquet files behind the tables).
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any, TextIO

from atlas.commands.options import positive_int, positive_number

MAX_TIMEOUT_S = 86_400.0  # a day: longer is a typo (and inf overflows the timer)

HELP = (
    "Query a run with SQL (DuckDB, read-only): tables units, chains, images, steps, activations, run, shards,"
    " files."
)

EXAMPLES = """examples:
  atlas sql runs/demo "SELECT layer, count(*) AS units, avg(best_activation) FROM units GROUP BY layer"
  atlas sql runs/demo "SELECT unit, facet_count FROM units WHERE layer='fc8' ORDER BY facet_count DESC"
  atlas sql runs/demo --format csv "SELECT * FROM steps WHERE layer='fc8' AND unit=7" > unit7.csv
  atlas sql runs/demo "SELECT count(*) FROM chains" --format json   # options go anywhere
  atlas sql runs/demo            # interactive; end statements with ';', .quit to leave
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run_dir",
        metavar="RUN_DIR",
        help="run directory or URI such as s3://bucket/atlas/demo (holds run.json)",
    )
    parser.add_argument("query", metavar="QUERY", nargs="?", help="one SQL statement; omit for a prompt")
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table", help="output format")
    parser.add_argument("--max-rows", type=positive_int, default=10_000, metavar="N", help="row cap")
    parser.add_argument(
        "--timeout",
        type=positive_number(MAX_TIMEOUT_S, "seconds"),
        default=60.0,
        help="seconds before a query is cancelled",
    )


def _cell(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(bytes(value))} bytes>"
    return value


def _json_cell(value: Any) -> Any:
    """Strict JSON: NaN and infinities (no JSON number) as null, within lists and maps too."""
    value = _cell(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list | tuple):
        return [_json_cell(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_cell(v) for k, v in value.items()}
    return value


def _text(value: Any, width: int = 40) -> str:
    value = _cell(value)
    if value is None:
        return "NULL"
    text = f"{value:.6g}" if isinstance(value, float) else str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def format_table(columns: list[str], rows: list[tuple[Any, ...]]) -> str:
    cells = [[_text(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    numeric = [
        all(isinstance(row[i], int | float) or row[i] is None for row in rows) for i in range(len(columns))
    ]

    def line(values: list[str]) -> str:
        return "  ".join(
            v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)
        ).rstrip()

    out = [line(columns), "  ".join("-" * w for w in widths)]
    out.extend(line(r) for r in cells)
    return "\n".join(out)


EXPLAIN_COLUMNS = ["explain_key", "explain_value"]  # what DuckDB's EXPLAIN (ANALYZE) answers


def write_result(
    columns: list[str], rows: list[tuple[Any, ...]], truncated: bool, fmt: str, out: TextIO
) -> None:
    if fmt == "csv":
        import csv

        writer = csv.writer(out)
        writer.writerow(columns)
        writer.writerows([_cell(v) for v in row] for row in rows)
    elif fmt == "json":
        import json

        from atlas.tables import unique_names

        keys = unique_names(columns)  # SELECT 1 AS a, 2 AS a keeps both
        records = [dict(zip(keys, (_json_cell(v) for v in row), strict=True)) for row in rows]
        out.write(json.dumps(records, default=str, indent=1, allow_nan=False) + "\n")
    elif list(columns) == EXPLAIN_COLUMNS:  # a query plan: DuckDB's drawing, as it is (a table cell cuts it)
        for key, plan in rows:
            out.write(f"{key}:\n{plan}\n")
    else:
        if columns:
            out.write(format_table(columns, rows) + "\n")
        out.write(f"({len(rows)} row{'s' if len(rows) != 1 else ''}{', truncated' if truncated else ''})\n")
    if truncated and fmt != "table":
        print(f"atlas: warning: result truncated to {len(rows)} rows (--max-rows)", file=sys.stderr)


DOT_COMMANDS = {".tables": "SHOW TABLES;", ".quit": None, ".exit": None, "\\q": None}


def _statements(lines: TextIO, prompt: Any, complain: Any):
    """The SQL statements typed on ``lines`` (each ending with ';', the last one maybe without), dot
    commands answered (.tables) or ended on (.quit); ``prompt(continued)`` before each line."""
    buffer: list[str] = []
    while True:
        prompt(bool(buffer))
        line = lines.readline()
        if not line:  # end of input: a last statement without its ';' still runs
            if buffer:
                yield "\n".join(buffer)
            return
        stripped = line.strip()
        if not buffer and stripped.startswith((".", "\\")):  # a dot command, with or without a ';'
            stripped = stripped.rstrip(";").strip()
            if stripped not in DOT_COMMANDS:
                complain(f"unknown command {stripped.split()[0]}; valid: .tables, .quit")
                continue
            if DOT_COMMANDS[stripped] is None:
                return
            stripped = DOT_COMMANDS[stripped]
        if stripped or buffer:
            buffer.append(stripped)
        if stripped.endswith(";"):
            yield "\n".join(buffer)
            buffer.clear()


def _interactive(conn: Any, args: argparse.Namespace, run_query: Any, error_type: type) -> int:
    from atlas.store.catalog import split_statements

    tty = sys.stdin.isatty()
    errors = sys.stderr  # stdout holds results only (a piped CSV stays CSV)
    failed = 0
    if tty:
        print("atlas sql — end statements with ';'  (.tables, .quit)", file=sys.stderr)

    def prompt(continued: bool) -> None:
        if tty:
            sys.stderr.write("  ...> " if continued else "atlas> ")
            sys.stderr.flush()

    def complain(message: str) -> None:
        nonlocal failed
        failed += 1
        print(f"error: {message}", file=errors, flush=True)

    for sql in (s for text in _statements(sys.stdin, prompt, complain) for s in split_statements(text)):
        try:
            columns, rows, truncated = run_query(conn, sql, max_rows=args.max_rows, timeout_s=args.timeout)
        except error_type as exc:
            complain(str(exc))
            continue
        except KeyboardInterrupt:  # Ctrl-C stops the query (run_query interrupts it), not the session
            complain("interrupted")
            continue
        write_result(columns, rows, truncated, args.format, sys.stdout)
        sys.stdout.flush()
    if failed and not tty:  # a script of statements: a failed one fails the command (as a bad query does)
        print(f"atlas: error: {failed} statement{'s' if failed > 1 else ''} failed", file=sys.stderr)
        return 2
    return 0


def _partial_note(conn: Any) -> str | None:
    """For stderr: a run that is not complete answers for its complete shards only (None when complete)."""
    row = conn.execute("SELECT status, shards_done, planned_shards FROM run").fetchone()
    if row is None or row[0] == "complete":
        return None
    status, done, planned = row
    of = f" of {planned}" if planned is not None else ""
    shards = "shard" if done == 1 and not of else "shards"
    said = status or "of unknown status"
    return f"atlas: note: the run is {said}: results cover its {done}{of} complete {shards}"


def run(args: argparse.Namespace) -> int:
    from atlas.errors import AtlasError
    from atlas.store.catalog import open_run, run_query
    from atlas.store.location import open_location

    conn = open_run(open_location(args.run_dir, what="RUN_DIR"))
    note = _partial_note(conn)
    try:
        if args.query is None:
            if note:
                print(note, file=sys.stderr)
            return _interactive(conn, args, run_query, AtlasError)
        columns, rows, truncated = run_query(conn, args.query, max_rows=args.max_rows, timeout_s=args.timeout)
        write_result(columns, rows, truncated, args.format, sys.stdout)
        if note:  # after the answer: an error stays the one line on stderr
            print(note, file=sys.stderr)
        return 0
    finally:
        conn.close()
