"""A run's sessions (its first start and each resume) and the work they spent: the overview's
throughput and the ``run`` table's ``work_seconds`` count the time from each session's start to its
last completed shard, not the idle time between an interrupt and the resume.

Usage::

    from atlas.store.sessions import session_starts, work_seconds
    starts = session_starts(manifest["created"], manifest.get("resumed"))   # POSIX seconds, sorted
    work_seconds(starts, [1733270000.0, 1733270060.0])                     # shard completion times
"""

from __future__ import annotations

from datetime import datetime
from typing import Any


def timestamp(text: str | None) -> float | None:
    """An ISO 8601 time (run.json's ``created``, ``resumed``) as POSIX seconds; None when missing or
    unreadable."""
    try:
        return datetime.fromisoformat(text).timestamp() if isinstance(text, str) and text else None
    except ValueError:
        return None


def session_starts(created: Any, resumed: Any) -> list[float]:
    """The start times (POSIX) of a run's sessions: its ``created`` and each ``resumed`` of run.json,
    sorted (unreadable ones left out)."""
    times = [created, *(resumed if isinstance(resumed, list) else [])]
    return sorted(t for t in map(timestamp, times) if t is not None)


def work_seconds(starts: list[float], done_times: list[float]) -> float | None:
    """Seconds of work behind the completed shards (``done_times``, POSIX): from each session's start to
    its last shard's completion, summed. With no start known (or one after the first completion), the span
    of the completions stretched by one shard's share. None before any shard is done."""
    times = sorted(done_times)
    if not times:
        return None
    starts = sorted(starts)
    if starts and starts[0] <= times[0]:
        ends: dict[float, float] = {}  # session start -> its last shard's completion
        for t in times:
            start = max(s for s in starts if s <= t)
            ends[start] = max(ends.get(start, t), t)
        return sum(end - start for start, end in ends.items())
    n = len(times)
    return (times[-1] - times[0]) * n / max(n - 1, 1)
