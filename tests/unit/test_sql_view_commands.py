"""`atlas sql` and `atlas view` command modules (called directly, without the full CLI)."""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import sys

import pytest

from atlas.bench.synthetic_run import make_synthetic_run
from atlas.commands import sql, view
from atlas.errors import AtlasError

pytestmark = pytest.mark.unit


def parse(module, argv):
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return parser.parse_intermixed_args(argv)  # as the CLI: options anywhere


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("cmd") / "run"
    make_synthetic_run(run, layers={"fc8": 4}, chains=1, steps=10, images_per_chain=2, real_k=0)
    return run


def test_sql_formats(run_dir, capsys):
    q = "SELECT layer, count(*) AS n FROM units GROUP BY layer"
    assert sql.run(parse(sql, [str(run_dir), q])) == 0
    out = capsys.readouterr().out
    assert "fc8" in out and "(1 row)" in out
    sql.run(parse(sql, [str(run_dir), q, "--format", "csv"]))
    assert capsys.readouterr().out.splitlines() == ["layer,n", "fc8,4"]
    sql.run(parse(sql, [str(run_dir), "SELECT unit, png FROM images LIMIT 1", "--format", "json"]))
    rec = json.loads(capsys.readouterr().out)[0]
    assert rec["png"].startswith("<") and rec["png"].endswith("bytes>")
    # strict JSON: no NaN/Infinity tokens, and a repeated column name keeps both values
    q = "SELECT 'nan'::DOUBLE AS a, 2 AS a, ['inf'::DOUBLE, 1.5] AS xs"
    sql.run(parse(sql, [str(run_dir), q, "--format", "json"]))
    text = capsys.readouterr().out
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in JSON")) == [
        {"a": None, "a_2": 2, "xs": [None, 1.5]}
    ]
    sql.run(parse(sql, [str(run_dir), q, "--format", "csv"]))
    assert capsys.readouterr().out.splitlines()[0] == "a,a_2,xs"  # the JSON keys (a trial read `a,a`)
    # DECIMALs (DuckDB's type of a literal 0.5) are JSON numbers, not strings (a trial)
    sql.run(
        parse(
            sql, [str(run_dir), "SELECT 0.5 AS t, 1.25 * 2 AS y, 3::DECIMAL(9, 2) AS n", "--format", "json"]
        )
    )
    assert json.loads(capsys.readouterr().out) == [{"t": 0.5, "y": 2.5, "n": 3}]
    # a JSON column is nested data in JSON (a user's trial: config::JSON->'layers' came out as a string),
    # and its text in a table or CSV
    q = """SELECT '{"layers": [{"name": "fc8"}]}'::JSON->'layers' AS l, ['[1]'::JSON] AS js,
           NULL::JSON AS n"""
    sql.run(parse(sql, [str(run_dir), q, "--format", "json"]))
    assert json.loads(capsys.readouterr().out) == [{"l": [{"name": "fc8"}], "js": [[1]], "n": None}]
    sql.run(parse(sql, [str(run_dir), q, "--format", "csv"]))
    assert capsys.readouterr().out.splitlines()[1] == '"[{""name"":""fc8""}]",[[1]],'  # a list: JSON
    sql.run(parse(sql, [str(run_dir), "EXPLAIN SELECT count(*) FROM units"]))
    plan = capsys.readouterr().out
    assert plan.startswith("physical_plan:\n") and "╰" in plan and "…" not in plan  # the whole drawing


def test_sql_errors_are_one_line(run_dir, tmp_path):
    with pytest.raises(AtlasError, match="read-only"):
        sql.run(parse(sql, [str(run_dir), "COPY units TO '/tmp/x.csv'"]))
    for writes in (
        "EXPLAIN ANALYZE INSERT INTO units SELECT * FROM units",
        "EXPLAIN ANALYZE CREATE MACRO m() AS 1",
    ):
        with pytest.raises(AtlasError, match="read-only"):  # EXPLAIN ANALYZE runs what it explains
            sql.run(parse(sql, [str(run_dir), writes]))
    assert sql.run(parse(sql, [str(run_dir), "EXPLAIN ANALYZE SELECT count(*) FROM units"])) == 0
    with pytest.raises(AtlasError, match="not UTF-8 text"):  # what argv gives for undecodable bytes
        sql.run(parse(sql, [str(run_dir), "SELECT '\udcff'"]))
    with pytest.raises(AtlasError) as exc:
        sql.run(parse(sql, [str(run_dir), "SELECT best_activaton FROM units"]))
    assert "\n" not in str(exc.value) and 'Candidate bindings: "best_activation"' in str(exc.value)
    with pytest.raises(AtlasError) as exc:  # DuckDB's hint kept, and the tables there are
        sql.run(parse(sql, [str(run_dir), "SELECT * FROM unit"]))
    assert 'Did you mean "units"?' in str(exc.value) and "tables: units, chains, images" in str(exc.value)
    with pytest.raises(AtlasError, match="does not exist"):
        sql.run(parse(sql, [str(tmp_path / "missing"), "SELECT 1"]))
    with pytest.raises(AtlasError, match=r"PIVOT without its IN list .* PIVOT units ON layer IN \('fc8'"):
        sql.run(parse(sql, [str(run_dir), "PIVOT units ON layer USING count(*)"]))
    assert sql.run(parse(sql, [str(run_dir), "PIVOT units ON layer IN ('fc8') USING count(*)"])) == 0
    with pytest.raises(
        AtlasError, match=f"is a folder of runs \\(run\\), not a run; pass one of them, e.g. {run_dir}"
    ):
        sql.run(parse(sql, [str(run_dir.parent), "SELECT 1"]))


def test_sql_options_go_anywhere_and_bad_values_are_one_line(run_dir, capsys):
    """Through the whole CLI: options between RUN and QUERY, and argparse's own errors as one line."""
    from atlas.cli import main

    q = "SELECT layer, count(*) AS n FROM units GROUP BY layer"
    assert main(["sql", str(run_dir), "--format", "csv", q]) == 0
    assert capsys.readouterr().out.splitlines() == ["layer,n", "fc8,4"]
    assert main(["sql", "--max-rows", "5", str(run_dir), q, "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines() == ["layer,n", "fc8,4"]
    for argv, says in [
        (["--timeout", "nan"], "argument --timeout: nan is not a finite number of seconds > 0 and <= 86400"),
        (["--timeout", "inf"], "argument --timeout: inf is not a finite number of seconds > 0"),
        (["--timeout", "-1"], "argument --timeout: -1 is not a finite"),
        (["--max-rows", "0"], "argument --max-rows: 0 is below 1; give an integer >= 1"),
        (["--max-rows", "-5"], "argument --max-rows: -5 is below 1"),
        (["--format", "xml"], "argument --format: invalid choice: 'xml'"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ]:
        with pytest.raises(SystemExit) as exit_:
            main(["sql", str(run_dir), "SELECT 1", *argv])
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and err.startswith(f"atlas: error: {says}"), err
        assert len(err.strip().splitlines()) == 1 and "(see 'atlas sql --help')" in err
    with pytest.raises(SystemExit) as exit_:  # two runs: the recipe for several, not just "unrecognized"
        main(["sql", str(run_dir), str(run_dir), "SELECT 1"])
    err = capsys.readouterr().err
    assert (
        exit_.value.code == 2
        and "unrecognized arguments: SELECT 1; atlas sql queries one run (several" in err
    )


def test_sql_interactive(run_dir, monkeypatch, capsys):
    script = "SELECT count(*) AS n\nFROM units;\nATTACH '/tmp/x.db';\nSELECT 7 AS seven;\n.quit\nSELECT 1;\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(script))
    assert sql.run(parse(sql, [str(run_dir)])) == 2  # piped, and a statement failed
    said = capsys.readouterr()
    assert said.err.startswith("atlas: error: statement 2 (line 3): the SQL console is read-only: ATTACH")
    assert "error" not in said.out
    assert "seven" in said.out and said.out.count("(1 row)") == 2  # nothing after .quit
    assert said.err.splitlines()[-1] == "atlas: error: 1 statement failed"
    monkeypatch.setattr(sys, "stdin", io.StringIO("SELECT 1 AS one;\n"))
    assert sql.run(parse(sql, [str(run_dir)])) == 0
    monkeypatch.setattr(sys, "stdin", io.StringIO("SELECT 1 AS one; SELECT 'a;b' AS two;\n"))  # one line
    assert sql.run(parse(sql, [str(run_dir)])) == 0
    out = capsys.readouterr().out
    assert "one" in out and "a;b" in out and out.count("(1 row)") == 3


def test_sql_exports_are_whole_and_readable_back(run_dir, capsys):
    """csv and json carry every row unless --max-rows says otherwise (screens cap at 10,000); CSV cells
    are what other tools read back: lists as JSON, booleans true/false, intervals in ISO 8601."""
    import csv
    import json

    q = "SELECT i, [i, i + 1] AS pair, i % 2 = 0 AS even, INTERVAL 90 SECOND AS t FROM range(12000) r(i)"
    assert sql.run(parse(sql, [str(run_dir), "--format", "csv", q])) == 0
    said = capsys.readouterr()
    rows = list(csv.reader(io.StringIO(said.out)))
    assert len(rows) == 12001 and said.err == ""
    assert rows[0] == ["i", "pair", "even", "t"] and rows[2] == ["1", "[1, 2]", "false", "PT0H1M30S"]
    from atlas.commands.sql import iso_duration

    assert iso_duration(dt.timedelta(microseconds=1)) == "PT0H0M0.000001S"  # exact, never 1e-06
    assert iso_duration(dt.timedelta(days=400, microseconds=1)) == "P400DT0H0M0.000001S"
    assert iso_duration(-dt.timedelta(seconds=30)) == "-PT0H0M30S"
    assert iso_duration(dt.timedelta(days=2)) == "P2D"
    assert sql.run(parse(sql, [str(run_dir), "--format", "json", q])) == 0
    records = json.loads(capsys.readouterr().out)
    assert len(records) == 12000 and records[1] == {"i": 1, "pair": [1, 2], "even": False, "t": "PT0H1M30S"}
    assert sql.run(parse(sql, [str(run_dir), q])) == 0  # the table format is for a screen: capped
    assert capsys.readouterr().out.rstrip().endswith("(10000 rows, truncated)")
    assert sql.run(parse(sql, [str(run_dir), "--format", "csv", "--max-rows", "5", q])) == 0
    said = capsys.readouterr()
    assert len(said.out.splitlines()) == 6 and "truncated to 5 rows" in said.err


def test_sql_wide_rows_line_markdown_and_dot_commands(run_dir, capsys):
    long = "SELECT repeat('x', 60) AS long, 'a|b' AS bar"
    assert sql.run(parse(sql, [str(run_dir), long])) == 0
    assert "x" * 39 + "…" in capsys.readouterr().out  # the table cuts at --width 40
    assert sql.run(parse(sql, [str(run_dir), "--width", "0", long])) == 0
    assert "x" * 60 in capsys.readouterr().out
    assert sql.run(parse(sql, [str(run_dir), "--format", "line", long])) == 0
    assert capsys.readouterr().out.splitlines()[:3] == ["-- row 1 --", "long = " + "x" * 60, "bar  = a|b"]
    assert sql.run(parse(sql, [str(run_dir), "--format", "markdown", long])) == 0
    said = capsys.readouterr()
    out = said.out.splitlines()  # the table alone, ready to paste into a document; its count on stderr
    assert out == ["| long | bar |", "|---|---|", f"| {'x' * 60} | a\\|b |"] and "1 row" in said.err
    assert sql.run(parse(sql, [str(run_dir), ".schema chains"])) == 0
    one = capsys.readouterr().out  # its columns and types, as .schema lists every table's
    assert one.split()[:2] == ["column", "type"] and "best_step" in one and "null" not in one.split()[:6]
    assert sql.run(parse(sql, [str(run_dir), ".schema"])) == 0
    schema = capsys.readouterr().out
    assert "units" in schema and "steps" in schema and "grad_norm" in schema
    with pytest.raises(AtlasError, match=r"QUERY: unknown command \.drop; valid: \.tables"):
        sql.run(parse(sql, [str(run_dir), ".drop units"]))
    with pytest.raises(AtlasError, match="one table name"):
        sql.run(parse(sql, [str(run_dir), '.schema units"; DROP']))


def test_a_piped_script_in_json_is_one_document_and_failures_are_numbered(run_dir, monkeypatch, capsys):
    import json

    script = "SELECT 1 AS a;\nSELEC 2;\n\nSELECT 3 AS c;\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(script))
    assert sql.run(parse(sql, [str(run_dir), "--format", "json"])) == 2
    said = capsys.readouterr()
    assert json.loads(said.out) == [
        {"statement": 1, "rows": [{"a": 1}]},
        {"statement": 3, "rows": [{"c": 3}]},
    ]
    assert said.err.startswith("atlas: error: statement 2 (line 2): Parser Error")
    monkeypatch.setattr(sys, "stdin", io.StringIO("SELECT 1 AS a"))  # one statement: its rows, as a query
    assert sql.run(parse(sql, [str(run_dir), "--format", "json"])) == 0
    assert json.loads(capsys.readouterr().out) == [{"a": 1}]
    monkeypatch.setattr(sys, "stdin", io.StringIO("SELECT 1 AS a; SELECT 2 AS b;"))
    assert sql.run(parse(sql, [str(run_dir), "--format", "csv"])) == 0
    assert capsys.readouterr().out.split("\n") == ["a", "1", "", "b", "2", ""]  # a blank line between
    monkeypatch.setattr(sys, "stdin", io.StringIO("SELECT 1 AS a; SELECT 2 AS b;"))
    assert sql.run(parse(sql, [str(run_dir), "-", "--format", "markdown"])) == 0  # two tables, not one
    assert capsys.readouterr().out.splitlines() == ["| a |", "|---|", "| 1 |", "", "| b |", "|---|", "| 2 |"]


def test_csv_tells_an_empty_string_from_null(run_dir, capsys):
    """images.flags '' (no flags) and NULL (a real image) were the same empty cell: '' is quoted, as DuckDB's
    own COPY ... TO writes it (DuckDB's read_csv with allow_quoted_nulls=false reads the two apart)."""
    import csv

    q = "SELECT '' AS e, NULL AS n, 'a,b' AS c, 'say \"hi\"' AS q, 1.5 AS f"
    assert sql.run(parse(sql, [str(run_dir), "--format", "csv", q])) == 0
    out = capsys.readouterr().out
    assert out.split("\n")[1] == '"",,"a,b","say ""hi""",1.5'
    assert list(csv.reader(io.StringIO(out)))[1] == ["", "", "a,b", 'say "hi"', "1.5"]
    assert list(csv.DictReader(io.StringIO(out)))[0]["e"] == ""


def test_a_refused_statement_behind_with_is_named(run_dir):
    with pytest.raises(AtlasError, match=r"read-only: DELETE statements are refused"):
        sql.run(parse(sql, [str(run_dir), "WITH x AS (SELECT 1) DELETE FROM units"]))


def test_a_full_stdout_is_one_line_naming_stdout(run_dir, tmp_path):
    import subprocess

    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            [sys.executable, "-m", "atlas", "sql", str(run_dir), "SELECT 1"],
            stdout=full, stderr=subprocess.PIPE, text=True, timeout=120,
        )  # fmt: skip
    assert proc.returncode == 2 and proc.stderr == "atlas: error: stdout: No space left on device\n"


def test_docs_sql_names_every_column_of_every_table(run_dir):
    """docs/sql.md's column tables cover what `.schema` shows: a column added to the store (or to the run,
    shards and files tables) without a line saying what it means fails here."""
    import re
    from pathlib import Path

    from atlas.store.catalog import open_run

    text = (Path(__file__).resolve().parents[2] / "docs" / "sql.md").read_text()
    documented = set()
    for row in re.findall(r"^\| (`[a-z_]+\.[a-z_0-9]+`(?:, `[a-z_]+\.[a-z_0-9]+`)*) \|", text, re.M):
        documented.update(re.findall(r"`([a-z_]+\.[a-z_0-9]+)`", row))
    conn = open_run(run_dir)
    try:
        rows = conn.execute(
            "SELECT table_name, column_name FROM duckdb_columns() WHERE NOT internal"
        ).fetchall()
    finally:
        conn.close()
    named_in_tables_row = {"layer", "shard"}  # every data view's partition column; files/shards list it
    missing = sorted(
        f"{t}.{c}"
        for t, c in rows
        if f"{t}.{c}" not in documented and not (c in named_in_tables_row or c.endswith("_rows"))
    )
    assert not missing, f"columns with no meaning in docs/sql.md: {missing}"


def test_view_command_line_and_errors(run_dir, tmp_path):
    cmd = view.streamlit_command(str(run_dir), 8600, "127.0.0.1")
    assert cmd[0] == sys.executable and cmd[1:4] == ["-m", "atlas.commands.viewer_server", "run"]
    assert cmd[4].endswith("viewer/app.py") and cmd[-2:] == ["--", str(run_dir)]
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--server.headless") + 1] == "true"
    with pytest.raises(AtlasError, match="does not exist"):
        view.run(parse(view, [str(tmp_path / "missing")]))
    with pytest.raises(AtlasError, match="not an atlas run .no run.json in it or in the folders below it"):
        view.run(parse(view, [str(tmp_path)]))


def test_ctrl_c_in_the_console_stops_the_query_not_the_session(monkeypatch, capsys):
    import argparse
    import io

    from atlas.commands.sql import _interactive

    asked = []

    def run_query(conn, sql, **kw):
        asked.append(sql.strip())
        if len(asked) == 1:
            raise KeyboardInterrupt  # what Ctrl-C raises while run_query waits for the query
        return ["x"], [(1,)], False

    monkeypatch.setattr("atlas.store.queries.run_query", run_query)
    monkeypatch.setattr("sys.stdin", io.StringIO("SELECT slow;\nSELECT 1;\n"))
    args = argparse.Namespace(max_rows=10, timeout=None, format="csv", width=40)
    assert _interactive(None, args, AtlasError) == 2  # piped: the interrupted one counts
    said = capsys.readouterr()
    assert asked == ["SELECT slow;", "SELECT 1;"] and "statement 1 (line 1): interrupted" in said.err
    assert said.out == "x\n1\n"  # csv rows, and nothing else


def test_an_unknown_table_is_never_answered_with_duckdbs_internal_tables(run_dir):
    with pytest.raises(AtlasError) as exc:
        sql.run(parse(sql, [str(run_dir), "SELECT * FROM sequences"]))
    assert "pg_sequences" not in str(exc.value) and "the run's tables: units" in str(exc.value)


def _count_batches(monkeypatch, size: int) -> list[int]:
    """STREAM_BATCH set to ``size``; the list it returns gets the size of every batch an answer streams."""
    from atlas.store import queries

    monkeypatch.setattr(queries, "STREAM_BATCH", size)
    fetched: list[int] = []
    plain = queries.stream_query

    def counting(*args, **kwargs):
        columns, batches = plain(*args, **kwargs)
        return columns, (fetched.append(len(b)) or b for b in batches)

    monkeypatch.setattr(queries, "stream_query", counting)
    return fetched


def test_exports_are_written_a_batch_at_a_time(run_dir, capsys, monkeypatch):
    """csv and json of every row stream: fetchall held a whole answer as Python tuples (1.1 GB for 10
    million integers, a user's trial); each batch is written as it is read, with the same cells."""
    import csv

    fetched = _count_batches(monkeypatch, 3)
    q = """SELECT i, '{"k": 1}'::JSON AS j, CASE WHEN i = 2 THEN NULL ELSE '' END AS s FROM range(10) r(i)"""
    assert sql.run(parse(sql, [str(run_dir), "--format", "csv", q])) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert fetched == [3, 3, 3, 1] and len(rows) == 11 and rows[1] == ["0", '{"k": 1}', ""]
    fetched.clear()
    assert sql.run(parse(sql, [str(run_dir), "--format", "json", q])) == 0
    records = json.loads(capsys.readouterr().out)
    assert fetched == [3, 3, 3, 1] and len(records) == 10 and records[2] == {"i": 2, "j": {"k": 1}, "s": None}
    assert sql.run(parse(sql, [str(run_dir), "--format", "json", "SELECT 1 AS a WHERE false"])) == 0
    assert json.loads(capsys.readouterr().out) == []
    with pytest.raises(AtlasError, match="Binder Error"):  # a failing statement: one line, nothing written
        sql.run(parse(sql, [str(run_dir), "--format", "csv", "SELECT nope FROM units"]))
    assert capsys.readouterr().out == ""


def test_png_bytes_cast_to_text_print_as_a_mark_in_every_format(run_dir, capsys):
    """SUMMARIZE's min and max of a png column are its bytes as text: they printed as hundreds of escapes."""
    q = "SELECT column_name, min FROM (SUMMARIZE SELECT png FROM images)"
    for fmt in ("table", "json", "csv"):
        assert sql.run(parse(sql, [str(run_dir), "--format", fmt, q])) == 0
        out = capsys.readouterr().out
        assert "<PNG bytes as text>" in out and "\\x89PNG" not in out, out


def test_a_line_break_in_a_value_keeps_a_table_row_on_one_line(run_dir, capsys):
    q = "SELECT 'x' || chr(10) || 'y' || chr(13) AS a, 1 AS b"
    assert sql.run(parse(sql, [str(run_dir), q])) == 0
    assert capsys.readouterr().out.splitlines() == ["a       b", "------  -", "x\\ny\\r  1", "(1 row)"]
    assert sql.run(parse(sql, [str(run_dir), "--format", "csv", q])) == 0  # an export keeps the value
    assert capsys.readouterr().out == 'a,b\n"x\ny\r",1\n'


def test_a_script_ends_statements_where_duckdb_does(run_dir, monkeypatch, capsys):
    """A ';' at a line's end inside a string or a /* */ comment does not end a statement, nor does a
    script's last comment line make an empty one (a trial's script ending in `-- end` exited with 2)."""
    from atlas.store.queries import script_state

    for script, out in [
        ("SELECT 1 AS one;\n-- end of script\n", ["one", "1"]),
        ("/* step 1;\n*/\nSELECT 2 AS two;\n", ["two", "2"]),
        (
            "SELECT 'a;\nb' AS s;\nSELECT 3 AS c; -- trailing\nSELECT 4 AS d\n",
            ["s", '"a;', 'b"', "", "c", "3", "", "d", "4"],  # the quoted field holds its line break
        ),
        ("-- nothing but a comment\n", []),
    ]:
        monkeypatch.setattr(sys, "stdin", io.StringIO(script))
        assert sql.run(parse(sql, [str(run_dir), "--format", "csv"])) == 0, script
        said = capsys.readouterr()
        assert said.err == "" and said.out.split("\n")[:-1] == out, script
    lines = iter(["SELECT 5 AS e; /* a comment", "*/", "SELECT 6 AS f;", None])
    typed = list(sql._statements(lambda _continued: next(lines), print, print))
    assert typed == [(1, "SELECT 5 AS e; /* a comment\n*/"), (3, "SELECT 6 AS f;")]  # ends on its `*/`
    assert script_state("SELECT E'it\\'s;'") == (True, False)  # an E string's backslash escapes its quote
    assert script_state("/* a /* b */ c; */ SELECT 1") == (True, False)  # DuckDB nests comments
    assert script_state("/* a /* b */ c;") == (False, False) and script_state("SELECT 1 AS a$b$c;") == (
        True,
        True,
    )
    assert script_state("SELECT $$ a; $$") == (True, False) and script_state("SELECT $1;") == (True, True)
    assert script_state("SELECT 'it''s;'") == (True, False) and script_state('SELECT "a;";') == (True, True)


def test_a_comment_line_before_a_dot_command_leaves_it_a_dot_command(run_dir, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("-- list them;\n.tables\n"))
    assert sql.run(parse(sql, [str(run_dir), "--format", "csv"])) == 0
    assert "units" in capsys.readouterr().out.split()


def test_an_error_while_rows_stream_is_one_line_and_the_json_stays_whole(run_dir, monkeypatch, capsys):
    """DuckDB can raise while it computes later rows (a cast failing on row 2,920,000, a reviewer's find),
    after the answer began: that was a traceback and a half-written document."""
    import duckdb

    from atlas.store import queries

    class Cursor:  # fails on its second batch, as DuckDB's does on a late row
        def __init__(self):
            self.calls = 0

        def fetchmany(self, _n):
            self.calls += 1
            if self.calls > 1:
                raise duckdb.ConversionException("Conversion Error: Could not convert string 'x' to INT32")
            return [(1,), (2,)]

    cur = Cursor()
    assert queries._fetch_batch(cur) == [(1,), (2,)]
    with pytest.raises(AtlasError, match="^Conversion Error"):
        queries._fetch_batch(cur)

    def failing(conn, query, **kwargs):
        def batches():
            yield [(1,)]
            raise AtlasError("Conversion Error: Could not convert string 'x' to INT32")

        return (["n"], batches()) if "FAIL" in query else plain(conn, query, **kwargs)

    plain = queries.stream_query
    monkeypatch.setattr(queries, "stream_query", failing)
    monkeypatch.setattr(sys, "stdin", io.StringIO("SELECT 'FAIL';\nSELECT 2 AS b;\n"))
    assert sql.run(parse(sql, [str(run_dir), "--format", "json"])) == 2
    said = capsys.readouterr()
    doc = json.loads(said.out)  # whole: the cut statement's record closed, with its error
    assert doc[0] == {
        "statement": 1,
        "rows": [{"n": 1}],
        "error": "Conversion Error: Could not convert string 'x' to INT32",
    }
    assert doc[1] == {"statement": 2, "rows": [{"b": 2}]}
    assert "statement 1 (line 1): Conversion Error" in said.err and "Traceback" not in said.err


def test_a_piped_export_streams_as_a_one_shot_query(run_dir, monkeypatch, capsys):
    """A piped script's csv and json are written a batch at a time (a trial's piped 3-million-row JSON took
    2 GB held whole), and a one-statement script's output is the one-shot query's, byte for byte."""
    fetched = _count_batches(monkeypatch, 4)
    q = "SELECT i, i * 2 AS j FROM range(10) r(i)"
    for fmt in ("json", "csv"):
        assert sql.run(parse(sql, [str(run_dir), "--format", fmt, q])) == 0
        one_shot = capsys.readouterr().out
        monkeypatch.setattr(sys, "stdin", io.StringIO(q + ";\n"))
        assert sql.run(parse(sql, [str(run_dir), "--format", fmt])) == 0
        assert capsys.readouterr().out == one_shot and fetched == [4, 4, 2, 4, 4, 2], fmt
        fetched.clear()
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{q};\nSELECT nope;\n{q} LIMIT 1;\n"))
    assert sql.run(parse(sql, [str(run_dir), "--format", "json"])) == 2
    out = capsys.readouterr().out
    assert fetched == [4, 4, 2, 1] and json.loads(out) == [
        {"statement": 1, "rows": [{"i": i, "j": 2 * i} for i in range(10)]},
        {"statement": 3, "rows": [{"i": 0, "j": 0}]},
    ]
    assert out.splitlines()[1:3] == ['{"statement": 1, "rows": [', '{"i": 0, "j": 0},']  # a record a line


@pytest.mark.parametrize("how", ["query", "script"])
def test_sigterm_ends_a_sql_session_with_one_line(run_dir, monkeypatch, capsys, how):
    """SIGTERM (a scheduler, `timeout`) is not Ctrl-C: a piped script went on with its next statement and
    exited 0, and a one-shot query printed DuckDB's "connection is busy" traceback (a review)."""
    import signal
    import threading

    from atlas.cli import main

    monkeypatch.setattr(signal, "getsignal", lambda _s: signal.SIG_DFL)  # as a fresh process has it
    slow = "SELECT count(*) FROM range(1000000000000) a"  # minutes: the signal comes first
    if how == "script":
        monkeypatch.setattr(sys, "stdin", io.StringIO(f"SELECT 1 AS one;\n{slow};\nSELECT 2 AS two;\n"))
        argv = ["sql", str(run_dir), "--format", "csv"]
    else:
        argv = ["sql", str(run_dir), slow]
    started = threading.Event()
    real_execute = __import__("duckdb").DuckDBPyConnection.execute

    main_thread = threading.main_thread().ident

    def send_once_running():  # to the main thread, as a signal from outside the process reaches it
        started.wait()
        signal.pthread_kill(main_thread, signal.SIGTERM)

    def execute(cur, query, *a, **k):
        if "range(1000000000000)" in str(query):
            started.set()
        return real_execute(cur, query, *a, **k)

    monkeypatch.setattr("duckdb.DuckDBPyConnection.execute", execute, raising=False)
    sender = threading.Thread(target=send_once_running, daemon=True)
    sender.start()
    try:
        code = main(argv)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    out, err = capsys.readouterr()
    assert code == 143 and err.strip().splitlines()[-1] == "atlas: interrupted", err
    assert "Traceback" not in err and "two" not in out
