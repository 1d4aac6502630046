"""The peer methods' wiring: which sampler each ``sampler.method`` builds, and where its chains start.

Usage (inside ``Engine``)::

    peer = PeerSetup(cfg.sampler, cfg.facets, nets, setup, real_features, code_stats, bounds, batch_size)
    sampler = peer.sampler(generator)         # FourierAscent | Maco | Accentuation | GeneticSearch | CmaEs
    starts = peer.starts(sampler, code_starts)   # .for_unit(layer, unit, ids, gens, seed) -> (x0, labels)

Starts: ``fourier`` and ``maco`` draw their own random spectrum / phase (Lucid, MACO; ``sampler.start`` does
not apply); ``accentuation`` starts from a real image — chain c from the unit's c-th top real image (the
``real`` start's ranking, whatever ``sampler.start`` says), mapped into the Fourier state; without real images
it falls back to the mean real image or grey plus noise (the pixel ``mean`` start); ``ga`` and ``cmaes`` start
from codes exactly as DGN-AM does (``sampler.start``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from atlas.config import CODE_METHODS, FacetConfig, SamplerConfig, replace
from atlas.errors import ConfigError, ModelError
from atlas.models.codes import CodeStats
from atlas.models.loaded import LoadedModel
from atlas.sampling.compute import ComputeSetup
from atlas.sampling.fourier import FourierParam, PhaseParam, mean_amplitude_spectrum, power_law_magnitude
from atlas.sampling.nets import EngineNets
from atlas.sampling.parametrizations import GeneratorParam
from atlas.sampling.peer_samplers import Accentuation, FourierAscent, Maco, default_accent_layer
from atlas.sampling.real_features import RealFeatures
from atlas.sampling.samplers import Sampler
from atlas.sampling.search import CmaEs, GeneticSearch, Searcher
from atlas.sampling.starts import Start, StartStates
from atlas.sampling.units import Unit

PEER_METHODS = ("fourier", "maco", "accentuation", "ga", "cmaes")
SEARCH_METHODS = ("ga", "cmaes")
# forward-pass equivalents of one gradient step: 1 forward + 1 input-gradient backward (~2 forwards)
GRADIENT_STEP_PASSES = 3


def passes_per_image(cfg: SamplerConfig) -> int:
    """Forward-pass equivalents one chain spends (its picture): a gradient step counts 3 (forward + backward),
    a search generation counts its population (forward only), a ``start_pool`` draw one; the final readout
    pass is left out, and so is the no-gradient read of the picture itself that methods seeing a random view
    spend each step on what they keep (``Sampler.views_randomly``): it is bookkeeping, not search."""
    pooled = cfg.start_pool > 1 and cfg.start in ("mean", "random") and cfg.method in CODE_METHODS
    pool = cfg.start_pool if pooled else 0  # one forward pass per start draw
    if cfg.method == "ga":
        return pool + cfg.steps * cfg.ga.population
    if cfg.method == "cmaes":
        return pool + cfg.steps * cfg.cmaes.population
    return pool + cfg.steps * GRADIENT_STEP_PASSES


@dataclass
class PeerSetup:
    cfg: SamplerConfig
    facets: FacetConfig
    nets: EngineNets
    setup: ComputeSetup
    real: RealFeatures | None
    code_stats: CodeStats | None
    bounds: tuple[torch.Tensor | None, torch.Tensor | None]
    batch_size: int

    @property
    def size(self) -> int:
        return self.nets.space.size

    def sampler(self, generator: LoadedModel | None) -> Sampler | Searcher:
        m = self.cfg.method
        if m == "fourier":
            return FourierAscent(FourierParam(self.size, self.cfg.fourier.decay_power), self.cfg.fourier)
        if m == "maco":
            return self._maco()
        if m == "accentuation":
            return self._accentuation()
        assert generator is not None and self.nets.gen_module is not None
        param = GeneratorParam(generator, self.nets.gen_module)
        std = self.code_stats.std.float() if self.code_stats is not None else None
        cls = GeneticSearch if m == "ga" else CmaEs
        searcher = cls(param, getattr(self.cfg, m), std, *self.bounds)
        searcher.chunk_rows = max(self.batch_size, searcher.population)
        return searcher

    def _maco(self) -> Maco:
        use_real = self.cfg.maco.spectrum == "real" and self.real is not None
        if use_real:
            assert self.real is not None
            magnitude = mean_amplitude_spectrum(self.real.images, self.size)
        else:
            magnitude = power_law_magnitude(self.size)
        param = PhaseParam(magnitude.to(self.setup.device))
        return Maco(param, self.cfg.maco, "real" if use_real else "power_law")

    def _accentuation(self) -> Accentuation:
        acfg = self.cfg.accentuation
        layer = acfg.layer or default_accent_layer(self.nets.layer_order(), self.size)
        if layer is None:
            raise ConfigError(
                "sampler.accentuation.layer: the target has no (C, H, W) layer to measure the distance in; "
                "name a layer (see `atlas layers SPEC`)"
            )
        try:
            probe = self.nets.probes([layer])[0]  # unfolds the layer's BatchNorm first: exact features
        except ModelError as exc:
            raise ConfigError(f"sampler.accentuation.layer: {exc}") from None
        space, setup = self.nets.space, self.setup

        def features(rgb01: torch.Tensor) -> torch.Tensor:
            with setup.autocast():
                return probe(setup.to_input(space.encode(rgb01)))[layer]

        return Accentuation(FourierParam(self.size, acfg.decay_power), acfg, features, layer)

    def starts(self, sampler: Sampler | Searcher, code_starts: StartStates) -> StartsLike | StartStates:
        """The start states of this method (module docstring); ``code_starts``: the engine's code starts."""
        m = self.cfg.method
        if m in SEARCH_METHODS:
            return code_starts
        if isinstance(sampler.param, PhaseParam):
            return RandomStarts(sampler.param.random_state)
        assert isinstance(sampler.param, FourierParam)
        if m == "accentuation":
            shape = (3, self.size, self.size)
            real = replace(self.cfg, start="real")  # the unit's top real images, one per chain
            pixel = StartStates(real, self.facets, shape, True, lambda x: x, None, self.real)
            return ImageStarts(pixel, sampler.param)
        param, std = sampler.param, self.cfg.fourier.init_std
        return RandomStarts(lambda gens: param.random_state(gens, std))


class StartsLike:
    def for_unit(
        self, layer: str, unit: Unit, ids: list[int], gens: list[torch.Generator], seed: int
    ) -> Start:
        raise NotImplementedError


class RandomStarts(StartsLike):
    """fourier: Lucid's N(0, init_std^2) spectrum; maco: a N(0, 1) phase; per-chain generators."""

    def __init__(self, draw: Callable[[list[torch.Generator]], torch.Tensor]) -> None:
        self.draw = draw

    def for_unit(self, layer, unit, ids, gens, seed):
        return self.draw(gens), ["random"] * len(ids)


class ImageStarts(StartsLike):
    """Accentuation: the pixel start (the unit's top real images) mapped into the Fourier state."""

    def __init__(self, pixel: StartStates, param: FourierParam) -> None:
        self.pixel, self.param = pixel, param

    def for_unit(self, layer, unit, ids, gens, seed):
        x, labels = self.pixel.for_unit(layer, unit, ids, gens, seed)
        return self.param.from_image(x), labels
