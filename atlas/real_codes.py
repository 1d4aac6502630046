"""Shared by `atlas code-stats` and `atlas train-dae`: real images -> codes at the code layer of the network
G inverts (`models.encoder`, else the target)."""

from __future__ import annotations

import math
import sys

import torch

from atlas.config import RunConfig
from atlas.errors import AtlasError
from atlas.models import LayerProbe
from atlas.models.codes import codes_of_images
from atlas.models.deepsim import foreign_code_note
from atlas.models.registry import load_run_model


def real_codes(
    cfg: RunConfig, images_dir: str, limit: int | None, log=print, minimum: tuple[int, str] = (1, "")
) -> tuple[torch.Tensor, str]:
    """Codes h = E(x) of the images in ``images_dir`` at the config's code layer, E the network G inverts
    (``models.encoder``, else the target; through the generator's code encoder when it has one: a subspace
    generator's coefficients); returns (codes, layer). ``minimum``: (the fewest images the caller needs, why),
    checked after the layer and before any image is decoded."""
    from atlas.sampling import load_image_folder
    from atlas.sampling.manifold import encode_code
    from atlas.sampling.real import image_files

    network = load_run_model(cfg, "encoder") or load_run_model(cfg, "target")
    layer = cfg.models.code_layer
    encoder = generator = None  # a subspace generator's encoder (its code is not the layer's activations)
    if cfg.models.generator is not None:
        generator = load_run_model(cfg, "generator")
        layer = layer or generator.extras.get("code_layer")
        encoder = generator.extras.get("code_encoder")
    if not layer:  # the pre-flight's advice: a torchvision AlexNet's fc6 means nothing to a DeePSiM G
        from atlas.pipeline.preflight import ENCODER_EXAMPLES

        raise AtlasError(
            "models.code_layer: name the layer whose output is the generator's code: a target layer when G "
            "inverts the target, else set models.encoder to the network G inverts and name its layer "
            f"({ENCODER_EXAMPLES}; relu6 in both)"
        )
    probe = LayerProbe(network.module, [layer])

    def code(x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) rgb01 -> (B, *code shape)
        acts = probe(network.space.encode(x))[layer]
        return encode_code(acts, encoder) if encoder is not None else acts

    _check_code_size(code, network.space.size, generator, layer)  # before reading a single image
    if generator is not None:
        via = cfg.models.encoder is not None
        note = foreign_code_note(generator.spec, network.spec, str(layer), ["this command"], via_encoder=via)
        if note:
            print(f"atlas: warning: {note}", file=sys.stderr)
    least, purpose = minimum  # too few images: said before any is decoded and coded
    files = image_files(images_dir) if least > 1 else None  # (one: load_image_folder says "none")
    if files is not None and len(files) < least:
        raise AtlasError(f"--images: only {len(files)} image(s) in {images_dir!r}; {purpose}")
    real = load_image_folder(images_dir, max(network.space.size, 256), limit=limit, files=files)
    log(f"computing {layer} codes of {len(real.images)} images from {images_dir}")

    codes = codes_of_images(code, real.images)
    return codes, str(layer)


def _check_code_size(code, size: int, generator, layer: str) -> None:
    """The layer's codes must be what the generator takes (else `atlas run` refuses the file written)."""
    if generator is None or not generator.code_shape:
        return
    with torch.no_grad():
        shape = tuple(code(torch.zeros(1, 3, size, size)).shape[1:])
    want = tuple(generator.code_shape)
    if math.prod(shape) != math.prod(want):
        raise AtlasError(
            f"models.code_layer: layer {layer!r} gives codes of {math.prod(shape)} values {shape} but the "
            f"generator's code has {math.prod(want)} {want}; name the layer G inverts"
        )
