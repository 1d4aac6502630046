"""Objective algebra (issue 17 item 2): composite objectives and the diversity term, on tiny tensors."""

from __future__ import annotations

import pytest
import torch

from atlas.config import PixelConfig
from atlas.errors import ConfigError
from atlas.sampling import objectives
from atlas.sampling.objectives import (
    Objective,
    diversity_features,
    diversity_penalty,
    parse_composite,
)
from atlas.sampling.units import Unit

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "terms", "normal"),
    [
        ("3 + 5", ((3, 1.0), (5, 1.0)), "3 + 5"),
        ("3-5", ((3, 1.0), (5, -1.0)), "3 - 5"),
        ("0.7*3 + 0.3*7", ((3, 0.7), (7, 0.3)), "0.7*3 + 0.3*7"),
        ("-2*4 + 1", ((4, -2.0), (1, 1.0)), "-2*4 + 1"),
        (" 1 + 2 - .5*3", ((1, 1.0), (2, 1.0), (3, -0.5)), "1 + 2 - 0.5*3"),
        ("1e-2*3 + 2.5E1*5", ((3, 0.01), (5, 25.0)), "0.01*3 + 25*5"),
        ("-3", ((3, -1.0),), "-3"),  # a unit's negative (Lucid): what lowers it most
        ("3 + -1*5", ((3, 1.0), (5, -1.0)), "3 - 5"),  # a signed weight after the sign (a trial wrote it)
        ("-1*3 + -1*5", ((3, -1.0), (5, -1.0)), "-3 - 5"),
        ("3 - -2*5", ((3, 1.0), (5, 2.0)), "3 + 2*5"),
    ],
)
def test_parse_composite(text, terms, normal):
    comp = parse_composite(text, n_units=10)
    assert comp.terms == terms and comp.text == normal


@pytest.mark.parametrize(
    ("text", "says"),
    [("3", "'3' reads as unit 3 alone, the unit itself"), ("3 5", "cannot read"),
     ("3 * 5", r"'3 \* 5' reads as 3 x unit 5 alone, the unit itself"),
     ("a + b", "cannot read"),
     ("3 + 12", "out of range"), ("", "an empty composite"), ("3 +", "cannot read"),
     ("3 + 3", "unit 3 appears more than once"), ("3 + 5 + 3", "unit 3 appears more than once"),
     ("0*3 + 5", "unit 3 in '0\\*3 \\+ 5' has weight 0"),
     ("100000*3 + 5", "weight 100000; weights are nonzero"),
     ("1e5*3 + 5", "weight 100000; weights are nonzero"), ("3e2 + 5", "cannot read"),
     ("3 + -5", "cannot read '3 \\+ -5' at '\\+ -5'"), ("--3", "cannot read")],
)  # fmt: skip
def test_bad_composites_are_one_line_errors_naming_the_key(text, says):
    with pytest.raises(ConfigError, match=says) as err:
        parse_composite(text, n_units=10, key="layers.0.objectives")
    assert str(err.value).startswith("layers.0.objectives:") and "\n" not in str(err.value)


def test_composite_objective_is_the_weighted_sum_of_its_units_for_every_variant():
    gen = torch.Generator().manual_seed(0)
    v = torch.randn(3, 6, generator=gen)
    comps = (parse_composite("1 - 4"), parse_composite("0.5*0 + 2*5"))
    for kind in ("raw", "softmax", "log_softmax"):
        plain = Objective(kind)
        algebra = Objective(kind, comps, n_units=6)
        g = {i: plain(v, torch.full((3,), i)) for i in range(6)}
        torch.testing.assert_close(algebra(v, torch.full((3,), 6)), g[1] - g[4])
        torch.testing.assert_close(algebra(v, torch.full((3,), 7)), 0.5 * g[0] + 2 * g[5])
        torch.testing.assert_close(algebra(v, torch.tensor([2, 2, 2])), g[2])  # own units unchanged


def test_composite_gradient_raises_both_units_of_a_pair():
    v = torch.zeros(1, 4, requires_grad=True)
    obj = Objective("log_softmax", (parse_composite("1 + 3"),), n_units=4)
    obj(v, torch.tensor([4])).sum().backward()
    g = v.grad[0]
    assert g[1] > 0 and g[3] > 0 and g[0] < 0 and g[2] < 0  # both up, the rest down


def test_composite_readout_and_description():
    obj = Objective("raw", (parse_composite("2 - 0"),), n_units=3)
    v = torch.tensor([[1.0, 5.0, 3.0]])
    r = obj.readout(v, torch.tensor([3]))
    assert float(r["activation"]) == 2.0  # 3 - 1
    assert int(r["rank"]) == 1 and int(r["top_competitor"]) == 1  # its first term's unit (2) is second
    assert obj.describe(Unit("fc8", 3, "output")) == "raw[fc8: 2 - 0]"
    assert obj.describe(Unit("fc8", 1, "output")) == "raw[fc8:1]"
    assert obj.composite(3).text == "2 - 0" and obj.composite(2) is None
    at = (4, 5)  # a conv composite says where it is read, as its units do
    assert obj.describe(Unit("conv3", 3, "conv", "center", at)) == "raw[conv3: 2 - 0 @ (4,5)]"
    assert obj.describe(Unit("conv3", 1, "conv", "center", at)) == "raw[conv3:1 @ (4,5)]"
    assert obj.describe(Unit("conv3", 3, "conv", "mean")) == "raw[conv3: 2 - 0 mean]"


def test_diversity_penalty_is_the_mean_cosine_to_the_other_chains_of_the_same_unit():
    f = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 1.0]])
    groups = torch.tensor([0, 0, 0, 1, 1])
    pen = diversity_penalty(f, groups)
    torch.testing.assert_close(pen[:3], torch.tensor([0.5, 0.5, 0.0]))  # unit 0: two alike, one apart
    assert float(pen[3]) == pytest.approx(2**-0.5) and float(diversity_penalty(f[:1], groups[:1])) == 0.0
    gram = diversity_features(torch.ones(2, 3, 4, 4))
    assert gram.shape == (2, 9) and float(gram[0, 0]) == 1.0


def _engine(**sampler):
    from atlas.config import ComputeConfig, FacetConfig, SamplerConfig
    from atlas.sampling import Engine
    from tests.unit.tiny_models import tiny_world

    t, g, d, real = tiny_world()
    cfg = SamplerConfig(**({"chains_per_unit": 3, "record_every": 2, "method": "dgn_am"} | sampler))
    compute = ComputeConfig(autocast="none")
    return Engine(
        t, g, d, cfg, FacetConfig(enabled=False), compute, torch.device("cpu"), real=real, truth=False
    )


def test_engine_maps_a_composite_objective_as_one_more_unit_and_raises_it():
    pair = (parse_composite("2 + 5", 10),)
    res, own = _engine(steps=12, start="mean", start_noise=0.3).map_units(
        "fc8", [10, 3], seed=0, composites=pair
    )
    assert res.unit == 10 and res.status == "ok" and res.objective == "raw[fc8: 2 + 5]"
    assert own.objective == "raw[fc8:3]"
    assert (res.composite, own.composite) == ("2 + 5", None)  # units.composite: what tells them apart
    for c in res.chains:
        v = c.final_activations
        assert c.last.activation == pytest.approx(float(v[2] + v[5]), rel=1e-4)  # stored: the weighted sum
        assert c.last.activation > c.trajectory[0]["activation"]  # the objective went up from the start
    real = _engine(steps=1).real_layer_values("fc8")
    assert real.shape[1] == 10  # without composites the layer has its own units only


def test_a_units_negative_lowers_the_unit():
    """``-3`` (a trial asked for Lucid's negative visualizations): its chains raise the objective, so the
    unit's own activation goes down."""
    (res,) = _engine(steps=12, start="mean", start_noise=0.3).map_units(
        "fc8", [10], seed=0, composites=(parse_composite("-3", 10),)
    )
    assert res.status == "ok" and res.objective == "raw[fc8: -3]" and res.composite == "-3", res.error
    for c in res.chains:
        assert c.last.activation == pytest.approx(-float(c.final_activations[3]), rel=1e-4)
        assert c.last.activation > c.trajectory[0]["activation"]


def test_composites_become_columns_of_the_real_values_and_out_of_range_ones_are_error_rows():
    eng = _engine(steps=2)
    (res,) = eng.map_units("fc8", [10], seed=0, composites=(parse_composite("1 - 4"),))
    v = eng.real.values("fc8")
    assert v.shape[1] == 11 and torch.allclose(v[:, 10], v[:, 1] - v[:, 4])
    (bad,) = eng.map_units("fc8", [11], seed=0, composites=(parse_composite("1 - 4"),))
    assert bad.status == "error" and "out of range" in bad.error


def test_diversity_term_pushes_a_units_chains_apart():
    def spread(weight: float) -> float:
        (res,) = _engine(steps=15, start="mean", start_noise=0.05, diversity=weight).map_units(
            "fc8", [4], seed=0
        )
        x = torch.stack([torch.from_numpy(c.last.image).float().flatten() / 255 for c in res.chains])
        return float(torch.pdist(x).mean())

    assert spread(5.0) > spread(0.0)


def test_the_method_string_names_the_diversity_term_where_it_acts():
    """units.method told a diversity run from a plain one only through run.config (a trial's SQL could
    not)."""
    assert _engine(steps=1, diversity=30.0).method_text() == "dgn_am[diversity=30]"
    assert _engine(steps=1).method_text() == "dgn_am"
    pixel = _engine(steps=1, method="pixel", diversity=0.5, pixel=PixelConfig(blur_every=4, blur_sigma=0.5))
    assert pixel.method_text().endswith(",diversity=0.5]") and pixel.method_text().startswith("pixel[")
    assert _engine(steps=1, method="ga", diversity=3.0).method_text().startswith("ga")  # it ignores the term
    assert "diversity" not in _engine(steps=1, method="ga", diversity=3.0).method_text()


def test_driver_numbers_composites_after_the_layer_units_and_checks_their_range():
    from atlas.config import load_config
    from atlas.pipeline.driver import resolve_layers

    cfg = load_config(
        "configs/demo.yaml",
        ['layers=[{"name": "fc8", "units": "0-1", "objectives": ["3 - 5"], "pairs": [[1, 2]]}]'],
    )
    assert [c.text for c in cfg.layers[0].composites()] == ["3 - 5", "1 + 2"]

    class Models:
        target = type("T", (), {"output_layer": "fc8"})()

    (plan,) = resolve_layers(cfg, Models(), shapes={"fc8": (10,)})
    assert list(plan.units) == [0, 1, 10, 11]
    bad = load_config("configs/demo.yaml", ['layers=[{"name": "fc8", "objectives": ["3 - 12"]}]'])
    with pytest.raises(ConfigError, match=r"layers\.0\.objectives: unit 12 .* units 0-9"):
        resolve_layers(bad, Models(), shapes={"fc8": (10,)})


def test_composite_errors_name_the_key_the_user_wrote_and_refuse_repeats():
    from atlas.config import load_config

    cfg = load_config(
        "configs/demo.yaml", ['layers=[{"name": "fc8", "objectives": ["3 - 5"], "pairs": [[1, 12]]}]']
    )
    with pytest.raises(ConfigError, match=r"^layers\.0\.pairs: unit 12 in '1 \+ 12' is out of range"):
        cfg.layers[0].composites(10, "layers.0.")
    for layer, says in [
        ('{"name": "fc8", "objectives": ["3 + 5"], "pairs": [[5, 3]]}', r"pairs: '5 \+ 3' repeats '3 \+ 5'"),
        ('{"name": "fc8", "objectives": ["3 - 5", "3-5"]}', r"objectives: '3-5' repeats '3 - 5'"),
    ]:
        with pytest.raises(ConfigError, match=says):
            load_config("configs/demo.yaml", [f"layers=[{layer}]"])
    distinct = load_config(
        "configs/demo.yaml", ['layers=[{"name": "fc8", "objectives": ["3 + 5", "3 - 5"]}]']
    )
    assert [c.text for c in distinct.layers[0].composites(10)] == ["3 + 5", "3 - 5"]


def test_pair_share_reads_the_same_last_pictures_by_the_judge_and_by_the_target():
    """bench objectives: J's verdict and T's own top two are taken on the same non-diverged last pictures."""
    import types

    import numpy as np

    from atlas.bench.objectives import _last_layer_values, _pair_share

    def chain(values, diverged=False):
        return types.SimpleNamespace(
            last=types.SimpleNamespace(image=np.zeros((2, 2, 3), np.uint8)),
            final_activations=torch.tensor(values),
            diverged=diverged,
        )

    fooling = types.SimpleNamespace(  # T reads 0 and 1 on both kept pictures, J sees class 2 first
        status="ok",
        chains=[chain([5.0, 4.0, 0.0]), chain([3.0, 6.0, 1.0]), chain([0.0, 0.0, 9.0], diverged=True)],
    )
    assert _last_layer_values([fooling]).tolist() == [[5.0, 4.0, 0.0], [3.0, 6.0, 1.0]]
    engine = types.SimpleNamespace(map_units=lambda layer, ids, seed, composites: [fooling])
    judge = types.SimpleNamespace(class_probs=lambda x: torch.tensor([[0.2, 0.3, 0.5]]).expand(len(x), 3))
    both = _pair_share(engine, judge, "fc8", 3, 0, "+", pairs=((0, 1),))
    contrast = _pair_share(engine, judge, "fc8", 3, 0, "-", pairs=((0, 1),))
    assert both["pictures"] == 2 and both["share"] == 0.0 and both["target_share"] == 1.0
    assert both["target_per_pair"] == {"0 + 1": 1.0}
    # 0 - 1: T's top is 0 then 1 on the first picture (second is b: no), 1 first on the second (no)
    assert contrast["target_share"] == 0.0 and contrast["share"] == 0.0
    assert "per_seed" not in both and "se" not in both  # one seed: no spread to report

    def judged(seed):  # J reads both on seed 0's pictures, neither on seed 1's, one of two on seed 2's
        return {0: [[0.5, 0.4, 0.1]] * 2, 1: [[0.1, 0.2, 0.7]] * 2, 2: [[0.5, 0.4, 0.1], [0.1, 0.2, 0.7]]}[
            seed
        ]

    seeds_seen = []
    engine = types.SimpleNamespace(
        map_units=lambda layer, ids, seed, composites: seeds_seen.append(seed) or [fooling]
    )
    order = iter([0, 1, 2])
    judge = types.SimpleNamespace(class_probs=lambda x: torch.tensor(judged(next(order))))
    over = _pair_share(engine, judge, "fc8", 3, [0, 1, 2], "+", pairs=((0, 1),))
    assert seeds_seen == [0, 1, 2] and over["pictures"] == 6
    assert over["per_seed"] == [1.0, 0.0, 0.5] and over["share"] == 0.5
    assert over["se"] == pytest.approx(0.5 / 3**0.5)  # the seeds' shares' standard deviation / sqrt(3)


def test_a_composites_top_real_images_are_ranked_by_its_own_objective_variant():
    """A log_softmax pair's top real images maximize log p(a) + log p(b) (pictures of both), not the raw
    sum (one object between the classes); their recorded values stay the raw weighted sums."""
    pair = (parse_composite("2 + 5", 10),)
    for kind in ("raw", "log_softmax"):
        eng = _engine(steps=1, objective=kind)
        eng.map_units("fc8", [10], seed=0, composites=pair)
        v = eng.real.values("fc8")  # (N, 11): raw values, the pair's raw sum last
        base = v[:, :10].float()
        score = base if kind == "raw" else torch.log_softmax(base, dim=1)
        want = torch.topk(score[:, 2] + score[:, 5], 5).indices
        idx, vals = eng.real.top("fc8", 10, 5)
        assert idx.tolist() == want.tolist()
        assert torch.allclose(vals, v[idx, 10].float())
        own, _ = eng.real.top("fc8", 3, 5)  # the layer's own units: ranked by their values, as before
        assert own.tolist() == torch.topk(base[:, 3], 5).indices.tolist()
    raw_top = torch.topk(base[:, 2] + base[:, 5], 5).indices
    assert raw_top.tolist() != want.tolist()  # the tiny world's two rankings differ: the test can fail


def test_log_prob_stays_exact_for_a_confident_unit():
    """float32 log-softmax rounds a confident top unit's log p to 0 (every such unit would tie); the
    readout keeps its true size, and the other units' values are plain log-softmax."""
    v = torch.tensor([[50.0, 0.0, 0.0], [30.0, 10.0, 0.0], [1.0, 2.0, 3.0]])
    assert torch.log_softmax(v, dim=1)[0, 0] == 0  # what plain float32 gives
    exact = torch.log_softmax(v.double(), dim=1)  # float64 holds these margins... except the first
    exact[0, 0] = -2 * torch.exp(torch.tensor(-50.0, dtype=torch.float64))  # -log1p(2 e^-50)
    got = objectives.log_softmax(v).double()
    assert torch.allclose(got, exact, rtol=1e-5, atol=0), (got, exact)
    read = objectives.unit_readout(v, torch.tensor([0, 0, 2]))
    assert -1e-20 < read["log_prob"][0] < 0
    assert read["log_prob"][1] < read["log_prob"][0]  # the less confident unit ranks below


def test_the_benches_say_which_composites_they_leave_out():
    """A user's trial: bench quality and bench truth measured 3 of a config's 7 units (its 4 composites
    left out) and did not say so."""
    from atlas.bench.product import note_composites_left_out
    from atlas.config.layers import LayerConfig

    mixed = LayerConfig(name="fc8", units="0-2", objectives=["3 - 5", "0.7*3 + 0.3*7"], pairs=[[1, 2]])
    said, m = [], {}
    note_composites_left_out(mixed, m, said.append)
    assert m == {"composites_left_out": 3} and len(said) == 1
    assert said[0].startswith("fc8: its 3 composite objectives left out") and "bench objectives" in said[0]
    plain: dict = {}
    note_composites_left_out(LayerConfig(name="fc8", units="0-2"), plain, said.append)
    assert plain == {} and len(said) == 1


def test_a_layer_of_composites_alone_is_refused_with_the_reason():
    """A user's trial: `units: []` beside pairs read "invalid unit list []" with no word of why."""
    from atlas.config.layers import LayerConfig
    from atlas.errors import ConfigError

    with pytest.raises(
        ConfigError, match=r"a layer of composite objectives alone is not supported; keep one"
    ):
        LayerConfig(name="fc8", units=[], pairs=[[1, 2]])
    with pytest.raises(ConfigError, match=r"invalid unit list \[\]"):
        LayerConfig(name="fc8", units=[])


def test_compose_pair_lays_two_objects_out_as_the_datas_two_object_pictures():
    """The left picture's object moved to a quarter of the width, the right one's to three quarters, on the
    right picture's background (sampler.pair_start: composed)."""
    import numpy as np

    from atlas.sampling.compose import compose_pair

    def picture(background, colour, x0):  # a 6 x 6 square at columns x0 .. x0 + 5 of a 40 x 40 picture
        pic = np.full((40, 40, 3), background, np.uint8)
        pic[17:23, x0 : x0 + 6] = colour
        return pic

    out = compose_pair(picture(20, (250, 0, 0), 17), picture(90, (0, 0, 250), 5))
    red = (out[..., 0] > 200) & (out[..., 2] < 50)
    blue = (out[..., 2] > 200) & (out[..., 0] < 50)
    assert red.sum() == 36 and blue.sum() == 36  # both objects whole
    assert abs(np.nonzero(red)[1].mean() - 10) <= 1 and abs(np.nonzero(blue)[1].mean() - 30) <= 1
    assert (out[0, 0] == 90).all() and (out[39, 20] == 90).all()  # the right picture's background


def test_pair_start_composed_starts_a_pairs_chains_from_its_units_own_pictures(monkeypatch):
    """Each unit of the pair runs alone first; the pair's chain k starts from the code of a composite of
    their last pictures (unit a's chain k beside each of b's chains, a on the left and on the right), not
    from sampler.start."""
    import numpy as np

    from atlas.sampling import compose

    seen = []
    real_compose = compose.compose_pair
    monkeypatch.setattr(
        "atlas.sampling.engine.compose_pair", lambda a, b: seen.append((a, b)) or real_compose(a, b)
    )
    pair = (parse_composite("2 + 5", 10),)
    eng = _engine(steps=4, start="mean", start_noise=0.3, pair_start="composed")
    (res,) = eng.map_units("fc8", [10], seed=0, composites=pair)
    assert res.status == "ok" and [c.start for c in res.chains] == ["composed:pool6"] * 3
    alone = {
        r.unit: r for r in _engine(steps=4, start="mean", start_noise=0.3).map_units("fc8", [2, 5], seed=0)
    }
    lasts = {u: [c.last.image for c in alone[u].chains] for u in (2, 5)}
    assert len(seen) == 3 * 6  # chain k: a's k-th beside b's three, either side
    expected = [(2, 0, 5, 0), (2, 0, 5, 2), (5, 0, 2, 0), (5, 2, 2, 0), (2, 1, 5, 0), (5, 2, 2, 1)]
    for (left, i, right, j), at in zip(expected, (0, 2, 3, 5, 6, 11), strict=True):
        assert np.array_equal(seen[at][0], lasts[left][i]) and np.array_equal(seen[at][1], lasts[right][j])
    plain = _engine(steps=4, start="mean", start_noise=0.3).map_units("fc8", [10], seed=0, composites=pair)[0]
    assert [c.start for c in plain.chains] == ["mean"] * 3
    assert not np.array_equal(res.chains[0].last.image, plain.chains[0].last.image)


def test_pair_start_composed_runs_a_pairs_units_once_when_the_call_maps_them_too(monkeypatch):
    """A shard that holds units 2 and 5 and their pair: the singles the composed start needs are the rows
    of 2 and 5 as well, not run a second time (9 chains, not 15)."""
    import numpy as np

    from atlas.sampling.engine import Engine

    ran = []
    real_run = Engine._run
    monkeypatch.setattr(
        Engine,
        "_run",
        lambda self, layer, batch, **kw: ran.extend(batch) or real_run(self, layer, batch, **kw),
    )
    pair = (parse_composite("2 + 5", 10),)
    eng = _engine(steps=4, start="mean", start_noise=0.3, pair_start="composed")
    rows = eng.map_units("fc8", [2, 10, 5, 7], seed=0, composites=pair)
    assert [r.unit for r in rows] == [2, 10, 5, 7] and all(r.status == "ok" for r in rows)
    assert len(ran) == 4 * 3  # units 2 and 5 (alone), the pair, unit 7: three chains each
    assert [c.start for c in rows[1].chains] == ["composed:pool6"] * 3
    alone = _engine(steps=4, start="mean", start_noise=0.3).map_units("fc8", [2, 5], seed=0)
    for got, want in zip((rows[0], rows[2]), alone, strict=True):
        assert [c.start for c in got.chains] == ["mean"] * 3
        assert all(
            np.array_equal(g.last.image, w.last.image) for g, w in zip(got.chains, want.chains, strict=True)
        )


def test_pair_start_composed_starts_each_chain_from_its_best_rated_composite(monkeypatch):
    """best_of_pool rates a pair chain's 2K composite codes (its own objective at its start) and the chain
    starts from the one it picks; a single unit's chains in the same batch start as drawn, not rated."""
    import torch

    from atlas.sampling import engine as engine_module

    rated, real_best = [], engine_module.best_of_pool
    monkeypatch.setattr(
        engine_module, "best_of_pool", lambda *a: (best := real_best(*a), rated.append((a[4], best)))[0]
    )
    started, real_chains = [], engine_module.run_chains
    monkeypatch.setattr(
        engine_module, "run_chains", lambda *a, **kw: started.append(a[4].clone()) or real_chains(*a, **kw)
    )
    composites = []
    real_starts = engine_module.Engine._composed_starts
    monkeypatch.setattr(
        engine_module.Engine,
        "_composed_starts",
        lambda self, *a: (out := real_starts(self, *a), composites.append(out[0]))[0],
    )
    pair = (parse_composite("2 + 5", 10),)
    eng = _engine(steps=3, start="mean", start_noise=0.3, pair_start="composed")
    rows = eng.map_units("fc8", [10, 7], seed=0, composites=pair)
    assert all(r.status == "ok" for r in rows)
    (candidates, best), start = rated[-1], started[-1]  # the outer batch: the pair's 3 chains, unit 7's 3
    assert candidates.shape[:2] == (6, 3)  # only the pair's chains are rated
    outer = composites[-1]  # the outer call's (the singles' own nested call comes first)
    assert torch.equal(candidates, outer[10].transpose(0, 1))
    assert len({tuple(candidates[p, 0].tolist()) for p in range(6)}) == 6  # six different composites
    assert torch.equal(start[:3], best)  # the chains start from what was picked
    picked = [next(p for p in range(6) if torch.equal(candidates[p, k], best[k])) for k in range(3)]
    assert picked != [0, 0, 0]  # not each chain's first candidate, what it would start from unrated
    alone = _engine(steps=3, start="mean", start_noise=0.3).map_units("fc8", [7], seed=0)
    mixed = [c.last.activation for c in rows[1].chains]  # beside the pair's chains (another batch: ulps)
    assert mixed == pytest.approx([c.last.activation for c in alone[0].chains], rel=1e-4)
