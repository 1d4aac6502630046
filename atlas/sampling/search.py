"""Gradient-free search in G's code space: forward passes only, so the target may be a black box.

Usage::

    s = GeneticSearch(GeneratorParam(G), cfg.sampler.ga, std, lower, upper)        # XDream
    s = CmaEs(GeneratorParam(G), cfg.sampler.cmaes, std, lower, upper)             # separable CMA-ES
    results = run_search(s, readout, objective, units, start, gens, steps=15, record_every=1,
                         setup=setup, meta=meta)      # the same ChainResults as run_chains

The population loop (``sampler.steps`` counts generations)::

    cand = s.ask(gens)                                # (B, P, *S): P codes for each of the B chains
    f    = objective(probe(encode(G(cand))), unit)    # (B, P) under torch.no_grad, in batched passes
    s.tell(f, gens)                                   # selection / recombination / mutation, or CMA update

Each chain's state and picture is its best member so far (its best code, that code's picture and layer
values), tracked by the same ``ChainTracker`` as the gradient loop, so facets, rows, the store and the viewer
see no difference. Forward passes per picture: ``steps x P`` (+ 1 final readout, + 2 float32 reads of the
kept pictures); no backward pass ever runs. Every random draw comes from the chain's own generator, and
every update is per chain.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from atlas.config import CmaesConfig, GaConfig
from atlas.sampling.chain import TargetReadout, collect_results, read_kept_as_stored
from atlas.sampling.compute import ComputeSetup
from atlas.sampling.objectives import Objective, layer_values
from atlas.sampling.parametrizations import GeneratorParam
from atlas.sampling.results import ChainResult
from atlas.sampling.seeds import randn_per_chain
from atlas.sampling.stats import ChainTracker, per_chain_norm
from atlas.sampling.steps import clip_code
from atlas.sampling.transforms import rand_per_chain
from atlas.sampling.units import Unit

Gens = list[torch.Generator]


class Searcher:
    """A population method over codes: ``begin`` (start codes), ``ask`` (candidates), ``tell`` (fitness)."""

    name = "search"
    param: GeneratorParam
    population: int
    prior = None  # the engine's probe asks for no prior layers
    chunk_rows = 256  # pictures per forward pass (set by the engine from compute.batch_size)

    def __init__(
        self,
        param: GeneratorParam,
        std: torch.Tensor | None,
        lower: torch.Tensor | None,
        upper: torch.Tensor | None,
    ) -> None:
        self.param, self.lower, self.upper = param, lower, upper
        self.std = std  # (*S) code standard deviations: the unit of every move (None: 1)

    def _std(self, like: torch.Tensor) -> torch.Tensor:
        """(D,) code stds of the flattened code, floored so no dimension is frozen outright."""
        d = like.shape[-1]
        if self.std is None:
            return torch.ones(d, device=like.device)
        s = self.std.to(like.device).float().reshape(d)
        return s.clamp_min(1e-3 * float(s.mean().clamp_min(1e-8)))

    def _clip(self, codes: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        """(B, P, D) -> (B, P, D) inside the code bounds."""
        b, p, _ = codes.shape
        return clip_code(codes.view(b * p, *shape), self.lower, self.upper).view(b, p, -1)

    def describe(self) -> str:
        return f"{self.name}[pop={self.population}]"

    def begin(self, start: torch.Tensor, gens: Gens) -> None:
        raise NotImplementedError

    def ask(self, gens: Gens) -> torch.Tensor:
        raise NotImplementedError

    def tell(self, fitness: torch.Tensor, gens: Gens) -> None:
        raise NotImplementedError


def selection_probs(fitness: torch.Tensor, temperature: float) -> torch.Tensor:
    """(B, P) fitness -> (B, P) parent probabilities: softmax of each chain's z-scored fitness / temperature
    (XDream's selectivity relative to the spread of scores); non-finite members get probability 0."""
    finite = torch.isfinite(fitness)
    f = torch.where(finite, fitness, torch.zeros_like(fitness))
    n = finite.sum(1, keepdim=True).clamp_min(1)
    mean = f.sum(1, keepdim=True) / n
    var = torch.where(finite, (f - mean) ** 2, torch.zeros_like(f)).sum(1, keepdim=True) / n
    z = (f - mean) / var.sqrt().clamp_min(1e-8)
    z = torch.where(finite, z / temperature, torch.full_like(z, float("-inf")))
    z = torch.where(finite.any(1, keepdim=True), z, torch.zeros_like(z))  # nothing finite: uniform
    return torch.softmax(z, dim=1)


class GeneticSearch(Searcher):
    """XDream's genetic algorithm (Ponce et al. 2019; Xiao & Kreiman 2020) in G's code space, per chain:
    keep the ``elite`` best codes; breed the rest from two parents drawn with ``selection_probs``, each
    element from either parent (uniform recombination); mutate each element with probability
    ``mutation_rate`` by ``mutation_size`` code stds x N(0, 1); clip to the code bounds."""

    name = "ga"

    def __init__(self, param, cfg: GaConfig, std, lower, upper) -> None:
        super().__init__(param, std, lower, upper)
        self.cfg, self.population = cfg, cfg.population
        self.pop: torch.Tensor | None = None  # (B, P, D)
        self.shape: tuple[int, ...] = ()

    def begin(self, start, gens):
        b = start.shape[0]
        self.shape = tuple(start.shape[1:])
        x0 = start.float().reshape(b, 1, -1)  # (B, 1, D)
        std = self._std(x0)
        noise = randn_per_chain(gens, (self.population - 1, x0.shape[-1]), start.device)
        rest = x0 + self.cfg.init_noise * std * noise
        self.pop = self._clip(torch.cat([x0, rest], dim=1), self.shape)  # member 0: the start code

    def ask(self, gens):
        assert self.pop is not None
        b, p, _ = self.pop.shape
        return self.pop.view(b, p, *self.shape)

    def tell(self, fitness, gens):
        assert self.pop is not None
        pop, cfg = self.pop, self.cfg
        b, p, d = pop.shape
        order = torch.where(torch.isfinite(fitness), fitness, torch.full_like(fitness, -math.inf))
        order = order.argsort(dim=1, descending=True, stable=True)
        elite = pop.gather(1, order[:, : cfg.elite, None].expand(-1, -1, d))  # (B, e, D)
        n = p - cfg.elite
        probs = selection_probs(fitness, cfg.temperature)
        parents = torch.stack(
            [torch.multinomial(probs[i], 2 * n, replacement=True, generator=g) for i, g in enumerate(gens)]
        ).view(b, n, 2)
        pa = pop.gather(1, parents[..., 0, None].expand(-1, -1, d))
        pb = pop.gather(1, parents[..., 1, None].expand(-1, -1, d))
        u = rand_per_chain(gens, 2 * n * d, pop.device).view(b, 2, n, d)
        child = torch.where(u[:, 0] < 0.5, pa, pb)  # uniform recombination
        noise = randn_per_chain(gens, (n, d), pop.device)
        mutate = (u[:, 1] < cfg.mutation_rate).float()
        child = child + mutate * cfg.mutation_size * self._std(pop) * noise
        self.pop = self._clip(torch.cat([elite, child], dim=1), self.shape)


@dataclass
class _CmaConstants:
    """Strategy parameters of (mu/mu_w, lambda)-CMA-ES (Hansen 2016, Table 1), separable rates (Ros &
    Hansen 2008: c1 and c_mu x (D + 2) / 3 for a diagonal covariance)."""

    weights: torch.Tensor  # (mu,) positive recombination weights, summing to 1
    mueff: float
    cs: float
    ds: float
    cc: float
    c1: float
    cmu: float
    chi: float  # E||N(0, I_D)||

    @staticmethod
    def make(d: int, lam: int, device: torch.device) -> _CmaConstants:
        mu = lam // 2
        w = math.log((lam + 1) / 2) - torch.log(torch.arange(1, mu + 1, dtype=torch.float64))
        w = w / w.sum()
        mueff = float(1 / (w**2).sum())
        cs = (mueff + 2) / (d + mueff + 5)
        ds = 1 + 2 * max(0.0, math.sqrt((mueff - 1) / (d + 1)) - 1) + cs
        cc = (4 + mueff / d) / (d + 4 + 2 * mueff / d)
        c1 = 2 / ((d + 1.3) ** 2 + mueff)
        cmu = min(1 - c1, 2 * (mueff - 2 + 1 / mueff) / ((d + 2) ** 2 + mueff))
        sep = (d + 2) / 3
        c1, cmu = min(1.0, c1 * sep), cmu * sep
        cmu = min(cmu, 1 - c1)
        chi = math.sqrt(d) * (1 - 1 / (4 * d) + 1 / (21 * d * d))
        return _CmaConstants(w.float().to(device), mueff, cs, ds, cc, c1, cmu, chi)


class CmaEs(Searcher):
    """Separable CMA-ES (Hansen 2016, Eqs. 38-47 with a diagonal C; Ros & Hansen 2008) per chain, in code-std
    units x = h / std: sample ``x_k = m + sigma sqrt(C) z_k``; clip to the bounds (the clipped samples enter
    the update, so the mean stays inside); ``m += sigma y_w``; cumulative step-size adaptation of sigma;
    rank-one + rank-mu update of the diagonal C."""

    name = "cmaes"

    def __init__(self, param, cfg: CmaesConfig, std, lower, upper) -> None:
        super().__init__(param, std, lower, upper)
        self.cfg, self.population = cfg, cfg.population
        self.shape: tuple[int, ...] = ()
        # per batch (begin): s (D,) code stds; m, c, ps, pc (B, D) mean, diagonal C, evolution paths;
        # sigma (B, 1); y (B, P, D) the last samples' steps; gen: generations told
        self.s = self.m = self.c = self.ps = self.pc = self.sigma = self.y = torch.empty(0)
        self.gen = 0

    def begin(self, start, gens):
        b = start.shape[0]
        self.shape = tuple(start.shape[1:])
        h0 = start.float().reshape(b, -1)
        d = h0.shape[1]
        self.s = self._std(h0.unsqueeze(1))  # (D,)
        self.k = _CmaConstants.make(d, self.population, start.device)
        self.m = h0 / self.s  # (B, D)
        self.sigma = torch.full((b, 1), self.cfg.sigma, device=start.device)
        self.c = torch.ones(b, d, device=start.device)
        self.ps = torch.zeros(b, d, device=start.device)
        self.pc = torch.zeros(b, d, device=start.device)
        self.gen = 0

    def ask(self, gens):
        b, d = self.m.shape
        z = randn_per_chain(gens, (self.population, d), self.m.device)  # (B, P, D)
        x = self.m[:, None] + self.sigma[:, :, None] * self.c.sqrt()[:, None] * z
        h = self._clip(x * self.s, self.shape)  # (B, P, D) codes inside the bounds
        self.y = (h / self.s - self.m[:, None]) / self.sigma[:, :, None]  # the clipped steps (repair)
        return h.view(b, self.population, *self.shape)

    def tell(self, fitness, gens):
        k, d = self.k, self.m.shape[1]
        f = torch.where(torch.isfinite(fitness), fitness, torch.full_like(fitness, -math.inf))
        best = f.argsort(dim=1, descending=True, stable=True)[:, : k.weights.shape[0]]  # (B, mu)
        y = self.y.gather(1, best[..., None].expand(-1, -1, d))  # (B, mu, D)
        w = k.weights.view(1, -1, 1)
        yw = (w * y).sum(1)  # (B, D)
        self.m = self.m + self.sigma * yw
        zw = yw / self.c.sqrt()
        self.ps = (1 - k.cs) * self.ps + math.sqrt(k.cs * (2 - k.cs) * k.mueff) * zw
        norm = self.ps.norm(dim=1, keepdim=True)  # (B, 1)
        self.sigma = self.sigma * torch.exp((k.cs / k.ds) * (norm / k.chi - 1)).clamp(max=10.0)
        self.gen += 1
        hs = (norm / math.sqrt(1 - (1 - k.cs) ** (2 * self.gen)) < (1.4 + 2 / (d + 1)) * k.chi).float()
        self.pc = (1 - k.cc) * self.pc + hs * math.sqrt(k.cc * (2 - k.cc) * k.mueff) * yw
        rank_mu = (w * y * y).sum(1)
        rank_one = self.pc**2 + (1 - hs) * k.cc * (2 - k.cc) * self.c
        self.c = (1 - k.c1 - k.cmu) * self.c + k.c1 * rank_one + k.cmu * rank_mu


@dataclass
class _Best:
    """Each chain's best member so far: code (B, *S), picture (B, 3, H, W), layer values (B, U), f (B,)."""

    code: torch.Tensor
    img: torch.Tensor
    values: torch.Tensor
    f: torch.Tensor

    def take(self, other: _Best, mask: torch.Tensor) -> None:
        """Rows where ``mask`` (B,) is true become ``other``'s."""
        for name in ("code", "img", "values", "f"):
            mine, theirs = getattr(self, name), getattr(other, name)
            m = mask.view(-1, *([1] * (mine.dim() - 1)))
            setattr(self, name, torch.where(m, theirs.to(mine.dtype), mine))


def _evaluate(
    s: Searcher,
    readout: TargetReadout,
    objective: Objective,
    units: list[Unit],
    index: torch.Tensor,
    cand: torch.Tensor,
    setup: ComputeSetup,
) -> tuple[torch.Tensor, _Best]:
    """Fitness (B, P) of every candidate (B, P, *S) in passes of about ``s.chunk_rows`` pictures (whole chains
    per pass), and each chain's best member of this generation."""
    b, p = cand.shape[:2]
    per = max(1, s.chunk_rows // p)  # chains per pass
    fits, tops = [], []
    for lo in range(0, b, per):
        c = cand[lo : lo + per]
        n = c.shape[0]
        flat = c.reshape(n * p, *c.shape[2:])
        us = [u for u in units[lo : lo + n] for _ in range(p)]
        with setup.autocast():
            img = s.param.image(flat)  # (nP, 3, H, W)
            acts = readout.probe(setup.to_input(readout.encode(img)))
            values = layer_values(acts[readout.layer], us).float()  # (nP, U)
            idx = index[lo : lo + n].repeat_interleave(p)
            f = readout.climbed(values, img, us, objective, idx).float().view(n, p)
        f = torch.nan_to_num(f, nan=-math.inf)
        rows = torch.arange(n, device=f.device) * p + f.argmax(1)
        fits.append(f)
        tops.append(_Best(flat[rows].float(), img[rows].float(), values[rows], f.max(1).values))
    top = _Best(*(torch.cat([getattr(t, k) for t in tops]) for k in ("code", "img", "values", "f")))
    return torch.cat(fits), top


@torch.no_grad()
def run_search(
    searcher: Searcher,
    readout: TargetReadout,
    objective: Objective,
    units: list[Unit],
    start: torch.Tensor,
    gens: Gens,
    steps: int,
    record_every: int,
    setup: ComputeSetup,
    meta: list[tuple[int, int, str]],
    stop_at: torch.Tensor | None = None,
) -> list[ChainResult]:
    """``steps`` generations for B chains (start: (B, *S) codes); the same arguments and results as
    ``chain.run_chains``. ``stop_at`` (B,): a chain keeps its best member once its unit reaches it."""
    t0 = time.perf_counter()
    b, device = start.shape[0], start.device
    index = torch.tensor([u.index for u in units], dtype=torch.long, device=device)  # (B,)
    tracker = ChainTracker(b, record_every, device)
    searcher.begin(start.detach().float(), gens)
    best: _Best | None = None
    for t in range(steps):
        fitness, top = _evaluate(searcher, readout, objective, units, index, searcher.ask(gens), setup)
        searcher.tell(fitness, gens)
        if best is None:
            best = top
        else:
            best.take(top, (top.f > best.f) & ~tracker.stopped)
        read = objective.readout(best.values, index)
        tracker.observe(t, readout.seen(best.img), read, best.f)
        if stop_at is not None:
            tracker.stop(read["activation"].float() >= stop_at, t)
        if t % record_every == 0:
            nan = per_chain_norm(None, b, device)
            tracker.record(t, read, per_chain_norm(best.code, b, device), nan, nan, readout.seen(best.img))
    code = best.code if best is not None else start.detach().float()
    with setup.autocast():  # the final readout: the best codes' pictures through the final probe
        img = searcher.param.image(code).float()
        acts = readout.with_code(readout.final_probe(setup.to_input(readout.encode(img))), img, final=True)
        values = layer_values(acts[readout.layer], units).float()
        f = readout.climbed(values, img, units, objective, index)
    read = objective.readout(values, index)
    tracker.diverge(~torch.isfinite(f) | ~torch.isfinite(img).flatten(1).all(1), steps)
    tracker.observe(steps, readout.seen(img), read, f)
    nan = per_chain_norm(None, b, device)
    tracker.record(steps, read, per_chain_norm(code, b, device), nan, nan, readout.seen(img))
    seconds = (time.perf_counter() - t0) / max(b, 1)
    values = read_kept_as_stored(tracker, readout, setup, units, objective, index)
    return collect_results(tracker, meta, readout, acts, values, seconds)
