"""Models: specs -> frozen modules with explicit image spaces; DeePSiM generators; DAE; layer probes.

Usage::

    from atlas.models import load_model, LayerProbe
    target = load_model("torchvision:alexnet", "target", allow_random_weights=True)
    acts = LayerProbe(target.module, ["features.10"])(x)
"""

from atlas.models.codes import CodeStats
from atlas.models.loaded import LoadedModel, freeze
from atlas.models.probes import LayerInfo, LayerProbe, list_layers
from atlas.models.registry import SCHEMES, example_input, load_model, model_layers
from atlas.models.spaces import ImageSpace, deepsim_space, to_uint8_images, torchvision_space

__all__ = [
    "SCHEMES",
    "CodeStats",
    "ImageSpace",
    "LayerInfo",
    "LayerProbe",
    "LoadedModel",
    "deepsim_space",
    "example_input",
    "freeze",
    "list_layers",
    "load_model",
    "model_layers",
    "to_uint8_images",
    "torchvision_space",
]
