"""Typed, validated run configuration.

Usage::

    from atlas.config import load_config, replace
    cfg = load_config("configs/demo.yaml", overrides=["sampler.steps=50"])
    cfg.sampler.dgn_am.lr          # -> float
    cfg = replace(cfg, seed=3)     # a validated copy

A config is a tree of frozen pydantic models (strict types, unknown keys forbidden), one module a part:

- ``units``: unit selections ('all', '0-15,20', [1, 5]);
- ``section``: the base of every section, its number type, ``build``/``replace``;
- ``models``, ``layers``, ``sampler`` (with ``facets``), ``execution`` (compute, ray, store, storage,
  toyworld) and ``run`` (the whole ``RunConfig`` and its cross-field rules): the sections;
- ``loading``: YAML files (``yaml.SafeLoader``; a key given twice is refused) and ``--set`` overrides;
- ``messages``: pydantic's first error as one line (an unknown key lists the valid keys with a
  close-match suggestion; a wrong type or range names the dotted key, the value and what is valid);
- ``describe``: every key with its type, range, default and doc, for ``atlas config``.

Every field documents itself (``Field(description=...)``) with recommended values.
"""

from atlas.config.describe import describe_fields
from atlas.config.execution import ComputeConfig, RayConfig, StorageConfig, StoreConfig, ToyWorldRef
from atlas.config.layers import FILE_NAME, LayerConfig
from atlas.config.loading import (
    DuplicateKeyError,
    apply_override,
    config_from_dict,
    config_override_warnings,
    load_config,
    override_warnings,
    read_config_file,
)
from atlas.config.models import MODEL_SCHEMES, ModelConfig, ModelsConfig, PreprocessConfig
from atlas.config.run import (
    CODE_METHODS,
    METHOD_SECTIONS,
    NON_RESULT_SECTIONS,
    OWN_START_METHODS,
    OWN_STARTS,
    PIXEL_METHODS,
    RunConfig,
    check_sampler_models,
    config_data_hash,
    config_differences,
    layer_entries,
    layer_extension,
)
from atlas.config.sampler import (
    AccentuationConfig,
    CmaesConfig,
    DgnAmConfig,
    FacetConfig,
    FourierConfig,
    GaConfig,
    MacoConfig,
    PixelConfig,
    PpgnConfig,
    RobustnessFields,
    SamplerConfig,
)
from atlas.config.section import HUGE, Float, Section, build, replace
from atlas.config.units import LIST_FORM_MAX, UnitSelection

__all__ = [
    "CODE_METHODS",
    "FILE_NAME",
    "HUGE",
    "LIST_FORM_MAX",
    "MODEL_SCHEMES",
    "NON_RESULT_SECTIONS",
    "METHOD_SECTIONS",
    "OWN_START_METHODS",
    "OWN_STARTS",
    "PIXEL_METHODS",
    "AccentuationConfig",
    "CmaesConfig",
    "ComputeConfig",
    "DgnAmConfig",
    "DuplicateKeyError",
    "FacetConfig",
    "Float",
    "FourierConfig",
    "GaConfig",
    "LayerConfig",
    "MacoConfig",
    "ModelConfig",
    "ModelsConfig",
    "PixelConfig",
    "PpgnConfig",
    "PreprocessConfig",
    "RayConfig",
    "RobustnessFields",
    "RunConfig",
    "SamplerConfig",
    "Section",
    "StorageConfig",
    "StoreConfig",
    "ToyWorldRef",
    "UnitSelection",
    "apply_override",
    "build",
    "check_sampler_models",
    "config_data_hash",
    "config_differences",
    "config_from_dict",
    "config_override_warnings",
    "describe_fields",
    "layer_entries",
    "layer_extension",
    "load_config",
    "override_warnings",
    "read_config_file",
    "replace",
]
