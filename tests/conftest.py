"""Shared fixtures, cheap to expensive: tiny models (unit), the micro toy world (shipped weights) and one
local Ray instance per session (integration)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.local_ray import start_local_ray

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def micro_cache(tmp_path_factory) -> str:
    """An empty toy-world cache directory: the micro world resolves to the weights shipped with atlas.

    Nothing trains (``train_if_missing=False``); only tests/integration/test_toyworld_micro.py trains the
    micro world from scratch. The cache stays empty, so workers and subprocesses load the same shipped files.
    """
    from atlas.toyworld import COMPONENTS, ToyWorld

    cache = str(tmp_path_factory.mktemp("toyworld-cache"))
    world = ToyWorld("micro", cache, log=lambda *a, **k: None)
    for name in COMPONENTS:
        world.module(name, train_if_missing=False)
    assert world.sources == dict.fromkeys(COMPONENTS, "shipped"), world.sources
    return cache


@pytest.fixture(scope="session", autouse=True)
def no_atlas_actor_outlives_its_ray():
    """When the session ends (after its Ray instances shut down): no BundleHolder or AtlasWorker of it is
    left running without its raylet. The session's processes carry its own mark in their environment
    (set before any Ray starts), so another suite's or run's actors are never judged or killed."""
    import os
    import uuid

    from tests.support.strays import SESSION_VAR, wait_for_no_orphans

    session = uuid.uuid4().hex
    had = os.environ.get(SESSION_VAR)
    os.environ[SESSION_VAR] = session
    yield
    if had is None:
        os.environ.pop(SESSION_VAR, None)
    else:
        os.environ[SESSION_VAR] = had
    left = wait_for_no_orphans(session)
    assert not left, f"atlas actors outlived their Ray instance (killed now): {left}"


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance shared by the whole session (starting one takes ~7 s)."""
    import ray

    if not ray.is_initialized():
        start_local_ray()
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models run fastest on one thread; the count is restored so later modules keep theirs."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
