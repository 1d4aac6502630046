"""The toy worlds shipped with atlas: each preset's trained T, J, G, DAE and attribute reader (package data).

Layout (one folder per preset and config hash, the cache's layout plus a manifest)::

    atlas/toyworld/weights/<preset>-<confighash>/
        target.pt judge.pt generator.pt dae.pt   component files, exactly as the cache holds them, except
                                                 that target.pt leaves out T's decoder (only needed to
                                                 train G from scratch)
        reader.pt                                the attribute reader (optional: a folder shipped before it
                                                 has none; the manifest's "reader" entry holds its gates,
                                                 reader hash and how it was made)
        config.json                              the preset's full config
        report.json                              the gate report of the run that trained them
        manifest.json                            sha256 and size of every file, each component's state-dict
                                                 fingerprint, and how they were made (command, seeds,
                                                 machine, torch, wall and CPU seconds)

Loading order of a component (``ToyWorld.module``): the user's cache, else these files (when the folder
for the preset's *current* config hash exists), else training. A shipped file is checked against the
manifest's sha256, then like a cache file (format, component, config hash, state-dict fingerprint); any
mismatch is a one-line :class:`AtlasError` naming the file and the fix, never a silent retrain.

Made by ``atlas bootstrap --preset P --retrain --ship``: train from scratch in a temporary cache, check
the gates, and (only when they pass) replace ``weights/<preset>-*`` with the result (:func:`write_shipped`).
``atlas bootstrap --preset P --ship-reader`` trains only the reader and adds it to the existing folder
(:func:`add_shipped_reader`): the other files stay byte for byte as they are; the manifest gains the entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from atlas.provenance import git_sha
from atlas.toyworld.cache import corrupt, load_component_file
from atlas.toyworld.presets import FORMAT_VERSION, MEMBERS, ToyWorldConfig, config_hash

SHIPPED_ROOT = Path(__file__).resolve().parent / "weights"
MANIFEST = "manifest.json"
DROPPED_KEYS = {"target": ("decoder_state_dict", "decoder_fingerprint")}
COMPONENT_FILES = ("target.pt", "judge.pt", "generator.pt", "dae.pt")
READER_FILE = "reader.pt"  # optional: a folder shipped before the reader existed has none


def shipped_dir(cfg: ToyWorldConfig) -> Path:
    """Where the shipped weights of this preset and config hash are (the folder may not exist)."""
    return SHIPPED_ROOT / f"{cfg.name}-{config_hash(cfg)}"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_manifest(folder: Path, cfg: ToyWorldConfig) -> dict[str, Any]:
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise corrupt(path, f"cannot be read: {type(exc).__name__}", cfg.name, shipped=True) from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise corrupt(path, "not a shipped-weights manifest", cfg.name, shipped=True)
    if manifest.get("config_hash") != config_hash(cfg) or manifest.get("format") != FORMAT_VERSION:
        raise corrupt(
            path,
            f"describes config {manifest.get('config_hash')!r} format {manifest.get('format')!r}",
            cfg.name,
            shipped=True,
        )
    return manifest


def load_shipped_file(cfg: ToyWorldConfig, component: str) -> tuple[Path, dict[str, Any]] | None:
    """(path, payload) of the shipped component, ``None`` when no weights ship for this config hash.

    Checks the file's sha256 against the manifest, then format, component and config hash; the caller
    checks the state-dict fingerprint when it restores the module (``ToyWorld._restore``).
    """
    folder = shipped_dir(cfg)
    if not folder.is_dir():
        return None
    manifest = read_manifest(folder, cfg)
    path = folder / f"{component}.pt"
    entry = manifest["files"].get(path.name)
    if entry is None and (path.name == READER_FILE or component in MEMBERS):
        return None  # shipped before the reader existed; ensemble members never ship
    if not isinstance(entry, dict):
        raise corrupt(folder / MANIFEST, f"lists no {path.name}", cfg.name, shipped=True)
    if not path.is_file():
        raise corrupt(path, "missing", cfg.name, shipped=True)
    if file_sha256(path) != entry.get("sha256"):
        raise corrupt(path, f"sha256 differs from {MANIFEST}", cfg.name, shipped=True)
    blob = load_component_file(path, cfg, component, shipped=True)
    assert blob is not None
    if blob.get("fingerprint") != entry.get("fingerprint"):
        raise corrupt(path, f"fingerprint differs from {MANIFEST}", cfg.name, shipped=True)
    return path, blob


def _describe_file(entry: dict[str, Any], path: Path) -> dict[str, Any]:
    entry["sha256"] = file_sha256(path)
    entry["bytes"] = path.stat().st_size
    return entry


def reader_entry(cfg: ToyWorldConfig, gates: dict[str, Any], made: dict[str, Any]) -> dict[str, Any]:
    """The manifest's "reader" entry: reader hash, settings, its gates and how it was made."""
    import dataclasses

    from atlas.toyworld.presets import reader_hash
    from atlas.toyworld.train_reader import TRAIN_THREADS

    return {
        "reader_hash": reader_hash(cfg),
        "config": dataclasses.asdict(cfg.reader),
        "gates": gates,
        "made": {"seed": cfg.reader.seed, "git": git_sha(12), "train_threads": TRAIN_THREADS, **made},
    }


def _stage_components(
    cache_folder: Path, cfg: ToyWorldConfig, stage: Path
) -> tuple[tuple[str, ...], dict[str, dict[str, Any]]]:
    """Copy the component files (the reader when the cache has one) into ``stage``, leaving out
    DROPPED_KEYS: (file names, {file: {"fingerprint"}})."""
    files: dict[str, dict[str, Any]] = {}
    names = (*COMPONENT_FILES, READER_FILE) if (cache_folder / READER_FILE).exists() else COMPONENT_FILES
    for fname in names:
        component = fname[:-3]
        blob = load_component_file(cache_folder / fname, cfg, component)
        if blob is None:
            raise FileNotFoundError(cache_folder / fname)
        for key in DROPPED_KEYS.get(component, ()):
            blob.pop(key, None)
        torch.save(blob, stage / fname)
        files[fname] = {"fingerprint": blob["fingerprint"]}
    return names, files


def write_shipped(
    cache_folder: Path,
    cfg: ToyWorldConfig,
    report: dict[str, Any],
    made: dict[str, Any],
    root: Path | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """Copy a trained world from ``cache_folder`` into ``root/<preset>-<hash>`` (default: the package's).

    ``made`` describes how it was trained (command, machine, seconds); stored in the manifest. Folders of
    the same preset with another config hash are removed: they can never be loaded again.
    """
    root = Path(root) if root is not None else SHIPPED_ROOT
    name = f"{cfg.name}-{config_hash(cfg)}"
    stage = root / f".{name}.{os.getpid()}.tmp"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    names, files = _stage_components(cache_folder, cfg, stage)
    shutil.copyfile(cache_folder / "config.json", stage / "config.json")
    shipped_report = dict(report, cache=f"atlas/toyworld/weights/{name}")
    (stage / "report.json").write_text(json.dumps(shipped_report, indent=2) + "\n")
    for fname in (*names, "config.json", "report.json"):
        _describe_file(files.setdefault(fname, {}), stage / fname)
    seeds = {k: getattr(cfg, k).seed for k in ("data", "target", "judge", "generator", "dae")}
    manifest = {
        "preset": cfg.name,
        "config_hash": config_hash(cfg),
        "format": FORMAT_VERSION,
        "files": files,
        "made": {"seeds": seeds, "git": git_sha(12), **made},
    }
    if READER_FILE in names:
        gates = {k: v for k, v in report["gates"].items() if k.startswith("reader_")}
        manifest["reader"] = reader_entry(cfg, gates, made)
    (stage / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    dest = root / name
    old = root / f".{name}.{os.getpid()}.old"
    if dest.exists():
        dest.rename(old)
    stage.rename(dest)
    if old.exists():
        shutil.rmtree(old)
    for other in sorted(root.glob(f"{cfg.name}-*")):
        if other.is_dir() and other.name != name:
            log(f"toyworld[{cfg.name}]: removing shipped weights of an older config: {other}")
            shutil.rmtree(other)
    return dest


def add_shipped_reader(
    cache_folder: Path,
    cfg: ToyWorldConfig,
    gates: dict[str, Any],
    made: dict[str, Any],
    root: Path | None = None,
) -> Path:
    """Add (or replace) ``reader.pt`` in the shipped folder of ``cfg`` from ``cache_folder``; the folder's
    other files are left as they are, the manifest gains ``files["reader.pt"]`` and the "reader" entry
    (:func:`reader_entry`). Written to temporary names and moved into place."""
    root = Path(root) if root is not None else SHIPPED_ROOT
    folder = root / f"{cfg.name}-{config_hash(cfg)}"
    manifest = read_manifest(folder, cfg)  # AtlasError when the world itself is not shipped
    blob = load_component_file(cache_folder / READER_FILE, cfg, "reader")
    if blob is None:
        raise FileNotFoundError(cache_folder / READER_FILE)
    tmp = folder / f".{READER_FILE}.{os.getpid()}.tmp"
    torch.save(blob, tmp)
    entry = _describe_file({"fingerprint": blob["fingerprint"]}, tmp)
    os.replace(tmp, folder / READER_FILE)
    manifest["files"][READER_FILE] = entry
    manifest["reader"] = reader_entry(cfg, gates, made)
    text = json.dumps(manifest, indent=2) + "\n"
    tmp_manifest = folder / f".{MANIFEST}.{os.getpid()}.tmp"
    tmp_manifest.write_text(text)
    os.replace(tmp_manifest, folder / MANIFEST)
    return folder
