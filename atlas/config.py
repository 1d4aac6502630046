"""Typed, validated run configuration.

Usage::

    from atlas.config import load_config
    cfg = load_config("configs/demo.yaml", overrides=["sampler.steps=50"])
    cfg.sampler.dgn_am.lr          # -> float

A config is a tree of frozen dataclasses. YAML is read with ``yaml.safe_load`` and checked field by
field: an unknown key is an error that lists the valid keys (with a close-match suggestion); a value
of the wrong type or out of range is an error naming the dotted key, the value and what is valid.
Every field documents itself (``describe_fields``) with recommended values.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from atlas.errors import ConfigError

# --------------------------------------------------------------------------------------------- helpers


def opt(default: Any, doc: str, **checks: Any) -> Any:
    """A dataclass field with documentation and range checks (ge, gt, le, lt)."""
    if isinstance(default, list | dict):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"doc": doc, **checks})
    if dataclasses.is_dataclass(default) and isinstance(default, type):
        return field(default_factory=default, metadata={"doc": doc, **checks})
    return field(default=default, metadata={"doc": doc, **checks})


def section(cls: type, doc: str) -> Any:
    return field(default_factory=cls, metadata={"doc": doc})


# ---------------------------------------------------------------------------------------- unit selection

LIST_FORM_MAX = 10_000  # to_yaml() writes selections up to this many units as an index list (stable hash)
_UNITS_VALID = "'all', a range like '0-15', ranges and indices like '0-15,20', an index, or a list of indices"


@dataclass(frozen=True)
class UnitSelection:
    """Which units of a layer: all of them, or inclusive ranges ``(lo, hi)`` in the order given.

    Ranges are never expanded at parse time ('0-999999999' costs two integers): ``check(n_units)``
    compares them with the layer's size, and only ``resolve(n_units)`` lists indices, after the check.
    """

    all: bool = True
    ranges: tuple[tuple[int, int], ...] = ()

    @staticmethod
    def parse(value: Any, key: str) -> UnitSelection:
        if isinstance(value, UnitSelection):
            return value
        if isinstance(value, bool):
            raise ConfigError(f"{key}: invalid unit selection {value!r}; expected {_UNITS_VALID}")
        if isinstance(value, int):
            if value < 0:
                raise ConfigError(f"{key}: unit index {value} is negative; expected {_UNITS_VALID}")
            return UnitSelection(all=False, ranges=((value, value),))
        if isinstance(value, str):
            text = value.strip()
            if text == "all":
                return UnitSelection()
            ranges: list[tuple[int, int]] = []
            for part in text.split(","):
                m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
                if not m:
                    raise ConfigError(f"{key}: invalid unit selection {value!r}; expected {_UNITS_VALID}")
                lo = int(m.group(1))
                hi = int(m.group(2)) if m.group(2) is not None else lo
                if hi < lo:
                    raise ConfigError(
                        f"{key}: range {part.strip()!r} is empty (end < start); expected {_UNITS_VALID}"
                    )
                ranges.append((lo, hi))
            return UnitSelection(all=False, ranges=tuple(ranges))
        if isinstance(value, list | tuple):
            if not value or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
                raise ConfigError(f"{key}: invalid unit list {value!r}; expected {_UNITS_VALID}")
            return UnitSelection(all=False, ranges=tuple((v, v) for v in value))
        raise ConfigError(f"{key}: invalid unit selection {value!r}; expected {_UNITS_VALID}")

    @property
    def size_bound(self) -> int | None:
        """Units selected, counting overlaps twice (None for 'all'); computed without expanding."""
        return None if self.all else sum(hi - lo + 1 for lo, hi in self.ranges)

    def check(self, n_units: int, key: str = "units", layer: str | None = None) -> None:
        """Refuse a selection reaching past the layer's last unit, without expanding it."""
        if self.all and n_units > 0:
            return
        where = f"layer {layer!r}" if layer else "the layer"
        if n_units <= 0:
            raise ConfigError(f"{key}: {where} has no units; choose a layer with a (U,) or (C, H, W) output")
        for lo, hi in self.ranges:
            if hi >= n_units:
                what = f"unit {lo}" if lo == hi else f"range {lo}-{hi}"
                raise ConfigError(f"{key}: {what} is out of range; {where} has units 0-{n_units - 1}")

    def resolve(self, n_units: int, key: str = "units", layer: str | None = None) -> list[int]:
        """Concrete unit indices (in the order given, without repeats), after ``check(n_units)``."""
        self.check(n_units, key, layer)
        if self.all:
            return list(range(n_units))
        return list(dict.fromkeys(i for lo, hi in self.ranges for i in range(lo, hi + 1)))

    def to_yaml(self) -> Any:
        """'all'; the index list for up to LIST_FORM_MAX units (so config hashes stay what they were);
        else the compact form '0-15,20'. Every form parses back to the same selection."""
        if self.all:
            return "all"
        bound = self.size_bound or 0
        if bound <= LIST_FORM_MAX:
            return list(dict.fromkeys(i for lo, hi in self.ranges for i in range(lo, hi + 1)))
        return ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in self.ranges)


# --------------------------------------------------------------------------------------------- sections

HUGE = 1e4  # upper bound of step sizes and weights: larger values are typos (every chain diverges)
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


@dataclass(frozen=True)
class PreprocessConfig:
    """How a target wants its input image: overrides what the model spec (or its factory) declares.

    The target sees ``x = (fit(rgb01) * value_scale [channels in channel_order] - mean) / std``, where
    ``rgb01`` is the canonical picture (float RGB in [0, 1]) and ``fit`` brings it to ``size`` x ``size``.
    """

    size: int | None = opt(
        None,
        "Square input side in pixels the target expects (CaffeNet 227, ResNet 224, tiny CNN 64); "
        "a picture of another size is fitted by geometry.",
        ge=1,
        le=4096,
    )
    geometry: Literal["center_crop", "resize"] | None = opt(
        None,
        "How a picture of another size is fitted: center_crop (take the centre when larger, as DGN-AM "
        "crops G's 256 px to 227; resize when smaller) or resize (bilinear to size).",
    )
    channel_order: Literal["RGB", "BGR"] | None = opt(
        None, "Channel order the target expects: RGB (torchvision) or BGR (Caffe models)."
    )
    value_scale: float | None = opt(
        None,
        "What full intensity is in the target's units before mean/std: 1.0 for [0,1] inputs "
        "(torchvision), 255.0 for [0,255] inputs (Caffe).",
        gt=0,
        le=HUGE,
    )
    mean: list[float] | None = opt(
        None,
        "Per-channel mean subtracted after scaling, in the target's channel order and value scale "
        "(torchvision [0.485, 0.456, 0.406]; Caffe BGR [104, 117, 123]).",
        type_doc="[float, float, float] | null",
    )
    std: list[float] | None = opt(
        None,
        "Per-channel std divided by after the mean, in the same order and scale (torchvision "
        "[0.229, 0.224, 0.225]; Caffe [1, 1, 1]); each > 0.",
        gt=0,
        type_doc="[float > 0, ...x3] | null",
    )

    def __post_init__(self) -> None:
        for key in ("mean", "std"):
            value = getattr(self, key)
            if value is not None and len(value) != 3:
                raise ConfigError(f"{key}: expected 3 values (one per channel), got {len(value)}: {value}")


@dataclass(frozen=True)
class ModelConfig:
    """A model given by a spec string, with optional weights file and preprocessing."""

    spec: str = opt(
        "",
        "Model spec: toyworld:NAME, torchvision:NAME, python:pkg.module:factory, deepsim:fc6, "
        "dae:residual_mlp.",
    )
    weights: str | None = opt(
        None,
        "State-dict file (.pt/.pth, torch.save(model.state_dict())); null: the toy world's cache, a "
        "factory that loads its own weights, or random weights (allow_random_weights).",
        type_doc="file | null",
    )
    preprocess: PreprocessConfig | None = opt(
        None, "Input image space override (targets only); see models.target.preprocess.*.", targets_only=True
    )
    output_layer: str | None = opt(
        None,
        "Targets: the layer holding the class outputs (its units are kind 'output'); default: the model's "
        "own (python factories: atlas_output_layer) or its last layer. Name it for multi-head models.",
        targets_only=True,
        omit_default=True,
    )

    def __post_init__(self) -> None:
        if not self.spec or ":" not in self.spec:
            raise ConfigError(
                f"spec: {self.spec!r} is not a model spec; expected SCHEME:NAME such as toyworld:target, "
                "torchvision:alexnet, deepsim:fc6 or python:pkg.module:factory"
            )
        if self.output_layer is not None and not self.output_layer.strip():
            raise ConfigError(
                "output_layer: empty layer name; name a layer (see `atlas layers SPEC`) or null"
            )


@dataclass(frozen=True)
class ModelsConfig:
    target: ModelConfig | None = opt(
        None,
        "The network whose units are visualized: a spec string or {spec, weights, preprocess, output_layer}.",
    )
    generator: ModelConfig | None = opt(
        None, "Image generator G for dgn_am / ppgn_h (code -> image): a spec string or {spec, weights}."
    )
    dae: ModelConfig | None = opt(
        None, "Denoising autoencoder on codes for ppgn_h with prior: dae: a spec string or {spec, weights}."
    )
    code_layer: str | None = opt(
        None,
        "Target layer whose output is G's code (prior: joint, real/facet-seeded starts); default: the "
        "generator's own.",
    )
    code_stats: str | None = opt(
        None,
        "File with the code mean and per-dimension bounds (atlas code-stats); toy world: built in.",
        type_doc="file | null",
    )
    allow_random_weights: bool = opt(
        False, "Allow real-network specs without weights (random pictures!). Tests only."
    )

    def __post_init__(self) -> None:
        if self.target is None:
            raise ConfigError("models.target: no target given; e.g. models: {target: toyworld:target}")
        for role in ("generator", "dae"):
            m = getattr(self, role)
            if m is not None and m.output_layer is not None:
                raise ConfigError(f"models.{role}.output_layer: only a target has an output layer; remove it")
        if self.dae is not None and self.dae.preprocess is not None:
            raise ConfigError("models.dae.preprocess: a DAE works on codes, not images; remove it")


@dataclass(frozen=True)
class LayerConfig:
    name: str = opt("", "Module name of the layer in the target (see `atlas layers SPEC`), e.g. fc8.")
    units: UnitSelection = opt(
        UnitSelection(),
        "'all', a range '0-15', ranges and indices '0-15,20', or a list [1, 5, 9]; checked against the "
        "layer's size before anything runs.",
        type_doc="all | 'a-b,c' | [int, ...]",
    )
    kind: Literal["auto", "output", "fc", "conv"] = opt(
        "auto", "Unit kind; auto: the target's output layer is 'output', 2-D layers 'fc', 4-D 'conv'."
    )

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ConfigError("name: empty layer name; name a layer of the target (see `atlas layers SPEC`)")


@dataclass(frozen=True)
class DgnAmConfig:
    """DGN-AM (Nguyen et al. 2016, Eq. 1) step settings."""

    lr: float = opt(
        0.1, "Start step size of the normalized code step (toy world 0.1; CaffeNet fc6: 8).", gt=0, le=HUGE
    )
    lr_end: float = opt(1e-3, "Final step size; decays linearly (original: 1e-10).", ge=0, le=HUGE)
    l2_decay: float = opt(0.99, "Multiplicative decay of h after each step (original 0.99).", gt=0, le=1)


@dataclass(frozen=True)
class PpgnConfig:
    """PPGN-h (Nguyen et al. 2017, Eq. 11) sampler settings."""

    prior: Literal["dae", "joint"] = opt("dae", "R(h): the DAE on h, or E(G(h)) (Noiseless Joint PPGN-h).")
    eps1: float = opt(
        1e-5,
        "Prior term weight (toward realistic codes); 1e-3 more abstract, 1e-1 ignores class.",
        ge=0,
        le=HUGE,
    )
    eps2: float = opt(1.0, "Condition term weight (toward the unit). Original 1.", ge=0, le=HUGE)
    eps3: float = opt(1e-5, "Noise std (diversity). Original 1e-17 .. 1e-5.", ge=0, le=HUGE)
    lr: float = opt(
        1.0, "Step size: of the normalized update (original 1), or the factor on d (eq11).", gt=0, le=HUGE
    )
    step: Literal["normalized", "eq11"] = opt(
        "normalized",
        "normalized: h += lr d / mean|d| (released code); eq11: h += lr d (Eq. 11 as printed).",
    )
    save_every: int = opt(5, "Keep a snapshot every N steps (original 5 for classes, 10 for conv5).", ge=1)
    threshold: float = opt(
        0.0, "Keep a snapshot only when the unit's softmax probability exceeds this (PPGN 0.98).", ge=0, le=1
    )
    reset_every: int = opt(
        0, "Re-draw h every N steps for diversity (0 = never; original 100 for conv5).", ge=0
    )


@dataclass(frozen=True)
class PixelConfig:
    """Pixel-space activation maximization with hand-made priors (the baselines)."""

    lr: float = opt(0.05, "Normalized step size in pixel space ([0,1] images).", gt=0, le=HUGE)
    l2_decay: float = opt(
        1.0, "Multiplicative decay toward grey after each step (1 = off; 0.99 typical).", gt=0, le=1
    )
    blur_every: int = opt(0, "Gaussian blur every N steps (0 = off; 4 typical).", ge=0)
    blur_sigma: float = opt(0.5, "Blur sigma in pixels.", gt=0, le=100)
    jitter: int = opt(0, "Random translation in pixels each step (0 = off).", ge=0, le=1024)
    tv: float = opt(0.0, "Total-variation penalty weight (0 = off).", ge=0, le=HUGE)


@dataclass(frozen=True)
class SamplerConfig:
    method: Literal["dgn_am", "ppgn_h", "pixel"] = opt(
        "dgn_am", "Sampler: dgn_am (Eq. 1), ppgn_h (Eq. 11), pixel."
    )
    steps: int = opt(200, "Optimization steps per chain (original 200; toy world 100-200).", ge=1, le=100_000)
    chains_per_unit: int = opt(
        4, "Chains per unit (>= 4 for facets; PPGN diversity needs several).", ge=1, le=1024
    )
    objective: Literal["raw", "softmax", "log_softmax"] = opt(
        "raw", "raw activation (DGN-AM), softmax, or log_softmax across the layer (PPGN; survey Table 4.2)."
    )
    spatial: Literal["center", "mean"] = opt(
        "center", "Conv units: one position at the map centre (DGN-AM/PPGN) or the channel mean."
    )
    start: Literal["random", "mean", "real", "facet_seeded"] = opt(
        "facet_seeded",
        "Start codes: random N(0,1) clipped, mean code + noise, a real image's code, or facet-seeded "
        "(k-means); real and facet_seeded need facets.real_images.",
    )
    start_noise: float = opt(
        0.0,
        "Std of the noise added to start codes, in code stds (mean, real and facet_seeded code starts; "
        "every method). Pixel starts have their own (atlas/sampling/starts.py).",
        ge=0,
        le=HUGE,
    )
    record_every: int = opt(10, "Record chain statistics every N steps.", ge=1)
    stop_at: float = opt(
        0.0,
        "Stop a chain once its unit's activation reaches this multiple of the unit's highest activation on "
        "the real images (1.0: the natural maximum; 0 = never). Keeps pictures in the natural range; "
        "without real images chains run every step.",
        ge=0,
        le=HUGE,
        omit_default=True,
    )
    dgn_am: DgnAmConfig = section(DgnAmConfig, "DGN-AM settings.")
    ppgn_h: PpgnConfig = section(PpgnConfig, "PPGN-h settings.")
    pixel: PixelConfig = section(PixelConfig, "Pixel baseline settings.")


@dataclass(frozen=True)
class FacetConfig:
    enabled: bool = opt(True, "Cluster each unit's chain end points into facets.")
    max_facets: int = opt(4, "Upper bound on facets per unit (and k of facet-seeded k-means).", ge=1, le=64)
    distance: float = opt(
        0.15,
        "Cosine distance (facet-layer features) between cluster means above which two facets stay "
        "apart; toy world: facets of one class 0.18-0.30 apart, chains of one facet < 0.1.",
        gt=0,
        le=2,
    )
    layer: str | None = opt(
        None,
        "Target layer whose features are clustered into facets; default: the penultimate layer (the last "
        "1-D layer before the output layer).",
        omit_default=True,
    )
    real_images: str | None = opt(
        "toyworld",
        "Real-image set for facet seeds and dataset examples: 'toyworld' (toy-world targets), a folder of "
        "images (every file must decode), or null.",
        type_doc="toyworld | folder | null",
    )
    top_k_real: int = opt(9, "Real top-k images recorded per unit (dataset examples).", ge=0, le=100)
    seed_pool: int = opt(300, "Top-activating real images clustered for facet-seeded starts.", ge=1)

    def __post_init__(self) -> None:
        if self.layer is not None and not self.layer.strip():
            raise ConfigError("layer: empty layer name; name a target layer or null (the penultimate layer)")
        if self.real_images is not None and not self.real_images.strip():
            raise ConfigError("real_images: empty path; give 'toyworld', a folder of images, or null")


@dataclass(frozen=True)
class ComputeConfig:
    device: str = opt(
        "auto",
        "auto (cuda if present, else cpu), cpu, cuda, or cuda:N.",
        type_doc="auto | cpu | cuda | cuda:N",
    )
    batch_size: int = opt(
        64, "Chains per forward/backward pass (CPU 32-128; GPU: autotune with 0).", ge=0, le=65536
    )
    autocast: Literal["auto", "none", "bf16", "fp16"] = opt(
        "auto",
        "Mixed precision; auto = bf16 on CUDA and CPUs with native bf16 (AVX512-BF16, AMX); fp16: CUDA only.",
    )
    channels_last: bool = opt(
        True, "Use channels_last memory format (CUDA; CPU in bf16 and float32 alike: faster where measured)."
    )
    compile: bool = opt(False, "torch.compile the step (CUDA; measure first).")
    fold_batchnorm: bool = opt(
        True, "Fold frozen BatchNorm into the conv/linear before it (same outputs, fewer passes)."
    )
    threads: int | None = opt(
        None, "torch intra-op threads per worker (default: CPUs given to the worker).", ge=1, le=1024
    )

    def __post_init__(self) -> None:
        if not _DEVICE.fullmatch(self.device):
            raise ConfigError(f"device: invalid device {self.device!r}; valid: auto, cpu, cuda, cuda:N")
        if self.autocast == "fp16" and self.device == "cpu":
            raise ConfigError(
                "autocast: fp16 needs a CUDA device and compute.device is 'cpu'; use bf16 or auto"
            )


@dataclass(frozen=True)
class RayConfig:
    address: str | None = opt(None, "Ray address; null: RAY_ADDRESS or a new local instance.")
    num_workers: int | None = opt(
        None, "AtlasWorker actors; default: one per GPU, else 1 per 2 CPUs.", ge=1, le=100_000
    )
    cpus_per_worker: float = opt(1.0, "CPUs reserved per actor.", gt=0, le=1024)
    gpus_per_worker: float | None = opt(
        None, "GPUs per actor; default 1 where the cluster has GPUs.", ge=0, le=64
    )
    max_restarts: int = opt(3, "Times a dead actor is restarted (actor deaths, not lost tasks).", ge=0)
    max_shard_retries: int = opt(3, "Times one shard is re-queued after its actor died under it.", ge=0)
    units_per_shard: int = opt(16, "Units per shard (the resume granularity).", ge=1)
    autoscaling: bool = opt(
        False,
        "The cluster adds nodes on demand (cluster.yaml): actor requests no current node can host wait "
        "instead of being refused. Set num_workers and gpus_per_worker with it.",
    )
    start_timeout_s: float = opt(
        900.0,
        "Give up when no actor is alive or could be (re)started for this long (models load in minutes on "
        "a busy node; autoscaled nodes take longer).",
        gt=0,
    )


@dataclass(frozen=True)
class StoreConfig:
    keep_snapshots: bool = opt(True, "Store PPGN snapshots as images.")
    activations_full_max: int = opt(
        1024, "Store the whole layer's activations when it has at most this many units, else the top-k.", ge=1
    )
    activations_top_k: int = opt(32, "Top-k activations stored for wider layers.", ge=1)


@dataclass(frozen=True)
class StorageConfig:
    """Where the run lives when ``out_dir`` is a URI (pyarrow.fs; credentials the provider's usual way)."""

    shared: bool = opt(
        False,
        "A plain local out_dir is a mount every Ray node shares (NFS); needed for a local path on a "
        "multi-node cluster.",
    )
    endpoint_override: str | None = opt(
        None, "S3-compatible endpoint, e.g. http://127.0.0.1:9000 (MinIO); default: AWS_ENDPOINT_URL or AWS."
    )
    region: str | None = opt(None, "Object-store region; default: AWS_REGION / AWS_DEFAULT_REGION.")
    anonymous: bool = opt(False, "Connect without credentials (public buckets).")


@dataclass(frozen=True)
class ToyWorldRef:
    preset: Literal["default", "micro"] = opt("default", "Toy-world preset used by toyworld: specs.")
    cache_dir: str | None = opt(None, "Cache directory (default $ATLAS_CACHE or ~/.cache/atlas).")


_RUN_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


def check_sampler_models(
    method: str, prior: str, *, generator: bool, dae: bool, code_layer: str | None | bool = True
) -> None:
    """The one source of "this sampler needs that model" errors (config, pre-flight and Engine).

    ``code_layer``: the resolved code layer, or True when it is not known yet (config time).
    """
    if method in ("dgn_am", "ppgn_h") and not generator:
        raise ConfigError(
            f"models.generator: sampler.method {method!r} needs a generator; "
            "set models.generator or use sampler.method: pixel"
        )
    if method == "ppgn_h" and prior == "dae" and not dae:
        raise ConfigError(
            "models.dae: ppgn_h with prior: dae needs a DAE; "
            "set models.dae or use sampler.ppgn_h.prior: joint"
        )
    if method == "ppgn_h" and prior == "joint" and not code_layer:
        raise ConfigError(
            "models.code_layer: ppgn_h with prior: joint needs the target layer whose output is G's code "
            "and the generator names none; set models.code_layer (see `atlas layers SPEC`) or use prior: dae"
        )


def _deterministic_steps(s: SamplerConfig) -> bool:
    """True when the sampler adds no randomness after the start (chains from one start stay identical)."""
    if s.method == "dgn_am":
        return True
    if s.method == "ppgn_h":
        return s.ppgn_h.eps3 == 0 and s.ppgn_h.reset_every == 0
    return False  # pixel: its mean start has noise of its own


@dataclass(frozen=True)
class RunConfig:
    name: str = opt("atlas", "Run name: the output goes to <out_dir>/<name>.")
    out_dir: str = opt(
        "runs", "Where runs live: a local path, file://, s3://bucket/prefix or gs://bucket/prefix."
    )
    seed: int = opt(0, "Run seed; chain seeds derive from (seed, layer, unit, chain).", ge=0, le=2**63 - 1)
    models: ModelsConfig = section(ModelsConfig, "Target, generator and DAE.")
    layers: list[LayerConfig] = opt([], "Layers to map, each with a unit selection.")
    sampler: SamplerConfig = section(SamplerConfig, "Sampler method and settings.")
    facets: FacetConfig = section(FacetConfig, "Multifaceted units.")
    compute: ComputeConfig = section(ComputeConfig, "Device and batching.")
    ray: RayConfig = section(RayConfig, "Distributed execution.")
    store: StoreConfig = section(StoreConfig, "What is written.")
    storage: StorageConfig = section(StorageConfig, "Object-store connection and shared mounts.")
    toyworld: ToyWorldRef = section(ToyWorldRef, "Toy world used by toyworld: specs.")

    def __post_init__(self) -> None:
        if not _RUN_NAME.fullmatch(self.name) or len(self.name) > 128:
            raise ConfigError(
                f"name: {self.name!r} is not a valid run name; use up to 128 letters, digits, '.', '_', '-', "
                "not starting with '.' (the run goes to <out_dir>/<name>)"
            )
        if not self.layers:
            raise ConfigError("layers: no layers selected; give at least one, e.g. layers: [{name: fc8}]")
        names = [layer.name for layer in self.layers]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ConfigError(f"layers: layer {sorted(dup)[0]!r} is listed twice; list each layer once")
        s = self.sampler
        check_sampler_models(
            s.method,
            s.ppgn_h.prior,
            generator=self.models.generator is not None,
            dae=self.models.dae is not None,
        )
        if s.start == "mean" and s.chains_per_unit > 1 and s.start_noise == 0 and _deterministic_steps(s):
            raise ConfigError(
                f"sampler.start_noise: with start: mean and no noise all {s.chains_per_unit} chains of a "
                f"unit are identical ({s.method} adds no noise of its own); set sampler.start_noise > 0 "
                "(e.g. 0.1), another sampler.start, or sampler.chains_per_unit: 1"
            )

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(self)


# ------------------------------------------------------------------------------------------ validation

_SHORTHAND_STRING = {ModelConfig: "spec", LayerConfig: "name"}


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        item = typing.get_args(tp)[0]
        if dataclasses.is_dataclass(item):
            return "a list of mappings"
        return f"a list of {_type_name(item)}"
    if tp is type(None):
        return "null"
    if tp is UnitSelection:
        return _UNITS_VALID
    if dataclasses.is_dataclass(tp):
        return "a spec string or a mapping" if tp is ModelConfig else "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false"}.get(tp, str(tp))


def _convert(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is UnitSelection:
        return UnitSelection.parse(value, key)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key)
            except ConfigError as exc:
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        raise ConfigError(f"{key}: invalid value {value!r}; expected {_type_name(tp)}")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            hint = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ConfigError(
                f"{key}: invalid value {value!r}; valid: {', '.join(repr(c) for c in choices)}{extra}"
            )
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
        (item_tp,) = typing.get_args(tp)
        return [_convert(v, item_tp, f"{key}.{i}") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        if isinstance(value, str) and tp in _SHORTHAND_STRING:
            value = {_SHORTHAND_STRING[tp]: value}
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
        return build(tp, value, key)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str) and re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", value.strip()):
            value = float(value)  # PyYAML reads 1e-3 (no dot) as a string
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        try:
            number = float(value)
        except OverflowError:  # an integer too large for a float
            number = math.inf
        if not math.isfinite(number):
            raise ConfigError(f"{key}: {value!r} is not a finite number; give a finite value such as 1e-5")
        return number
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {tp!r} at {key}")  # programming error


def _check_range(value: Any, meta: typing.Mapping[str, Any], key: str) -> None:
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return
    for name, op, word in (
        ("ge", float.__ge__, ">="),
        ("gt", float.__gt__, ">"),
        ("le", float.__le__, "<="),
        ("lt", float.__lt__, "<"),
    ):
        if name in meta and not op(float(value), float(meta[name])):
            raise ConfigError(f"{key}: value {value!r} is out of range; must be {word} {meta[name]}")


def build(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a plain mapping, validating keys, types and ranges."""
    hints = typing.get_type_hints(cls)
    valid = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    for raw_key, value in data.items():
        key = str(raw_key)
        dotted = f"{prefix}.{key}" if prefix else key
        if key not in valid:
            hint = difflib.get_close_matches(key, valid, n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            where = f" in '{prefix}'" if prefix else ""
            raise ConfigError(f"unknown config key '{dotted}'{extra}; valid keys{where}: {', '.join(valid)}")
        converted = _convert(value, hints[key], dotted)
        meta = next(f.metadata for f in dataclasses.fields(cls) if f.name == key)
        _check_range(converted, meta, dotted)
        if isinstance(converted, list):
            for i, item in enumerate(converted):
                _check_range(item, meta, f"{dotted}.{i}")
        kwargs[key] = converted
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        if prefix and not str(exc).startswith(prefix):
            raise ConfigError(f"{prefix}.{exc}") from None
        raise


def _to_plain(obj: Any) -> Any:
    if isinstance(obj, UnitSelection):
        return obj.to_yaml()
    if dataclasses.is_dataclass(obj):
        return {
            f.name: _to_plain(getattr(obj, f.name))
            for f in dataclasses.fields(obj)
            # a newer optional key left at its default is not written: older configs keep their hash
            if not (f.metadata.get("omit_default") and getattr(obj, f.name) == f.default)
        }
    if isinstance(obj, list | tuple):
        return [_to_plain(v) for v in obj]
    return obj


# ------------------------------------------------------------------------------------------- overrides


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply ``a.b.c=value`` (value parsed as YAML) to a nested mapping in place; list items by index."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected KEY=VALUE, e.g. --set sampler.steps=50")
    dotted, raw = assignment.split("=", 1)
    parts = [p for p in dotted.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"--set {assignment!r}: empty key; expected KEY=VALUE, e.g. --set sampler.steps=50")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    node: Any = data
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"--set {dotted}: no list item {part!r} at '{'.'.join(parts[:i])}'")
            node = node[int(part)]
            continue
        child = node.get(part)
        if isinstance(child, str) and part in ("target", "generator", "dae"):
            child = {"spec": child}
            node[part] = child
        if child is None:
            child = {}
            node[part] = child
        if not isinstance(child, dict | list):
            raise ConfigError(f"--set {dotted}: '{'.'.join(parts[: i + 1])}' is a value, not a section")
        node = child
    last = parts[-1]
    if isinstance(node, list):
        if not last.isdigit() or int(last) >= len(node):
            raise ConfigError(f"--set {dotted}: no list item {last!r}")
        node[int(last)] = value
    else:
        node[last] = value


def config_from_dict(data: dict[str, Any], overrides: typing.Sequence[str] = ()) -> RunConfig:
    data = dict(data or {})
    for assignment in overrides:
        apply_override(data, assignment)
    return build(RunConfig, data)


def load_config(path: str | os.PathLike[str], overrides: typing.Sequence[str] = ()) -> RunConfig:
    """Read a YAML config file, apply dotted overrides, validate. Raises ConfigError."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(
            f"config path {str(p)!r} is a directory; pass a YAML file such as configs/demo.yaml"
        )
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} not found; pass a YAML file such as configs/demo.yaml")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"config file {str(p)!r} is unreadable ({type(exc).__name__}); pass a UTF-8 YAML text file"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config file {str(p)!r} is not valid YAML{where}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(p)!r} must hold a mapping of keys, got {type(data).__name__}")
    return config_from_dict(data, overrides)


def _short_type(tp: Any, meta: typing.Mapping[str, Any]) -> str:
    """Compact type with its valid range, for `atlas config`: 'int >= 1, <= 100000', 'str | null'."""
    if "type_doc" in meta:
        return str(meta["type_doc"])
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(str(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_short_type(a, meta) for a in typing.get_args(tp))
    if origin is list:
        item = typing.get_args(tp)[0]
        return "list of mappings" if dataclasses.is_dataclass(item) else f"list of {_short_type(item, meta)}"
    if tp is UnitSelection:
        return "units"
    if tp is ModelConfig:
        return "spec | mapping"
    if dataclasses.is_dataclass(tp):
        return "mapping"
    name = {int: "int", float: "float", str: "str", bool: "bool", type(None): "null"}.get(tp, str(tp))
    if tp in (int, float):
        bounds = [
            f"{word} {'2^63-1' if meta[k] == 2**63 - 1 else format(meta[k], 'g')}"
            for k, word in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))
            if k in meta
        ]
        name += (" " + ", ".join(bounds)) if bounds else ""
    return name


def _yaml_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value == "":
        return "(required)"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list) and not value:
        return "[]"
    return str(value)


def describe_fields(
    cls: type = RunConfig, prefix: str = "", *, targets: bool = True
) -> list[tuple[str, str, str, str]]:
    """(dotted key, type with range, default, doc) for every key, nested ones included, for `atlas config`.

    Optional sections (``models.target``, ``models.target.preprocess``) and list items (``layers[]``) are
    listed with their own keys; target-only keys are left out under ``models.generator`` / ``models.dae``.
    """
    rows: list[tuple[str, str, str, str]] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.metadata.get("targets_only") and not targets:
            continue
        key = f"{prefix}{f.name}"
        tp = hints[f.name]
        doc = f.metadata.get("doc", "")
        if dataclasses.is_dataclass(tp) and f.default_factory is not dataclasses.MISSING:
            rows.extend(describe_fields(tp, key + "."))  # a section: its keys only
            continue
        default = f.default if f.default is not dataclasses.MISSING else _to_plain(f.default_factory())
        rows.append((key, _short_type(tp, f.metadata), _yaml_value(_to_plain(default)), doc))
        inner = [
            a
            for a in (typing.get_args(tp) or (tp,))
            if dataclasses.is_dataclass(a) and a is not UnitSelection
        ]
        if typing.get_origin(tp) is list and inner:
            rows.extend(describe_fields(inner[0], key + "[]."))
        elif inner:  # an optional mapping: models.target, models.target.preprocess
            for_target = f.name == "target" if cls is ModelsConfig else targets
            rows.extend(describe_fields(inner[0], key + ".", targets=for_target))
    return rows
