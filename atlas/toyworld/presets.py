"""Toy-world presets: every knob of the world and of its trained networks, in one frozen config.

Usage::

    from atlas.toyworld.presets import get_preset, config_hash
    cfg = get_preset("micro")
    config_hash(cfg)            # -> "3f2a9c0d1b7e" (keys the cache folder)

The cache is keyed by ``config_hash``, so changing any training setting (or ``FORMAT_VERSION``, bumped
when the training code changes what it produces) trains a fresh world next to the old one.
Gate thresholds are not part of the hash: tightening a gate never retrains.

The attribute reader (``reader``, issue 16) came after the world's hashes were fixed: it is not part of
``config_hash`` either (changing it must not orphan the shipped T, J, G and DAE). Its file records
``reader_hash(cfg)`` instead (the world's hash, the reader's settings and ``READER_FORMAT_VERSION``); a
reader file with another reader hash is stale and retrained.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

from atlas.errors import AtlasError

FORMAT_VERSION = 1
# bumped when train_reader changes what it produces (keys reader_hash only); 2: the coverage map
READER_FORMAT_VERSION = 2


@dataclass(frozen=True)
class DataConfig:
    size: int = 32  # square image size in pixels (a multiple of 8: three 2x pools)
    n_train: int = 16000
    n_test: int = 2000
    seed: int = 0
    radius: tuple[float, float] = (0.58, 0.8)  # object radius, fraction of half the image (32 px: 9-13 px)
    distractor_p: float = 0.3  # probability of a small dot of another colour
    noise: float = 0.02  # pixel noise std
    # probability of a second object of another class, in the other half of the image (0: one object an
    # image). Left out of config_hash at 0, so the one-object worlds keep their hashes and shipped weights.
    second_p: float = 0.0


@dataclass(frozen=True)
class TargetConfig:
    """T: conv(BN) x4, max-pools, fc6 -> fc7 -> fc8; trained jointly with a decoder from relu6."""

    widths: tuple[int, int, int, int] = (24, 48, 96, 96)
    pools: int = 2  # 2: fc6 reads an S/4 map (keeps position), 3: S/8 (the prototype's)
    fc: int = 256
    epochs: int = 8
    batch: int = 32
    lr: float = 2e-3
    ce_weight: float = 0.2  # CE weight in the joint phase (1.0 starves the code of picture content)
    recon_weight: float = 1.0  # weight of the auxiliary reconstruction loss (0 = plain classifier)
    head_epochs: int = 10  # then fc7/fc8 alone on the frozen code (accuracy without touching fc6)
    seed: int = 1


@dataclass(frozen=True)
class JudgeConfig:
    """J: a different architecture (5x5 stem, LeakyReLU, average pools, global pooling) and seed."""

    widths: tuple[int, int, int] = (24, 48, 96)
    epochs: int = 4
    batch: int = 64
    lr: float = 2e-3
    blur_p: float = 0.5  # augmentation: probability of a Gaussian blur (sigma up to blur_sigma)
    blur_sigma: float = 1.0
    seed: int = 2


@dataclass(frozen=True)
class GeneratorConfig:
    """G: up-convolutional (DeePSiM family), initialised from T's decoder and fine-tuned on frozen T codes."""

    width: int = 32
    epochs: int = 8
    batch: int = 32
    lr: float = 1e-3
    pixel_weight: float = 1.0  # 10 * MSE on pixels
    edge_weight: float = 1.0  # L1 on image gradients (keeps edges sharp)
    feature_weight: float = 0.5  # L1 on the features of a fixed comparator C (not T, not J)
    adv_weight: float = 0.0  # adversarial term (discriminator conditioned on the code); 0 = off
    object_weight: float = 0.0  # extra pixel-loss weight on the objects' pixels (1 + w there); 0 = plain MSE
    d_every: int = 2  # discriminator update every N generator steps
    seed: int = 3
    # the T layer G draws from (issue 17): "relu6" (the fc6 code; G starts from T's decoder) or "conv4" (T's
    # spatial map, as DeePSiM's pool5 G; G trained from scratch). Left out of config_hash at "relu6".
    code_layer: str = "relu6"
    # with conv4 (required): G's code is this many whitened principal coefficients of the map
    # (atlas.models.subspace; the whole map as the code turned code ascent into fragments). Not hashed at 0.
    subspace: int = 0


@dataclass(frozen=True)
class DaeConfig:
    """Residual MLP denoising autoencoder on standardized relu6 codes."""

    hidden: int = 512
    blocks: int = 2
    noise: float = 0.5  # noise std in units of each code dimension's std
    epochs: int = 20
    batch: int = 128
    lr: float = 1e-3
    seed: int = 4


@dataclass(frozen=True)
class ReaderConfig:
    """The attribute reader: decodes a picture's fine label (class and facet), object colour, position bin
    (3 x 3), size bin (3) and distractor. Its own architecture (neither T's nor J's): coordinate channels in,
    strided 3x3 convs with GroupNorm and SiLU (no pooling layers), a 1x1 squeeze, flatten, one hidden
    layer, one linear head per attribute; and a coverage map of the object's pixels (``nets.ReaderNet``)."""

    widths: tuple[int, int, int, int] = (16, 32, 64, 64)  # stem (stride 1), then three stride-2 convs
    squeeze: int = 16  # 1x1 conv channels before flattening the S/8 map (keeps where things are)
    hidden: int = 128
    epochs: int = 10
    batch: int = 64
    lr: float = 2e-3
    blur_p: float = 0.5  # augmentation as J's: blur (p, sigma up to blur_sigma) and contrast 0.6-1.0
    blur_sigma: float = 1.0
    cover_weight: float = 1.0  # weight of the coverage map's per-pixel loss (the object's mask)
    seed: int = 5


@dataclass(frozen=True)
class GateThresholds:
    t_acc: float = 0.98
    j_fine_acc: float = 0.98
    t_recon_acc: float = 0.95
    j_recon_acc: float = 0.75
    j_facet_recon_acc: float = 0.70
    dae_error_ratio: float = 1.0  # DAE error / identity error on noisy held-out codes; passes when below
    # the attribute reader's held-out accuracy per attribute (test split; bins by the split's own tertiles).
    # Shipped default reader (Intel Xeon AMX, torch 2.14.1): 0.988, 0.963, 1.000, 0.903, 0.904, 0.986, 0.918
    reader_class_acc: float = 0.97
    reader_facet_acc: float = 0.94  # fine label, images of the multifaceted classes
    reader_colour_acc: float = 0.98
    reader_position_acc: float = 0.85  # the 3 x 3 cell (row and column right; near a bin edge is a coin flip)
    reader_size_acc: float = 0.85  # radius tertile (the bins are 1.2 px apart at 32 x 32)
    reader_distractor_acc: float = 0.95  # base rate: 70 % of the images have none
    reader_cover_iou: float = 0.85  # the coverage map's IoU with the objects' masks (summed over the split)


CODE_LAYERS = ("relu6", "conv4")  # the T layers a toy-world G can draw from


@dataclass(frozen=True)
class ToyWorldConfig:
    name: str = "default"
    data: DataConfig = field(default_factory=DataConfig)
    target: TargetConfig = field(default_factory=TargetConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    dae: DaeConfig = field(default_factory=DaeConfig)
    gates: GateThresholds = field(default_factory=GateThresholds)
    reader: ReaderConfig = field(default_factory=ReaderConfig)  # not in config_hash: see reader_hash

    def __post_init__(self) -> None:
        if self.data.size % 8:
            raise AtlasError(f"toy world {self.name!r}: data.size {self.data.size} must be a multiple of 8")
        g = self.generator
        if g.code_layer not in CODE_LAYERS:
            raise AtlasError(
                f"toy world {self.name!r}: generator.code_layer {g.code_layer!r}; valid: {CODE_LAYERS}"
            )
        if g.code_layer == "relu6" and g.subspace:
            raise AtlasError(
                f"toy world {self.name!r}: generator.subspace needs generator.code_layer 'conv4'"
            )
        if g.code_layer != "relu6" and g.adv_weight:
            raise AtlasError(
                f"toy world {self.name!r}: generator.adv_weight needs generator.code_layer 'relu6'"
            )
        map_size = self.target.widths[3] * (self.data.size // 2**self.target.pools) ** 2
        top = min(map_size, self.data.n_train - 1)
        if g.code_layer == "conv4" and not 1 <= g.subspace <= top:
            raise AtlasError(
                f"toy world {self.name!r}: generator.subspace {g.subspace} with code_layer 'conv4' must be "
                f"in 1..{top} (the map has {map_size} values)"
            )


DEFAULT = ToyWorldConfig()

# micro: 16x16, a few thousand images, tiny widths; trains in about a minute on idle cores (tests). Its gates
# are lower on purpose: they check that the pipeline works, not that the pictures are good.
MICRO = ToyWorldConfig(
    name="micro",
    data=DataConfig(size=16, n_train=4000, n_test=600, seed=0),
    target=TargetConfig(widths=(16, 32, 48, 48), fc=64, epochs=8, batch=32, lr=3e-3, head_epochs=20),
    judge=JudgeConfig(widths=(16, 32, 48), epochs=6, batch=32, lr=3e-3),
    generator=GeneratorConfig(width=24, epochs=6, batch=32, lr=2e-3),
    dae=DaeConfig(hidden=128, blocks=1, epochs=10, batch=64),
    reader=ReaderConfig(widths=(16, 32, 48, 48), squeeze=8, hidden=96, epochs=10, batch=32, lr=3e-3),
    gates=GateThresholds(
        t_acc=0.75,  # shipped weights 0.872 (Intel Xeon AMX; an AMD EPYC run: 0.855), torch 2.14.1
        j_fine_acc=0.70,  # 0.803 (0.823)
        t_recon_acc=0.40,  # 0.520 (0.535)
        j_recon_acc=0.40,  # 0.550 (0.593)
        j_facet_recon_acc=0.20,  # 0.283 (0.350)
        dae_error_ratio=1.0,  # 0.284 (0.315)
        reader_class_acc=0.80,  # shipped reader 0.88
        reader_facet_acc=0.60,  # 0.77
        reader_colour_acc=0.95,  # 1.0
        reader_position_acc=0.70,  # 0.80
        reader_size_acc=0.70,  # 0.73
        reader_distractor_acc=0.60,  # 0.72: the dot is ~1 px at 16 x 16; about the base rate 0.70
        reader_cover_iou=0.75,  # 0.83: the outline is a larger share of a 16 x 16 object
    ),
)

# pairs (issue 17, experimental): half the images hold two objects of different classes in opposite halves,
# and T and J learn both labels (soft targets, half each), so a picture made for "a + b" can be judged as
# both. Not shipped: `atlas bootstrap --preset pairs` trains it (10 min on 2 idle cores). 40 x 40 so each
# object is still 8-10 px in radius: at 32 x 32 (6-7 px) T, J and the reader lost the shapes. fc 512 and CE
# weight 0.4: with the default T (fc 256, CE 0.2) T named both objects of a natural picture 0.29 of the
# time; CE 1.0 gave 0.90 but G's blurriest redraws; 0.4 gives 0.87.
# G draws from T's conv4 map through its top 512 whitened principal coefficients: a G from the fc6 code
# redrew two objects as soft blobs (J read its redraws right 0.38, both objects 0.16; this G: 0.96 / 0.84),
# and DGN-AM's pair pictures from it were read as both by J 0.20-0.30 (this G: 1.00 from the config's own
# start, as its start drawings; 0.20-0.35 from the mean code; docs/toyworld.md, "The pairs world").
# Still failing: the reader's gates.
PAIRS = ToyWorldConfig(
    name="pairs",
    data=DataConfig(size=40, radius=(0.4, 0.48), second_p=0.5),
    target=TargetConfig(fc=512, ce_weight=0.4),
    judge=JudgeConfig(epochs=6),
    generator=GeneratorConfig(code_layer="conv4", subspace=512),
    gates=GateThresholds(
        t_acc=0.95,  # top class is one of the image's classes
        j_fine_acc=0.95,
        t_recon_acc=0.85,
        j_recon_acc=0.70,
        j_facet_recon_acc=0.60,
        reader_class_acc=0.95,  # the reader: one-object test images
        reader_facet_acc=0.90,
        reader_colour_acc=0.95,
        reader_position_acc=0.80,
        reader_size_acc=0.70,
        reader_distractor_acc=0.90,
        reader_cover_iou=0.85,
    ),
)

# more targets for an ensemble (``models.ensemble``, issue 17): T's architecture and data, other seeds; each
# is trained on demand, independent of the rest of the world, and never shipped
MEMBERS = tuple(f"target{k}" for k in range(2, 10))


def member_seed(cfg: ToyWorldConfig, name: str) -> int:
    """The training seed of ensemble member ``target<k>``: T's seed + 1000 (k - 1)."""
    return cfg.target.seed + 1000 * (int(name.removeprefix("target")) - 1)


PRESETS: dict[str, ToyWorldConfig] = {"default": DEFAULT, "micro": MICRO, "pairs": PAIRS}
SHIPPED_PRESETS = ("default", "micro")  # their trained weights ship with atlas (atlas/toyworld/weights)


def get_preset(name: str) -> ToyWorldConfig:
    if name not in PRESETS:
        raise AtlasError(f"unknown toy-world preset {name!r}; valid presets: {', '.join(PRESETS)}")
    return PRESETS[name]


def config_dict(cfg: ToyWorldConfig) -> dict:
    return dataclasses.asdict(cfg)


def config_hash(cfg: ToyWorldConfig) -> str:
    """12 hex digits over everything that changes what T, J, G and the DAE are (not the gate thresholds,
    not the reader: see :func:`reader_hash`)."""
    d = config_dict(cfg)
    d.pop("gates")
    d.pop("reader")
    if not d["data"]["second_p"]:
        d["data"].pop("second_p")  # came after the shipped hashes (see DataConfig.second_p)
    if not d["generator"]["object_weight"]:
        d["generator"].pop("object_weight")  # came after the shipped hashes too
    if d["generator"]["code_layer"] == "relu6":
        d["generator"].pop("code_layer")  # so did the spatial generator (issue 17)
    if not d["generator"]["subspace"]:
        d["generator"].pop("subspace")
    d["format_version"] = FORMAT_VERSION
    blob = json.dumps(d, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def reader_hash(cfg: ToyWorldConfig) -> str:
    """12 hex digits over what changes the attribute reader: the world (its images), the reader's settings
    and ``READER_FORMAT_VERSION``."""
    d = {
        "world": config_hash(cfg),
        "reader": dataclasses.asdict(cfg.reader),
        "reader_format_version": READER_FORMAT_VERSION,
    }
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]
