"""Build the models, code statistics and real-image set a run config asks for.

The driver builds them once (:func:`build_bundle`) and ships the bundle to every actor through Ray's
object store, so a node with an empty cache, no weight files and no image folder still works; a plain
:class:`~atlas.pipeline.worker.AtlasWorker` without a bundle builds its own (tests, one machine).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from atlas.config import RunConfig
from atlas.errors import AtlasError
from atlas.models import CodeStats, LoadedModel
from atlas.models.codes import default_deepsim_stats
from atlas.models.loaded import generators_own_layer
from atlas.models.registry import check_run_ensemble_files, load_run_ensemble, load_run_model
from atlas.pipeline.holder import BundleHolder


@dataclass
class RunModels:
    target: LoadedModel
    generator: LoadedModel | None
    dae: LoadedModel | None
    code_stats: CodeStats | None
    code_layer: str | None
    code_stats_file: str | None = None  # models.code_stats when the statistics come from a file
    code_stats_fingerprint: str | None = None  # its fingerprint, from the bytes the statistics came from
    encoder: LoadedModel | None = None  # models.encoder: the network G inverts, when not the target
    ensemble: list[LoadedModel] = field(default_factory=list)  # models.ensemble: more targets

    def networks(self) -> list[LoadedModel]:
        """Every network the run loaded: target, generator, DAE, encoder (those given), ensemble members."""
        roles = (self.target, self.generator, self.dae, self.encoder)
        return [m for m in roles if m is not None] + list(self.ensemble)

    def fingerprints(self) -> dict[str, Any]:
        """Per network: its spec, weights and their fingerprint, and for a network built by the user's
        own code (:func:`own_code_modules`) the fingerprint of that code's source files (``code``) and
        their names (``code_files``): a resume by other code would mix two networks."""
        out = {}
        for role in ("target", "generator", "dae", "encoder"):
            m = getattr(self, role)
            if m is not None:
                out[role] = {
                    "spec": m.spec,
                    "weights": m.weights,
                    "random_weights": m.random_weights,
                    "fingerprint": m.fingerprint,
                    **code_fingerprint(m),
                }
        if self.ensemble:  # members in order: another member (or order) averages other objectives
            out["ensemble"] = [
                {"spec": m.spec, "weights": m.weights, "fingerprint": m.fingerprint, **code_fingerprint(m)}
                for m in self.ensemble
            ]
        if self.code_stats_file:  # the statistics behind the same path may change between resumes
            out["code_stats"] = {
                "weights": self.code_stats_file,
                "fingerprint": self.code_stats_fingerprint,
            }
        return out


def build_models(cfg: RunConfig, train: bool = True) -> RunModels:
    """Load target, generator, DAE and encoder (CPU); resolve code statistics and the code layer.
    ``train``: a toy-world network neither cached nor shipped trains (False, a check: a one-line error)."""
    target = load_run_model(cfg, "target", train)
    generator = load_run_model(cfg, "generator", train)
    encoder = load_run_model(cfg, "encoder", train)
    if maps_output_layer(cfg, target):
        ensemble = load_run_ensemble(cfg, train)
    else:  # unused: not loaded (a toy world's trained on demand), their files checked
        check_run_ensemble_files(cfg)
        ensemble = []
    dae = None
    if cfg.sampler.uses_dae:
        dae = load_run_model(cfg, "dae", train)
    stats: CodeStats | None = None
    stats_fingerprint = None
    if cfg.models.code_stats:
        storage = cfg.storage_options_for(cfg.models.code_stats)
        stats, stats_fingerprint = CodeStats.read(cfg.models.code_stats, storage)
    elif generator is not None:
        stats = generator.extras.get("code_stats") or _deepsim_default_stats(generator)  # type: ignore[assignment]
    code_layer = cfg.models.code_layer or generators_own_layer(generator, encoder or target)
    shape = generator.code_shape if generator is not None else None
    if stats is not None and shape is not None and tuple(stats.mean.shape) != tuple(shape):
        raise AtlasError(
            f"models.code_stats: statistics have shape {tuple(stats.mean.shape)}, "
            f"the generator's code is {generator.code_shape}"
        )
    return RunModels(
        target, generator, dae, stats, code_layer, cfg.models.code_stats, stats_fingerprint, encoder, ensemble
    )


def maps_output_layer(cfg: RunConfig, target: LoadedModel) -> bool:
    """Whether one of the run's layers is the target's output layer, the one ``models.ensemble`` joins: a
    run of hidden layers alone leaves its members unloaded (a toy world's are trained on demand, minutes
    each)."""
    output = target.output_layer
    if not output:  # loaded: the pre-flight's error asks for models.target.output_layer
        return True
    return any(layer.name in ("output", output) for layer in cfg.layers)


def _deepsim_default_stats(generator: LoadedModel) -> CodeStats | None:
    """A DeePSiM generator without code statistics: PPGN's released clip range ([0, 30]; fc8 [-30, 30])."""
    variant = generator.extras.get("variant")
    if not generator.spec.startswith("deepsim:") or generator.code_shape is None:
        return None
    return default_deepsim_stats(tuple(generator.code_shape), signed=variant == "fc8")


@dataclass
class WorkerBundle:
    """Everything a worker needs besides its config: models (CPU), the judge, the real-image pool and the
    attribute reader (toy world; None: no reader columns)."""

    models: RunModels
    judge: LoadedModel | None
    real: Any | None
    reader: LoadedModel | None = None

    def tensor_bytes(self) -> int:
        """Bytes of every tensor the bundle holds (the models' parameters and buffers, the real images),
        each counted once: what a worker holds resident after fetching it."""
        return _tensor_bytes(self, set())


def _tensor_bytes(obj: Any, seen: set[int]) -> int:
    import dataclasses

    import torch

    if isinstance(obj, torch.Tensor):
        key = obj.untyped_storage().data_ptr() if obj.device.type != "meta" else id(obj)
        if key in seen:
            return 0
        seen.add(key)
        return obj.untyped_storage().nbytes()
    if isinstance(obj, torch.nn.Module):
        return sum(_tensor_bytes(t, seen) for t in (*obj.parameters(), *obj.buffers()))
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v, seen) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(v, seen) for v in obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return sum(_tensor_bytes(getattr(obj, f.name), seen) for f in dataclasses.fields(obj))
    return 0


@dataclass(frozen=True)
class ShippedBundle:
    """How a worker finds the run's :class:`WorkerBundle` in Ray's object store: the name of the run's
    :class:`BundleHolder`. The worker fetches the bundle in its constructor (and again on a restart)."""

    holder: str  # the BundleHolder actor's name

    @classmethod
    def put(cls, cfg: RunConfig, bundle: WorkerBundle, name: str) -> tuple[ShippedBundle, Any]:
        """``bundle`` into the object store, once, held by a :class:`BundleHolder` named ``name`` on this
        node; returns the ShippedBundle for the workers and the holder's handle, which the driver keeps
        for the run (the holder goes when its last handle does). Packed (:mod:`atlas.pipeline.packing`):
        the tensors' bytes out of band, so putting and fetching run at memory speed. The run's own code
        (:func:`own_code_modules`) goes by value, for this put only: only the driver has its files."""
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from atlas.pipeline.packing import pack

        ref = ray.put(pack(bundle, by_value=own_code_modules(cfg, bundle)))
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        holder = (
            ray.remote(BundleHolder)
            .options(name=name, num_cpus=0, max_restarts=0, scheduling_strategy=here)
            .remote([ref])
        )
        return cls(name), holder

    def fetch(self) -> WorkerBundle:
        import ray

        from atlas.pipeline.packing import unpack

        [ref] = ray.get(self.holder_handle().get.remote())
        return unpack(ray.get(ref))

    def holder_handle(self) -> Any:
        import ray

        return ray.get_actor(self.holder)


def own_code_modules(cfg: RunConfig, bundle: Any) -> list[Any]:
    """The modules of the run's own code: those of ``python:`` factories and of every class in the shipped
    networks that the driver imported from its own files (not an installed package, the standard library
    or atlas): a worker node need not have those files, or may have another version of them."""
    names = set()
    for model in bundle.models.networks():
        names.update(_factory_module(model.spec))
        names.update(type(m).__module__ for m in model.module.modules())
    return _own_modules(names)


def _factory_module(spec: str) -> list[str]:
    """The module a ``python:module:factory`` spec imports (none for other schemes)."""
    return [spec.removeprefix("python:").rsplit(":", 1)[0]] if spec.startswith("python:") else []


def code_fingerprint(model: LoadedModel) -> dict[str, Any]:
    """``{"code": sha256 (16 hex digits) of the source files of the user's own code behind ``model``,
    "code_files": their names}`` (its ``python:`` factory's module and the modules of its classes, as
    :func:`own_code_modules` picks them); ``{}`` when none is the user's (torchvision, atlas, an installed
    package: their versions and atlas's git sha are recorded apart)."""
    import hashlib

    names = {*_factory_module(model.spec), *(type(m).__module__ for m in model.module.modules())}
    digest, files = hashlib.sha256(), []
    for module in sorted(_own_modules(names), key=lambda m: m.__name__):
        path = Path(str(module.__file__))
        try:
            source = path.read_bytes()
        except OSError:  # a module without a readable file (built in memory): nothing to compare
            continue
        digest.update(module.__name__.encode() + b"\0" + source + b"\0")
        files.append(path.name)
    return {"code": digest.hexdigest()[:16], "code_files": files} if files else {}


def _own_modules(names: set[str]) -> list[Any]:
    """The imported modules among ``names`` loaded from the user's own files (see
    :func:`own_code_modules`)."""
    import sysconfig

    paths = sysconfig.get_paths()
    installed = {Path(paths[k]).as_posix() for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    found = []
    for name in sorted(names):
        module = sys.modules.get(name)
        where = Path(str(getattr(module, "__file__", None) or "")).as_posix()
        if module is None or name == "__main__" or not where:  # cloudpickle sends __main__'s by value
            continue
        if name.split(".")[0] in ("atlas", "torch", "torchvision"):
            continue
        if "-packages/" in where or any(where.startswith(p + "/") for p in installed):
            continue
        found.append(module)
    return found


def load_judge(cfg: RunConfig) -> LoadedModel | None:
    """The toy world's held-out judge J, for a verdict on output units (None for other targets)."""
    if not cfg.models.target.spec.startswith("toyworld:"):
        return None
    from atlas import toyworld

    return toyworld.load_component("judge", cfg.toyworld.preset, cfg.toyworld.cache_dir)


def load_reader(cfg: RunConfig, log: Callable[[str], None] = print) -> LoadedModel | None:
    """The toy world's attribute reader, for ``units.label_shown`` (None for other targets, and for a toy
    world without one: a cache trained before the reader, for a config atlas ships no reader for; its
    columns stay null, and ``atlas bootstrap`` trains it). Never trains here."""
    if not cfg.models.target.spec.startswith("toyworld:"):
        return None
    from atlas import toyworld

    try:
        return toyworld.load_component(
            "reader", cfg.toyworld.preset, cfg.toyworld.cache_dir, train_if_missing=False, log=log
        )
    except AtlasError as exc:
        log(f"atlas: no attribute reader, label_shown stays empty ({exc})")
        return None


def build_bundle(cfg: RunConfig, models: RunModels | None = None) -> WorkerBundle:
    """Models, judge, real images and the attribute reader, resolved here (the driver) once."""
    models = models if models is not None else build_models(cfg)
    real = load_real_images(cfg, models.target.space.size)
    return WorkerBundle(models, load_judge(cfg), real, load_reader(cfg))


def make_engine(
    cfg: RunConfig, bundle: WorkerBundle, device: Any, compute: Any = None, truth: bool = True
) -> Any:
    """The sampling engine a worker maps with: the bundle's models moved to ``device``, the run's sampler,
    facets and code settings; ``compute``: the run's compute section as this worker resolved it (default:
    the config's). Prepared with the run's layers (``Engine.prepare``: the same bits whatever the order)."""
    from atlas.sampling import Engine

    models = bundle.models
    for m in models.networks():
        m.to(device)
    engine = Engine(
        models.target,
        models.generator,
        models.dae,
        cfg.sampler,
        cfg.facets,
        compute if compute is not None else cfg.compute,
        device,
        code_stats=models.code_stats.to(device) if models.code_stats else None,
        code_layer=models.code_layer,
        real=bundle.real,
        truth=truth,
        encoder=models.encoder,
        ensemble=models.ensemble,
    )
    engine.prepare(layer.name for layer in cfg.layers)
    return engine


def load_real_images(cfg: RunConfig, size_hint: int) -> Any | None:
    """The real-image set for facet seeds and dataset examples: 'toyworld', a folder, or None."""
    source = cfg.facets.real_images
    if not source:
        return None
    if source == "toyworld":
        if not cfg.models.target.spec.startswith("toyworld:"):
            return None
        from atlas import toyworld

        return toyworld.real_images(
            cfg.toyworld.preset, cfg.toyworld.cache_dir, split="test", limit=cfg.facets.real_limit
        )
    from atlas.sampling import load_image_folder

    return load_image_folder(source, size_hint, limit=cfg.facets.real_limit)
