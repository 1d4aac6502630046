"""A small custom CNN, as a user would bring it: ``python:atlas.examples.tiny_cnn:build``.

Any module-level callable returning an ``nn.Module`` works. Declare the input preprocessing in the
config (``models.target.preprocess``) or as ``module.atlas_input_space``; name the layers you map
(``atlas layers python:atlas.examples.tiny_cnn:build --size 64``).
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn


def build(num_classes: int = 10) -> nn.Module:
    """conv1..conv3 (64 -> 8 px), fc6 -> fc7 -> fc8 logits; a 64x64 RGB input in [0, 1]."""

    def block(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)
        )

    return nn.Sequential(
        OrderedDict(
            [
                ("conv1", block(3, 16)),  # (B, 16, 32, 32)
                ("conv2", block(16, 32)),  # (B, 32, 16, 16)
                ("conv3", block(32, 64)),  # (B, 64, 8, 8)
                ("flatten", nn.Flatten()),
                ("fc6", nn.Linear(64 * 8 * 8, 128)),
                ("relu6", nn.ReLU()),
                ("fc7", nn.Linear(128, 128)),
                ("relu7", nn.ReLU()),
                ("fc8", nn.Linear(128, num_classes)),
            ]
        )
    )
