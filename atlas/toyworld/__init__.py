"""The toy world: a procedural image world with its own trained target, judge, generator, DAE and attribute
reader.

Usage::

    from atlas.toyworld import load_component, real_images, bootstrap
    report = bootstrap("micro", cache_dir="/tmp/atlas-cache")     # cache, else shipped weights; checks gates
    T = load_component("target", "micro", "/tmp/atlas-cache")     # LoadedModel (frozen), output_layer "fc8"
    G = load_component("generator", "micro", "/tmp/atlas-cache")  # input: T's relu6 code
    R = load_component("reader", "micro", "/tmp/atlas-cache")     # attributes of a picture (reading.py)
    real = real_images("micro", split="test")                      # images, labels, fine labels, names

See docs/toyworld.md for what the world is and why it looks the way it does.
"""

from typing import TYPE_CHECKING

from atlas.lazy_names import lazy_getattr

if TYPE_CHECKING:
    from atlas.toyworld.api import RealImages, bootstrap, load_component, real_images
    from atlas.toyworld.presets import PRESETS, ToyWorldConfig, config_hash, get_preset
    from atlas.toyworld.world import ALL_COMPONENTS, COMPONENTS, READER, ToyWorld

# Imported on first use, so that `atlas.toyworld.presets` (what the command-line options read) costs no torch
_HOMES = {
    "RealImages": "api",
    "bootstrap": "api",
    "load_component": "api",
    "real_images": "api",
    "PRESETS": "presets",
    "ToyWorldConfig": "presets",
    "config_hash": "presets",
    "get_preset": "presets",
    "ALL_COMPONENTS": "world",
    "COMPONENTS": "world",
    "READER": "world",
    "ToyWorld": "world",
}


__getattr__ = lazy_getattr(__name__, _HOMES)


__all__ = [
    "ALL_COMPONENTS",
    "COMPONENTS",
    "PRESETS",
    "READER",
    "RealImages",
    "ToyWorld",
    "ToyWorldConfig",
    "bootstrap",
    "config_hash",
    "get_preset",
    "load_component",
    "real_images",
]
