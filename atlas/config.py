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


@dataclass(frozen=True)
class UnitSelection:
    """Which units of a layer: all of them, a half-open-free inclusive range ``a-b``, or a list."""

    all: bool = True
    indices: tuple[int, ...] = ()

    @staticmethod
    def parse(value: Any, key: str) -> UnitSelection:
        valid = "'all', a range like '0-15', an index, or a list of indices"
        if isinstance(value, UnitSelection):
            return value
        if isinstance(value, bool):
            raise ConfigError(f"{key}: invalid unit selection {value!r}; expected {valid}")
        if isinstance(value, int):
            if value < 0:
                raise ConfigError(f"{key}: unit index {value} is negative; expected {valid}")
            return UnitSelection(all=False, indices=(value,))
        if isinstance(value, str):
            text = value.strip()
            if text == "all":
                return UnitSelection()
            out: list[int] = []
            for part in text.split(","):
                m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
                if not m:
                    raise ConfigError(f"{key}: invalid unit selection {value!r}; expected {valid}")
                lo = int(m.group(1))
                hi = int(m.group(2)) if m.group(2) is not None else lo
                if hi < lo:
                    raise ConfigError(
                        f"{key}: range {part.strip()!r} is empty (end < start); expected {valid}"
                    )
                out.extend(range(lo, hi + 1))
            return UnitSelection(all=False, indices=tuple(dict.fromkeys(out)))
        if isinstance(value, list | tuple):
            if not value or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
                raise ConfigError(f"{key}: invalid unit list {value!r}; expected {valid}")
            return UnitSelection(all=False, indices=tuple(dict.fromkeys(value)))
        raise ConfigError(f"{key}: invalid unit selection {value!r}; expected {valid}")

    def resolve(self, n_units: int, key: str = "units") -> list[int]:
        """Concrete unit indices for a layer with ``n_units`` units; out-of-range indices are an error."""
        if self.all:
            return list(range(n_units))
        bad = [i for i in self.indices if i >= n_units]
        if bad:
            raise ConfigError(f"{key}: unit {bad[0]} is out of range; the layer has units 0-{n_units - 1}")
        return list(self.indices)

    def to_yaml(self) -> Any:
        return "all" if self.all else list(self.indices)


# --------------------------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class PreprocessConfig:
    """How a model wants its input image (overrides what the model spec declares)."""

    size: int | None = opt(None, "Square input size in pixels (e.g. 227 CaffeNet, 224 ResNet).", ge=1)
    geometry: Literal["center_crop", "resize"] | None = opt(
        None, "How a generator image of another size is fitted: center_crop (DGN-AM) or resize."
    )
    channel_order: Literal["RGB", "BGR"] | None = opt(None, "Channel order the model expects.")
    value_scale: float | None = opt(None, "Pixel scale: 1.0 for [0,1] images, 255.0 for [0,255].", gt=0)
    mean: list[float] | None = opt(None, "Per-channel mean in the model's channel order and scale.")
    std: list[float] | None = opt(None, "Per-channel std in the model's channel order and scale.")


@dataclass(frozen=True)
class ModelConfig:
    """A model given by a spec string, with optional weights file and preprocessing."""

    spec: str = opt("", "Model spec: toyworld:NAME, torchvision:NAME, python:pkg.mod:factory, deepsim:fc6.")
    weights: str | None = opt(None, "Path to a state-dict file (.pt/.pth/.safetensors-free torch file).")
    preprocess: PreprocessConfig | None = opt(None, "Input preprocessing override (targets only).")

    def __post_init__(self) -> None:
        if not self.spec or ":" not in self.spec:
            raise ConfigError(
                f"spec: {self.spec!r} is not a model spec; expected SCHEME:NAME such as toyworld:target, "
                "torchvision:alexnet, deepsim:fc6 or python:pkg.module:factory"
            )


@dataclass(frozen=True)
class ModelsConfig:
    target: ModelConfig | None = opt(
        None, "The network whose units are visualized (a spec string or {spec, weights, preprocess})."
    )
    generator: ModelConfig | None = opt(None, "Image generator G for dgn_am / ppgn_h (code -> image).")
    dae: ModelConfig | None = opt(None, "Denoising autoencoder on codes for ppgn_h with prior: dae.")
    code_layer: str | None = opt(
        None,
        "Target layer whose output is G's code (prior: joint, facet seeds); default: the generator's own.",
    )
    code_stats: str | None = opt(
        None, "File with the code mean and per-dimension bounds (atlas code-stats); toy world: built in."
    )
    allow_random_weights: bool = opt(
        False, "Allow real-network specs without weights (random pictures!). Tests only."
    )

    def __post_init__(self) -> None:
        if self.target is None:
            raise ConfigError("models.target: no target given; e.g. models: {target: toyworld:target}")


@dataclass(frozen=True)
class LayerConfig:
    name: str = opt("", "Module name of the layer in the target (see `atlas layers SPEC`), e.g. fc8.")
    units: UnitSelection = opt(UnitSelection(), "'all', a range '0-15', or a list [1, 5, 9].")
    kind: Literal["auto", "output", "fc", "conv"] = opt(
        "auto", "Unit kind; auto: the target's last layer is 'output', 2-D layers 'fc', 4-D 'conv'."
    )


@dataclass(frozen=True)
class DgnAmConfig:
    """DGN-AM (Nguyen et al. 2016, Eq. 1) step settings."""

    lr: float = opt(
        0.1, "Start step size of the normalized code step (toy world 0.1; CaffeNet fc6: 8).", gt=0
    )
    lr_end: float = opt(1e-3, "Final step size; decays linearly (original: 1e-10).", ge=0)
    l2_decay: float = opt(0.99, "Multiplicative decay of h after each step (original 0.99).", gt=0, le=1)
    noise: float = opt(0.0, "Std of the start noise around the mean code (start: mean).", ge=0)


@dataclass(frozen=True)
class PpgnConfig:
    """PPGN-h (Nguyen et al. 2017, Eq. 11) sampler settings."""

    prior: Literal["dae", "joint"] = opt("dae", "R(h): the DAE on h, or E(G(h)) (Noiseless Joint PPGN-h).")
    eps1: float = opt(
        1e-5, "Prior term weight (toward realistic codes); 1e-3 more abstract, 1e-1 ignores class.", ge=0
    )
    eps2: float = opt(1.0, "Condition term weight (toward the unit). Original 1.", ge=0)
    eps3: float = opt(1e-5, "Noise std (diversity). Original 1e-17 .. 1e-5.", ge=0)
    lr: float = opt(1.0, "Step size: of the normalized update (original 1), or the factor on d (eq11).", gt=0)
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

    lr: float = opt(0.05, "Normalized step size in pixel space ([0,1] images).", gt=0)
    l2_decay: float = opt(
        1.0, "Multiplicative decay toward grey after each step (1 = off; 0.99 typical).", gt=0, le=1
    )
    blur_every: int = opt(0, "Gaussian blur every N steps (0 = off; 4 typical).", ge=0)
    blur_sigma: float = opt(0.5, "Blur sigma in pixels.", gt=0)
    jitter: int = opt(0, "Random translation in pixels each step (0 = off).", ge=0)
    tv: float = opt(0.0, "Total-variation penalty weight (0 = off).", ge=0)


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
        "Start codes: random N(0,1) clipped, mean code + noise, a real image's code, "
        "or facet-seeded (k-means).",
    )
    record_every: int = opt(10, "Record chain statistics every N steps.", ge=1)
    dgn_am: DgnAmConfig = section(DgnAmConfig, "DGN-AM settings.")
    ppgn_h: PpgnConfig = section(PpgnConfig, "PPGN-h settings.")
    pixel: PixelConfig = section(PixelConfig, "Pixel baseline settings.")


@dataclass(frozen=True)
class FacetConfig:
    enabled: bool = opt(True, "Cluster each unit's chain end points into facets.")
    max_facets: int = opt(4, "Upper bound on facets per unit (and k of facet-seeded k-means).", ge=1, le=64)
    distance: float = opt(
        0.15,
        "Cosine distance (T's penultimate features) between cluster means above which two facets stay "
        "apart; toy world: facets of one class 0.18-0.30 apart, chains of one facet < 0.1.",
        gt=0,
        le=2,
    )
    real_images: str | None = opt(
        "toyworld", "Real-image set for facet seeds and dataset examples: 'toyworld', a folder, or null."
    )
    top_k_real: int = opt(9, "Real top-k images recorded per unit (dataset examples).", ge=0, le=100)
    seed_pool: int = opt(300, "Top-activating real images clustered for facet-seeded starts.", ge=1)


@dataclass(frozen=True)
class ComputeConfig:
    device: str = opt("auto", "auto (cuda if present, else cpu), cpu, cuda, or cuda:N.")
    batch_size: int = opt(64, "Chains per forward/backward pass (CPU 32-128; GPU: autotune with 0).", ge=0)
    autocast: Literal["auto", "none", "bf16", "fp16"] = opt(
        "auto",
        "Mixed precision; auto = bf16 on CUDA and CPUs with native bf16 (AVX512-BF16, AMX); fp16: CUDA only.",
    )
    channels_last: bool = opt(True, "Use channels_last memory format on CUDA and under CPU autocast.")
    compile: bool = opt(False, "torch.compile the step (CUDA; measure first).")
    fold_batchnorm: bool = opt(
        True, "Fold frozen BatchNorm into the conv/linear before it (same outputs, fewer passes)."
    )
    threads: int | None = opt(
        None, "torch intra-op threads per worker (default: CPUs given to the worker).", ge=1
    )


@dataclass(frozen=True)
class RayConfig:
    address: str | None = opt(None, "Ray address; null: RAY_ADDRESS or a new local instance.")
    num_workers: int | None = opt(None, "AtlasWorker actors; default: one per GPU, else 1 per 2 CPUs.", ge=1)
    cpus_per_worker: float = opt(1.0, "CPUs reserved per actor.", gt=0)
    gpus_per_worker: float | None = opt(None, "GPUs per actor; default 1 where the cluster has GPUs.", ge=0)
    max_restarts: int = opt(3, "Times a dead actor is restarted.", ge=0)
    max_shard_retries: int = opt(3, "Times a shard is re-queued after its actor died.", ge=0)
    units_per_shard: int = opt(16, "Units per shard (the resume granularity).", ge=1)


@dataclass(frozen=True)
class StoreConfig:
    keep_snapshots: bool = opt(True, "Store PPGN snapshots as images.")
    activations_full_max: int = opt(
        1024, "Store the whole layer's activations when it has at most this many units, else the top-k.", ge=1
    )
    activations_top_k: int = opt(32, "Top-k activations stored for wider layers.", ge=1)


@dataclass(frozen=True)
class ToyWorldRef:
    preset: Literal["default", "micro"] = opt("default", "Toy-world preset used by toyworld: specs.")
    cache_dir: str | None = opt(None, "Cache directory (default $ATLAS_CACHE or ~/.cache/atlas).")


@dataclass(frozen=True)
class RunConfig:
    name: str = opt("atlas", "Run name: the output goes to <out_dir>/<name>.")
    out_dir: str = opt("runs", "Directory holding runs.")
    seed: int = opt(0, "Run seed; chain seeds derive from (seed, layer, unit, chain).", ge=0)
    models: ModelsConfig = section(ModelsConfig, "Target, generator and DAE.")
    layers: list[LayerConfig] = opt([], "Layers to map, each with a unit selection.")
    sampler: SamplerConfig = section(SamplerConfig, "Sampler method and settings.")
    facets: FacetConfig = section(FacetConfig, "Multifaceted units.")
    compute: ComputeConfig = section(ComputeConfig, "Device and batching.")
    ray: RayConfig = section(RayConfig, "Distributed execution.")
    store: StoreConfig = section(StoreConfig, "What is written.")
    toyworld: ToyWorldRef = section(ToyWorldRef, "Toy world used by toyworld: specs.")

    def __post_init__(self) -> None:
        if not self.name or not re.fullmatch(r"[A-Za-z0-9._-]+", self.name):
            raise ConfigError(
                f"name: {self.name!r} is not a valid run name; use letters, digits, '.', '_', '-'"
            )
        if not self.layers:
            raise ConfigError("layers: no layers selected; give at least one, e.g. layers: [{name: fc8}]")
        names = [layer.name for layer in self.layers]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ConfigError(f"layers: layer {sorted(dup)[0]!r} is listed twice; list each layer once")
        if self.sampler.method in ("dgn_am", "ppgn_h") and self.models.generator is None:
            raise ConfigError(
                f"models.generator: sampler.method {self.sampler.method!r} needs a generator; "
                "set models.generator or use sampler.method: pixel"
            )
        if self.sampler.method == "ppgn_h" and self.sampler.ppgn_h.prior == "dae" and self.models.dae is None:
            raise ConfigError(
                "models.dae: ppgn_h with prior: dae needs a DAE; set models.dae or use prior: joint"
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
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
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
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
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
        return float(value)
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
        return {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
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
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} not found; pass a YAML file such as configs/demo.yaml")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config file {str(p)!r} is not valid YAML{where}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(p)!r} must hold a mapping of keys, got {type(data).__name__}")
    return config_from_dict(data, overrides)


def describe_fields(cls: type = RunConfig, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(dotted key, type, default, doc) for every field, for the README and `atlas config --help`."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        tp = hints[f.name]
        if (
            dataclasses.is_dataclass(tp)
            and f.default_factory is not dataclasses.MISSING
            and "doc" in f.metadata
            and tp not in _SHORTHAND_STRING
        ):
            rows.extend(describe_fields(tp, key + "."))
            continue
        default = f.default if f.default is not dataclasses.MISSING else _to_plain(f.default_factory())
        rows.append((key, _type_name(tp), repr(_to_plain(default)), f.metadata.get("doc", "")))
    return rows
