"""Wait for a condition, not for luck: poll with a generous bound and say what was awaited on failure."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(condition: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.25) -> Any:
    """Poll ``condition`` until it returns something truthy (returned); fail naming ``what`` after
    ``timeout_s`` seconds. Exceptions raised by the condition count as 'not yet' (the last one is shown)."""
    deadline = time.monotonic() + timeout_s
    last_error: BaseException | None = None
    while True:
        try:
            value = condition()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - not ready yet (file half listed, server starting)
            last_error = exc
        if time.monotonic() > deadline:
            detail = f" (last error: {type(last_error).__name__}: {last_error})" if last_error else ""
            raise AssertionError(f"gave up after {timeout_s:g} s waiting for {what}{detail}")
        time.sleep(interval_s)
