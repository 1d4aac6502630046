"""cluster.yaml is a valid Ray cluster-launcher config (checked against Ray's own schema)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.unit
CLUSTER = Path(__file__).resolve().parents[2] / "cluster.yaml"


def _validate(config):
    # Private API (pinned by this test): ray.autoscaler._private.util.validate_config checks ray-schema.json.
    from ray.autoscaler._private.util import validate_config

    validate_config(config)


def test_cluster_yaml_matches_ray_schema():
    config = yaml.safe_load(CLUSTER.read_text())
    _validate(config)
    types = config["available_node_types"]
    assert config["head_node_type"] in types
    assert any(
        "g5" in t["node_config"]["InstanceType"] or "p" in t["node_config"]["InstanceType"][:1]
        for name, t in types.items()
        if name != config["head_node_type"]
    )
    assert any("atlas" in cmd for cmd in config["setup_commands"])


def test_schema_check_can_fail():
    config = yaml.safe_load(CLUSTER.read_text())
    broken = copy.deepcopy(config)
    broken["available_node_types"]["gpu_worker"]["max_workerz"] = 3
    with pytest.raises(Exception):  # noqa: B017 - jsonschema's ValidationError, whatever its module
        _validate(broken)
