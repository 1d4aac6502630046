"""The whole run config (``RunConfig``), its cross-field rules, and how two runs' configs differ."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection
from typing import Any

from pydantic import (
    Field,
    model_validator,
)

from atlas.config.execution import ComputeConfig, RayConfig, StorageConfig, StoreConfig, ToyWorldRef
from atlas.config.layers import LayerConfig
from atlas.config.models import ModelsConfig
from atlas.config.sampler import FacetConfig, SamplerConfig
from atlas.config.section import Section
from atlas.errors import AtlasError, ConfigError
from atlas.uri_filesystem import is_remote, parse_uri, scheme_of

CODE_METHODS = ("dgn_am", "ppgn_h", "ga", "cmaes")  # optimize G's code: need a generator
PIXEL_METHODS = ("pixel", "fourier", "maco", "accentuation")  # optimize a picture: no generator
# start where their papers do (a grey or random spectrum; accentuation: the unit's top real images, else the
# mean picture), whatever sampler.start says
OWN_STARTS = {  # what each of them starts from
    "fourier": "a random spectrum of its own",
    "maco": "a random phase of its own",
    "accentuation": "the unit's top real images (a composite's: ranked by its own objective; without real "
    "images, the mean picture)",
}
OWN_START_METHODS = tuple(OWN_STARTS)
METHOD_SECTIONS = ("dgn_am", "ppgn_h", "pixel", "fourier", "maco", "accentuation", "ga", "cmaes")


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
        joint = " or use sampler.ppgn_h.prior: joint" if code_layer else ""
        raise ConfigError(
            "models.dae: ppgn_h with prior: dae needs a DAE; set models.dae (atlas train-dae trains one on "
            f'the generator\'s codes: models.dae: {{spec: "dae:residual_mlp", weights: FILE}}){joint}'
        )
    if method == "ppgn_h" and prior == "joint" and not code_layer:
        raise ConfigError(
            "models.code_layer: ppgn_h with prior: joint needs the target layer whose output is G's code "
            "and the generator names none; set models.code_layer (see `atlas layers SPEC`; with "
            "models.encoder when G inverts another network than the target) or use prior: dae"
        )


NEGLIGIBLE_NOISE = 1e-9  # a PPGN-h eps3 below this moves no float32 code a chain can see


def _deterministic_steps(s: SamplerConfig) -> bool:
    """True when the sampler adds no randomness after the start (chains from one start stay identical)."""
    if s.method == "dgn_am":
        return True
    if s.method == "ppgn_h":  # eps3 of the released settings (1e-17) is lost in float32 codes: no noise
        return s.ppgn_h.eps3 < NEGLIGIBLE_NOISE and s.ppgn_h.reset_every == 0
    return False  # pixel: its mean start has noise of its own


def _store_of(uri: str, what: str) -> tuple[str, str]:
    """(kind of object store, bucket) of an object-store URI: ``gs://`` and ``gcs://`` are one kind."""
    scheme, path = parse_uri(uri, what)
    return {"gcs": "gs"}.get(scheme, scheme), path.split("/", 1)[0]


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

    def storage_options_for(self, uri: str | None) -> dict[str, Any]:
        """The ``storage:`` options a weights or code-statistics URI opens with. With ``out_dir`` on an
        object store, the section describes that store: it applies to URIs on the same kind of store (the
        region only in ``out_dir``'s own bucket), and a URI elsewhere (a public gs:// file, a bucket in
        another region) opens with its own defaults. With a local ``out_dir`` its S3 settings (endpoint,
        region) can describe only S3 URIs, so it applies to those."""
        if not uri or not is_remote(uri):
            return {}
        options = self.storage.object_store_options()
        if not is_remote(self.out_dir):
            return options if scheme_of(uri) == "s3" else {}
        (kind, bucket), (out_kind, out_bucket) = _store_of(uri, "weights"), _store_of(self.out_dir, "out_dir")
        if kind != out_kind:
            return {}
        if bucket != out_bucket:
            options.pop("region", None)
        return options

    @model_validator(mode="before")
    @classmethod
    def _numeric_name(cls, data: Any) -> Any:
        """A run named by a number (``--set name=2025``, which YAML reads as an int) is that number's text."""
        name = data.get("name") if isinstance(data, dict) else None
        if isinstance(name, int) and not isinstance(name, bool):
            data = {**data, "name": str(name)}
        return data

    @model_validator(mode="after")
    def _check(self) -> RunConfig:
        if len(self.name) > 128:
            raise ValueError(
                f"name: {self.name[:40]!r}... is {len(self.name):,} characters long; a run name takes at "
                "most 128 (the run goes to <out_dir>/<name>)"
            )
        if not _RUN_NAME.fullmatch(self.name):
            raise ValueError(
                f"name: {self.name!r} is not a valid run name; use up to 128 ASCII letters, digits, '.', "
                "'_', '-', not starting with '.' (the run goes to <out_dir>/<name>)"
            )
        if not self.out_dir.strip():
            raise ValueError("out_dir: empty; give a folder (e.g. runs) or s3://bucket/prefix")
        try:  # the URI's form (scheme, bucket), checked where the config loads: `atlas config --check` too
            parse_uri(self.out_dir, "out_dir")
        except AtlasError as exc:
            raise ValueError(str(exc)) from None
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
        if s.pair_start == "composed" and s.method not in CODE_METHODS:
            raise ValueError(
                f"sampler.pair_start: composed reads the composite picture back into G's code, and "
                f"sampler.method {s.method} has none; use one of {', '.join(CODE_METHODS)}, or "
                "pair_start: start"
            )
        if s.pair_start == "composed" and s.start_pool > 1:
            raise ValueError(
                "sampler.pair_start: composed starts each pair chain from the best of its composed pictures' "
                "codes, and sampler.start_pool draws starts of its own; set one of them (start_pool: 1)"
            )
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
                f"unit are identical ({s.method} adds no noise of its own"
                + (
                    f": eps3 {s.ppgn_h.eps3:g} is lost in float32"
                    if s.method == "ppgn_h" and s.ppgn_h.eps3
                    else ""
                )
                + "); set sampler.start_noise > 0 "
                "(e.g. 0.1), another sampler.start, or sampler.chains_per_unit: 1"
            )


# keys that change where and how fast a run computes, not what it computes (left out of its hash): its
# name too, so a run copied to another folder resumes there under that folder's name
NON_RESULT_SECTIONS = ("name", "out_dir", "storage", "ray", "compute")


def config_data_hash(data: dict[str, Any]) -> str:
    """The hash of what a config's dict (``RunConfig.to_dict()``, or run.json's ``config``) computes, its
    :data:`NON_RESULT_SECTIONS` left out: the run's ``config_hash``."""
    kept = {k: v for k, v in data.items() if k not in NON_RESULT_SECTIONS}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:16]


def config_differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dicts (``sampler.steps``, ``layers.0.units``),
    the sections of :data:`NON_RESULT_SECTIONS` left out. A key only one of them records differs too, even
    at null (the hash counts it: a config written by another atlas version)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            if not prefix and key in NON_RESULT_SECTIONS:
                continue
            if (key in old) != (key in new):
                out.append(f"{prefix}{key}")
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


def layer_extension(
    old: dict[str, Any], new: dict[str, Any], units_may_grow: Collection[str] = ()
) -> tuple[list[str], list[str], list[str]]:
    """How config ``new`` (a dict) grows the run that config ``old`` made: (the layers it adds, the keys
    that differ otherwise, the run's layers it leaves out). A run grows by new layers, and by more units
    of the layers in ``units_may_grow`` (the caller checked that their units only grew): its other
    result settings stay, and each layer it holds is listed as it was made, in any position (a changed one
    is named by its key in ``new``: ``layers.1.units``). The same config gives ([], [], [])."""
    strip = ("layers", *NON_RESULT_SECTIONS)
    changed = config_differences(
        {k: v for k, v in old.items() if k not in strip}, {k: v for k, v in new.items() if k not in strip}
    )
    old_layers, new_layers = layer_entries(old), layer_entries(new)
    position = {name: i for i, name in enumerate(new_layers)}
    for name, entry in old_layers.items():
        if name in new_layers:
            prefix = f"layers.{position[name]}."
            grown = f"{prefix}units" if name in units_may_grow else None
            changed += [k for k in config_differences(entry, new_layers[name], prefix) if k != grown]
    added = [name for name in new_layers if name not in old_layers]
    return added, changed, [name for name in old_layers if name not in new_layers]


def layer_entries(config: dict[str, Any]) -> dict[str, Any]:
    """A config dict's layer entries by name (an entry without a name is keyed by its position)."""
    layers = config.get("layers")
    entries = layers if isinstance(layers, list) else []
    return {str(e.get("name", i)) if isinstance(e, dict) else str(i): e for i, e in enumerate(entries)}
