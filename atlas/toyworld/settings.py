"""Which toy world a command means: ``--preset`` / ``--cache-dir``, else a YAML file's ``toyworld:`` section.

The file may be a full run config (only its ``toyworld:`` section is read) or a file holding just that
section::

    toyworld:
      preset: micro          # default | micro
      cache_dir: /tmp/atlas  # optional; default $ATLAS_CACHE or ~/.cache/atlas
"""

from __future__ import annotations

from atlas.config import ToyWorldRef, build, config_from_dict, read_config_file
from atlas.errors import ConfigError


def read_toyworld_section(path: str) -> ToyWorldRef:
    """The file's ``toyworld:`` section; a file with more than that is validated whole as a run config
    (a typo anywhere in it is the same one-line error as under `atlas run`)."""
    data = read_config_file(path)
    if set(data) - {"toyworld"}:
        return config_from_dict(data).toyworld
    section = data.get("toyworld") or {}
    if not isinstance(section, dict):
        raise ConfigError(f"toyworld: expected a mapping with keys preset, cache_dir; got {section!r}")
    return build(ToyWorldRef, section, "toyworld")


def resolve(preset: str | None, cache_dir: str | None, config: str | None) -> tuple[str, str | None]:
    """(preset, cache_dir): command-line flags win over the config file, which wins over the defaults."""
    ref = read_toyworld_section(config) if config else ToyWorldRef()
    return preset or ref.preset, cache_dir or ref.cache_dir
