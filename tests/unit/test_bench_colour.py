"""The colour rule of the quality benchmark, and its metrics, on pictures whose colour is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from atlas.bench.colour import (
    COLOUR_NAMES,
    border_colour,
    colour_presence,
    object_colour,
    over_representation,
)
from atlas.toyworld.shapes import FINE_SDFS, PALETTE

pytestmark = pytest.mark.unit


def _render(fine: int, colour: int, bg: int, distractor: int | None, size: int = 32, seed: int = 0):
    """One toy-world-like picture: darkened background of palette colour ``bg`` with a gradient, the object
    (shape ``fine``) in palette colour ``colour`` at 0.85 brightness, an optional dot, pixel noise."""
    g = torch.Generator().manual_seed(seed)
    pal = torch.tensor(PALETTE)
    c = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1
    gy, gx = torch.meshgrid(c, c, indexing="ij")
    img = (pal[bg] * 0.4 + 0.1)[:, None, None] + 0.05 * gx[None]
    r = 0.6 + 0.2 * float(torch.rand(1, generator=g))
    theta = 6.28 * float(torch.rand(1, generator=g))
    px = (math.cos(theta) * gx + math.sin(theta) * gy) / r
    py = (-math.sin(theta) * gx + math.cos(theta) * gy) / r
    alpha = (0.5 - FINE_SDFS[fine](px, py) * r * size / 2).clamp(0, 1)[None]
    img = img * (1 - alpha) + (pal[colour] * 0.85)[:, None, None] * alpha
    if distractor is not None:
        d = ((0.5 - (torch.hypot(gx - 0.8, gy + 0.8) - 0.12) * size / 2).clamp(0, 1))[None]
        img = img * (1 - d) + pal[distractor][:, None, None] * d
    img = img + 0.02 * torch.randn(img.shape, generator=g)
    return (img.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()  # (H, W, 3)


def test_object_colour_of_every_palette_colour_and_shape():
    images, truth = [], []
    n = len(PALETTE)
    for colour in range(n):
        for fine in range(len(FINE_SDFS)):
            bg = (colour + 1 + fine % (n - 1)) % n
            dot = (colour + 2 + fine) % n if fine % 2 else None
            if dot == colour:
                dot = None
            images.append(_render(fine, colour, bg, dot, seed=colour * 100 + fine))
            truth.append(colour)
    got = object_colour(np.stack(images))
    assert got.tolist() == truth


def test_object_colour_at_other_sizes_and_float_input():
    img = _render(0, 5, 2, None, size=16)
    assert object_colour(img[None]).tolist() == [5]  # magenta disk on a dark blue background
    assert object_colour(img.astype(np.float32) / 255).tolist() == [5]  # one (H, W, 3) float picture
    assert object_colour(np.zeros((0, 32, 32, 3), np.uint8)).shape == (0,)


def test_border_colour_is_the_background():
    img = _render(2, 7, 0, None)
    bg = border_colour(img[None])[0]
    assert np.allclose(bg, np.asarray(PALETTE[0]) * 0.4 + 0.1, atol=0.06)


def test_colour_presence():
    assert colour_presence([5, 5, 1, 2], [1, 2, 2, 3]) == 0.5
    assert colour_presence([1], [1]) == 1.0
    assert math.isnan(colour_presence([], [1]))


def test_over_representation_known_shares():
    # pictures: magenta 3/4, red 1/4; real top-k: magenta 1/8, red 2/8, blue 5/8
    o = over_representation([5, 5, 5, 0], [5, 0, 0, 2, 2, 2, 2, 2], min_count=1)
    assert o["colour"] == "magenta" and o["max_ratio"] == pytest.approx(0.75 / 0.125)
    assert o["ratios"]["red"] == pytest.approx(1.0) and o["ratios"]["blue"] == 0.0
    assert "green" not in o["ratios"]  # neither uses it
    assert o["picture_share"]["magenta"] == 0.75 and o["real_share"]["blue"] == 0.625
    # the same distribution is 1x everywhere; a colour the real images never show is inf
    same = over_representation([1, 2, 1, 2], [2, 1], min_count=1)
    assert same["max_ratio"] == pytest.approx(1.0)
    assert over_representation([3, 1], [1, 1], min_count=1)["max_ratio"] == math.inf
    assert over_representation([3, 1], [1, 1], min_count=1)["colour"] == COLOUR_NAMES[3]
    assert math.isnan(over_representation([], [])["max_ratio"])


def test_over_representation_rates_colours_with_enough_pictures():
    # 40 pictures, 90 real images: one blue picture against one blue real image is 2.25x, but unrated
    pictures = [7] * 20 + [1] * 19 + [2]
    real = [7] * 45 + [1] * 44 + [2]
    o = over_representation(pictures, real)  # min_count 3
    assert o["ratios"]["blue"] == pytest.approx(2.25)
    assert o["max_ratio_all"] == pytest.approx(2.25) and o["colour_all"] == "blue"
    assert o["colour"] in ("white", "green") and o["max_ratio"] == pytest.approx(1.0, abs=0.01)
    # a colour many pictures use but no real image shows is rated (and infinite)
    o = over_representation([5] * 10 + [7] * 30, [7] * 90)
    assert o["colour"] == "magenta" and o["max_ratio"] == math.inf
    # magenta collapse: 85 % of 40 pictures against 14 % of 90 real images
    o = over_representation([5] * 34 + [7] * 6, [5] * 13 + [7] * 77)
    assert o["colour"] == "magenta" and o["max_ratio"] == pytest.approx(0.85 / (13 / 90))


def _unit(unit: int, pictures: list[np.ndarray], real: list[np.ndarray], acts=(2.0, 1.0)):
    """A UnitResult whose chains' best pictures and real top-k images are the given pictures."""
    from atlas.sampling.results import ChainResult, ImageRecord, UnitResult

    def rec(img, act):
        return ImageRecord(10, img, act, 0.0, 0, "best")

    chains = [
        ChainResult(
            c,
            c,
            "facet_seed:0",
            0,
            rec(im, acts[0]),
            rec(im, acts[0]),
            10,
            [],
            [],
            False,
            torch.zeros(3),
            0.0,
        )
        for c, im in enumerate(pictures)
    ]
    topk = [(i, acts[1], im) for i, im in enumerate(real)]
    return UnitResult("fc7", unit, "fc", None, "raw[fc7:0]", "ppgn_h/dae", 1, chains, topk)


def test_layer_metrics_on_pictures_of_known_colour():
    from atlas.bench.product import layer_metrics, subset

    red, blue, white, magenta = (_render(0, c, 2 if c != 2 else 1, None) for c in (0, 2, 7, 5))
    units = [
        _unit(0, [red, magenta], [red, red, blue]),  # half its pictures in a top-k colour
        _unit(1, [white, white], [white, white, white]),  # all of them
    ]
    m = layer_metrics(units)
    assert m["colour_presence"] == pytest.approx(0.75) and m["chains"] == 4
    assert m["top_colour"] == "white" and m["top_colour_share"] == pytest.approx(0.5)
    o = m["over_representation"]
    assert o["colour_all"] == "magenta" and o["max_ratio_all"] == math.inf  # no real image is magenta
    assert o["ratios"]["red"] == pytest.approx((1 / 4) / (2 / 6))
    assert m["activation_ratio"] == pytest.approx(2.0)  # best activation 2 against real top-k 1
    assert m["diversity"] > 0 and m["diversity_real"] > 0
    assert subset(list(range(10)), 4) == [0, 3, 6, 9] and subset([5, 6], None) == [5, 6]
    assert subset(list(range(10)), 1) == [0] and subset([1, 2], 5) == [1, 2]
