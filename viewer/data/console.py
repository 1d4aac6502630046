"""The SQL console: a read-only query's result with PNG cells as pictures, and the example queries."""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass
from typing import Any

import pandas as pd

from atlas.errors import AtlasError
from atlas.store.queries import QueryTimeout, query_run
from atlas.tables import unique_names
from viewer.data.query import PNG_DATA_URL, png_data_url
from viewer.data.truth import Truth

PICTURE_ROWS = 500  # console results up to this many rows show PNG cells as pictures (data URLs)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def result_frame(columns: list[str], rows: list[tuple[Any, ...]]) -> pd.DataFrame:
    """A console result as a frame: PNG cells as ``data:image/png`` URLs (the console draws them) when the
    result has at most :data:`PICTURE_ROWS` rows, other binary cells as ``<N bytes>``."""
    pictures = len(rows) <= PICTURE_ROWS

    def cell(value: Any) -> Any:
        if isinstance(value, bytes | bytearray | memoryview):
            raw = bytes(value)
            if pictures and raw.startswith(PNG_MAGIC):
                return png_data_url(raw)
            return f"<{len(raw)} bytes>"
        return value

    return pd.DataFrame([[cell(v) for v in r] for r in rows], columns=unique_names(columns))


def picture_columns(frame: pd.DataFrame) -> list[str]:
    """The columns of a console result that hold pictures (see :func:`result_frame`)."""
    return [
        str(c)
        for c in frame.columns
        if frame[c].map(lambda v: isinstance(v, str) and v.startswith(PNG_DATA_URL)).any()
    ]


@dataclass(frozen=True)
class ConsoleResult:
    """One SQL console run: ``frame`` (see :func:`result_frame`) or ``error`` (a refusal or failure)."""

    sql: str
    frame: pd.DataFrame | None = None
    run: str = ""  # the run's URI: a result belongs to its run and its text
    truncated: bool = False
    seconds: float = 0.0
    error: str | None = None


def console_query(run_dir: Any, sql: str, max_rows: int, timeout_s: float) -> ConsoleResult:
    """Run ``sql`` on a private sandboxed connection (``atlas.store.queries.query_run``, over the run's
    sound shards: the pages' banner names any damaged one left out); never raises for a refused or
    failing statement."""
    start = time.perf_counter()
    try:
        columns, rows, truncated = query_run(
            run_dir, sql, max_rows=max_rows, timeout_s=timeout_s, skip_damaged=True
        )
    except QueryTimeout as exc:  # the viewer's limit is fixed: more time is the command line's
        where = shlex.quote(str(getattr(run_dir, "uri", run_dir)))
        longer = f"run it outside the viewer with more time: atlas sql {where} --timeout {4 * exc.limit:g}"
        return ConsoleResult(
            sql=sql, error=str(QueryTimeout(exc.elapsed, exc.limit, longer)), run=str(run_dir)
        )
    except AtlasError as exc:
        return ConsoleResult(sql=sql, error=str(exc), run=str(run_dir))
    frame = result_frame(columns, rows)
    seconds = time.perf_counter() - start
    return ConsoleResult(sql=sql, frame=frame, truncated=truncated, seconds=seconds, run=str(run_dir))


EXAMPLE_QUERIES: dict[str, str] = {
    "units of a layer by facet count": (
        "SELECT unit, facet_count, best_activation, best_log_prob\n"
        "FROM units WHERE layer = '{layer}'\nORDER BY facet_count DESC, best_activation DESC\nLIMIT 50"
    ),
    "diverged chains": (
        "SELECT layer, unit, chain, method, best_activation, best_step\n"
        "FROM chains WHERE diverged\nORDER BY layer, unit, chain"
    ),
    "mean activation per layer": (
        "SELECT layer, count(*) AS units, avg(best_activation) AS mean_best,\n"
        "       avg(mean_last_activation) AS mean_last, avg(facet_count) AS mean_facets\n"
        "FROM units GROUP BY layer ORDER BY layer"
    ),
    "a unit's trajectory": (
        "SELECT chain, step, activation, log_prob, rank, prior_residual\n"
        "FROM steps WHERE layer = '{layer}' AND unit = {unit}\nORDER BY chain, step"
    ),
    "images per kind": (
        "SELECT layer, kind, count(*) AS images, avg(octet_length(png)) AS mean_png_bytes\n"
        "FROM images GROUP BY ALL ORDER BY ALL"
    ),
    "run manifest": "SELECT run_id, status, created, git_sha, shards_done, planned_shards FROM run",
    "where the shards ran (precision, device, host)": (
        "SELECT precision, device, host, count(*) AS shards, sum(units_rows) AS units,\n"
        "       sum(seconds) AS seconds\nFROM shards GROUP BY ALL ORDER BY shards DESC"
    ),
    "units by label": (
        "SELECT label, count(*) AS units, avg(label_score) AS mean_auroc,\n"
        "       list(unit ORDER BY unit) AS unit_ids\n"
        "FROM units WHERE layer = '{layer}' AND label IS NOT NULL\nGROUP BY label ORDER BY units DESC, label"
    ),
    "units with no label": (
        "SELECT layer, unit, label_best, label_score, label_runner_up, label_margin\n"
        "FROM units WHERE label IS NULL\nORDER BY layer, label_score DESC NULLS LAST"
    ),
    "share of weak pictures per layer": (
        "SELECT layer, count(*) AS pictures,\n"
        "       avg(list_contains(string_split(flags, ','), 'weak')::INT) AS weak_share,\n"
        "       median(natural_percentile) AS median_percentile\n"
        "FROM images WHERE kind IN ('best', 'last')\nGROUP BY layer ORDER BY layer"
    ),
    "label shown per layer": (
        "SELECT layer, kind, count(label) AS labelled, avg(label_shown) AS label_shown,\n"
        "       avg(reader_agreement) AS reader_agreement\n"
        "FROM units GROUP BY layer, kind ORDER BY layer"
    ),
    "label vs judge (output units)": (
        "SELECT layer, unit, label, label_score, judge_label, judge_correct,\n"
        "       (label LIKE 'class:%' AND list_contains(string_split(label[7:], '|'),\n"
        "                                             split_part(judge_label, '/', 1)))\n"
        "       OR label = 'facet:' || judge_label AS label_agrees  -- J says 'pill/capsule'; a union 'a|b'\n"
        "FROM units WHERE kind = 'output'\nORDER BY label_agrees, layer, unit"
    ),
}
# the examples that need truth columns (issue 16): name -> the Truth field they need
TRUTH_EXAMPLES = {
    "units by label": "labels",
    "units with no label": "labels",
    "share of weak pictures per layer": "pictures",
    "label vs judge (output units)": "labels",
    "label shown per layer": "reader",
}


def example_names(have: Truth) -> list[str]:
    """The console's example queries that run on this run (those needing missing columns left out)."""
    return [n for n in EXAMPLE_QUERIES if n not in TRUTH_EXAMPLES or getattr(have, TRUTH_EXAMPLES[n])]
