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

import math
import traceback
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from atlas.config import ComputeConfig, FacetConfig, SamplerConfig, check_sampler_models
from atlas.errors import ConfigError
from atlas.models.codes import CodeStats
from atlas.models.fusion import fold_batchnorm, folded, unfold
from atlas.models.loaded import LoadedModel
from atlas.models.probes import LayerProbe, list_layers
from atlas.models.spaces import to_uint8_images
from atlas.sampling import facets as facet_mod
from atlas.sampling.chain import TargetReadout, run_chains
from atlas.sampling.compute import ComputeSetup
from atlas.sampling.objectives import Objective, layer_values
from atlas.sampling.parametrizations import GeneratorParam, PixelParam
from atlas.sampling.priors import DaePrior, JointPrior
from atlas.sampling.real import RealImagesLike
from atlas.sampling.results import ChainResult, UnitResult
from atlas.sampling.samplers import DgnAm, PixelAscent, PpgnH, Sampler
from atlas.sampling.seeds import chain_generators, chain_seed, randn_per_chain
from atlas.sampling.steps import clip_code
from atlas.sampling.units import Unit, make_unit

Progress = Callable[[int], None]

REPEAT_NOISE = (
    0.25  # facet/real-seeded chains beyond the number of seeds: + this * std noise on the seed code
)


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
    ) -> None:
        """``facet_layer``: features clustered into facets (default: ``facets.layer``, else T's penultimate
        layer, the last 1-D layer before the output layer). ``real_batch``: batch size for the passes over
        the real-image set."""
        if target.space is None:
            raise ConfigError(f"target {target.spec!r} declares no input space")
        self.cfg, self.facet_cfg, self.device = sampler, facets, torch.device(device)
        self.setup = ComputeSetup.resolve(compute, self.device)
        if compute.threads:
            torch.set_num_threads(compute.threads)
        self.batch_size = self.setup.batch_size or 512  # 0 (CUDA autotune): start at 512, halve on OOM
        self.target, self.generator, self.dae = target, generator, dae
        for m in (target, generator, dae):  # frozen nets: BatchNorm folded into the layer before it
            if m is None:
                continue
            if compute.fold_batchnorm:
                fold_batchnorm(m.module)  # probes stay exact: probes() unfolds the layers they read
            else:
                unfold(m.module, folded(m.module))  # another Engine may have folded this shared module
        self.target_module = self.setup.prepare(target.module, compile_ok=False)
        self.gen_module = self.setup.prepare(generator.module) if generator is not None else None
        self.dae_module = self.setup.prepare(dae.module) if dae is not None else None
        extras = generator.extras if generator is not None else {}
        stats = code_stats if code_stats is not None else extras.get("code_stats")
        self.code_stats: CodeStats | None = stats.to(self.device) if isinstance(stats, CodeStats) else None
        layer = code_layer if code_layer is not None else extras.get("code_layer")
        self.code_layer: str | None = str(layer) if layer else None
        self.real = real
        self.real_batch = real_batch
        self.objective = Objective(sampler.objective)
        self.method = sampler.method
        self._check_method()
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._order: list[str] = []
        self._facet_layer = facet_layer if facet_layer is not None else facets.layer
        self._real_cache: dict[str, torch.Tensor] = {}
        self.sampler = self._make_sampler()

    # ------------------------------------------------------------------------------------- layers
    def probes(self, *name_lists: list[str]) -> list[LayerProbe]:
        """Probes on the target, one per list of layer names. Every named layer folded with its BatchNorm is
        unfolded first (all lists before any probe is built: an unfold swaps modules a probe holds)."""
        unfold(self.target_module, [n for names in name_lists for n in names])
        return [LayerProbe(self.target_module, names) for names in name_lists]

    def _probe(self, names: list[str]) -> LayerProbe:
        return self.probes(names)[0]

    def resolve_layer(self, layer: str) -> str:
        if layer == "output":
            if not self.target.output_layer:
                raise ConfigError("layer 'output': the target declares no output layer; name the layer")
            return self.target.output_layer
        return layer

    def _example(self) -> torch.Tensor:
        s = self.target.space.size  # type: ignore[union-attr]
        return torch.zeros(1, 3, s, s, device=self.device)

    def _layer_table(self) -> None:
        if not self._order:
            # one batch-1 metadata pass through the whole target (layer order for the facet layer)
            rows = list_layers(self.target_module, self.target.space.encode(self._example()))  # type: ignore
            for r in rows:
                self._shapes.setdefault(r.name, r.shape)
            self._order = [r.name for r in rows]

    def layer_shape(self, layer: str) -> tuple[int, ...]:
        name = self.resolve_layer(layer)
        if name not in self._shapes:  # one batch-1 pass that stops at the layer
            with torch.no_grad():
                out = self._probe([name])(self.target.space.encode(self._example()))
            self._shapes[name] = tuple(out[name].shape[1:])
        return self._shapes[name]

    def layer_info(self, layer: str) -> tuple[str, int, tuple[int, ...]]:
        """-> (kind "output" | "fc" | "conv", number of units, per-example output shape)."""
        name = self.resolve_layer(layer)
        shape = self.layer_shape(name)
        unit = make_unit(name, 0, shape, name == self.target.output_layer, self.cfg.spatial)
        return unit.kind, shape[0], shape

    @property
    def facet_layer(self) -> str | None:
        """``facets.layer``, else T's penultimate layer (``facets.default_facet_layer``)."""
        if not self.facet_cfg.enabled:
            return None
        if self._facet_layer is None:
            self._layer_table()
            rows = [(n, self._shapes[n]) for n in self._order]
            self._facet_layer = facet_mod.default_facet_layer(rows, self.target.output_layer)
        return self._facet_layer

    # ------------------------------------------------------------------------------------ sampler
    def _check_method(self) -> None:
        """The config's own rule (``check_sampler_models``): one source of the user-facing message."""
        s = self.cfg
        check_sampler_models(
            s.method,
            s.ppgn_h.prior,
            generator=self.generator is not None,
            dae=self.dae is not None,
            code_layer=self.code_layer,
        )

    def _bounds(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if self.code_stats is None:
            return None, None
        return self.code_stats.lower.float(), self.code_stats.upper.float()

    def _make_sampler(self) -> Sampler:
        if self.method == "pixel":
            return PixelAscent(PixelParam(self.target.space.size), self.cfg.pixel)  # type: ignore[union-attr]
        assert self.generator is not None and self.gen_module is not None
        param = GeneratorParam(self.generator, self.gen_module)
        lower, upper = self._bounds()
        if self.method == "dgn_am":
            return DgnAm(param, self.cfg.dgn_am, lower, upper)
        prior = (
            DaePrior(self.dae_module) if self.cfg.ppgn_h.prior == "dae" else JointPrior(self.code_layer or "")
        )
        shape = param.state_shape()
        return PpgnH(
            param, prior, self.cfg.ppgn_h, lower, upper, redraw=lambda gens: self._random_codes(gens, shape)
        )

    # -------------------------------------------------------------------------------- real images
    def _real_pass(self, layer: str) -> None:
        """Cache the real images' layer vectors (N, U) for ``layer`` and codes (N, *S) at the code layer."""
        if self.real is None or layer in self._real_cache:
            return
        want_codes = bool(self.code_layer) and "__codes__" not in self._real_cache
        facet = self._seed_feature_layer()
        want_facet = facet is not None and "__facet__" not in self._real_cache
        names = list(
            dict.fromkeys(
                [layer] + ([self.code_layer] if want_codes else []) + ([facet] if want_facet else [])
            )
        )
        probe = self._probe(names)  # type: ignore[arg-type]
        shape = self.layer_shape(layer)
        dummy = [make_unit(layer, 0, shape, layer == self.target.output_layer, self.cfg.spatial)]
        vals, codes, feats = [], [], []
        images = self.real.images
        with torch.no_grad(), self.setup.autocast():
            for i in range(0, images.shape[0], self.real_batch):
                x = images[i : i + self.real_batch].to(self.device).float()
                acts = probe(self.setup.to_input(self.target.space.encode(x)))  # type: ignore[union-attr]
                vals.append(layer_values(acts[layer], dummy * x.shape[0]).float())
                if want_codes:
                    codes.append(acts[self.code_layer].float().flatten(1))
                if want_facet:
                    feats.append(acts[facet].float().flatten(1))
        self._real_cache[layer] = torch.cat(vals)  # (N, U)
        if codes:
            self._real_cache["__codes__"] = torch.cat(codes)  # (N, D)
        if feats:
            self._real_cache["__facet__"] = torch.cat(feats)  # (N, F)

    def _seed_feature_layer(self) -> str | None:
        """The layer whose features facet-seeded code starts cluster (the facet layer, as the multifaceted
        paper clusters fc7); None when no generator chain needs it (then the codes are clustered)."""
        if self.cfg.start != "facet_seeded" or self.method == "pixel" or not self.facet_cfg.enabled:
            return None
        return self.facet_layer

    def real_layer_values(self, layer: str) -> torch.Tensor | None:
        """(N, U) the layer's unit values (at the units' position) on the real images; None without them."""
        name = self.resolve_layer(layer)
        self._real_pass(name)
        return self._real_cache.get(name)

    def _real_codes(self) -> torch.Tensor | None:
        return self._real_cache.get("__codes__")

    # ---------------------------------------------------------------------------------- starts
    def _random_codes(self, gens: list[torch.Generator], shape: tuple[int, ...]) -> torch.Tensor:
        return self._clip(randn_per_chain(gens, shape, self.device))  # (B, *S) ~ N(0, 1), clipped

    def _std(self, shape: tuple[int, ...]) -> torch.Tensor:
        if self.code_stats is not None:
            return self.code_stats.std.float().view(shape)
        return torch.ones(shape, device=self.device)

    def _starts(
        self, layer: str, unit: Unit, chains: list[_Chain], gens: list[torch.Generator], seed: int
    ) -> tuple[torch.Tensor, list[str]]:
        """Start states (K, *S) and labels for one unit's chains (their generators draw first)."""
        pixel = self.method == "pixel"
        shape = self.sampler.param.state_shape()
        start = self.cfg.start
        seeded_ok = layer in self._real_cache and (pixel or self._real_codes() is not None)
        if start in ("real", "facet_seeded") and not seeded_ok:
            start = "mean" if (pixel or self.code_stats is not None) else "random"
        k = len(chains)
        ids = [ch.chain for ch in chains]  # chain ids, not positions: a unit may span two batches
        if start == "random":
            if pixel:
                x = (0.5 + 0.1 * randn_per_chain(gens, shape, self.device)).clamp(0, 1)
                return x, ["random"] * k
            return self._random_codes(gens, shape), ["random"] * k
        if start == "mean":
            noise = randn_per_chain(gens, shape, self.device)
            if pixel:
                base = (
                    self.real.images.float().mean(0).to(self.device)
                    if self.real is not None  # type: ignore
                    else torch.full(shape, 0.5, device=self.device)
                )
                base = _fit(base.unsqueeze(0), shape[-1])[0]
                return (base + 0.05 * noise).clamp(0, 1), ["mean"] * k
            assert self.code_stats is not None
            h = self.code_stats.mean.float().view(shape) + self.cfg.start_noise * self._std(shape) * noise
            return self._clip(h), ["mean"] * k
        # seeded by real images: the unit's top images ("real") or k-means of their codes ("facet_seeded")
        values = self._real_cache[layer]
        pool = min(self.facet_cfg.seed_pool, values.shape[0])
        idx, _ = facet_mod.top_real(values, unit.index, pool)
        if start == "real":
            seeds_idx = idx[: self.cfg.chains_per_unit]
            labels = [f"real:{int(seeds_idx[c % len(seeds_idx)])}" for c in ids]
            if pixel:
                base = _fit(self.real.images[seeds_idx.cpu()].to(self.device).float(), shape[-1])  # type: ignore
            else:
                base = self._real_codes()[seeds_idx].view(-1, *shape)  # type: ignore[index]
        else:
            codes = self._real_codes()
            kseed = chain_seed(seed, layer, unit.index, -1)
            if pixel:  # Nguyen et al. 2016: the mean *image* of each cluster of top images
                feats = codes[idx] if codes is not None else values[idx]
                _, labels_ = facet_mod.kmeans(feats, self.facet_cfg.max_facets, kseed)
                imgs = _fit(self.real.images[idx.cpu()].to(self.device).float(), shape[-1])  # type: ignore
                base = torch.stack([imgs[labels_ == j].mean(0) for j in range(int(labels_.max()) + 1)])
                labels = [f"facet_seed:{c % base.shape[0]}" for c in ids]
            else:  # code chains: the code of each cluster's best real image (a mean code is no real code)
                facet_feats = self._real_cache.get("__facet__")
                feats = facet_feats[idx] if facet_feats is not None else codes[idx]  # type: ignore[index]
                pos, _ = facet_mod.facet_exemplars(feats, self.facet_cfg.max_facets, kseed)
                chosen = idx[pos.to(idx.device)]
                base = codes[chosen].view(-1, *shape)  # type: ignore[index]
                labels = [f"facet_seed:{c % base.shape[0]}" for c in ids]
        n = base.shape[0]
        noise = randn_per_chain(gens, shape, self.device)
        reps = torch.tensor([0.0 if c < n else 1.0 for c in ids], device=self.device).view(
            -1, *[1] * len(shape)
        )
        picked = base[torch.tensor([c % n for c in ids], device=base.device)].to(self.device)
        if pixel:
            return (picked + reps * REPEAT_NOISE * 0.2 * noise).clamp(0, 1), labels
        scale = self.cfg.start_noise + reps * REPEAT_NOISE
        return self._clip(picked + scale * self._std(shape) * noise), labels

    def _clip(self, h: torch.Tensor) -> torch.Tensor:
        return clip_code(h, *self._bounds())

    # ---------------------------------------------------------------------------------- mapping
    def map_units(
        self, layer: str, units: list[int], seed: int, progress: Progress | None = None
    ) -> list[UnitResult]:
        """Run ``sampler.chains_per_unit`` chains per unit of ``layer``; one UnitResult per unit, in order.

        ``progress(n)`` is called with the number of units finished since the previous call.
        """
        name = self.resolve_layer(layer)
        kind, n_units, shape = self.layer_info(name)
        results: list[UnitResult | None] = [None] * len(units)
        unit_objs: list[Unit | None] = []
        for pos, u in enumerate(units):
            try:
                unit_objs.append(
                    make_unit(name, int(u), shape, name == self.target.output_layer, self.cfg.spatial)
                )
            except Exception as exc:  # noqa: BLE001 - becomes a status row
                unit_objs.append(None)
                results[pos] = self._error_row(name, int(u), kind, exc)
        real_error = None
        try:
            self._real_pass(name)
        except Exception as exc:  # noqa: BLE001 - sample without real images rather than fail the layer
            real_error = exc
        todo = [
            _Chain(p, u, c, chain_seed(seed, name, u.index, c))
            for p, u in enumerate(unit_objs)
            if u is not None
            for c in range(self.cfg.chains_per_unit)
        ]
        done: dict[int, list[ChainResult]] = {}
        errors: dict[int, BaseException] = {}
        reported = sum(r is not None for r in results)
        if progress and reported:
            progress(reported)
        i = 0
        while i < len(todo):
            batch = todo[i : i + self.batch_size]
            try:
                out = self._run_batch(name, batch, seed, errors)
            except torch.cuda.OutOfMemoryError:
                if self.batch_size <= 1:
                    raise
                self.batch_size = max(1, self.batch_size // 2)
                torch.cuda.empty_cache()
                continue
            for ch, res in zip(batch, out, strict=True):
                if res is not None:
                    done.setdefault(ch.unit_pos, []).append(res)
            i += len(batch)
            finished = {ch.unit_pos for ch in batch} - ({c.unit_pos for c in todo[i:]})
            for pos in sorted(finished):
                u = unit_objs[pos]
                assert u is not None
                if pos in errors:
                    results[pos] = self._error_row(name, u.index, kind, errors[pos], u)
                else:
                    results[pos] = self._unit_row(name, u, done.get(pos, []), real_error)
            if progress and finished:
                progress(len(finished))
        return [r for r in results if r is not None]

    def _run_batch(
        self, layer: str, batch: list[_Chain], seed: int, errors: dict[int, BaseException]
    ) -> list[ChainResult | None]:
        """Run a batch; if it fails, run its units one by one: only the failing unit becomes an error row."""
        try:
            return self._run(layer, batch, seed)
        except torch.cuda.OutOfMemoryError:
            raise
        except Exception:  # noqa: BLE001 - isolate the failing unit
            if len({c.unit_pos for c in batch}) == 1:
                pos = batch[0].unit_pos
                try:
                    return self._run(layer, batch, seed)
                except Exception as exc:  # noqa: BLE001
                    errors[pos] = exc
                    return [None] * len(batch)
        out: list[ChainResult | None] = []
        for pos in dict.fromkeys(c.unit_pos for c in batch):
            part = [c for c in batch if c.unit_pos == pos]
            try:
                out.extend(self._run(layer, part, seed))
            except Exception as exc:  # noqa: BLE001
                errors[pos] = exc
                out.extend([None] * len(part))
        return out

    def _run(self, layer: str, batch: list[_Chain], seed: int) -> list[ChainResult]:
        starts, labels = [], []
        gens_all: list[torch.Generator] = []
        for pos in dict.fromkeys(c.unit_pos for c in batch):
            part = [c for c in batch if c.unit_pos == pos]
            gens = chain_generators([c.seed for c in part], self.device)
            s, lab = self._starts(layer, part[0].unit, part, gens, seed)
            starts.append(s)
            labels.extend(lab)
            gens_all.extend(gens)
        start = torch.cat(starts)  # (B, *S)
        probe_layers = [layer] + list(getattr(self.sampler.prior, "needs_layers", ()))
        final_layers = [layer] + ([self.facet_layer] if self.facet_layer else [])
        space = self.target.space
        assert space is not None
        probe, final_probe = self.probes(probe_layers, final_layers)
        readout = TargetReadout(
            encode=space.encode,
            probe=probe,
            final_probe=final_probe,
            layer=layer,
            facet_layer=self.facet_layer,
        )
        return run_chains(
            self.sampler,
            readout,
            self.objective,
            [c.unit for c in batch],
            start,
            gens_all,
            self.cfg.steps,
            self.cfg.record_every,
            self.setup,
            meta=[(c.chain, c.seed, lab) for c, lab in zip(batch, labels, strict=True)],
            stop_at=self._stop_at(layer, batch),
        )

    def _stop_at(self, layer: str, batch: list[_Chain]) -> torch.Tensor | None:
        """(B,) ``sampler.stop_at`` x each chain's unit's highest activation on the real images (inf for a
        unit no real image activates); None when chains never stop (no stop_at, no real images)."""
        if self.cfg.stop_at <= 0 or layer not in self._real_cache:
            return None
        top = self._real_cache[layer].max(0).values.float()  # (U,) natural maximum per unit
        top = torch.where(top > 0, top, torch.full_like(top, float("inf")))  # silent on real images: run
        idx = torch.tensor([c.unit.index for c in batch], device=top.device)
        return (self.cfg.stop_at * top[idx]).to(self.device)

    # ------------------------------------------------------------------------------------ rows
    def _unit_row(
        self, layer: str, unit: Unit, chains: list[ChainResult], real_error: BaseException | None
    ) -> UnitResult:
        chains = sorted(chains, key=lambda c: c.chain)
        count = 0
        if self.facet_cfg.enabled and chains and chains[0].features is not None:
            feats = torch.stack([c.features for c in chains])  # type: ignore[misc]
            valid = torch.tensor([not c.diverged for c in chains])
            labels = facet_mod.cluster_facets(
                feats, self.facet_cfg.distance, self.facet_cfg.max_facets, valid
            )
            for c, lab in zip(chains, labels, strict=True):
                c.facet = lab
            count = facet_mod.facet_count(labels)
        ok = [c for c in chains if not c.diverged] or chains
        acts = [c.best.activation for c in ok if math.isfinite(c.best.activation)]
        lps = [c.best.log_prob for c in ok if math.isfinite(c.best.log_prob)]
        row = UnitResult(
            layer=layer,
            unit=unit.index,
            kind=unit.kind,
            spatial=unit.spatial_label,
            objective=self.objective.describe(unit),
            method=self.sampler.describe(),
            facet_count=count,
            chains=chains,
            real_topk=self._real_topk(layer, unit),
            best_activation=max(acts) if acts else float("nan"),
            best_log_prob=max(lps) if lps else float("nan"),
            best_rank=min((c.best.rank for c in ok), default=-1),
        )
        if real_error is not None:
            row.error = f"real images unavailable: {type(real_error).__name__}: {real_error}"
        return row

    def _real_topk(self, layer: str, unit: Unit) -> list[tuple[int, float, object]]:
        k = self.facet_cfg.top_k_real
        if self.real is None or k <= 0 or layer not in self._real_cache:
            return []
        idx, vals = facet_mod.top_real(self._real_cache[layer], unit.index, k)
        imgs = to_uint8_images(self.real.images[idx.cpu()]).numpy()
        return [
            (int(i), float(v), imgs[j])
            for j, (i, v) in enumerate(zip(idx.tolist(), vals.tolist(), strict=True))
        ]

    def _error_row(
        self, layer: str, index: int, kind: str, exc: BaseException, unit: Unit | None = None
    ) -> UnitResult:
        where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        loc = f" at {where.filename.rsplit('/', 1)[-1]}:{where.lineno}" if where else ""
        return UnitResult(
            layer=layer,
            unit=index,
            kind=kind,
            spatial=unit.spatial_label if unit else None,
            objective=self.objective.describe(unit) if unit else f"{self.objective.kind}[{layer}:{index}]",
            method=self.sampler.describe(),
            facet_count=0,
            status="error",
            error=f"{type(exc).__name__}: {exc}{loc}",
        )


def _fit(images: torch.Tensor, size: int) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 3, size, size) bilinear (pixel starts from real images of another size)."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
