"""Safe loading of state-dict files and strict application to a module, with one-line errors.

A weights path may be a local path or a URI (``s3://bucket/weights/alexnet.pth``, ``gs://...``,
``file://...``), read through ``pyarrow.fs`` with the run config's ``storage:`` options (an S3-compatible
endpoint, region, anonymous access) or else the provider's usual environment; the driver reads it once
and ships the loaded model to every actor.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import pickle
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import torch
from torch import nn

from atlas.errors import ModelError, first_line, some

_NESTED_KEYS = ("state_dict", "model", "model_state_dict")


URI_SCHEMES = ("s3://", "gs://", "gcs://", "file://")


def is_uri(path: str | Path) -> bool:
    return isinstance(path, str) and path.startswith(URI_SCHEMES)


def read_uri(uri: str, what: str = "weights file", storage: Mapping[str, Any] | None = None) -> bytes:
    """The bytes of an object-store or file:// object (pyarrow.fs), opened with the ``storage:`` options
    (``endpoint_override``, ``region``, ``anonymous``); missing or unreadable is one line."""
    from atlas.uri_filesystem import make_filesystem, storage_reason

    fs, inner = make_filesystem(uri, storage or {}, what)
    try:
        with fs.open_input_file(inner) as fh:
            return fh.read()
    except FileNotFoundError:
        raise ModelError(f"{what} {uri!r} not found") from None
    except (OSError, ValueError) as exc:
        first = storage_reason(exc)
        if "not found" in first.lower() or "no such file" in first.lower():
            raise ModelError(f"{what} {uri!r} not found") from None
        raise ModelError(f"{what} {uri!r} cannot be read ({first})") from None


def load_state_dict_file(
    path: str | Path, storage: Mapping[str, Any] | None = None
) -> dict[str, torch.Tensor]:
    """Read a torch state-dict file (a path, or a URI opened with the ``storage:`` options) with
    ``weights_only=True`` (pickled code is refused)."""
    return read_state_dict(path, storage)[0]


def read_state_dict(
    path: str | Path, storage: Mapping[str, Any] | None = None
) -> tuple[dict[str, torch.Tensor], str]:
    """(state dict, :func:`file_fingerprint`) of a state-dict file, its bytes read once (an object store's
    file is fetched once, not once to load and again to fingerprint)."""
    source = weights_source(path, storage)
    fingerprint = source_fingerprint(source)
    return _state_dict_of(_torch_load(source, str(path)), path), fingerprint


def _state_dict_of(obj: object, path: str | Path) -> dict[str, torch.Tensor]:
    """The mapping of names to tensors a loaded file holds (at the top level or under a usual key)."""
    if isinstance(obj, Mapping):
        for key in _NESTED_KEYS:
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        found = (
            f"; it holds keys {some([str(k) for k in obj], 4, quoted=True)}"
            if isinstance(obj, Mapping)
            else ""
        )
        raise ModelError(
            f"weights file {str(path)!r} does not hold a state dict (a mapping of names to tensors){found}; "
            f"atlas reads one at the top level or under {some(list(_NESTED_KEYS), 3, quoted=True)}: re-save "
            "it with torch.save(model.state_dict(), path)"
        )
    out = {str(k): v for k, v in obj.items()}
    if out and all(k.startswith("module.") for k in out):  # saved from DataParallel
        out = {k[len("module.") :]: v for k, v in out.items()}
    return out


def weights_source(path: str | Path, storage: Mapping[str, Any] | None = None) -> Path | io.BytesIO:
    """The file to read: a local path that exists, or the bytes behind a URI."""
    if is_uri(path):
        return io.BytesIO(read_uri(str(path), storage=storage))
    p = Path(path).expanduser()
    give = "give the path of a state-dict file (.pt/.pth)"
    if not p.exists():
        where = "" if p.is_absolute() else f" (from {Path.cwd()})"
        raise ModelError(f"weights file {str(p)!r} not found{where}; {give}")
    if not p.is_file():
        raise ModelError(f"weights path {str(p)!r} is not a file; {give}")
    return p


_GLOBAL = re.compile(r"(?:GLOBAL |but got <class ')([A-Za-z_][\w.]*)")  # torch's two ways of naming it
_NUMPY_GLOBALS_MAX = 16  # numpy's array and scalar reconstruction needs a handful


def _torch_load(source: Path | io.BytesIO, label: str) -> object:
    """``torch.load(weights_only=True)``; numpy arrays and scalars beside the tensors (a checkpoint's
    ``best_acc``) are allowed by name, one at a time, as torch's docs advise; any other Python object is
    refused, naming it."""
    allowed: list[object] = []
    while True:
        try:
            with torch.serialization.safe_globals(allowed):
                return torch.load(source, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            name = _GLOBAL.search(str(exc))
            numpy_global = _numpy_global(name.group(1)) if name else None
            if numpy_global is not None and len(allowed) < _NUMPY_GLOBALS_MAX:
                allowed.append(numpy_global)
                if isinstance(source, io.BytesIO):
                    source.seek(0)
                continue
            _refuse_pickle(exc, source, label, name.group(1) if name else None)
        except Exception as exc:  # noqa: BLE001 - arbitrary bytes fail in many ways (zip, pickle, struct)
            first = first_line(exc)  # a bare KeyError's is just a number: say what kind of failure it was
            kind = type(exc).__name__
            why = first if len(first) >= 24 or first.startswith(kind) else f"{kind}: {first}"
            why = f"torch.load: {why}"
            if isinstance(exc, EOFError):  # torch's "EOFError: EOFError" said plainly
                why = "torch.load: the file ends before any data (empty or cut short)"
            why = _not_torch_format(source) or why
            raise ModelError(
                f"weights file {label!r} is corrupt or not a torch state-dict file ({why}); give "
                "a file written by torch.save(model.state_dict(), path)"
            ) from None


def _not_torch_format(source: Path | io.BytesIO) -> str | None:
    """What a file that is neither of torch.save's formats (a zip archive, or a pickle for the legacy
    one) holds instead, said plainly (torch's own error for a text file is ``KeyError: 101``); None for
    those formats."""
    if isinstance(source, io.BytesIO):
        head = source.getvalue()[:64]
    else:
        with open(source, "rb") as f:
            head = f.read(64)
    if not head or head.startswith(b"PK") or head[:1] == b"\x80":
        return None
    text = head.decode("utf-8", errors="replace")
    if all(c.isprintable() or c in "\n\r\t" for c in text):
        start = " ".join(text.split())[:32]
        return f"it holds text starting {start!r}, not torch.save's zip or pickle format"
    return f"its first bytes {head[:8].hex()} are neither torch.save's zip archive nor its pickle format"


# what numpy's arrays and scalars need to unpickle, and nothing else (numpy has functions that run code)
_NUMPY_GLOBALS = frozenset(
    f"numpy.{core}.multiarray.{name}" for core in ("core", "_core") for name in ("scalar", "_reconstruct")
) | {"numpy.ndarray", "numpy.dtype"}


def _numpy_global(dotted: str) -> object | None:
    """The numpy class or function a checkpoint's pickle names, when it is one of those that rebuild an array
    or a scalar (:data:`_NUMPY_GLOBALS`, or a dtype class such as ``numpy.dtypes.Float64DType``); None for
    anything else, which is then refused."""
    if dotted not in _NUMPY_GLOBALS and not dotted.startswith("numpy.dtypes."):
        return None
    module, _, attr = dotted.rpartition(".")
    try:
        value = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        return None
    if dotted.startswith("numpy.dtypes.") and not (isinstance(value, type) and issubclass(value, np.dtype)):
        return None
    return value


def _refuse_pickle(exc: Exception, source: Path | io.BytesIO, label: str, name: str | None) -> NoReturn:
    zipped = _is_zip(source)
    other_format = None if zipped else _not_torch_format(source)  # text: its 'c' reads as pickle's GLOBAL
    if not other_format and (name or zipped):  # torch.save's zip whose pickle holds more than tensors
        what = f" ({name})" if name else ""
        raise ModelError(
            f"weights file {label!r} refused: it holds pickled Python objects{what}, not only tensors; "
            "re-save it with torch.save(model.state_dict(), path)"
        ) from None
    why = other_format or "unreadable pickle data"
    raise ModelError(
        f"weights file {label!r} is corrupt or not a torch state-dict file ({why}); give a file written "
        "by torch.save(model.state_dict(), path)"
    ) from None


def _is_zip(source: Path | io.BytesIO) -> bool:
    """torch.save's format is a zip archive (random bytes and other files are not)."""
    import zipfile

    try:
        return zipfile.is_zipfile(source)
    finally:
        if isinstance(source, io.BytesIO):
            source.seek(0)


def _names(keys: list[str], n: int = 3) -> str:
    return some(keys, n, quoted=True)


OPTIONAL_KEY_SUFFIX = "num_batches_tracked"  # BatchNorm's counter: older and converted files lack it


def _required(own: Mapping[str, object]) -> set[str]:
    """The model's keys a state dict must hold: all but BatchNorm's ``num_batches_tracked`` counters, which
    PyTorch fills in when a file lacks them (eval-mode outputs never read them)."""
    return {k for k in own if k.rsplit(".", 1)[-1] != OPTIONAL_KEY_SUFFIX}


def _fits(keys: Iterable[str], own: Mapping[str, object]) -> bool:
    """Do ``keys`` name exactly the model's keys, its optional ones or not?"""
    keys = set(keys)
    return keys <= set(own) and _required(own) <= keys


def _without_wrapper_prefix(
    state: Mapping[str, torch.Tensor], own: Mapping[str, object]
) -> Mapping[str, torch.Tensor]:
    """``state`` with the first name part every key shares removed (``model.`` from a Lightning module,
    ``backbone.`` from a wrapper), or with the model's own single first part added (a file of the network
    a module wraps, e.g. DeePSiM's ``G.``), when exactly the model's keys are left; else ``state``."""
    if not state or _fits(state, own):
        return state
    heads = {k.split(".", 1)[0] for k in state}
    if len(heads) == 1 and all("." in k for k in state):
        cut = len(heads.pop()) + 1
        stripped = {k[cut:]: v for k, v in state.items()}
        if _fits(stripped, own):
            return stripped
    own_heads = {k.split(".", 1)[0] for k in own}  # the model wraps the saved network (DeePSiM's ``G.``)
    if len(own_heads) == 1 and all("." in k for k in own):
        head = own_heads.pop()
        wrapped = {f"{head}.{k}": v for k, v in state.items()}
        if _fits(wrapped, own):
            return wrapped
    return state


def apply_state_dict(module: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Strictly load ``state`` into ``module``; missing/unexpected keys and shape mismatches are named."""
    own = module.state_dict()
    state = _without_wrapper_prefix(state, own)
    required = _required(own)
    missing = [k for k in own if k not in state and k in required]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {_names(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_names(unexpected)}")
        expected = _names(list(own), 2)
        raise ModelError(
            f"state dict {source!r} does not match the model: {'; '.join(parts)} "
            f"(model keys look like {expected})"
        )
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(own[key].shape):
            raise ModelError(
                f"state dict {source!r}: tensor {key!r} has shape {tuple(tensor.shape)}, "
                f"the model expects {tuple(own[key].shape)}"
            )
    parameters = {name for name, _ in module.named_parameters()}
    for key, tensor in state.items():  # NaN anywhere; inf in a parameter (a buffer may mask with -inf)
        if tensor.is_floating_point() and (
            bool(torch.isnan(tensor).any()) or (key in parameters and bool(torch.isinf(tensor).any()))
        ):
            raise ModelError(
                f"state dict {source!r}: tensor {key!r} holds NaN or infinite values (a training that "
                "diverged?); retrain it or use another file"
            )
    module.load_state_dict(dict(state), strict=True)


def file_fingerprint(path: str | Path, storage: Mapping[str, Any] | None = None) -> str:
    """sha256 of a file's bytes (first 16 hex digits); ``path`` may be a URI (the ``storage:`` options)."""
    if is_uri(path):
        return source_fingerprint(io.BytesIO(read_uri(str(path), storage=storage)))
    return source_fingerprint(Path(path).expanduser())


def source_fingerprint(source: Path | io.BytesIO) -> str:
    """sha256 (first 16 hex digits) of a file's bytes, or of bytes read already."""
    h = hashlib.sha256()
    if isinstance(source, io.BytesIO):
        h.update(source.getbuffer())
        return h.hexdigest()[:16]
    with open(source, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def module_fingerprint(module: nn.Module) -> str:
    """sha256 over a module's state dict (names, shapes, bytes); first 16 hex digits."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(tensor.shape)).encode())
        flat = tensor.detach().cpu().contiguous().reshape(-1)  # a 0-dim one (num_batches_tracked): 1 value
        h.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    return h.hexdigest()[:16]
