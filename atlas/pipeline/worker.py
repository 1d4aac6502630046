"""AtlasWorker: the body of a Ray actor, as a plain class (tested without Ray).

It takes the target, generator, DAE, judge, attribute reader and real images once (shipped by the driver as a
:class:`~atlas.pipeline.models_setup.WorkerBundle`, or built here when none is given), keeps them resident
on its device, and turns shards into Parquet in the run's store (a local path or a URI)::

    worker = AtlasWorker(cfg.to_dict(), "runs/demo")            # or "s3://bucket/atlas/demo"
    summary = worker.run_shard(Shard("fc8-00000", "fc8", (0, 1, 2)))
"""

from __future__ import annotations

import json
import os
import socket
import time
import traceback
from collections import Counter
from collections.abc import Callable
from typing import Any

import torch

from atlas.config import ComputeConfig, config_from_dict
from atlas.errors import AtlasError, RunFailed, WorkerSetupError, error_line, first_line
from atlas.pipeline.holder import end_before_rays_exit_handler
from atlas.pipeline.models_setup import ShippedBundle, WorkerBundle, build_bundle, make_engine
from atlas.pipeline.plan import Shard
from atlas.pipeline.rows import merge_rows, unit_rows
from atlas.sampling.compute import cpu_kind, resolve_device
from atlas.sampling.peers import passes_per_image
from atlas.sampling.results import UnitResult
from atlas.store import RunStore
from atlas.store.location import Location, read_patiently
from atlas.toyworld.judging import Judge, judge_verdict
from atlas.toyworld.reading import Reader, ReaderVerdict, reader_verdict

WORKERS_DIR = "_workers"
TOKEN_RETRY_S = (0.5, 1.0, 2.0, 4.0)  # before a worker decides it cannot see the run


def check_run_reachable(store: RunStore, run_token: str) -> dict[str, Any]:
    """Refuse to work on a run this node cannot see: the driver wrote ``run.json`` with ``run_token``
    before it started the actors, so a worker that finds no such file (another node's local disk, a mount
    missing here, an object store it reaches under other settings) would write where nobody reads.
    Returns that run.json."""
    where = f"{store.loc.display()} from {socket.gethostname()}"

    def read() -> dict[str, Any] | None:
        try:
            return store.manifest()
        except Exception as exc:  # noqa: BLE001 - any storage error: the node cannot read the run
            how = _REACH if store.loc.local else _REACH_STORE  # on an object store already: its access
            raise AtlasError(f"out_dir: cannot read the run {where} ({first_line(exc)}); {how}") from None

    manifest = read_patiently(
        read, lambda m: m is not None and m.get("run_token") == run_token, TOKEN_RETRY_S
    )
    if manifest is not None and manifest.get("run_token") == run_token:
        return manifest
    if manifest is None:
        raise AtlasError(f"out_dir: this worker finds no run.json at {where}; {_REACH}")
    raise AtlasError(  # two drivers started on one object-store run in the same second: both took its lock
        f"out_dir: this worker finds another run's run.json at {where}: another `atlas run` of this run "
        f"started at the same moment and writes it now (let it finish), or the nodes see different "
        f"storage: {_REACH}"
    )


_REACH_STORE = (
    "every node needs read and write access to the store: its credentials (AWS_* / GOOGLE_APPLICATION_"
    "CREDENTIALS, or an instance role) on the worker nodes too, and the same storage settings"
)
_REACH = (
    "every node must reach out_dir: use an object store (s3://, gs://) or a mount every node shares "
    "(storage.shared: true), with the same storage settings on every node"
)


def run_compute(
    compute: ComputeConfig, device: torch.device, manifest: dict[str, Any] | None
) -> ComputeConfig:
    """``compute`` with ``autocast: auto`` settled as the run recorded it for this CPU's kind (run.json's
    ``cpu_autocast``, :func:`atlas.sampling.compute.cpu_kind`): one precision for every CPU worker of a kind,
    whatever the load when each measures. A kind the run has not recorded measures for itself."""
    if compute.autocast != "auto" or device.type != "cpu":
        return compute
    decided = ((manifest or {}).get("cpu_autocast") or {}).get(cpu_kind())
    return compute.model_copy(update={"autocast": decided}) if decided in ("bf16", "none") else compute


class AtlasWorker:
    def __init__(
        self,
        config: dict[str, Any],
        run: str | Location,
        threads: int | None = None,
        bundle: WorkerBundle | ShippedBundle | None = None,
        run_token: str | None = None,
        report_setup_failure: bool = False,
    ) -> None:
        """``run_token``: the driver's token in the run's ``run.json``; given, the worker first checks
        that it sees that run from its node (:func:`check_run_reachable`). ``report_setup_failure`` (the
        driver's actors): a setup that fails with an atlas error is kept and told by :meth:`ready`
        instead of raised, since Ray forwards a constructor's exception to the driver's console as a
        traceback from every actor (a user's trial: six lines each on top of the run's one-line error)."""
        end_before_rays_exit_handler()  # as a Ray actor: a graceful exit cannot hang in Ray's handler
        self.setup_error: AtlasError | None = None
        try:
            self._construct(config, run, threads, bundle, run_token)
        except AtlasError as exc:
            if not report_setup_failure:
                raise
            self.setup_error = exc

    def _construct(
        self,
        config: dict[str, Any],
        run: str | Location,
        threads: int | None,
        bundle: WorkerBundle | ShippedBundle | None,
        run_token: str | None,
    ) -> None:
        self.cfg = config_from_dict(config)
        self.store = RunStore(run)
        reachable = run_token is not None
        manifest = check_run_reachable(self.store, run_token) if reachable else self.store.manifest()
        # each marker names the config that made its shard: a run whose run.json is lost can be resumed
        self.config_hash = (manifest or {}).get("config_hash")
        threads = threads or self.cfg.compute.threads
        if threads:  # this process's torch threads (the core never sets them)
            torch.set_num_threads(max(1, int(threads)))
        started = time.perf_counter()
        try:
            self._set_up(bundle, manifest)
        except AtlasError:
            raise
        except Exception as exc:  # noqa: BLE001 - a user's network fails in many ways
            raise WorkerSetupError(self._setup_failure(exc)) from None
        self.setup_seconds = time.perf_counter() - started
        self._register()

    def _set_up(self, bundle: WorkerBundle | ShippedBundle | None, manifest: dict[str, Any] | None) -> None:
        """Device, models, engine, judge and reader: resident for every shard of the run."""
        self.device = resolve_device(self.cfg.compute.device)
        self.shipped = bundle is not None
        self.holder = None  # the run's BundleHolder, told the units finished inside each shard
        if isinstance(bundle, ShippedBundle):
            self.holder = bundle.holder_handle()
            bundle = bundle.fetch()
        bundle = bundle if bundle is not None else build_bundle(self.cfg)
        self.models = bundle.models
        self.real = bundle.real
        compute = run_compute(self.cfg.compute, self.device, manifest)  # the run's precision (run.json)
        self.engine = make_engine(self.cfg, bundle, self.device, compute)  # prepared: same bits in any order
        self.judge = Judge(bundle.judge, self.device) if bundle.judge is not None else None
        self.reader = Reader(bundle.reader, self.device) if bundle.reader is not None else None

    def _setup_failure(self, exc: BaseException) -> str:
        """``Type: message at file:line`` of a setup that raised; its whole traceback is written to the run's
        ``_workers/<host>-<pid>.traceback.txt`` (every node reaches the run) and named."""
        said = error_line(exc)
        name = _own_file(".traceback.txt")
        try:
            self.store.loc.write_bytes(name, "".join(traceback.format_exception(exc)).encode())
        except (AtlasError, OSError):
            return f"{said} (its traceback: the Ray worker logs)"
        return f"{said} (its traceback: {self.store.loc.display(name)})"

    # ------------------------------------------------------------------------------------------ setup

    def _register(self) -> None:
        """Write <run>/_workers/<host>-<pid>.json so operators (and tests) can find this process, and read
        it back: a node that reads the run but cannot write it whole (a read-only role; a client whose
        uploads the store keeps framed, as moto did for unsigned ones) is refused before any shard's work,
        where its markers were found unreadable once the run had finished (a user's trial)."""
        info = self.describe() | {"setup_seconds": round(self.setup_seconds, 2), "shipped": self.shipped}
        name = _own_file(".json")
        data = json.dumps(info).encode()
        self.store.loc.write_bytes(name, data)
        back = read_patiently(
            lambda: self.store.loc.read_bytes_or_none(name), lambda got: got == data, TOKEN_RETRY_S
        )
        if back != data:
            seen = "nothing" if back is None else f"{len(back)} other bytes"
            raise AtlasError(
                f"out_dir: this worker wrote {len(data)} bytes to {self.store.loc.display(name)} from "
                f"{socket.gethostname()} and reads back {seen}; {_REACH_STORE}"
            )

    def ready(self) -> dict[str, Any]:
        """Answers once the constructor has finished (the driver's liveness probe); a setup that failed
        answers ``setup_error`` (its one line) and ``passing`` (a :class:`RunFailed`: run it again)."""
        if self.setup_error is not None:
            return _whereabouts() | {
                "setup_error": str(self.setup_error),
                "passing": isinstance(self.setup_error, RunFailed),
            }
        return self.describe()

    def pid(self) -> int:
        return os.getpid()

    @property
    def precision(self) -> str:
        """What the forward passes ran in on this worker: 'bfloat16', 'float16' or 'float32'."""
        return self.engine.setup.precision

    def describe(self) -> dict[str, Any]:
        return _whereabouts() | {
            "device": str(self.device),
            "threads": torch.get_num_threads(),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        }

    # ------------------------------------------------------------------------------------------- work

    def _judge_verdict(self, result: UnitResult) -> dict[str, Any] | None:
        """J's verdict on an output unit's pictures (toy world; ``atlas.toyworld.judging``)."""
        if self.judge is None or result.kind != "output":
            return None
        return judge_verdict(self.judge, result.chains, result.unit)

    def _reader_verdict(self, result: UnitResult) -> ReaderVerdict | None:
        """The attribute reader's reading of the unit's pictures: label shown, agreement, decoded concepts
        (toy world; ``atlas.toyworld.reading``)."""
        if self.reader is None or result.status != "ok":
            return None
        label, cell = (result.label.label, result.label.cell) if result.label is not None else (None, None)
        return reader_verdict(self.reader, result.chains, label, cell=cell)

    def run_shard(self, shard: Shard | dict[str, Any]) -> dict[str, Any]:
        """Sample every unit of the shard, write its Parquet files and marker; return a small summary."""
        if self.setup_error is not None:
            raise self.setup_error
        if isinstance(shard, dict):
            shard = Shard(shard["id"], shard["layer"], tuple(shard["units"]))
        started = time.perf_counter()
        layer = next((lc for lc in self.cfg.layers if lc.name == shard.layer), None)
        results = self.engine.map_units(
            shard.layer,
            list(shard.units),
            seed=self.cfg.seed,
            progress=self._progress_teller(shard.id),
            kind=layer.kind if layer else "auto",
            composites=layer.composites() if layer else (),
        )
        s = self.cfg.store
        rows = merge_rows(
            [
                unit_rows(
                    r,
                    shard.id,
                    steps=self.cfg.sampler.steps,
                    passes=passes_per_image(self.cfg.sampler),
                    keep_snapshots=s.keep_snapshots,
                    activations_full_max=s.activations_full_max,
                    activations_top_k=s.activations_top_k,
                    judge=self._judge_verdict(r),
                    reader=self._reader_verdict(r),
                )
                for r in results
            ]
        )
        failed = _unit_errors(results)
        counts = self.store.write_shard(
            shard.id,
            shard.layer,
            rows,
            meta={
                "unit_errors": sum(failed.values()),  # `atlas run` and `atlas verify` say so; --repair redoes
                "seconds": round(time.perf_counter() - started, 3),
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "device": str(self.device),
                "precision": self.precision,
                "batch_size": self.engine.batch_size,  # chains a pass, after any out-of-memory back-off
                "config_hash": self.config_hash,
            },
        )
        return {
            "shard": shard.id,
            "layer": shard.layer,
            "units": len(shard.units),
            "chains": sum(len(r.chains) for r in results),
            "errors": sum(failed.values()),
            "error_notes": failed,
            "warnings": _warnings(results),
            "diverged": sum(c.diverged for r in results for c in r.chains),
            "rows": counts,
            "seconds": time.perf_counter() - started,
            "pid": os.getpid(),
            "precision": self.precision,
        }

    def _progress_teller(self, shard: str) -> Callable[[int], None] | None:
        """``progress(n)`` for ``map_units``: the shard's units finished so far, told to the run's holder
        without waiting (the driver's bar moves inside a shard); None without a holder."""
        if self.holder is None:
            return None
        holder, done = self.holder, [0]

        def tell(n: int) -> None:
            done[0] += n
            holder.shard_progress.remote(shard, done[0])

        tell(0)  # a new attempt of the shard starts from none
        return tell


def _own_file(suffix: str) -> str:
    """This worker's file in the run: ``_workers/<host>-<pid><suffix>``."""
    return f"{WORKERS_DIR}/{socket.gethostname()}-{os.getpid()}{suffix}"


def _unit_errors(results: list[UnitResult]) -> dict[str, int]:
    """Units that failed (no pictures), counted by their error's first line (``units.error``)."""
    return dict(Counter(first_line(r.error or "unknown error") for r in results if r.status != "ok"))


def _warnings(results: list[UnitResult]) -> dict[str, int]:
    """Units that were sampled (status ok) with a note in ``error`` (real images unavailable, every chain
    diverged), counted by note: the run summary shows them, so a run that fell back is not reported clean."""
    notes: Counter[str] = Counter()
    for r in results:
        if r.status == "ok" and r.error:
            notes.update(r.error.split("; "))
    return dict(notes)


def _whereabouts() -> dict[str, Any]:
    """This process: its pid, machine and Ray node (the probe tells a restarted actor by them)."""
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "node": os.environ.get("RAY_NODE_ID") or _ray_node_id(),
    }


def _ray_node_id() -> str | None:
    """The Ray node this process runs on, when it runs under Ray (None otherwise)."""
    try:
        import ray

        if ray.is_initialized():
            return ray.get_runtime_context().get_node_id()
    except ImportError:
        pass
    return None
