"""Atlas's own Ray actors that outlived their Ray instance: a BundleHolder with parent 1 (~1 GB) was found
after full test runs, stuck in Ray's exit handler. The suite checks for them when it ends."""

from __future__ import annotations

import contextlib
import os
import signal
import time

from atlas.pipeline.cluster import _environ, _runs

ACTOR_TITLES = (b"ray::BundleHolder", b"ray::AtlasWorker")  # the process titles Ray gives atlas's actors
SESSION_VAR = (
    "ATLAS_TEST_SESSION"  # set by the suite: its raylets, their actors and its subprocesses inherit it
)


def orphaned_actors(session: str, proc: str = "/proc") -> dict[int, str]:
    """pid -> command line of each atlas actor process of test session ``session`` (its environment has
    :data:`SESSION_VAR` = ``session``: another suite's or run's actors on a shared machine are not this
    one's) whose raylet (``RAY_RAYLET_PID``) no longer runs (gone, or a zombie)."""
    found: dict[int, str] = {}
    if not os.path.isdir(proc):
        return found
    for entry in os.scandir(proc):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            with open(f"{proc}/{pid}/cmdline", "rb") as fh:
                cmdline = fh.read()
            if not cmdline.startswith(ACTOR_TITLES):
                continue
            env = _environ(pid, proc)
            if env.get(SESSION_VAR.encode()) != session.encode():
                continue
            raylet = int(env.get(b"RAY_RAYLET_PID", b"0") or 0)
            if raylet > 0 and not _runs(raylet, proc):  # gone, or a zombie
                found[pid] = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, ValueError):  # gone meanwhile, or another user's
            continue
    return found


def wait_for_no_orphans(session: str, wait_s: float = 60.0) -> dict[int, str]:
    """Wait up to ``wait_s`` for session ``session``'s orphaned actors to end; SIGKILL those left (the
    machine is not left with them) and return them."""
    deadline = time.monotonic() + wait_s
    while True:
        left = orphaned_actors(session)
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    for pid in left:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return left
