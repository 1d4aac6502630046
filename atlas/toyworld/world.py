"""A toy world on disk: load each component from the cache, training what is missing (and what depends on it).

Usage::

    world = ToyWorld("micro", cache_dir="/tmp/cache")
    t = world.module("target")          # TargetNet, trained on demand
    world.loaded("generator")           # LoadedModel for the registry

Loading order of a component: the cache (``cache_dir``, else $ATLAS_CACHE, else ~/.cache/atlas), else the
weights shipped with atlas for the preset's config hash (``shipped.py``), else training (with a message).
``world.sources`` says where each loaded component came from: "cache", "shipped" or "trained".

Dependencies: the generator and the DAE are trained on codes of one particular T; each records T's
fingerprint, and a component whose T has changed is stale and retrained (with a message). The attribute
reader depends only on the world's images; its file records ``reader_hash`` (presets.py), and a reader
trained with other settings is stale the same way.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from atlas.errors import AtlasError, did_you_mean
from atlas.models.codes import CodeStats
from atlas.models.loaded import LoadedModel, freeze
from atlas.models.subspace import CodeSubspace, SubspaceGenerator
from atlas.toyworld.cache import corrupt, load_component_file, save_component, world_dir
from atlas.toyworld.dataset import ToyData, render_split
from atlas.toyworld.loops import (
    generator_space,
    judge_space,
    reader_space,
    state_fingerprint,
    target_space,
    threads,
)
from atlas.toyworld.nets import READER_HEADS, CodeDAE, Generator, JudgeNet, SpatialGenerator, TargetNet
from atlas.toyworld.presets import (
    MEMBERS,
    ToyWorldConfig,
    config_hash,
    get_preset,
    member_seed,
    reader_hash,
)
from atlas.toyworld.shapes import CLASS_NAMES, FINE_NAMES, FINE_TO_CLASS, MULTIFACETED
from atlas.toyworld.shipped import load_shipped_file, shipped_dir

COMPONENTS = ("target", "judge", "generator", "dae")  # the world's core, keyed by config_hash
READER = "reader"  # the attribute reader (issue 16), keyed by reader_hash; optional in old caches
ALL_COMPONENTS = (*COMPONENTS, READER)
LOADABLE = (*ALL_COMPONENTS, *MEMBERS)  # and the ensemble members, each trained on demand on its own


def check_component(name: str) -> None:
    """An AtlasError for a name that is no loadable toy-world component (with the one meant, if close)."""
    if name not in LOADABLE:
        raise AtlasError(
            f"unknown toy-world component {name!r}{did_you_mean(name, LOADABLE)}; "
            f"valid: {', '.join(LOADABLE)}"
        )


class NotTrained(AtlasError):
    """A toy-world network a load that may not train finds neither cached (current) nor shipped."""


class ToyWorld:
    def __init__(
        self,
        preset: str = "default",
        cache_dir: str | os.PathLike[str] | None = None,
        log: Callable[[str], None] = print,
    ) -> None:
        self.cfg: ToyWorldConfig = get_preset(preset)
        self.cache_dir = cache_dir
        self.dir = world_dir(self.cfg, cache_dir)
        self.hash = config_hash(self.cfg)
        self.log = log
        self.seconds: dict[str, float] = {}  # time spent training in this process, per stage
        self.cpu_seconds: dict[str, float] = {}  # CPU time (all threads) of the same stages
        self.sources: dict[str, str] = {}  # component -> "cache" | "shipped" | "trained"
        self._modules: dict[str, nn.Module] = {}
        self._payloads: dict[str, dict[str, Any]] = {}
        self._files: dict[str, Path] = {}  # component -> the file it was loaded from (or saved to)

    # ------------------------------------------------------------------------------------------- data
    def data(self, split: str) -> ToyData:
        t0, c0 = time.perf_counter(), time.process_time()
        d = render_split(self.cfg.data, split)
        key = f"data_{split}"
        self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - t0
        self.cpu_seconds[key] = self.cpu_seconds.get(key, 0.0) + time.process_time() - c0
        return d

    # ------------------------------------------------------------------------------------- components
    def path(self, name: str):
        return self.dir / f"{name}.pt"

    def _build(self, name: str, payload: dict[str, Any] | None = None) -> nn.Module:
        c, size = self.cfg, self.cfg.data.size
        if name == "target" or name in MEMBERS:
            return TargetNet(c.target.widths, c.target.fc, len(CLASS_NAMES), size, c.target.pools)
        if name == "judge":
            return JudgeNet(c.judge.widths, len(FINE_NAMES))
        if name == "decoder" or (name == "generator" and not self.spatial):
            return Generator(c.target.fc, c.generator.width, size, c.target.pools)
        if name == "generator":  # spatial: a conv4 G driven by the map's subspace coefficients
            g = SpatialGenerator(c.target.widths[3], c.generator.width, c.target.pools)
            return SubspaceGenerator(CodeSubspace(self.map_shape, c.generator.subspace), g)
        if name == "dae":
            return CodeDAE(math.prod(self.code_shape), c.dae.hidden, c.dae.blocks)
        if name == READER:
            from atlas.toyworld.train_reader import build_reader

            return build_reader(c)
        raise AssertionError(name)

    def _restore(
        self,
        name: str,
        blob: dict[str, Any],
        key: str = "state_dict",
        path: Path | None = None,
        shipped: bool = False,
    ) -> nn.Module:
        module = self._build("decoder" if key == "decoder_state_dict" else name)
        fp_key = "decoder_fingerprint" if key == "decoder_state_dict" else "fingerprint"
        path = path or self.path(name)
        try:
            module.load_state_dict(blob[key], strict=True)
        except (RuntimeError, KeyError, TypeError) as exc:
            reason = f"state dict does not fit: {str(exc).splitlines()[0][:120]}"
            raise corrupt(path, reason, self.cfg.name, shipped) from None
        if state_fingerprint(module) != blob.get(fp_key):
            raise corrupt(path, "weights do not match their recorded fingerprint", self.cfg.name, shipped)
        return module.eval()

    def _stale(self, name: str, blob: dict[str, Any], train_if_missing: bool) -> str | None:
        """Why a loaded component must be retrained (None: it is current)."""
        if name in ("generator", "dae"):
            target_fp = self.fingerprint("target", train_if_missing=train_if_missing)
            if blob["meta"].get("target_fingerprint") != target_fp:
                return "was trained on another target"
        if name == "dae" and self.spatial:  # its codes are G's subspace coefficients
            gen_fp = self.fingerprint("generator", train_if_missing=train_if_missing)
            if blob["meta"].get("generator_fingerprint") != gen_fp:
                return "was trained on another generator's codes"
        if name == READER and blob.get("reader_hash") != reader_hash(self.cfg):
            return "was trained with other reader settings"
        return None

    def fingerprint(self, name: str, *, train_if_missing: bool = True) -> str:
        self.module(name, train_if_missing=train_if_missing)
        return str(self._payloads[name]["fingerprint"])

    def module(self, name: str, *, train_if_missing: bool = True, retrain: bool = False) -> nn.Module:
        """The component's module (eval mode, trainable parameters), from memory, the cache or training."""
        check_component(name)
        if name in self._modules and not retrain:
            return self._modules[name]
        blob, path, shipped = None, self.path(name), False
        if not retrain:  # the cache first, then the weights shipped with atlas
            blob = load_component_file(path, self.cfg, name)
            found = load_shipped_file(self.cfg, name) if blob is None else None
            if found is not None:
                (path, blob), shipped = found, True
        if blob is not None:
            module = self._restore(name, blob, path=path, shipped=shipped)
            self._modules[name], self._payloads[name], self._files[name] = module, blob, path
            stale = self._stale(name, blob, train_if_missing)
            if stale is None:
                self.sources[name] = "shipped" if shipped else "cache"
                return module
            del self._modules[name], self._payloads[name], self._files[name]
            if not train_if_missing:
                raise NotTrained(
                    f"toy-world {name} in {str(path.parent)!r} {stale}; "
                    f"run `atlas bootstrap --preset {self.cfg.name}`"
                )
            self.log(f"toyworld[{self.cfg.name}]: {name} ({path}) {stale}; retraining")
        elif not train_if_missing:
            raise NotTrained(
                f"toy-world {name} is not trained yet ({str(self.path(name))!r} missing, and atlas ships "
                f"no weights for config {self.hash}); run `atlas bootstrap --preset {self.cfg.name}`"
            )
        elif retrain:
            self.log(f"toyworld[{self.cfg.name}]: {name} retraining (cache {self.dir})")
        else:
            self.log(
                f"toyworld[{self.cfg.name}]: {name} not in the cache and no shipped weights for config "
                f"{self.hash} ({shipped_dir(self.cfg).name}); training (cache {self.dir})"
            )
        t0, c0 = time.perf_counter(), time.process_time()
        module, payload = self._train(name)
        seconds = time.perf_counter() - t0
        self.seconds[name] = seconds
        self.cpu_seconds[name] = time.process_time() - c0
        payload["meta"]["train_seconds"] = seconds
        payload["meta"]["train_cpu_seconds"] = self.cpu_seconds[name]
        payload["meta"]["torch"] = str(torch.__version__)
        save_component(self.path(name), self.cfg, name, payload)
        self.log(f"toyworld[{self.cfg.name}]: {name} trained in {seconds:.0f} s -> {self.path(name)}")
        self._modules[name], self._payloads[name], self._files[name] = module, payload, self.path(name)
        self.sources[name] = "trained"
        return module

    def decoder(self) -> Generator:
        """T's decoder from relu6 (G starts from it); the shipped target leaves it out."""
        self.module("target")
        if "decoder_state_dict" not in self._payloads["target"]:
            raise AtlasError(
                f"training the toy-world generator needs T's decoder, which {str(self._files['target'])!r} "
                f"leaves out (shipped weights); run `atlas bootstrap --preset {self.cfg.name} --retrain` "
                "to train the whole world into the cache"
            )
        shipped = self.sources.get("target") == "shipped"
        return self._restore(
            "target", self._payloads["target"], "decoder_state_dict", self._files["target"], shipped
        )

    @property
    def spatial(self) -> bool:
        """G draws from T's conv4 map (``generator.code_layer: conv4``), not from the fc6 code."""
        return self.cfg.generator.code_layer == "conv4"

    @property
    def map_shape(self) -> tuple[int, int, int]:
        """(C4, h, w) of T's conv4 map."""
        side = self.cfg.data.size // 2**self.cfg.target.pools
        return (self.cfg.target.widths[3], side, side)

    @property
    def code_shape(self) -> tuple[int, ...]:
        """G's code: (fc,) for fc6, (k,) for the conv4 subspace."""
        return (self.cfg.generator.subspace,) if self.spatial else (self.cfg.target.fc,)

    def codes(self, split: str) -> torch.Tensor:
        """(N, *code_shape) G's codes of the split's images under the current T (and G's subspace)."""
        return self._codes(split, self.module("generator") if self.spatial else None)

    def _codes(self, split: str, generator: nn.Module | None) -> torch.Tensor:
        from atlas.toyworld.train_generator import codes_of, maps_of

        images, size = self.data(split).images, self.cfg.data.size
        if not self.spatial:
            return codes_of(self.module("target"), images, size)  # (N, fc)
        maps = maps_of(self.module("target"), images, size)  # (N, C4, h, w)
        assert isinstance(generator, SubspaceGenerator)
        with torch.no_grad():
            return generator.subspace.encode(maps)  # (N, k)

    def _train(self, name: str) -> tuple[nn.Module, dict[str, Any]]:
        if name in MEMBERS:  # T again with another seed; its decoder is left out (no G is trained on it)
            from atlas.toyworld.train_target import train_target

            seed = member_seed(self.cfg, name)
            cfg = dataclasses.replace(self.cfg, target=dataclasses.replace(self.cfg.target, seed=seed))
            net, _ = train_target(cfg, self.data("train"), self.log)
            meta = {"preset": self.cfg.name, "seed": seed}
            return net, {"state_dict": net.state_dict(), "fingerprint": state_fingerprint(net), "meta": meta}
        meta: dict[str, Any] = {"preset": self.cfg.name, "seed": getattr(self.cfg, name).seed}
        if name == "target":
            from atlas.toyworld.train_target import train_target

            net, dec = train_target(self.cfg, self.data("train"), self.log)
            return net, {
                "state_dict": net.state_dict(),
                "fingerprint": state_fingerprint(net),
                "decoder_state_dict": dec.state_dict(),
                "decoder_fingerprint": state_fingerprint(dec),
                "meta": meta,
            }
        if name == "judge":
            from atlas.toyworld.train_judge import train_judge

            net = train_judge(self.cfg, self.data("train"), self.log)
            return net, {"state_dict": net.state_dict(), "fingerprint": state_fingerprint(net), "meta": meta}
        if name == READER:
            from atlas.toyworld.train_reader import train_reader

            net = train_reader(self.cfg, self.data("train"), self.log)
            return net, {
                "state_dict": net.state_dict(),
                "fingerprint": state_fingerprint(net),
                "reader_hash": reader_hash(self.cfg),
                "meta": meta,
            }
        meta["target_fingerprint"] = self.fingerprint("target")
        if name == "generator":
            from atlas.toyworld.train_generator import train_generator, train_spatial_generator

            train, gc = self.data("train"), self.cfg.generator
            if self.spatial:
                g = train_spatial_generator(self.cfg, train, self.module("target"), self.log)
            else:
                g = train_generator(self.cfg, train, self.module("target"), self.decoder(), self.log)
            where = gc.code_layer + (f" subspace {gc.subspace}" if gc.subspace else "")
            with threads():
                codes = self._codes("train", g)
            stats = CodeStats.from_codes(codes, source=f"toyworld:{self.cfg.name} train {where}")
            tensors = {
                "mean": stats.mean,
                "std": stats.std,
                "lower": stats.lower,
                "upper": stats.upper,
                **{f"pct_{k}": v for k, v in stats.percentiles.items()},
            }
            return g, {
                "state_dict": g.state_dict(),
                "fingerprint": state_fingerprint(g),
                "code_stats": tensors,
                "code_stats_source": stats.source,
                "meta": meta,
            }
        from atlas.toyworld.train_dae import train_dae

        if self.spatial:
            meta["generator_fingerprint"] = self.fingerprint("generator")
        dae = train_dae(self.cfg, self.codes("train"), self.log)
        return dae, {"state_dict": dae.state_dict(), "fingerprint": state_fingerprint(dae), "meta": meta}

    def code_stats(self) -> CodeStats:
        self.module("generator")
        blob = self._payloads["generator"]
        t = blob["code_stats"]
        pct = {k[4:]: v for k, v in t.items() if k.startswith("pct_")}
        return CodeStats(
            t["mean"], t["std"], t["lower"], t["upper"], pct, str(blob.get("code_stats_source", ""))
        )

    def payload_meta(self, name: str) -> dict[str, Any]:
        self.module(name)
        return dict(self._payloads[name]["meta"])

    # ------------------------------------------------------------------------------------ LoadedModel
    def loaded(self, name: str, *, train_if_missing: bool = True) -> LoadedModel:
        """A fresh frozen copy of the component, described for the rest of atlas."""

        module = copy.deepcopy(self.module(name, train_if_missing=train_if_missing))
        size, code_layer = self.cfg.data.size, self.cfg.generator.code_layer
        common = dict(
            spec=f"toyworld:{name}",
            weights=f"toyworld:{self.cfg.name}:{self.hash}",
            random_weights=False,
            fingerprint=self.fingerprint(name, train_if_missing=False),
        )
        if name == "target" or name in MEMBERS:
            return LoadedModel(
                freeze(module),
                "target",
                space=target_space(size),
                output_layer="fc8",
                extras={"class_names": list(CLASS_NAMES), "preset": self.cfg.name},
                **common,
            )
        if name == "judge":
            return LoadedModel(
                freeze(module),
                "judge",
                space=judge_space(size),
                output_layer="head",
                extras={
                    "fine_to_class": list(FINE_TO_CLASS),
                    "fine_names": list(FINE_NAMES),
                    "class_names": list(CLASS_NAMES),
                    "multifaceted": list(MULTIFACETED),
                },
                **common,
            )
        if name == READER:
            return LoadedModel(
                freeze(module),
                "reader",
                space=reader_space(size),
                output_layer="heads",
                extras={
                    "heads": [list(h) for h in READER_HEADS],
                    "reader_hash": reader_hash(self.cfg),
                    "fine_to_class": list(FINE_TO_CLASS),
                    "fine_names": list(FINE_NAMES),
                    "class_names": list(CLASS_NAMES),
                },
                **common,
            )
        if name == "generator":
            extras: dict[str, object] = {"code_stats": self.code_stats(), "code_layer": code_layer}
            if isinstance(module, SubspaceGenerator):  # the code layer's map -> G's coefficients
                extras["code_encoder"] = freeze(copy.deepcopy(module.subspace))
            return LoadedModel(
                freeze(module),
                "generator",
                space=generator_space(size),
                code_shape=self.code_shape,
                extras=extras,
                **common,
            )
        return LoadedModel(
            freeze(module), "dae", code_shape=self.code_shape, extras={"code_layer": code_layer}, **common
        )
