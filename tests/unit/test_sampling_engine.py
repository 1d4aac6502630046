"""Sampling engine on tiny random models: objectives rise, batching is exact, determinism, faults, facets."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from atlas.config import ComputeConfig, DgnAmConfig, FacetConfig, PixelConfig, PpgnConfig, SamplerConfig
from atlas.models.probes import LayerProbe
from atlas.sampling import Engine, UnitResult
from tests.unit.tiny_models import TinyReal, tiny_world

pytestmark = pytest.mark.unit
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def world(one_torch_thread):
    return tiny_world()


def make(world, batch=64, facets=None, real=True, **sampler):
    t, g, d, r = world
    base = dict(steps=10, chains_per_unit=2, record_every=1, start="random")
    base.update(sampler)
    return Engine(
        t,
        g,
        d,
        SamplerConfig(**base),
        facets or FacetConfig(),
        ComputeConfig(batch_size=batch),
        CPU,
        real=r if real else None,
    )


def gain(results: list[UnitResult], key: str = "activation") -> float:
    """Mean over chains of (best value - value at step 0) for the trajectory key."""
    out = []
    for u in results:
        assert u.status == "ok", u.error
        for c in u.chains:
            vals = [row[key] for row in c.trajectory]
            out.append(max(vals) - vals[0])
    return float(np.mean(out))


@pytest.mark.parametrize("objective", ["raw", "softmax", "log_softmax"])
def test_each_objective_rises(world, objective):
    res = make(world, method="dgn_am", objective=objective).map_units("fc8", [0, 3], seed=0)
    assert gain(res, "log_prob" if objective != "raw" else "activation") > 0.01
    assert res[0].objective == f"{objective}[fc8:0]"


SAMPLERS = {
    "dgn_am": dict(method="dgn_am"),
    "ppgn_dae": dict(method="ppgn_h", ppgn_h=PpgnConfig(prior="dae", eps1=1e-3, lr=0.1)),
    "ppgn_joint": dict(method="ppgn_h", ppgn_h=PpgnConfig(prior="joint", eps1=1e-3, lr=0.1)),
    "ppgn_eq11": dict(method="ppgn_h", ppgn_h=PpgnConfig(step="eq11", eps1=0.05, eps2=5.0, eps3=0.1, lr=1.0)),
    "pixel": dict(method="pixel"),
    "pixel_priors": dict(method="pixel", pixel=PixelConfig(l2_decay=0.99, blur_every=3, jitter=1, tv=0.05)),
}


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_each_sampler_rises(world, name):
    res = make(world, objective="log_softmax", **SAMPLERS[name]).map_units("fc8", [1, 2], seed=0)
    assert gain(res, "log_prob") > 0.005
    c = res[0].chains[0]
    assert c.last.image.shape == (16, 16, 3) and c.last.image.dtype == np.uint8
    assert c.trajectory[0]["step"] == 0 and c.trajectory[-1]["step"] == 10
    assert set(c.trajectory[0]) >= {
        "activation",
        "log_prob",
        "rank",
        "top_competitor",
        "code_norm",
        "prior_residual",
        "grad_norm",
        "image_change",
    }
    if name == "ppgn_eq11":
        assert res[0].method == "ppgn_h/dae[eq11]"
    if name.startswith("ppgn"):
        assert np.isfinite(c.trajectory[1]["prior_residual"])


@pytest.mark.parametrize("method", ["ppgn_h", "pixel"])
def test_chain_in_batch_equals_chain_alone(world, method):
    kw = dict(
        method=method, chains_per_unit=3, ppgn_h=PpgnConfig(eps3=0.5, lr=0.1), pixel=PixelConfig(jitter=2)
    )
    batched = make(world, batch=64, **kw).map_units("fc8", [0, 4, 7], seed=5)
    alone = make(world, batch=1, **kw).map_units("fc8", [4], seed=5)[0]
    for a, b in zip(batched[1].chains, alone.chains, strict=True):
        assert a.seed == b.seed
        assert np.abs(a.last.image.astype(int) - b.last.image.astype(int)).max() <= 1
        torch.testing.assert_close(a.final_activations, b.final_activations, atol=1e-4, rtol=1e-4)


def test_determinism_and_seed_dependence(world):
    kw = dict(method="ppgn_h", ppgn_h=PpgnConfig(eps3=0.5, lr=0.1))
    r1 = make(world, **kw).map_units("fc8", [2], seed=1)[0]
    r2 = make(world, **kw).map_units("fc8", [2], seed=1)[0]
    r3 = make(world, **kw).map_units("fc8", [2], seed=2)[0]
    for a, b in zip(r1.chains, r2.chains, strict=True):
        assert np.array_equal(a.last.image, b.last.image) and str(a.trajectory) == str(b.trajectory)
    assert not np.array_equal(r1.chains[0].last.image, r3.chains[0].last.image)
    assert r1.chains[0].seed != r1.chains[1].seed


def test_the_order_a_process_maps_layers_in_does_not_change_the_bits(one_torch_thread):
    """A probe on a folded conv layer unfolds its BatchNorm for good, and folded or not the pair gives other
    float bits: an actor that mapped a conv1 shard before an fc8 shard drew fc8 from other bits than one
    that did not (PPGN-h's chains amplify them). Prepared with the run's layers (as every worker is), the
    order no longer matters."""
    bn_world = tiny_world(batchnorm=True)
    kw = dict(method="ppgn_h", ppgn_h=PpgnConfig(eps3=0.5, lr=0.1))

    def fc8(first: str | None, layers: list[str] | None) -> list[torch.Tensor]:
        engine = make(bn_world, **kw)
        if layers is not None:
            engine.prepare(layers)
        if first is not None:
            engine.map_units(first, [0], seed=1)
        return [c.final_activations for u in engine.map_units("fc8", [2, 5], seed=1) for c in u.chains]

    def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
        return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))

    assert not same(fc8(None, None), fc8("conv1", None))  # the fault this guards against is real here
    assert same(fc8(None, ["fc8", "conv1"]), fc8("conv1", ["fc8", "conv1"]))
    assert same(fc8("conv1", ["conv1", "fc8"]), fc8(None, ["conv1", "fc8"]))


def test_conv_center_vs_mean(world):
    center = make(world, method="pixel", spatial="center").map_units("conv2", [3], seed=0)[0]
    mean = make(world, method="pixel", spatial="mean").map_units("conv2", [3], seed=0)[0]
    assert center.kind == mean.kind == "conv"
    assert center.objective == "raw[conv2:3 @ (4,4)]" and center.spatial == "center (4,4)"
    assert mean.objective == "raw[conv2:3 mean]" and mean.spatial == "mean"
    assert center.chains[0].final_activations.shape == (16,)
    assert gain([center]) > 0 and gain([mean]) > 0
    # the two objectives read different numbers from the same layer
    assert center.chains[0].trajectory[0]["activation"] != mean.chains[0].trajectory[0]["activation"]


class Poison:
    """Parametrization wrapper: chain ``row`` of the batch turns NaN from call ``at`` on."""

    def __init__(self, inner, row: int, at: int) -> None:
        self.inner, self.row, self.at, self.calls = inner, row, at, 0
        self.name = inner.name

    def state_shape(self):
        return self.inner.state_shape()

    def image(self, state):
        img = self.inner.image(state)
        self.calls += 1
        if self.calls > self.at:
            mask = torch.zeros(img.shape[0], 1, 1, 1, dtype=torch.bool)
            mask[self.row] = True
            img = torch.where(mask, torch.full_like(img, float("nan")), img)
        return img


def test_nan_chain_is_flagged_and_batch_continues(world):
    engine = make(world, method="dgn_am", objective="log_softmax")
    engine.sampler.param = Poison(engine.sampler.param, row=1, at=4)
    res = engine.map_units("fc8", [0, 1], seed=0)
    assert [u.status for u in res] == ["ok", "ok"]
    bad = res[0].chains[1]
    assert bad.diverged and bad.facet == -1
    assert np.isfinite(bad.last.activation) and bad.last.step <= 4
    assert bad.trajectory[-1]["step"] <= 4
    others = [c for u in res for c in u.chains if c is not bad]
    assert not any(c.diverged for c in others)
    assert all(c.trajectory[-1]["step"] == 10 for c in others)
    assert gain([dataclasses.replace(res[1])]) > 0


def test_bad_unit_becomes_error_row(world):
    res = make(world, method="pixel").map_units("fc8", [0, 99], seed=0)
    assert [u.status for u in res] == ["ok", "error"]
    assert "out of range" in res[1].error


def test_failed_units_are_named_in_the_run_summary_with_how_to_redo_them(world):
    """A unit that failed is in the summary with its error and the way to redo it once fixed; a rerun of
    the complete run says so again (and `atlas run` exits 1 both times: ``errors``)."""
    from atlas.pipeline.driver import format_summary
    from atlas.pipeline.worker import _unit_errors

    res = make(world, method="pixel", steps=2).map_units("fc8", [0, 98, 99], seed=0)
    failed = _unit_errors(res)
    assert sum(failed.values()) == 2 and all("out of range" in note for note in failed)
    summary = {"units": 3, "chains": 2, "images": 4, "rows": {"units": 3}, "wall_seconds": 1.0,
               "units_per_minute": 60.0, "shards_run": 1, "shards_skipped": 0, "shards": 1, "diverged": 0,
               "errors": 2, "run_dir": "/tmp/my run", "error_notes": failed}  # fmt: skip
    text = format_summary(summary)  # stdout: the run's numbers; its failures go to stderr (a trial)
    assert "(60.0 units/min)" in text and "unit errors: 2" in text
    assert "error:" not in text and "of this run failed" not in text
    from atlas.pipeline.driver import failure_lines

    said = "\n".join(failure_lines(summary))
    assert "  error: 1 unit failed: ConfigError: unit 98 is out of range for layer 'fc8'" in said
    assert "2 units of this run failed (no pictures; atlas sql '/tmp/my run'" in said
    assert "`atlas verify '/tmp/my run' --repair` and the same `atlas run` redo their shards" in said
    every_unit_failed = format_summary(summary | {"errors": 3})
    assert "(no unit finished)" in every_unit_failed and "units/min" not in every_unit_failed
    again = {"nothing_to_do": True, "shards": 1, "run_dir": "/tmp/my run", "errors": 2, "run_totals": {}}
    assert failure_lines(again) == [failure_lines(summary)[-1]]  # a rerun: how many failed, and how to redo
    assert "failed" not in format_summary(again) and failure_lines(again | {"errors": 0}) == []


def test_a_unit_whose_batch_failed_and_ran_alone_carries_a_note_the_summary_counts(world, monkeypatch):
    """A network that fails on batches of more than 2 chains: its units are sound (run alone), and each
    says so in units.error, counted once in the run's warnings (a trial found it silent)."""
    from atlas.pipeline.worker import _warnings
    from atlas.sampling.engine import Engine

    run = Engine._run

    def small_batches_only(self, layer, batch, *args, **kwargs):
        if len(batch) > 2:
            raise ValueError("this network takes at most 2 pictures")
        return run(self, layer, batch, *args, **kwargs)

    monkeypatch.setattr(Engine, "_run", small_batches_only)
    res = make(world, method="pixel", steps=2, batch=8).map_units("fc8", [0, 1, 2], seed=0)
    assert [r.status for r in res] == ["ok"] * 3 and all(len(r.chains) == 2 for r in res)
    notes = {r.error for r in res}
    assert len(notes) == 1 and "the batch failed (ValueError: this network takes at most 2" in notes.pop()
    assert list(_warnings(res).values()) == [3]


def test_a_network_that_takes_only_small_batches_runs_whole_at_a_batch_size_it_takes(world):
    """The advice of the note above holds: at ``compute.batch_size`` N no pass holds more than N pictures,
    neither the float32 re-read of the best and last pictures (it read both at once: 2N) nor the passes over
    the real images (256 each, whatever the batch size: a user's trial found every unit without them)."""
    target = world[0].module
    sizes: list[int] = []

    def at_most_4(_module, args):
        sizes.append(args[0].shape[0])
        if args[0].shape[0] > 4:
            raise ValueError(f"a batch of {args[0].shape[0]}: this network takes at most 4 pictures")

    hook = target.register_forward_pre_hook(at_most_4)
    try:
        res = make(world, method="dgn_am", steps=2, batch=4).map_units("fc8", [0, 1, 2], seed=0)
    finally:
        hook.remove()
    assert [(r.status, r.error) for r in res] == [("ok", None)] * 3
    assert all(r.real_topk for r in res) and max(sizes) == 4


def test_target_not_run_past_deepest_layer(world):
    t = world[0]
    calls = {"fc7": 0, "fc8": 0}
    hooks = [
        getattr(t.module, n).register_forward_hook(lambda *_a, n=n: calls.__setitem__(n, calls[n] + 1))
        for n in calls
    ]
    try:
        make(world, method="pixel", facets=FacetConfig(enabled=False)).map_units("fc6", [0], seed=0)
        assert calls == {"fc7": 0, "fc8": 0}
        e = make(world, method="pixel")
        assert e.facet_layer == "relu7"  # one batch-1 metadata pass through the whole target
        calls.update(fc7=0, fc8=0)
        e.map_units("fc6", [0], seed=0)  # facet features of the last picture: relu7, still not fc8
        assert calls["fc8"] == 0 and calls["fc7"] > 0
    finally:
        for h in hooks:
            h.remove()


def test_layer_info_and_output_alias(world):
    e = make(world, method="pixel")
    assert e.layer_info("output") == ("output", 10, (10,))
    assert e.layer_info("fc6") == ("fc", 32, (32,))
    assert e.layer_info("conv1") == ("conv", 8, (8, 16, 16))
    assert e.facet_layer == "relu7"


def test_facet_seeded_starts_and_real_topk(world):
    e = make(
        world,
        method="dgn_am",
        start="facet_seeded",
        chains_per_unit=6,
        facets=FacetConfig(max_facets=3, seed_pool=40, top_k_real=5),
        dgn_am=DgnAmConfig(lr=0.05),
    )
    u = e.map_units("fc8", [2], seed=0)[0]
    assert [c.start for c in u.chains][:3] == ["facet_seed:0", "facet_seed:1", "facet_seed:2"]
    assert [c.start for c in u.chains][3:] == ["facet_seed:0", "facet_seed:1", "facet_seed:2"]
    acts = [a for _, a, _ in u.real_topk]
    assert len(u.real_topk) == 5 and acts == sorted(acts, reverse=True)
    assert u.real_topk[0][2].shape == (16, 16, 3)
    assert 1 <= u.facet_count <= 3 and all(0 <= c.facet < u.facet_count for c in u.chains)
    # without real images, seeded starts fall back to the mean code
    u2 = make(world, method="dgn_am", start="facet_seeded", real=False).map_units("fc8", [2], seed=0)[0]
    assert u2.chains[0].start == "mean" and u2.real_topk == []


def test_real_topk_indices_are_places_in_the_whole_set_a_limit_sampled(world):
    """``facets.real_limit`` loads an evenly spaced sample: each top image is stored at its place in the
    whole set (``source_index``), with the file name of that place."""
    t, g, d, r = world
    sample = TinyReal()
    sample.source_index = [3 * i for i in range(len(sample.images))]
    sample.names = [f"img{3 * i:03d}.png" for i in range(len(sample.images))]
    e = make((t, g, d, sample), method="dgn_am", steps=2, facets=FacetConfig(top_k_real=4))
    u = e.map_units("fc8", [2], seed=0)[0]
    whole = make(world, method="dgn_am", steps=2, facets=FacetConfig(top_k_real=4)).map_units(
        "fc8", [2], seed=0
    )
    assert [i for i, _, _ in u.real_topk] == [3 * i for i, _, _ in whole[0].real_topk]
    assert u.real_names == {i: f"img{i:03d}.png" for i, _, _ in u.real_topk}
    real_start = make(
        (t, g, d, sample), method="dgn_am", steps=2, start="real", facets=FacetConfig(top_k_real=4)
    )
    starts = [c.start for c in real_start.map_units("fc8", [2], seed=0)[0].chains]
    top = [i for i, _, _ in u.real_topk]
    assert starts == [f"real:{top[0]}", f"real:{top[1]}"]  # the same numbering as images.real_index


def test_a_generators_code_layer_the_target_lacks_is_no_code_layer(world):
    """A user's target with the toy world's G (whose code is T's relu6): with no models.code_layer the
    pre-flight finds none, and the workers must not look G's layer up in the target (every worker died
    with "unknown layer 'relu6'")."""
    t, g, d, r = world
    other = dataclasses.replace(g, extras={**g.extras, "code_layer": "relu6_of_another_network"})
    e = make((t, other, d, r), method="dgn_am", steps=2)
    assert e.code_layer is None
    u = e.map_units("fc8", [1], seed=0)[0]
    assert u.status == "ok" and len(u.real_topk) > 0, u.error
    assert make(world, method="dgn_am", steps=2).code_layer == "relu6"  # the target has it: G's own layer


@pytest.mark.parametrize(
    ("start", "label"),
    [("random", "random"), ("mean", "mean"), ("real", "real:"), ("facet_seeded", "facet_seed:")],
)
def test_pixel_starts(world, start, label):
    u = make(world, method="pixel", start=start, steps=2).map_units("fc8", [0], seed=0)[0]
    assert u.status == "ok", u.error
    assert all(c.start == label or (label.endswith(":") and c.start.startswith(label)) for c in u.chains)


@pytest.mark.parametrize("autocast", ["none", "bf16"])
def test_cpu_autocast_modes_run_and_rise(world, autocast):
    """Forced bf16 autocast on CPU (emulated where the CPU lacks native bf16) still raises the objective."""
    t, g, d, r = world
    cfg = SamplerConfig(steps=10, chains_per_unit=2, record_every=1, start="random", method="dgn_am")
    eng = Engine(t, g, d, cfg, FacetConfig(), ComputeConfig(autocast=autocast), CPU, real=r)
    assert eng.setup.dtype == (torch.bfloat16 if autocast == "bf16" else None)
    res = eng.map_units("fc8", [1, 2], seed=0)
    assert gain(res) > 0.005
    assert all(np.isfinite(c.last.activation) for u in res for c in u.chains)


@pytest.mark.parametrize("method", ["pixel", "dgn_am"])
def test_a_stored_best_picture_never_reads_below_the_stored_last_one(world, method):
    """In bf16 a chain picks its best on readings 1-3 % coarse, and a later picture a hair higher was
    stored as ``last`` above ``best`` (7 of 16 chains of a user's run): both are read again in float32 as
    stored, and the higher becomes the best."""
    t, g, d, r = world
    cfg = SamplerConfig(steps=30, chains_per_unit=4, record_every=5, start="random", method=method)
    eng = Engine(t, g, d, cfg, FacetConfig(), ComputeConfig(autocast="bf16"), CPU, real=r)
    chains = [c for u in eng.map_units("fc8", list(range(10)), seed=0) for c in u.chains]
    assert all(c.best.activation >= c.last.activation for c in chains)
    assert any(c.best.step < c.last.step for c in chains)  # the best is not always the last picture
    stop = SamplerConfig(steps=30, chains_per_unit=4, start="random", method=method, stop_at=0.3)
    eng = Engine(t, g, d, stop, FacetConfig(), ComputeConfig(autocast="bf16"), CPU, real=r)
    chains = [c for u in eng.map_units("fc8", list(range(10)), seed=0) for c in u.chains]
    stopped = [c for c in chains if c.stopped_step is not None]
    assert stopped and all(c.best.step <= c.stopped_step for c in stopped)  # a frozen picture's own step
    assert all(c.best.activation >= c.last.activation for c in chains)


def test_real_images_are_read_in_float32_whatever_the_chains_precision(world):
    """The dataset examples a bf16 run stores are the float32 top-k, with the float32 values a user's own
    forward pass of the stored pictures gives (bf16 readings were 0.5-3 % off and reordered them)."""
    t, g, d, r = world
    cfg = SamplerConfig(steps=2, chains_per_unit=2, start="random", method="dgn_am")
    eng = Engine(t, g, d, cfg, FacetConfig(top_k_real=5), ComputeConfig(autocast="bf16"), CPU, real=r)
    assert eng.setup.dtype == torch.bfloat16
    units = eng.map_units("fc7", list(range(8)), seed=0)
    with torch.no_grad():
        fc7 = LayerProbe(t.module, ["fc7"])(t.space.encode(r.images))["fc7"]  # (N, 32) float32
    for u in units:
        top = torch.topk(fc7[:, u.unit], 5)
        assert [i for i, _, _ in u.real_topk] == top.indices.tolist()
        stored = (
            torch.from_numpy(np.stack([im for _, _, im in u.real_topk])).permute(0, 3, 1, 2).float() / 255
        )
        assert np.allclose([a for _, a, _ in u.real_topk], top.values.tolist(), rtol=1e-5, atol=1e-6)
        assert torch.allclose(stored, r.images[top.indices], atol=0.5 / 255 + 1e-6)


def test_a_units_best_numbers_are_those_of_one_picture(world):
    """best_activation, best_log_prob and best_rank describe the unit's best picture (the chains' best with
    the highest activation): the highest log-prob and lowest rank of any chain mixed pictures."""
    from atlas.sampling.results import ChainResult, ImageRecord
    from atlas.sampling.unit_rows import UnitRows
    from atlas.sampling.units import Unit

    e = make(world, method="dgn_am", chains_per_unit=4, steps=6)
    for u in e.map_units("fc7", list(range(12)), seed=0):
        top = max((c.best for c in u.chains), key=lambda b: b.activation)
        assert (u.best_activation, u.best_log_prob, u.best_rank) == (top.activation, top.log_prob, top.rank)
    # the case the old numbers got wrong, for certain: the most active picture is not the most selective
    blank = np.zeros((16, 16, 3), np.uint8)

    def chain(i: int, activation: float, log_prob: float, rank: int) -> ChainResult:
        best = ImageRecord(3, blank, activation, log_prob, rank, "best")
        last = ImageRecord(6, blank, activation - 1, log_prob - 1, rank + 1, "last")
        return ChainResult(i, i, "random", -1, last, best, 3, [], [], False, torch.zeros(32), 0.0)

    plain = make(world, method="dgn_am", facets=FacetConfig(enabled=False), real=False)
    row = UnitRows(plain, "fc7", "fc")._unit_row(
        Unit("fc7", 5, "fc"), [chain(0, 9.0, -3.0, 2), chain(1, 4.0, -0.5, 0)]
    )
    assert (row.best_activation, row.best_log_prob, row.best_rank) == (9.0, -3.0, 2)  # chain 0's picture


@pytest.mark.parametrize("at", [0, 3])
def test_a_unit_whose_every_chain_diverged_is_an_error_row_unless_it_drew_before(world, at):
    """Diverged from the first picture: no picture to show, an error row. Later: the finite pictures
    before the divergence stand (status ok), and the row says what happened."""
    engine = make(world, method="dgn_am", objective="log_softmax")
    k = engine.cfg.chains_per_unit
    engine.sampler.param = Poison(engine.sampler.param, row=list(range(k)), at=at)  # all of unit 0's chains
    res = engine.map_units("fc8", [0, 1], seed=0)
    assert [u.status for u in res] == ["error" if at == 0 else "ok", "ok"]
    assert f"all {k} chains diverged" in res[0].error and res[1].error is None
    assert len(res[0].chains) == k  # what the chains did is kept for inspection
    assert np.isfinite(res[0].best_activation) == (at > 0)
    assert (res[0].best_rank == -1) == (at == 0)  # no rank 0 ("the top unit") from NaN comparisons
    assert ("does the network return NaN or inf for it?" in res[0].error) == (at == 0)
    from atlas.pipeline.rows import unit_rows

    rows = unit_rows(res[0], "s", steps=2, keep_snapshots=True, activations_full_max=16, activations_top_k=3)
    drawn = [r for r in rows["images"] if r["kind"] != "real"]
    assert (len(drawn) == 0) == (at == 0), [r["kind"] for r in drawn]  # a failed unit: no pictures at all
    assert len(rows["chains"]) == k


def test_a_layer_whose_real_images_fail_is_sampled_and_reported_as_a_warning(world, monkeypatch):
    """The real-image pass failing (a bad facet layer, memory) must not be silent: the units are sampled
    (seeded starts fall back) and carry the note, and the run summary counts them as warnings."""
    from atlas.pipeline.driver import format_summary
    from atlas.pipeline.worker import _warnings

    engine = make(world, method="dgn_am", start="facet_seeded", steps=2)

    def broken(*args, **kwargs):
        raise RuntimeError("facet layer relu9 not found")

    monkeypatch.setattr(engine.real, "load", broken)
    res = engine.map_units("fc8", [0, 1], seed=0)
    assert [r.status for r in res] == ["ok", "ok"]
    assert all("real images unavailable: RuntimeError: facet layer relu9" in r.error for r in res)
    assert all(c.start.startswith("mean") or c.start.startswith("random") for r in res for c in r.chains)
    notes = _warnings(res)
    assert list(notes.values()) == [2]
    summary = {"units": 2, "chains": 4, "images": 8, "rows": {"units": 2}, "wall_seconds": 1.0,
               "units_per_minute": 60.0, "shards_run": 1, "shards_skipped": 0, "shards": 1, "diverged": 0,
               "errors": 0, "run_dir": "/tmp/run", "warnings": notes}  # fmt: skip
    text = format_summary(summary)
    assert "warning: 2 units: real images unavailable: RuntimeError: facet layer relu9 not found" in text
    assert "warning" not in format_summary(summary | {"warnings": {}})
