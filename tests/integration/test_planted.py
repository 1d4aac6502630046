"""Planted units (atlas/toyworld/planted.py): truth by construction, on the micro toy world."""

from __future__ import annotations

import pytest
import torch

from atlas.models.probes import LayerProbe
from atlas.sampling.concepts import auroc, label_units
from atlas.toyworld import load_component, real_images
from atlas.toyworld.concepts import requirements
from atlas.toyworld.planted import planted_target

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def planted(micro_cache):
    return planted_target("micro", micro_cache), real_images("micro", micro_cache), micro_cache


def test_planted_units_behave_as_constructed(planted):
    target, real, cache = planted
    units = target.extras["planted"]
    kinds = [u["kind"] for u in units]
    with torch.no_grad():
        acts = LayerProbe(target.module, ["planted", "fc8"])(target.space.encode(real.images))
    v = acts["planted"]  # (N, P) on natural images
    assert v.shape[1] == len(units) and kinds.count("fooling") == 3 and kinds.count("silent") == 2
    for u in units:
        if u["kind"] == "silent":
            assert float(v[:, u["unit"]].abs().max()) == 0.0  # nothing natural drives it
        if u["kind"] == "fooling":  # on natural images exactly its concept unit: the trap never fires
            twin = next(c for c in units if c["kind"] == "concept" and c["concept"] == u["concept"])
            torch.testing.assert_close(v[:, u["unit"]], v[:, twin["unit"]])
    concept_idx = [u["unit"] for u in units if u["kind"] == "concept"]
    members = torch.stack([real.concepts.members[:, real.concepts.names.index(u["concept"])] for u in units
                           if u["kind"] == "concept"], dim=1)  # fmt: skip
    scores = auroc(v[:, concept_idx], members)  # each concept unit against its own concept
    own = [float(scores[i, i]) for i in range(len(concept_idx))]  # micro world: 16 px, few red pills
    assert min(own) >= 0.75 and sum(own) / len(own) >= 0.9, own
    # each concept unit is the minimum of its parts' readouts, one per atomic concept and layer
    m = target.module
    with torch.no_grad():
        feats = LayerProbe(m, ["relu6", "relu7"])(target.space.encode(real.images[:256]))
        scores = torch.cat([m.readout6(feats["relu6"]), m.readout7(feats["relu7"])], dim=1)  # (n, R)
    for u in units:
        if u["kind"] == "concept":
            (atoms,) = requirements(u["concept"])
            parts = m.parts[u["unit"]]
            assert int(parts.sum()) == 2 * len(atoms), u  # two layers per atomic concept
            torch.testing.assert_close(v[:256, u["unit"]], scores[:, parts].amin(1))
    labels = label_units(v, real.concepts)
    assert all(labels[u["unit"]].label is None for u in units if u["kind"] == "silent")
    # the hidden path: a high-frequency input reaches the fooling units, not their concept twins
    s = target.space.size
    board = ((torch.arange(s)[:, None] + torch.arange(s)[None]) % 2).float().expand(1, 3, s, s)
    with torch.no_grad():
        out = LayerProbe(target.module, ["planted"])(target.space.encode(board))["planted"][0]
    for u in units:
        if u["kind"] == "fooling":
            twin = next(c for c in units if c["kind"] == "concept" and c["concept"] == u["concept"])
            assert float(out[u["unit"]] - out[twin["unit"]]) > 1.0
    base = load_component("target", "micro", cache, log=lambda _m: None)  # T itself is unchanged
    x = target.space.encode(real.images[:64])
    with torch.no_grad():
        torch.testing.assert_close(target.module(x), base.module(x))
