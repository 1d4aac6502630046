"""`python:` factories for the bad-input tests: a user's own module, with and without declarations.

The tests copy this file under a fresh module name onto sys.path (so each test session imports its own).
Target net ("good"): 32x32 RGB -> conv1 relu1 pool1 conv2 relu2 pool2 flatten fc6 relu6 fc7 relu7 fc8 (10).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

CODE = 16


def net(size: int = 32) -> nn.Sequential:
    side = size // 4
    return nn.Sequential(
        OrderedDict(
            [
                ("conv1", nn.Conv2d(3, 4, 3, padding=1)),
                ("relu1", nn.ReLU()),
                ("pool1", nn.MaxPool2d(2)),
                ("conv2", nn.Conv2d(4, 8, 3, padding=1)),
                ("relu2", nn.ReLU()),
                ("pool2", nn.MaxPool2d(2)),
                ("flatten", nn.Flatten()),
                ("fc6", nn.Linear(8 * side * side, CODE)),
                ("relu6", nn.ReLU()),
                ("fc7", nn.Linear(CODE, 32)),
                ("relu7", nn.ReLU()),
                ("fc8", nn.Linear(32, 10)),
            ]
        )
    )


def good() -> nn.Module:
    return net()


good.atlas_image_space = {"size": 32, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}


def undeclared() -> nn.Module:
    """The same network with no declared image space: its size must come from the config."""
    return net()


def raises() -> nn.Module:
    raise ValueError("bad hyper-parameter: width must be even")


def exits() -> nn.Module:
    raise SystemExit(3)  # a script's factory that calls sys.exit(): atlas ended in silence with 3


def not_a_module() -> int:
    return 42


def bad_space() -> nn.Module:
    return net()


bad_space.atlas_image_space = {"size": "big"}


class TwoHeads(nn.Module):
    """A multi-head network: a shared trunk and two classifier heads, returned as a tuple."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2))
        self.flat = nn.Flatten()
        self.feat = nn.Linear(16, 12)
        self.head_a = nn.Linear(12, 5)
        self.head_b = nn.Linear(12, 7)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = torch.relu(self.feat(self.flat(self.trunk(x))))
        return self.head_a(f), self.head_b(f)


def two_heads() -> nn.Module:
    return TwoHeads()


two_heads.atlas_image_space = {"size": 16}


class Generator(nn.Module):
    """A CODE-d code -> 32x32 picture in [-1, 1]."""

    def __init__(self) -> None:
        super().__init__()
        self.code_shape = (CODE,)
        self.fc = nn.Linear(CODE, 3 * 8 * 8)
        self.up = nn.Upsample(scale_factor=4)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.up(self.fc(h).view(-1, 3, 8, 8)))


def generator() -> nn.Module:
    return Generator()


generator.atlas_image_space = {"size": 32, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}


class WideGenerator(Generator):
    """The same generator without tanh, scaled: its pictures leave [0, 1] (as DeePSiM's may)."""

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return 3.0 * self.up(self.fc(h).view(-1, 3, 8, 8))


def wide_generator() -> nn.Module:
    return WideGenerator()


wide_generator.atlas_image_space = generator.atlas_image_space


def generator_without_code_shape() -> nn.Module:
    """A generator that does not say what code it takes (a trial's: every worker died on it)."""
    return nn.Sequential(nn.Linear(CODE, 3 * 32 * 32), nn.Unflatten(1, (3, 32, 32)))


generator_without_code_shape.atlas_image_space = generator.atlas_image_space


def generator_without_space() -> nn.Module:
    return Generator()


INSTANCE = Generator()  # a module where a factory belongs


def generator_of_another_size() -> nn.Module:
    return Generator()  # draws 32 px


generator_of_another_size.atlas_image_space = {"size": 64}


def generator_of_another_code() -> nn.Module:
    module = Generator()
    module.code_shape = (CODE // 2,)  # it takes CODE values: a trial's runs failed every unit on this
    return module


generator_of_another_code.atlas_image_space = generator.atlas_image_space


class NoGrad(nn.Module):
    """A black-box target: its forward runs under torch.no_grad (forward-only methods only)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = net()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.body(x)


def no_grad() -> nn.Module:
    return NoGrad()


no_grad.atlas_image_space = good.atlas_image_space


class InPlace(nn.Module):
    """conv1 -> F.relu(inplace=True): a later in-place op on a probed layer's output (Inception's style)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.relu(self.conv1(x), inplace=True)
        x = nn.functional.relu(self.conv2(x), inplace=True)
        return self.fc(x.mean(dim=(2, 3)))


def in_place() -> nn.Module:
    return InPlace()


in_place.atlas_image_space = {"size": 16}


class DropoutLast(nn.Module):
    """A dropout registered after the classifier but applied before it; the classifier runs last."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3)
        self.fc = nn.Linear(6, 5)
        self.dropout = nn.Dropout(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(torch.relu(self.conv(x)).mean(dim=(2, 3))))


def dropout_last() -> nn.Module:
    return DropoutLast()


dropout_last.atlas_image_space = {"size": 16}


def pooled_classifier() -> nn.Module:
    """SqueezeNet's shape: a conv classifier pooled to (N, 1, 1), flattened outside any module."""
    return nn.Sequential(
        OrderedDict(
            [
                ("conv", nn.Conv2d(3, 6, 3)),
                ("relu", nn.ReLU()),
                ("classifier", nn.Conv2d(6, 5, 1)),
                ("pool", nn.AdaptiveAvgPool2d(1)),
            ]
        )
    )


pooled_classifier.atlas_image_space = {"size": 16}


def gray() -> nn.Module:
    """A one-channel network (MNIST-like)."""
    return nn.Sequential(
        OrderedDict([("conv1", nn.Conv2d(1, 4, 3)), ("relu1", nn.ReLU()), ("pool", nn.AdaptiveAvgPool2d(1)),
                     ("flatten", nn.Flatten()), ("fc", nn.Linear(4, 3))])
    )  # fmt: skip


gray.atlas_image_space = {"size": 16, "channel_order": "gray", "mean": [0.5], "std": [0.25]}


def shared_relu() -> nn.Module:
    """One ReLU module called twice (ResNet's blocks do this)."""

    class Shared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 6, 3, padding=1)
            self.relu = nn.ReLU()
            self.fc = nn.Linear(6, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.relu(self.conv2(self.relu(self.conv1(x)))).mean(dim=(2, 3)))

    return Shared()


shared_relu.atlas_image_space = {"size": 16}


class CentresInPlace(nn.Module):
    """A forward that changes its input in place (x.sub_), as some preprocessing wrappers do."""

    def __init__(self) -> None:
        super().__init__()
        self.body = net(16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.sub_(0.5))


def centres_in_place() -> nn.Module:
    return CentresInPlace()


centres_in_place.atlas_image_space = {"size": 16}


class BreaksInForward(nn.Module):
    """A network that builds and loads, then raises in every forward pass (as one failing in the workers)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = net()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise ValueError("boom in forward")


def breaks_in_forward() -> nn.Module:
    return BreaksInForward()


breaks_in_forward.atlas_image_space = good.atlas_image_space


class Flattens(nn.Module):
    """The good network with its flatten written in forward, as many users write it: ``view`` with the
    batch kept (needs contiguous memory: fails on channels_last conv outputs) or one picture assumed."""

    def __init__(self, batch_of_one: bool = False) -> None:
        super().__init__()
        layers = list(net().children())
        self.features = nn.Sequential(*layers[:6])
        self.classifier = nn.Sequential(*layers[7:])
        self.batch_of_one = batch_of_one

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = x.view(1, -1) if self.batch_of_one else x.view(x.size(0), -1)
        return self.classifier(x)


def views_flat() -> nn.Module:
    return Flattens()


views_flat.atlas_image_space = good.atlas_image_space


def one_picture() -> nn.Module:
    return Flattens(batch_of_one=True)


one_picture.atlas_image_space = good.atlas_image_space
