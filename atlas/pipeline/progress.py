"""The run's progress: a live bar on a terminal, whole lines in a log.

A log (``ray job logs``, a scheduler's output file, CI) does not redraw ``\\r``: there tqdm's bar is one
long line holding every redraw, its last one twice. Off a terminal the run says where it is in plain
lines instead, one every ``every_s`` seconds (also while no shard finishes) and one at the end::

    demo: 120/362 units (33%) after 0:40, about 1:21 left

    bar = progress_bar(total=362, initial=0, desc="demo")   # a tqdm bar, or LogLines off a terminal
    bar.update(4); bar.close()
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

LOG_EVERY_S = 30.0  # a line in a log at most this often (and one when the run ends)
MIN_BAR_COLUMNS = 20  # a terminal narrower than this gets plain lines instead of a bar


def progress_bar(total: int, initial: int, desc: str, stream: TextIO | None = None) -> Any:
    """tqdm on a terminal, :class:`LogLines` elsewhere (also on a terminal that says it has no columns: a
    pty started without a size, as some container runners give, drew no bar at all); both take
    ``update(n)`` and ``close()``."""
    stream = stream if stream is not None else sys.stderr
    if not stream.isatty() or _columns(stream) < MIN_BAR_COLUMNS:
        return LogLines(total, initial, desc, stream)
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=initial,
        unit="unit",
        desc=desc,
        dynamic_ncols=True,
        mininterval=0.5,
        file=stream,
        smoothing=0.1,
    )


def _columns(stream: TextIO) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return 0


def _clock_text(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class LogLines:
    def __init__(
        self,
        total: int,
        initial: int,
        desc: str,
        stream: TextIO,
        every_s: float = LOG_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
        ticking: bool = True,
    ) -> None:
        """``ticking``: a line every ``every_s`` also while no unit finishes (a first shard can take
        minutes), from a background thread; off, lines come only with ``update`` (tests drive the clock)."""
        self.total, self.n, self.desc, self.stream = total, initial, desc, stream
        self.every_s, self.clock = every_s, clock
        self._start, self._initial = clock(), initial
        self._said_at, self._said_n = self._start, initial
        self._first: tuple[float, int] | None = None  # (when, count) of the first units this run finished
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._say()  # the run has started: where it stands (a resume starts above 0)
        self._ticker = threading.Thread(target=self._tick, name="atlas-progress", daemon=True)
        if ticking:
            self._ticker.start()

    def update(self, n: int = 1) -> None:
        with self._lock:
            self.n += n
            if self._first is None and self.n > self._initial:
                self._first = (self.clock(), self.n)
            if self.clock() - self._said_at >= self.every_s:
                self._say()

    def close(self) -> None:
        """The last count, unless it was just said; closing twice says nothing more."""
        with self._lock:
            if not self._stop.is_set() and self.n != self._said_n:
                self._say()
            self._stop.set()

    def _tick(self) -> None:
        while not self._stop.wait(self.every_s / 6):
            with self._lock:
                if not self._stop.is_set() and self.clock() - self._said_at >= self.every_s:
                    self._say()

    def _say(self) -> None:
        now = self.clock()
        elapsed = now - self._start
        share = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        line = f"{self.desc}: {self.n}/{self.total} units{share} after {_clock_text(elapsed)}"
        left = self._seconds_left(now)
        if left is not None:
            line += f", about {_clock_text(left)} left"
        self.stream.write(line + "\n")  # one write: the ticker's line never interleaves with the driver's
        self.stream.flush()
        self._said_at, self._said_n = now, self.n

    def _seconds_left(self, now: float) -> float | None:
        """This run's own pace (not a resume's earlier shards): from its first finished units on, once
        more have finished (the start, Ray and model loading, is no part of the pace: a user's trial saw
        "about 5:08 left" for a run that ended 1.5 min later); until then from the start."""
        if self.n >= self.total or self.n <= self._initial:
            return None
        if self._first is not None and self.n > self._first[1] and now > self._first[0]:
            since, at = self._first
            return (now - since) / (self.n - at) * (self.total - self.n)
        return (now - self._start) / (self.n - self._initial) * (self.total - self.n)


class UnitCount:
    """What the bar shows: units of finished shards plus units finished inside shards still running (as
    their workers last reported), fed to ``bar`` as one count that never goes back (a re-queued shard's
    report starts again from 0; the bar waits until the count passes what it showed). ``bar`` None: no
    bar (counted all the same)."""

    def __init__(self, bar: Any | None) -> None:
        self.bar = bar
        self.shown = 0  # units added to the bar so far
        self.finished_units = 0
        self.finished: set[str] = set()
        self.running: dict[str, int] = {}  # shard id -> units finished inside it

    def shard_done(self, shard: str, units: int) -> None:
        self.finished.add(shard)
        self.finished_units += units
        self.running.pop(shard, None)
        self._show()

    def inside(self, reported: dict[str, int]) -> None:
        """The workers' latest reports: shard id -> units finished in it (finished shards are ignored)."""
        self.running = {k: int(v) for k, v in reported.items() if k not in self.finished}
        self._show()

    def _show(self) -> None:
        now = self.finished_units + sum(self.running.values())
        if now > self.shown:
            if self.bar is not None:
                self.bar.update(now - self.shown)
            self.shown = now
