"""A small custom CNN, as a user would bring it: ``python:atlas.examples.tiny_cnn:build``.

Any module-level callable returning an ``nn.Module`` works. The factory declares the input it expects
(``build.atlas_image_space``), so ``atlas layers python:atlas.examples.tiny_cnn:build`` probes at 64 px;
a config's ``models.target.preprocess`` overrides it key by key. See README "Bring your own model".
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


# The image space the network was trained in (keys of models.target.preprocess; size is required).
build.atlas_image_space = {  # type: ignore[attr-defined]
    "size": 64,
    "geometry": "resize",
    "channel_order": "RGB",
    "value_scale": 1.0,
    "mean": [0.5, 0.5, 0.5],
    "std": [0.25, 0.25, 0.25],
}
