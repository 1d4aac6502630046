"""Connecting to Ray: a local instance interrupted while it starts leaves nothing running."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.unit


def test_ctrl_c_while_a_local_ray_starts_shuts_it_down(monkeypatch):
    """Ctrl-C (or SIGTERM) inside ray.init left Ray's agents running for minutes; now it shuts Ray down."""
    import ray

    from atlas.pipeline import cluster

    calls: list[str] = []

    def init(**_kwargs):
        calls.append("init")
        raise KeyboardInterrupt

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "shutdown", lambda: calls.append("shutdown"))
    with pytest.raises(KeyboardInterrupt):
        cluster.connect(None)
    assert calls == ["init", "shutdown"]
