"""The sampling engine: many units of one layer, K chains each, batched across units.

Usage::

    engine = Engine(target, generator, dae, cfg.sampler, cfg.facets, cfg.compute, torch.device("cpu"),
                    real=real_images)                      # code_stats / code_layer default to G's extras
    engine.layer_info("fc8")                               # -> ("output", 10, (10,))
    results = engine.map_units("fc8", [0, 1, 2], seed=0)   # -> list[UnitResult], one per unit, in order

A batch of ``compute.batch_size`` chains (of any units of the layer) shares one forward/backward pass. Each
chain's start and noise come from its own generator seeded by ``chain_seed(seed, layer, unit, chain)``. A
failure on one unit becomes a ``status="error"`` UnitResult, never an exception out of ``map_units``.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from torch import nn

from atlas.config import ComputeConfig, FacetConfig, SamplerConfig, check_sampler_models
from atlas.errors import ConfigError
from atlas.models.codes import CodeStats
from atlas.models.loaded import LoadedModel, generators_own_layer
from atlas.models.probes import resolve_modules
from atlas.sampling import facets as facet_mod
from atlas.sampling.batches import run_batches
from atlas.sampling.chain import TargetReadout, run_chains
from atlas.sampling.compose import compose_pair
from atlas.sampling.compute import ComputeSetup
from atlas.sampling.concepts import choose_path_layers
from atlas.sampling.ensemble import TargetEnsemble, check_member_shapes, ensemble_output_layer
from atlas.sampling.manifold import encode_code
from atlas.sampling.nets import EngineNets
from atlas.sampling.objectives import Composite, Objective
from atlas.sampling.parametrizations import GeneratorParam, PixelParam
from atlas.sampling.peers import PEER_METHODS, SEARCH_METHODS, PeerSetup
from atlas.sampling.priors import DaePrior, JointPrior
from atlas.sampling.real import RealImagesLike
from atlas.sampling.real_features import RealFeatures
from atlas.sampling.relu_redirect import redirected_relus
from atlas.sampling.results import ChainResult, UnitResult
from atlas.sampling.samplers import DgnAm, PixelAscent, PpgnH, Sampler
from atlas.sampling.search import Searcher, run_search
from atlas.sampling.seeds import chain_generators, chain_seed
from atlas.sampling.start_pool import best_of_pool, pooled
from atlas.sampling.starts import StartStates, random_code_start
from atlas.sampling.steps import clip_code
from atlas.sampling.unit_rows import UnitRows
from atlas.sampling.units import Unit, layer_kind, make_unit

Progress = Callable[[int], None]


@dataclass
class _Chain:
    unit_pos: int  # position in the map_units call
    unit: Unit
    chain: int
    seed: int


class Engine:
    def __init__(
        self,
        target: LoadedModel,
        generator: LoadedModel | None,
        dae: LoadedModel | None,
        sampler: SamplerConfig,
        facets: FacetConfig,
        compute: ComputeConfig,
        device: torch.device,
        code_stats: CodeStats | None = None,
        code_layer: str | None = None,
        real: RealImagesLike | None = None,
        facet_layer: str | None = None,
        real_batch: int = 256,
        truth: bool = True,
        encoder: LoadedModel | None = None,
        ensemble: Sequence[LoadedModel] = (),
    ) -> None:
        """``facet_layer``: features clustered into facets (default: ``facets.layer``, else T's penultimate
        layer, the last 1-D layer before the output layer). ``real_batch``: batch size for the passes over
        the real-image set (at most ``compute.batch_size``, which a network that takes only small batches
        is given). ``truth``: label units and score pictures (docs/truth.md; needs ``real``).
        ``encoder``: the network G inverts when it is not the target (``models.encoder``): ``code_layer``
        is then its layer, read by a pass of its own. ``ensemble``: more targets with T's output classes
        (``models.ensemble``), whose objective joins T's for output units (``ensemble.py``). The caller's
        modules are never changed (the engine folds its own copies)."""
        self.cfg, self.facet_cfg, self.truth = sampler, facets, truth
        self.setup = ComputeSetup.resolve(compute, torch.device(device))
        self.device = self.setup.device
        self.batch_size = self.setup.first_batch  # 0 (CUDA autotune): start at 512, halve on OOM
        fold = compute.fold_batchnorm
        self.nets = EngineNets(target, generator, dae, self.setup, fold=fold, encoder=encoder)
        self.target, self.generator, self.dae = target, generator, dae
        if ensemble:
            check_member_shapes(ensemble, self.nets.layer_shape(ensemble_output_layer(target)))
        self.ensemble = TargetEnsemble(ensemble, self.setup, fold) if ensemble else None
        extras = generator.extras if generator is not None else {}
        stats = code_stats if code_stats is not None else extras.get("code_stats")
        self.code_stats: CodeStats | None = stats.to(self.device) if isinstance(stats, CodeStats) else None
        # G's own layer only where the network that reads codes has it (a user's target with the toy G:
        # no code layer, as the pre-flight found, not T's relu6 looked up in it)
        layer = code_layer if code_layer is not None else generators_own_layer(generator, encoder or target)
        self.code_layer: str | None = str(layer) if layer else None
        # where the code is read: the target's own pass (key = the layer), or a separate encoder's pass,
        # whose activations join the target's under a key no target layer has
        separate = encoder is not None and self.code_layer is not None
        self.code_reader = self.nets.code_reader(self.code_layer) if separate else None  # type: ignore[arg-type]
        self.code_key: str | None = f"encoder:{self.code_layer}" if separate else self.code_layer
        encoder = extras.get("code_encoder")  # a subspace generator's: code layer -> its code
        self.code_encoder: nn.Module | None = (
            copy.deepcopy(encoder).to(self.device).eval() if isinstance(encoder, nn.Module) else None
        )
        condition = sampler.ppgn_h.condition if sampler.method == "ppgn_h" else "exact"
        self.objective = Objective(sampler.objective, gradient=condition)
        self.method = sampler.method
        check_sampler_models(  # the config's own rule: one source of the user-facing message
            sampler.method,
            sampler.ppgn_h.prior,
            generator=generator is not None,
            dae=dae is not None,
            code_layer=self.code_layer,
        )
        self._facet_layer = facet_layer if facet_layer is not None else facets.layer
        self.real = (
            RealFeatures(
                real,
                self.nets,
                self.setup,
                self.code_key,
                sampler.spatial,
                min(real_batch, self.setup.first_batch),
                truth,
                self.code_encoder,
                self.code_reader,
            )
            if real is not None
            else None
        )
        self.sampler = self._make_sampler()
        shape = self.sampler.param.state_shape()
        self._composed: dict[int, torch.Tensor] = {}  # map_units' pair composites' start codes (pair_start)
        self.starts = StartStates(
            sampler, facets, shape, self.method == "pixel", self._clip, self.code_stats, self.real
        )
        if self.method in PEER_METHODS:  # Fourier / MACO / accentuation / GA / CMA-ES (atlas.sampling.peers)
            self.starts = self._peer().starts(self.sampler, self.starts)  # type: ignore[assignment]

    # ------------------------------------------------------------------------------------- layers
    def layer_info(self, layer: str, kind: str = "auto") -> tuple[str, int, tuple[int, ...]]:
        """-> (kind "output" | "fc" | "conv", number of units, per-example output shape)."""
        name = self.nets.resolve_layer(layer)
        shape = self.nets.layer_shape(name)
        return layer_kind(name, shape, self.target.output_layer, kind), shape[0], shape

    @property
    def facet_layer(self) -> str | None:
        """``facets.layer``, else T's penultimate layer (``facets.default_facet_layer``)."""
        if not self.facet_cfg.enabled:
            return None
        if self._facet_layer is None:
            self._facet_layer = facet_mod.default_facet_layer(
                self.nets.layer_order(),
                self.target.output_layer,
                # a folded BatchNorm's Identity is no pass-through layer of the network (preflight's view)
                facet_mod.pass_through_layers(self.nets.target_module) - self.nets.folding.folded_norms,
            )
        return self._facet_layer

    # ------------------------------------------------------------------------------------ sampler
    def _bounds(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if self.code_stats is None:
            return None, None
        return self.code_stats.lower.float(), self.code_stats.upper.float()

    def _clip(self, h: torch.Tensor) -> torch.Tensor:
        return clip_code(h, *self._bounds())

    def _peer(self) -> PeerSetup:
        return PeerSetup(
            self.cfg,
            self.facet_cfg,
            self.nets,
            self.setup,
            self.real,
            self.code_stats,
            self._bounds(),
            self.batch_size,
        )

    def _make_sampler(self) -> Sampler | Searcher:
        if self.method == "pixel":
            return PixelAscent(PixelParam(self.nets.space.size), self.cfg.pixel)
        if self.method in PEER_METHODS:
            return self._peer().sampler(self.generator)
        assert self.generator is not None and self.nets.gen_module is not None
        param = GeneratorParam(self.generator, self.nets.gen_module)
        if self.method == "dgn_am":
            return DgnAm(param, self.cfg.dgn_am, *self._bounds())
        dae = self.cfg.ppgn_h.prior == "dae"
        prior = DaePrior(self.nets.dae_module) if dae else JointPrior(self.code_key or "", self.code_encoder)
        redraw = partial(random_code_start, shape=param.state_shape(), clip=self._clip)  # PPGN resets
        return PpgnH(param, prior, self.cfg.ppgn_h, *self._bounds(), redraw=redraw)

    # -------------------------------------------------------------------------------- real images
    def _load_real(self, layer: str) -> None:
        if self.real is None:
            return
        seeds_from_facets = self.cfg.start == "facet_seeded"  # seeds clustered by facet features
        self.real.load(layer, self.facet_layer if seeds_from_facets else None, self.path_layers(layer))

    @property
    def manifold_scored(self) -> bool:
        """Pictures get an on-manifold score: real images (with their codes), a generator, a code layer."""
        return (
            self.truth
            and self.real is not None
            and self.nets.gen_module is not None
            and bool(self.code_layer)
        )

    def path_layers(self, layer: str) -> list[str]:
        """Earlier layers whose patterns test a picture's processing path (only with real images)."""
        if self.real is None or not self.truth:
            return []
        return choose_path_layers(self.nets.layers_up_to(layer), layer)

    def real_layer_values(self, layer: str) -> torch.Tensor | None:
        """(N, U) the layer's unit values (at the units' position) on the real images; None without them."""
        name = self.nets.resolve_layer(layer)
        self._load_real(name)
        return self.real.values(name) if self.real is not None else None

    # ---------------------------------------------------------------------------------- mapping
    def map_units(
        self,
        layer: str,
        units: list[int],
        seed: int,
        progress: Progress | None = None,
        kind: str = "auto",
        composites: tuple[Composite, ...] = (),
    ) -> list[UnitResult]:
        """Run ``sampler.chains_per_unit`` chains per unit of ``layer``; one UnitResult per unit, in order.

        ``composites``: the layer's composite objectives (``objectives.parse_composite``), units U, U+1, ...
        after its own U units. ``progress(n)`` is called with the number of units finished since the
        previous call.
        """
        name = self.nets.resolve_layer(layer)
        kind, n, shape = self.layer_info(name, kind)
        objective = Objective(self.objective.kind, tuple(composites), n, self.objective.gradient)
        rows = UnitRows(self, name, kind, objective)
        unit_objs: list[Unit | None] = []
        for pos, u in enumerate(units):
            try:
                unit_objs.append(self._unit(name, int(u), shape, kind, objective))
            except Exception as exc:  # noqa: BLE001 - becomes a status row
                unit_objs.append(None)
                rows.fail(pos, int(u), exc)
        composed, singles = (  # a pair composite's start codes: its units' own pictures (their own run,
            # before this one sets the real images' composites), composed
            self._composed_starts(name, units, objective, seed, kind)
            if self.cfg.pair_start == "composed"
            else ({}, {})
        )
        for pos, u in enumerate(unit_objs):  # a pair's unit that this call maps too: its run above, not again
            if u is not None and u.index in singles and objective.composite(u.index) is None:
                rows.done[pos] = singles[u.index]
        try:
            self._load_real(name)
            if self.real is not None:
                weights = objective.weights(torch.device("cpu")) if composites else None
                self.real.set_composites(name, weights, objective.kind)
        except Exception as exc:  # noqa: BLE001 - sample without real images rather than fail the layer
            rows.real_error = exc
        todo = [
            _Chain(p, u, c, chain_seed(seed, name, u.index, c))
            for p, u in enumerate(unit_objs)
            if u is not None and p not in rows.done
            for c in range(self.cfg.chains_per_unit)
        ]
        if progress and rows.done:
            progress(len(rows.done))
        run = partial(self._run, name, seed=seed, objective=objective)
        granule = self.cfg.chains_per_unit if self.cfg.diversity else 1  # diversity: a unit's chains together
        size = max(granule, self.batch_size // granule * granule)
        self._composed = composed
        try:
            with self.setup.kernels():
                self.batch_size = run_batches(todo, size, run, rows, progress, granule)
        finally:
            self._composed = {}
        return rows.in_order(len(units))

    def _composed_starts(
        self, layer: str, units: list[int], objective: Objective, seed: int, kind: str
    ) -> tuple[dict[int, torch.Tensor], dict[int, UnitResult]]:
        """(K, 2K, *S) candidate start codes of the pair composites among ``units`` (two terms of positive
        weight), by composite: each of its units synthesized alone first (the run's own seeds and start),
        chain k's candidates are the last picture of unit a's chain k beside each of unit b's K chains' last
        pictures, a on the left (the first K) and on the right (:func:`compose_pair`), read back into G's code
        as real images are; the chain starts from the one its objective rates best (:meth:`_run`). A pair
        whose unit failed starts as the others do. -> (those codes, the single units' results by unit)."""
        pairs = {}
        for u in units:
            comp = objective.composite(int(u))
            if comp is not None and comp.is_pair:
                pairs[int(u)] = (comp.terms[0][0], comp.terms[1][0])
        if not pairs:
            return {}, {}
        singles = sorted({unit for pair in pairs.values() for unit in pair})
        results = {r.unit: r for r in self.map_units(layer, singles, seed, kind=kind)}
        done = {unit: r for unit, r in results.items() if r.status == "ok"}
        out = {}
        for u, (a, b) in pairs.items():
            if a not in done or b not in done:
                continue
            last = {unit: {c.chain: c.last.image for c in done[unit].chains} for unit in (a, b)}
            k_chains = range(self.cfg.chains_per_unit)
            pictures = [  # chain k's 2K candidates, in order
                compose_pair(last[a][k], last[b][j]) if left else compose_pair(last[b][j], last[a][k])
                for k in k_chains
                for left in (True, False)
                for j in k_chains
            ]
            step = max(1, self.batch_size)  # K * 2K pictures (512 at K = 16): read a batch at a time
            chunks = [pictures[i : i + step] for i in range(0, len(pictures), step)]
            codes = torch.cat([self._codes_of(np.stack(chunk)) for chunk in chunks])  # (K * 2K, *S)
            out[u] = codes.view(len(k_chains), 2 * len(k_chains), *codes.shape[1:])
        return out, results

    @torch.no_grad()
    def _codes_of(self, pictures: np.ndarray) -> torch.Tensor:
        """(N, *S) G's codes of uint8 pictures (N, H, W, 3): the code layer's activations (the encoder's,
        ``models.encoder``, else the target's) through the generator's code encoder, clipped."""
        if not self.code_layer or not isinstance(self.starts, StartStates):
            raise ConfigError(
                "sampler.pair_start: composed reads pictures back into G's code and this run has no code "
                "layer (set models.code_layer)"
            )
        x = torch.from_numpy(pictures).permute(0, 3, 1, 2).float().div(255).to(self.device)  # (N, 3, H, W)
        # in float32 whatever the chains' precision, as real images are read (a start, not a step)
        if self.code_reader is not None:
            held = self.code_reader(x)
        else:
            probe = self.nets.probes([self.code_layer])[0]
            held = probe(self.setup.to_input(self.nets.space.encode(x)))[self.code_layer]
        codes = encode_code(held, self.code_encoder)  # (N, D)
        return self.starts.clip(codes.view(codes.shape[0], *self.starts.shape))

    def _unit(self, layer: str, index: int, shape: tuple[int, ...], kind: str, objective: Objective) -> Unit:
        """The unit ``index`` of the layer, or the composite objective numbered ``index`` (read where its
        first term's unit is read)."""
        comp = objective.composite(index)
        if comp is None:
            return make_unit(layer, index, shape, kind == "output", self.cfg.spatial)
        first = make_unit(layer, comp.terms[0][0], shape, kind == "output", self.cfg.spatial)
        return dataclasses.replace(first, index=index)

    def _run(self, layer: str, batch: list[_Chain], seed: int, objective: Objective) -> list[ChainResult]:
        """One forward/backward pass per step for the whole batch (its units' start states first)."""
        starts, labels, pools = [], [], []
        gens_all: list[torch.Generator] = []
        code_starts = isinstance(self.starts, StartStates)  # peer methods' own starts have no pool
        for pos in dict.fromkeys(c.unit_pos for c in batch):
            part = [c for c in batch if c.unit_pos == pos]
            gens = chain_generators([c.seed for c in part], self.device)
            s, lab = self.starts.for_unit(layer, part[0].unit, [c.chain for c in part], gens, seed)
            composed = self._composed.get(part[0].unit.index)
            pool = self.starts.pool(layer, [c.chain for c in part], gens) if code_starts else None
            if composed is not None:  # sampler.pair_start: composed (its draws made all the same)
                pool = composed[[c.chain for c in part]].transpose(0, 1)  # (2K, k, *S) its composites
                s, lab = pool[0], ["composed"] * len(part)
            starts.append(s)
            pools.append(pool)
            labels.extend(f"{x}:pool{len(pool)}" if pool is not None else x for x in lab)
            gens_all.extend(gens)
        diversity = self._diversity_layer(layer)
        paths = self.path_layers(layer)
        code = [self.code_key] if self.manifold_scored else []
        probe, final_probe = self.nets.probes(*self._probe_lists(layer))
        readout = TargetReadout(
            self.nets.space.encode, probe, final_probe, layer, self.facet_layer, tuple(paths), *code[:1]
        )
        readout.code_encoder = self.code_encoder
        readout.ensemble = self.ensemble_for(layer)
        if self.code_reader is not None:  # a separate encoder reads the code (models.encoder)
            readout.code_reader, readout.code_key = self.code_reader, self.code_key
            readout.code_every_step = self.reads_code_every_step
        readout.seen = self.nets.space.seen  # a gray target's pictures are kept as the luminance it reads
        if diversity:
            readout.diversity_layer, readout.diversity = diversity[0], self.cfg.diversity
        start = torch.cat(starts)  # (B, *S)
        if any(p is not None for p in pools):  # those chains from the best of their pool, the rest as drawn
            offsets = [0, *itertools.accumulate(len(s) for s in starts)]
            spans = zip(pools, offsets[:-1], offsets[1:], strict=True)
            rows = [r for p, lo, hi in spans if p is not None for r in range(lo, hi)]
            candidates = torch.cat(pooled([p for p in pools if p is not None]), dim=1)  # (P, R, *S)
            units = [batch[r].unit for r in rows]
            start[rows] = best_of_pool(self.sampler.param, readout, objective, units, candidates, self.setup)
        loop = run_search if isinstance(self.sampler, Searcher) else run_chains  # population / gradient loop
        redirect = (  # the unit layer's own ReLUs (relu_redirect.py)
            redirected_relus(resolve_modules(self.nets.target_module, [layer])[layer])
            if self.cfg.relu_gradient == "redirected"
            else contextlib.nullcontext()
        )
        with redirect:
            return loop(
                self.sampler,  # type: ignore[arg-type]
                readout,
                objective,
                [c.unit for c in batch],
                start,
                gens_all,
                self.cfg.steps,
                self.cfg.record_every,
                self.setup,
                meta=[(c.chain, c.seed, lab) for c, lab in zip(batch, labels, strict=True)],
                stop_at=self._stop_at(layer, batch),
            )

    @property
    def reads_code_every_step(self) -> bool:
        """The prior reads the code layer through a separate encoder at every step (PPGN-h's joint prior
        with ``models.encoder``)."""
        needs = getattr(self.sampler.prior, "needs_layers", ())
        return self.code_reader is not None and self.code_key in needs

    def _probe_lists(self, layer: str) -> tuple[list[str], list[str]]:
        """(layers read at every step, layers read on the last pictures) of a batch of ``layer``'s chains."""
        prior = list(getattr(self.sampler.prior, "needs_layers", ()))
        steps = [layer, *prior, *self._diversity_layer(layer)]
        code = [self.code_key] if self.manifold_scored else []
        final = [layer, *([self.facet_layer] if self.facet_layer else []), *self.path_layers(layer), *code]
        own = [self.code_key] if self.code_reader is not None else []  # the encoder's, not the target's
        steps, final = [n for n in dict.fromkeys(steps) if n not in own], list(dict.fromkeys(final))
        return steps, [n for n in final if n not in own]

    def layers_read(self, layer: str) -> list[str]:
        """Every target layer that mapping ``layer`` reads: the chains' probes and the pass over the real
        images (codes, facet features, path patterns)."""
        name = self.nets.resolve_layer(layer)
        steps, final = self._probe_lists(name)
        in_target = self.code_layer and self.real is not None and self.code_reader is None
        real = [self.code_layer] if in_target else []
        return list(dict.fromkeys([*steps, *final, *real]))

    def prepare(self, layers: Iterable[str]) -> None:
        """Unfold, before any chain runs, the BatchNorm folds of every layer that mapping ``layers`` reads.

        A probe on a folded layer unfolds it for good (``EngineNets.probes``), and a folded conv + BN
        computes the same function in other float bits (~1e-6) than the unfolded pair: a process that met
        the layers in another order (a conv layer's shard before an fc layer's, or none) then computed the
        other layers' pictures from other bits, which PPGN-h's chains amplify. Prepared with the run's
        layers, every process computes in the same modules whatever order its shards come in."""
        self.nets.probes([name for layer in layers for name in self.layers_read(layer)])

    def ensemble_for(self, layer: str) -> TargetEnsemble | None:
        """The ensemble, for chains of T's output layer; None elsewhere (hidden units of networks trained
        apart are unrelated) and without one."""
        return self.ensemble if self.ensemble is not None and layer == self.target.output_layer else None

    def method_text(self, layer: str | None = None) -> str:
        """``units.method``: the sampler with its settings, the diversity term where it acts
        (``dgn_am[diversity=30]``; a trial could not tell diversity runs apart in SQL), and the number of
        networks whose objective ``layer``'s chains climbed where an ensemble joins T (``ensemble=5``)."""
        text = self.sampler.describe()
        marks = []
        if self.cfg.diversity and self.cfg.method not in SEARCH_METHODS:  # GA and CMA-ES ignore it
            marks.append(f"diversity={self.cfg.diversity:g}")
        ensemble = self.ensemble_for(layer) if layer is not None else None
        if ensemble is not None:
            marks.append(f"ensemble={len(ensemble) + 1}")
        if not marks:
            return text
        mark = ",".join(marks)
        return f"{text[:-1]},{mark}]" if text.endswith("]") else f"{text}[{mark}]"

    def _diversity_layer(self, layer: str) -> list[str]:
        """[the layer the diversity term compares] (``sampler.diversity_layer``, else the earliest path
        layer before ``layer``, else ``layer`` itself); [] when the term is off."""
        if not self.cfg.diversity:
            return []
        if self.cfg.diversity_layer:
            return [self.nets.resolve_layer(self.cfg.diversity_layer)]
        before = choose_path_layers(self.nets.layers_up_to(layer), layer)
        return [before[0] if before else layer]

    def _stop_at(self, layer: str, batch: list[_Chain]) -> torch.Tensor | None:
        """(B,) ``sampler.stop_at`` x each chain's unit's natural maximum; None when chains never stop."""
        if self.cfg.stop_at <= 0 or self.real is None or self.real.values(layer) is None:
            return None
        top = self.real.natural_maximum(layer, [c.unit.index for c in batch])
        return (self.cfg.stop_at * top).to(self.device)
