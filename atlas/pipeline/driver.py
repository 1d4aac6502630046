"""The driver: validate, plan, start resident-model actors, dispatch shards, survive failures.

``run_atlas(cfg)``:

1. builds the models once on the driver's CPU to validate specs, weights, layers and units (a bad
   config fails here, before any actor starts and before anything is written);
2. resolves the run's location (a local path or a URI, :mod:`atlas.store.location`) and reads which shards
   are already complete;
3. connects to Ray (``--address`` / ``RAY_ADDRESS`` / ``ray job submit``; else a local instance), refuses a
   local path on a multi-node cluster and actor requests no node can host, checks the location is
   writable, then writes ``run.json`` (a different config in the same run is refused);
4. ships models, judge and real images to the actors through Ray's object store (no node needs a cache
   or weight files) and keeps the actors busy (:mod:`atlas.pipeline.dispatch`): lost shards are
   re-queued, actor deaths counted, and a shard's first completed attempt is the one read (its marker names
   its files), so nothing is lost or duplicated.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shlex
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import torch

from atlas.config import RunConfig, config_data_hash, replace
from atlas.errors import AtlasError, ConfigError, Interrupted, Terminated
from atlas.models import LayerProbe, example_input
from atlas.pipeline.models_setup import RunModels, ShippedBundle, WorkerBundle, build_bundle, build_models
from atlas.pipeline.plan import Shard, plan_groups, unit_groups
from atlas.pipeline.preflight import preflight_config, preflight_models
from atlas.pipeline.progress import UnitCount, progress_bar
from atlas.provenance import git_sha, short_sha
from atlas.sampling.units import layer_kind
from atlas.store import RunStore
from atlas.store.catalog import check_run, damage_line, damage_of
from atlas.store.location import Location, open_location
from atlas.store.lock import RunLock
from atlas.store.manifest import SUMMARY_FILE, marker_readable, read_json, read_markers
from atlas.store.writer import code_changes, run_growth
from atlas.tables import counted
from atlas.toyworld.cache import cache_root
from atlas.uri_filesystem import is_remote, scheme_of


def config_hash(cfg: RunConfig) -> str:
    """The hash of what a config computes (its :data:`NON_RESULT_SECTIONS` left out)."""
    return config_data_hash(cfg.to_dict())


def versions() -> dict[str, str]:
    import atlas

    out = {"atlas": atlas.__version__, "python": platform.python_version(), "torch": torch.__version__}
    try:
        import ray

        out["ray"] = ray.__version__
    except ImportError:
        pass
    return out


@dataclass
class LayerPlan:
    name: str
    kind: str
    shape: tuple[int, ...]
    units: list[int]


def resolve_layers(
    cfg: RunConfig, models: RunModels, shapes: dict[str, tuple[int, ...]] | None = None
) -> list[LayerPlan]:
    """Each configured layer's kind, shape and units (checked against its size before expanding).

    ``shapes`` (layer -> activation shape without the batch dimension) comes from pre-flight's probe;
    without it one CPU forward pass measures them."""
    target = models.target
    if shapes is None:
        names = [layer.name for layer in cfg.layers]
        with torch.no_grad():
            acts = LayerProbe(target.module, names)(example_input(target))
        shapes = {n: tuple(acts[n].shape[1:]) for n in names}
    plans = []
    for i, layer in enumerate(cfg.layers):
        shape = tuple(shapes[layer.name])
        kind = layer_kind(layer.name, shape, target.output_layer, layer.kind, f"layers.{i}")
        units = layer.units.resolve(shape[0], f"layers.{i}.units", layer.name)
        composites = layer.composites(shape[0], f"layers.{i}.")  # units U, U+1, ... (objectives)
        units = list(units) + [shape[0] + k for k in range(len(composites))]
        plans.append(LayerPlan(layer.name, kind, shape, units))
    return plans


RAY_WORKING_DIR_CACHE = "runtime_resources/working_dir_files"


def run_location(cfg: RunConfig) -> Location:
    """Where this run lives: ``<out_dir>/<name>`` on its filesystem (local path or URI)."""
    out = cfg.out_dir
    if not is_remote(out):
        local = Path(out.removeprefix("file://")).expanduser()
        where = (Path.cwd() / local) if not local.is_absolute() else local
        if RAY_WORKING_DIR_CACHE in where.as_posix():  # relative under `ray job submit`, or $PWD inside it
            raise ConfigError(
                f"out_dir: {out!r} lands in Ray's temporary copy of the job's working directory "
                f"({where}), which Ray deletes; give a URI or a folder outside the job, e.g. "
                "--set out_dir=s3://bucket/atlas or --set out_dir=/mnt/shared/atlas (a mount every node has)"
            )
    storage = cfg.storage.object_store_options()
    if scheme_of(out) == "s3" and not storage.get("endpoint_override"):  # S3:// too
        # the endpoint this driver finds in its environment travels with the Location to every actor (and
        # the viewer), which would otherwise take theirs: another node may have none, or another one
        env = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if env:
            storage["endpoint_override"] = env
            storage["region"] = (
                storage.get("region") or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
            )
    return open_location(out, storage).child(cfg.name)


def _completed_shards(
    store: RunStore, existing: dict[str, Any] | None, manifest: dict[str, Any], shards: list[Shard]
) -> set[str]:
    """Ids of the plan's shards the run already holds. Resuming a run (same config) whose completed shards
    this plan cuts otherwise is refused: a shard is named by its layer and index, so under another
    ``ray.units_per_shard`` (or an older atlas's names) skipping or redoing shards by name would lose units
    or write them twice. Each marker's unit range must be its planned shard's; a shard whose marker does not
    read is done again. The same config, or one that adds layers or units, is checked so; a different
    config is refused by the manifest check instead (``existing``: the run's run.json, None for a new run)."""
    if existing is None or not _same_or_extended(existing, manifest):
        return store.completed_shards() & {s.id for s in shards}
    planned = {s.id: (min(s.units), max(s.units)) for s in shards}
    markers = read_markers(store.loc)  # read once: the check and the ids of what is done
    markers = {k: m for k, m in markers.items() if marker_readable(m)}  # unreadable: redone
    for shard_id, marker in sorted(markers.items()):
        units = marker.get("units")
        if shard_id in planned and (units is None or tuple(units) == planned[shard_id]):
            continue
        size = existing.get("units_per_shard")
        hint = f"--set ray.units_per_shard={size}" if size else "the ray.units_per_shard it was made with"
        held = f" (units {units[0]}-{units[1]})" if units else ""
        raise ConfigError(
            f"run {store.loc.display()}: its shard {shard_id}{held} is cut otherwise under "
            f"ray.units_per_shard={manifest['units_per_shard']}; resume with {hint}, or use a new run name "
            "(--set name=...)"
        )
    return set(markers)


def _check_held_shards(loc: Location, done: set[str]) -> None:
    """A shard the resumed run holds (its marker reads) whose file was lost or cut while the run was
    stopped: refused now, naming the repair, not after the rest ran (a trial: 11 shards ran, then the run
    ended "damaged"). A marker that does not read is no damage here: its shard is simply done again."""
    if not done:
        return
    damage = {shard: what for shard, what in damage_of(loc).items() if shard in done}
    if damage:
        raise AtlasError(damage_line(loc, damage))


def _same_or_extended(existing: dict[str, Any], manifest: dict[str, Any]) -> bool:
    """Whether ``manifest`` resumes the run of manifest ``existing`` or adds layers or units to it (and
    nothing else: :func:`atlas.store.writer.run_growth`)."""
    if existing.get("config_hash") == manifest["config_hash"]:
        return True
    _added, differ, left_out = run_growth(existing, manifest)
    return not differ and not left_out  # nothing differs: an older atlas's hash of the same config


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr)


def run_atlas(
    cfg: RunConfig,
    *,
    address: str | None = None,
    log=print,
    progress: bool = True,
    warn=_to_stderr,
    allow_code_change: bool = False,
) -> dict[str, Any]:
    """Build (or finish) the atlas a config describes; returns the run summary. ``log`` takes progress
    lines, ``warn`` warnings (stderr: stdout stays the summary); ``allow_code_change``: resume a run
    whose networks' own code changed since (:func:`atlas.store.writer.resume_problem`)."""
    started = time.perf_counter()
    for warning in preflight_config(cfg, address=address):  # before any model loads or toy world trains
        warn(f"atlas: warning: {warning}")
    models = build_models(cfg)
    checked = preflight_models(cfg, models)
    for warning in checked.warnings:
        warn(f"atlas: warning: {warning}")
    if checked.contiguous_only:  # a forward that needs contiguous memory (x.view of a conv output)
        cfg = replace(cfg, compute=replace(cfg.compute, channels_last=False))
    layers = resolve_layers(cfg, models, checked.layer_shapes)
    loc = run_location(cfg)
    store = RunStore(loc)
    store.check_own_folder()  # before Ray starts: a folder of other files is no run to write into
    existing = store.manifest()  # read once: the held unit groups and the completed shards
    held = (existing or {}).get("unit_groups") or {}  # a layer whose selection grew keeps its cut
    groups = {lp.name: unit_groups(held.get(lp.name), lp.units) for lp in layers}
    shards = plan_groups(groups, cfg.ray.units_per_shard)
    total_units = sum(len(s.units) for s in shards)
    manifest = {
        "config": cfg.to_dict(),
        "config_hash": config_hash(cfg),
        "fingerprints": models.fingerprints(),
        "versions": versions(),
        "git_sha": git_sha(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "planned_shards": len(shards),
        "planned_units": total_units,
        "layers": [
            {"name": lp.name, "kind": lp.kind, "shape": list(lp.shape), "units": len(lp.units)}
            for lp in layers
        ],
        "chains_per_unit": cfg.sampler.chains_per_unit,
        "units_per_shard": cfg.ray.units_per_shard,  # shard ids depend on it: a resume must keep it
        "run_token": uuid.uuid4().hex[:16],  # this driver's: each worker checks it sees this run.json
        "method": cfg.sampler.method,
        "output_layer": checked.output_layer,
        "facet_layer": checked.facet_layer,
        "code_layer": checked.code_layer,
        "unit_groups": groups,  # each layer's units, in the groups the run took them (plan.unit_groups)
    }
    done = _completed_shards(store, existing, manifest, shards)
    todo = [s for s in shards if s.id not in done]
    if not todo:  # every shard done: the run's own summary stays what its last work wrote
        previous, existing = _previous_summary(loc), store.manifest()
        if existing is not None and existing.get("status") == "complete" and previous:
            summary = previous  # a complete run stays as it is: nothing written, so no lock (read-only media)
            store.check_resume(manifest, existing, allow_code_change, computes=False)
            check_run(loc)  # but a damaged one (a file gone) says so, and names the repair
        else:  # all shards done but never finished (stopped after the last one): finish it
            with RunLock(loc):
                previous = _previous_summary(loc)
                wall = time.perf_counter() - started
                summary = previous or _summarize(cfg, loc, shards, [], wall, len(shards))
                store.init_run(manifest, allow_code_change)
                _finalize(store, summary)
        totals, failed = _marker_tallies(read_markers(loc))  # failed units: the exit code that made them
        this_call = {"shards_run": 0, "shards_skipped": len(shards), "errors": failed, "nothing_to_do": True}
        return {**summary, "run_dir": loc.display(), "run_totals": totals, **this_call}
    bundle = partial(_make_bundle, cfg, models, manifest)  # made under the lock
    lock = RunLock(loc)
    lock.check_free()  # a run another driver is writing: refused before Ray starts
    _check_resume_early(store, manifest, allow_code_change)
    _check_held_shards(loc, done if existing is not None else set())  # a lost run.json: adopted below

    def finish(summaries: list[dict[str, Any]], ran: list[Shard]) -> dict[str, Any]:
        wall = time.perf_counter() - started
        summary = _summarize(cfg, loc, shards, summaries, wall, skipped=len(shards) - len(ran))
        _finalize(store, summary)
        return summary

    try:
        args = (cfg, store, lock, manifest, bundle, todo, total_units, address, log, progress, finish)
        return _dispatch(*args, allow_code_change=allow_code_change)
    except (KeyboardInterrupt, BrokenPipeError, AtlasError) as exc:
        stopped = _stopped(store, lock, len(shards), exc)
        if stopped is exc:
            raise
        raise stopped from None
    finally:
        lock.release()


PRECISION_RECORD = "cpu-precision.json"  # in the atlas cache: compute.autocast auto's answer per CPU kind


def _check_resume_early(store: RunStore, manifest: dict[str, Any], allow_code_change: bool) -> None:
    """Another config, other weights or other network code in the run: refused before Ray starts (the
    same check runs again under the run's lock, :meth:`RunStore.init_run`)."""
    existing = store.manifest()
    if existing is not None:
        store.check_resume(manifest, existing, allow_code_change)


def _make_bundle(cfg: RunConfig, models: RunModels, manifest: dict[str, Any]) -> WorkerBundle:
    """Judge, attribute reader and real images, resolved once (under the run's lock: a driver that cannot
    have the run does not load them); the reader's fingerprint goes into ``manifest``."""
    made = build_bundle(cfg, models)
    if made.reader is not None:  # provenance of the label_shown columns
        r = made.reader
        reader = {"spec": r.spec, "weights": r.weights, "fingerprint": r.fingerprint}
        manifest["fingerprints"]["reader"] = reader
    return made


def _cpu_autocast(store: RunStore, machine_record: Path | None = None) -> dict[str, str]:
    """``autocast: auto``'s answer per CPU kind for the run's CPU workers (``run_compute``): what the run
    recorded before (a resume keeps its precision), plus this machine's if new, as ``machine_record`` keeps
    it (:func:`atlas.sampling.compute.machine_cpu_autocast`: every run on a machine alike)."""
    from atlas.sampling.compute import cpu_kind, machine_cpu_autocast

    recorded = (store.manifest() or {}).get("cpu_autocast")
    decided = dict(recorded) if isinstance(recorded, dict) else {}
    kind = cpu_kind()  # reads /proc/cpuinfo
    if kind not in decided:
        decided[kind] = machine_cpu_autocast(machine_record)
    return decided


def _still_to_do(store: RunStore, todo: list[Shard]) -> list[Shard]:
    """``todo`` less the shards completed since it was planned (by a driver that held the run then). A
    marker that does not read stays to do, as the plan had it (:func:`_completed_shards`): counted done
    here, a trial's garbage marker made "4 of 4 shards already complete" and a run that failed at its end."""
    done = store.completed_shards()
    if not done & {s.id for s in todo}:
        return todo
    readable = {k for k, m in read_markers(store.loc).items() if marker_readable(m)}
    return [s for s in todo if s.id not in readable]


def _dispatch(
    cfg: RunConfig,
    store: RunStore,
    lock: RunLock,
    manifest: dict[str, Any],
    make_bundle: Callable[[], WorkerBundle],
    todo: list[Shard],
    total_units: int,
    address: str | None,
    log,
    progress: bool,
    finish: Callable[[list[dict[str, Any]], list[Shard]], dict[str, Any]],
    allow_code_change: bool = False,
) -> dict[str, Any]:
    """Start (or join) Ray, take the run's lock, run ``todo``'s shards still to do then on an actor pool,
    and ``finish(the shards' summaries, the shards it ran)`` -> the run's summary.

    ``finish`` (the summary and the run's completion) runs before Ray's teardown (the actors killed, a
    local instance shut down): Ray's shutdown sets SIGTERM back to the default below Python for about a
    second, and a SIGTERM then ended the process in silence with the run left "running"; now a run that
    is done is marked so first."""
    import ray

    from atlas.pipeline import cluster
    from atlas.pipeline.dispatch import run_pool
    from atlas.pipeline.worker import AtlasWorker

    loc = store.loc
    loc.check_writable()  # the driver writes run.json: a bad out_dir is an error before Ray starts
    # SIGTERM while Ray starts is Ctrl-C (exit 143); one that Ray's start holds in C++ ends the process
    starting = cluster.stop_on_sigterm(checked=True, escape_s=cluster.START_ESCAPE_S)
    try:
        owned = cluster.connect(address)  # its SIGTERM raises Terminated: exit 143, Ray shut down
    except BaseException:
        starting.restore()
        raise
    starting.settle()
    sigterm = cluster.stop_on_sigterm(checked=True)  # again after ray.init, which sets its own; both put back
    try:
        starting.check()  # a Ctrl-C that Python dropped while Ray started its processes (SigtermGuard)
        cluster.check_storage(cfg, loc.local, loc.display())
        layout = cluster.plan_layout(cfg, len(todo))
        if cfg.compute.autocast == "fp16" and not layout.gpus:
            raise ConfigError(
                "compute.autocast: fp16 needs GPU workers and this cluster has none; use bf16 or auto"
            )
        cluster.check_device(cfg, layout)
        cluster.check_feasible(cfg, layout)
        layout = cluster.reserve_memory(cfg, layout)  # a configured one no node gives: refused before loading
        lock.acquire()  # one writer per run (released on crash); after the checks: bad input writes nothing
        todo = _still_to_do(store, todo)  # what another driver finished before this one got the lock
        bundle = make_bundle()
        layout = cluster.reserve_memory(cfg, layout, bundle.tensor_bytes())  # an estimate: from the models
        if cfg.compute.autocast == "auto" and not layout.gpus:
            record = cache_root(cfg.toyworld.cache_dir) / PRECISION_RECORD
            manifest["cpu_autocast"] = _cpu_autocast(store, record)
        # the first write of the run (a resume: the run.json it found)
        earlier = store.init_run(manifest, allow_code_change)
        for change in code_changes(earlier or {}, manifest):
            log(f"atlas: warning: resuming with other code of the {change} (--allow-code-change)")
        done_units = total_units - sum(len(s.units) for s in todo)
        _say_resume(loc, earlier, manifest, len(todo) if done_units else None, log)
        _say_other_code((earlier or {}).get("git_sha"), manifest.get("git_sha"), log)
        log(
            f"atlas run {cfg.name}: {len(todo)} shard{'s' if len(todo) != 1 else ''}, "
            f"{counted(total_units - done_units, 'unit')} to go, "
            f"on {layout.describe()}" + (f"\natlas: warning: {layout.note}" if layout.note else "")
        )
        # models, judge, real images: once into the object store, held for the workers (kept alive here)
        shipped, holder = ShippedBundle.put(cfg, bundle, f"atlas-bundle-{manifest['run_token']}")
        actors: list[Any] = []
        bar = None
        interrupted = False
        try:  # from the holder's start: whatever fails after it, the holder and workers are killed
            remote = ray.remote(AtlasWorker).options(
                num_cpus=layout.cpus,
                num_gpus=layout.gpus,
                memory=layout.memory or None,
                max_restarts=cfg.ray.max_restarts,
                max_task_retries=0,
            )
            args = (cfg.to_dict(), loc, layout.threads, shipped, manifest["run_token"])
            # a setup that fails is told by the probe: raised in the constructor, Ray printed its traceback
            actors = [remote.remote(*args, report_setup_failure=True) for _ in range(layout.actors)]
            bar = progress_bar(total_units, done_units, cfg.name) if progress else None
            count = UnitCount(bar)
            report = run_pool(
                actors,
                todo,
                max_restarts=cfg.ray.max_restarts,
                max_shard_retries=cfg.ray.max_shard_retries,
                start_timeout_s=cfg.ray.start_timeout_s,
                stall_timeout_s=cfg.ray.stall_timeout_s,
                on_result=lambda r: count.shard_done(r["shard"], r["units"]),
                on_poll=_Polled(
                    [sigterm.check]  # a dropped Ctrl-C is raised at the next poll (SigtermGuard)
                    + ([_ReportsInside(holder, count.inside)] if bar is not None else [])
                ),
                log=log,
                each_actor=layout.each(),
            )
            _pool_done(report, bar, log)
            return finish(report.summaries, todo)  # the run complete before Ray's teardown (docstring)
        except (KeyboardInterrupt, BrokenPipeError):  # Ctrl-C, SIGTERM (Terminated), the output gone
            interrupted = True
            raise
        finally:
            if bar is not None:
                with contextlib.suppress(OSError):  # its output gone (`| head`): the actors still end
                    bar.close()
            _end_actors(store, [*actors, holder], interrupted, owned)
    except KeyboardInterrupt:
        if sigterm.received:  # Ray's wait re-raised it as a plain KeyboardInterrupt
            raise Terminated from None
        raise
    finally:
        if owned:
            cluster.shutdown_local()
        sigterm.restore()
        starting.restore()


def _end_actors(store: RunStore, actors: list[Any], interrupted: bool, owned: bool) -> None:
    """Kill the run's actors (the holder too: a handle a traceback keeps would keep it), the handles held
    until Ray says each is dead: dropped sooner, an actor could exit gracefully instead, and that can hang.

    An interrupted run is marked so before Ray's teardown, so a grace period that ends in SIGKILL does not
    leave it "running"; when the signal reached its own local instance too (a SIGTERM to the process group:
    its GCS and raylet, shutting down, carry no ``ray.kill``, and the run took 17-34 s to stop while its
    workers went on writing shards), that instance's processes are ended at once."""
    from atlas.pipeline import cluster

    if interrupted:
        with contextlib.suppress(AtlasError, OSError):
            store.mark_interrupted()
    ended = interrupted and owned and cluster.local_instance_signalled()
    if ended:
        cluster.end_local_instance()
    cluster.kill_actors(actors, timeout_s=0.0 if ended else 10.0)


def _say_resume(
    loc: Location, earlier: dict[str, Any] | None, manifest: dict[str, Any], todo: int | None, log
) -> None:
    """Say which layers and units a config adds to the run (``earlier``: its run.json), and how many of
    its planned shards are complete when ``todo`` (the shards still to do) is given."""
    added = run_growth(earlier, manifest)[0] if earlier is not None else []
    if added:
        log(f"extending {loc.display()} with {', '.join(added)}")
    if todo is not None:
        planned = manifest["planned_shards"]
        log(f"resuming {loc.display()}: {planned - todo} of {planned} shards already complete")


def _say_other_code(started_at: str | None, now: str | None, log) -> None:
    """Warn when a run is resumed by other code than the one that started it (both known)."""
    if started_at and now and started_at != now:
        log(
            f"atlas: warning: the run was started by code at git {short_sha(started_at)} and resumes at "
            f"{short_sha(now)}: its shards come from both (run.json: git_sha, resumed_git_sha)"
        )


class _Polled:
    """Each of ``calls`` at every poll of the pool, in order."""

    def __init__(self, calls: list[Callable[[], None]]) -> None:
        self.calls = calls

    def __call__(self) -> None:
        for call in self.calls:
            call()


class _ReportsInside:
    """Called at each poll of the pool: hands ``use`` the holder's latest report of the units finished
    inside running shards, without waiting (one question in flight; its answer is used at a later poll)."""

    def __init__(self, holder: Any, use: Callable[[dict[str, int]], None]) -> None:
        self.holder, self.use, self.asked = holder, use, None

    def __call__(self) -> None:
        import ray

        if self.asked is not None:
            ready, _ = ray.wait([self.asked], timeout=0)
            if not ready:
                return
            try:
                self.use(ray.get(self.asked))
            except ray.exceptions.RayError:  # the holder is gone: the bar moves per shard
                return
        self.asked = self.holder.progress.remote()


def _pool_done(report: Any, bar: Any, log) -> None:
    """The progress bar closed (closing it again is a no-op) and the worker deaths the pool survived said."""
    if bar is not None:
        bar.close()
    if report.deaths or report.not_back:
        deaths = report.deaths + report.not_back
        log(f"{deaths} worker death(s) survived; {report.requeued} shard(s) re-queued")
    if report.not_back:  # lost (a node or process gone, or killed as hung) and not back: finished without
        n = report.not_back
        log(
            f"atlas: warning: {n} worker{'s' if n != 1 else ''} lost during the run had not come back when "
            "it ended (restarting, or a node gone for good: the lines above say which); the others did "
            "their shards"
        )
    if report.dead_actors:  # the run finished on fewer actors than it asked for: said at the end too
        n = report.dead_actors
        log(
            f"atlas: warning: {n} worker{'s' if n != 1 else ''} ended dead (their lines above say why); the "
            f"others did their shards"
        )


def _finalize(store: RunStore, summary: dict[str, Any]) -> None:
    """Mark the run complete, unless a shard counted done is damaged (a file its marker names was lost
    while the run was stopped): then it stays ``incomplete`` and the error names the repair."""
    try:
        check_run(store.loc)
    except AtlasError:
        store.mark_interrupted("incomplete")
        raise
    store.finalize(summary)


PIPE_CLOSED = "its output pipe closed"
PIPE_CLOSED_EARLY = f"stopped: {PIPE_CLOSED} before the run started; nothing was written"


DISK_FULL = ("No space left on device", "Disk quota exceeded")  # ENOSPC, EDQUOT as storage errors say them


def _stopped(store: RunStore, lock: RunLock, planned: int, exc: BaseException) -> BaseException:
    """What a run stopped by ``exc`` raises, its run.json marked under the run's lock only (before, the
    run.json may be another driver's): an error leaves it ``incomplete``; Ctrl-C, SIGTERM and a closed output
    pipe (the reader of `| head` gone: SIGPIPE's exit status 141, never a success) ``interrupted``."""
    if isinstance(exc, AtlasError):
        notes = []
        if any(full in str(exc) for full in DISK_FULL):  # a trial: nothing said how to go on
            notes.append("free space there (or choose another out_dir) and the same `atlas run` resumes")
        if lock.held:  # a run that failed is not left saying "running"
            try:
                store.mark_interrupted("incomplete")
            except (AtlasError, OSError):  # a store out of reach, a full disk: the first error stands
                notes.append("run.json could not be marked incomplete either and still says running")
        if notes:
            exc.args = (f"{exc}; {'; '.join(notes)}", *exc.args[1:])  # its type and exit status kept
        return exc
    if isinstance(exc, BrokenPipeError):
        if not lock.held:
            return Interrupted(PIPE_CLOSED_EARLY, 141)
        return _interrupted(store, planned, 141, why=PIPE_CLOSED)
    if not lock.held:
        return exc
    return _interrupted(store, planned, getattr(exc, "exit_code", 130))


def _interrupted(store: RunStore, planned: int, exit_code: int = 130, why: str = "") -> Interrupted:
    """Ctrl-C, SIGTERM or a closed output (``why``): mark the run interrupted (the viewer stops waiting for
    shards) and say how to finish it."""
    made = _interrupted_message(store, planned)
    return Interrupted(made.replace("interrupted", f"interrupted ({why})", 1) if why else made, exit_code)


def _interrupted_message(store: RunStore, planned: int) -> str:
    try:
        done = len(store.completed_shards())
        finished = (store.manifest() or {}).get("status") == "complete"
        store.mark_interrupted()  # a running run only
    except (AtlasError, OSError):  # the interrupt is what matters; the marking is a courtesy
        return "interrupted; the same `atlas run` resumes from the shards complete so far"
    if finished:  # the signal came while Ray shut down, after the run was marked complete
        shards = f"{done} shard{'s' if done != 1 else ''}"
        return f"interrupted after the run was complete ({shards}): nothing is lost"
    if done >= planned:  # stopped after its last shard, before the run was finished (summary, status)
        return (
            f"interrupted after its last shard ({done} of {planned} complete); the same `atlas run` finishes "
            "the run without sampling again"
        )
    return f"interrupted: {done} of {planned} shards complete; the same `atlas run` resumes from there"


def _run_unit_errors(loc: Location) -> int:
    """Units of the whole run that failed, from its completion markers (``meta.unit_errors``; markers
    written before it count none)."""
    return _marker_tallies(read_markers(loc))[1]


def _marker_tallies(markers: dict[str, dict[str, Any]]) -> tuple[dict[str, int], int]:
    """(rows by table, failed units) summed over a run's completion markers (read once: on an object
    store each is a GET)."""
    totals: Counter[str] = Counter()
    failed = 0
    for marker in markers.values():
        rows = marker.get("rows")
        if isinstance(rows, dict):
            totals.update({str(k): int(v) for k, v in rows.items() if isinstance(v, int)})
        meta = marker.get("meta")
        n = meta.get("unit_errors") if isinstance(meta, dict) else None
        failed += n if isinstance(n, int) and not isinstance(n, bool) else 0
    return dict(totals), failed


def _previous_summary(loc: Location) -> dict[str, Any] | None:
    """The run's ``summary.json`` (its finish time included), or None when it is missing or unreadable."""
    try:
        summary = read_json(loc, SUMMARY_FILE) if loc.is_file(SUMMARY_FILE) else None
    except AtlasError:
        return None
    return summary if isinstance(summary, dict) and "units" in summary else None


def _summarize(
    cfg: RunConfig,
    loc: Location,
    shards: list[Shard],
    summaries: list[dict[str, Any]],
    wall: float,
    skipped: int,
) -> dict[str, Any]:
    rows: Counter[str] = Counter()
    warnings: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    for s in summaries:
        rows.update(s["rows"])
        warnings.update(s.get("warnings", {}))
        failures.update(s.get("error_notes", {}))
    units = sum(s["units"] for s in summaries)
    errors = sum(s["errors"] for s in summaries)
    markers = read_markers(loc)  # read once: on an object store each is a GET
    held = {m["meta"].get("precision") for m in markers.values() if isinstance(m.get("meta"), dict)}
    return {
        "run_dir": loc.display(),
        "endpoint": loc.options.get("endpoint_override"),  # an S3-like store's: readers need it too
        "run_totals": _marker_tallies(markers)[0],  # the whole run's rows (this call's are below)
        "shards": len(shards),
        "shards_run": len(summaries),
        "shards_skipped": skipped,
        "units": units,
        "chains": sum(s["chains"] for s in summaries),
        "images": rows.get("images", 0),
        "rows": dict(rows),
        "errors": errors,
        "diverged": sum(s["diverged"] for s in summaries),
        "warnings": dict(warnings),  # note -> units sampled with it (status ok, `units.error` set)
        "error_notes": dict(failures),  # error's first line -> units that failed with it (status error)
        # the whole run's, this call's shards and those it resumed (a mix: the summary warns)
        "precision": sorted({s.get("precision", "float32") for s in summaries} | (held - {None})),
        "wall_seconds": round(wall, 2),
        "units_per_minute": round(_finished_units(units, errors) / wall * 60, 2) if wall > 0 else None,
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _finished_units(units: int, errors: int) -> int:
    """The units that got pictures (a failed unit is counted in ``units`` too, with no pictures)."""
    return max(units - errors, 0)


def _rate(summary: dict[str, Any]) -> str:
    """``12.0 units/min``, of the units that finished; none finished: say so, not a rate of failures."""
    if summary["units"] and not _finished_units(summary["units"], int(summary.get("errors") or 0)):
        return "no unit finished"
    return f"{summary['units_per_minute'] or 0:.1f} units/min"


def _all_complete(shards: int) -> str:
    """``all 3 shards are complete``; one: ``its 1 shard is complete``."""
    return "its 1 shard is complete" if shards == 1 else f"all {shards} shards are complete"


def _endpoint_env(summary: dict[str, Any]) -> str:
    """``AWS_ENDPOINT_URL=... `` before the commands a summary prints (to paste as they are), or ""."""
    endpoint = summary.get("endpoint")
    return f"AWS_ENDPOINT_URL={shlex.quote(str(endpoint))} " if endpoint else ""


def format_summary(summary: dict[str, Any]) -> str:
    """The run's summary for the terminal (stdout); its failed units are :func:`failure_lines` (stderr)."""
    env = _endpoint_env(summary)
    if summary.get("nothing_to_do"):
        run = shlex.quote(str(summary["run_dir"]))
        rows = summary.get("run_totals") or {}
        counts = ", ".join(counted(rows.get(k, 0), k[:-1]) for k in ("units", "chains", "images"))
        return "\n".join(
            [
                f"atlas: nothing to do: {_all_complete(summary['shards'])} of {summary['run_dir']} "
                f"({counts}; finished {summary.get('finished', '?')})",
                f"  browse: {env}atlas view {run}",
                f'  query:  {env}atlas sql {run} "SELECT layer, count(*) FROM units GROUP BY layer"',
            ]
        )
    lines = [
        f"atlas: {counted(summary['units'], 'unit')}, {counted(summary['chains'], 'chain')}, "
        f"{counted(summary['images'], 'image')}, "
        f"{sum(summary['rows'].values())} rows in {summary['wall_seconds']:.1f} s "
        f"({_rate(summary)})",
        f"  shards: {summary['shards_run']} run, {summary['shards_skipped']} already complete, "
        f"of {summary['shards']}; diverged chains: {summary['diverged']}; unit errors: {summary['errors']}"
        + (f"; precision: {', '.join(summary['precision'])}" if summary.get("precision") else ""),
        f"  output: {summary['run_dir']}",
        f"  browse: {env}atlas view {shlex.quote(str(summary['run_dir']))}",
        f"  query:  {env}atlas sql {shlex.quote(str(summary['run_dir']))} "
        '"SELECT layer, count(*) FROM units GROUP BY layer"',
    ]
    if len(summary.get("precision") or []) > 1:
        warning = (
            "  warning: the run's shards were computed in different precisions (compute.autocast: auto picks "
            "bf16 only where a node has native bf16); pin compute.autocast to bf16 or none for one precision"
        )
        lines.insert(2, warning)
    notes = sorted((summary.get("warnings") or {}).items(), key=lambda kv: -kv[1])[:3]  # most units first
    lines[2:2] = [f"  warning: {n} unit{'s' if n != 1 else ''}: {note} (units.error)" for note, n in notes]
    return "\n".join(lines)


def failure_lines(summary: dict[str, Any]) -> list[str]:
    """The run's failed units: this session's by cause (the three commonest) and how to have them redone
    (a rerun of a complete run: how many, and how); [] when none failed. ``atlas run`` says them on stderr
    with its exit status 1 (a trial found the cause on stdout alone)."""
    failed = int(summary.get("errors") or 0)
    if not failed:
        return []
    run = shlex.quote(str(summary["run_dir"]))
    failures = sorted((summary.get("error_notes") or {}).items(), key=lambda kv: -kv[1])[:3]
    said = [f"  error: {n} unit{'s' if n != 1 else ''} failed: {note}" for note, n in failures]
    return [*said, _failed_units_hint(failed, run, _endpoint_env(summary))]


def _failed_units_hint(failed: int, run: str, env: str) -> str:
    """Where a run's failed units are, and how to have them redone once their cause is fixed."""
    return (
        f"  {failed} unit{'s' if failed != 1 else ''} of this run failed (no pictures; {env}atlas sql {run} "
        "\"SELECT layer, unit, error FROM units WHERE status = 'error'\"); once the cause is fixed, "
        f"`{env}atlas verify {run} --repair` and the same `atlas run` redo their shards"
    )
