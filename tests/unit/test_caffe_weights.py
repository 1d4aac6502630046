"""`atlas convert-caffe`: .caffemodel files written here in protobuf's wire format (both of Caffe's layer
formats, packed and unpacked fields), converted for tiny modules and loaded back."""

from __future__ import annotations

import struct
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from atlas.models.caffe_weights import read_caffemodel, state_dict_from_blobs
from tests.unit import byo_factories
from tests.unit.test_cli import assert_user_error, atlas_in_process

pytestmark = pytest.mark.unit

SPEC = "python:tests.unit.byo_factories:good"  # conv1, conv2, fc6, fc7, fc8


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:  # length-delimited (wire type 2)
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _int_field(number: int, value: int) -> bytes:  # varint (wire type 0)
    return _varint(number << 3) + _varint(value)


def _blob(array: np.ndarray, legacy: bool = False, packed: bool = True) -> bytes:
    """BlobProto: data (5) packed or one fixed32 per value; shape (7) or legacy num/channels/height/width."""
    values = array.astype("<f4").ravel()
    if packed:
        data = _field(5, values.tobytes())
    else:
        data = b"".join(_varint(5 << 3 | 5) + struct.pack("<f", v) for v in values)
    if legacy:  # V1: always 4-d, leading 1s (InnerProduct's weight is 1 x 1 x out x in)
        dims = [1] * (4 - array.ndim) + list(array.shape)
        shape = b"".join(_int_field(n, d) for n, d in zip((1, 2, 3, 4), dims, strict=True))
    else:
        shape = _field(7, _field(1, b"".join(_varint(d) for d in array.shape)))  # BlobShape.dim, packed
    return shape + data


def _caffemodel(layers: dict[str, list[np.ndarray]], v1: tuple[str, ...] = (), extra: bytes = b"") -> bytes:
    """NetParameter: ``v1`` layers in the legacy format (NetParameter.layers = 2, name 4, blobs 6, type
    enum 5), the rest as LayerParameter (NetParameter.layer = 100, name 1, type 2, blobs 7)."""
    out = bytearray(_field(1, b"tiny") + extra)  # NetParameter.name
    for i, (name, blobs) in enumerate(layers.items()):
        if name in v1:
            body = _field(4, name.encode()) + _int_field(5, 14)
            body += b"".join(_field(6, _blob(b, legacy=True, packed=i % 2 == 0)) for b in blobs)
            out += _field(2, body)
        else:
            body = _field(1, name.encode()) + _field(2, b"Convolution")
            body += b"".join(_field(7, _blob(b, packed=i % 2 == 0)) for b in blobs)
            out += _field(100, body)
    return bytes(out)


def _weights_of(module: torch.nn.Module) -> dict[str, list[np.ndarray]]:
    """A Caffe layer per module of ``module`` with parameters: [weight, bias], random values."""
    rng = np.random.default_rng(0)
    layers: dict[str, list[np.ndarray]] = {}
    for key, param in module.named_parameters():
        layer = key.rpartition(".")[0]
        layers.setdefault(layer, []).append(rng.standard_normal(tuple(param.shape)).astype(np.float32))
    return layers


def test_both_layer_formats_convert_into_the_modules_state_dict(tmp_path):
    module = byo_factories.good()
    layers = _weights_of(module)
    relu = {"relu1": []}  # a layer without blobs: no parameters, left out
    path = tmp_path / "tiny.caffemodel"
    path.write_bytes(_caffemodel({**layers, **relu}, v1=("conv2", "fc6", "fc8"), extra=_int_field(7, 3)))
    read = read_caffemodel(path)
    assert list(read) == list(layers)
    assert read["fc6"][0].shape == (1, 1, *layers["fc6"][0].shape)  # the legacy format's 4-d shape
    assert read["conv1"][0].shape == layers["conv1"][0].shape
    state, used = state_dict_from_blobs(module, read)
    assert used == list(layers)
    module.load_state_dict(state, strict=True)
    for name, blobs in layers.items():
        weight, bias = getattr(module, name).weight, getattr(module, name).bias
        assert torch.equal(weight, torch.from_numpy(blobs[0]))
        assert torch.equal(bias, torch.from_numpy(blobs[1]))
    nested = torch.nn.Sequential(OrderedDict(G=byo_factories.good()))  # as DeePSiM's G.defc7: by last name
    state, used = state_dict_from_blobs(nested, read)
    nested.load_state_dict(state, strict=True)
    assert torch.equal(nested.G.conv2.weight, torch.from_numpy(layers["conv2"][0])) and used == list(layers)


def test_convert_caffe_writes_a_file_the_spec_loads(tmp_path, capsys):
    module = byo_factories.good()
    layers = _weights_of(module)
    source = tmp_path / "net.caffemodel"
    source.write_bytes(_caffemodel({**layers, "fc9": [np.zeros((2, 10), np.float32)]}, v1=("fc7",)))
    out = tmp_path / "weights" / "net.pth"
    proc = atlas_in_process(capsys, "convert-caffe", str(source), "--spec", SPEC, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"wrote {out}: ") and "from 5 Caffe layers of net.caffemodel" in proc.stdout
    assert "(left out: fc9)" in proc.stdout and f"weights: {out}" in proc.stdout
    from atlas.config.models import ModelConfig
    from atlas.models import load_model

    loaded = load_model(ModelConfig(spec=SPEC, weights=str(out)), "target", default_size=32)
    assert torch.equal(loaded.module.fc7.weight, torch.from_numpy(layers["fc7"][0]))


def test_convert_caffe_refuses_what_does_not_fit_in_one_line(tmp_path, capsys):
    module = byo_factories.good()
    layers = _weights_of(module)
    out = tmp_path / "out.pth"

    def convert(source: Path):
        return atlas_in_process(capsys, "convert-caffe", str(source), "--spec", SPEC, "--out", str(out))

    missing = tmp_path / "missing.caffemodel"
    missing.write_bytes(_caffemodel({k: v for k, v in layers.items() if k != "fc7"}))
    assert_user_error(
        convert(missing), "parameter 'fc7.weight' has no Caffe layer named 'fc7'", "conv1, conv2"
    )
    wrong = tmp_path / "wrong.caffemodel"
    wrong.write_bytes(_caffemodel({**layers, "fc8": [np.zeros((3, 32), np.float32), layers["fc8"][1]]}))
    assert_user_error(
        convert(wrong), "parameter 'fc8.weight' has shape (10, 32)", "the spec is not this file's"
    )
    swapped = tmp_path / "swapped.caffemodel"  # the same number of values, transposed: refused, not reshaped
    swapped.write_bytes(_caffemodel({**layers, "fc7": [layers["fc7"][0].T.copy(), layers["fc7"][1]]}))
    assert_user_error(
        convert(swapped), "'fc7.weight' has shape (32, 16) but Caffe layer 'fc7' blob 0 has shape (16, 32)"
    )
    varint = tmp_path / "varint.caffemodel"  # a blob's data as a varint: its value is no length to allocate
    blob = _field(7, _field(1, _varint(2))) + _int_field(5, 400_000_000)
    varint.write_bytes(_field(100, _field(1, b"fc7") + _field(7, blob)))
    assert_user_error(convert(varint), "is not a readable .caffemodel (blob field 5 has wire type 0")
    junk = tmp_path / "notes.caffemodel"
    junk.write_bytes(b"\xff" * 40)
    assert_user_error(convert(junk), f"{str(junk)!r} is not a readable .caffemodel")
    empty = tmp_path / "empty.caffemodel"
    empty.write_bytes(_field(1, b"net"))
    assert_user_error(convert(empty), "holds no layer with learned parameters")
    assert_user_error(convert(tmp_path / "nope.caffemodel"), "CAFFEMODEL: ", "is not a file")
    source = tmp_path / "net.caffemodel"
    source.write_bytes(_caffemodel(layers))
    same = atlas_in_process(capsys, "convert-caffe", str(source), "--spec", SPEC, "--out", str(source))
    assert_user_error(same, "--out")  # the input is not overwritten
    assert source.read_bytes() == _caffemodel(layers)
    assert not out.exists() and not list(tmp_path.glob(".*.tmp"))  # nothing half-written
