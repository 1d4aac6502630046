"""Shared fixtures, cheap to expensive: tiny models (unit), the micro toy world and one local Ray
instance per session (integration)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def micro_cache(tmp_path_factory) -> str:
    """A toy-world cache holding the micro preset, trained once per test session (< 1 min)."""
    from atlas import toyworld

    cache = os.environ.get("ATLAS_TEST_CACHE") or str(tmp_path_factory.mktemp("toyworld-cache"))
    report = toyworld.bootstrap("micro", cache_dir=cache, log=lambda *a, **k: None)
    assert report["passed"], f"micro toy world missed its gates: {report['gates']}"
    return cache


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance shared by the whole session (starting one takes ~7 s)."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield ray
    ray.shutdown()
