"""`atlas verify RUN [--deep] [--repair] [--json PATH]`: check every completed shard of a run; --repair
re-opens the bad ones."""

from __future__ import annotations

import argparse

HELP = (
    "Check every completed shard of a run (objects exist, read, row counts, schema version); --repair redoes"
    " bad ones."
)


EXAMPLES = """examples:
  atlas verify runs/demo              # exit 1 when a shard is bad or holds failed units
  atlas verify runs/demo --deep       # also every data page and picture (reads the whole run)
  atlas verify runs/demo --repair     # then the same `atlas run` redoes the bad shards
  atlas verify runs/demo --complete   # a script's "is it done?": exit 1 unless complete and sound
  atlas verify runs/demo --json v.json  # the result for a pipeline: shards, problems, exit code
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory or URI (s3://bucket/atlas/demo)")
    p.add_argument(
        "--repair",
        action="store_true",
        help="remove the completion markers of bad shards and of shards with failed units, so the next "
        "`atlas run` redoes them",
    )
    p.add_argument(
        "--complete",
        action="store_true",
        help="also exit 1 when the run is not complete (running, interrupted or incomplete): a script's "
        "test that the run is finished and sound",
    )
    p.add_argument(
        "--json",
        metavar="PATH",
        help="also write the result as JSON to PATH (its shards, problems, repairs and exit code): for a "
        "pipeline that reads it instead of the text (default: text only)",
    )
    p.add_argument(
        "--deep",
        action="store_true",
        help="also read every data page (checking its CRC) and decode every picture: slower, finds damaged "
        "bytes inside a file whose footer still reads",
    )


def _pending_shards(report) -> str | None:
    """The line on planned shards still missing from a run that is not finished: who is writing them, or
    that the same `atlas run` finishes them (a run that says running with no live writer: its driver
    died without marking it, told apart from a live run by the run's lock)."""
    missing = (report.planned or 0) - report.shards
    if report.status not in ("running", "interrupted", "incomplete") or missing <= 0:
        return None
    writer = report.writer
    if writer is not None:
        where = f"pid {writer.get('pid', '?')} on {writer.get('host', '?')}"
        return f"the run is being written by atlas run ({where}): {missing} shards still to come"
    said = report.status
    if report.status == "running" and not report.writer_told:
        said = (
            "marked running; whether an atlas run is writing it cannot be told here (its lock does not read)"
        )
    elif report.status == "running":
        said = "marked running, but no atlas run is writing it (its driver was killed or lost)"
    shards = f"{missing} missing shard{'s' if missing != 1 else ''}"
    return f"the run is {said}: the same `atlas run` finishes the {shards}"


CONFIG_EDITED = (
    "run.json: its config was changed after the run wrote it (it no longer matches its config_hash): the "
    "viewer and `atlas sql` show the changed settings, the pictures were made with the original ones; put "
    "the original back (`atlas config YOUR.yaml` prints it) or restore run.json (--repair does not mend this)"
)


def _say_problems(report) -> None:
    """A line for each bad shard, shard of a newer atlas, shard with failed units, missing marker, and an
    edited config."""
    from atlas.errors import some

    for shard, problem in sorted(report.bad.items()):
        print(f"bad shard {shard}: {problem}")
    if report.newer:
        first = min(report.newer)
        print(
            f"{len(report.newer)} shard(s) written by a newer atlas (e.g. {first}: {report.newer[first]}): "
            "not checked and never repaired here; upgrade atlas"
        )
    for shard, (n, error) in sorted(report.failed.items()):
        print(f"shard {shard}: {n} unit{'s' if n != 1 else ''} failed (no pictures): {error}")
    if report.unmarked:
        names = f" ({some(report.unmarked_names)})" if report.unmarked_names else ""
        print(
            f"{report.unmarked} planned shard(s) have no marker although the run says it is complete{names}"
        )
    if report.config_edited:
        print(CONFIG_EDITED)


def run(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    from atlas.atomic import check_output_file, refuse_uri
    from atlas.bench import write_json
    from atlas.errors import AtlasError

    json_out = getattr(args, "json", None)
    if json_out is not None:  # checked before the run is read (a whole --deep pass, or a repair)
        refuse_uri(json_out, "--json")  # said as a URI first, wherever it is given from
        run = Path(os.path.realpath(Path(args.run_dir).expanduser()))
        given = Path(os.path.realpath(Path(json_out).expanduser()))  # through links (a trial)
        if "://" not in args.run_dir and run in (given, *given.parents):  # among the files it checks
            beside = run.parent / f"{run.name}-verify.json"  # (`atlas verify .` too) the run itself:
            raise AtlasError(  # check_output_file's "a file in it" would be refused here next (a trial)
                f"--json: {json_out} is inside the run {args.run_dir}; write it outside, e.g. {beside}"
            )
        here = Path(os.path.realpath(check_output_file(json_out, "--json")))
        json_out = str(here)  # ~ expanded
        here.unlink(missing_ok=True)  # an earlier result there is never read as this one's (a review)
    report, code = _verify(args)
    write_json(json_out, _record(report, code, args))
    return code


def _record(report, code: int, args: argparse.Namespace) -> dict:
    """``--json``: the result a pipeline reads (a trial had the text alone to parse)."""
    return {
        "run": report.run,
        "status": report.status,
        "planned_shards": report.planned,
        "shards": report.complete,  # after a repair
        "files": report.files,
        "deep": bool(args.deep),
        "deep_rows": report.deep_rows if args.deep else None,
        "deep_pictures": report.deep_pictures if args.deep else None,
        "bad": dict(sorted(report.bad.items())),
        "failed_units": {s: {"units": n, "error": e} for s, (n, e) in sorted(report.failed.items())},
        "newer_schema": dict(sorted(report.newer.items())),
        "unmarked": report.unmarked,
        "unmarked_shards": report.unmarked_names,
        "config_edited": report.config_edited,
        # a running run's live writer ({"host", "pid"}), null when none holds it (a killed driver) or the
        # run is not running: "writer_alive" tells a monitor the two running cases apart
        "writer": report.writer,
        "writer_alive": report.writer is not None
        if report.status == "running" and report.writer_told
        else None,
        "repaired": sorted(report.repaired),
        "exit_code": code,
    }


def _unmarked_names(loc, marked: set[str]) -> list[str]:
    """The planned shards not ``marked``, by id, from the plan run.json records (its units' groups and
    ``ray.units_per_shard``: the ids `atlas run` gives them); [] where it records none (an older run)."""
    from atlas.errors import AtlasError
    from atlas.pipeline.plan import plan_groups
    from atlas.store.manifest import read_manifest

    manifest = read_manifest(loc)
    groups = manifest.get("unit_groups")
    per = ((manifest.get("config") or {}).get("ray") or {}).get("units_per_shard", 16)
    if not isinstance(groups, dict) or not isinstance(per, int) or isinstance(per, bool) or per < 1:
        return []
    try:
        planned = [shard.id for shard in plan_groups(groups, per)]
    except (AtlasError, TypeError, ValueError):  # a damaged plan: the count alone
        return []
    return [shard for shard in planned if shard not in marked]


def _verify(args: argparse.Namespace):
    """(the report, the exit code), with the text lines printed."""
    from atlas.store.location import open_location
    from atlas.store.lock import RunLock
    from atlas.store.verify import verify_run

    loc = open_location(args.run_dir, what="RUN")
    report = verify_run(loc, repair=args.repair, deep=args.deep)
    if report.status == "running":  # a live writer, or a driver that died (the lock tells them apart)
        untold: dict = {}
        report.writer = RunLock(loc).holder(untold=untold)
        if report.writer is untold:
            report.writer, report.writer_told = None, False
    if report.unmarked:  # the markers the check found: a repair's removals are its own line
        report.unmarked_names = _unmarked_names(loc, report.marked)
    _say_problems(report)
    of = f" of {report.planned} planned" if report.planned is not None else ""
    print(
        f"{report.run}: {report.complete}{of} shards complete, {report.files} files checked"
        + (
            f" (deep: {report.deep_rows:,} rows read page by page, {report.deep_pictures:,} pictures decoded)"
            if args.deep
            else ""
        )
        + f", {len(report.bad)} bad"
        + (f", {len(report.failed)} with failed units" if report.failed else "")
        + (
            f", {len(report.repaired)} marker{'s' if len(report.repaired) != 1 else ''} removed"
            if report.repaired
            else ""
        )
    )
    pending = _pending_shards(report)
    if pending:
        print(pending)
    damaged = bool(report.bad or report.unmarked or report.failed)
    if (report.newer or report.config_edited) and not damaged:
        return report, 1  # not verified, and nothing --repair mends
    if damaged and not args.repair:
        fixed = "once the units' error is fixed, " if report.failed and not report.bad else ""
        deep = " --deep" if args.deep else ""  # what only the deep check saw, only a deep repair sees
        print(f"{fixed}run `atlas verify {args.run_dir}{deep} --repair`, then the same `atlas run` to redo "
              "them")  # fmt: skip
    elif damaged:
        print("marked incomplete: the same `atlas run` redoes the missing shards")
    if getattr(args, "complete", False) and report.status != "complete":  # a trial's script read the text
        print(f"not complete: the run is {report.status or 'of unknown status'} (--complete)")
        return report, 1
    return report, 1 if (damaged and not args.repair) or report.config_edited else 0
