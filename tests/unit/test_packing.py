"""Packing an object graph with its tensors' bytes out of band (atlas.pipeline.packing), as the driver ships
the run's bundle to its workers."""

from __future__ import annotations

import pickle
import sys
import types

import pytest
import torch
from torch import nn

from atlas.pipeline.packing import Packed, pack, unpack

pytestmark = pytest.mark.unit


class Tied(nn.Module):
    """A network whose output layer reuses the embedding's weight, with a buffer and a frozen layer."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(7, 5)
        self.body = nn.Sequential(nn.Conv2d(5, 5, 1), nn.BatchNorm2d(5))
        self.head = nn.Linear(5, 7, bias=False)
        self.head.weight = self.embed.weight
        self.register_buffer("scale", torch.linspace(0, 1, 5))
        for p in self.body.parameters():
            p.requires_grad_(False)


def _round_trip(obj):
    """Through the out-of-band buffers as Ray hands them back: read-only arrays."""
    packed = pack(obj)
    for b in packed.buffers:
        b.flags.writeable = False
    return packed, unpack(packed)


def test_a_network_round_trips_with_equal_values_parameters_and_grad_flags():
    torch.manual_seed(0)
    net = Tied().eval()
    packed, back = _round_trip(net)
    assert isinstance(back, Tied) and isinstance(packed, Packed)
    for (name, a), (_, b) in zip(net.state_dict().items(), back.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    for (name, a), (_, b) in zip(net.named_parameters(), back.named_parameters(), strict=True):
        assert type(b) is nn.Parameter and a.requires_grad == b.requires_grad, name
    x = torch.randn(2, 5, 3, 3)
    assert torch.equal(net.body(x), back.body(x))


def test_shared_storages_stay_shared_and_travel_once():
    net = Tied()
    base = torch.arange(24.0)
    views = {"whole": base, "view": base[4:10], "strided": base.view(4, 6).t()}
    packed, (back_net, back_views) = _round_trip((net, views))
    assert back_net.head.weight is back_net.embed.weight  # tied weights: one Parameter again
    assert back_views["view"].untyped_storage().data_ptr() == back_views["whole"].untyped_storage().data_ptr()
    assert torch.equal(back_views["strided"], views["strided"])
    assert back_views["strided"].stride() == views["strided"].stride()
    back_views["whole"][5] = -1.0
    assert back_views["view"][1] == -1.0  # still a view of the same storage
    storages = {t.untyped_storage().data_ptr() for t in [*net.state_dict().values(), base]}
    assert len(packed.buffers) == len(storages)  # each storage's bytes once (the tied weight and views too)


def test_unpacked_tensors_are_writable_copies_of_their_own():
    """A worker may fold or cast its weights: writing touches neither the shipped bytes nor the original."""
    original = torch.ones(4, 4)
    packed, back = _round_trip({"w": original})
    back["w"].mul_(3)
    assert torch.equal(original, torch.ones(4, 4))
    assert torch.equal(unpack(packed)["w"], torch.ones(4, 4))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.int64, torch.bool, torch.uint8])
def test_every_dtype_keeps_its_bits(dtype):
    values = (torch.randn(3, 5) * 10).to(dtype)
    _, back = _round_trip(values)
    assert back.dtype == dtype and torch.equal(back, values)


def test_tensors_outside_the_fast_path_still_round_trip():
    """Pickled by torch itself: a tensor with Python attributes, a non-leaf tensor's detached value, an
    empty tensor, a zero-dim tensor, a sparse tensor."""
    tagged = torch.ones(2)
    tagged.note = "kept"
    sparse = torch.eye(3).to_sparse()
    _, back = _round_trip(
        {"tagged": tagged, "empty": torch.empty(0, 3), "scalar": torch.tensor(2.5), "sparse": sparse}
    )
    assert back["tagged"].note == "kept" and torch.equal(back["tagged"], tagged)
    assert back["empty"].shape == (0, 3) and back["scalar"].item() == 2.5
    assert torch.equal(back["sparse"].to_dense(), torch.eye(3))


def test_a_module_given_by_value_needs_no_import_on_the_other_side():
    module = types.ModuleType("packing_only_here")
    source = (
        "from torch import nn\nclass Scaled(nn.Module):\n    def __init__(self):\n"
        "        super().__init__()\n        self.fc = nn.Linear(2, 2)\n"
        "    def forward(self, x):\n        return 2 * self.fc(x)\n"
    )
    exec(source, module.__dict__)
    sys.modules["packing_only_here"] = module
    try:
        net = module.Scaled()
        packed = pack(net, by_value=[module])
    finally:
        del sys.modules["packing_only_here"]
    back = unpack(packed)  # the module is gone: only a by-value class can be rebuilt
    x = torch.randn(1, 2)
    assert torch.equal(back(x), net(x))
    with pytest.raises(ModuleNotFoundError):
        sys.modules["packing_only_here"] = module
        try:
            by_reference = pack(module.Scaled())
        finally:
            del sys.modules["packing_only_here"]
        pickle.loads(by_reference.pickle, buffers=by_reference.buffers)
