"""Which code made a run or a set of weights: the git commit of atlas's own checkout.

``git_sha()`` is the commit of the repository atlas runs from, with ``-dirty`` when that checkout has
uncommitted changes; None for an installed copy (a wheel in site-packages), even one that sits inside some
other project's git checkout, whose commit says nothing about atlas.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent  # the folder that holds the atlas package


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_sha(short: int | None = None) -> str | None:
    """The commit of atlas's checkout (``short`` hex digits, else all 40), ``-dirty`` when it has uncommitted
    changes to tracked files; None when atlas does not run from its own git checkout."""
    top = _git("rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != _ROOT:
        return None
    sha = _git("rev-parse", f"--short={short}" if short else "--verify", "HEAD")
    if not sha:
        return None
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return f"{sha}-dirty" if dirty else sha


def short_sha(sha: str, digits: int = 10) -> str:
    """A recorded git sha as messages and pages show it: its first ``digits`` hex digits, keeping the
    ``-dirty`` mark (a resume by the same commit with uncommitted changes is other code)."""
    dirty = sha.endswith("-dirty")
    return sha.removesuffix("-dirty")[:digits] + ("-dirty" if dirty else "")
