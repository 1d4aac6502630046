"""Facet-seeded starts from real exemplars, and chains that stop at the natural activation range."""

from __future__ import annotations

import math

import pytest
import torch

from atlas.config import ComputeConfig, FacetConfig, PpgnConfig, SamplerConfig
from atlas.models.probes import LayerProbe
from atlas.sampling import Engine, facet_exemplars, top_real
from atlas.sampling.engine import _Chain
from atlas.sampling.seeds import chain_generators, chain_seed
from atlas.sampling.units import make_unit
from tests.unit.tiny_models import tiny_world

pytestmark = pytest.mark.unit
CPU = torch.device("cpu")
FP32 = ComputeConfig(autocast="none")  # exact comparisons with float32 codes


@pytest.fixture(scope="module")
def world(one_torch_thread):
    return tiny_world()


def engine(world, facets=None, **sampler):
    t, g, d, r = world
    base = dict(steps=12, chains_per_unit=4, record_every=1, start="facet_seeded", method="ppgn_h")
    base.update(sampler)
    return Engine(t, g, d, SamplerConfig(**base), facets or FacetConfig(), FP32, CPU, real=r)


def test_facet_exemplars_pick_each_clusters_best_member_in_rank_order():
    # 9 "images" ranked by activation (row 0 highest) in three well-separated groups
    group = torch.tensor([2, 0, 1, 0, 2, 1, 0, 1, 2])
    centres = torch.tensor([[10.0, 0.0], [0.0, 10.0], [-10.0, -10.0]])
    feats = centres[group] + 0.01 * torch.randn(9, 2, generator=torch.Generator().manual_seed(0))
    pos, sizes = facet_exemplars(feats, k=3, seed=0)
    assert pos.tolist() == [0, 1, 2]  # the best-ranked member of groups 2, 0, 1, in that order
    assert sizes.tolist() == [3, 3, 3]
    pos, sizes = facet_exemplars(feats[[1, 3, 6]], k=3, seed=0)  # one group only: one cluster survives
    assert pos.tolist()[0] == 0 and int(sizes.sum()) == 3


def test_facet_seeded_code_starts_are_real_codes_of_the_units_top_images(world):
    t, _, _, r = world
    pool = 16
    e = engine(world, facets=FacetConfig(max_facets=3, seed_pool=pool))
    e.real_layer_values("fc8")
    unit = make_unit("fc8", 4, (10,), True, "center")
    gens = chain_generators([chain_seed(0, "fc8", 4, c) for c in range(4)], CPU)
    starts, labels = e.starts.for_unit("fc8", unit, [0, 1, 2, 3], gens, seed=0)
    with torch.no_grad():
        codes = LayerProbe(t.module, ["relu6"])(t.space.encode(r.images))["relu6"]
    idx, _ = top_real(e.real_layer_values("fc8"), 4, pool)
    lower, upper = e._bounds()
    for c in range(3):  # one chain per exemplar: the clipped code of one of the unit's top real images
        d = (torch.minimum(torch.maximum(codes[idx], lower), upper) - starts[c]).abs().amax(1)
        assert float(d.min()) < 1e-5, c
    assert labels[:3] == ["facet_seed:0", "facet_seed:1", "facet_seed:2"]
    d0 = (torch.minimum(torch.maximum(codes[idx[0]], lower), upper) - starts[0]).abs().max()
    assert float(d0) < 1e-5  # chain 0: the cluster holding the unit's top image
    assert bool((starts >= lower - 1e-6).all() and (starts <= upper + 1e-6).all())  # in bounds
    assert not torch.allclose(starts[3], starts[0])  # a repeated exemplar gets REPEAT_NOISE


def test_stop_at_freezes_a_chain_once_it_reaches_the_natural_maximum(world):
    ppgn = PpgnConfig(eps1=1e-3, eps3=0.0, lr=0.3)
    free = engine(world, ppgn_h=ppgn, steps=30).map_units("fc8", [1, 6], seed=0)
    stopping = engine(world, ppgn_h=ppgn, steps=30, stop_at=0.5)
    res = stopping.map_units("fc8", [1, 6], seed=0)
    natural = stopping.real_layer_values("fc8").max(0).values
    stopped = 0
    for u, uf in zip(res, free, strict=True):
        top = float(natural[u.unit])
        threshold = 0.5 * top if top > 0 else math.inf  # a unit silent on real images never stops
        for c, cf in zip(u.chains, uf.chains, strict=True):
            acts = [row["activation"] for row in c.trajectory]
            assert max(acts) >= acts[0]  # the objective rose (or the chain started above the threshold)
            hit = [i for i, a in enumerate(acts) if a >= threshold]
            if not hit:
                assert c.best.activation == pytest.approx(cf.best.activation, rel=1e-4)
                assert c.stopped_step is None and cf.stopped_step is None
                continue
            stopped += 1
            first = hit[0]
            assert all(a == pytest.approx(acts[first], rel=1e-5) for a in acts[first:])  # frozen
            assert c.best_step == c.trajectory[first]["step"] and c.best.activation >= threshold
            assert c.stopped_step == c.best_step  # recorded: the chains table says when it stopped
            assert c.last.activation == pytest.approx(c.best.activation, rel=1e-5)
            norms = [row["code_norm"] for row in c.trajectory[first:]]
            assert max(norms) - min(norms) < 1e-4  # the code no longer moves
    assert stopped >= 2  # the threshold is within reach on the tiny world


def test_stop_at_needs_real_images_and_never_stops_a_silent_unit(world):
    t, g, d, _ = world
    cfg = SamplerConfig(method="ppgn_h", steps=3, chains_per_unit=2, start="random", stop_at=1.0)
    e = Engine(t, g, d, cfg, FacetConfig(), FP32, CPU, real=None)
    batch = [_Chain(0, make_unit("fc8", 0, (10,), True, "center"), 0, 1)]
    assert e._stop_at("fc8", batch) is None  # no real images: chains run every step
    e2 = engine(world, stop_at=1.0)
    e2.real_layer_values("fc8")[:, 3] = -1.0  # a unit no real image activates
    s = e2._stop_at("fc8", [_Chain(0, make_unit("fc8", u, (10,), True, "center"), 0, 1) for u in (1, 3)])
    assert math.isfinite(float(s[0])) and math.isinf(float(s[1]))


@pytest.mark.parametrize("mode", ["random", "mean", "real", "facet_seeded"])
def test_pixel_start_modes_draw_what_they_name(world, mode):
    """Each pixel start mode: its own label and its own picture (grey + noise, mean image + noise, the unit's
    top real images, the mean images of clusters of them)."""
    t, _, _, r = world
    e = engine(world, method="pixel", start=mode, facets=FacetConfig(max_facets=2, seed_pool=8))
    e.real_layer_values("fc8")
    unit = make_unit("fc8", 2, (10,), True, "center")
    gens = chain_generators([chain_seed(0, "fc8", 2, c) for c in range(4)], CPU)
    x, labels = e.starts.for_unit("fc8", unit, [0, 1, 2, 3], gens, seed=0)
    assert x.shape == (4, 3, 16, 16) and float(x.min()) >= 0 and float(x.max()) <= 1
    top, _ = top_real(e.real_layer_values("fc8"), 2, 8)
    if mode == "random":
        assert labels == ["random"] * 4 and abs(float(x.mean()) - 0.5) < 0.05 and float(x.std()) > 0.05
    elif mode == "mean":
        assert labels == ["mean"] * 4
        assert float((x - r.images.mean(0)).abs().mean()) < 0.06  # the mean image + N(0, 0.05)
    elif mode == "real":
        assert labels == [f"real:{int(i)}" for i in top[:4]]
        torch.testing.assert_close(x, r.images[top[:4]])  # the unit's top 4 images, no noise
    else:
        assert labels == ["facet_seed:0", "facet_seed:1", "facet_seed:0", "facet_seed:1"]
        members = r.images[top]  # every cluster mean lies inside the hull of the top images
        assert bool((x[:2] >= members.amin(0) - 1e-6).all() and (x[:2] <= members.amax(0) + 1e-6).all())
        assert not torch.allclose(x[2], x[0])  # a repeated seed gets its own noise


def test_best_of_pool_picks_each_chains_highest_scoring_draw():
    """Known answer: the image is the state, the unit reads pixel u; chain b's best draw is the one whose
    pixel u is largest (a NaN draw never wins)."""
    from types import SimpleNamespace

    from atlas.sampling.chain import TargetReadout
    from atlas.sampling.start_pool import best_of_pool

    class Identity:
        def image(self, state):
            return state

    units = [make_unit("x", u, (3,), False, "center") for u in (0, 2)]
    cand = torch.zeros(3, 2, 3)  # (P, B, S)
    cand[0, 0, 0], cand[1, 0, 0], cand[2, 0, 0] = 1.0, 5.0, 2.0  # chain 0 reads pixel 0: draw 1 wins
    cand[0, 1, 2], cand[1, 1, 2], cand[2, 1, 2] = 3.0, float("nan"), 1.0  # chain 1, pixel 2: draw 0
    read = lambda x: {"x": x}  # noqa: E731
    readout = TargetReadout(encode=lambda x: x, probe=read, final_probe=read, layer="x")
    setup = SimpleNamespace(autocast=lambda: torch.autocast("cpu", enabled=False), to_input=lambda x: x)

    def objective(values, index):
        return values.gather(1, index[:, None])[:, 0]

    out = best_of_pool(Identity(), readout, objective, units, cand, setup)
    assert torch.equal(out[0], cand[1, 0]) and torch.equal(out[1], cand[0, 1])


def test_start_pool_draws_from_the_mean_and_raises_the_start_activation(world):
    """The engine starts each chain from its pool's best draw: never below the plain start on average,
    labelled, deterministic; seeded starts ignore the pool."""

    def first_values(e):
        rows = e.map_units("fc8", [1, 3], seed=0)
        chains = [c for u in rows for c in u.chains]
        return [c.start for c in chains], [float(c.trajectory[0]["activation"]) for c in chains]

    plain = engine(world, start="mean", start_noise=0.25, steps=2)
    pooled = engine(world, start="mean", start_noise=0.25, steps=2, start_pool=16)
    labels, act_pooled = first_values(pooled)
    _, act_plain = first_values(plain)
    assert all(lab == "mean:pool16" for lab in labels)
    assert sum(act_pooled) > sum(act_plain)
    assert first_values(pooled)[1] == act_pooled  # deterministic
    seeded = engine(world, start="facet_seeded", start_pool=16, steps=2)
    assert not any("pool" in lab for lab in first_values(seeded)[0])


def test_a_batch_whose_chains_all_stopped_skips_to_its_last_step(world, monkeypatch):
    """Once every chain of a batch has stopped, the steps left would only repeat frozen pictures: the loop
    reads them once more at the last step (the same pictures and records as running every step)."""
    from atlas.sampling import chain

    calls = {"n": 0}
    real_next = chain._next_state

    def counting(*args, **kwargs):
        calls["n"] += 1
        return real_next(*args, **kwargs)

    monkeypatch.setattr(chain, "_next_state", counting)
    ppgn = PpgnConfig(eps1=1e-3, eps3=0.0, lr=0.3)
    low = engine(world, ppgn_h=ppgn, steps=40, stop_at=1e-6)  # reached at once by units real images drive
    natural = low.real_layer_values("fc8").max(0).values
    units = [u for u in range(len(natural)) if float(natural[u]) > 0][:2]
    res = low.map_units("fc8", units, seed=0)
    chains = [c for u in res for c in u.chains]
    assert all(c.stopped_step is not None for c in chains), [c.stopped_step for c in chains]
    last = max(c.stopped_step for c in chains)
    assert calls["n"] == last + 1 < 40  # updates up to the last stop, none after
    for c in chains:
        assert c.trajectory[-1]["step"] == 40 and c.last.activation == pytest.approx(c.best.activation)
