"""Keep a pool of resident-model actors busy with shards, and survive actor, node and load trouble.

Why not Ray Data's ``map_batches`` actor pool: see docs/pipeline.md ("Engine choice"). In short, a shard
here is the unit of work *and* of durability (five tables plus a completion marker, written by the actor
that computed them, skipped on resume), and the pool needs just four rules:

1. **Liveness by probe.** An actor gets shards only after its ``ready()`` call returns, i.e. after its
   constructor (models onto the device) finished — however long that takes on a busy node.
2. **Deaths, not lost tasks, are counted.** An actor that dies with two shards in flight died once: each
   actor has a generation; the first failure of a generation starts a new probe (which waits while Ray
   restarts the actor, at most ``ray.max_restarts`` times), later failures of the same generation only
   re-queue their shard. A death is counted when the probe finds a new process (pid), or when Ray says
   the actor is dead for good.
3. **Lost shards go to whoever is alive.** A shard whose actor died is re-queued at the front; an actor
   whose node is gone and cannot be placed again simply never answers its probe while the others finish
   the queue. So is a shard whose files the store did not take for a reason that passes (a timeout,
   throttling: ``StorageUnreachable``). A shard lost more than ``ray.max_shard_retries`` times is poison
   and stops the run.
4. **Bounded waiting.** When no actor is alive and none came back for ``ray.start_timeout_s``, the run
   stops with the reason instead of hanging. A live actor that holds shards and answers nothing for
   ``ray.stall_timeout_s`` (by default ten times the slowest shard so far, at least
   :data:`STALL_FLOOR_S`; counted from when it got work) is hung (a stuck device, a stopped process): it
   is killed, so Ray restarts it, and its shards are re-queued at once (a kill does not always take).

Results are idempotent: a shard computed twice is written twice, never duplicated (each attempt writes
its own files, the first marker names the ones readers take: atlas.store.writer).
"""

from __future__ import annotations

import contextlib
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from atlas.errors import AtlasError, RunFailed, StorageUnreachable, first_line
from atlas.pipeline.plan import Shard

IN_FLIGHT_PER_ACTOR = 2  # the next shard is queued while one is written
POLL_S = 5.0
STALL_FACTOR = 10.0  # a hung actor: silent for this many times the slowest shard so far ...
STALL_FLOOR_S = 300.0  # ... and at least this long
WAIT_NOTE_S = 60.0  # no worker alive this long: the run says they load, or wait for Ray to place them


class HungWorker(Exception):
    """Why a stalled actor's shards were taken back (the cause a shard lost too often names)."""


@dataclass
class _Slot:
    index: int
    handle: Any
    generation: int = 0
    state: str = "starting"  # starting | alive | dead
    deaths: int = 0
    in_flight: int = 0
    pid: int | None = None
    node: str | None = None
    host: str | None = None  # the machine it runs on (where its Ray logs are)
    last_answer: float = 0.0  # time.monotonic() of its last answer (probe or shard)


@dataclass
class PoolReport:
    summaries: list[dict[str, Any]] = field(default_factory=list)
    deaths: int = 0  # actor deaths observed (each restart or final death once)
    requeued: int = 0  # shards re-queued (their actor died or hung, or the store did not take them)
    stalled: int = 0  # hung actors killed (so Ray restarts them)
    dead_actors: int = 0  # actors that ended dead (restarts exhausted or never placed again)
    not_back: int = 0  # actors lost (their process or node) that Ray had not placed again by the end


_TRACEBACK_NOTE = re.compile(r" \(its traceback: [^()]*\)$")  # WorkerSetupError's file, one per worker
_FRAME = re.compile(r'File "([^"]+)", line (\d+)')  # a traceback's frame line, as Ray's error text quotes it


def cause_line(exc: BaseException) -> str:
    """The most telling line of a Ray error: the original exception's last ``Type: message`` line and
    where it was raised (``at my_models.py:12``: the traceback's last frame); an atlas user error: its
    message alone, as the CLI prints it."""
    text = str(exc)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    frames = _FRAME.findall(text)
    where = f" at {Path(frames[-1][0]).name}:{frames[-1][1]}" if frames else ""
    for ln in reversed(lines):
        head, _, message = ln.partition(":")
        if head.endswith(("Error", "Exception")) and " " not in head:
            return message.strip() if head.startswith("atlas.errors.") else ln + where
    return lines[0] if lines else type(exc).__name__


def run_pool(
    handles: list[Any],
    todo: list[Shard],
    *,
    max_restarts: int,
    max_shard_retries: int,
    start_timeout_s: float,
    stall_timeout_s: float = 0.0,
    on_result: Callable[[dict[str, Any]], None] = lambda _r: None,
    on_poll: Callable[[], None] = lambda: None,
    log: Callable[[str], None] = print,
    each_actor: str = "",
) -> PoolReport:
    """Run every shard of ``todo`` on the actors ``handles`` (already created); see the module docstring.
    ``on_result(summary)`` after each shard; ``on_poll()`` after each answer or wait (at most
    :data:`POLL_S` apart). ``each_actor``: what one actor asks of a node (``1 CPU, 3.8 GB``), named when
    none can be placed."""
    limits = (max_restarts, max_shard_retries, start_timeout_s)
    return _Pool(handles, todo, *limits, on_result, log, stall_timeout_s, on_poll, each_actor).run()


class _Pool:
    def __init__(
        self,
        handles: list[Any],
        todo: list[Shard],
        max_restarts: int,
        max_shard_retries: int,
        start_timeout_s: float,
        on_result: Callable[[dict[str, Any]], None],
        log: Callable[[str], None],
        stall_timeout_s: float = 0.0,
        on_poll: Callable[[], None] = lambda: None,
        each_actor: str = "",
    ) -> None:
        self.slots = [_Slot(i, h) for i, h in enumerate(handles)]
        self.pending: deque[Shard] = deque(todo)
        self.refs: dict[
            Any, tuple[str, _Slot, int, Shard | None]
        ] = {}  # ref -> (kind, slot, generation, shard)
        self.attempts: dict[str, int] = {}  # shard id -> times it was lost (actor death, hang, store)
        self.reprobe_at: dict[int, float] = {}  # slot index -> when to ask a restarting actor again
        self.max_restarts, self.max_shard_retries, self.start_timeout_s = (
            max_restarts,
            max_shard_retries,
            start_timeout_s,
        )
        self.on_result, self.on_poll, self.log = on_result, on_poll, log
        self.asks = f" (each asks for {each_actor})" if each_actor else ""  # said when none can be placed
        self.report = PoolReport()
        self.last_alive = time.monotonic()
        self.stall_timeout_s = stall_timeout_s  # 0: from the shards' own times (stall_limit)
        self.slowest_shard_s: float | None = None  # the longest a finished shard took (None: none yet)
        self.said_waiting = False  # the line for a wait for placement, said once
        self.setup_failures_said: set[str] = set()  # each cause of a worker that could not start, said once

    # ------------------------------------------------------------------------------------ sending
    def probe(self, slot: _Slot) -> None:
        slot.state = "starting"
        self.refs[slot.handle.ready.remote()] = ("probe", slot, slot.generation, None)

    def fill(self, slot: _Slot) -> None:
        while slot.state == "alive" and slot.in_flight < IN_FLIGHT_PER_ACTOR and self.pending:
            if slot.in_flight == 0:  # its silence counts from the work it gets: idle, it owed no answer
                slot.last_answer = time.monotonic()
            shard = self.pending.popleft()
            slot.in_flight += 1
            self.refs[slot.handle.run_shard.remote(shard)] = ("shard", slot, slot.generation, shard)

    def shards_in_flight(self) -> int:
        return sum(1 for kind, *_ in self.refs.values() if kind == "shard")

    # ------------------------------------------------------------------------------------ the loop
    def run(self) -> PoolReport:

        for slot in self.slots:
            self.probe(slot)
        self._dispatch()
        # a worker lost with its node that Ray never placed again: the run finished without it (a trial's
        # lost node went unsaid, the slot waiting for a restart to the end)
        self.report.not_back = sum(s.state == "starting" and s.pid is not None for s in self.slots)
        return self.report

    def _dispatch(self) -> None:
        """Hand the shards out and take their answers until none is left to do."""
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

        while self.pending or self.shards_in_flight():
            ref = self._next_ready()
            self.on_poll()
            if ref is None:
                continue
            kind, slot, generation, shard = self.refs.pop(ref)
            try:
                value = ray.get(ref, timeout=60)
            except GetTimeoutError:  # cannot happen for a ready ref; be safe
                self.refs[ref] = (kind, slot, generation, shard)
            except RayActorError as exc:
                self._actor_failed(exc, kind, slot, generation, shard)
            except RayTaskError as exc:
                if not self._write_failed(exc, slot, generation, shard):
                    _task_failed(exc, slot, shard)
            else:
                self._answered(value, kind, slot, generation)

    def _next_ready(self) -> Any | None:
        """Re-probe restarting actors that are due; wait for one answer (None: none within the poll)."""
        import ray

        now = time.monotonic()
        for index, when in list(self.reprobe_at.items()):
            if when <= now:
                del self.reprobe_at[index]
                self.probe(self.slots[index])
        timeout = min([POLL_S, *(max(0.0, w - now) for w in self.reprobe_at.values())])
        if self.refs:
            ready, _ = ray.wait(list(self.refs), num_returns=1, timeout=timeout)
        else:
            ready = []
            time.sleep(timeout)
        if any(s.state == "alive" for s in self.slots):
            self.last_alive = time.monotonic()
        for slot in self.stalled(time.monotonic()):
            self._kill_stalled(slot)
        waited = time.monotonic() - self.last_alive
        if not ready and not self.said_waiting and waited > WAIT_NOTE_S and waited < self.start_timeout_s:
            self.said_waiting = True  # once: a busy cluster's run printed 0 % lines for 90 s and no why
            self.log(
                f"no atlas worker has answered for {waited:.0f} s: they load the models, or wait for Ray to "
                f"place them{self.asks}{_free_cpus()} (ray status shows pending actors; the run gives up "
                f"after ray.start_timeout_s {self.start_timeout_s:g} s)"
            )
        if not ready and waited > self.start_timeout_s:
            starting = sum(s.state == "starting" for s in self.slots)
            dead = sum(s.state == "dead" for s in self.slots)
            if self.report.stalled:  # not a cluster too small: actors killed as hung never came back
                n, limit = self.report.stalled, self.stall_limit() or 0.0
                one = n == 1
                why = (
                    f"{n} worker{'' if one else 's'} killed as hung (answered nothing for {limit:.0f} s) "
                    f"{'has' if one else 'have'} not come back: see the Ray logs of "
                    f"{'its node' if one else 'their nodes'}"
                )
            else:
                why = f"the cluster could not host the actors{self.asks}{_free_cpus()} (see ray status)"
            dead_too = f", {dead} dead" if dead else ""
            raise RunFailed(
                f"no atlas worker has been alive for {self.start_timeout_s:g} s ({starting} waiting to be "
                f"placed or restarted{dead_too}); {why}; rerun the same command to resume"
            )
        return ready[0] if ready else None

    def stall_limit(self) -> float | None:
        """Seconds of silence after which a live actor holding shards counts as hung (None: no limit yet,
        before the first shard finished and with ``stall_timeout_s`` 0)."""
        if self.stall_timeout_s > 0:
            return self.stall_timeout_s
        if self.slowest_shard_s is None:
            return None
        return max(STALL_FLOOR_S, STALL_FACTOR * self.slowest_shard_s)

    def stalled(self, now: float) -> list[_Slot]:
        limit = self.stall_limit()
        if limit is None:
            return []
        return [s for s in self.slots if s.state == "alive" and s.in_flight and now - s.last_answer > limit]

    def _kill_stalled(self, slot: _Slot) -> None:
        """Kill a hung actor (Ray restarts it while ``ray.max_restarts`` allows) and take its shards back
        at once for the other actors: a kill does not always take (a node Ray lost track of: the same pid
        went on holding its shards for 7 minutes in a user's trial), and a shard done twice is written
        once (the first marker stands). The slot waits for its restart's probe."""
        import ray

        limit = self.stall_limit() or 0.0
        slot.last_answer = time.monotonic()  # once per stall
        self.report.stalled += 1
        self.log(
            f"worker {slot.index} (pid {slot.pid}) answered nothing for {limit:.0f} s while holding "
            f"{slot.in_flight} shard(s): killed so Ray restarts it; its shards are re-queued"
        )
        try:
            ray.kill(slot.handle, no_restart=False)
        except Exception as exc:  # noqa: BLE001 - e.g. it died meanwhile: its restart's probe tells
            self.log(f"worker {slot.index}: could not be killed ({first_line(exc)})")
        held = [ref for ref, (kind, s, gen, _) in self.refs.items() if s is slot and gen == slot.generation]
        for ref in held:  # their answers, if any ever comes, are no longer awaited
            kind, _slot, _gen, shard = self.refs.pop(ref)
            if kind == "shard" and shard is not None:
                self._requeue(shard, HungWorker(f"worker {slot.index} answered nothing for {limit:.0f} s"))
        self._new_generation(slot)  # its old tasks' failures are this stall's, already handled
        self._await_restart(slot, 1.0)

    # ---------------------------------------------------------------------------------- answers
    def _answered(self, value: dict[str, Any], kind: str, slot: _Slot, generation: int) -> None:
        slot.last_answer = time.monotonic()
        if kind == "shard":
            if generation == slot.generation:  # else counted off when the failure reset the slot
                slot.in_flight -= 1
            self.report.summaries.append(value)
            took = float(value.get("seconds", 0.0))  # kept as it comes: stall_limit runs every poll
            self.slowest_shard_s = max(took, self.slowest_shard_s or 0.0)
            self.on_result(value)
            self.fill(slot)
            return
        if generation != slot.generation:
            return  # an old probe
        if "setup_error" in value:
            self._setup_failed(slot, value)
            return
        if slot.pid is not None and (value.get("pid"), value.get("node")) != (slot.pid, slot.node):
            slot.deaths += 1  # a new process: the actor died and Ray restarted it
            self.report.deaths += 1
            self.log(
                f"worker {slot.index} was restarted (pid {slot.pid} -> {value.get('pid')}, restart "
                f"{slot.deaths} of ray.max_restarts {self.max_restarts}); its lost shards were re-queued"
            )
        slot.state = "alive"
        slot.pid, slot.node, slot.host = value.get("pid"), value.get("node"), value.get("host")
        self.last_alive = time.monotonic()
        self.fill(slot)

    def _actor_failed(
        self, exc: BaseException, kind: str, slot: _Slot, generation: int, shard: Shard | None
    ) -> None:
        """The actor died (restarting: ActorUnavailableError) or is dead for good (ActorDiedError)."""
        from ray.exceptions import ActorUnavailableError

        unavailable = isinstance(exc, ActorUnavailableError)
        if kind == "shard":
            assert shard is not None
            if generation == slot.generation:  # a later failure of the same death: already reset to 0
                slot.in_flight -= 1
            self._requeue(shard, exc)
        if generation != slot.generation or slot.state == "dead":
            return  # news of a failure already handled
        self._new_generation(slot)  # later failures of tasks sent before this one are the same failure
        if unavailable or kind == "shard":
            if slot.state == "alive":  # said once a loss: a lost node's actor may never be placed again
                self.log(
                    f"worker {slot.index} (pid {slot.pid}) was lost ({cause_line(exc)}); waiting for Ray to "
                    "start it again; the others take its shards"
                )
            self._await_restart(slot, 1.0 if unavailable else 0.0)
            return
        self._dead(slot, exc)  # a probe answered "dead": out of restarts, or the constructor raised

    @staticmethod
    def _new_generation(slot: _Slot) -> None:
        """The slot's tasks sent so far are over (failed, or no longer awaited): none is in flight."""
        slot.generation += 1
        slot.in_flight = 0

    def _await_restart(self, slot: _Slot, delay_s: float) -> None:
        """Wait for Ray's restart of the slot's actor (its probe, ``delay_s`` from now, tells: a new pid
        counts the death); meanwhile the others take the queue."""
        slot.state = "starting"
        self.reprobe_at[slot.index] = time.monotonic() + delay_s
        for other in self.slots:
            self.fill(other)

    def _write_failed(self, exc: Any, slot: _Slot, generation: int, shard: Shard | None) -> bool:
        """A shard whose files the store did not take for a reason that passes (a timeout, a dropped
        connection, throttling: :class:`StorageUnreachable`) goes back to the queue, within
        ``ray.max_shard_retries``; its worker is fine. True when so (a 12 s stall of the object store
        ended a user's whole run)."""
        if shard is None or not isinstance(getattr(exc, "cause", None), StorageUnreachable):
            return False
        slot.last_answer = time.monotonic()  # it answered: the next shard's silence counts from now
        if generation == slot.generation:
            slot.in_flight -= 1
        self._requeue(shard, exc.cause)
        self.log(
            f"shard {shard.id}: {first_line(exc.cause)}; done again (attempt {self.attempts[shard.id] + 1} "
            f"of {self.max_shard_retries + 1})"
        )
        self.fill(slot)
        return True

    def _requeue(self, shard: Shard, exc: BaseException) -> None:
        self.pending.appendleft(shard)
        self.report.requeued += 1
        self.attempts[shard.id] = self.attempts.get(shard.id, 0) + 1
        if self.attempts[shard.id] > self.max_shard_retries:
            raise RunFailed(
                f"shard {shard.id} was lost {self.attempts[shard.id]} times (the last time: "
                f"{cause_line(exc)}); see the Ray logs; rerun the same command to resume"
            ) from None

    def _dead(self, slot: _Slot, exc: BaseException) -> None:
        """Ray says the actor is dead for good: out of restarts, or its constructor raised."""
        if getattr(exc, "actor_init_failed", False):
            passing = isinstance(getattr(exc, "cause", None), RunFailed)
            self._could_not_start(slot, cause_line(exc), passing)
            return
        slot.state = "dead"
        self.report.dead_actors += 1
        slot.deaths += 1
        self.report.deaths += 1
        if not all(s.state == "dead" for s in self.slots):
            self.log(f"worker {slot.index} is dead ({cause_line(exc)}); the others take its shards")
            return
        raise RunFailed(
            f"every atlas worker died (last: {cause_line(exc)}; ray.max_restarts {self.max_restarts}); "
            "see the Ray logs; rerun the same command to resume"
        ) from None

    def _setup_failed(self, slot: _Slot, answer: dict[str, Any]) -> None:
        """The probe's answer of an actor whose setup failed (:meth:`AtlasWorker.ready`): it is ended, as
        Ray ends one whose constructor raised, and counts as one that could not start."""
        import ray

        with contextlib.suppress(Exception):  # it may be gone already: dead either way
            ray.kill(slot.handle, no_restart=True)
        self._could_not_start(slot, str(answer["setup_error"]), bool(answer.get("passing")))

    def _could_not_start(self, slot: _Slot, cause: str, passing: bool) -> None:
        """A worker whose setup failed: the others take its shards; none left, the run ends with the cause
        (``passing``, a store out of reach as it registered: run it again, exit 1; else a cause to fix). A
        cause is said once, however many workers give it (eight workers of a cluster, one broken mount)."""
        slot.state = "dead"
        self.report.dead_actors += 1
        if not all(s.state == "dead" for s in self.slots):
            said = _TRACEBACK_NOTE.sub("", cause)  # the same failure in each worker names its own file
            if said not in self.setup_failures_said:
                self.setup_failures_said.add(said)
                self.log(f"worker {slot.index} could not start ({cause})")  # the others: if they start
            return
        raise (RunFailed if passing else AtlasError)(f"no atlas worker could start: {cause}") from None


def _free_cpus() -> str:
    """``; 0 of 2 CPUs free now`` when the cluster's CPUs are in use (a busy cluster is not a small one: a
    trial's timeout blamed the cluster's size; atlas's own actors loading hold some too); "" when all are
    free or Ray cannot say."""
    import ray

    try:
        total = float(ray.cluster_resources().get("CPU", 0.0))
        free = float(ray.available_resources().get("CPU", 0.0))
    except Exception:  # noqa: BLE001 - only a note: Ray's state API may be out of reach
        return ""
    if total <= 0 or free >= total:
        return ""
    return f"; {free:g} of {total:g} CPUs free now"


def _task_failed(exc: Any, slot: _Slot, shard: Shard | None) -> None:
    """A worker method raised: a user error keeps its one line; anything else names shard and cause."""
    cause = getattr(exc, "cause", None) or exc  # a RayTaskError's original exception
    if isinstance(cause, AtlasError):  # its own message: str() of Ray's wrapper starts with the task header
        kind = RunFailed if isinstance(cause, RunFailed) else AtlasError  # its exit status kept
        raise kind(first_line(cause) or cause_line(exc)) from None
    where = f"shard {shard.id}" if shard is not None else f"worker {slot.index} start-up"
    on = f"on {slot.host}, " if slot.host else ""  # a worker's logs stay on its own node
    pid = slot.pid if slot.pid is not None else "*"
    raise RunFailed(
        f"{where} failed in the worker: {cause_line(exc)} (full traceback in its Ray log, {on}"
        f"logs/worker-*-{pid}.err in that node's Ray session folder: /tmp/ray/session_latest unless Ray "
        "was started with --temp-dir)"
    ) from None
