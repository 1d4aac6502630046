"""Unit labels and faithfulness numbers (issue 16) on tiny cases with known answers."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from atlas.sampling.concepts import (
    PARSIMONY_MARGIN,
    ConceptSet,
    auroc,
    average_ranks,
    label_units,
    natural_percentile,
    picture_flags,
)

pytestmark = pytest.mark.unit


def _pairwise_auroc(v: torch.Tensor, pos: torch.Tensor) -> float:
    """Brute force: P(value of a positive > value of a negative), ties counting half."""
    p, n = v[pos], v[~pos]
    wins = sum((a > b) + 0.5 * (a == b) for a, b in itertools.product(p.tolist(), n.tolist()))
    return wins / (len(p) * len(n))


def test_average_ranks_share_ties():
    v = torch.tensor([[0.0], [2.0], [0.0], [1.0], [0.0]])
    assert average_ranks(v)[:, 0].tolist() == [2.0, 5.0, 2.0, 4.0, 2.0]


def test_auroc_matches_the_pairwise_definition_with_ties():
    gen = torch.Generator().manual_seed(0)
    v = torch.randint(0, 4, (40, 3), generator=gen).float()  # many ties, as post-ReLU units have
    members = torch.rand(40, 2, generator=gen) < 0.4
    got = auroc(v, members)
    for u in range(3):
        for c in range(2):
            assert float(got[u, c]) == pytest.approx(_pairwise_auroc(v[:, u], members[:, c]), abs=1e-6)


def test_perfect_inverse_and_constant_detectors():
    members = torch.tensor([[True], [True], [False], [False]])
    v = torch.tensor([[5.0, 0.0, 1.0], [4.0, 1.0, 1.0], [1.0, 4.0, 1.0], [0.0, 5.0, 1.0]])
    assert auroc(v, members)[:, 0].tolist() == [1.0, 0.0, 0.5]
    assert math.isnan(float(auroc(v, torch.ones(4, 1, dtype=torch.bool))[0, 0]))  # no negatives


def test_label_units_best_runner_up_threshold_and_min_positives():
    n = 60
    cls = torch.arange(n) % 3  # three balanced concepts
    members = torch.stack([cls == 0, cls == 1, cls == 2, torch.arange(n) < 3], dim=1)  # last: 3 images only
    concepts = ConceptSet(["a", "b", "c", "rare"], members)
    noise = torch.linspace(0, 0.5, n)
    detector = (cls == 1).float() * 2 + noise  # separates b perfectly
    weak = (cls == 2).float() * 0.1 + torch.rand(n, generator=torch.Generator().manual_seed(1))  # ~chance
    rare = (torch.arange(n) < 3).float() * 10  # perfect for "rare", which has too few images to count
    labels = label_units(torch.stack([detector, weak, rare], dim=1), concepts)
    assert labels[0].label == "b" and labels[0].score == 1.0 and labels[0].runner_up in {"a", "c"}
    assert labels[0].margin == pytest.approx(
        1.0 - float(auroc(detector[:, None], members)[0, :3].sort().values[1])
    )
    assert labels[1].label is None and labels[1].score < 0.85 and labels[1].best is not None
    assert labels[2].best != "rare"


def test_conjunction_must_beat_its_parts_and_silent_units_get_no_label():
    """Parsimony: a unit firing for every ring (white ones a shade more) is a ring detector; one firing
    for white rings only is a white-ring detector. Silence: a unit no image activates gets no label."""
    n = 240
    idx = torch.arange(n)
    shape, colour = idx % 2 == 0, (idx // 2) % 4 == 0  # rings: half the images; white: a quarter
    names = ["class:ring", "colour:white", "white ring", "other"]
    members = torch.stack([shape, colour, shape & colour, idx % 3 == 0], dim=1)
    concepts = ConceptSet(names, members, parts={"white ring": ("colour:white", "class:ring")})
    jitter = torch.rand(n, generator=torch.Generator().manual_seed(0))
    any_ring = shape.float() * 0.6 + (shape & colour).float() * 0.5 + jitter  # white a shade more
    white_ring = (shape & colour).float() * 4 + jitter
    silent = (shape & colour).float() * 4 + jitter - 10  # the same order, never above 0
    values = torch.stack([any_ring, white_ring, silent], dim=1)
    scores = auroc(values, members)
    assert 0 < float(scores[0, 2] - scores[0, 0]) < 0.02  # by AUROC alone the conjunction would win...
    labels = label_units(values, concepts, silent=values.max(0).values <= 0)
    assert labels[0].label == "class:ring" and labels[0].score == pytest.approx(float(scores[0, 0]))
    assert labels[0].runner_up != "white ring"  # a refinement of the label is not its rival
    assert labels[1].label == "white ring" and labels[1].runner_up in {"class:ring", "colour:white"}
    assert labels[2].label is None and labels[2].best == "white ring"  # ...and its order is not a concept
    assert label_units(values, concepts, parsimony=0.0)[0].label == "white ring"
    with pytest.raises(ValueError, match="parts"):
        ConceptSet(names, members, parts={"white ring": ("colour:white", "class:disk")})


def test_a_union_is_the_label_only_when_both_alternatives_drive_the_unit_to_its_top():
    """A unit firing for rings and frames alike is a ring-or-frame detector (the union beats each class by
    more than the margin, both fill its top images); one whose top images are rings only, frames merely
    ranking above the rest, is a ring detector although the union's AUROC is higher."""
    n = 400
    idx = torch.arange(n)
    ring, frame = idx % 4 == 0, idx % 4 == 1
    names = ["class:ring", "class:frame", "class:ring|frame", "class:disk"]
    members = torch.stack([ring, frame, ring | frame, idx % 4 == 2], dim=1)
    concepts = ConceptSet(names, members, parts={"class:ring|frame": ("class:ring", "class:frame")})
    jitter = torch.rand(n, generator=torch.Generator().manual_seed(0))
    alike = (ring | frame).float() * 5 + jitter
    # 60 of the 100 rings on top, the other 40 below every frame; frames above the rest, never at the top
    rings_on_top = (ring & (idx < 240)).float() * 5 + frame.float() * 2 + ring.float() + jitter
    values = torch.stack([alike, rings_on_top], dim=1)
    scores = auroc(values, members)
    assert (scores[:, 2] - scores[:, 0] > PARSIMONY_MARGIN).all()  # by AUROC the union would win both
    assert float(scores[1, 0]) >= 0.85
    both, top_rings = label_units(values, concepts)
    assert both.label == "class:ring|frame" and both.runner_up in {"class:ring", "class:frame"}
    assert top_rings.label == "class:ring" and top_rings.top_share == 1.0


def test_a_label_must_describe_the_units_top_images():
    """Top consistency: concept a wins by AUROC (its 100 images sit above the bulk) but the unit's top 20
    images are 17 of b's 20; b also passes the AUROC threshold, so b is the label, with its top share."""
    n = 400
    a = torch.arange(n) < 100
    b = (torch.arange(n) >= 100) & (torch.arange(n) < 120)
    jitter = torch.rand(n, generator=torch.Generator().manual_seed(0))
    values = 2.0 * a.float() + jitter
    values[100:117] = 10.0 + jitter[100:117]  # 17 of b's images are the unit's strongest responses
    concepts = ConceptSet(["a", "b"], torch.stack([a, b], dim=1))
    scores = auroc(values[:, None], concepts.members)[0]
    assert float(scores[0]) > float(scores[1]) >= 0.85  # AUROC alone would say "a"
    (lab,) = label_units(values[:, None], concepts)
    assert lab.label == "b" and lab.score == pytest.approx(float(scores[1]))
    assert lab.top_share == pytest.approx(17 / 20)
    assert label_units(values[:, None], concepts, top_share=0.0)[0].label == "a"
    values[100:117] = 0.5 * jitter[100:117]  # now b's images are weak: its AUROC falls below the threshold
    values[120:137] = 10.0 + jitter[120:137]  # and the top 20 belong to neither concept
    (lab,) = label_units(values[:, None], concepts)
    assert lab.label is None and lab.best == "a" and lab.top_share < 0.5


def test_natural_percentile_and_flags():
    natural = torch.tensor([0.0, 1.0, 2.0, 3.0])
    assert natural_percentile(natural, 10.0) == 1.0
    assert natural_percentile(natural, -1.0) == 0.0
    assert natural_percentile(natural, 2.0) == pytest.approx(2.5 / 4)  # a tie counts half
    assert math.isnan(natural_percentile(natural, math.nan))
    assert (
        picture_flags(0.5) == "weak" and picture_flags(0.995) == "" and picture_flags(math.nan) is None
    )  # not checked: no real images


def test_folder_concepts_from_subfolders(tmp_path):
    import numpy as np
    from PIL import Image

    from atlas.sampling import load_image_folder

    for sub, k in (("cats", 2), ("dogs", 3)):
        (tmp_path / sub).mkdir()
        for i in range(k):
            Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(tmp_path / sub / f"{i}.png")
    real = load_image_folder(tmp_path, size=8)
    assert real.concepts is not None and real.concepts.names == ["cats", "dogs"]
    assert real.concepts.members.sum(0).tolist() == [2, 3]
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "loose.png")  # not in a subfolder
    assert load_image_folder(tmp_path, size=8).concepts is None


def test_toy_concepts_follow_the_renderer():
    from atlas.toyworld.concepts import toy_concepts
    from atlas.toyworld.dataset import render
    from atlas.toyworld.presets import DataConfig
    from atlas.toyworld.shapes import CLASS_NAMES

    data = render(240, DataConfig(size=16, n_train=0, n_test=240, seed=0), seed=5)
    c = toy_concepts(data)
    col = {n: c.members[:, i] for i, n in enumerate(c.names)}
    for k, name in enumerate(CLASS_NAMES):
        assert torch.equal(col[f"class:{name}"], data.labels == k)
    pos = torch.stack([v for n, v in col.items() if n.startswith("pos:")], dim=1)
    size = torch.stack([v for n, v in col.items() if n.startswith("size:")], dim=1)
    colour = torch.stack([v for n, v in col.items() if n.startswith("colour:") and "|" not in n], dim=1)
    assert bool((pos.sum(1) == 1).all() and (size.sum(1) == 1).all() and (colour.sum(1) == 1).all())
    assert torch.equal(col["red hook"], col["colour:red"] & col["class:hook"])
    assert torch.equal(col["class:ring|frame"], col["class:ring"] | col["class:frame"])
    assert c.parts_of("colour:red|orange") == ("colour:red", "colour:orange")
    unions = [n for n in c.names if "|" in n]
    assert len(unions) == 45 + 28  # every pair of the 10 classes and of the 8 colours
    a = data.attributes
    assert a.mask.shape == (240, 16, 16) and bool(a.mask.flatten(1).any(1).all())  # every object has pixels
    left = col["pos:middle-left"] | col["pos:top-left"] | col["pos:bottom-left"]
    assert float(a.cx[left].max()) < float(a.cx[~left].min()) + 1e-6  # left = the smallest centres x


def test_engine_stores_labels_and_picture_percentiles():
    """A concept defined by the target's own response is recovered as the unit's label; every kept picture
    gets its natural percentile (consistent with its activation) and the weak flag follows it."""
    from atlas.config import ComputeConfig, FacetConfig, SamplerConfig
    from atlas.pipeline.rows import unit_rows
    from atlas.sampling import Engine
    from tests.unit.tiny_models import tiny_world

    t, g, d, real = tiny_world()
    with torch.no_grad():
        logits = t.module(t.space.encode(real.images))  # (N, 10)
    top = logits[:, 3] > logits[:, 3].median()
    real.concepts = ConceptSet(["drives-3", "other"], torch.stack([top, ~top], dim=1))
    cfg = SamplerConfig(steps=6, chains_per_unit=2, record_every=2, start="random", method="dgn_am")
    eng = Engine(t, g, d, cfg, FacetConfig(), ComputeConfig(autocast="none"), torch.device("cpu"), real=real)
    (res,) = eng.map_units("fc8", [3], seed=0)
    assert res.label is not None and res.label.label == "drives-3" and res.label.score == 1.0
    name, score, mean = res.label.tuning[0]  # the tuning chart's first bar: the label, its mean value
    assert (name, score) == ("drives-3", 1.0)
    assert mean == pytest.approx(float(logits[top, 3].mean()), rel=1e-4)
    natural = torch.sort(logits[:, 3]).values
    for c in res.chains:
        for rec in (c.last, c.best):
            assert rec.natural_percentile == natural_percentile(natural, rec.activation)
    rows = unit_rows(res, "s", steps=6, keep_snapshots=False, activations_full_max=16, activations_top_k=3)
    assert rows["units"][0]["label"] == "drives-3" and rows["units"][0]["label_margin"] == 1.0
    assert eng.path_layers("fc8")[-1] == "relu7"  # compared up to the layer right before the unit's
    lasts = [img for img in rows["images"] if img["kind"] == "last"]
    assert all(img["path_z"] is not None and -1 <= img["path_similarity"] <= 1 for img in lasts)
    assert all(0 <= img["path_percentile"] <= 1 for img in lasts)
    for img in rows["images"]:
        if img["kind"] != "real":
            weak = img["natural_percentile"] < 0.99
            off = img["path_percentile"] is not None and img["path_percentile"] < 0.01
            far = img["manifold_percentile"] is not None and img["manifold_percentile"] < 0.01
            flags = (("weak", weak), ("off_path", off), ("off_manifold", far))
            assert img["flags"] == ",".join(f for f, on in flags if on)


def test_path_layers_spread_before_the_unit_layer():
    from atlas.sampling.concepts import choose_path_layers

    order = [("c1", (4, 8, 8)), ("r1", (4, 8, 8)), ("c2", (8, 4, 4)), ("flat", (128,)), ("fc", (10,))]
    assert choose_path_layers(order, "fc") == ["r1", "c2", "flat"]  # the last one right before the unit's
    assert choose_path_layers(order, "r1") == ["c1"]
    assert choose_path_layers(order, "c1") == [] and choose_path_layers(order, "nope") == []


def test_path_score_in_natural_spreads_and_percentile_over_all_natural_images():
    from atlas.sampling.concepts import path_reference, path_score

    gen = torch.Generator().manual_seed(0)
    base = torch.rand(16, generator=gen) + 1.0
    top = base + 0.05 * torch.randn(9, 16, generator=gen)  # the unit's top natural images: one path
    natural = torch.cat([top, torch.rand(191, 16, generator=gen) + 0.2])  # every natural image (N=200)
    ref = path_reference({"l1": top}, {"l1": natural})
    assert ref.natural["l1"].shape == (200,) and bool((ref.natural["l1"].diff() >= 0).all())
    on = path_score(ref, {"l1": base + 0.05 * torch.randn(16, generator=gen)})
    further = path_score(ref, {"l1": 3.0 * base + 0.3 * torch.randn(16, generator=gen)})  # same path, pushed
    other = path_score(ref, {"l1": torch.rand(16, generator=gen) * torch.tensor([1.0, 0.0] * 8)})
    assert on.z > -3 and on.similarity > 0.99 and on.percentile > 0.9  # one more top image
    assert further.percentile > 0.5  # pushed along the natural path: as close to it as most natural images
    assert other.z < -3 and other.similarity < on.similarity  # another way to the unit:
    assert other.percentile < 0.01  # further from the path than every natural image
    assert all(math.isnan(x) for x in (path_score(ref, {"other": base}).z, path_score(ref, {}).percentile))
    assert picture_flags(1.0, other.percentile) == "off_path"
    assert (
        picture_flags(0.5, other.percentile) == "weak,off_path"
        and picture_flags(1.0, further.percentile) == ""
    )


def test_manifold_percentile_of_pictures_g_draws_and_of_noise():
    """A picture G drew from a natural code is redrawn about as well as natural images; noise is not."""
    from atlas.config import ComputeConfig, FacetConfig, SamplerConfig
    from atlas.sampling import Engine
    from atlas.sampling.manifold import reconstruction_error
    from tests.unit.tiny_models import tiny_world

    t, g, d, real = tiny_world()
    cfg = SamplerConfig(steps=4, chains_per_unit=2, record_every=2, start="random", method="dgn_am")
    eng = Engine(
        t, g, d, cfg, FacetConfig(), ComputeConfig(autocast="none"), torch.device("cpu"),
        code_layer="relu6", real=real,
    )  # fmt: skip
    (res,) = eng.map_units("fc8", [2], seed=0)
    assert eng.manifold_scored and all(c.last_code is not None for c in res.chains)
    scores = [c.last.manifold_percentile for c in res.chains]
    assert all(0.0 <= s <= 1.0 for s in scores)
    noise = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))  # far from G's pictures
    with torch.no_grad():
        codes = eng.nets.probes(["relu6"])[0](t.space.encode(noise))["relu6"]
    worst = reconstruction_error(eng.nets, noise, codes)
    assert all(eng.real.manifold_percentile(float(e)) < 0.01 for e in worst)
    typical = float(torch.median(eng.real._recon))
    assert eng.real.manifold_percentile(typical) == pytest.approx(0.5, abs=0.05)
    assert picture_flags(1.0, 0.5, 0.005) == "off_manifold" and picture_flags(1.0, 0.5, 0.5) == ""


def test_dissection_iou_known_answer():
    """Unit 0 is on exactly where concept A's object is: IoU 1 with A, 0 with B (Bau et al. 2017)."""
    from atlas.sampling.concepts import dissect_units, dissection_iou

    masks = torch.zeros(4, 8, 8, dtype=torch.bool)
    for n, (y, x) in enumerate([(0, 0), (2, 4), (5, 1), (6, 6)]):
        masks[n, y : y + 2, x : x + 2] = True  # each image's object: a 2 x 2 block
    members = torch.tensor([[1, 0], [1, 0], [0, 1], [0, 1]], dtype=torch.bool)  # A on 0, 1; B on 2, 3
    concepts = ConceptSet(["A", "B"], members, masks)
    maps = torch.zeros(4, 2, 8, 8)
    maps[:2, 0] = masks[:2].float()  # unit 0: A's objects
    maps[:, 1] = torch.rand(4, 8, 8, generator=torch.Generator().manual_seed(0))  # unit 1: noise
    iou = dissection_iou(maps, concepts, quantile=0.9)
    assert iou[0].tolist() == [1.0, 0.0]
    assert float(iou[1].max()) < 0.5
    (unit0, unit1) = [dissect_units(maps, concepts, threshold=0.5, quantile=0.9)[i] for i in (0, 1)]
    assert (unit0.label, unit0.iou) == ("A", 1.0) and unit1.label is None and unit1.best in ("A", "B")
    with pytest.raises(ValueError, match="masks"):
        ConceptSet(["A", "B"], members, masks[:3])


def test_conv_units_get_network_dissection_columns():
    from atlas.config import ComputeConfig, FacetConfig, SamplerConfig
    from atlas.pipeline.rows import unit_rows
    from atlas.sampling import Engine
    from tests.unit.tiny_models import tiny_world

    t, g, d, real = tiny_world()
    n = real.images.shape[0]
    bright = real.images.mean((1, 2, 3)) > real.images.mean()
    masks = real.images.mean(1) > real.images.mean(1).flatten(1).median(1).values.view(
        -1, 1, 1
    )  # (N, 16, 16)
    real.concepts = ConceptSet(["bright", "dark"], torch.stack([bright, ~bright], 1), masks)
    assert masks.shape == (n, 16, 16)
    cfg = SamplerConfig(steps=2, chains_per_unit=1, record_every=1, start="random", method="dgn_am")
    compute = ComputeConfig(autocast="none")
    eng = Engine(t, g, d, cfg, FacetConfig(enabled=False), compute, torch.device("cpu"), real=real)
    conv = eng.map_units("conv2", [0, 5], seed=0)
    assert all(r.label is not None and r.label.dissection is not None for r in conv)
    assert all(
        r.label.dissection.best in ("bright", "dark") and 0 <= r.label.dissection.iou <= 1 for r in conv
    )
    row = unit_rows(conv[0], "s", steps=2, keep_snapshots=False, activations_full_max=16, activations_top_k=3)
    unit = row["units"][0]
    assert unit["dissection_iou"] == pytest.approx(conv[0].label.dissection.iou)
    (fc,) = eng.map_units("fc7", [0], seed=0)  # not a conv unit: no dissection
    assert fc.label is not None and fc.label.dissection is None


def test_cell_of_maps_a_position_to_its_image_block():
    from atlas.map_cells import cell_of

    assert cell_of((4, 4), (8, 8), (32, 32)) == (16, 20, 16, 20)
    assert cell_of((0, 7), (8, 8), (32, 32)) == (0, 4, 28, 32)
    assert cell_of((1, 2), (3, 3), (8, 8)) == (2, 5, 5, 8)  # stride 8/3: blocks tile the image
    assert cell_of((2, 2), (4, 4), (2, 2)) == (1, 2, 1, 2)  # a map finer than the image: one pixel


def test_here_parts_follow_the_cell_coverage():
    from atlas.sampling.concepts import here_parts

    parts = here_parts(torch.tensor([0.0, 0.05, 0.3, 0.5, 0.94, 0.95, 1.0]))
    assert parts["here:background"].tolist() == [True, True, False, False, False, False, False]
    assert parts["here:edge"].tolist() == [False, False, True, True, True, False, False]
    assert parts["here:object"].tolist() == [False, False, False, True, True, True, True]
    assert parts["here:interior"].tolist() == [False, False, False, False, False, True, True]


def _place_bound_world(n: int = 120) -> tuple[ConceptSet, torch.Tensor, tuple[int, int, int, int]]:
    """n 8 x 8 images: a red or blue 4 x 4 object in one of four quadrants (each red / blue and quadrant
    equally often); the cell is the top-left quadrant's 2 x 2 centre."""
    g = torch.Generator().manual_seed(0)
    red = torch.arange(n) % 2 == 0
    quadrant = torch.randperm(n, generator=g) % 4
    masks = torch.zeros(n, 8, 8, dtype=torch.bool)
    for i, q in enumerate(quadrant.tolist()):
        y, x = 4 * (q // 2), 4 * (q % 2)
        masks[i, y : y + 4, x : x + 4] = True
    members = torch.stack([red, ~red], dim=1)
    concepts = ConceptSet(
        ["colour:red", "colour:blue"], members, masks, localizable=("colour:red", "colour:blue")
    )
    return concepts, quadrant, (1, 3, 1, 3)


def test_located_adds_the_parts_and_the_place_bound_twins():
    from atlas.sampling.concepts import located

    concepts, quadrant, cell = _place_bound_world()
    here = located(concepts, cell)
    col = {name: here.members[:, i] for i, name in enumerate(here.names)}
    at_cell = quadrant == 0
    assert torch.equal(col["here:object"], at_cell) and torch.equal(col["here:interior"], at_cell)
    assert torch.equal(col["here:background"], ~at_cell) and not bool(col["here:edge"].any())
    assert torch.equal(col["colour:red@here"], col["colour:red"] & at_cell)
    assert here.parts_of("colour:red@here") == ("colour:red", "here:object")
    either = ConceptSet(
        ["colour:red", "colour:blue", "colour:red|blue"],
        torch.cat([concepts.members, concepts.members.any(1, keepdim=True)], dim=1),
        concepts.masks,
        parts={"colour:red|blue": ("colour:red", "colour:blue")},
        localizable=("colour:red", "colour:blue", "colour:red|blue"),
    )
    assert located(either, cell).parts_of("colour:red|blue@here") == (
        "colour:red|blue", "here:object", "colour:red@here", "colour:blue@here",
    )  # fmt: skip
    assert here.names[:2] == concepts.names  # the image-level concepts stay, first
    with pytest.raises(ValueError, match="masks"):
        located(ConceptSet(["a"], torch.ones(3, 1, dtype=torch.bool)), cell)
    with pytest.raises(ValueError, match="localizable"):
        ConceptSet(["a"], torch.ones(3, 1, dtype=torch.bool), localizable=("b",))


def test_a_conv_unit_that_sees_a_red_object_at_its_place_gets_the_place_bound_label():
    """Image-level colour scores about 0.62 (red objects elsewhere do not drive the unit); 'a red object here'
    scores 1.0 and beats both its parts by more than the parsimony margin."""
    from atlas.sampling.concepts import located

    concepts, quadrant, cell = _place_bound_world()
    red = concepts.members[:, 0]
    values = ((quadrant == 0) & red).float()[:, None] + 0.01 * torch.rand(len(red), 1)  # (N, 1)
    plain = label_units(values, concepts, top_k=10)[0]
    assert plain.label is None and plain.best == "colour:red" and plain.score < 0.7  # ~0.25 + 0.75 / 2
    (unit,) = label_units(values, located(concepts, cell), top_k=10)
    assert unit.label == "colour:red@here" and unit.score == 1.0 and unit.top_share == 1.0


def test_the_runner_up_is_found_beyond_the_tuning_charts_top_concepts():
    """A label whose ten best concepts are all compounds holding it still gets a rival: the best concept
    outside them, with the margin measured against it (not a margin of the whole AUROC, no rival)."""
    n = 300
    idx = torch.arange(n)
    ring = idx % 2 == 0
    colours = [(idx // 2) % 12 == k for k in range(12)]
    names = ["class:ring", *[f"ring {k}" for k in range(12)], "class:disk"]
    members = torch.stack([ring, *[ring & c for c in colours], idx % 5 == 0], dim=1)
    parts = {f"ring {k}": ("class:ring",) for k in range(12)}
    concepts = ConceptSet(names, members, parts=parts)
    values = (ring.float() + 0.01 * torch.rand(n, generator=torch.Generator().manual_seed(1)))[:, None]
    [label] = label_units(values, concepts)
    assert label.label == "class:ring"
    assert all(name.startswith("ring ") or name == "class:ring" for name, _, _ in label.tuning)  # the premise
    assert label.runner_up == "class:disk" and label.margin < label.score
