"""A URI's ``pyarrow.fs`` filesystem: a local path, ``file://``, ``s3://bucket/...`` or ``gs://bucket/...``,
with the options of a config's ``storage:`` section (``endpoint_override``, ``region``, ``anonymous``).

Usage::

    fs, path = make_filesystem("s3://bucket/w.pt", {"endpoint_override": "http://127.0.0.1:9000"}, "weights")

The run store (:mod:`atlas.store.location`) and the weights and code-statistics readers
(:mod:`atlas.models.weights`) open their URIs here, so one ``storage:`` section reaches both.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from atlas.errors import AtlasError, first_line

if TYPE_CHECKING:  # pyarrow loads where a filesystem is made: parse_uri serves config checks too
    import pyarrow.fs as pafs

OBJECT_STORE_SCHEMES = ("s3", "gs", "gcs")
SCHEMES = ("file", *OBJECT_STORE_SCHEMES)
OPTION_KEYS = ("endpoint_override", "region", "anonymous")


def scheme_of(uri: str) -> str:
    parsed = urlparse(uri)
    # a Windows drive letter or a plain path has no (or a one-letter) scheme
    return parsed.scheme.lower() if len(parsed.scheme) > 1 else ""


def is_remote(uri: str) -> bool:
    """True for object-store URIs (s3://, gs://)."""
    return scheme_of(str(uri)) in OBJECT_STORE_SCHEMES


def parse_uri(uri: str, what: str) -> tuple[str, str]:
    """(scheme, path in its filesystem) of ``uri``, checked without touching any storage: scheme ``""`` for
    a local path (made absolute), ``s3``/``gs``/``gcs`` with ``bucket/prefix``. A bad one is one line naming
    ``what`` (the option it came from)."""
    scheme = scheme_of(uri)
    if scheme in ("", "file"):
        if scheme == "file" and urlparse(uri).netloc not in ("", "localhost"):
            raise AtlasError(
                f"{what}: {uri!r} names the host {urlparse(uri).netloc!r}; a file URI takes an absolute "
                "path after three slashes (file:///data/runs) or use a plain path"
            )
        path = urlparse(uri).path if scheme == "file" else uri
        if not path.strip():  # "" or "file://": the current directory by accident, never by intent
            raise AtlasError(
                f"{what}: {uri!r} is an empty path; give a folder such as runs (or file:///data/runs)"
            )
        # absolute, but symlinks kept: the path every node mounts, not where it points on this one
        return "", os.path.abspath(os.path.expanduser(path))
    if scheme not in SCHEMES:
        raise AtlasError(
            f"{what}: unsupported storage scheme {scheme + '://'!r} in {uri!r}; "
            "use a local path, file://, s3://bucket/prefix or gs://bucket/prefix"
        )
    parsed = urlparse(uri)
    if not parsed.netloc:
        raise AtlasError(f"{what}: {uri!r} names no bucket; expected {scheme}://bucket/prefix")
    return scheme, f"{parsed.netloc}/{parsed.path.strip('/')}".rstrip("/")


def make_filesystem(
    uri: str, options: Mapping[str, Any], what: str, patient: bool = False
) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path) for ``uri`` (:func:`parse_uri`); a bad one is one line naming ``what``."""
    import pyarrow.fs as pafs

    scheme, path = parse_uri(uri, what)
    if not scheme:
        return pafs.LocalFileSystem(), path
    bucket = path.split("/", 1)[0]
    chosen = {k: v for k, v in options.items() if k in OPTION_KEYS and v not in (None, False)}
    try:
        return _object_store(scheme, bucket, chosen, patient), path
    except (OSError, ValueError, ImportError) as exc:
        raise AtlasError(f"{what}: cannot open {uri!r}: {storage_reason(exc)}") from None


def _object_store(scheme: str, bucket: str, chosen: Mapping[str, Any], patient: bool) -> pafs.FileSystem:
    """S3 / GCS filesystem: with ``storage:`` options when given, else from the URI and environment. GCS
    retries for at most :data:`GCS_RETRY_S` where a person waits (its client's default is 15 minutes: a
    bucket that cannot be reached, or a machine without credentials, looked like a hang); ``patient`` (the
    workers' copies, writing shards) keeps the client's default, so a short outage costs no shard."""
    import pyarrow.fs as pafs

    if not chosen and scheme == "s3":
        return pafs.FileSystem.from_uri(f"{scheme}://{bucket}")[0]
    kwargs: dict[str, Any] = {k: chosen[k] for k in ("endpoint_override", "region") if chosen.get(k)}
    if chosen.get("anonymous"):
        kwargs["anonymous"] = True
    if scheme == "s3":
        return pafs.S3FileSystem(**kwargs)
    kwargs.pop("region", None)  # GCS takes no region
    if not patient:
        kwargs["retry_time_limit"] = timedelta(seconds=GCS_RETRY_S)
    return pafs.GcsFileSystem(**kwargs)


GCS_RETRY_S = 20
_NO_GCS_CREDENTIALS = (
    "no Google Cloud credentials on this machine (set GOOGLE_APPLICATION_CREDENTIALS, or "
    "storage.anonymous: true for a public bucket)"
)


_DENIED = ("ACCESS_DENIED", "AccessDenied", "Access Denied", "HTTP status 403", "InvalidAccessKeyId",
           "SignatureDoesNotMatch")  # fmt: skip


_PASSING = ("curlCode", "NETWORK_CONNECTION", "timed out", "Timeout", "SlowDown", "RequestTimeout",
            "InternalError", "ServiceUnavailable", "HTTP status 50", "Connection reset", "Connection refused",
            "Temporary failure", "UNAVAILABLE", "DEADLINE_EXCEEDED")  # fmt: skip
_PASSING_ERRNOS = {errno.ETIMEDOUT, errno.ECONNRESET, errno.ECONNREFUSED, errno.ECONNABORTED,
                   errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN, errno.EAGAIN}  # fmt: skip


def passing_storage_error(exc: BaseException) -> bool:
    """Whether a store's error is one that passes (network, timeout, throttling, a server error), not a
    refusal (credentials, a missing bucket) or a full or read-only disk, which would only repeat."""
    text = str(exc)
    if any(sign in text for sign in _DENIED):
        return False
    return getattr(exc, "errno", None) in _PASSING_ERRNOS or any(sign in text for sign in _PASSING)


def storage_reason(exc: BaseException) -> str:
    """A storage error's reason on one line: the client's first line, missing GCS credentials said plainly
    (the GCS client's status text repeats itself for hundreds of characters)."""
    text = first_line(exc)
    if "OAuth2 access token" in text:
        given = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
        if given:
            return f"the Google Cloud credentials in GOOGLE_APPLICATION_CREDENTIALS ({given}) were refused"
        return _NO_GCS_CREDENTIALS
    text = text if len(text) <= 300 else text[:297] + "..."
    if any(sign in text for sign in _DENIED):  # reached, and refused: not a network problem
        return f"access denied, the store refused these credentials ({text})"
    if "resolve host" in text and ".amazonaws.com" in text and not _endpoint_in_environment():
        # a trial's MinIO/moto bucket, looked up on AWS: the endpoint was set for the run, not here
        hint = "an S3-compatible store other than AWS: set AWS_ENDPOINT_URL (or storage.endpoint_override)"
        return f"{text}; {hint}"
    return text


def _endpoint_in_environment() -> bool:
    return bool(os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"))
