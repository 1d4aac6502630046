"""Distributed execution: plan units into shards, run them on Ray actors, write them to the store.

Usage::

    from atlas.pipeline import run_atlas
    summary = run_atlas(load_config("configs/demo.yaml"))

Only this package imports Ray. ``AtlasWorker`` is a plain class (testable without Ray); ``driver``
wraps it as a Ray actor.
"""

from atlas.lazy_names import lazy_getattr

# imported on first use: an actor that needs one light module (the BundleHolder) does not load them all
_HOMES = {"run_atlas": "driver", "Shard": "plan", "plan_shards": "plan", "AtlasWorker": "worker"}
__getattr__ = lazy_getattr(__name__, _HOMES)
__all__ = ["AtlasWorker", "Shard", "plan_shards", "run_atlas"]
