"""One judge rule for the worker's judge columns and the benchmarks (atlas/toyworld/judging.py)."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch
from torch import nn

from atlas.models.loaded import LoadedModel
from atlas.models.spaces import ImageSpace
from atlas.toyworld.judging import Judge, judge_verdict

pytestmark = pytest.mark.unit


class _ChannelJudge(nn.Module):
    """Fine logits = 10 x the mean of each colour channel: red -> fine 0, green -> fine 1, blue -> fine 2."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 10 * x.mean((2, 3))


def _judge() -> Judge:
    model = LoadedModel(
        _ChannelJudge(),
        "judge",
        "test:judge",
        space=ImageSpace(4),
        extras={"fine_to_class": [0, 0, 1], "fine_names": ["a/red", "a/green", "b/blue"]},
    )
    return Judge(model, torch.device("cpu"))


def _picture(rgb: tuple[int, int, int]) -> np.ndarray:
    return np.broadcast_to(np.array(rgb, np.uint8), (4, 4, 3)).copy()


def _chain(rgb, diverged=False):
    return types.SimpleNamespace(last=types.SimpleNamespace(image=_picture(rgb)), diverged=diverged)


def test_class_sums_its_facets_probability():
    # (200, 200, 215): fine probabilities ~ (0.26, 0.26, 0.47): the top fine label is class 1's, but class 0
    # (fine 0 + 1, 0.53) wins; the fine verdict stays the top fine label
    classes, fines = _judge()(np.stack([_picture((200, 200, 215)), _picture((0, 0, 255))]))
    assert classes.tolist() == [0, 1] and fines.tolist() == [2, 2]


def test_unit_verdict_is_a_majority_of_last_pictures_without_diverged_chains():
    judge = _judge()
    chains = [
        _chain((255, 0, 0)),
        _chain((0, 255, 0)),
        _chain((0, 0, 255)),
        _chain((0, 0, 255), diverged=True),
    ]
    v = judge_verdict(
        judge, chains, unit=0
    )  # red and green are class 0, blue class 1; the diverged one ignored
    assert v == {"judge_label": "a/red", "judge_correct": True, "judge_prob": pytest.approx(2 / 3)}
    v1 = judge_verdict(judge, chains, unit=1)
    assert v1["judge_correct"] is False and v1["judge_prob"] == pytest.approx(1 / 3)
    assert v1["judge_label"] == "b/blue"  # three fine labels once each: the tie goes to the unit's class
    all_diverged = [_chain((0, 0, 255), diverged=True)] * 2
    assert judge_verdict(judge, all_diverged, unit=1)["judge_correct"] is True  # all diverged: use them
    assert judge_verdict(judge, [], unit=0) is None
    assert judge_verdict(judge, chains, unit=2) is None  # a composite after the 2 classes: no verdict
