"""Does the picture show the label? The reader's decode -> concept matching on tiny known cases
(atlas/toyworld/concepts.py, atlas/toyworld/reading.py)."""

from __future__ import annotations

import math
import types

import numpy as np
import pytest
import torch
from torch import nn

from atlas.models.loaded import LoadedModel
from atlas.models.spaces import ImageSpace
from atlas.toyworld.concepts import picture_concepts, requirements, shows
from atlas.toyworld.nets import READER_HEADS, ReaderNet
from atlas.toyworld.reading import Decoded, Reader, agreement, decode_heads, reader_verdict

pytestmark = pytest.mark.unit

SIZES = [n for _, n in READER_HEADS]  # fine 12, colour 8, row 3, col 3, size 3, distractor 2


def _logits(fine=(0,), colour=0, row=0, col=0, size=0, distractor=0, fine_p=None) -> torch.Tensor:
    """One picture's concatenated head logits: a large logit on each chosen value (or fine_p: fine logits)."""
    heads = [torch.full((n,), -20.0) for n in SIZES]
    if fine_p is not None:
        heads[0] = torch.log(torch.tensor(fine_p))
    else:
        heads[0][list(fine)] = 20.0
    for i, v in enumerate((colour, row, col, size, distractor), start=1):
        heads[i][v] = 20.0
    return torch.cat(heads)


class _TwoPictureReader(nn.Module):
    """Reads a picture by its red channel: red pictures -> `A`, others -> `B` (fixed logits)."""

    head_sizes = READER_HEADS
    split = ReaderNet.split

    def __init__(self, a: torch.Tensor, b: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("a", a)
        self.register_buffer("b", b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        red = (x[:, 0].mean((1, 2)) > x[:, 2].mean((1, 2)))[:, None]  # (B, 1)
        return torch.where(red, self.a[None], self.b[None])


# red pill (capsule) at top-right, large, no distractor; blue disk, middle-centre, small, with a distractor
RED_PILL = _logits(fine=(8,), colour=0, row=0, col=2, size=2)
BLUE_DISK = _logits(fine=(0,), colour=2, row=1, col=1, size=0, distractor=1)


def _reader() -> Reader:
    model = LoadedModel(_TwoPictureReader(RED_PILL, BLUE_DISK), "reader", "test:reader", space=ImageSpace(4))
    return Reader(model, torch.device("cpu"))


def _picture(rgb) -> np.ndarray:
    return np.broadcast_to(np.array(rgb, np.uint8), (4, 4, 3)).copy()


RED, BLUE = _picture((230, 10, 10)), _picture((10, 10, 230))


def _chain(chain: int, last, best=None, snapshots=(), diverged=False):
    rec = lambda image: types.SimpleNamespace(image=image)  # noqa: E731
    return types.SimpleNamespace(
        chain=chain,
        last=rec(last),
        best=rec(best if best is not None else last),
        snapshots=[rec(s) for s in snapshots],
        diverged=diverged,
    )


def test_picture_concepts_name_the_vocabulary():
    assert picture_concepts(8, 0, 0, 2, 2, False) == [
        "class:pill", "facet:pill/capsule", "colour:red", "pos:top-right", "size:large",
    ]  # fmt: skip
    assert picture_concepts(0, 2, 1, 1, 0, True) == [
        "class:disk", "colour:blue", "pos:middle-centre", "size:small", "distractor",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("label", "shown"),
    [
        ("red pill", True),  # conjunction: colour and class
        ("blue pill", False),
        ("red disk", False),
        ("class:pill", True),
        ("facet:pill/capsule", True),
        ("facet:pill/two_dots", False),
        ("colour:red", True),
        ("pos:top-right", True),
        ("pos:top-left", False),
        ("size:large", True),
        ("distractor", False),
        ("dogs", None),  # a user's folder concept: the toy reader cannot tell
        ("purple pill", None),  # not a toy colour
        ("class:pill|ring", True),  # a union: either class
        ("class:ring|frame", False),
        ("colour:orange|red", True),
        ("class:pill|purple", None),  # not a toy class
    ],
)
def test_shows_matches_labels_to_decoded_concepts(label, shown):
    concepts = picture_concepts(8, 0, 0, 2, 2, False)  # a red capsule, top-right, large
    assert shows(concepts, label) is shown


def test_requirements_of_place_bound_concepts():
    assert requirements("colour:red@here") == [{"colour:red", "here:object"}]
    assert requirements("white ring@here") == [{"colour:white", "class:ring", "here:object"}]
    assert requirements("here:edge") == [{"here:edge"}]
    assert requirements("pos:top-left@here") is None and requirements("class:bogus@here") is None
    assert requirements("class:ring|frame@here") == [
        {"class:ring", "here:object"},
        {"class:frame", "here:object"},
    ]
    assert shows(["class:pill", "colour:red", "here:object"], "red pill@here") is True
    assert shows(["class:pill", "colour:red", "here:background"], "red pill@here") is False


def test_toy_concepts_mark_the_object_concepts_localizable():
    from atlas.toyworld.concepts import toy_concepts
    from atlas.toyworld.dataset import render
    from atlas.toyworld.presets import DataConfig

    c = toy_concepts(render(60, DataConfig(size=16, n_train=0, n_test=60, seed=0), seed=1))
    assert {"class:ring", "facet:pill/capsule", "colour:red", "red ring", "class:ring|frame"} <= set(
        c.localizable
    )
    assert not any(n.startswith(("pos:", "size:")) or n == "distractor" for n in c.localizable)


def test_requirements_of_conjunctions_and_unions():
    assert requirements("green hook") == [{"colour:green", "class:hook"}]
    assert requirements("distractor") == [{"distractor"}] and requirements("nothing here") is None
    assert requirements("class:ring|frame") == [{"class:ring"}, {"class:frame"}]


def test_class_sums_its_facets_probability_and_facet_stays_within_the_class():
    # fine probabilities: disk 0.4, pill/capsule 0.3, pill/two_dots 0.3 -> class pill (0.6), facet capsule
    p = [1e-6] * 12
    p[0], p[8], p[9] = 0.4, 0.3, 0.3
    module = _TwoPictureReader(_logits(fine_p=p), _logits(fine_p=p))
    got = decode_heads(module, torch.zeros(1, 3, 4, 4))
    assert got["cls"].tolist() == [8] and got["fine"].tolist() == [8]  # not disk (fine 0), the top fine label


def test_reader_decodes_uint8_pictures():
    d = _reader()(np.stack([RED, BLUE, RED]))
    assert d.cls.tolist() == [8, 0, 8] and d.colour.tolist() == [0, 2, 0]
    assert d.concepts(1) == ["class:disk", "colour:blue", "pos:middle-centre", "size:small", "distractor"]
    assert d.position.tolist() == [2, 4, 2]


def test_agreement_is_the_mean_modal_share_over_attributes():
    d = _reader()(np.stack([RED, RED, RED, RED]))
    assert agreement(d) == 1.0
    mixed = _reader()(np.stack([RED, RED, RED, BLUE]))
    assert agreement(mixed) == pytest.approx(0.75)  # every attribute differs in one picture of four
    fields = {f: np.array([0, 0]) for f in Decoded.__dataclass_fields__}
    fields["colour"] = np.array([0, 1])  # only the colour differs: (1 + 0.5 + 1 + 1 + 1) / 5
    assert agreement(Decoded(**fields)) == pytest.approx(0.9)


def test_unit_verdict_from_last_pictures_without_diverged_chains():
    chains = [
        _chain(0, RED, best=BLUE, snapshots=[BLUE, RED]),
        _chain(1, RED),
        _chain(2, BLUE),
        _chain(3, BLUE, diverged=True),  # left out
    ]
    v = reader_verdict(_reader(), chains, "red pill", snapshots=True)
    assert v.label_shown == pytest.approx(2 / 3)
    assert v.agreement == pytest.approx(2 / 3)  # 2 of 3 last pictures agree on every attribute
    assert v.pictures[(0, "last", 0)][:3] == ["class:pill", "facet:pill/capsule", "colour:red"]
    assert v.pictures[(0, "best", 0)][0] == "class:disk"  # every kept picture is decoded
    assert v.pictures[(0, "snapshot", 1)][0] == "class:pill"
    assert set(v.pictures) >= {(3, "last", 0), (2, "best", 0)}
    plain = reader_verdict(_reader(), chains, "red pill")  # the worker's: last and best pictures only
    assert set(plain.pictures) == {(c, k, 0) for c in range(4) for k in ("last", "best")}
    assert plain.label_shown == v.label_shown and plain.agreement == v.agreement
    assert reader_verdict(_reader(), chains, "colour:blue").label_shown == pytest.approx(1 / 3)
    assert reader_verdict(_reader(), chains, None).label_shown is None  # no label
    assert reader_verdict(_reader(), chains, "dogs").label_shown is None  # not a toy concept
    all_diverged = [_chain(0, BLUE, diverged=True), _chain(1, BLUE, diverged=True)]
    assert reader_verdict(_reader(), all_diverged, "blue disk").label_shown == 1.0  # all diverged: use them
    assert reader_verdict(_reader(), [], "red pill") is None


def test_reader_net_shapes_and_heads():
    net = ReaderNet((4, 8, 8, 8), 4, 16, 16)
    out = net(torch.zeros(2, 3, 16, 16))
    assert out.shape == (2, sum(SIZES) + 16 * 16)  # the heads, then the coverage map's logits
    parts = net.split(out)
    assert {k: v.shape[1] for k, v in parts.items() if k != "cover"} == dict(READER_HEADS)
    assert parts["cover"].shape == (2, 16, 16)
    assert decode_heads(net, torch.zeros(2, 3, 16, 16))["cover"].dtype == torch.bool
    assert "coords" not in net.state_dict()  # derived from the size, not stored


def test_reader_loss_learns_the_coverage_map():
    """A few steps on one image fit its mask: the coverage term is part of the reader's loss."""
    from atlas.toyworld.train_reader import reader_loss

    torch.manual_seed(0)
    net = ReaderNet((4, 8, 8, 8), 4, 16, 16)
    x = torch.rand(1, 3, 16, 16)
    mask = torch.zeros(1, 16, 16, dtype=torch.bool)
    mask[:, 4:12, 2:9] = True
    targets = {name: torch.zeros(1, dtype=torch.long) for name, _ in READER_HEADS}
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        reader_loss(net, net(x), targets, mask).backward()
        opt.step()
    net.eval()
    got = decode_heads(net, x)["cover"]
    assert (got == mask).float().mean() > 0.95
    heads_only = reader_loss(net, net(x), targets)  # without a mask: the heads' cross-entropy alone
    assert heads_only < reader_loss(net, net(x), targets, ~mask)


class _CoverReader(_TwoPictureReader):
    """As _TwoPictureReader, and the object's pixels are the red ones."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        red = x[:, 0] > x[:, 2]  # (B, 4, 4)
        cover = torch.where(red, 20.0, -20.0).flatten(1)
        return torch.cat([super().forward(x), cover], dim=1)


def test_place_bound_concepts_are_read_at_the_units_cell():
    left_red = np.concatenate([RED[:, :3], BLUE[:, 3:]], axis=1)  # red but the last column: a red pill
    model = LoadedModel(_CoverReader(RED_PILL, BLUE_DISK), "reader", "test:reader", space=ImageSpace(4))
    reader = Reader(model, torch.device("cpu"))
    d = reader(np.stack([left_red, BLUE]))
    assert d.cover is not None and d.cover.shape == (2, 4, 4)
    assert d.concepts(0, (0, 2, 0, 2))[-2:] == ["here:object", "here:interior"]
    assert d.concepts(0, (0, 2, 3, 4))[-1] == "here:background"
    assert d.concepts(0, (0, 2, 2, 4))[-2:] == ["here:object", "here:edge"]  # half covered
    assert d.concepts(0) == picture_concepts(8, 0, 0, 2, 2, False)  # no cell: no here concepts
    assert d.select([1]).cover.shape == (1, 4, 4)
    chains = [_chain(0, left_red), _chain(1, BLUE)]
    v = reader_verdict(reader, chains, "colour:red@here", cell=(0, 4, 0, 2))
    assert v.label_shown == 0.5 and "here:interior" in v.pictures[(0, "last", 0)]
    assert reader_verdict(reader, chains, "colour:red@here", cell=(0, 4, 3, 4)).label_shown == 0.0
    assert reader_verdict(reader, chains, "here:background", cell=(0, 4, 3, 4)).label_shown == 1.0
    assert reader_verdict(reader, chains, "colour:red@here").label_shown == 0.0  # no cell: never here


def test_bench_label_shown_and_planted_concepts_shown():
    """`atlas bench truth`'s reader rows: label shown over units with a label; planted units' own concept."""
    from atlas.bench.truth import planted_shown, reader_metrics

    def unit(u, chains, label):
        lab = types.SimpleNamespace(label=label, cell=None) if label else None
        return types.SimpleNamespace(unit=u, status="ok", chains=chains, label=lab)

    results = [
        unit(0, [_chain(0, RED), _chain(1, RED)], "red pill"),  # shown 1.0
        unit(1, [_chain(0, BLUE), _chain(1, RED)], "colour:blue"),  # shown 0.5
        unit(2, [_chain(0, BLUE)], None),  # no label: agreement only
    ]
    m = reader_metrics(results, _reader())
    assert m["label_shown_units"] == 2 and m["label_shown"] == pytest.approx(0.75)
    assert m["reader_agreement"] == pytest.approx((1.0 + 0.5 + 1.0) / 3)
    assert m["label_shown_part_units"] == 0 and math.isnan(m["label_shown_parts"])  # no conv unit here
    conv = [
        unit(0, [_chain(0, RED), _chain(1, BLUE)], "here:interior"),
        unit(1, [_chain(0, RED)], "red pill"),
    ]
    cover = LoadedModel(_CoverReader(RED_PILL, BLUE_DISK), "reader", "test:reader", space=ImageSpace(4))
    for u in conv:
        u.label.cell = (0, 4, 0, 4)
    m = reader_metrics(conv, Reader(cover, torch.device("cpu")))
    assert (m["label_shown_part_units"], m["label_shown_parts"]) == (
        1,
        0.5,
    )  # the red picture covers the cell
    assert m["label_shown_twin_units"] == 0 and m["label_shown"] == pytest.approx(0.75)
    planted = [
        {"unit": 0, "kind": "concept", "concept": "red pill"},
        {"unit": 1, "kind": "fooling", "concept": "blue disk"},
        {"unit": 2, "kind": "silent"},
    ]
    assert planted_shown(results, planted, _reader()) == {
        "shown": {"red pill": 1.0},
        "concept_shown": 1.0,
        "fooling_shown": 0.5,
    }
    assert reader_metrics(results, None)["label_shown_units"] == 0
    assert planted_shown(results, planted, None) == {}
