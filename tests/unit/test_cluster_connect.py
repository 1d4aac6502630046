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


def _connect_refused(monkeypatch, address: str, ray_says: str) -> str:
    """The one-line error of ``connect(address)`` when ray.init raises ConnectionError(ray_says)."""
    import ray

    from atlas.errors import ConfigError
    from atlas.pipeline import cluster

    def init(**_kwargs):
        raise ConnectionError(ray_says)

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(cluster, "probe_address", lambda _address: None)
    with pytest.raises(ConfigError) as err:
        cluster.connect(address)
    text = str(err.value)
    assert "\n" not in text
    return text


def test_address_auto_without_a_cluster_says_so_and_not_to_pass_the_flag_just_given(monkeypatch):
    text = _connect_refused(  # Ray's own words: they ask for the --address flag the user just gave
        monkeypatch,
        "auto",
        "Could not find any running Ray instance. Please specify the one to connect to by setting "
        "`--address` flag or `RAY_ADDRESS` environment variable.",
    )
    assert "no Ray cluster is running on this machine" in text and "ray start --head" in text
    assert "--address` flag" not in text


def test_sigterm_while_a_local_ray_starts_is_terminated_and_shuts_ray_down(monkeypatch):
    """Ray's driver sets its own SIGTERM handler (``sys.exit(15)``) part-way through ray.init: a SIGTERM
    then was a silent exit 15; it is Terminated (exit 143, the message) and Ray is shut down."""
    import ray

    from atlas.errors import Terminated
    from atlas.pipeline import cluster

    def init(**kw):
        raise SystemExit(15)

    shut = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "shutdown", lambda: shut.append(True))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(Terminated):
        cluster.connect(None)
    assert shut == [True]
    monkeypatch.setattr(ray, "init", lambda **kw: (_ for _ in ()).throw(SystemExit(3)))  # any other exit
    with pytest.raises(SystemExit):
        cluster.connect(None)


def test_an_address_that_answers_but_refuses_ray_names_token_authentication(monkeypatch):
    """A head started with token authentication refuses a driver without its token: the address was right,
    so the message does not list address forms but says what the cluster may need."""
    text = _connect_refused(monkeypatch, "10.0.0.5:6379", "Failed to connect to GCS within 60 seconds")
    assert (
        "answers but Ray could not join it (Failed to connect to GCS" in text
        and "RAY_AUTH_MODE=token" in text
    )
    assert "expected host:port" not in text


def test_the_bundle_holder_ends_itself_once_its_raylet_is_gone():
    """A holder that outlived its Ray (parent 1, ~1 GB) ended only when killed by hand; it now watches its
    parent and leaves once the raylet that started it is gone."""
    from atlas.pipeline.models_setup import exit_when_orphaned

    parents, left = iter([4242, 4242, 4242, 1]), []
    exit_when_orphaned(4242, interval_s=0.0, getppid=lambda: next(parents), leave=left.append)
    assert left == [0] and next(parents, None) is None  # it looked until the parent changed, then left
    # a worker Ray started detached has parent 1 from the start: the raylet Ray named is what tells
    runs, left = iter([True, True, False]), []
    exit_when_orphaned(
        1, 4924, interval_s=0.0, getppid=lambda: 1, leave=left.append, alive=lambda _p: next(runs)
    )
    assert left == [0] and next(runs, None) is None
