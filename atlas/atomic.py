"""Local output files: checked before any work, then written whole or not at all.

path = check_output_file(args.out, "--out")          # one-line error now, not after an hour of work
atomic_write(path, lambda tmp: torch.save(obj, tmp))  # a hidden temporary file, renamed into place
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable
from pathlib import Path

from atlas.errors import AtlasError


def check_output_file(
    path: str | os.PathLike[str],
    what: str,
    inputs: dict[str, str | os.PathLike[str]] | None = None,
    reads: tuple[str, ...] = (),
) -> Path:
    """``path`` (``~`` expanded) as a Path once it can take a file: not a directory, and its nearest existing
    ancestor a writable directory (missing folders are created at the write), nor one of the command's
    ``inputs`` (option -> file or folder), nor, inside an input folder, a file the command reads there
    (suffixes ``reads``); else a one-line error naming ``what``."""
    text = str(path)
    refuse_uri(text, what)
    if not text.strip():
        example = "out/report.json" if what == "--json" else "out/stats.pt"
        raise AtlasError(f"{what}: empty path; give a file path such as {example}")
    p = Path(text).expanduser()
    if p.is_dir() or text.endswith(("/", os.sep)):
        example = p / ("report.json" if what == "--json" else "out.pt")
        raise AtlasError(f"{what}: {text} is a directory, not a file; give a file path like {example}")
    check_writable_dir(p.parent, what)
    here = Path(os.path.abspath(p))
    for option, given in (inputs or {}).items():
        source = Path(os.path.abspath(Path(given).expanduser()))
        if here == source or (source in here.parents and here.suffix.lower() in reads):
            raise AtlasError(
                f"{what}: {text} would overwrite the command's own input ({option} {given}); "
                "write it somewhere else"
            )
    return p


def refuse_uri(text: str, what: str) -> None:
    """A one-line error for an object-store (or any) URI given where atlas writes a local file or folder:
    ``s3://b/x`` was written to a local folder ``s3:/b/x`` and said as done (a trial)."""
    scheme, sep, _rest = text.partition("://")
    if sep and scheme and "/" not in scheme:
        raise AtlasError(
            f"{what}: {text!r} is a URI; {what} writes a local path (copy the result to the store "
            "afterwards: `aws s3 cp`, `gcloud storage cp`)"
        )


def check_writable_dir(path: str | os.PathLike[str], what: str, fix: str = "choose another path") -> None:
    """The folder ``path``, or else its nearest existing ancestor (where it would be created), is a writable
    directory; else a one-line error naming ``what`` and ``fix`` (what would do instead)."""
    refuse_uri(str(path), what)
    if not str(path).strip():  # Path("") is the current directory: never what an empty option means
        raise AtlasError(f"{what}: empty path; give a folder")
    p = Path(path).expanduser()
    for parent in (p, *p.parents):
        if parent.exists():
            if not parent.is_dir():
                raise AtlasError(f"{what}: {parent} is a file, not a directory; choose another path")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise AtlasError(f"{what}: {parent} is not writable; {fix}")
            _probe(parent, what, fix)
            return


def _probe(folder: Path, what: str, fix: str = "choose another path") -> None:
    """Create, write and remove a hidden file in ``folder``: permission bits do not tell for root, a
    read-only mount or a pseudo file system such as /proc, and an empty file does not tell a full disk
    (a trial's full out_dir passed, and the run's lock file was the first write to fail)."""
    probe = folder / f".atlas-probe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        with open(probe, "xb") as fh:
            fh.write(b"atlas write probe\n")
    except OSError as exc:
        with contextlib.suppress(OSError):
            probe.unlink(missing_ok=True)
        reason = exc.strerror or type(exc).__name__
        raise AtlasError(f"{what}: cannot create files in {folder} ({reason}); {fix}") from None
    probe.unlink(missing_ok=True)


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], object], sync: bool = False) -> None:
    """``write(tmp)`` to a hidden file beside ``path``, then rename it over ``path``: readers see the old
    file or the new one, never half of one; a failed write leaves nothing (nor the folders it made, unless
    another writer has put something in them). ``sync``: fsync before renaming."""
    p = Path(path)
    created = _missing_folders(p.parent)
    # unique per writer (process, thread); created by ``write``, so it gets the usual permissions
    tmp = p.with_name(f".{p.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")
    done = False
    try:
        _write_in_folder(tmp, write)
        if sync:
            _fsync(tmp)
        os.replace(tmp, p)
        done = True
        if sync:  # the rename itself
            _fsync(p.parent)
    finally:
        tmp.unlink(missing_ok=True)
        if not done:
            for folder in created:
                try:
                    folder.rmdir()
                except OSError:
                    break


def _missing_folders(folder: Path) -> list[Path]:
    """``folder`` and its ancestors up to the first that exists, deepest first."""
    missing = []
    for f in (folder, *folder.parents):
        if f.exists():
            break
        missing.append(f)
    return missing


def _write_in_folder(tmp: Path, write: Callable[[Path], object]) -> None:
    """Make ``tmp``'s folder and ``write(tmp)``; once more if another writer's failure removed the new
    folder in between."""
    for attempt in (1, 2):
        tmp.parent.mkdir(parents=True, exist_ok=True)
        try:
            write(tmp)
            return
        except FileNotFoundError:
            if attempt == 2 or tmp.parent.exists():
                raise


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
