"""Caffe ``.caffemodel`` weights into a PyTorch module's state dict, without Caffe.

The papers' networks were released as Caffe models: CaffeNet (``bvlc_reference_caffenet.caffemodel``),
which DGN-AM and PPGN visualize, and the DeePSiM generators (Dosovitskiy & Brox 2016) that invert its
codes. A ``.caffemodel`` is a binary ``NetParameter`` protobuf (caffe.proto); its learned parameters are
each layer's ``blobs``. This module reads the protobuf wire format directly (no caffe, no protobuf
package) and maps each layer's blobs onto the module of the same name: blob 0 -> ``<module>.weight``,
blob 1 -> ``<module>.bias``. Caffe's layouts are PyTorch's: Convolution (out, in/groups, kh, kw),
Deconvolution (in, out, kh, kw) as ConvTranspose2d, InnerProduct (out, in) as Linear; the legacy 4-d blob
shapes of the V1 format (``1 x 1 x out x in``) match once their leading 1s are set aside. Every blob's
shape is checked against its parameter's: a transposed layout is refused, never reshaped into place.

Usage::

    blobs = read_caffemodel("bvlc_reference_caffenet.caffemodel")   # {"conv1": [w, b], ...}
    state, used = state_dict_from_blobs(caffenet(), blobs)            # every parameter, or a CaffeError
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from atlas.errors import AtlasError

# caffe.proto field numbers (the parts that hold learned parameters)
NET_LAYER = 100  # NetParameter.layer: LayerParameter (the format since 2015)
NET_LAYERS_V1 = 2  # NetParameter.layers: V1LayerParameter (the format of the 2014-2015 releases)
LAYER_NAME, LAYER_TYPE, LAYER_BLOBS = 1, 2, 7  # LayerParameter
V1_NAME, V1_BLOBS = 4, 6  # V1LayerParameter
BLOB_NUM, BLOB_CHANNELS, BLOB_HEIGHT, BLOB_WIDTH = 1, 2, 3, 4  # BlobProto's legacy shape
BLOB_DATA, BLOB_SHAPE, BLOB_DOUBLE_DATA = 5, 7, 8
SHAPE_DIM = 1  # BlobShape.dim


class CaffeError(AtlasError):
    """A file that is not a readable caffemodel, or whose layers do not fit the module."""


@dataclass
class _Field:
    number: int
    wire: int  # 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32
    value: int | bytes


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise CaffeError("truncated or malformed varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(buf: bytes) -> list[_Field]:
    """The top-level fields of one protobuf message (wire format: key varint = number << 3 | wire type)."""
    out, pos = [], 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            out.append(_Field(number, 0, value))
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            if pos + size > len(buf):
                raise CaffeError("truncated fixed-width field")
            out.append(_Field(number, wire, buf[pos : pos + size]))
            pos += size
        elif wire == 2:
            size, pos = _varint(buf, pos)
            if pos + size > len(buf):
                raise CaffeError("truncated length-delimited field")
            out.append(_Field(number, 2, buf[pos : pos + size]))
            pos += size
        else:  # groups (3, 4) and reserved types: no caffemodel holds them
            raise CaffeError(f"unsupported protobuf wire type {wire}")
    return out


def _ints(fields: list[_Field], number: int) -> list[int]:
    """A repeated integer field, packed or not."""
    out: list[int] = []
    for f in fields:
        if f.number != number:
            continue
        if f.wire == 0:
            out.append(int(f.value))  # type: ignore[arg-type]
        elif f.wire == 2:
            data, pos = bytes(f.value), 0  # type: ignore[arg-type]
            while pos < len(data):
                value, pos = _varint(data, pos)
                out.append(value)
    return out


def _floats(fields: list[_Field], number: int, dtype: str) -> np.ndarray:
    """A repeated float (``<f4``) / double (``<f8``) field, packed (one bytes run) or not (one fixed-width
    field each); any other wire type is a damaged file (a varint there had been read as a length)."""
    fixed = 5 if dtype == "<f4" else 1
    runs = []
    for f in fields:
        if f.number != number:
            continue
        if f.wire not in (2, fixed) or not isinstance(f.value, bytes):
            raise CaffeError(f"blob field {number} has wire type {f.wire}, not packed or fixed-width numbers")
        runs.append(f.value)
    raw = b"".join(runs)
    if len(raw) % np.dtype(dtype).itemsize:
        raise CaffeError(f"blob field {number} holds {len(raw)} bytes, not whole numbers")
    return np.frombuffer(raw, dtype=dtype).astype(np.float32)


def _blob(buf: bytes) -> np.ndarray:
    """BlobProto -> array of its shape (``shape.dim``, else the legacy num x channels x height x width)."""
    fields = _fields(buf)
    data = _floats(fields, BLOB_DATA, "<f4")
    if not data.size:
        data = _floats(fields, BLOB_DOUBLE_DATA, "<f8")
    shapes = [f for f in fields if f.number == BLOB_SHAPE and f.wire == 2]
    if shapes:
        dims = _ints(_fields(bytes(shapes[0].value)), SHAPE_DIM)  # type: ignore[arg-type]
    else:
        legacy = [_ints(fields, n) for n in (BLOB_NUM, BLOB_CHANNELS, BLOB_HEIGHT, BLOB_WIDTH)]
        dims = [v[0] if v else 1 for v in legacy]
    if int(np.prod(dims)) != data.size:
        raise CaffeError(f"a blob of shape {tuple(dims)} holds {data.size} values")
    return data.reshape(dims)


def read_caffemodel(path: str | os.PathLike[str]) -> dict[str, list[np.ndarray]]:
    """Layer name -> its blobs (float32 arrays), in the file's order; layers without blobs left out."""
    with open(path, "rb") as fh:
        buf = fh.read()
    try:
        net = _fields(buf)
        layers: dict[str, list[np.ndarray]] = {}
        for f in net:
            if f.wire != 2 or f.number not in (NET_LAYER, NET_LAYERS_V1):
                continue
            layer = _fields(bytes(f.value))  # type: ignore[arg-type]
            name_no, blobs_no = (LAYER_NAME, LAYER_BLOBS) if f.number == NET_LAYER else (V1_NAME, V1_BLOBS)
            names = [bytes(g.value).decode("utf-8") for g in layer if g.number == name_no and g.wire == 2]  # type: ignore[arg-type]
            blobs = [_blob(bytes(g.value)) for g in layer if g.number == blobs_no and g.wire == 2]  # type: ignore[arg-type]
            if names and blobs:
                layers[names[0]] = blobs
    except (CaffeError, UnicodeDecodeError, ValueError) as exc:
        raise CaffeError(f"{os.fspath(path)!r} is not a readable .caffemodel ({exc})") from None
    if not layers:
        raise CaffeError(f"{os.fspath(path)!r} holds no layer with learned parameters: is it a .caffemodel?")
    return layers


def _squeezed(shape: tuple[int, ...]) -> tuple[int, ...]:
    """``shape`` without its leading 1s (the legacy format pads every blob to 4-d with them)."""
    dims = list(shape)
    while len(dims) > 1 and dims[0] == 1:
        dims.pop(0)
    return tuple(dims)


def state_dict_from_blobs(
    module: nn.Module, layers: dict[str, list[np.ndarray]]
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """(``module``'s state dict with every parameter taken from the Caffe layer of its module's name, the
    layers used). A module's name is its whole dotted path, else its last part when no other module ends
    so: ``G.defc7.weight`` <- layer ``defc7`` blob 0, ``.bias`` <- blob 1. Buffers are kept as the module
    has them. Raises CaffeError naming the first parameter that has no layer or whose blob holds another
    number of values."""
    state = dict(module.state_dict())
    last_parts = [path.rsplit(".", 1)[-1] for path, _ in module.named_modules()]
    held = ", ".join(list(layers)[:12]) + (", ..." if len(layers) > 12 else "")
    used: list[str] = []
    for key, param in module.named_parameters():
        path, _, kind = key.rpartition(".")
        index = {"weight": 0, "bias": 1}.get(kind)
        last = path.rsplit(".", 1)[-1]
        layer = path if path in layers else last if last in layers and last_parts.count(last) == 1 else None
        if index is None or layer is None:
            raise CaffeError(
                f"parameter {key!r} has no Caffe layer named {path!r} or {last!r} (the file holds: {held}); "
                "the spec is not this file's network"
            )
        blobs = layers[layer]
        if index >= len(blobs):
            raise CaffeError(f"parameter {key!r}: Caffe layer {layer!r} has {len(blobs)} blob(s), no {kind}")
        blob = blobs[index]
        if _squeezed(blob.shape) != _squeezed(tuple(param.shape)):  # V1's 1 x 1 x out x in: leading 1s aside
            raise CaffeError(
                f"parameter {key!r} has shape {tuple(param.shape)} but Caffe layer {layer!r} blob {index} "
                f"has shape {blob.shape}; the spec is not this file's network"
            )
        state[key] = torch.from_numpy(blob.reshape(tuple(param.shape)).copy()).to(param.dtype)
        used += [layer] if layer not in used else []
    return state, used
