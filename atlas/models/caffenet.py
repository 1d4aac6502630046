"""CaffeNet (``bvlc_reference_caffenet``): the network DGN-AM and PPGN visualize and whose fc6 the DeePSiM
generators invert (Nguyen et al. 2016, 2017; Dosovitskiy & Brox 2016).

Usage (a ``python:`` target; REFERENCE: conv1 96 ... fc8 1000, 10,568 units)::

    models:
      target: {spec: "python:atlas.models.caffenet:caffenet", weights: weights/caffenet.pth}
      generator: {spec: deepsim:fc6, weights: weights/upconv_fc6.pth}
      code_layer: relu6               # Caffe's in-place ReLU: the "fc6" blob G inverts is post-ReLU

Caffe runs its ReLUs in place, so the blobs DGN-AM and PPGN read as ``fc7``, ``conv5`` ... hold the values
after the ReLU: name ``relu7``, ``relu5`` ... as the layers to map to read what they read (their softmax,
ranks and snapshot thresholds); ``sampler.relu_gradient: redirected`` (the default) still moves a unit that
starts below zero, as the released code's backward from the pre-ReLU layer does.

Not torchvision's AlexNet: CaffeNet has 96 conv1 filters (torchvision 64), local response normalization
after pooling, and two groups in conv2, conv4 and conv5, so its weights do not load into torchvision's
layout. Module names follow Caffe's layer names (``conv1.weight`` ... ``fc8.bias``), the keys of a
converted ``.caffemodel``. Input: Caffe's BGR in [0, 255] minus the ImageNet mean, 227 x 227 centre crop.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

CAFFENET_SPACE = {
    "size": 227,
    "geometry": "center_crop",
    "channel_order": "BGR",
    "value_scale": 255.0,
    "mean": [104.0, 117.0, 123.0],  # Caffe's ImageNet mean, BGR
    "std": [1.0, 1.0, 1.0],
}


def _conv_block(i: int, cin: int, cout: int, k: int, *, stride: int = 1, pad: int = 0, groups: int = 1):
    return [
        (f"conv{i}", nn.Conv2d(cin, cout, k, stride=stride, padding=pad, groups=groups)),
        (f"relu{i}", nn.ReLU()),  # not in place: probes read conv{i} before it
    ]


def caffenet(num_classes: int = 1000) -> nn.Module:
    """CaffeNet as an ``nn.Sequential`` with Caffe's layer names; (B, 3, 227, 227) -> (B, num_classes)."""
    layers: list[tuple[str, nn.Module]] = [
        *_conv_block(1, 3, 96, 11, stride=4),  # 96 x 55 x 55
        ("pool1", nn.MaxPool2d(3, 2, ceil_mode=True)),  # 27 x 27 (Caffe rounds pooled sizes up)
        ("norm1", nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)),
        *_conv_block(2, 96, 256, 5, pad=2, groups=2),  # 256 x 27 x 27
        ("pool2", nn.MaxPool2d(3, 2, ceil_mode=True)),  # 13 x 13
        ("norm2", nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)),
        *_conv_block(3, 256, 384, 3, pad=1),
        *_conv_block(4, 384, 384, 3, pad=1, groups=2),
        *_conv_block(5, 384, 256, 3, pad=1, groups=2),  # 256 x 13 x 13
        ("pool5", nn.MaxPool2d(3, 2, ceil_mode=True)),  # 256 x 6 x 6
        ("flatten", nn.Flatten()),
        ("fc6", nn.Linear(256 * 6 * 6, 4096)),
        ("relu6", nn.ReLU()),
        ("drop6", nn.Dropout(0.5)),
        ("fc7", nn.Linear(4096, 4096)),
        ("relu7", nn.ReLU()),
        ("drop7", nn.Dropout(0.5)),
        ("fc8", nn.Linear(4096, num_classes)),
    ]
    net = nn.Sequential(OrderedDict(layers))
    net.atlas_image_space = CAFFENET_SPACE  # type: ignore[attr-defined]  (read by the python: scheme)
    net.atlas_output_layer = "fc8"  # type: ignore[attr-defined]
    return net
