"""The engine on a CUDA device: every method climbs, float32 parity with the CPU, batch independence, the
out-of-memory back-off under a real allocator limit, fp16 autocast and torch.compile.

Not collected by ``make test`` (pyproject's testpaths leave tests/gpu out): run on a GPU machine with
``bash tests/gpu/run.sh`` or ``python -m pytest --noconftest -m gpu tests/gpu``. Without a CUDA device every
test fails (never skips): a GPU check that passes without a GPU would say nothing. Self-contained (no Ray,
no root conftest), so it runs under a bare PyTorch image with atlas on the path.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from atlas.bench.throughput import methods_for
from atlas.config import ComputeConfig, FacetConfig, SamplerConfig, replace
from atlas.sampling import Engine, UnitResult
from atlas.sampling.compute import ComputeSetup, resolve_device
from atlas.toyworld import load_component

pytestmark = pytest.mark.gpu
UNITS = [0, 3, 5, 7]


@pytest.fixture(scope="module")
def cuda() -> torch.device:
    """The CUDA device; ATLAS_GPU_TESTS_ON=cpu dry-runs the module's own code on the CPU (what needs CUDA's
    allocator then fails)."""
    if os.environ.get("ATLAS_GPU_TESTS_ON") == "cpu":
        return torch.device("cpu")
    assert torch.cuda.is_available(), "tests/gpu needs a CUDA device (torch.cuda.is_available() is False)"
    return torch.device("cuda")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The default toy world's shipped T, G and DAE (nothing trains: an empty cache, shipped weights)."""
    cache = tmp_path_factory.mktemp("toyworld")
    return {
        name: load_component(name, "default", cache, train_if_missing=False, log=lambda *a: None)
        for name in ("target", "generator", "dae")
    }


def engine(world, device, sampler: SamplerConfig, **compute) -> Engine:
    return Engine(
        world["target"],
        world["generator"],
        world["dae"],
        sampler,
        FacetConfig(enabled=False, top_k_real=0),
        ComputeConfig(**{"batch_size": 64, **compute}),
        device,
    )


def base_sampler(**kw) -> SamplerConfig:
    return SamplerConfig(**{"steps": 40, "chains_per_unit": 2, "record_every": 10, "start": "random", **kw})


def all_ok(results: list[UnitResult]) -> list[UnitResult]:
    bad = [(u.unit, u.error) for u in results if u.status != "ok"]
    assert not bad, bad
    return results


def climb(results: list[UnitResult]) -> float:
    """Mean over chains of best minus first recorded log-probability of the unit's class."""
    gains = [
        max(r["log_prob"] for r in c.trajectory) - c.trajectory[0]["log_prob"]
        for u in results
        for c in u.chains
    ]
    return float(np.mean(gains))


def pictures(results: list[UnitResult]) -> np.ndarray:  # (units x chains, H, W, 3) float in [0, 255]
    return np.stack([c.last.image.astype(np.float64) for u in results for c in u.chains])


def test_auto_resolves_to_cuda_with_bf16_and_autotuned_batches(cuda):
    device = resolve_device("auto")
    assert device.type == "cuda"
    setup = ComputeSetup.resolve(ComputeConfig(batch_size=0), device)
    assert setup.dtype is torch.bfloat16 and setup.batch_size == 0  # 0: 512 first, halved on OOM
    assert not setup.channels_last and setup.cudnn_benchmark  # README, "On a GPU"


@pytest.mark.parametrize("autocast", ["bf16", "none"])
def test_every_method_climbs_on_cuda(world, cuda, autocast):
    methods = methods_for(_setup(world))
    for name, sampler in methods.items():
        sampler = replace(sampler, steps=40, chains_per_unit=2, record_every=10, objective="log_softmax")
        results = all_ok(engine(world, cuda, sampler, autocast=autocast).map_units("fc8", UNITS, seed=0))
        assert climb(results) > 0.5, (name, autocast, climb(results))
        picture = results[0].chains[0].last.image
        assert picture.dtype == np.uint8 and picture.shape[-1] == 3
        assert all(np.isfinite(u.best_activation) for u in results)
        assert not any(c.diverged for u in results for c in u.chains)


def _setup(world):
    from atlas.bench.throughput import ThroughputSetup

    return ThroughputSetup(
        world["target"], world["generator"], world["dae"], SamplerConfig(), ComputeConfig()
    )


def test_float32_forward_matches_the_cpu(world, cuda):
    """The same codes through G and T on both devices, float32 (cuDNN may use TF32 for convolutions:
    agreement to 1e-2 relative, far inside what a chain's climb moves)."""
    out = []
    for device in (torch.device("cpu"), cuda):
        e = engine(world, device, base_sampler(method="dgn_am"), autocast="none", channels_last=False)
        codes = torch.rand(16, *e.sampler.param.state_shape(), generator=torch.Generator().manual_seed(0))
        name = e.nets.resolve_layer("fc8")
        with torch.no_grad():
            img = e.sampler.param.image(codes.to(device))  # (16, 3, H, W) in [0, 1]
            acts = e.nets.probes([name])[0](e.setup.to_input(e.target.space.encode(img)))
        out.append(acts[name].float().cpu())  # (16, 10)
    cpu, gpu = out
    rel = (gpu - cpu).norm() / cpu.norm()
    assert rel < 1e-2, float(rel)
    assert torch.equal(gpu.argmax(1), cpu.argmax(1))


def test_a_chain_gives_the_same_picture_alone_or_in_a_batch_in_float32(world, cuda):
    """docs/sampling.md: a chain does not depend on its batch mates (same device, float32) beyond rounding,
    which the kernels chosen for a batch size change and a climb amplifies: compared after 3 steps (on 2 CPU
    cores a 40-step climb parted by up to 15/255 in a pixel, mean 0.19/255)."""
    sampler = base_sampler(method="dgn_am", steps=3, record_every=1)
    runs = [
        all_ok(engine(world, cuda, sampler, batch_size=b, autocast="none").map_units("fc8", UNITS, seed=3))
        for b in (1, 8)
    ]
    final = [torch.stack([c.final_activations for u in r for c in u.chains]) for r in runs]  # (8, 10)
    rel = float((final[0] - final[1]).abs().max() / final[0].abs().max())
    diff = np.abs(pictures(runs[0]) - pictures(runs[1]))
    print(f"batch 1 vs 8 after 3 steps: activations {rel:.1e} relative, pictures {diff.mean():.3f}/255 mean")
    assert rel < 1e-2 and diff.mean() <= 0.5, (rel, diff.mean(), diff.max())


def test_out_of_memory_halves_the_batch_and_loses_no_unit(world, cuda):
    """Autotuned batches (batch_size 0: 512 chains first) under a real allocator limit ~2.5 times what 64
    chains need: the engine catches CUDA's out-of-memory error, halves (in multiples of a unit's 64
    chains), and every unit still finishes."""
    sampler = base_sampler(method="ppgn_h", steps=4, chains_per_unit=64)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(cuda)
    before = torch.cuda.memory_allocated(cuda)
    all_ok(engine(world, cuda, sampler, batch_size=64).map_units("fc8", [0], seed=0))
    need64 = torch.cuda.max_memory_allocated(cuda) - before
    total = torch.cuda.get_device_properties(cuda).total_memory
    index = cuda.index if cuda.index is not None else torch.cuda.current_device()
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction((before + 2.5 * need64) / total, index)
    try:
        e = engine(world, cuda, sampler, batch_size=0)
        results = all_ok(e.map_units("fc8", list(range(8)), seed=0))  # 512 chains
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, index)
        torch.cuda.empty_cache()
    print(
        f"64 chains need {need64 / 2**20:.0f} MiB; out of memory at 512: the engine settled on {e.batch_size}"
    )
    assert len(results) == 8 and all(len(u.chains) == 64 for u in results)
    assert 64 <= e.batch_size < 512 and e.batch_size % 64 == 0, e.batch_size


def test_fp16_autocast_climbs_without_overflow(world, cuda):
    sampler = base_sampler(method="dgn_am", objective="log_softmax")
    e = engine(world, cuda, sampler, autocast="fp16")
    assert e.setup.precision == "float16"  # not float32, as a CPU would resolve it
    results = all_ok(e.map_units("fc8", UNITS, seed=0))
    assert climb(results) > 0.5
    assert not any(c.diverged for u in results for c in u.chains)


def test_compiled_generator_gives_the_pictures_of_the_eager_one(world, cuda):
    sampler = base_sampler(method="dgn_am", steps=20)
    eager = all_ok(engine(world, cuda, sampler, autocast="none").map_units("fc8", UNITS, seed=1))
    e = engine(world, cuda, sampler, autocast="none", compile=True)
    assert isinstance(e.nets.gen_module, torch._dynamo.eval_frame.OptimizedModule)  # compiled, not eager
    compiled = all_ok(e.map_units("fc8", UNITS, seed=1))
    assert np.abs(pictures(eager) - pictures(compiled)).mean() <= 2.0
