"""Run-level facts for the overview: the run's manifest, layers, counts, shards, throughput and schema."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from atlas.errors import AtlasError, first_line
from atlas.store.catalog import RUN_TABLES, SHARD_PROVENANCE, UNMARKED
from atlas.store.location import Location
from atlas.store.queries import printable, reads_damaged_bytes
from atlas.store.sessions import session_starts, timestamp, work_seconds
from viewer.data.query import fetch_frame, fetch_one
from viewer.data.truth import table_columns
from viewer.data.units import FAILED, composite_sql, failures, own_sql

# a layer (the overview) or unit (its page) whose median chain found its best picture within this share of
# its steps is said to keep pictures close to their starts
EARLY_BEST = 0.1


def found_early(best_step: Any, steps: Any) -> bool:
    """Whether a median best step came within :data:`EARLY_BEST` of the chains' steps (both known)."""
    return bool(pd.notna(best_step) and pd.notna(steps) and steps > 0 and best_step <= EARLY_BEST * steps)


SCHEMA_TABLES = RUN_TABLES


def run_info(conn: Any) -> dict[str, Any]:
    """The ``run`` table as a dict, with config / fingerprints / versions parsed from JSON."""
    df = fetch_frame(conn, "SELECT * FROM run")
    info = {k: (None if pd.isna(v) else v) for k, v in df.iloc[0].to_dict().items()} if len(df) else {}
    for key in ("config", "fingerprints", "versions"):
        if isinstance(info.get(key), str):
            info[key] = json.loads(info[key])
    return info


def model_differences(info: dict[str, Any], other: dict[str, Any]) -> list[str]:
    """The networks (target, generator, ...) whose weights fingerprints differ between two runs' infos;
    a network either run does not record is not compared."""
    mine, theirs = info.get("fingerprints") or {}, other.get("fingerprints") or {}

    def fingerprint(
        entry: Any,
    ) -> Any:  # {"spec": ..., "fingerprint": ...}, or the fingerprint itself
        return entry.get("fingerprint") if isinstance(entry, dict) else entry

    out = []
    for name in ("target", "generator", "dae"):
        a, b = fingerprint(mine.get(name)), fingerprint(theirs.get(name))
        if a and b and a != b:
            out.append({"dae": "DAE priors"}.get(name, f"{name}s"))
    return out


def layers(conn: Any, config: Any = None) -> list[tuple[str, int]]:
    """(layer, unit count) in the order the config names them (unknown layers last, by name)."""
    rows = fetch_frame(conn, "SELECT layer, count(*) AS n FROM units GROUP BY layer")
    text = json.dumps(config, sort_keys=False) if config is not None else ""

    def order(name: str) -> tuple[int, str]:
        pos = text.find(json.dumps(name))
        return (pos if pos >= 0 else len(text) + 1, name)

    pairs = [(str(r.layer), int(r.n)) for r in rows.itertuples()]
    return sorted(pairs, key=lambda p: order(p[0]))


def layer_summary(conn: Any) -> pd.DataFrame:
    """Per-layer counts and means: units (the layer's own), composites (its composite objectives, counted
    apart: a contrast's log-prob is a sum of its terms'), the means over its own units that did not fail,
    failed_units, chains (composites' included), diverged chains, judge accuracy, and how far the chains
    moved (:func:`_moves_sql`)."""
    return fetch_frame(
        conn,
        f"""
        WITH k AS (SELECT *, ({own_sql(conn)}) AS own, coalesce({FAILED}, false) AS failed FROM units),
        u AS (
            SELECT layer, count(*) FILTER (WHERE own) AS units, count(*) FILTER (WHERE NOT own) AS composites,
                   avg(best_activation) FILTER (WHERE own) AS mean_best_activation,
                   avg(best_log_prob) FILTER (WHERE own) AS mean_best_log_prob,
                   avg(facet_count) FILTER (WHERE own AND NOT failed) AS mean_facets,
                   avg(CASE WHEN judge_correct THEN 1.0 WHEN judge_correct IS NULL THEN NULL ELSE 0.0 END)
                       FILTER (WHERE own) AS judge_accuracy,
                   count(*) FILTER (WHERE status IS NOT NULL AND status <> 'ok') AS failed_units
            FROM k GROUP BY layer),
        c AS (
            SELECT layer, count(*) AS chains, count(*) FILTER (WHERE diverged) AS diverged_chains,
                   sum(seconds) AS chain_seconds, {_moves_sql(conn)}
            FROM chains GROUP BY layer)
        SELECT u.*, coalesce(c.chains, 0) AS chains, coalesce(c.diverged_chains, 0) AS diverged_chains,
               c.chain_seconds, c.median_best_step, c.steps, c.stopped_share
        FROM u LEFT JOIN c USING (layer) ORDER BY layer
        """,
    )


def _moves_sql(conn: Any) -> str:
    """How far a layer's chains moved: the median step of their best picture, the steps they had, and the
    share that ``sampler.stop_at`` stopped (NULL in runs whose chains table lacks the columns)."""
    have = table_columns(conn, "chains")
    best = "median(best_step)" if "best_step" in have else "NULL::DOUBLE"
    steps = "max(steps)" if "steps" in have else "NULL::BIGINT"
    stopped = "avg((stopped_step IS NOT NULL)::DOUBLE)" if "stopped_step" in have else "NULL::DOUBLE"
    return f"{best} AS median_best_step, {steps} AS steps, {stopped} AS stopped_share"


def layer_table(conn: Any, order: list[str]) -> pd.DataFrame:
    """The overview's layer table, in ``order`` (config order): layer, units, composites, failed_units,
    chains, diverged_chains, mean_best_activation, mean_best_log_prob, mean_facets, judge_accuracy (the
    means over the layer's own units), median_best_step, steps, stopped_share (over its chains)."""
    columns = ["layer", "units", "composites", "failed_units", "chains", "diverged_chains",
               "mean_best_activation", "mean_best_log_prob", "mean_facets", "judge_accuracy",
               "median_best_step", "steps", "stopped_share"]  # fmt: skip
    table = layer_summary(conn)[columns]
    rank = {name: i for i, name in enumerate(order)}
    return table.sort_values("layer", key=lambda s: s.map(rank)).reset_index(drop=True)


def layer_stats(conn: Any, layer: str) -> dict[str, Any] | None:
    """One layer's row of :func:`layer_summary` as a dict (None when the run has no such layer)."""
    summary = layer_summary(conn)
    rows = summary[summary["layer"] == layer]
    return rows.iloc[0].to_dict() if len(rows) else None


def counts(conn: Any) -> dict[str, int]:
    """Row counts of every table (images counted without reading PNG bytes)."""
    out = {}
    for table in ("units", "chains", "images", "steps"):
        row = fetch_one(conn, f"SELECT count(*) FROM {table}")
        out[table] = int(row[0]) if row else 0
    return out


def distributions(conn: Any) -> pd.DataFrame:
    """One row per own unit that did not fail (composites and failed units left out): layer, unit, best
    activation, best log-prob, facet count."""
    return fetch_frame(
        conn,
        f"""SELECT layer, unit, best_activation, best_log_prob, facet_count FROM units
            WHERE ({own_sql(conn)}) AND NOT coalesce({FAILED}, false)""",
    )


def diverged_chains(conn: Any, limit: int = 200) -> pd.DataFrame:
    """The diverged chains (the first ``limit``): layer, unit, composite (its expression; null for the
    layer's own units), chain, method, start, best_activation, best_step, steps."""
    return fetch_frame(
        conn,
        f"""SELECT c.layer, c.unit, u.composite, c.chain, c.method, c.start, c.best_activation,
                   c.best_step, c.steps
            FROM (SELECT * FROM chains WHERE diverged) c
            LEFT JOIN (SELECT layer, unit, {composite_sql(conn)} AS composite FROM units) u
            USING (layer, unit)
            ORDER BY c.layer, c.unit, c.chain LIMIT ?""",
        [limit],
    )


def created_ts(text: str | None) -> float | None:
    """The run's ``created`` (ISO 8601) as a POSIX timestamp; None when missing or unreadable."""
    return timestamp(text)


def default_run(manifests: list[dict[str, Any] | None]) -> int:
    """Which of several runs to open first: the most recently created complete one, else the most
    recently created; ``manifests[i]`` is run i's run.json (None when it does not read)."""

    def key(i: int) -> tuple[bool, float, int]:
        m = manifests[i] or {}
        created = created_ts(m.get("created") if isinstance(m.get("created"), str) else None)
        return (m.get("status") == "complete", created if created is not None else float("-inf"), i)

    return max(range(len(manifests)), key=key) if manifests else 0


def shards(conn: Any) -> pd.DataFrame:
    """Completed shards, oldest first: the ``shards`` table, ``done_time`` shown as ``done`` (HH:MM:SS)."""
    df = fetch_frame(conn, "SELECT * FROM shards ORDER BY done_time")
    df["done"] = pd.to_datetime(df["done_time"], unit="s").dt.strftime("%H:%M:%S")
    for column in SHARD_PROVENANCE:  # shards written before their marker recorded it
        if column in df:
            df[column] = df[column].fillna("not recorded")
    return df.drop(columns=["done_time"])


def precisions(conn: Any) -> tuple[dict[str, int], int]:
    """(shards per compute precision ('bfloat16', 'float32', ...), most first; shards whose marker predates
    the precision field)."""
    df = fetch_frame(conn, "SELECT precision, count(*) AS n FROM shards GROUP BY 1")
    known = [(str(r.precision), int(r.n)) for r in df.itertuples() if isinstance(r.precision, str)]
    unrecorded = int(df.loc[df["precision"].isna(), "n"].sum())
    return dict(sorted(known, key=lambda pn: (-pn[1], pn[0]))), unrecorded


def schema(conn: Any, tables: tuple[str, ...] = SCHEMA_TABLES) -> dict[str, list[tuple[str, str]]]:
    """table -> [(column, lower-case type)] for the SQL console's schema list."""
    out = {}
    for table in tables:
        rows = fetch_frame(conn, f"DESCRIBE {table}")
        out[table] = [(str(r.column_name), str(r.column_type).lower()) for r in rows.itertuples()]
    return out


def throughput(conn: Any, starts: list[float], failed: int = 0) -> dict[str, float | None]:
    """Units sampled per minute of the run's work (``starts``: its sessions', run.json's ``created`` and
    ``resumed``; :func:`atlas.store.sessions.work_seconds`), so the idle time between an interrupt and its
    resume is not counted; failed units are not counted as sampled."""
    done = fetch_frame(conn, "SELECT done_time, units_rows, seconds FROM shards ORDER BY done_time")
    done = done[done["done_time"].notna()]
    if done.empty:
        return {"units_per_min": None, "wall_s": None, "shard_seconds": None}
    wall = work_seconds(starts, [float(t) for t in done["done_time"]]) or 0.0
    units = max(int(done["units_rows"].sum()) - failed, 0)
    return {
        "units_per_min": (units / wall * 60) if wall > 0 else None,
        "wall_s": wall,
        "shard_seconds": float(done["seconds"].sum()) if done["seconds"].notna().any() else None,
    }


def run_stats(conn: Any, created: str | None, resumed: Any = None) -> dict[str, Any]:
    """The overview's numbers: row counts (units, chains, images, steps), throughput (units_per_min, wall_s,
    shard_seconds; ``resumed``: run.json's list of resume times), diverged_chains (int), diverged_fraction
    (of all chains), failures (:func:`viewer.data.units.failures`) and composites (their count)."""
    rows = counts(conn)
    summary = layer_summary(conn)
    diverged = int(summary["diverged_chains"].sum()) if len(summary) else 0
    failed = failures(conn)
    return {
        **rows,
        **throughput(conn, session_starts(created, resumed), failed["count"]),
        "diverged_chains": diverged,
        "diverged_fraction": diverged / max(rows["chains"], 1),
        "failures": failed,
        "composites": int(summary["composites"].sum()) if len(summary) else 0,
    }


def methods(conn: Any, layer: str | None = None) -> list[str]:
    """The sampling methods of the run's chains (of ``layer``'s chains only, where given), sorted: a run
    with ``models.ensemble`` names it on its output layer's chains alone (``dgn_am[ensemble=5]``), so
    two methods of one layer, not of the run, are what a comparison of methods needs."""
    where = "method IS NOT NULL" + (" AND layer = ?" if layer is not None else "")
    sql = f"SELECT DISTINCT method FROM chains WHERE {where} ORDER BY 1"
    rows = fetch_frame(conn, sql, [layer] if layer is not None else [])
    return [str(m) for m in rows["method"]]


def cannot_read(exc: BaseException, run: str, name: str | None = None) -> str:
    """The one line a page shows for a run it cannot read, with the check that finds the cause (unless the
    error names its own fix): a damaged page of a Parquet file (its bytes changed, its size not) is seen
    only by ``atlas verify --deep``, and a user's trial sent to the plain check was told "0 bad"."""
    first = printable(first_line(exc))
    which = f"run {name}" if name else "this run"  # ``name``: another run than the page's (Compare's)
    if any(fix in first for fix in ("rerun", "atlas verify", "atlas run")):  # its own fix: one, not two
        return f"Cannot read {which}: {first}."  # (a trial read a run.json's fix and verify's together)
    damaged = reads_damaged_bytes(exc, first)
    deep = " --deep" if damaged else ""
    first = f"a shard file is damaged ({first})" if damaged else first  # DuckDB's "Out of buffer"
    return (
        f"Cannot read {which}: {first}. `atlas verify{deep} {run}` names bad shards; `atlas verify{deep} "
        f"--repair {run}` has them redone by the next `atlas run`."
    )


def damaged_note(damage: dict[str, str], run: str, name: str | None = None, layer: str | None = None) -> str:
    """The line every page shows over a run whose damaged shards it leaves out (``open_run``'s
    ``skip_damaged``; ``name``: another run than the page's, Compare's): the first damage (one of
    ``layer``'s shards when it has one: a user on fc7's pages was shown conv4's), how many more shards, and
    the fix. Markers missing from a complete run (``UNMARKED``) are no shard left out."""
    which = f"Run {name}" if name else "This run"
    first_key, first = min(damage.items(), key=lambda item: not _shard_of(item[0], layer))
    shards = [shard for shard in damage if shard != UNMARKED]
    more = len(shards) - (first_key != UNMARKED)  # beyond the one named
    extra = f" (and {more} more damaged shard{'s' if more != 1 else ''})" if more > 0 else ""
    missing = "the units of the shards without one are not shown"  # markers missing from a complete run
    shown = "their units are left out of every page" if shards else missing
    return (
        f"{which} {first}{extra}: {shown}, the rest is shown. `atlas verify --repair {run}`, then the same "
        "`atlas run`, redoes them."
    )


def _shard_of(shard_id: str, layer: str | None) -> bool:
    """Whether ``shard_id`` (``<layer>-<index>``: atlas.pipeline.plan) is one of ``layer``'s shards."""
    head, _, index = shard_id.rpartition("-")
    return layer is not None and head == layer and index.isdigit()


def planned_units(
    manifest: dict[str, Any], layer: str, ranges: tuple[tuple[int, int], ...] = ()
) -> list[int]:
    """The units of ``layer`` run.json plans (its ``unit_groups``, in plan order; [] when it records none),
    within ``ranges`` (a units filter's ``(lo, hi)`` pairs; () for all)."""
    groups = (manifest.get("unit_groups") or {}).get(layer)
    if not isinstance(groups, list):
        return []
    units = [u for group in groups if isinstance(group, list) for u in group if isinstance(u, int)]
    return [u for u in units if any(lo <= u <= hi for lo, hi in ranges)] if ranges else units


def missing_units(
    manifest: dict[str, Any], damage: dict[str, str], layer: str, asked: list[int], held: list[int]
) -> list[str]:
    """Why units of ``layer`` the run plans are not shown (``asked`` less ``held``): in a damaged shard,
    left out, or not written yet (the run running, interrupted or stopped). One sentence for each cause (no
    full stop); units the run never planned are not named (the caller says the layer's range). A user's
    trial was told a planned unit of a damaged or interrupted run "is not in layer fc7"."""
    from atlas.pipeline.plan import plan_groups

    groups = (manifest.get("unit_groups") or {}).get(layer)
    per_shard = manifest.get("units_per_shard")
    have = set(held)
    absent = [u for u in dict.fromkeys(asked) if u not in have]
    if not absent or not isinstance(groups, list) or not isinstance(per_shard, int) or per_shard < 1:
        return []
    try:
        shard_of = {u: shard.id for shard in plan_groups({layer: groups}, per_shard) for u in shard.units}
    except (AtlasError, TypeError):  # a run.json edited by hand
        return []
    lost = [u for u in absent if shard_of.get(u) in damage]
    unwritten = [u for u in absent if u in shard_of and shard_of[u] not in damage]
    said = []
    if lost:
        shards = list(dict.fromkeys(shard_of[u] for u in lost))
        which = f"the damaged shard {shards[0]}" if len(shards) == 1 else f"{len(shards)} damaged shards"
        said.append(f"{_units_text(lost)} of {layer} {_are(lost)} in {which}, left out")
    if unwritten:
        status = manifest.get("status")
        when = (
            "being built: the page fills in as its shards land"
            if status == "running"
            else f"the run is {status or 'not finished'}: the same `atlas run` writes {_them(unwritten)}"
        )
        said.append(f"{_units_text(unwritten)} of {layer} {_are(unwritten)} not written yet ({when})")
    return said


def layer_size(manifest: dict[str, Any], layer: str) -> int | None:
    """How many units ``layer`` has (its channels: the first of run.json's shape), None when not recorded."""
    for entry in manifest.get("layers") or []:
        if isinstance(entry, dict) and entry.get("name") == layer:
            shape = entry.get("shape")
            if isinstance(shape, list) and shape and isinstance(shape[0], int):
                return shape[0]
    return None


def absent_unit_text(manifest: dict[str, Any], layer: str, unit: int, held: list[int]) -> str:
    """Why ``unit`` of ``layer`` has no page, when the run never planned it (no full stop): a unit of the
    layer the run did not sample, or a number past the layer's units (a user's trial was told a unit of
    fc7's 256 "is not in layer fc7")."""
    from viewer.data.units import compact_units

    size = layer_size(manifest, layer)
    here = compact_units(held)
    if size is not None and 0 <= unit < size:
        return f"Unit {unit} of {layer} was not sampled in this run (its units of {layer}: {here})"
    held_here = f"{size} units; this run holds {here}" if size is not None else f"units {here}"
    return f"Unit {unit} is not in layer {layer} ({held_here})"


def _units_text(units: list[int]) -> str:
    from viewer.data.units import compact_units

    return f"Unit{'s' if len(units) > 1 else ''} {compact_units(units)}"


def _are(units: list[int]) -> str:
    return "are" if len(units) > 1 else "is"


def _them(units: list[int]) -> str:
    return "them" if len(units) > 1 else "it"


def driver_gone(run: Location, status: str | None) -> bool:
    """A run.json that says "running" while no `atlas run` holds the run's lock: its driver stopped without
    marking it (SIGKILL, a lost machine), and the viewer would wait for shards for ever (a user's trial;
    `atlas verify` says "(or its driver died)")."""
    from atlas.store.lock import RunLock

    return status == "running" and RunLock(run).holder() is None
