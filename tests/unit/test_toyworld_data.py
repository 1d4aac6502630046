"""Toy-world dataset: determinism, class and facet balance, shapes (cheap: small renders only)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from atlas.errors import AtlasError
from atlas.toyworld.dataset import render
from atlas.toyworld.presets import DataConfig, config_hash, get_preset
from atlas.toyworld.shapes import CLASS_NAMES, FINE_NAMES, FINE_TO_CLASS, MULTIFACETED

pytestmark = pytest.mark.unit

SMALL = DataConfig(size=32, n_train=240, n_test=120, seed=0)


def test_render_is_deterministic_by_seed():
    a, b = render(120, SMALL, seed=7), render(120, SMALL, seed=7)
    assert torch.equal(a.images, b.images) and torch.equal(a.fine, b.fine)
    c = render(120, SMALL, seed=8)
    assert not torch.equal(a.images, c.images)


def test_shapes_and_dtypes():
    for size in (16, 32):
        d = render(48, DataConfig(size=size), seed=0)
        assert d.images.shape == (48, 3, size, size) and d.images.dtype == torch.uint8
        assert d.labels.shape == d.fine.shape == (48,)
        assert d.labels.dtype == d.fine.dtype == torch.long
        x = d.rgb01()
        assert x.dtype == torch.float32 and x.min() >= 0.0 and x.max() <= 1.0


def test_classes_and_facets_are_balanced():
    n = 240  # 24 per class, 12 per facet of a multifaceted class
    d = render(n, SMALL, seed=0)
    assert torch.bincount(d.labels, minlength=len(CLASS_NAMES)).tolist() == [n // len(CLASS_NAMES)] * 10
    counts = torch.bincount(d.fine, minlength=len(FINE_NAMES))
    for f, c in enumerate(FINE_TO_CLASS):
        expected = n // len(CLASS_NAMES) // (2 if c in MULTIFACETED else 1)
        assert counts[f].item() == expected, FINE_NAMES[f]
    assert torch.equal(torch.tensor(FINE_TO_CLASS)[d.fine], d.labels)


def test_world_has_shape_classes_and_two_multifaceted_classes():
    assert len(CLASS_NAMES) >= 10
    assert len(MULTIFACETED) >= 2
    for c in MULTIFACETED:
        assert FINE_TO_CLASS.count(c) == 2


def test_colour_does_not_decide_the_class():
    # every class takes colours from the shared palette: the mean image colour is about the same per class
    d = render(1000, SMALL, seed=3)
    x = d.rgb01()
    per_class = torch.stack([x[d.labels == c].mean((0, 2, 3)) for c in range(len(CLASS_NAMES))])  # (C, 3)
    assert (per_class - per_class.mean(0)).abs().max() < 0.08


def test_objects_are_visible():
    # the object differs from the background: every image has real contrast
    d = render(200, SMALL, seed=1)
    x = d.rgb01()
    spread = x.flatten(1).quantile(0.95, dim=1) - x.flatten(1).quantile(0.05, dim=1)
    assert spread.min() > 0.15


def test_real_images_api_and_unknown_split():
    from atlas.toyworld import real_images

    r = real_images("micro", split="test")
    cfg = get_preset("micro").data
    assert r.images.shape == (cfg.n_test, 3, cfg.size, cfg.size)
    assert r.class_names == CLASS_NAMES and r.fine_names == FINE_NAMES
    assert r.fine_to_class == FINE_TO_CLASS and r.multifaceted == MULTIFACETED
    with pytest.raises(AtlasError, match="valid splits"):
        real_images("micro", split="val")


def test_presets_and_hash():
    with pytest.raises(AtlasError, match="valid presets"):
        get_preset("huge")
    assert config_hash(get_preset("micro")) != config_hash(get_preset("default"))
    assert len(config_hash(get_preset("default"))) == 12


def test_unknown_component_lists_valid_names(tmp_path):
    from atlas.toyworld import load_component

    with pytest.raises(AtlasError, match="target, judge, generator, dae"):
        load_component("decoder", "micro", str(tmp_path))


def test_training_threads_from_the_environment(monkeypatch):
    import torch

    from atlas.errors import AtlasError
    from atlas.toyworld.loops import threads, train_threads

    monkeypatch.delenv("ATLAS_TRAIN_THREADS", raising=False)
    assert train_threads() == 2
    monkeypatch.setenv("ATLAS_TRAIN_THREADS", "1")
    before = torch.get_num_threads()
    with threads():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    monkeypatch.setenv("ATLAS_TRAIN_THREADS", "two")
    with pytest.raises(AtlasError, match="ATLAS_TRAIN_THREADS='two': give a positive number"):
        train_threads()


def test_two_object_pictures_paste_a_left_object_over_a_right_one():
    from atlas.toyworld.composites import two_object_pictures

    cfg = get_preset("micro").data
    pics = two_object_pictures(cfg, a=0, b=1, n=12)
    assert pics.dtype == np.uint8 and pics.shape == (12, cfg.size, cfg.size, 3)
    assert np.array_equal(pics, two_object_pictures(cfg, a=0, b=1, n=12))  # deterministic
    assert not np.array_equal(pics, two_object_pictures(cfg, a=0, b=1, n=12, seed=1))
    # the pasted class-0 object lies left of centre, the class-1 image's own object right of it
    right = render(4000, dataclasses.replace(cfg, distractor_p=0.0), seed=7920)
    ib = ((right.labels == 1) & (right.attributes.cx > 0.15)).nonzero().flatten()[:12]
    base = right.images[ib].permute(0, 2, 3, 1).numpy()
    changed = (pics != base).any(3)  # (K, S, S): where the left object was pasted
    cols = np.nonzero(changed)[2]
    assert changed.any(axis=(1, 2)).all() and cols.mean() < cfg.size / 2


PAIRS = dataclasses.replace(SMALL, radius=(0.36, 0.46), second_p=0.5, distractor_p=0.0)


def test_second_objects_are_of_another_class_and_train_as_half_and_half():
    d = render(400, PAIRS, seed=3)
    second = d.second_labels()
    two = second >= 0
    assert 0.4 < two.float().mean() < 0.6  # second_p
    assert (second[two] != d.labels[two]).all()  # never the first object's class
    assert torch.equal(torch.tensor(FINE_TO_CLASS)[d.second_fine[two]], second[two])
    assert torch.equal(d.single(), ~two)
    idx = torch.arange(len(d))
    targets = d.class_targets(idx, len(CLASS_NAMES))  # (N, C)
    assert torch.allclose(targets.sum(1), torch.ones(len(d)))
    assert (targets[two].max(1).values == 0.5).all() and (targets[~two].max(1).values == 1.0).all()
    assert (targets[two, second[two]] == 0.5).all() and (targets[idx, d.labels] >= 0.5).all()
    fine = d.fine_targets(idx, len(FINE_NAMES))
    assert (fine[two, d.second_fine[two]] == 0.5).all() and (fine[~two, d.fine[~two]] == 1.0).all()


def test_two_objects_sit_in_opposite_halves_without_overlap():
    d = render(300, PAIRS, seed=4)
    a, x = d.attributes, d.rgb01()  # (N, 3, S, S)
    two = d.second_labels() >= 0
    # the first object is moved off the centre lines' crossing: one centre coordinate beyond its radius
    off = torch.maximum(a.cx.abs(), a.cy.abs())
    assert (off[two] >= a.radius[two]).all()
    # away from the first object (its mask grown by 2 px), pixels far from the background: the second one
    grown = torch.nn.functional.max_pool2d(a.mask[:, None].float(), 5, 1, 2)[:, 0] > 0  # (N, S, S)
    background = x.flatten(2).median(2).values  # (N, 3): the object covers a small part
    far = ((x - background[:, :, None, None]).abs().amax(1) > 0.25) & ~grown  # (N, S, S)
    pixels = far.flatten(1).sum(1).float()
    assert pixels[two].quantile(0.05) > 8 and pixels[~two].quantile(0.95) < 4


def test_one_object_worlds_render_as_before_second_objects_came():
    plain = render(64, SMALL, seed=5)
    assert plain.second_fine is None and plain.single().all()
    # a zero second_p leaves the hash alone: the shipped one-object worlds keep their weights
    default = get_preset("default")
    assert default.data.second_p == 0.0 and get_preset("pairs").data.second_p > 0
    assert config_hash(default) == "c649bf3f7ce7"  # atlas/toyworld/weights/default-c649bf3f7ce7


def test_natural_pair_pictures_are_the_worlds_own_two_object_images_where_it_draws_them():
    from atlas.toyworld.composites import _pair_pool, natural_pair_pictures, two_object_pictures

    one = get_preset("micro").data
    assert np.array_equal(natural_pair_pictures(one, 0, 1, n=6), two_object_pictures(one, 0, 1, n=6))
    two = dataclasses.replace(one, radius=(0.36, 0.46), second_p=0.5)
    pics = natural_pair_pictures(two, 2, 7, n=10)
    assert pics.shape == (10, one.size, one.size, 3) and pics.dtype == np.uint8
    pool = _pair_pool(two, 0)
    classes = {frozenset(p) for p in zip(pool.labels.tolist(), pool.second_labels().tolist(), strict=True)}
    assert frozenset((2, 7)) in classes
    # every picture is one of the pool's images holding a class-2 and a class-7 object
    images = pool.images.permute(0, 2, 3, 1).numpy()
    for pic in pics:
        (i,) = np.nonzero((images == pic).all(axis=(1, 2, 3)))
        assert {int(pool.labels[i[0]]), int(pool.second_labels()[i[0]])} == {2, 7}


def test_config_accepts_exactly_the_presets():
    from typing import get_args

    from atlas.config import ToyWorldRef
    from atlas.toyworld.presets import PRESETS

    assert set(get_args(ToyWorldRef.model_fields["preset"].annotation)) == set(PRESETS)


def test_objects_mask_holds_every_object_and_weights_gs_pixel_loss():
    """``ToyAttributes.objects``: the first object's mask in a one-object image, both objects' in a pair;
    G's object-weighted MSE is plain MSE at weight 0 and counts object pixels 1 + w times."""
    from atlas.toyworld.train_generator import weighted_mse

    one = render(64, SMALL, seed=5).attributes
    assert torch.equal(one.objects, one.mask)
    d = render(120, PAIRS, seed=4)
    a, two = d.attributes, d.second_labels() >= 0
    assert (a.objects >= a.mask).all() and torch.equal(a.objects[~two], a.mask[~two])
    extra = (a.objects & ~a.mask).flatten(1).sum(1)  # the second object's pixels
    assert (extra[two] > 20).all() and (extra[~two] == 0).all()
    r, x = torch.zeros(1, 3, 2, 2), torch.ones(1, 3, 2, 2)
    x[..., 0, 0] = 3.0  # error 9 on the object pixel, 1 elsewhere
    w = torch.ones(1, 1, 2, 2)
    assert weighted_mse(r, x, None) == weighted_mse(r, x, w) == pytest.approx(3.0)
    w[..., 0, 0] = 4.0  # object weight 3: (4 * 9 + 3 * 1) / 7 per channel
    assert weighted_mse(r, x, w) == pytest.approx((4 * 9 + 3) / 7)
    default = get_preset("default")
    heavier = dataclasses.replace(
        default, generator=dataclasses.replace(default.generator, object_weight=2.0)
    )
    assert config_hash(default) == "c649bf3f7ce7" and config_hash(heavier) != config_hash(default)


def test_trainers_leave_the_callers_random_generator_alone():
    """Bootstrapping a world must not reseed torch's global generator under its caller's feet."""
    import importlib

    from atlas.toyworld.loops import own_rng

    @own_rng
    def seeds_and_draws() -> torch.Tensor:
        torch.manual_seed(0)
        return torch.rand(3)

    torch.manual_seed(123)
    expected = torch.rand(4)
    torch.manual_seed(123)
    inside = seeds_and_draws()
    assert torch.equal(torch.rand(4), expected) and torch.equal(inside, seeds_and_draws())
    trainers = {
        "train_dae": ["train_dae"],
        "train_generator": ["train_generator", "train_spatial_generator"],
        "train_judge": ["train_judge"],
        "train_target": ["train_target"],
        "train_reader": ["train_reader"],
    }
    for module, names in trainers.items():
        mod = importlib.import_module(f"atlas.toyworld.{module}")
        for name in names:
            assert hasattr(getattr(mod, name), "__wrapped__"), f"{module}.{name} is not @own_rng"
