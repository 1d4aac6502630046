"""Start states of a unit's chains: one function per start mode, each with its own noise.

Usage::

    starts = StartStates(cfg.sampler, cfg.facets, param_shape, pixel=False, clip=clip,
                         code_stats=stats, real=real_features)
    x0, labels = starts.for_unit("fc8", unit, chain_ids, gens, seed)   # (K, *S), ["facet_seed:0", ...]

Code starts (DGN-AM, PPGN-h): ``random`` N(0, 1) clipped; ``mean`` the mean code + ``start_noise`` x std x N;
``real`` the code of the unit's c-th top real image; ``facet_seeded`` the code of each facet cluster's best
real image (Nguyen et al. 2016, multifaceted: k-means of the top images' facet-layer features). Pixel starts:
grey + N(0, 0.1), the mean real image + N(0, 0.05), the top images, the cluster mean images. Chains beyond
the number of seeds repeat them with extra noise. Every draw comes from the chain's own generator.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from atlas.config import FacetConfig, SamplerConfig
from atlas.models.codes import CodeStats
from atlas.sampling import facets as facet_mod
from atlas.sampling.real_features import RealFeatures
from atlas.sampling.seeds import chain_seed, randn_per_chain
from atlas.sampling.units import Unit

Start = tuple[torch.Tensor, list[str]]  # (K, *S) states, one label per chain
PIXEL_RANDOM_STD = 0.1  # random pixel start: grey 0.5 + this x N(0, 1)
PIXEL_MEAN_NOISE = 0.05  # mean pixel start: the mean real image + this x N(0, 1)
REPEAT_NOISE = 0.25  # code chains beyond the number of seeds: + this x std x N(0, 1) on the seed code
PIXEL_REPEAT_NOISE = 0.05  # pixel chains beyond the number of seeds: + this x N(0, 1) on the seed image


def random_code_start(gens: list[torch.Generator], shape: tuple[int, ...], clip: Callable) -> torch.Tensor:
    """(B, *S) ~ N(0, 1), clipped to the code bounds."""
    return clip(randn_per_chain(gens, shape, _device(gens)))


def random_pixel_start(gens: list[torch.Generator], shape: tuple[int, ...]) -> torch.Tensor:
    """(B, 3, s, s) grey + noise in [0, 1]."""
    return (0.5 + PIXEL_RANDOM_STD * randn_per_chain(gens, shape, _device(gens))).clamp(0, 1)


def mean_code_start(
    gens: list[torch.Generator], shape: tuple[int, ...], stats: CodeStats, noise: float, clip: Callable
) -> torch.Tensor:
    """(B, *S) the mean code + ``noise`` x std x N(0, 1) (DGN-AM's mean-code start)."""
    eps = randn_per_chain(gens, shape, _device(gens))
    return clip(stats.mean.float().view(shape) + noise * stats.std.float().view(shape) * eps)


def mean_pixel_start(gens: list[torch.Generator], base: torch.Tensor) -> torch.Tensor:
    """(B, 3, s, s) ``base`` (the mean real image, or grey) + noise."""
    eps = randn_per_chain(gens, tuple(base.shape), _device(gens))
    return (base + PIXEL_MEAN_NOISE * eps).clamp(0, 1)


def seeded_start(
    seeds: torch.Tensor,
    ids: list[int],
    gens: list[torch.Generator],
    noise: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """Chain c starts from seed c mod n plus ``noise(repeat)`` x N(0, 1), repeat = 1 beyond the n seeds.

    seeds (n, *S); ids: chain ids (a unit may span two batches); -> (B, *S) before clipping."""
    n = seeds.shape[0]
    shape = tuple(seeds.shape[1:])
    eps = randn_per_chain(gens, shape, _device(gens))
    repeat = torch.tensor([0.0 if c < n else 1.0 for c in ids], device=eps.device).view(-1, *[1] * len(shape))
    picked = seeds[torch.tensor([c % n for c in ids], device=seeds.device)].to(eps.device)
    return picked + noise(repeat) * eps


def fit_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 3, size, size) bilinear (pixel starts from real images of another size)."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)


def _device(gens: list[torch.Generator]) -> torch.device:
    return gens[0].device


class StartStates:
    """Picks each unit's start mode (falling back when real images or code stats are missing) and draws."""

    def __init__(
        self,
        cfg: SamplerConfig,
        facet_cfg: FacetConfig,
        shape: tuple[int, ...],
        pixel: bool,
        clip: Callable[[torch.Tensor], torch.Tensor],
        code_stats: CodeStats | None,
        real: RealFeatures | None,
    ) -> None:
        self.cfg, self.facet_cfg, self.shape, self.pixel = cfg, facet_cfg, shape, pixel
        self.clip, self.code_stats, self.real = clip, code_stats, real

    def mode(self, layer: str) -> str:
        """The configured start, or its fallback: mean (code stats or pixels), else random."""
        start = self.cfg.start
        real = self.real
        seeded_ok = (
            real is not None and real.values(layer) is not None and (self.pixel or real.codes is not None)
        )
        if start in ("real", "facet_seeded") and not seeded_ok:
            return "mean" if (self.pixel or self.code_stats is not None) else "random"
        return start

    def for_unit(
        self, layer: str, unit: Unit, ids: list[int], gens: list[torch.Generator], seed: int
    ) -> Start:
        mode = self.mode(layer)
        k = len(ids)
        if mode == "random":
            x = (
                random_pixel_start(gens, self.shape)
                if self.pixel
                else random_code_start(gens, self.shape, self.clip)
            )
            return x, ["random"] * k
        if mode == "mean":
            return self._mean(gens), ["mean"] * k
        seeds, labels = self._seeds(layer, unit, mode, ids, seed)
        if self.pixel:
            return seeded_start(seeds, ids, gens, lambda r: r * PIXEL_REPEAT_NOISE).clamp(0, 1), labels
        stats = self.code_stats
        std = (
            stats.std.float().view(self.shape)
            if stats is not None
            else torch.ones(self.shape, device=seeds.device)
        )
        x = seeded_start(seeds, ids, gens, lambda r: (self.cfg.start_noise + r * REPEAT_NOISE) * std)
        return self.clip(x), labels

    def pool(self, layer: str, ids: list[int], gens: list[torch.Generator]) -> torch.Tensor | None:
        """(P, K, *S) ``sampler.start_pool`` draws per chain of its mean or random code start (the mean
        code + ``start_pool_noise`` x std x N); None when the pool is off or does not apply (pixel and
        seeded starts). Draws come from the chains' own generators, after nothing else."""
        size = self.cfg.start_pool
        mode = self.mode(layer)
        if size <= 1 or self.pixel or mode not in ("mean", "random"):
            return None
        if mode == "random":
            draws = [random_code_start(gens, self.shape, self.clip) for _ in range(size)]
        else:
            assert self.code_stats is not None
            noise = self.cfg.start_pool_noise
            stats = self.code_stats
            draws = [mean_code_start(gens, self.shape, stats, noise, self.clip) for _ in range(size)]
        return torch.stack(draws)  # (P, K, *S)

    def _mean(self, gens: list[torch.Generator]) -> torch.Tensor:
        if not self.pixel:
            assert self.code_stats is not None
            return mean_code_start(gens, self.shape, self.code_stats, self.cfg.start_noise, self.clip)
        if self.real is not None:
            base = fit_images(self.real.images.float().mean(0, keepdim=True), self.shape[-1])[0]
        else:
            base = torch.full(self.shape, 0.5)
        return mean_pixel_start(gens, base.to(_device(gens)))

    def _seeds(
        self, layer: str, unit: Unit, mode: str, ids: list[int], seed: int
    ) -> tuple[torch.Tensor, list[str]]:
        """(n, *S) seed states and the chains' labels, from the unit's top ``facets.seed_pool`` images."""
        real = self.real
        assert real is not None
        values = real.values(layer)
        assert values is not None
        idx, _ = real.top(layer, unit.index, min(self.facet_cfg.seed_pool, values.shape[0]))
        if mode == "real":
            chosen = idx[: self.cfg.chains_per_unit]
            # the image's place in the whole set, as images.real_index (facets.real_limit samples it)
            labels = [f"real:{real.source_index(int(chosen[c % len(chosen)]))}" for c in ids]
            return self._states_of(chosen), labels
        kseed = chain_seed(seed, layer, unit.index, -1)
        if self.pixel:  # Nguyen et al. 2016: the mean *image* of each cluster of top images
            feats = next(f[idx] for f in (real.facet_features, real.codes, values) if f is not None)
            _, groups = facet_mod.kmeans(feats, self.facet_cfg.max_facets, kseed)
            imgs = self._states_of(idx)
            seeds = torch.stack([imgs[groups == j].mean(0) for j in range(int(groups.max()) + 1)])
        else:  # code chains: the code of each cluster's best real image (a mean code is no real code)
            feats = real.facet_features[idx] if real.facet_features is not None else real.codes[idx]  # type: ignore[index]
            pos, _ = facet_mod.facet_exemplars(feats, self.facet_cfg.max_facets, kseed)
            seeds = self._states_of(idx[pos.to(idx.device)])
        return seeds, [f"facet_seed:{c % seeds.shape[0]}" for c in ids]

    def _states_of(self, idx: torch.Tensor) -> torch.Tensor:
        """(n, *S) the states of real images ``idx``: their pictures (pixel) or their codes."""
        real = self.real
        assert real is not None
        if self.pixel:
            return fit_images(real.images[idx.cpu()].float(), self.shape[-1])
        return real.codes[idx].view(-1, *self.shape)  # type: ignore[index]
