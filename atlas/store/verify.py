"""Check a run's completed shards: every object the marker promises exists, reads, has the rows the
marker counted and a schema version this atlas reads. ``repair`` removes the markers of bad shards so the
next ``atlas run`` of the same config redoes exactly those.

    report = verify_run("s3://bucket/atlas/demo")
    report.bad          # {shard id: "units: 12 rows, marker says 16", ...}
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from dataclasses import dataclass, field
from typing import Any

import pyarrow.parquet as pq

from atlas.config import NON_RESULT_SECTIONS, config_data_hash
from atlas.errors import AtlasError, first_line
from atlas.store.catalog import check_run_json
from atlas.store.location import Location, open_location
from atlas.store.lock import RunLock
from atlas.store.manifest import (
    MARKER_SUFFIX,
    RUN_FILE,
    SHARDS_DIR,
    SUMMARY_FILE,
    marker_files,
    marker_readable,
    newer_schema,
    read_manifest,
    read_markers,
    unmarked_shards,
    write_json,
)
from atlas.store.png import png_problem
from atlas.store.schema import SCHEMA_VERSION


@dataclass
class VerifyReport:
    run: str
    shards: int = 0
    files: int = 0
    bad: dict[str, str] = field(default_factory=dict)  # shard id -> first problem found
    repaired: list[str] = field(default_factory=list)
    unmarked: int = 0  # planned shards of a run that says it is complete, without a marker
    unmarked_names: list[str] = field(default_factory=list)  # those shards' ids, where the plan tells
    marked: set[str] = field(default_factory=set)  # the shards whose marker the check found
    planned: int | None = None  # run.json's planned_shards
    status: str | None = None  # run.json's status: running, interrupted, complete, incomplete
    newer: dict[str, str] = field(default_factory=dict)  # shard id -> schema it was written with (kept)
    failed: dict[str, tuple[int, str]] = field(default_factory=dict)  # shard id -> (failed units, an error)
    deep_rows: int = 0  # rows read page by page (--deep)
    deep_pictures: int = 0  # pictures decoded (--deep)
    config_edited: bool = False  # run.json's config no longer hashes to its config_hash (a hand edit)
    writer: dict[str, Any] | None = None  # a running run's live writer (host, pid: its lock's holder)
    writer_told: bool = True  # False: its lock could not tell whether a writer holds it

    @property
    def complete(self) -> int:
        """Shards complete now: those checked, less those a repair reopened (to be done again)."""
        return self.shards - len(self.repaired)


def _unit_range(meta: pq.FileMetaData) -> tuple[int, int] | None:
    """(lowest, highest) ``unit`` of a Parquet file from its row groups' statistics (None: not recorded)."""
    names = meta.schema.names
    if "unit" not in names or meta.num_rows == 0:
        return None
    col = names.index("unit")
    lows, highs = [], []
    for g in range(meta.num_row_groups):
        stats = meta.row_group(g).column(col).statistics
        if stats is None or not stats.has_min_max:
            return None
        lows.append(stats.min)
        highs.append(stats.max)
    return int(min(lows)), int(max(highs))


def _check_file(
    loc: Location,
    rel: str,
    expected_rows: int,
    units: list[int] | None = None,
    deep: bool = False,
    expected_bytes: int | None = None,
    report: VerifyReport | None = None,
) -> str | None:
    """The first problem of one shard file (missing, other bytes than its marker recorded, unreadable,
    other row count, units outside the marker's range: another shard's file in its place, newer schema),
    or None. ``deep`` also reads every page (checking its CRC where written) and decodes every picture."""
    try:
        with loc.fs.open_input_file(loc.full(rel)) as fh:
            size = fh.size()
            meta = pq.ParquetFile(fh).metadata
            version = (meta.metadata or {}).get(b"atlas.schema_version", b"0")
    except FileNotFoundError:
        return f"{rel} is missing"
    except (OSError, ValueError) as exc:  # truncated or not Parquet (pyarrow raises ArrowInvalid/OSError)
        return f"{rel} is unreadable ({_short(first_line(exc))})"
    if meta.num_rows != expected_rows:
        return f"{rel} has {meta.num_rows} rows, its marker says {expected_rows}"
    held = _unit_range(meta)
    if units is not None and held is not None and not (units[0] <= held[0] and held[1] <= units[1]):
        return f"{rel} holds units {held[0]}-{held[1]}, its marker says {units[0]}-{units[1]}"
    if int(version) > SCHEMA_VERSION:
        return f"{rel} has schema version {int(version)}; this atlas reads up to {SCHEMA_VERSION}"
    if isinstance(expected_bytes, int) and size != expected_bytes:  # after the more telling checks above
        return f"{rel} holds {size:,} bytes, {expected_bytes:,} were written (truncated or overwritten)"
    return _read_whole(loc, rel, report) if deep else None


def _read_whole(loc: Location, rel: str, report: VerifyReport | None = None) -> str | None:
    """The first problem met reading every page of a file and decoding its pictures, or None; the rows read
    and pictures decoded are counted in ``report``."""
    try:
        with loc.fs.open_input_file(loc.full(rel)) as fh:
            table = pq.read_table(fh, page_checksum_verification=True)
    except (OSError, ValueError) as exc:  # a page that fails its CRC or does not decompress
        return f"{rel} has damaged data ({_short(first_line(exc))})"
    if report is not None:
        report.deep_rows += table.num_rows
    if "png" not in table.column_names:
        return None
    for row, png in enumerate(table.column("png").to_pylist()):
        if png is None:
            continue
        if report is not None:
            report.deep_pictures += 1
        problem = png_problem(png)
        if problem is not None:
            return f"{rel} row {row}: its picture does not decode ({_short(problem)})"
    return None


def _check_shard_files(
    loc: Location, marker: dict, files: dict[str, str], deep: bool, report: VerifyReport
) -> str | None:
    """The first problem of a shard's files (:func:`_check_file` each, counted in ``report.files``)."""
    sizes = marker.get("sizes") if isinstance(marker.get("sizes"), dict) else {}
    for table, n in marker["rows"].items():
        report.files += 1
        rel = files.get(table)
        if not rel:
            return f"its marker names no {table} file"
        problem = _check_file(loc, rel, n, marker.get("units"), deep, sizes.get(table), report)
        if problem:
            return problem
    return None


def _failed_units(loc: Location, rel: str) -> tuple[int, str] | None:
    """(units of a shard's units file that failed, the first one's error), or None when none did: a unit
    that failed (``status = 'error'``: a model that raised in the workers, say) has no pictures, and once
    its cause is fixed ``--repair`` has its shard redone."""
    with loc.fs.open_input_file(loc.full(rel)) as fh:
        names = pq.ParquetFile(fh).schema_arrow.names
        if "status" not in names:
            return None
        cols = pq.read_table(fh, columns=[c for c in ("status", "error") if c in names]).to_pydict()
    errors = [e for st, e in zip(cols["status"], cols.get("error", [None] * len(cols["status"])), strict=True)
              if st == "error"]  # fmt: skip
    return (len(errors), _short(first_line(errors[0] or "unknown error"))) if errors else None


def _hashes_to(config: dict, stored: str) -> bool:
    """Whether run.json's ``config`` is the one its ``config_hash`` was taken of: by this atlas
    (:func:`config_data_hash`), or as an older one took it (fewer sections left out, e.g. the run's name
    before it was; or the whole sha256), so an untouched older run is never called edited."""
    if config_data_hash(config) == stored:
        return True
    sections = [k for k in NON_RESULT_SECTIONS if k in config]
    for kept in itertools.chain.from_iterable(
        itertools.combinations(sections, n) for n in range(len(sections) + 1)
    ):
        data = {k: v for k, v in config.items() if k not in NON_RESULT_SECTIONS or k in kept}
        digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
        if stored in (digest, digest[:16]):
            return True
    return False


def _short(text: str) -> str:
    return text if len(text) <= 120 else text[:117].rsplit(" ", 1)[0] + " ..."


def verify_run(
    run: str | os.PathLike[str] | Location, *, repair: bool = False, deep: bool = False
) -> VerifyReport:
    """Check every completed shard's marker and files (``deep``: every byte and picture too); ``repair``
    removes the markers of bad shards so the next ``atlas run`` redoes them."""
    loc = open_location(run)
    manifest = read_manifest(loc)  # a missing run or run.json is one clear error
    check_run_json(loc, manifest)  # a damaged field: the readers refuse the run, and no repair mends it
    planned = manifest.get("planned_shards")
    report = VerifyReport(
        loc.display(),
        planned=planned if isinstance(planned, int) and not isinstance(planned, bool) else None,
        status=manifest.get("status") if isinstance(manifest.get("status"), str) else None,
    )
    report.config_edited = not _hashes_to(manifest["config"], manifest["config_hash"])
    markers = read_markers(loc)
    report.marked = set(markers)
    report.unmarked = unmarked_shards(manifest, markers)
    for shard, marker in markers.items():
        report.shards += 1
        if not marker_readable(marker):
            report.bad[shard] = "its marker is unreadable"
            continue
        newer = newer_schema(marker)
        if newer is not None:  # valid output of a newer atlas: not this one's to judge or repair
            report.newer[shard] = newer
            continue
        files = marker_files(shard, marker)
        problem = _check_shard_files(loc, marker, files, deep, report)
        if problem:
            report.bad[shard] = problem
        elif files.get("units"):
            failed = _failed_units(loc, files["units"])
            if failed is not None:
                report.failed[shard] = failed
    if repair and (report.bad or report.unmarked or report.failed):
        _repair(loc, report)
    return report


def _repair(loc: Location, report: VerifyReport) -> None:
    """Remove the markers of ``report``'s bad and failed shards (the next ``atlas run`` redoes them); a
    complete run becomes incomplete."""
    if loc.local and not os.access(loc.path, os.W_OK):  # e.g. a read-only mount: said before the lock
        raise AtlasError(
            f"run {loc.display()} is read-only here, and --repair removes the markers of its bad shards; "
            "run `atlas verify` without --repair to see them, or repair a writable copy of the run"
        )
    with RunLock(loc, elsewhere=", then repair it"):  # not while an `atlas run` writes it (one line)
        for shard in [*report.bad, *report.failed]:
            loc.delete(f"{SHARDS_DIR}/{shard}{MARKER_SUFFIX}")
            report.repaired.append(shard)
        now = read_manifest(loc)  # as it is now, not as it was before the checks
        if now.get("status") == "complete":  # the next `atlas run` redoes what is missing
            loc.delete(SUMMARY_FILE)  # a finished run's totals, no longer its own
            write_json(loc, RUN_FILE, {**now, "status": "incomplete"})
