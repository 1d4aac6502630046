"""User-facing errors.

Everything a user can cause (a bad config, a missing weights file, an unknown layer) raises an
:class:`AtlasError` whose message is one line that names the culprit and what would be valid.
The CLI prints it as ``atlas: error: <message>`` and exits with status 2, without a traceback; a
:class:`RunFailed` (work that started and failed for a reason outside its input) exits with 1.
"""

from __future__ import annotations

import contextlib
import difflib
import os
from collections.abc import Iterable, Iterator


class AtlasError(Exception):
    """An error caused by user input; its message is a single line meant for the user."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


def first_line(exc: BaseException) -> str:
    """The first non-blank line of an exception's message (its type name when there is none): what a
    one-line error quotes from a library's multi-line message."""
    lines = [ln for ln in str(exc).splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


def raised_at(exc: BaseException, users_only: bool = False) -> str:
    """`` at file.py:LINE`` of the deepest frame of ``exc``'s traceback outside torch and the standard
    library (the line of the user's network that failed, not ``linear.py``, where torch raised: a trial), else
    of its deepest frame; "" without a traceback. ``users_only``: outside atlas too, "" when no such frame
    (a network of torch's modules alone: atlas's own probe line would mislead)."""
    import sysconfig
    import traceback

    frames = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ else []
    if not frames:
        return ""
    stdlib = sysconfig.get_paths()["stdlib"].rstrip("/") + "/"

    def standard(name: str) -> bool:  # a pyenv/conda/Docker Python keeps site-packages inside stdlib's folder
        return name.startswith(stdlib) and "-packages/" not in name

    own = [f for f in frames if "/torch/" not in f.filename and not standard(f.filename)]
    if users_only:
        package = os.path.dirname(os.path.abspath(__file__)) + os.sep
        own = [f for f in own if not os.path.abspath(f.filename).startswith(package)]
        if not own:
            return ""
    frame = (own or frames)[-1]
    return f" at {frame.filename.replace(chr(92), '/').rsplit('/', 1)[-1]}:{frame.lineno}"


def error_line(exc: BaseException) -> str:
    """``Type: first line at file.py:LINE`` (:func:`raised_at`): how a failure inside a user's network is
    named in one line."""
    return f"{type(exc).__name__}: {first_line(exc)}{raised_at(exc)}"


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` when one of ``choices`` is close to ``word`` (a typo), else ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def some(items, n: int = 5, *, quoted: bool = False) -> str:
    """The first ``n`` of ``items`` for a one-line message: ``a, b, c and 4 more``."""
    items = list(items)
    shown = ", ".join(repr(i) if quoted else str(i) for i in items[:n])
    return shown + (f" and {len(items) - n} more" if len(items) > n else "")


class ConfigError(AtlasError):
    """Invalid configuration: unknown key, wrong type or out-of-range value."""


class ModelError(AtlasError):
    """A model spec, weights file or state dict that cannot be resolved or loaded."""


class WorkerSetupError(AtlasError):
    """A worker whose setup raised (a user's network failing in the workers only): one line with the cause
    and where it was raised, the whole traceback in a file of the run's, so Ray's log forwarding does not
    print dozens of lines twice on the driver's console (a user's trial)."""


class RunFailed(AtlasError):
    """Work that started and could not finish for a reason outside its input (every worker died, a shard
    lost past its retries, no worker alive for ``ray.start_timeout_s``, a crash in a worker): the CLI prints
    its line as any error's but exits with 1, not 2, so a script or scheduler tells "fix the input" (2) from
    "run it again" (1); the same command resumes the run."""

    exit_code = 1


class StorageUnreachable(RunFailed):
    """A write the store did not take for a reason that passes (a timeout, a dropped connection, throttling,
    a 5xx): a worker's shard that fails so is done again, not the end of the run."""


@contextlib.contextmanager
def naming_stdout() -> Iterator[None]:
    """Writes to stdout inside name it in their error (a full disk under `> file`, /dev/full): a write()
    error names no file, and the CLI's line would name none. A closed pipe stays a BrokenPipeError."""
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as exc:
        if exc.filename:
            raise
        raise OSError(exc.errno, exc.strerror, "stdout") from None


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C (atlas.pipeline.cluster.stop_on_sigterm); the CLI exits with 143."""

    exit_code = 143  # 128 + SIGTERM, what a shell reports for a process the signal ended


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) during work that can be resumed; its message (one line) says how. The CLI prints
    it as ``atlas: <message>`` and exits with ``exit_code``: 130, or 143 after SIGTERM."""

    def __init__(self, message: str, exit_code: int = 130) -> None:
        super().__init__(message)
        self.exit_code = exit_code
