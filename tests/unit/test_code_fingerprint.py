"""The fingerprint of a user's own network code, which a resume compares (atlas.pipeline.models_setup)."""

from __future__ import annotations

import importlib
import sys
from types import SimpleNamespace

import pytest
import torchvision

from atlas.pipeline.models_setup import code_fingerprint

pytestmark = pytest.mark.unit

NET = """from torch import nn
SCALE = {scale}
class Scaled(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 2)
    def forward(self, x):
        return self.fc(x * SCALE)
def build():
    return Scaled()
"""


def _loaded(tmp_path, monkeypatch, scale: float, name: str):
    (tmp_path / f"{name}.py").write_text(NET.format(scale=scale))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop(name, None)
    module = importlib.import_module(name)
    return SimpleNamespace(spec=f"python:{name}:build", module=module.build())


def test_the_users_own_network_code_is_fingerprinted_by_its_source(tmp_path, monkeypatch):
    first = code_fingerprint(_loaded(tmp_path, monkeypatch, 1.0, "fp_net"))
    assert first["code_files"] == ["fp_net.py"] and len(first["code"]) == 16
    assert code_fingerprint(_loaded(tmp_path, monkeypatch, 1.0, "fp_net")) == first  # the same source
    changed = code_fingerprint(_loaded(tmp_path, monkeypatch, 100.0, "fp_net"))
    assert changed["code"] != first["code"] and changed["code_files"] == first["code_files"]


def test_installed_and_atlas_networks_carry_no_code_fingerprint():
    """Their versions (and atlas's git sha) are recorded apart."""
    alexnet = SimpleNamespace(spec="torchvision:alexnet", module=torchvision.models.alexnet())
    assert code_fingerprint(alexnet) == {}
    from atlas.models.deepsim import DeePSiMGenerator

    assert code_fingerprint(SimpleNamespace(spec="deepsim:fc6", module=DeePSiMGenerator("fc6"))) == {}
