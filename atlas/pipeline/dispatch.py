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
   the queue. A shard that has killed ``ray.max_shard_retries`` actors is poison and stops the run.
4. **Bounded waiting.** When no actor is alive and none came back for ``ray.start_timeout_s``, the run
   stops with the reason instead of hanging.

Results are idempotent (deterministic object names), so a shard computed twice is written twice, never
duplicated.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from atlas.errors import AtlasError
from atlas.pipeline.plan import Shard

IN_FLIGHT_PER_ACTOR = 2  # the next shard is queued while one is written
POLL_S = 5.0


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


@dataclass
class PoolReport:
    summaries: list[dict[str, Any]] = field(default_factory=list)
    deaths: int = 0  # actor deaths observed (each restart or final death once)
    requeued: int = 0  # shards re-queued after their actor died
    dead_actors: int = 0  # actors that ended dead (restarts exhausted or never placed again)


def cause_line(exc: BaseException) -> str:
    """The most telling line of a Ray error: the original exception's last ``Type: message`` line."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for ln in reversed(lines):
        head = ln.split(":", 1)[0]
        if head.endswith(("Error", "Exception")) and " " not in head:
            return ln
    return lines[0] if lines else type(exc).__name__


def run_pool(
    handles: list[Any],
    todo: list[Shard],
    *,
    max_restarts: int,
    max_shard_retries: int,
    start_timeout_s: float,
    on_result: Callable[[dict[str, Any]], None] = lambda _r: None,
    log: Callable[[str], None] = print,
) -> PoolReport:
    """Run every shard of ``todo`` on the actors ``handles`` (already created); see the module docstring."""
    import ray
    from ray.exceptions import ActorUnavailableError, GetTimeoutError, RayActorError, RayTaskError

    slots = [_Slot(i, h) for i, h in enumerate(handles)]
    pending: deque[Shard] = deque(todo)
    refs: dict[Any, tuple[str, _Slot, int, Shard | None]] = {}
    attempts: dict[str, int] = {}
    report = PoolReport()
    last_alive = time.monotonic()
    reprobe_at: dict[int, float] = {}  # slot index -> when to ask a restarting actor again

    def probe(slot: _Slot) -> None:
        slot.state = "starting"
        refs[slot.handle.ready.remote()] = ("probe", slot, slot.generation, None)

    def fill(slot: _Slot) -> None:
        while slot.state == "alive" and slot.in_flight < IN_FLIGHT_PER_ACTOR and pending:
            shard = pending.popleft()
            slot.in_flight += 1
            refs[slot.handle.run_shard.remote(shard)] = ("shard", slot, slot.generation, shard)

    def shards_in_flight() -> int:
        return sum(1 for kind, *_ in refs.values() if kind == "shard")

    for slot in slots:
        probe(slot)

    while pending or shards_in_flight():
        now = time.monotonic()
        for index, when in list(reprobe_at.items()):
            if when <= now:
                del reprobe_at[index]
                probe(slots[index])
        timeout = min([POLL_S, *(max(0.0, w - now) for w in reprobe_at.values())])
        ready, _ = ray.wait(list(refs), num_returns=1, timeout=timeout) if refs else ([], [])
        if not refs:
            time.sleep(timeout)
        if any(s.state == "alive" for s in slots):
            last_alive = time.monotonic()
        if not ready:
            if time.monotonic() - last_alive > start_timeout_s:
                starting = sum(s.state == "starting" for s in slots)
                raise AtlasError(
                    f"no atlas worker has been alive for {start_timeout_s:g} s ({starting} waiting to be "
                    "placed or restarted, the rest dead); the cluster cannot host the actors "
                    "(see ray status); rerun the same command to resume"
                )
            continue
        ref = ready[0]
        kind, slot, generation, shard = refs.pop(ref)
        try:
            value = ray.get(ref, timeout=60)
        except GetTimeoutError:  # cannot happen for a ready ref; be safe
            refs[ref] = (kind, slot, generation, shard)
            continue
        except RayActorError as exc:
            # the actor died (it is restarting: ActorUnavailableError) or is dead for good (ActorDiedError)
            unavailable = isinstance(exc, ActorUnavailableError)
            if kind == "shard":
                assert shard is not None
                slot.in_flight -= 1
                pending.appendleft(shard)
                report.requeued += 1
                attempts[shard.id] = attempts.get(shard.id, 0) + 1
                if attempts[shard.id] > max_shard_retries:
                    raise AtlasError(
                        f"shard {shard.id} was lost {attempts[shard.id]} times (its worker died each time: "
                        f"{cause_line(exc)}); see the Ray logs; rerun the same command to resume"
                    ) from None
            if generation != slot.generation or slot.state == "dead":
                continue  # news of a failure already handled
            slot.generation += 1  # later failures of tasks sent before this one are the same failure
            slot.in_flight = 0
            if unavailable or kind == "shard":
                # wait for Ray's restart; the probe tells (a new pid counts the death)
                slot.state = "starting"
                reprobe_at[slot.index] = time.monotonic() + (1.0 if unavailable else 0.0)
                for other in slots:
                    fill(other)
                continue
            # a probe answered "dead": out of restarts, or the constructor raised (restarts cannot help)
            slot.state = "dead"
            report.dead_actors += 1
            if not getattr(exc, "actor_init_failed", False):
                slot.deaths += 1
                report.deaths += 1
            log(f"worker {slot.index} is dead ({cause_line(exc)}); the others take its shards")
            if all(s.state == "dead" for s in slots):
                if getattr(exc, "actor_init_failed", False):
                    raise AtlasError(f"no atlas worker could start: {cause_line(exc)}") from None
                raise AtlasError(
                    f"every atlas worker died (last: {cause_line(exc)}; ray.max_restarts {max_restarts}); "
                    "see the Ray logs; rerun the same command to resume"
                ) from None
            continue
        except RayTaskError as exc:
            cause = exc.as_instanceof_cause() if hasattr(exc, "as_instanceof_cause") else exc
            if isinstance(cause, AtlasError):
                raise AtlasError(str(cause).splitlines()[0]) from None
            where = f"shard {shard.id}" if shard is not None else f"worker {slot.index} start-up"
            raise AtlasError(
                f"{where} failed in the worker: {cause_line(exc)} (full traceback in the Ray worker logs, "
                "e.g. /tmp/ray/session_latest/logs/worker-*.err)"
            ) from None
        if kind == "probe":
            if generation == slot.generation:
                if slot.pid is not None and (value.get("pid"), value.get("node")) != (slot.pid, slot.node):
                    slot.deaths += 1  # a new process: the actor died and Ray restarted it
                    report.deaths += 1
                    log(
                        f"worker {slot.index} was restarted (pid {slot.pid} -> {value.get('pid')}, "
                        f"death {slot.deaths} of at most {max_restarts + 1}); its lost shards were re-queued"
                    )
                slot.state = "alive"
                slot.pid, slot.node = value.get("pid"), value.get("node")
                last_alive = time.monotonic()
                fill(slot)
            continue
        slot.in_flight -= 1
        report.summaries.append(value)
        on_result(value)
        fill(slot)
    return report
