"""The ``sampler`` and ``facets`` sections: the method and its settings, how chains start and stop, and
how their end points are clustered into facets.
"""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from atlas.config.section import HUGE, Float, Section


class DgnAmConfig(Section):
    """DGN-AM (Nguyen et al. 2016, Eq. 1) step settings."""

    lr: Float = Field(
        0.1,
        description="Start step size of the normalized code step (toy world 0.1; CaffeNet fc6: 8).",
        gt=0,
        le=HUGE,
    )
    lr_end: Float = Field(
        1e-3, description="Final step size; decays linearly (original: 1e-10).", ge=0, le=HUGE
    )
    l2_decay: Float = Field(
        0.99, description="Multiplicative decay of h after each step (original 0.99).", gt=0, le=1
    )


class PpgnConfig(Section):
    """PPGN-h (Nguyen et al. 2017, Eq. 11) sampler settings."""

    prior: Literal["dae", "joint"] = Field(
        "dae", description="R(h): the DAE on h, or E(G(h)) (Noiseless Joint PPGN-h)."
    )
    eps1: Float = Field(
        1e-5,
        description="Prior term weight (toward realistic codes); 1e-3 more abstract, 1e-1 ignores class.",
        ge=0,
        le=HUGE,
    )
    eps2: Float = Field(
        1.0, description="Condition term weight (toward the unit). Original 1.", ge=0, le=HUGE
    )
    eps3: Float = Field(1e-5, description="Noise std (diversity). Original 1e-17 .. 1e-5.", ge=0, le=HUGE)
    noise: Literal["absolute", "relative"] = Field(
        "absolute",
        description="absolute: noise std eps3 (Eq. 11); relative: eps3 x each chain's mean |eps2 grad|, so "
        "noise and condition keep their balance whatever the unit's activation scale.",
        json_schema_extra={"omit_default": True},
    )
    lr: Float = Field(
        1.0,
        description="Step size: of the normalized update (original 1), or the factor on d (eq11).",
        gt=0,
        le=HUGE,
    )
    condition: Literal["exact", "released"] = Field(
        "exact",
        description="The condition term's gradient with objective log_softmax: exact (Eq. 11: d log p(y|x), "
        "every competing unit pushed down by its p) or released (the released sampler's one-hot (1 - p_y) on "
        "the unit alone).",
        json_schema_extra={"omit_default": True},
    )
    step: Literal["normalized", "eq11"] = Field(
        "normalized",
        description="normalized: h += lr d / mean|d| (released code); eq11: h += lr d (Eq. 11 as printed).",
    )
    save_every: int = Field(
        5, description="Keep a snapshot every N steps (original 5 for classes, 10 for conv5).", ge=1
    )
    threshold: Float = Field(
        0.0,
        description="Keep a snapshot only when the unit's softmax probability exceeds this (PPGN 0.98).",
        ge=0,
        le=1,
    )
    reset_every: int = Field(
        0, description="Re-draw h every N steps for diversity (0 = never; original 100 for conv5).", ge=0
    )


class PixelConfig(Section):
    """Pixel-space activation maximization with hand-made priors (the baselines)."""

    lr: Float = Field(0.05, description="Normalized step size in pixel space ([0,1] images).", gt=0, le=HUGE)
    l2_decay: Float = Field(
        1.0,
        description="Multiplicative decay toward grey after each step (1 = off; 0.99 typical).",
        gt=0,
        le=1,
    )
    blur_every: int = Field(0, description="Gaussian blur every N steps (0 = off; 4 typical).", ge=0)
    blur_sigma: Float = Field(0.5, description="Blur sigma in pixels.", gt=0, le=100)
    jitter: int = Field(0, description="Random translation in pixels each step (0 = off).", ge=0, le=1024)
    tv: Float = Field(0.0, description="Total-variation penalty weight (0 = off).", ge=0, le=HUGE)


def _ordered(section: Section, low: str, high: str, example: str = "") -> None:
    """A range given by two keys is not upside down: ``low`` <= ``high``."""
    lo, hi = getattr(section, low), getattr(section, high)
    if lo > hi:
        raise ValueError(f"{low}: {lo:g} is above {high} {hi:g}; give {low} <= {high}{example}")


class RobustnessFields(Section):
    """Transformation robustness (Lucid): what the target sees is a randomly warped copy of the picture, each
    chain drawing its own pad, jitter, scale and rotation every step (one affine warp, grey outside)."""

    pad: Float = Field(
        0.05,
        description="Grey padding around the picture, as a fraction of its side (Lucid: 12 px at 224).",
        ge=0,
        le=1,
    )
    jitter: Float = Field(
        0.035,
        description="Random translation over this fraction of the side in all (half each way), each step "
        "(Lucid's jitter(8): 8 px at 224).",
        ge=0,
        le=1,
    )
    scale_min: Float = Field(0.9, description="Smallest random zoom (Lucid 0.9).", gt=0, le=10)
    scale_max: Float = Field(1.1, description="Largest random zoom (Lucid 1.1).", gt=0, le=10)
    rotate: Float = Field(
        10.0, description="Random rotation up to +- this many degrees (Lucid 10).", ge=0, le=180
    )

    @model_validator(mode="after")
    def _check_scale(self) -> RobustnessFields:
        _ordered(self, "scale_min", "scale_max", " (e.g. 0.9 and 1.1)")
        return self


class FourierConfig(RobustnessFields):
    """Lucid/Lucent Fourier parametrization (Olah et al. 2017): 1/f-scaled spectrum, decorrelated colour,
    sigmoid; Adam on the spectrum; transformation robustness."""

    lr: Float = Field(0.05, description="Adam step size on the spectrum (Lucid 0.05).", gt=0, le=HUGE)
    decay_power: Float = Field(
        1.0, description="Spectrum scale 1 / f^decay_power (Lucid 1.0; Horama 1.5).", ge=0, le=4
    )
    init_std: Float = Field(0.01, description="Std of the random start spectrum (Lucid 0.01).", gt=0, le=HUGE)


class MacoConfig(Section):
    """MACO (Fel et al. 2023): optimize the Fourier phase only; the magnitude stays the mean amplitude
    spectrum of natural images."""

    lr: Float = Field(
        0.2,
        description="Adam step size on the phase (toy world: 0.2 best of 0.05 / 0.2 / 1; Horama: NAdam 1.0).",
        gt=0,
        le=HUGE,
    )
    spectrum: Literal["real", "power_law"] = Field(
        "real",
        description="Fixed magnitude: 'real' = mean amplitude spectrum of facets.real_images (toy world or "
        "your folder; falls back to power_law without them), 'power_law' = 1/f.",
    )
    crop_min: Float = Field(
        0.7,
        description="Smallest random crop, as a fraction of the picture's side (MACO crops about the "
        "model's input from a 5x larger canvas; here the canvas is the input size).",
        gt=0,
        le=1,
    )
    crop_max: Float = Field(1.0, description="Largest random crop (fraction of the side).", gt=0, le=1)
    noise: Float = Field(
        0.05, description="Gaussian + uniform noise added to each crop (MACO 0.05).", ge=0, le=1
    )

    @model_validator(mode="after")
    def _check_crop(self) -> MacoConfig:
        _ordered(self, "crop_min", "crop_max")
        return self


class AccentuationConfig(RobustnessFields):
    """Feature accentuation (Hamblin et al. 2024): from a real image, raise the unit while an L2 distance in
    an early layer keeps the picture close to the start image there."""

    lr: Float = Field(
        0.05, description="Adam step size on the spectrum (Fourier parametrization).", gt=0, le=HUGE
    )
    decay_power: Float = Field(1.0, description="Spectrum scale 1 / f^decay_power.", ge=0, le=4)
    weight: Float = Field(
        1.0,
        description="Weight of the distance term, in objective units: weight x ||phi(x) - phi(x0)||^2 / "
        "||phi(x0)||^2 of the early layer phi (0 = plain Fourier ascent from the real image; toy world 1).",
        ge=0,
        le=HUGE,
    )
    layer: str | None = Field(
        None,
        description="Target layer of the distance; default: the first layer below the input's resolution "
        "(toy world pool1, AlexNet features.0).",
    )

    @field_validator("layer")
    @classmethod
    def _layer_named(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("empty layer name; name an early target layer or null (the default)")
        return value


class GaConfig(Section):
    """XDream-style genetic algorithm in G's code space (Ponce et al. 2019; Xiao & Kreiman 2020): forward
    passes only. ``sampler.steps`` counts generations."""

    population: int = Field(20, description="Codes per chain per generation (XDream 20-40).", ge=2, le=4096)
    elite: int = Field(2, description="Best codes kept unchanged each generation.", ge=0, le=4095)
    temperature: Float = Field(
        1.0,
        description="Parent selection: softmax of z-scored fitness / temperature (lower: greedier).",
        gt=0,
        le=HUGE,
    )
    mutation_rate: Float = Field(0.3, description="Probability that a code element mutates.", ge=0, le=1)
    mutation_size: Float = Field(
        0.5, description="Std of a mutation, in code standard deviations.", ge=0, le=HUGE
    )
    init_noise: Float = Field(
        0.5,
        description="First generation: the start code + this x std x N(0, 1) (member 0 unchanged).",
        ge=0,
        le=HUGE,
    )

    @model_validator(mode="after")
    def _check_elite(self) -> GaConfig:
        if self.elite >= self.population:
            raise ValueError(
                f"elite: {self.elite} keeps the whole population of {self.population}; give elite < "
                "population"
            )
        return self


class CmaesConfig(Section):
    """Separable CMA-ES (diagonal covariance; Ros & Hansen 2008) in G's code space, in code-std units:
    forward passes only. ``sampler.steps`` counts generations."""

    population: int = Field(
        20, description="Samples per chain per generation (lambda; CMA-ES default 4 + 3 ln D).", ge=2, le=4096
    )
    sigma: Float = Field(0.5, description="Initial step size, in code standard deviations.", gt=0, le=HUGE)


class SamplerConfig(Section):
    method: Literal["dgn_am", "ppgn_h", "pixel", "fourier", "maco", "accentuation", "ga", "cmaes"] = Field(
        "dgn_am",
        description="Sampler: dgn_am (Eq. 1), ppgn_h (Eq. 11), pixel; peers (docs/methods.md): fourier, "
        "maco, accentuation (pixel family, no generator), ga, cmaes (G's code, forward passes only).",
    )
    steps: int = Field(
        200,
        description="Optimization steps per chain (original 200; toy world 100-200). A gradient step costs "
        "about 3 forward passes, a ga or cmaes step is one generation of `population` passes: equal steps "
        "are not equal budgets (chains.passes records each chain's).",
        ge=1,
        le=100_000,
    )
    chains_per_unit: int = Field(
        4, description="Chains per unit (>= 4 for facets; PPGN diversity needs several).", ge=1, le=1024
    )
    objective: Literal["raw", "softmax", "log_softmax"] = Field(
        "raw",
        description="raw activation (DGN-AM), softmax, or log_softmax across the layer (PPGN; survey "
        "Table 4.2).",
    )
    spatial: Literal["center", "mean"] = Field(
        "center", description="Conv units: one position at the map centre (DGN-AM/PPGN) or the channel mean."
    )
    start: Literal["random", "mean", "real", "facet_seeded"] = Field(
        "facet_seeded",
        description="Start codes: random N(0,1) clipped, mean code + noise, a real image's code, or "
        "facet-seeded (k-means); real and facet_seeded need facets.real_images.",
    )
    start_noise: Float = Field(
        0.0,
        description="Std of the noise added to start codes, in code stds (mean, real and facet_seeded code "
        "starts; every method). Pixel starts have their own (atlas/sampling/starts.py).",
        ge=0,
        le=HUGE,
    )
    record_every: int = Field(10, description="Record chain statistics every N steps.", ge=1)
    start_pool: int = Field(
        1,
        description="Each chain starts from the best of this many draws of its start (scored by the unit's "
        "objective in one forward pass, no gradient): a search over start regions, e.g. colours the "
        "gradient does not cross. mean and random starts, code methods; 1 = off.",
        ge=1,
        le=1024,
        json_schema_extra={"omit_default": True},
    )
    start_pool_noise: Float = Field(
        1.0,
        description="Std, in code stds, of the pool's draws around the mean code (start: mean with "
        "start_pool > 1); the chosen draw then gets no further noise.",
        ge=0,
        le=HUGE,
        json_schema_extra={"omit_default": True},
    )
    pair_start: Literal["start", "composed"] = Field(
        "start",
        description="Where a pair composite's chains (a + b, layers.pairs) start: 'start' as every chain "
        "(sampler.start); 'composed' from its two units' own pictures, each unit synthesized alone first, "
        "laid side by side (one object at a quarter of the width, the other at three quarters, on one "
        "background) and read back into G's code: chain k from the best, by its own objective, of unit a's "
        "chain k beside each of b's chains, either side (code methods; docs/sampling.md, 'Composed pairs').",
        json_schema_extra={"omit_default": True},
    )
    relu_gradient: Literal["exact", "redirected"] = Field(
        "redirected",
        description="Gradient through the target's nn.ReLU modules while chains climb: exact, or "
        "redirected (Lucid): an example whose gradient a ReLU blocks entirely gets the incoming gradient "
        "through it, so a unit that starts dead (0 on the start picture) still moves. Values are unchanged; "
        "gradient methods.",
    )
    stop_at: Float = Field(
        0.0,
        description="Stop a chain once its unit's activation reaches this multiple of the unit's highest "
        "activation on the real images (1.0: the natural maximum; 0 = never). Keeps pictures in the natural "
        "range; without real images chains run every step.",
        ge=0,
        le=HUGE,
        json_schema_extra={"omit_default": True},
    )
    diversity: Float = Field(
        0.0,
        description="Weight of the diversity term (Lucid): each chain's objective loses this x its mean "
        "cosine similarity to the other chains of its unit at sampler.diversity_layer (Gram matrices for "
        "conv layers). Gradient methods; 0 = off.",
        ge=0,
        le=HUGE,
        json_schema_extra={"omit_default": True},
    )
    diversity_layer: str | None = Field(
        None,
        description="Layer the diversity term compares; default: the earliest of the three path layers "
        "before the unit's layer (an early conv layer: style diversity).",
        json_schema_extra={"omit_default": True},
    )
    dgn_am: DgnAmConfig = Field(default_factory=DgnAmConfig, description="DGN-AM settings.")
    ppgn_h: PpgnConfig = Field(default_factory=PpgnConfig, description="PPGN-h settings.")
    pixel: PixelConfig = Field(default_factory=PixelConfig, description="Pixel baseline settings.")
    fourier: FourierConfig = Field(
        default_factory=FourierConfig,
        description="Fourier (Lucid) settings.",
        json_schema_extra={"omit_default": True},
    )
    maco: MacoConfig = Field(
        default_factory=MacoConfig, description="MACO settings.", json_schema_extra={"omit_default": True}
    )
    accentuation: AccentuationConfig = Field(
        default_factory=AccentuationConfig,
        description="Feature accentuation settings.",
        json_schema_extra={"omit_default": True},
    )
    ga: GaConfig = Field(
        default_factory=GaConfig,
        description="Genetic algorithm settings.",
        json_schema_extra={"omit_default": True},
    )
    cmaes: CmaesConfig = Field(
        default_factory=CmaesConfig, description="CMA-ES settings.", json_schema_extra={"omit_default": True}
    )

    @model_validator(mode="after")
    def _check(self) -> SamplerConfig:
        _check_condition(self)
        return self

    @property
    def uses_dae(self) -> bool:
        """Whether the run loads and reads ``models.dae``: PPGN-h with its DAE prior (Eq. 7's R(h))."""
        return self.method == "ppgn_h" and self.ppgn_h.prior == "dae"


def _check_condition(s: SamplerConfig) -> None:
    if s.method == "ppgn_h" and s.ppgn_h.condition == "released" and s.objective != "log_softmax":
        raise ValueError(
            f"ppgn_h.condition: 'released' is the released sampler's gradient of log p(y|x) and "
            f"sampler.objective is {s.objective!r}; set sampler.objective: log_softmax or condition: exact"
        )


class FacetConfig(Section):
    enabled: bool = Field(True, description="Cluster each unit's chain end points into facets.")
    max_facets: int = Field(
        4, description="Upper bound on facets per unit (and k of facet-seeded k-means).", ge=1, le=64
    )
    distance: Float = Field(
        0.15,
        description="Cosine distance (facet-layer features) between cluster means above which two facets "
        "stay apart; toy world: facets of one class 0.18-0.30 apart, chains of one facet < 0.1.",
        gt=0,
        le=2,
    )
    layer: str | None = Field(
        None,
        description="Target layer whose features are clustered into facets; default: the penultimate layer "
        "(the last 1-D layer before the output layer).",
        json_schema_extra={"omit_default": True},
    )
    real_images: str | None = Field(
        "toyworld",
        description="Real-image set for facet seeds and dataset examples: 'toyworld' (toy-world targets), a "
        "folder of images (every file must decode), or null.",
        json_schema_extra={"type_doc": "toyworld | folder | null"},
    )
    real_limit: int | None = Field(
        None,
        description="At most this many real images: an evenly spaced sample of the folder's sorted files "
        "(or of the toy world's test split); null: every image. Each worker holds them as float32 (0.6 MB "
        "an image at 224 px) and passes them through the target once per layer.",
        ge=1,
        json_schema_extra={"omit_default": True},
    )
    top_k_real: int = Field(
        9, description="Real top-k images recorded per unit (dataset examples).", ge=0, le=100
    )
    seed_pool: int = Field(
        300, description="Top-activating real images clustered for facet-seeded starts.", ge=1
    )

    @field_validator("layer")
    @classmethod
    def _layer_named(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("empty layer name; name a target layer or null (the penultimate layer)")
        return value

    @field_validator("real_images")
    @classmethod
    def _images_named(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("empty path; give 'toyworld', a folder of images, or null")
        return value
