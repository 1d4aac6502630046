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
