"""Where a run lives: one ``pyarrow.fs`` filesystem and a path in it, named by a URI.

Usage::

    loc = open_location("s3://bucket/atlas", {"endpoint_override": "http://127.0.0.1:9000"})
    run = loc.child("demo")                       # s3://bucket/atlas/demo
    run.write_bytes("run.json", b"{}")            # whole or not at all
    run.read_bytes("run.json"); run.list_files("_shards", suffix=".done")

``out_dir`` may be a local path (relative paths are made absolute once, where the driver runs), a
``file://`` URI, ``s3://bucket/prefix`` or ``gs://bucket/prefix``. Object-store credentials, region and
endpoint come the provider's usual way (``AWS_*`` / ``GOOGLE_*`` environment variables, instance roles)
or from the config's ``storage:`` section (``endpoint_override``, ``region``, ``anonymous``).

Atomicity, as the store relies on it:

- local filesystems: write ``.<name>.tmp`` in the same directory, fsync, ``os.replace``;
- object stores: the object is serialized in memory first and written with one upload, which S3 and GCS
  make visible only when it completes (a single PUT, or a completed multipart upload). A failed upload
  leaves no object.

A :class:`Location` pickles to its URI and options (the filesystem is rebuilt where it is unpickled), so
it can be handed to Ray actors on other nodes: each resolves credentials from its own environment.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from atlas.atomic import atomic_write, check_writable_dir
from atlas.errors import AtlasError, StorageUnreachable
from atlas.uri_filesystem import (
    OPTION_KEYS,
    make_filesystem,
    parse_uri,
    passing_storage_error,
    storage_reason,
)


@dataclass(frozen=True)
class FileEntry:
    name: str  # base name
    path: str  # path inside the filesystem
    size: int | None
    mtime_ns: int | None


RUN_FOLDER_FIX = (
    "make it writable to write (or resume) the run there, or choose another out_dir or name for a new run"
)


class Location:
    """A directory-like place in one filesystem (local disk or an object-store prefix)."""

    def __init__(
        self,
        uri: str | os.PathLike[str],
        options: Mapping[str, Any] | None = None,
        what: str = "out_dir",
        patient: bool = False,
        lazy: bool = False,
    ) -> None:
        """``patient``: retry object-store calls as long as the client's default (workers), not briefly.
        ``lazy``: the filesystem is made at its first use, not here (a copy arriving in a worker)."""
        text = os.fspath(uri)
        self.options = {k: v for k, v in dict(options or {}).items() if k in OPTION_KEYS}
        self._opening = (text, what, patient)
        scheme, self.path = parse_uri(text, what)
        self._fs: pafs.FileSystem | None = None
        if not lazy:
            self._fs = self.fs  # a store that cannot be opened: its one-line error, here
        self.local = not scheme
        self.uri = self.path if self.local else f"{'gs' if scheme == 'gcs' else scheme}://{self.path}"

    @property
    def fs(self) -> pafs.FileSystem:
        """The pyarrow filesystem (made on first use for a lazy Location; an AtlasError names ``what``)."""
        if self._fs is None:
            text, what, patient = self._opening
            self._fs, _path = make_filesystem(text, self.options, what, patient)
        return self._fs

    # pickling: the URI and options travel, the filesystem is made where it is first used (credentials stay
    # local): in a worker, inside its constructor, whose failure it tells the driver in one line; made
    # while Ray unpickled the actor's arguments, a store it could not open (a bucket's region it could not
    # look up) printed Ray's traceback from every actor (a trial)
    def __reduce__(self):  # a copy sent to a worker retries as long as the client's default
        return (Location, (self.uri, self.options, "out_dir", True, True))

    def __repr__(self) -> str:
        return f"Location({self.uri!r})"

    def __str__(self) -> str:
        return self.uri

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Location) and other.uri == self.uri

    def __hash__(self) -> int:
        return hash(self.uri)

    # ---------------------------------------------------------------------------------- navigation
    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    def child(self, *parts: str) -> Location:
        return Location(self.uri.rstrip("/") + "/" + "/".join(parts), self.options)

    @property
    def parent(self) -> Location:
        head = self.uri.rstrip("/").rsplit("/", 1)[0]
        if not self.local and "/" not in head.split("://", 1)[1]:
            return Location(head + "/", self.options)  # the bucket itself
        return Location(head or "/", self.options)

    def full(self, rel: str = "") -> str:
        """Path inside the filesystem of ``rel`` (a '/'-separated path below this location)."""
        return f"{self.path.rstrip('/')}/{rel}" if rel else self.path

    def display(self, rel: str = "") -> str:
        """``rel`` as the user would type it (a local path or a URI)."""
        return f"{self.uri.rstrip('/')}/{rel}" if rel else self.uri

    # ------------------------------------------------------------------------------------- queries
    def _info(self, rel: str) -> pafs.FileInfo:
        try:
            return self.fs.get_file_info(self.full(rel))
        except OSError as exc:
            endpoint = (self.options or {}).get("endpoint_override")
            via = f" through storage.endpoint_override {endpoint!r}" if endpoint else ""  # the key to check
            raise AtlasError(f"cannot reach {self.display(rel)}{via}: {storage_reason(exc)}") from None

    def exists(self, rel: str = "") -> bool:
        return self._info(rel).type != pafs.FileType.NotFound

    def is_file(self, rel: str) -> bool:
        return self._info(rel).type == pafs.FileType.File

    def is_dir(self, rel: str = "") -> bool:
        info = self._info(rel)
        if info.type == pafs.FileType.Directory:
            return True
        if self.local or info.type == pafs.FileType.File:
            return False
        return bool(self.list_files(rel, limit=1, recursive=True))  # a prefix "exists" when it holds objects

    def list_files(
        self, rel: str = "", *, suffix: str = "", recursive: bool = False, limit: int | None = None
    ) -> list[FileEntry]:
        """Files directly under ``rel`` (all depths with ``recursive``) whose name ends with ``suffix``,
        sorted by path; hidden names (``.x``) skipped; a missing directory lists as empty."""
        selector = pafs.FileSelector(self.full(rel), allow_not_found=True, recursive=recursive)
        try:
            infos = self.fs.get_file_info(selector)
        except OSError as exc:
            raise AtlasError(f"cannot list {self.display(rel)}: {storage_reason(exc)}") from None
        out = []
        for info in infos:
            if info.type != pafs.FileType.File or not info.base_name.endswith(suffix):
                continue
            if info.base_name.startswith("."):
                continue
            out.append(FileEntry(info.base_name, info.path, info.size, info.mtime_ns))
        out.sort(key=lambda e: e.path)
        return out[:limit] if limit is not None else out

    def list_dirs(self, rel: str = "") -> list[str]:
        """Names of the sub-directories (or common prefixes) directly under ``rel``."""
        selector = pafs.FileSelector(self.full(rel), allow_not_found=True, recursive=False)
        try:
            infos = self.fs.get_file_info(selector)
        except OSError as exc:
            raise AtlasError(f"cannot list {self.display(rel)}: {storage_reason(exc)}") from None
        return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)

    # --------------------------------------------------------------------------------------- bytes
    def read_bytes(self, rel: str) -> bytes:
        try:
            with self.fs.open_input_file(self.full(rel)) as fh:
                return fh.read()
        except FileNotFoundError:
            raise
        except OSError as exc:
            if "not found" in str(exc).lower() or "no such file" in str(exc).lower():
                raise FileNotFoundError(self.display(rel)) from None
            raise AtlasError(f"cannot read {self.display(rel)}: {storage_reason(exc)}") from None

    def write_bytes(self, rel: str, data: bytes) -> None:
        """Write ``data`` to ``rel`` so that readers see the old object or the whole new one."""
        target = self.full(rel)
        try:
            if self.local:
                atomic_write(Path(target), lambda tmp: tmp.write_bytes(data), sync=True)
                return
            stream = self.fs.open_output_stream(target)
            try:
                stream.write(data)
            finally:
                stream.close()  # the upload completes here, whole, or raises and leaves nothing
        except OSError as exc:
            passing = passing_storage_error(exc)
            error = StorageUnreachable if passing else AtlasError
            raise error(f"cannot write {self.display(rel)}: {storage_reason(exc)}") from None

    def delete(self, rel: str) -> None:
        """Remove one file; a missing one is fine."""
        try:
            self.fs.delete_file(self.full(rel))
        except FileNotFoundError:
            pass
        except OSError as exc:
            if "not found" in str(exc).lower() or "no such file" in str(exc).lower():
                return
            raise AtlasError(f"cannot delete {self.display(rel)}: {storage_reason(exc)}") from None

    def check_writable(self) -> None:
        """Write and remove a probe file or object; a read-only, full, missing-bucket or non-directory
        location is one :class:`AtlasError` naming it."""
        if self.local:  # a probe file in the folder, or in its nearest existing ancestor: no folder made
            run_folder = os.path.lexists(self.path)  # else the nearest existing ancestor: out_dir or above
            if run_folder:  # a run there: another path would start another run, not resume it (a trial)
                check_writable_dir(self.path, "the run folder out_dir/name", RUN_FOLDER_FIX)
            else:
                check_writable_dir(self.path, "out_dir")
            return
        probe = f".atlas-write-probe-{os.getpid()}"
        data = f"atlas write probe {os.getpid()}\n".encode()
        self.write_bytes(probe, data)
        try:
            back = read_patiently(
                lambda: self.read_bytes_or_none(probe), lambda got: got == data, PROBE_RETRY_S
            )
        finally:
            self.delete(probe)
        if back != data:  # a store that keeps an upload framed (moto, unsigned: the driver had no keys)
            seen = "nothing" if back is None else f"{len(back)} other bytes"
            raise AtlasError(
                f"out_dir: {self.display()} took a {len(data)}-byte write from this machine and reads back "
                f"{seen}: its uploads are not kept as written (credentials missing here, so unsigned?); give "
                "this machine the store's credentials (AWS_* / GOOGLE_APPLICATION_CREDENTIALS)"
            )

    def read_bytes_or_none(self, rel: str) -> bytes | None:
        """``rel``'s bytes; None where it is missing or cannot be read."""
        try:
            return self.read_bytes(rel)
        except (FileNotFoundError, AtlasError):
            return None


PROBE_RETRY_S = (0.5, 1.0, 2.0)  # before the write check decides the store keeps its probe otherwise


def read_patiently(read: Callable[[], Any], good: Callable[[Any], bool], waits: Sequence[float]) -> Any:
    """``read()`` again after each of ``waits`` (seconds) until ``good`` of it (a store may show a
    just-written object late: S3-likes, NFS); the last reading."""
    for wait in waits:
        got = read()
        if good(got):
            return got
        time.sleep(wait)
    return read()


def open_location(
    uri: str | os.PathLike[str] | Location, options: Mapping[str, Any] | None = None, what: str = "out_dir"
) -> Location:
    """A :class:`Location` for ``uri`` (a Location passes through); a bad URI's one-line error names
    ``what`` (the option or argument it came from)."""
    if isinstance(uri, Location):
        return uri
    return Location(uri, options, what)
