"""One writer per run at a time.

Local disks and shared mounts: an exclusive ``flock`` on ``<run>/.atlas.lock``, which the kernel releases
when the holder dies (crash, SIGKILL), so a rerun after a crash is never blocked; the holder removes the
file as it lets go (a crashed one leaves it, unlocked). Object stores have no
locks: the holder writes ``<run>/_lock.json`` (host, pid, heartbeat every ``HEARTBEAT_S``) and removes it
at the end; a second run is refused while the holder's heartbeat is fresh (younger than ``STALE_S``) and,
on the same host, its pid still runs (a stale beat frees it even so: pids are reused). That is advisory
(two drivers starting in the same second can both pass), which is what an object store without
conditional writes through pyarrow allows.

    with RunLock(loc):
        store.init_run(...); dispatch(...); store.finalize(...)
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
import time
from typing import Any

from atlas.errors import AtlasError
from atlas.process import pid_alive
from atlas.store.location import Location

LOCAL_LOCK = ".atlas.lock"
REMOTE_LOCK = "_lock.json"
HEARTBEAT_S = 20.0
LOCK_ATTEMPTS = 10  # tries to take a local lock file a look holds, or that its last holder just removed
STALE_S = 90.0


def _holder_record(fh: Any) -> dict[str, Any]:
    """What the lock file's holder wrote of itself (host, pid); {} when it wrote nothing readable yet."""
    try:
        return json.loads(fh.read() or "{}")
    except json.JSONDecodeError:
        return {}


class RunLock:
    def __init__(self, loc: Location, elsewhere: str = ", or use another name (--set name=...)") -> None:
        """``elsewhere``: the way round a busy lock the message offers (a run can take another name; a
        repair cannot)."""
        self.loc = loc
        self.elsewhere = elsewhere
        self._fh: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.owner = {"host": socket.gethostname(), "pid": os.getpid()}

    @property
    def held(self) -> bool:
        """Whether this lock has been acquired (and not released)."""
        return self._fh is not None or self._thread is not None

    def _busy(self, holder: dict[str, Any]) -> AtlasError:
        expires = (
            ""
            if self.loc.local
            else f" (a dead driver's lock frees itself {STALE_S:.0f} s after its last beat)"
        )
        who = f" (pid {holder.get('pid')} on {holder.get('host')})" if holder.get("pid") else ""
        return AtlasError(
            f"run {self.loc.display()} is being written by another atlas run{who}; wait for it to finish"
            f"{expires}{self.elsewhere}"
        )

    def holder(self, untold: Any = None) -> dict[str, Any] | None:
        """The live writer holding this run's lock (host, pid), or None: a look that takes nothing.
        ``untold`` where it cannot tell (a folder that takes no file locks, a lock object that does not
        read): None by default, as no writer."""
        if self.loc.local:
            import fcntl

            path = os.path.join(self.loc.path, LOCAL_LOCK)
            try:
                fh = open(path)  # noqa: SIM115 - closed below
            except OSError:
                return None
            with fh:
                try:
                    fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)  # taken at once: no writer holds it
                except BlockingIOError:
                    return _holder_record(fh)
                except OSError:  # e.g. ENOLCK: a file system without locks
                    return untold
                fcntl.flock(fh, fcntl.LOCK_UN)
            return None
        try:
            held = json.loads(self.loc.read_bytes(REMOTE_LOCK))
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, AtlasError):  # unreadable: a writer may hold it or not
            return untold
        return held if isinstance(held, dict) and self._live(held) else None

    def _live(self, holder: dict[str, Any]) -> bool:
        """Whether an object-store lock's holder counts: it beats, and on this host its pid still runs (a
        killed driver's beat stays fresh for a while). A live pid alone may have been reused since (a
        restarted head), so a stale beat frees the lock anyway."""
        fresh = time.time() - float(holder.get("heartbeat", 0)) < STALE_S
        same_host = holder.get("host") == self.owner["host"]
        return fresh and (not same_host or pid_alive(int(holder.get("pid", -1))))

    def check_free(self) -> None:
        """Refuse now, taking nothing, when a live writer holds the run: before a driver spends half a
        minute starting Ray only to find the lock taken (:meth:`acquire` still decides)."""
        holder = self.holder()
        if holder is not None:
            raise self._busy(holder)

    def acquire(self) -> RunLock:
        if self.loc.local:
            path = os.path.join(self.loc.path, LOCAL_LOCK)
            made = not os.path.isdir(self.loc.path)
            os.makedirs(self.loc.path, exist_ok=True)
            fh = self._lock_file(path)
            try:
                fh.seek(0)
                fh.truncate()
                fh.write(json.dumps(self.owner))
                fh.flush()
            except OSError as exc:  # a full disk: the run could not write a shard either
                with contextlib.suppress(OSError):
                    fh.close()  # its unwritten buffer raises the same error again (a trial saw no path)
                with contextlib.suppress(OSError):
                    os.unlink(path)
                with contextlib.suppress(OSError):
                    if made:
                        os.rmdir(self.loc.path)  # nothing left behind: the run folder it made, empty
                raise AtlasError(
                    f"cannot write the run's lock file {path}: {exc.strerror or exc}; free space there or "
                    "choose another out_dir"
                ) from None
            self._fh = fh
            return self
        try:
            holder = json.loads(self.loc.read_bytes(REMOTE_LOCK))
        except (FileNotFoundError, json.JSONDecodeError):
            holder = None
        if isinstance(holder, dict) and self._live(holder):
            raise self._busy(holder)
        self._beat()
        self._thread = threading.Thread(target=self._heartbeat, name="atlas-run-lock", daemon=True)
        self._thread.start()
        return self

    def _lock_file(self, path: str) -> Any:
        """``path`` opened and flocked; the holder removes the file as it lets go, so a lock taken on a file
        that was removed (or replaced) meanwhile is let go and taken again on the file now there."""
        import fcntl

        for attempt in range(LOCK_ATTEMPTS):
            fh = open(path, "a+")  # noqa: SIM115 - held open for the lock's lifetime
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.seek(0)
                holder = _holder_record(fh)
                fh.close()
                gone = holder.get("host") == self.owner["host"] and not pid_alive(int(holder.get("pid", -1)))
                if (holder and not gone) or attempt == LOCK_ATTEMPTS - 1:
                    raise self._busy(holder) from None
                time.sleep(0.02)  # no live holder on record: a look (holder()), or a driver taking it now
                continue
            try:
                here, held = os.stat(path), os.fstat(fh.fileno())
                if (here.st_dev, here.st_ino) == (held.st_dev, held.st_ino):
                    return fh
            except FileNotFoundError:
                pass
            fh.close()  # the file it locked is gone: the last holder let go in between
        fh = open(path, "a+")  # noqa: SIM115 - a filesystem whose inode numbers move: lock what is there
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            raise self._busy({}) from None
        return fh

    def _beat(self) -> None:
        self.loc.write_bytes(REMOTE_LOCK, json.dumps({**self.owner, "heartbeat": time.time()}).encode())

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            with contextlib.suppress(AtlasError):  # a missed beat only makes the lock look stale sooner
                self._beat()

    def release(self) -> None:
        if self._fh is not None:
            with contextlib.suppress(OSError):  # no lock file left in a finished run (removed while held)
                os.unlink(os.path.join(self.loc.path, LOCAL_LOCK))
            self._fh.close()  # closing releases the flock
            self._fh = None
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=5)
            self._thread = None
            try:
                self.loc.delete(REMOTE_LOCK)
            except (AtlasError, OSError) as exc:  # best effort: never hide the error that ended the run
                print(f"atlas: warning: the run's lock stays until it expires ({STALE_S:.0f} s): {exc}",
                      file=sys.stderr)  # fmt: skip

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
