"""The toy-world cache: one folder per (preset, config hash), one file per component, atomic writes.

Layout::

    $ATLAS_CACHE (or ~/.cache/atlas)/toyworld/<preset>-<confighash>/
        target.pt  judge.pt  generator.pt  dae.pt     {"format", "component", "config_hash", "fingerprint",
                                                       "state_dict", "meta", ...} (torch.save, weights_only)
        report.json                                   the last bootstrap's gate report

Every file is written to a temporary name and moved into place (``os.replace``), so a crash never
leaves half a file under the real name. A file that does not load, belongs to another component or
config, or whose state dict no longer hashes to its recorded fingerprint is reported as corrupt: an
:class:`AtlasError` naming the file and the way out (``atlas bootstrap --retrain``), never silent garbage.

A component missing from the cache is taken from the weights shipped with atlas (``shipped.py``) when
they exist for the preset's config hash; the cache is never filled from them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from atlas.atomic import atomic_write
from atlas.errors import AtlasError
from atlas.toyworld.presets import FORMAT_VERSION, ToyWorldConfig, config_dict, config_hash


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """``cache_dir``, else ``$ATLAS_CACHE``, else ``~/.cache/atlas``; a file where the folder (or one above
    it) should be is a one-line error naming the setting, not a temp file under it, before any work."""
    env = os.environ.get("ATLAS_CACHE")
    if cache_dir is not None:
        root, key = Path(cache_dir).expanduser(), "toyworld.cache_dir (--cache-dir)"
    elif env:
        root, key = Path(env).expanduser(), "ATLAS_CACHE"
    else:
        root, key = Path.home() / ".cache" / "atlas", "~/.cache/atlas"
    for parent in (root, *root.parents):
        if parent.exists():
            if not parent.is_dir():
                raise AtlasError(f"{key}: {parent} is a file, not a directory; point it at a folder")
            break
    return root


def world_dir(cfg: ToyWorldConfig, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    return cache_root(cache_dir) / "toyworld" / f"{cfg.name}-{config_hash(cfg)}"


def save_component(path: Path, cfg: ToyWorldConfig, component: str, payload: dict[str, Any]) -> None:
    """Write one component file atomically; ``payload`` holds state dicts, fingerprints and meta."""
    blob = {"format": FORMAT_VERSION, "component": component, "config_hash": config_hash(cfg), **payload}
    atomic_write(path, lambda tmp: torch.save(blob, tmp))
    config_file = path.parent / "config.json"
    if not config_file.exists():
        text = json.dumps({"config_hash": config_hash(cfg), "config": config_dict(cfg)}, indent=2)
        atomic_write(config_file, lambda tmp: tmp.write_text(text))


def corrupt(path: Path, reason: str, preset: str, shipped: bool = False) -> AtlasError:
    """The one-line error for an unusable component file; ``shipped``: a file of the installed package."""
    if shipped:
        return AtlasError(
            f"shipped toy-world weights file {str(path)!r} is corrupt ({reason}); reinstall atlas to "
            f"restore it, or run `atlas bootstrap --preset {preset} --retrain` to train your own copy "
            "into the cache (which is used first)"
        )
    return AtlasError(
        f"toy-world cache file {str(path)!r} is corrupt ({reason}); "
        f"run `atlas bootstrap --preset {preset} --retrain` to rebuild it (or delete the file)"
    )


def load_component_file(
    path: Path, cfg: ToyWorldConfig, component: str, shipped: bool = False
) -> dict[str, Any] | None:
    """The stored payload, ``None`` when the file does not exist; AtlasError when it is unusable."""
    if not path.exists():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure means the file is unusable
        raise corrupt(path, f"cannot be read: {type(exc).__name__}", cfg.name, shipped) from None
    if not isinstance(blob, dict) or "state_dict" not in blob:
        raise corrupt(path, "not a toy-world component file", cfg.name, shipped)
    if blob.get("format") != FORMAT_VERSION:
        raise corrupt(path, f"format {blob.get('format')!r}, expected {FORMAT_VERSION}", cfg.name, shipped)
    if blob.get("component") != component or blob.get("config_hash") != config_hash(cfg):
        raise corrupt(
            path, f"holds {blob.get('component')!r} for config {blob.get('config_hash')!r}", cfg.name, shipped
        )
    return blob


def write_report(
    cfg: ToyWorldConfig, cache_dir: str | os.PathLike[str] | None, report: dict[str, Any]
) -> Path:
    path = world_dir(cfg, cache_dir) / "report.json"
    text = json.dumps(report, indent=2)
    atomic_write(path, lambda tmp: tmp.write_text(text))
    return path
