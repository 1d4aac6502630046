"""The run's BundleHolder: a Ray actor that holds the reference to the run's models in the object store.

Light on purpose: its process imports Ray and this module only, not torch or the rest of atlas (1.4-2.7 s of
imports and a few hundred MB for a process that holds one reference); ``atlas.pipeline`` names its modules
lazily for that. The exit guards here serve every atlas actor (the workers too).
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from atlas.process import pid_alive


class BundleHolder:
    """A Ray actor on the driver's node that holds the reference to the run's :class:`WorkerBundle`: workers
    look it up by name, so no object reference travels in their constructor's arguments. Ray cannot
    rebuild such arguments and warns, for every actor with ``max_restarts`` > 0, that its restart may
    fail (ray-project/ray#53727); through the holder a restarted worker fetches the bundle as the first
    one did, for as long as the driver runs. It also keeps the units finished inside shards still
    running, which workers report and the driver's progress bar reads (a 64-unit shard takes minutes)."""

    def __init__(self, box: list[Any]) -> None:
        self.box = box  # [ray.ObjectRef of a WorkerBundle]: in a list it stays a ref (borrowed: kept alive)
        self.units_done: dict[str, int] = {}  # shard id -> units finished in its latest attempt
        parent = os.getppid()  # the process that started this one (the raylet, or 1 when started detached)
        raylet = int(os.environ.get("RAY_RAYLET_PID", "0") or 0)  # Ray names its raylet to every worker
        threading.Thread(
            target=exit_when_orphaned, args=(parent, raylet), name="atlas-holder-watch", daemon=True
        ).start()
        end_before_rays_exit_handler()

    def get(self) -> list[Any]:
        return self.box

    def shard_progress(self, shard: str, units: int) -> None:
        self.units_done[shard] = units

    def progress(self) -> dict[str, int]:
        return dict(self.units_done)


def end_before_rays_exit_handler(register: Callable[..., Any] = atexit.register) -> bool:
    """In a Ray actor's process, end a graceful exit (its last handle dropped) at the first Python exit
    hook, before Ray's own exit handler runs: that handler (``CoreWorkerProcess::HandleAtExit``, then
    ``~Publisher``) sometimes deadlocked and left the actor running with parent 1 (found on a holder, ~1 GB).
    Elsewhere (the driver, a test that builds a worker in its own process) nothing is registered: the
    process's own exit code must stand. True when registered."""
    import ray

    if getattr(ray._private.worker.global_worker, "mode", None) != ray.WORKER_MODE:
        return False
    register(os._exit, 0)  # registered last: runs first, before Ray's hooks (atexit is last-in first-out)
    return True


def exit_when_orphaned(
    parent: int,
    raylet: int = 0,
    interval_s: float = 5.0,
    getppid: Callable[[], int] = os.getppid,
    leave: Callable[[int], Any] = os._exit,
    alive: Callable[[int], bool] = pid_alive,
) -> None:
    """End this process once its raylet is gone: a holder outlived its Ray after full test runs (parent 1,
    ~1 GB each, found 1-3 times a run), idle, never told to exit. Gone: the parent changed (the raylet that
    started it died), or the raylet Ray named (``RAY_RAYLET_PID``) no longer runs; a worker Ray started
    detached has parent 1 from the start, so only the second tells."""
    while getppid() == parent and (raylet <= 0 or alive(raylet)):
        time.sleep(interval_s)
    leave(0)
