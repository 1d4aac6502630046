"""Peer methods on tiny random models: Fourier (Lucid), MACO, feature accentuation, GA (XDream), CMA-ES."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from atlas.config import (
    AccentuationConfig,
    CmaesConfig,
    ComputeConfig,
    FacetConfig,
    GaConfig,
    SamplerConfig,
    config_from_dict,
)
from atlas.errors import ConfigError
from atlas.models.loaded import LoadedModel, freeze
from atlas.sampling import Engine, UnitResult
from atlas.sampling.fourier import FourierParam, PhaseParam, mean_amplitude_spectrum, power_law_magnitude
from atlas.sampling.peers import passes_per_image
from atlas.sampling.search import selection_probs
from tests.unit.tiny_models import tiny_world

pytestmark = pytest.mark.unit
CPU = torch.device("cpu")
PEERS = ("fourier", "maco", "accentuation", "ga", "cmaes")


@pytest.fixture(scope="module")
def world(one_torch_thread):
    return tiny_world()


def make(world, batch=64, real=True, target=None, **sampler):
    t, g, d, r = world
    base = dict(steps=8, chains_per_unit=2, record_every=1, start="random", objective="log_softmax")
    base.update(sampler)
    return Engine(
        target or t,
        g,
        d,
        SamplerConfig(**base),
        FacetConfig(),
        ComputeConfig(batch_size=batch),
        CPU,
        real=r if real else None,
    )


def gains(results: list[UnitResult], key: str = "log_prob") -> list[float]:
    """Per chain: best value of ``key`` over its trajectory minus the value at step 0."""
    out = []
    for u in results:
        assert u.status == "ok", u.error
        for c in u.chains:
            vals = [row[key] for row in c.trajectory]
            out.append(max(vals) - vals[0])
    return out


@pytest.mark.parametrize("method", PEERS)
def test_each_peer_raises_its_objective(world, method):
    res = make(world, method=method).map_units("fc8", [1, 2], seed=0)
    g = gains(res)
    assert min(g) >= 0 and np.mean(g) > 0.005, g
    c = res[0].chains[0]
    assert c.last.image.shape == (16, 16, 3) and c.last.image.dtype == np.uint8
    assert c.trajectory[-1]["step"] == 8 and c.final_activations.shape == (10,)
    assert res[0].method.startswith(method)
    assert c.best.activation >= c.trajectory[0]["activation"] - 1e-5


@pytest.mark.parametrize("method", ["fourier", "maco", "accentuation"])
def test_chain_in_batch_equals_chain_alone(world, method):
    kw = dict(method=method, chains_per_unit=3)
    batched = make(world, batch=64, **kw).map_units("fc8", [0, 4, 7], seed=5)
    alone = make(world, batch=1, **kw).map_units("fc8", [4], seed=5)[0]
    for a, b in zip(batched[1].chains, alone.chains, strict=True):
        assert a.seed == b.seed and a.start == b.start
        assert np.abs(a.last.image.astype(int) - b.last.image.astype(int)).max() <= 1
        torch.testing.assert_close(a.final_activations, b.final_activations, atol=1e-4, rtol=1e-4)


def test_search_is_deterministic_per_seed(world):
    r1 = make(world, method="ga").map_units("fc8", [3], seed=1)[0]
    r2 = make(world, method="ga").map_units("fc8", [3], seed=1)[0]
    for a, b in zip(r1.chains, r2.chains, strict=True):
        assert np.array_equal(a.last.image, b.last.image) and str(a.trajectory) == str(b.trajectory)


class NumpyRound(nn.Module):
    """A non-differentiable first layer: the picture goes through numpy (8-bit) and back."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = np.round(x.detach().cpu().numpy() * 64) / 64
        return torch.from_numpy(y).to(x.dtype)


def black_box(world) -> LoadedModel:
    t = world[0]
    layers = OrderedDict([("quantize", NumpyRound()), *t.module.named_children()])
    return LoadedModel(
        freeze(nn.Sequential(layers)), "target", "tiny:black-box", space=t.space, output_layer="fc8"
    )


@pytest.mark.parametrize("method", ["ga", "cmaes"])
def test_search_needs_no_gradient(world, method):
    target = black_box(world)
    res = make(world, target=target, method=method, objective="raw").map_units("fc8", [1, 5], seed=0)
    assert np.mean(gains(res, "activation")) > 0
    assert all(np.isnan(row["grad_norm"]) for u in res for c in u.chains for row in c.trajectory)
    # a gradient method cannot run on this target: its units become error rows
    bad = make(world, target=target, method="dgn_am").map_units("fc8", [1], seed=0)[0]
    assert bad.status == "error"


def test_search_spends_no_backward_pass(world, monkeypatch):
    def no_backward(*args, **kwargs):
        raise AssertionError("a backward pass ran")

    monkeypatch.setattr(torch.autograd, "grad", no_backward)
    monkeypatch.setattr(torch.Tensor, "backward", no_backward)
    res = make(world, method="cmaes").map_units("fc8", [0], seed=0)
    assert res[0].status == "ok", res[0].error


def test_accentuation_starts_from_the_units_top_real_image(world):
    from atlas.sampling.seeds import chain_generators
    from atlas.sampling.units import make_unit

    e = make(world, method="accentuation", steps=1)
    res = e.map_units("fc8", [2], seed=0)[0]
    top = torch.argsort(e.real_layer_values("fc8")[:, 2], descending=True)[:2].tolist()
    assert [c.start for c in res.chains] == [f"real:{i}" for i in top]  # sampler.start is 'random' here
    unit = make_unit("fc8", 2, (10,), True, "center")
    state, labels = e.starts.for_unit("fc8", unit, [0], chain_generators([0], CPU), 0)
    assert labels == [f"real:{top[0]}"]
    picture = e.sampler.param.image(state)[0]
    assert (picture - world[3].images[top[0]]).abs().max() < 0.03  # pixels clamped to [0.02, 0.98]
    assert res.method == "accentuation[pool1,w=1]"


def test_accentuation_weight_keeps_the_picture_close(world):
    far = make(world, method="accentuation", accentuation=AccentuationConfig(weight=0.0, lr=0.2))
    near = make(world, method="accentuation", accentuation=AccentuationConfig(weight=50.0, lr=0.2))
    d_far = _change(far.map_units("fc8", [4], seed=0)[0], world)
    d_near = _change(near.map_units("fc8", [4], seed=0)[0], world)
    assert d_near < d_far


def _change(result: UnitResult, world) -> float:
    """Mean RMS pixel distance of each chain's last picture from its start image."""
    out = []
    for c in result.chains:
        real = world[3].images[int(c.start.split(":")[1])].permute(1, 2, 0).numpy()
        out.append(float(np.sqrt(((c.last.image / 255.0 - real) ** 2).mean())))
    return float(np.mean(out))


def test_maco_magnitude_from_real_images_or_power_law(world):
    with_real = make(world, method="maco")
    without = make(world, method="maco", real=False)
    assert with_real.sampler.describe() == "maco[spectrum=real]"
    assert without.sampler.describe() == "maco[spectrum=power_law]"
    mag = mean_amplitude_spectrum(world[3].images, 16)
    assert mag.shape == (3, 16, 9) and torch.isfinite(mag).all()
    # the phase is all that moves: every state's picture has the same amplitude spectrum
    p = PhaseParam(power_law_magnitude(16))
    assert p.state_shape() == (3, 16, 9)


def test_fourier_param_round_trip_and_grey_start():
    p = FourierParam(15, decay_power=1.0)
    x = torch.rand(2, 3, 15, 15) * 0.9 + 0.05
    torch.testing.assert_close(p.image(p.from_image(x)), x, atol=1e-5, rtol=0)
    gens = [torch.Generator().manual_seed(i) for i in range(2)]
    start = p.image(p.random_state(gens, 0.01))
    assert (start - 0.5).abs().max() < 0.05


def test_selection_probs_are_per_chain_and_skip_non_finite():
    f = torch.tensor([[1.0, 2.0, float("nan")], [100.0, 200.0, 300.0]])
    p = selection_probs(f, 1.0)
    torch.testing.assert_close(p.sum(1), torch.ones(2))
    assert p[0, 2] == 0 and p[0, 1] > p[0, 0]
    torch.testing.assert_close(selection_probs(f[1:] / 100, 1.0), p[1:])  # scale-free: z-scored


def test_passes_per_image_convention():
    assert passes_per_image(SamplerConfig(method="dgn_am", steps=100)) == 300
    assert passes_per_image(SamplerConfig(method="fourier", steps=100)) == 300
    assert passes_per_image(SamplerConfig(method="ga", steps=15, ga=GaConfig(population=20))) == 300
    assert passes_per_image(SamplerConfig(method="cmaes", steps=10, cmaes=CmaesConfig(population=30))) == 300


BASE = {
    "models": {"target": "toyworld:target", "generator": "toyworld:generator"},
    "layers": [{"name": "fc8"}],
}


@pytest.mark.parametrize(
    "override, key",
    [
        ("sampler.ga.elite=20", "sampler.ga.elite:"),
        ("sampler.maco.crop_min=0.9", None),  # valid alone
        ("sampler.fourier.lr=-1", "sampler.fourier.lr: value -1.0 is out of range"),
        ("sampler.fourier.scale_min=2", "sampler.fourier.scale_min:"),
        ("sampler.cmaes.population=1", "sampler.cmaes.population: value 1 is out of range"),
        ("sampler.accentuation.layer=' '", "sampler.accentuation.layer:"),
        ("sampler.maco.spectrum=imagenet", "sampler.maco.spectrum: invalid value 'imagenet'"),
        ("sampler.cmaes.sigma0=1", "unknown config key 'sampler.cmaes.sigma0' (did you mean 'sigma'?)"),
        ("sampler.method=xdream", "sampler.method: invalid value 'xdream'"),
    ],
)
def test_bad_peer_config_is_one_line_naming_the_key(override, key):
    if key is None:
        config_from_dict(BASE, [override])
        return
    with pytest.raises(ConfigError) as err:
        config_from_dict(BASE, [override])
    msg = str(err.value)
    assert msg.startswith(key) and "\n" not in msg, msg


def test_maco_crop_range_checked():
    with pytest.raises(ConfigError, match=r"^sampler\.maco\.crop_min: 0\.9 is above crop_max 0\.5"):
        config_from_dict(BASE, ["sampler.maco.crop_min=0.9", "sampler.maco.crop_max=0.5"])


@pytest.mark.parametrize("method", ["ga", "cmaes"])
def test_search_needs_a_generator_pixel_family_does_not(method):
    no_gen = {"models": {"target": "toyworld:target"}, "layers": [{"name": "fc8"}]}
    with pytest.raises(
        ConfigError, match=rf"^models\.generator: sampler\.method '{method}' needs a generator"
    ):
        config_from_dict(no_gen, [f"sampler.method={method}"])
    for pixel_family in ("fourier", "maco", "accentuation"):
        config_from_dict(no_gen, [f"sampler.method={pixel_family}", "sampler.start=random"])


def test_peer_sections_stay_out_of_the_config_at_their_defaults():
    cfg = config_from_dict(BASE)
    assert not {"fourier", "maco", "accentuation", "ga", "cmaes"} & set(cfg.sampler.to_dict())
    changed = config_from_dict(BASE, ["sampler.ga.population=30"]).sampler.to_dict()
    assert changed["ga"]["population"] == 30 and "cmaes" not in changed


def test_bench_rows_share_the_forward_pass_budget(world, tmp_path):
    from PIL import Image

    from atlas.bench.picture_grids import save_compare
    from atlas.bench.quality import default_methods

    methods = default_methods(SamplerConfig(steps=50, chains_per_unit=2))
    budgets = {n: passes_per_image(c) for n, c in methods.items()}
    assert set(methods) >= set(PEERS) and budgets["fourier"] == budgets["dgn_am"] == 150
    assert methods["ga"].steps == 7 and 130 <= budgets["ga"] <= 150 and budgets["cmaes"] <= 150
    results = {m: make(world, method=m, steps=2).map_units("fc8", [0, 1], seed=0) for m in ("fourier", "ga")}
    save_compare(results, tmp_path / "compare.png")
    im = Image.open(tmp_path / "compare.png")
    names = 6 * len("fc8 0") + 10  # the units' names, a column of their own
    assert im.size == (names + 16 + 2 * (4 + 2 * 16), 24 + 2 * (16 + 2))  # header + one row per unit
    save_compare({"fourier": results["fourier"], "ppgn_h/joint": results["ga"]}, tmp_path / "long.png")
    assert Image.open(tmp_path / "long.png").size[0] == names + 16 + (4 + 2 * 16) + 6 * 12 + 8  # name whole


def test_a_methods_grid_names_its_columns_and_each_units_row(world, tmp_path):
    """A trial could not tell which row of `bench product`'s grid was which unit, nor which columns were
    real images: a header names the columns, and each row starts with its unit's name."""
    from PIL import Image

    from atlas.bench.picture_grids import save_grid

    results = make(world, steps=2, chains_per_unit=2).map_units("fc8", [0, 7], seed=0)
    save_grid(results, tmp_path / "grid.png", picture="best", n_real=2, gap_px=6, scale=3)
    im = np.asarray(Image.open(tmp_path / "grid.png").convert("L"))
    names = 6 * len("fc8 0") + 10
    last = 6 * len("best picture of each chain") + 8  # the last column's name, whole: wider than 2 chains
    assert im.shape == (24 + 2 * 3 * (16 + 2), names + 3 * (2 * 16 + 6) + last)
    dark = im < 128
    assert dark[:24].any(axis=0)[:names].any() and dark[:24, names + 3 * 32 + 18 :].any()  # the header
    row = 3 * 18
    for top in (24, 24 + row):  # each unit's name, left of its row
        assert dark[top : top + row, :names].any()
    assert not dark[24:, names - 4 : names].any()  # the names stay in their column
    results[1].real_topk = results[1].real_topk[:1]  # fewer real images: a blank, its chains in place
    save_grid(results, tmp_path / "short.png", picture="best", n_real=2, gap_px=6, scale=3)
    short = np.asarray(Image.open(tmp_path / "short.png").convert("L"))
    assert short.shape == im.shape and np.array_equal(short[:, names + 3 * 38 :], im[:, names + 3 * 38 :])


def test_the_compare_grid_header_runs_a_long_name_on_over_the_next_column():
    """``ppgn_h/joint`` over two chains' 64 px was cut to ``ppgn_h/joi`` (a trial): names alternate
    between two lines, and each may run on up to the next name on its own line."""
    from atlas.bench.picture_grids import _label_row

    row = _label_row(["real", "ppgn_h/joint", "accentuation", "x"], [40, 64, 64, 64])
    assert row.shape == (24, 232, 3)
    dark = row.min(axis=2) < 128
    assert dark[12:, 104:168].any()  # ppgn_h/joint (second line) reaches past its own column's end
    assert dark[:12, 104:].any() and not dark[:12, 40:104].any()  # accentuation on the first line


def test_unknown_accentuation_layer_names_the_key(world):
    with pytest.raises(ConfigError, match=r"^sampler\.accentuation\.layer: unknown layer 'conv9'"):
        make(world, method="accentuation", accentuation=AccentuationConfig(layer="conv9"))
    e = make(world, method="accentuation", accentuation=AccentuationConfig(layer="relu2"))
    assert e.sampler.describe() == "accentuation[relu2,w=1]"


def test_the_benches_give_search_methods_the_gradient_budget_and_say_when_it_is_too_short():
    """The peers' budget (3 x steps forward passes; a generation costs its population): a trial's
    `--steps 5` gave GA and CMA-ES one generation of 15 and identical rows, with nothing said."""
    from atlas.bench.quality import peer_methods, short_search_note
    from atlas.sampling.peers import passes_per_image

    def peers(steps: int):
        return peer_methods(SamplerConfig(steps=steps, ga={"population": 20}, cmaes={"population": 20}))

    long = peers(50)
    assert (long["ga"].steps, long["ga"].ga.population, passes_per_image(long["ga"])) == (7, 20, 140)
    assert short_search_note(SamplerConfig(steps=50), long) == ""
    short = peers(5)
    assert (short["ga"].steps, short["ga"].ga.population, passes_per_image(short["cmaes"])) == (1, 15, 15)
    base = SamplerConfig(steps=5, ga={"population": 20}, cmaes={"population": 20})
    assert short_search_note(base, short) == (
        "(at this budget ga 1 generation of 15, cmaes 1 generation of 15: too short for a search to leave "
        "its start; a generation costs its population / 3 gradient steps, so --steps 20 or more give them "
        "3 generations or more)"
    )
    enough = peers(20)  # what the note asks for: 60 passes, 3 generations of 20
    assert (enough["ga"].steps, enough["cmaes"].steps) == (3, 3) and short_search_note(base, enough) == ""
    only_ga = {"ga": peers(11)["ga"]}  # 33 passes: 1 generation of 20
    assert short_search_note(base, only_ga, "--set sampler.steps=").endswith(
        "so --set sampler.steps=20 or more give it 3 generations or more)"
    )


def test_bench_quality_compare_says_what_it_takes_of_the_config_and_what_it_sets():
    """A user's trial: --compare raised chains_per_unit 3 -> 8 and left the config's layers unused, said
    in neither the console nor the help."""
    from atlas.bench.quality import QualitySetup
    from atlas.config import FacetConfig, SamplerConfig

    def notes(config_chains: int, bench_chains: int) -> list[str]:
        cfg = config_from_dict(BASE, [f"sampler.chains_per_unit={config_chains}"])
        sampler = SamplerConfig(chains_per_unit=bench_chains)
        return QualitySetup(None, None, None, None, None, sampler, FacetConfig(), None).compare_notes(cfg)

    raised = notes(3, 8)
    assert (
        "on the bench's own units (every output unit, and fc7's first 8), not the config's layers"
        in raised[0]
    )
    assert raised[1].endswith("sampler.chains_per_unit 3 -> 8 (its diversity and multifaceted counts need 8 "
                              "chains a unit)")  # fmt: skip
    assert len(notes(8, 8)) == 1
