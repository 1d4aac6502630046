"""The tests' local Ray instance, started as `atlas run` starts one (actors at normal priority)."""

from __future__ import annotations

from atlas.pipeline.cluster import LOCAL_SYSTEM_CONFIG


def start_local_ray() -> None:
    """ray.init for the shared test session: 2 CPUs, no dashboard, quiet, worker niceness 0."""
    import ray

    ray.init(
        address="local",  # a new instance, never a cluster a developer started with `ray start`
        num_cpus=2,
        include_dashboard=False,
        logging_level="ERROR",
        log_to_driver=False,
        _system_config=dict(LOCAL_SYSTEM_CONFIG),
    )
