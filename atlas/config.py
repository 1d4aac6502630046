"""Typed, validated run configuration.

Usage::

    from atlas.config import load_config, replace
    cfg = load_config("configs/demo.yaml", overrides=["sampler.steps=50"])
    cfg.sampler.dgn_am.lr          # -> float
    cfg = replace(cfg, seed=3)     # a validated copy

A config is a tree of frozen pydantic models (strict types, unknown keys forbidden). YAML is read with
``yaml.SafeLoader`` (a key given twice is refused) and validated by pydantic; ``_config_error`` turns
pydantic's first error into one line: an unknown key lists the valid keys (with a close-match
suggestion); a value of the wrong type or out of range names the dotted key, the value and what is valid.
Every field documents itself (``Field(description=...)``, listed by ``describe_fields``) with recommended
values.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import core_schema

from atlas.errors import ConfigError

if typing.TYPE_CHECKING:
    from atlas.sampling.objectives import Composite

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
        try:
            return UnitSelection._parse(value)
        except ValueError as exc:
            raise ConfigError(f"{key}: {exc}") from None

    @staticmethod
    def _parse(value: Any) -> UnitSelection:
        """``parse`` without the key: raises ValueError (a pydantic validator, see the schema below)."""
        if isinstance(value, UnitSelection):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 0:
                raise ValueError(f"unit index {value} is negative; expected {_UNITS_VALID}")
            return UnitSelection(all=False, ranges=((value, value),))
        if isinstance(value, str):
            return UnitSelection._parse_text(value)
        if isinstance(value, list | tuple):
            if not value or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
                raise ValueError(f"invalid unit list {value!r}; expected {_UNITS_VALID}")
            return UnitSelection(all=False, ranges=tuple((v, v) for v in value))
        raise ValueError(f"invalid unit selection {value!r}; expected {_UNITS_VALID}")

    @staticmethod
    def _parse_text(value: str) -> UnitSelection:
        text = value.strip()
        if text == "all":
            return UnitSelection()
        ranges: list[tuple[int, int]] = []
        for part in text.split(","):
            m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
            if not m:
                raise ValueError(f"invalid unit selection {value!r}; expected {_UNITS_VALID}")
            lo = int(m.group(1))
            hi = int(m.group(2)) if m.group(2) is not None else lo
            if hi < lo:
                raise ValueError(f"range {part.strip()!r} is empty (end < start); expected {_UNITS_VALID}")
            ranges.append((lo, hi))
        return UnitSelection(all=False, ranges=tuple(ranges))

    @classmethod
    def __get_pydantic_core_schema__(cls, _source: Any, _handler: Any) -> core_schema.CoreSchema:
        """As a config field: validated by ``parse``, written by ``to_yaml``."""
        return core_schema.no_info_plain_validator_function(
            cls._parse, serialization=core_schema.plain_serializer_function_ser_schema(cls.to_yaml)
        )

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


# ------------------------------------------------------------------------------------------ base model

HUGE = 1e4  # upper bound of step sizes and weights: larger values are typos (every chain diverges)
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _as_float(value: Any) -> Any:
    """Numbers become floats: integers (not booleans) and numeric text (PyYAML reads 1e-3, without a dot,
    as a string). Infinities and NaN are refused; anything else is left to pydantic's strict float."""
    number = value
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        number = value = float(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an integer too large for a float
            number = math.inf
    if isinstance(number, float) and not math.isfinite(number):
        raise ValueError(f"{value!r} is not a finite number; give a finite value such as 1e-5")
    return number


Float = Annotated[float, BeforeValidator(_as_float)]


class Section(BaseModel):
    """A config section: frozen, strict (no silent str -> int), unknown keys refused.

    Constructing one directly (``ModelConfig(spec="x")``) raises ConfigError, as loading a file does.
    Change one with ``replace(section, key=value)``: ``model_copy(update=...)`` would not validate.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise _config_error(exc, type(self)) from None

    # pydantic builds nested sections itself (their errors keep the full location) unless __init__ is
    # custom; this wrapper only translates errors, so it is declared a base __init__.
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    @model_validator(mode="after")
    def _ints_fit_int64(self) -> Section:
        """Every integer fits in 64 bits, as torch, Arrow and Ray take it (a huge one is a typo)."""
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
                raise ValueError(
                    f"{name}: {value} does not fit in 64 bits; give one from {-(2**63)} to {2**63 - 1}"
                )
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML-able values; unit selections in their ``to_yaml`` form."""
        return _to_plain(self)


S = TypeVar("S", bound=BaseModel)


def replace(obj: S, **changes: Any) -> S:
    """A copy of config section ``obj`` with ``changes``, validated like a config file (ConfigError)."""
    return type(obj)(**{**dict(obj), **changes})


def _extra(f: FieldInfo) -> dict[str, Any]:
    """The field's own documentation flags: type_doc, targets_only, omit_default."""
    extra = f.json_schema_extra
    return extra if isinstance(extra, dict) else {}


# --------------------------------------------------------------------------------------------- sections


class PreprocessConfig(Section):
    """How a target wants its input image: overrides what the model spec (or its factory) declares.

    The target sees ``x = (fit(rgb01) * value_scale [channels in channel_order] - mean) / std``, where
    ``rgb01`` is the canonical picture (float RGB in [0, 1]) and ``fit`` brings it to ``size`` x ``size``.
    """

    size: int | None = Field(
        None,
        description="Square input side in pixels the target expects (CaffeNet 227, ResNet 224, tiny CNN 64); "
        "a picture of another size is fitted by geometry.",
        ge=1,
        le=4096,
    )
    geometry: Literal["center_crop", "resize"] | None = Field(
        None,
        description="How a picture of another size is fitted: center_crop (take the centre when larger, as "
        "DGN-AM crops G's 256 px to 227; resize when smaller) or resize (bilinear to size).",
    )
    channel_order: Literal["RGB", "BGR"] | None = Field(
        None, description="Channel order the target expects: RGB (torchvision) or BGR (Caffe models)."
    )
    value_scale: Float | None = Field(
        None,
        description="What full intensity is in the target's units before mean/std: 1.0 for [0,1] inputs "
        "(torchvision), 255.0 for [0,255] inputs (Caffe).",
        gt=0,
        le=HUGE,
    )
    mean: list[Float] | None = Field(
        None,
        description="Per-channel mean subtracted after scaling, in the target's channel order and value "
        "scale (torchvision [0.485, 0.456, 0.406]; Caffe BGR [104, 117, 123]).",
        json_schema_extra={"type_doc": "[float, float, float] | null"},
    )
    std: list[Annotated[Float, Field(gt=0)]] | None = Field(
        None,
        description="Per-channel std divided by after the mean, in the same order and scale (torchvision "
        "[0.229, 0.224, 0.225]; Caffe [1, 1, 1]); each > 0.",
        json_schema_extra={"type_doc": "[float > 0, ...x3] | null"},
    )

    @field_validator("mean", "std")
    @classmethod
    def _three_channels(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and len(value) != 3:
            raise ValueError(f"expected 3 values (one per channel), got {len(value)}: {value}")
        return value


class ModelConfig(Section):
    """A model given by a spec string, with optional weights file and preprocessing."""

    spec: str = Field(
        "",
        description="Model spec: toyworld:NAME, torchvision:NAME, python:pkg.module:factory, deepsim:fc6, "
        "dae:residual_mlp.",
    )
    weights: str | None = Field(
        None,
        description="State-dict file (.pt/.pth, torch.save(model.state_dict())); null: the toy world's "
        "cache, a factory that loads its own weights, or random weights (allow_random_weights).",
        json_schema_extra={"type_doc": "file | null"},
    )
    preprocess: PreprocessConfig | None = Field(
        None,
        description="Input image space override (targets only); see models.target.preprocess.*.",
        json_schema_extra={"targets_only": True},
    )
    output_layer: str | None = Field(
        None,
        description="Targets: the layer holding the class outputs (its units are kind 'output'); default: "
        "the model's own (python factories: atlas_output_layer) or its last layer. Name it for multi-head "
        "models.",
        json_schema_extra={"targets_only": True, "omit_default": True},
    )

    @model_validator(mode="before")
    @classmethod
    def _spec_shorthand(cls, data: Any) -> Any:
        return {"spec": data} if isinstance(data, str) else data  # target: toyworld:target

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        if not self.spec or ":" not in self.spec:
            raise ValueError(
                f"spec: {self.spec!r} is not a model spec; expected SCHEME:NAME such as toyworld:target, "
                "torchvision:alexnet, deepsim:fc6 or python:pkg.module:factory"
            )
        scheme = self.spec.partition(":")[0]
        if scheme not in MODEL_SCHEMES:  # before anything loads (atlas.models.registry.SCHEMES loads them)
            hint = difflib.get_close_matches(scheme, MODEL_SCHEMES, n=1)
            raise ValueError(
                f"spec: unknown model scheme {scheme!r} in {self.spec!r}"
                + (f" (did you mean {hint[0]!r}?)" if hint else "")
                + f"; valid: {', '.join(MODEL_SCHEMES)}"
            )
        if self.output_layer is not None and not self.output_layer.strip():
            raise ValueError("output_layer: empty layer name; name a layer (see `atlas layers SPEC`) or null")
        return self


# sections that change where and how fast a run computes, not what it computes (left out of its hash)
NON_RESULT_SECTIONS = ("out_dir", "storage", "ray", "compute")


def config_differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dicts (``sampler.steps``, ``layers.0.units``),
    the sections of :data:`NON_RESULT_SECTIONS` left out."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            if not prefix and key in NON_RESULT_SECTIONS:
                continue
            out += config_differences(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [
            d
            for i, (a, b) in enumerate(zip(old, new, strict=True))
            for d in config_differences(a, b, f"{prefix}{i}.")
        ]
    return [] if old == new else [prefix.rstrip(".")]


MODEL_SCHEMES = ("toyworld", "torchvision", "python", "deepsim", "dae")  # atlas.models.registry.SCHEMES


class ModelsConfig(Section):
    target: ModelConfig | None = Field(
        None,
        description="The network whose units are visualized: a spec string or "
        "{spec, weights, preprocess, output_layer}.",
    )
    generator: ModelConfig | None = Field(
        None,
        description="Image generator G for dgn_am / ppgn_h (code -> image): a spec string or "
        "{spec, weights}.",
    )
    dae: ModelConfig | None = Field(
        None,
        description="Denoising autoencoder on codes for ppgn_h with prior: dae: a spec string or "
        "{spec, weights}.",
    )
    code_layer: str | None = Field(
        None,
        description="Target layer whose output is G's code (prior: joint, real/facet-seeded starts); "
        "default: the generator's own.",
    )
    code_stats: str | None = Field(
        None,
        description="File with the code mean and per-dimension bounds (atlas code-stats); toy world: "
        "built in.",
        json_schema_extra={"type_doc": "file | null"},
    )
    allow_random_weights: bool = Field(
        False, description="Allow real-network specs without weights (random pictures!). Tests only."
    )

    @model_validator(mode="after")
    def _check(self) -> ModelsConfig:
        if self.target is None:
            raise ValueError("target: no target given; e.g. models: {target: toyworld:target}")
        for role in ("generator", "dae"):
            m = getattr(self, role)
            if m is not None and m.output_layer is not None:
                raise ValueError(f"{role}.output_layer: only a target has an output layer; remove it")
        if self.dae is not None and self.dae.preprocess is not None:
            raise ValueError("dae.preprocess: a DAE works on codes, not images; remove it")
        return self


# what may name a run's files and folders (a layer's partition, a shard): not hidden, not an option
FILE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._+-]*$")


class LayerConfig(Section):
    name: str = Field(
        "", description="Module name of the layer in the target (see `atlas layers SPEC`), e.g. fc8."
    )
    units: UnitSelection = Field(
        UnitSelection(),
        description="'all', a range '0-15', ranges and indices '0-15,20', or a list [1, 5, 9]; checked "
        "against the layer's size before anything runs.",
        json_schema_extra={"type_doc": "all | 'a-b,c' | [int, ...]"},
    )
    kind: Literal["auto", "output", "fc", "conv"] = Field(
        "auto",
        description="Unit kind; auto: the target's output layer is 'output', 2-D layers 'fc', 4-D 'conv'.",
    )
    objectives: list[str] = Field(
        default_factory=list,
        description="Composite objectives over this layer's units, each visualized like one more unit "
        "(numbered after the layer's own units): '3 + 5' (both at once), '3 - 5' (contrast), "
        "'0.7*3 + 0.3*7' (any weights).",
        json_schema_extra={"omit_default": True, "type_doc": "[str, ...]"},
    )
    pairs: list[list[int]] = Field(
        default_factory=list,
        description="Shorthand for objectives: [[3, 5], [1, 2]] = '3 + 5', '1 + 2' (units visualized "
        "together).",
        json_schema_extra={"omit_default": True, "type_doc": "[[int, int], ...]"},
    )

    @model_validator(mode="before")
    @classmethod
    def _name_shorthand(cls, data: Any) -> Any:
        return {"name": data} if isinstance(data, str) else data  # layers: [fc8]

    @model_validator(mode="after")
    def _check(self) -> LayerConfig:
        if not self.name.strip():
            raise ValueError("name: empty layer name; name a layer of the target (see `atlas layers SPEC`)")
        if not FILE_NAME.match(self.name) or ".." in self.name:
            raise ValueError(
                f"name: the layer {self.name!r} cannot name the run's files (letters, digits and '._+-', "
                "starting with a letter, digit or '_'); rename the module"
            )
        for pair in self.pairs:
            if len(pair) != 2 or pair[0] == pair[1]:
                raise ValueError(f"pairs: {pair} is not two different unit indices; write e.g. [3, 5]")
            if min(pair) < 0:
                raise ValueError(f"pairs: {pair} has a negative unit index; units count from 0 (e.g. [3, 5])")
        try:
            self.composites()  # syntax now; ranges once the layer's size is known (driver.resolve_layers)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return self

    def composite_texts(self) -> list[tuple[str, str]]:
        """``objectives`` then ``pairs`` as (the key that wrote it, expression), in the order their units
        are numbered: ``("objectives", "3 - 5")``, ``("pairs", "1 + 2")``."""
        return [("objectives", t) for t in self.objectives] + [("pairs", f"{a} + {b}") for a, b in self.pairs]

    def composites(self, n_units: int | None = None, prefix: str = "") -> tuple[Composite, ...]:
        """The layer's composite objectives (units n_units, n_units + 1, ...); a ConfigError naming
        ``{prefix}objectives`` or ``{prefix}pairs`` when one cannot be read, names a unit outside
        0..n_units-1, or repeats another (the same units and weights: it would be drawn twice)."""
        from atlas.sampling.objectives import parse_composite  # the sampling package imports this module

        out: list[Composite] = []
        for field_name, text in self.composite_texts():
            comp = parse_composite(text, n_units, f"{prefix}{field_name}")
            twin = next((c for c in out if sorted(c.terms) == sorted(comp.terms)), None)
            if twin is not None:
                raise ConfigError(
                    f"{prefix}{field_name}: {text!r} repeats {twin.text!r}; list each composite once"
                )
            out.append(comp)
        return tuple(out)


class DgnAmConfig(Section):
    """DGN-AM (Nguyen et al. 2016, Eq. 1) step settings."""

    lr: Float = Field(
        0.1,
        description="Start step size of the normalized code step (toy world 0.1; CaffeNet fc6: 8).",
        gt=0,
        le=HUGE,
    )
    lr_end: Float = Field(
        1e-3, description="Final step size; decays linearly (original: 1e-10).", ge=0, le=HUGE
    )
    l2_decay: Float = Field(
        0.99, description="Multiplicative decay of h after each step (original 0.99).", gt=0, le=1
    )


class PpgnConfig(Section):
    """PPGN-h (Nguyen et al. 2017, Eq. 11) sampler settings."""

    prior: Literal["dae", "joint"] = Field(
        "dae", description="R(h): the DAE on h, or E(G(h)) (Noiseless Joint PPGN-h)."
    )
    eps1: Float = Field(
        1e-5,
        description="Prior term weight (toward realistic codes); 1e-3 more abstract, 1e-1 ignores class.",
        ge=0,
        le=HUGE,
    )
    eps2: Float = Field(
        1.0, description="Condition term weight (toward the unit). Original 1.", ge=0, le=HUGE
    )
    eps3: Float = Field(1e-5, description="Noise std (diversity). Original 1e-17 .. 1e-5.", ge=0, le=HUGE)
    noise: Literal["absolute", "relative"] = Field(
        "absolute",
        description="absolute: noise std eps3 (Eq. 11); relative: eps3 x each chain's mean |eps2 grad|, so "
        "noise and condition keep their balance whatever the unit's activation scale.",
        json_schema_extra={"omit_default": True},
    )
    lr: Float = Field(
        1.0,
        description="Step size: of the normalized update (original 1), or the factor on d (eq11).",
        gt=0,
        le=HUGE,
    )
    step: Literal["normalized", "eq11"] = Field(
        "normalized",
        description="normalized: h += lr d / mean|d| (released code); eq11: h += lr d (Eq. 11 as printed).",
    )
    save_every: int = Field(
        5, description="Keep a snapshot every N steps (original 5 for classes, 10 for conv5).", ge=1
    )
    threshold: Float = Field(
        0.0,
        description="Keep a snapshot only when the unit's softmax probability exceeds this (PPGN 0.98).",
        ge=0,
        le=1,
    )
    reset_every: int = Field(
        0, description="Re-draw h every N steps for diversity (0 = never; original 100 for conv5).", ge=0
    )


class PixelConfig(Section):
    """Pixel-space activation maximization with hand-made priors (the baselines)."""

    lr: Float = Field(0.05, description="Normalized step size in pixel space ([0,1] images).", gt=0, le=HUGE)
    l2_decay: Float = Field(
        1.0,
        description="Multiplicative decay toward grey after each step (1 = off; 0.99 typical).",
        gt=0,
        le=1,
    )
    blur_every: int = Field(0, description="Gaussian blur every N steps (0 = off; 4 typical).", ge=0)
    blur_sigma: Float = Field(0.5, description="Blur sigma in pixels.", gt=0, le=100)
    jitter: int = Field(0, description="Random translation in pixels each step (0 = off).", ge=0, le=1024)
    tv: Float = Field(0.0, description="Total-variation penalty weight (0 = off).", ge=0, le=HUGE)


class RobustnessFields(Section):
    """Transformation robustness (Lucid): what the target sees is a randomly warped copy of the picture, each
    chain drawing its own pad, jitter, scale and rotation every step (one affine warp, grey outside)."""

    pad: Float = Field(
        0.05,
        description="Grey padding around the picture, as a fraction of its side (Lucid: 12 px at 224).",
        ge=0,
        le=1,
    )
    jitter: Float = Field(
        0.035,
        description="Random translation up to this fraction of the side, each step (Lucid: 8 px at 224).",
        ge=0,
        le=1,
    )
    scale_min: Float = Field(0.9, description="Smallest random zoom (Lucid 0.9).", gt=0, le=10)
    scale_max: Float = Field(1.1, description="Largest random zoom (Lucid 1.1).", gt=0, le=10)
    rotate: Float = Field(
        10.0, description="Random rotation up to +- this many degrees (Lucid 10).", ge=0, le=180
    )

    @model_validator(mode="after")
    def _check_scale(self) -> RobustnessFields:
        if self.scale_min > self.scale_max:
            raise ValueError(
                f"scale_min: {self.scale_min:g} is above scale_max {self.scale_max:g}; give scale_min <= "
                "scale_max (e.g. 0.9 and 1.1)"
            )
        return self


class FourierConfig(RobustnessFields):
    """Lucid/Lucent Fourier parametrization (Olah et al. 2017): 1/f-scaled spectrum, decorrelated colour,
    sigmoid; Adam on the spectrum; transformation robustness."""

    lr: Float = Field(0.05, description="Adam step size on the spectrum (Lucid 0.05).", gt=0, le=HUGE)
    decay_power: Float = Field(
        1.0, description="Spectrum scale 1 / f^decay_power (Lucid 1.0; Horama 1.5).", ge=0, le=4
    )
    init_std: Float = Field(0.01, description="Std of the random start spectrum (Lucid 0.01).", gt=0, le=HUGE)


class MacoConfig(Section):
    """MACO (Fel et al. 2023): optimize the Fourier phase only; the magnitude stays the mean amplitude
    spectrum of natural images."""

    lr: Float = Field(
        0.2,
        description="Adam step size on the phase (toy world: 0.2 best of 0.05 / 0.2 / 1; Horama: NAdam 1.0).",
        gt=0,
        le=HUGE,
    )
    spectrum: Literal["real", "power_law"] = Field(
        "real",
        description="Fixed magnitude: 'real' = mean amplitude spectrum of facets.real_images (toy world or "
        "your folder; falls back to power_law without them), 'power_law' = 1/f.",
    )
    crop_min: Float = Field(
        0.7,
        description="Smallest random crop, as a fraction of the picture's side (MACO crops about the "
        "model's input from a 5x larger canvas; here the canvas is the input size).",
        gt=0,
        le=1,
    )
    crop_max: Float = Field(1.0, description="Largest random crop (fraction of the side).", gt=0, le=1)
    noise: Float = Field(
        0.05, description="Gaussian + uniform noise added to each crop (MACO 0.05).", ge=0, le=1
    )

    @model_validator(mode="after")
    def _check_crop(self) -> MacoConfig:
        if self.crop_min > self.crop_max:
            raise ValueError(
                f"crop_min: {self.crop_min:g} is above crop_max {self.crop_max:g}; give crop_min <= crop_max"
            )
        return self


class AccentuationConfig(RobustnessFields):
    """Feature accentuation (Hamblin et al. 2024): from a real image, raise the unit while an L2 distance in
    an early layer keeps the picture close to the start image there."""

    lr: Float = Field(
        0.05, description="Adam step size on the spectrum (Fourier parametrization).", gt=0, le=HUGE
    )
    decay_power: Float = Field(1.0, description="Spectrum scale 1 / f^decay_power.", ge=0, le=4)
    weight: Float = Field(
        1.0,
        description="Weight of the distance term, in objective units: weight x ||phi(x) - phi(x0)||^2 / "
        "||phi(x0)||^2 of the early layer phi (0 = plain Fourier ascent from the real image; toy world 1).",
        ge=0,
        le=HUGE,
    )
    layer: str | None = Field(
        None,
        description="Target layer of the distance; default: the first layer below the input's resolution "
        "(toy world pool1, AlexNet features.0).",
    )

    @field_validator("layer")
    @classmethod
    def _layer_named(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("empty layer name; name an early target layer or null (the default)")
        return value


class GaConfig(Section):
    """XDream-style genetic algorithm in G's code space (Ponce et al. 2019; Xiao & Kreiman 2020): forward
    passes only. ``sampler.steps`` counts generations."""

    population: int = Field(20, description="Codes per chain per generation (XDream 20-40).", ge=2, le=4096)
    elite: int = Field(2, description="Best codes kept unchanged each generation.", ge=0, le=4095)
    temperature: Float = Field(
        1.0,
        description="Parent selection: softmax of z-scored fitness / temperature (lower: greedier).",
        gt=0,
        le=HUGE,
    )
    mutation_rate: Float = Field(0.3, description="Probability that a code element mutates.", ge=0, le=1)
    mutation_size: Float = Field(
        0.5, description="Std of a mutation, in code standard deviations.", ge=0, le=HUGE
    )
    init_noise: Float = Field(
        0.5,
        description="First generation: the start code + this x std x N(0, 1) (member 0 unchanged).",
        ge=0,
        le=HUGE,
    )

    @model_validator(mode="after")
    def _check_elite(self) -> GaConfig:
        if self.elite >= self.population:
            raise ValueError(
                f"elite: {self.elite} keeps the whole population of {self.population}; give elite < "
                "population"
            )
        return self


class CmaesConfig(Section):
    """Separable CMA-ES (diagonal covariance; Ros & Hansen 2008) in G's code space, in code-std units:
    forward passes only. ``sampler.steps`` counts generations."""

    population: int = Field(
        20, description="Samples per chain per generation (lambda; CMA-ES default 4 + 3 ln D).", ge=2, le=4096
    )
    sigma: Float = Field(0.5, description="Initial step size, in code standard deviations.", gt=0, le=HUGE)


class SamplerConfig(Section):
    method: Literal["dgn_am", "ppgn_h", "pixel", "fourier", "maco", "accentuation", "ga", "cmaes"] = Field(
        "dgn_am",
        description="Sampler: dgn_am (Eq. 1), ppgn_h (Eq. 11), pixel; peers (docs/methods.md): fourier, "
        "maco, accentuation (pixel family, no generator), ga, cmaes (G's code, forward passes only).",
    )
    steps: int = Field(
        200, description="Optimization steps per chain (original 200; toy world 100-200).", ge=1, le=100_000
    )
    chains_per_unit: int = Field(
        4, description="Chains per unit (>= 4 for facets; PPGN diversity needs several).", ge=1, le=1024
    )
    objective: Literal["raw", "softmax", "log_softmax"] = Field(
        "raw",
        description="raw activation (DGN-AM), softmax, or log_softmax across the layer (PPGN; survey "
        "Table 4.2).",
    )
    spatial: Literal["center", "mean"] = Field(
        "center", description="Conv units: one position at the map centre (DGN-AM/PPGN) or the channel mean."
    )
    start: Literal["random", "mean", "real", "facet_seeded"] = Field(
        "facet_seeded",
        description="Start codes: random N(0,1) clipped, mean code + noise, a real image's code, or "
        "facet-seeded (k-means); real and facet_seeded need facets.real_images.",
    )
    start_noise: Float = Field(
        0.0,
        description="Std of the noise added to start codes, in code stds (mean, real and facet_seeded code "
        "starts; every method). Pixel starts have their own (atlas/sampling/starts.py).",
        ge=0,
        le=HUGE,
    )
    record_every: int = Field(10, description="Record chain statistics every N steps.", ge=1)
    start_pool: int = Field(
        1,
        description="Each chain starts from the best of this many draws of its start (scored by the unit's "
        "objective in one forward pass, no gradient): a search over start regions, e.g. colours the "
        "gradient does not cross. mean and random starts, code methods; 1 = off.",
        ge=1,
        le=1024,
        json_schema_extra={"omit_default": True},
    )
    start_pool_noise: Float = Field(
        1.0,
        description="Std, in code stds, of the pool's draws around the mean code (start: mean with "
        "start_pool > 1); the chosen draw then gets no further noise.",
        ge=0,
        le=HUGE,
        json_schema_extra={"omit_default": True},
    )
    relu_gradient: Literal["exact", "redirected"] = Field(
        "redirected",
        description="Gradient through the target's nn.ReLU modules while chains climb: exact, or "
        "redirected (Lucid): an example whose gradient a ReLU blocks entirely gets the incoming gradient "
        "through it, so a unit that starts dead (0 on the start picture) still moves. Values are unchanged; "
        "gradient methods.",
    )
    stop_at: Float = Field(
        0.0,
        description="Stop a chain once its unit's activation reaches this multiple of the unit's highest "
        "activation on the real images (1.0: the natural maximum; 0 = never). Keeps pictures in the natural "
        "range; without real images chains run every step.",
        ge=0,
        le=HUGE,
        json_schema_extra={"omit_default": True},
    )
    diversity: Float = Field(
        0.0,
        description="Weight of the diversity term (Lucid): each chain's objective loses this x its mean "
        "cosine similarity to the other chains of its unit at sampler.diversity_layer (Gram matrices for "
        "conv layers). Gradient methods; 0 = off.",
        ge=0,
        le=HUGE,
        json_schema_extra={"omit_default": True},
    )
    diversity_layer: str | None = Field(
        None,
        description="Layer the diversity term compares; default: the earliest of the three path layers "
        "before the unit's layer (an early conv layer: style diversity).",
        json_schema_extra={"omit_default": True},
    )
    dgn_am: DgnAmConfig = Field(default_factory=DgnAmConfig, description="DGN-AM settings.")
    ppgn_h: PpgnConfig = Field(default_factory=PpgnConfig, description="PPGN-h settings.")
    pixel: PixelConfig = Field(default_factory=PixelConfig, description="Pixel baseline settings.")
    fourier: FourierConfig = Field(
        default_factory=FourierConfig,
        description="Fourier (Lucid) settings.",
        json_schema_extra={"omit_default": True},
    )
    maco: MacoConfig = Field(
        default_factory=MacoConfig, description="MACO settings.", json_schema_extra={"omit_default": True}
    )
    accentuation: AccentuationConfig = Field(
        default_factory=AccentuationConfig,
        description="Feature accentuation settings.",
        json_schema_extra={"omit_default": True},
    )
    ga: GaConfig = Field(
        default_factory=GaConfig,
        description="Genetic algorithm settings.",
        json_schema_extra={"omit_default": True},
    )
    cmaes: CmaesConfig = Field(
        default_factory=CmaesConfig, description="CMA-ES settings.", json_schema_extra={"omit_default": True}
    )


class FacetConfig(Section):
    enabled: bool = Field(True, description="Cluster each unit's chain end points into facets.")
    max_facets: int = Field(
        4, description="Upper bound on facets per unit (and k of facet-seeded k-means).", ge=1, le=64
    )
    distance: Float = Field(
        0.15,
        description="Cosine distance (facet-layer features) between cluster means above which two facets "
        "stay apart; toy world: facets of one class 0.18-0.30 apart, chains of one facet < 0.1.",
        gt=0,
        le=2,
    )
    layer: str | None = Field(
        None,
        description="Target layer whose features are clustered into facets; default: the penultimate layer "
        "(the last 1-D layer before the output layer).",
        json_schema_extra={"omit_default": True},
    )
    real_images: str | None = Field(
        "toyworld",
        description="Real-image set for facet seeds and dataset examples: 'toyworld' (toy-world targets), a "
        "folder of images (every file must decode), or null.",
        json_schema_extra={"type_doc": "toyworld | folder | null"},
    )
    top_k_real: int = Field(
        9, description="Real top-k images recorded per unit (dataset examples).", ge=0, le=100
    )
    seed_pool: int = Field(
        300, description="Top-activating real images clustered for facet-seeded starts.", ge=1
    )

    @field_validator("layer")
    @classmethod
    def _layer_named(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("empty layer name; name a target layer or null (the penultimate layer)")
        return value

    @field_validator("real_images")
    @classmethod
    def _images_named(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("empty path; give 'toyworld', a folder of images, or null")
        return value


class ComputeConfig(Section):
    device: str = Field(
        "auto",
        description="auto (cuda if present, else cpu), cpu, cuda, or cuda:N.",
        json_schema_extra={"type_doc": "auto | cpu | cuda | cuda:N"},
    )
    batch_size: int = Field(
        64, description="Chains per forward/backward pass (CPU 32-128; GPU: autotune with 0).", ge=0, le=65536
    )
    autocast: Literal["auto", "none", "bf16", "fp16"] = Field(
        "auto",
        description="Mixed precision; auto = bf16 on CUDA and CPUs with native bf16 (AVX512-BF16, AMX); "
        "fp16: CUDA only.",
    )
    channels_last: bool = Field(
        True,
        description="Use channels_last memory format (CUDA; CPU in bf16 and float32 alike: faster where "
        "measured).",
    )
    compile: bool = Field(False, description="torch.compile the step (CUDA; measure first).")
    fold_batchnorm: bool = Field(
        True, description="Fold frozen BatchNorm into the conv/linear before it (same outputs, fewer passes)."
    )
    threads: int | None = Field(
        None,
        description="torch intra-op threads per worker (default: CPUs given to the worker).",
        ge=1,
        le=1024,
    )

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if not _DEVICE.fullmatch(value):
            raise ValueError(f"invalid device {value!r}; valid: auto, cpu, cuda, cuda:N")
        return value

    @model_validator(mode="after")
    def _check(self) -> ComputeConfig:
        if self.autocast == "fp16" and self.device == "cpu":
            raise ValueError(
                "autocast: fp16 needs a CUDA device and compute.device is 'cpu'; use bf16 or auto"
            )
        return self


class RayConfig(Section):
    address: str | None = Field(None, description="Ray address; null: RAY_ADDRESS or a new local instance.")
    num_workers: int | None = Field(
        None,
        description="AtlasWorker actors; default: as many as the cluster's GPUs (with gpus_per_worker) or "
        "CPUs / cpus_per_worker allow, at most one per shard.",
        ge=1,
        le=100_000,
    )
    cpus_per_worker: Float = Field(1.0, description="CPUs reserved per actor.", gt=0, le=1024)
    gpus_per_worker: Float | None = Field(
        None, description="GPUs per actor; default 1 where the cluster has GPUs.", ge=0, le=64
    )
    max_restarts: int = Field(
        3, description="Times a dead actor is restarted (actor deaths, not lost tasks).", ge=0
    )
    max_shard_retries: int = Field(
        3, description="Times one shard is re-queued after its actor died under it.", ge=0
    )
    units_per_shard: int = Field(16, description="Units per shard (the resume granularity).", ge=1)
    autoscaling: bool = Field(
        False,
        description="The cluster adds nodes on demand (cluster.yaml): actor requests no current node can "
        "host wait instead of being refused. Set num_workers and gpus_per_worker with it.",
    )
    start_timeout_s: Float = Field(
        900.0,
        description="Give up when no actor is alive or could be (re)started for this long (models load in "
        "minutes on a busy node; autoscaled nodes take longer).",
        gt=0,
    )


class StoreConfig(Section):
    keep_snapshots: bool = Field(True, description="Store PPGN snapshots as images.")
    activations_full_max: int = Field(
        1024,
        description="Store the whole layer's activations when it has at most this many units, else the "
        "top-k.",
        ge=1,
    )
    activations_top_k: int = Field(32, description="Top-k activations stored for wider layers.", ge=1)


class StorageConfig(Section):
    """Where the run lives when ``out_dir`` is a URI (pyarrow.fs; credentials the provider's usual way)."""

    shared: bool = Field(
        False,
        description="A plain local out_dir is a mount every Ray node shares (NFS); needed for a local path "
        "on a multi-node cluster.",
    )
    endpoint_override: str | None = Field(
        None,
        description="S3-compatible endpoint, e.g. http://127.0.0.1:9000 (MinIO); default: AWS_ENDPOINT_URL "
        "or AWS.",
    )
    region: str | None = Field(
        None, description="Object-store region; default: AWS_REGION / AWS_DEFAULT_REGION."
    )
    anonymous: bool = Field(False, description="Connect without credentials (public buckets).")


class ToyWorldRef(Section):
    preset: Literal["default", "micro", "pairs"] = Field(  # = presets.PRESETS (a test checks)
        "default", description="Toy-world preset used by toyworld: specs."
    )
    cache_dir: str | None = Field(
        None, description="Cache directory (default $ATLAS_CACHE or ~/.cache/atlas)."
    )


CODE_METHODS = ("dgn_am", "ppgn_h", "ga", "cmaes")  # optimize G's code: need a generator
PIXEL_METHODS = ("pixel", "fourier", "maco", "accentuation")  # optimize a picture: no generator


_RUN_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


def check_sampler_models(
    method: str, prior: str, *, generator: bool, dae: bool, code_layer: str | None | bool = True
) -> None:
    """The one source of "this sampler needs that model" errors (config, pre-flight and Engine).

    ``code_layer``: the resolved code layer, or True when it is not known yet (config time).
    """
    if method in CODE_METHODS and not generator:
        raise ConfigError(
            f"models.generator: sampler.method {method!r} needs a generator; "
            "set models.generator or use a pixel-family method (pixel, fourier, maco, accentuation)"
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


class RunConfig(Section):
    name: str = Field("atlas", description="Run name: the output goes to <out_dir>/<name>.")
    out_dir: str = Field(
        "runs",
        description="Where runs live: a local path, file://, s3://bucket/prefix or gs://bucket/prefix.",
    )
    seed: int = Field(
        0, description="Run seed; chain seeds derive from (seed, layer, unit, chain).", ge=0, le=2**63 - 1
    )
    # validated even when left out: a config without models names no target
    models: ModelsConfig = Field({}, description="Target, generator and DAE.", validate_default=True)
    layers: list[LayerConfig] = Field([], description="Layers to map, each with a unit selection.")
    sampler: SamplerConfig = Field(default_factory=SamplerConfig, description="Sampler method and settings.")
    facets: FacetConfig = Field(default_factory=FacetConfig, description="Multifaceted units.")
    compute: ComputeConfig = Field(default_factory=ComputeConfig, description="Device and batching.")
    ray: RayConfig = Field(default_factory=RayConfig, description="Distributed execution.")
    store: StoreConfig = Field(default_factory=StoreConfig, description="What is written.")
    storage: StorageConfig = Field(
        default_factory=StorageConfig, description="Object-store connection and shared mounts."
    )
    toyworld: ToyWorldRef = Field(
        default_factory=ToyWorldRef, description="Toy world used by toyworld: specs."
    )

    @model_validator(mode="after")
    def _check(self) -> RunConfig:
        if not _RUN_NAME.fullmatch(self.name) or len(self.name) > 128:
            raise ValueError(
                f"name: {self.name!r} is not a valid run name; use up to 128 letters, digits, '.', '_', '-', "
                "not starting with '.' (the run goes to <out_dir>/<name>)"
            )
        if not self.out_dir.strip():
            raise ValueError("out_dir: empty; give a folder (e.g. runs) or s3://bucket/prefix")
        if not self.layers:
            raise ValueError("layers: no layers selected; give at least one, e.g. layers: [{name: fc8}]")
        names = [layer.name for layer in self.layers]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"layers: layer {sorted(dup)[0]!r} is listed twice; list each layer once")
        self._check_sampler()
        return self

    def _check_sampler(self) -> None:
        s = self.sampler
        try:
            check_sampler_models(
                s.method,
                s.ppgn_h.prior,
                generator=self.models.generator is not None,
                dae=self.models.dae is not None,
            )
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        pooled = s.start_pool > 1 and s.start_pool_noise > 0  # each chain picks from its own draws
        if (
            s.start == "mean"
            and s.chains_per_unit > 1
            and s.start_noise == 0
            and not pooled
            and _deterministic_steps(s)
        ):
            raise ValueError(
                f"sampler.start_noise: with start: mean and no noise all {s.chains_per_unit} chains of a "
                f"unit are identical ({s.method} adds no noise of its own); set sampler.start_noise > 0 "
                "(e.g. 0.1), another sampler.start, or sampler.chains_per_unit: 1"
            )


# ------------------------------------------------------------------------------------------ validation


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _unwrap(tp: Any) -> Any:
    """``X`` from ``Annotated[X, ...]`` and ``X | None``."""
    while True:
        origin = typing.get_origin(tp)
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if origin is Annotated or (origin in (typing.Union, types.UnionType) and len(args) == 1):
            tp = args[0]
        else:
            return tp


def _type_at(root: type[BaseModel], loc: tuple[Any, ...]) -> Any:
    """The (unwrapped) type at a pydantic error location: ('layers', 0, 'units') -> UnitSelection."""
    tp: Any = root
    for part in loc:
        tp = _unwrap(tp)
        if typing.get_origin(tp) is list:
            tp = typing.get_args(tp)[0]
        elif _is_section(tp) and part in tp.model_fields:
            tp = tp.model_fields[part].annotation
        else:
            return None
    return _unwrap(tp)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin is list:
        item = _unwrap(typing.get_args(tp)[0])
        return "a list of mappings" if _is_section(item) else f"a list of {_type_name(item)}"
    if tp is UnitSelection:
        return _UNITS_VALID
    if _is_section(tp):
        return "a spec string or a mapping" if tp is ModelConfig else "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false"}.get(tp, str(tp))


def _bound(value: Any) -> str:
    """A range bound as written: 10000 (not 10000.0), 0.5."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


_RANGE_WORDS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
_UNKNOWN_KEY = ("extra_forbidden", "invalid_key")  # invalid_key: a key that is not a string (YAML 1: x)


def _unknown_key(root: type[BaseModel], loc: tuple[Any, ...], prefix: str) -> str:
    section = _type_at(root, loc[:-1])
    valid = list(section.model_fields) if _is_section(section) else []
    hint = difflib.get_close_matches(str(loc[-1]), valid, n=1)
    extra = f" (did you mean {hint[0]!r}?)" if hint else ""
    where = ".".join(str(p) for p in (*([prefix] if prefix else []), *loc[:-1]))
    inside = f" in '{where}'" if where else ""
    return f"unknown config key '{_dotted(prefix, loc)}'{extra}; valid keys{inside}: {', '.join(valid)}"


def _dotted(prefix: str, loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in ((prefix, *loc) if prefix else loc))


def _error_line(err: Any, root: type[BaseModel], prefix: str) -> str:
    """One pydantic error as the one-line message: dotted key, the bad value, what is valid."""
    loc, kind, value, ctx = tuple(err["loc"]), err["type"], err.get("input"), err.get("ctx") or {}
    if kind in _UNKNOWN_KEY:
        return _unknown_key(root, loc, prefix)
    key, tp = _dotted(prefix, loc), _type_at(root, loc)
    if kind == "value_error":
        message = str(ctx["error"])
        if not key:
            return message
        # a section's own validators name its key ("spec: ..."); a field's validator says what is wrong
        return f"{key}.{message}" if _is_section(tp) else f"{key}: {message}"
    if kind == "literal_error":
        choices = typing.get_args(tp)
        hint = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        return f"{key}: invalid value {value!r}; valid: {', '.join(repr(c) for c in choices)}{extra}"
    bounds = [f"{_RANGE_WORDS[k]} {_bound(ctx[k])}" for k in _RANGE_WORDS if k in ctx]
    if bounds:
        if tp is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)  # pydantic reports the input of an optional or list item as given
        return f"{key}: value {value!r} is out of range; must be {bounds[0]}"
    return f"{key}: expected {_type_name(tp)}, got {value!r}"


def _config_error(exc: ValidationError, root: type[BaseModel], prefix: str = "") -> ConfigError:
    """Pydantic's first error as a one-line ConfigError; an unknown key (a typo) before any other."""
    errors = exc.errors(include_url=False)
    first = next((e for e in errors if e["type"] in _UNKNOWN_KEY), errors[0])
    return ConfigError(_error_line(first, root, prefix))


def build(cls: type[S], data: Any, prefix: str = "") -> S:
    """Validate the plain mapping ``data`` as section ``cls``; errors name keys under ``prefix``."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise _config_error(exc, cls, prefix) from None


def _to_plain(obj: Any) -> Any:
    if isinstance(obj, UnitSelection):
        return obj.to_yaml()
    if isinstance(obj, BaseModel):
        return {
            name: _to_plain(getattr(obj, name))
            for name, f in type(obj).model_fields.items()
            # a newer optional key left at its default is not written: older configs keep their hash
            if not (
                _extra(f).get("omit_default")
                and getattr(obj, name) == f.get_default(call_default_factory=True)
            )
        }
    if isinstance(obj, list | tuple):
        return [_to_plain(v) for v in obj]
    return obj


# ------------------------------------------------------------------------------------------- overrides


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply ``a.b.c=value`` (value parsed as YAML) to a nested mapping in place; list items by index."""
    dotted, parts, value = _parse_assignment(assignment)
    node: Any = data
    for i, part in enumerate(parts[:-1]):
        node = _descend(node, part, dotted, parts[: i + 1])
    last = parts[-1]
    if isinstance(node, list):
        if not last.isdigit() or int(last) >= len(node):
            raise ConfigError(f"--set {dotted}: no list item {last!r}")
        node[int(last)] = value
    else:
        node[last] = value


def _parse_assignment(assignment: str) -> tuple[str, list[str], Any]:
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected KEY=VALUE, e.g. --set sampler.steps=50")
    dotted, raw = assignment.split("=", 1)
    parts = dotted.strip().split(".")
    if not all(parts):
        raise ConfigError(
            f"--set {assignment!r}: empty key or key part; expected KEY=VALUE with dotted keys, e.g. "
            "--set sampler.steps=50"
        )
    try:
        value = yaml.load(raw, Loader=_UniqueKeyLoader) if raw.strip() else ""  # noqa: S506 - a SafeLoader
    except DuplicateKeyError as exc:
        raise ConfigError(f"--set {assignment!r}: {exc}") from None
    except yaml.YAMLError:
        value = raw
    return dotted, parts, value


def _descend(node: Any, part: str, dotted: str, path: list[str]) -> Any:
    """Child ``part`` of ``node`` (at ``path``); a spec string or nothing there becomes a mapping."""
    if isinstance(node, list):
        if not part.isdigit() or int(part) >= len(node):
            raise ConfigError(f"--set {dotted}: no list item {part!r} at '{'.'.join(path[:-1])}'")
        return node[int(part)]
    child = node.get(part)
    if isinstance(child, str) and part in ("target", "generator", "dae"):
        child = node[part] = {"spec": child}
    if child is None:
        child = node[part] = {}
    if not isinstance(child, dict | list):
        raise ConfigError(f"--set {dotted}: '{'.'.join(path)}' is a value, not a section")
    return child


def config_from_dict(data: dict[str, Any], overrides: typing.Sequence[str] = ()) -> RunConfig:
    data = dict(data or {})
    for assignment in overrides:
        apply_override(data, assignment)
    return build(RunConfig, data)


class DuplicateKeyError(yaml.YAMLError):
    """A mapping that names one key twice (YAML keeps the last silently)."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping, naming it and both lines."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults`: its keys may be overridden
                continue
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            line = key_node.start_mark.line + 1
            if isinstance(key, typing.Hashable) and key in seen:
                raise DuplicateKeyError(
                    f"key {key!r} appears twice (lines {seen[key]} and {line}); keep one (merge the two)"
                )
            if isinstance(key, typing.Hashable):
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The mapping a YAML config file holds (an empty file: {}); one-line errors for a missing, unreadable,
    invalid or non-mapping file and for a key given twice."""
    p = Path(path).expanduser()  # '~/x.yaml' quoted, or after '=', reaches us unexpanded
    if p.is_dir():
        raise ConfigError(
            f"config path {str(p)!r} is a directory; pass a YAML file such as configs/demo.yaml"
        )
    if not p.exists():
        raise ConfigError(f"config file {str(p)!r} not found; pass a YAML file such as configs/demo.yaml")
    if not p.is_file():
        raise ConfigError(
            f"config path {str(p)!r} is not a regular file; pass a YAML file such as configs/demo.yaml"
        )
    try:
        data = yaml.load(p.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except DuplicateKeyError as exc:
        raise ConfigError(f"config file {str(p)!r}: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"config file {str(p)!r} is unreadable ({type(exc).__name__}); pass a UTF-8 YAML text file"
        ) from None
    except RecursionError:
        raise ConfigError(f"config file {str(p)!r} nests too deeply to be a config") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config file {str(p)!r} is not valid YAML{where}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(p)!r} must hold a mapping of keys, got {type(data).__name__}")
    return data


def load_config(path: str | os.PathLike[str], overrides: typing.Sequence[str] = ()) -> RunConfig:
    """Read a YAML config file, apply dotted overrides, validate. Raises ConfigError."""
    return config_from_dict(read_config_file(path), overrides)


# ------------------------------------------------------------------------------------------ `atlas config`


def _bounds(f: FieldInfo) -> dict[str, Any]:
    """The range constraints of a field (ge, gt, le, lt) as declared."""
    return {k: getattr(m, k) for m in f.metadata for k in _RANGE_WORDS if getattr(m, k, None) is not None}


def _short_type(tp: Any, f: FieldInfo) -> str:
    """Compact type with its valid range, for `atlas config`: 'int >= 1, <= 100000', 'str | null'."""
    if "type_doc" in _extra(f):
        return str(_extra(f)["type_doc"])
    origin = typing.get_origin(tp)
    if origin is Annotated:
        return _short_type(typing.get_args(tp)[0], f)
    if origin is Literal:
        return " | ".join(str(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_short_type(a, f) for a in typing.get_args(tp))
    if origin is list:
        item = _unwrap(typing.get_args(tp)[0])
        return "list of mappings" if _is_section(item) else f"list of {_short_type(item, f)}"
    if tp is UnitSelection:
        return "units"
    if tp is ModelConfig:
        return "spec | mapping"
    if _is_section(tp):
        return "mapping"
    name = {int: "int", float: "float", str: "str", bool: "bool", type(None): "null"}.get(tp, str(tp))
    if tp in (int, float):
        bounds = [
            f"{_RANGE_WORDS[k]} {'2^63-1' if v == 2**63 - 1 else format(v, 'g')}"
            for k, v in _bounds(f).items()
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
    cls: type[BaseModel] = RunConfig, prefix: str = "", *, targets: bool = True
) -> list[tuple[str, str, str, str]]:
    """(dotted key, type with range, default, doc) for every key, nested ones included, for `atlas config`.

    Optional sections (``models.target``, ``models.target.preprocess``) and list items (``layers[]``) are
    listed with their own keys; target-only keys are left out under ``models.generator`` / ``models.dae``.
    """
    rows: list[tuple[str, str, str, str]] = []
    for name, f in cls.model_fields.items():
        if _extra(f).get("targets_only") and not targets:
            continue
        key, tp = f"{prefix}{name}", f.annotation
        if _is_section(tp):  # a section: its keys only
            rows.extend(describe_fields(tp, key + "."))
            continue
        default = f.get_default(call_default_factory=True)
        rows.append((key, _short_type(tp, f), _yaml_value(_to_plain(default)), f.description or ""))
        inner = _unwrap(tp)
        if typing.get_origin(inner) is list and _is_section(_unwrap(typing.get_args(inner)[0])):
            rows.extend(describe_fields(_unwrap(typing.get_args(inner)[0]), key + "[]."))
        elif _is_section(inner):  # an optional mapping: models.target, models.target.preprocess
            for_target = name == "target" if cls is ModelsConfig else targets
            rows.extend(describe_fields(inner, key + ".", targets=for_target))
    return rows
