"""Distributed execution: plan units into shards, run them on Ray actors, write them to the store.

Usage::

    from atlas.pipeline import run_atlas
    summary = run_atlas(load_config("configs/demo.yaml"))

Only this package imports Ray. ``AtlasWorker`` is a plain class (testable without Ray); ``driver``
wraps it as a Ray actor.
"""

from atlas.pipeline.driver import run_atlas
from atlas.pipeline.plan import Shard, plan_shards
from atlas.pipeline.worker import AtlasWorker

__all__ = ["AtlasWorker", "Shard", "plan_shards", "run_atlas"]
