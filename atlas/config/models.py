"""The ``models`` section: the target, the generator G, the DAE and how the target wants its input."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from atlas.config.section import HUGE, Float, Section
from atlas.errors import did_you_mean
from atlas.toyworld.presets import MEMBERS


class PreprocessConfig(Section):
    """How a target wants its input image: overrides what the model spec (or its factory) declares.

    The target sees ``x = (fit(rgb01) * value_scale [channels in channel_order] - mean) / std``, where
    ``rgb01`` is the canonical picture (float RGB in [0, 1]) and ``fit`` brings it to ``size`` x ``size``.
    """

    size: int | None = Field(
        None,
        description="Square input side in pixels the target expects (CaffeNet 227, ResNet 224, tiny CNN 64); "
        "a picture of another size is fitted by geometry.",
        ge=1,
        le=4096,
    )
    geometry: Literal["center_crop", "resize"] | None = Field(
        None,
        description="How a picture of another size is fitted: center_crop (take the centre when larger, as "
        "DGN-AM crops G's 256 px to 227; resize when smaller) or resize (bilinear to size).",
    )
    channel_order: Literal["RGB", "BGR", "gray"] | None = Field(
        None,
        description="Channel order the target expects: RGB (torchvision), BGR (Caffe models) or gray (one "
        "channel: the picture's luminance; mean and std then one value each).",
    )
    value_scale: Float | None = Field(
        None,
        description="What full intensity is in the target's units before mean/std: 1.0 for [0,1] inputs "
        "(torchvision), 255.0 for [0,255] inputs (Caffe).",
        gt=0,
        le=HUGE,
    )
    mean: list[Float] | None = Field(
        None,
        description="Per-channel mean subtracted after scaling, in the target's channel order and value "
        "scale (torchvision [0.485, 0.456, 0.406]; Caffe BGR [104, 117, 123]); one value: every channel's.",
        json_schema_extra={"type_doc": "[float, float, float] | [float] | null"},
    )
    std: list[Annotated[Float, Field(gt=0)]] | None = Field(
        None,
        description="Per-channel std divided by after the mean, in the same order and scale (torchvision "
        "[0.229, 0.224, 0.225]; Caffe [1, 1, 1]); each > 0; one value: every channel's.",
        json_schema_extra={"type_doc": "[float > 0, ...x3] | [float > 0] | null"},
    )

    @field_validator("mean", "std")
    @classmethod
    def _three_channels(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and len(value) not in (1, 3):
            raise ValueError(
                f"expected 3 values (one per channel) or 1 (every channel's), got {len(value)}: {value}"
            )
        return value

    @model_validator(mode="after")
    def _gray_one_value(self) -> PreprocessConfig:
        for key in ("mean", "std"):
            value = getattr(self, key)
            if self.channel_order == "gray" and value is not None and len(value) != 1:
                raise ValueError(f"{key}: channel_order gray has one channel; give one value, e.g. [0.5]")
        return self


MODEL_SCHEMES = ("toyworld", "torchvision", "python", "deepsim", "dae")  # atlas.models.registry.SCHEMES


class ModelConfig(Section):
    """A model given by a spec string, with optional weights file and preprocessing."""

    spec_shorthand: ClassVar[bool] = True  # `target: toyworld:target` stands for {spec: toyworld:target}

    spec: str = Field(
        "",
        description="Model spec: toyworld:NAME, torchvision:NAME, python:pkg.module:factory, deepsim:fc6, "
        "dae:residual_mlp.",
    )
    weights: str | None = Field(
        None,
        description="State-dict file (.pt/.pth, torch.save(model.state_dict())); null: the toy world's "
        "cache, a factory that loads its own weights, or random weights (allow_random_weights).",
        json_schema_extra={"type_doc": "file | null"},
    )
    preprocess: PreprocessConfig | None = Field(
        None,
        description="Input image space override (image networks: the target, the encoder); see "
        "models.target.preprocess.*.",
        json_schema_extra={"image_networks_only": True},
    )
    output_layer: str | None = Field(
        None,
        description="Targets: the layer holding the class outputs (its units are kind 'output'); default: "
        "the model's own (python factories: atlas_output_layer) or its last layer. Name it for multi-head "
        "models.",
        json_schema_extra={"targets_only": True, "omit_default": True},
    )

    @model_validator(mode="before")
    @classmethod
    def _spec_shorthand(cls, data: Any) -> Any:
        return {"spec": data} if isinstance(data, str) else data  # target: toyworld:target

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        if not self.spec or ":" not in self.spec:
            raise ValueError(
                f"spec: {self.spec!r} is not a model spec; expected SCHEME:NAME such as toyworld:target, "
                "torchvision:alexnet, deepsim:fc6, dae:residual_mlp or python:pkg.module:factory (a weights "
                "file goes in weights: {spec: ..., weights: FILE})"
            )
        scheme = self.spec.partition(":")[0]
        if scheme not in MODEL_SCHEMES:  # before anything loads (atlas.models.registry.SCHEMES loads them)
            raise ValueError(
                f"spec: unknown model scheme {scheme!r} in {self.spec!r}"
                f"{did_you_mean(scheme, MODEL_SCHEMES)}; valid: {', '.join(MODEL_SCHEMES)}"
            )
        if self.output_layer is not None and not self.output_layer.strip():
            raise ValueError("output_layer: empty layer name; name a layer (see `atlas layers SPEC`) or null")
        return self


class ModelsConfig(Section):
    target: ModelConfig | None = Field(
        None,
        description="The network whose units are visualized: a spec string or "
        "{spec, weights, preprocess, output_layer}.",
    )
    generator: ModelConfig | None = Field(
        None,
        description="Image generator G for dgn_am / ppgn_h (code -> image): a spec string or "
        "{spec, weights}.",
    )
    dae: ModelConfig | None = Field(
        None,
        description="Denoising autoencoder on codes for ppgn_h with prior: dae: a spec string or "
        "{spec, weights}.",
    )
    encoder: ModelConfig | None = Field(
        None,
        description="The network G inverts, when it is not the target (e.g. CaffeNet for a DeePSiM "
        "generator and a torchvision or ResNet target): code_layer is then its layer, read in its own "
        "preprocess; a spec string or {spec, weights, preprocess}.",
        json_schema_extra={"omit_default": True},  # unset, older configs keep their hash
    )
    ensemble: list[ModelConfig] = Field(
        default_factory=list,
        description="More networks with the target's output classes (other seeds or checkpoints of its "
        "architecture and data; toy world: toyworld:target2 ... toyworld:target9), whose output layer is "
        "averaged with the target's in output units' objectives: pictures that please all of them rather "
        "than fool the target alone (docs/sampling.md, 'Ensembles'). Every stored number stays the "
        "target's; hidden layers use the target alone. Each a spec string or {spec, weights, preprocess, "
        "output_layer}.",
        json_schema_extra={"omit_default": True, "type_doc": "[model, ...]"},  # unset: older configs' hash
    )
    code_layer: str | None = Field(
        None,
        description="Layer whose output is G's code (prior: joint, real/facet-seeded starts, code "
        "statistics): the encoder's when models.encoder is set, else the target's; default: the "
        "generator's own.",
    )
    code_stats: str | None = Field(
        None,
        description="File with the code mean and per-dimension bounds (atlas code-stats); toy world: "
        "built in.",
        json_schema_extra={"type_doc": "file | null"},
    )
    allow_random_weights: bool = Field(
        False, description="Allow real-network specs without weights (random pictures!). Tests only."
    )

    @model_validator(mode="after")
    def _check(self) -> ModelsConfig:
        if self.target is None:
            raise ValueError("target: no target given; e.g. models: {target: toyworld:target}")
        if self.encoder is not None and self.generator is None:
            raise ValueError(
                "encoder: it reads G's code, and no generator is given; remove it or set models.generator"
            )
        for role in ("generator", "dae", "encoder"):
            m = getattr(self, role)
            if m is not None and m.output_layer is not None:
                raise ValueError(f"{role}.output_layer: only a target has an output layer; remove it")
        if self.dae is not None and self.dae.preprocess is not None:
            raise ValueError("dae.preprocess: a DAE works on codes, not images; remove it")
        for role in ("target", "generator", "dae", "encoder"):
            _check_toyworld_role(role, getattr(self, role))
        named = {(self.target.spec, self.target.weights): "models.target"}
        for i, member in enumerate(self.ensemble):
            _check_toyworld_role(f"ensemble[{i}]", member)
            first = named.setdefault((member.spec, member.weights), f"models.ensemble[{i}]")
            if first != f"models.ensemble[{i}]":  # the same network twice counts it twice in the mean
                raise ValueError(
                    f"ensemble[{i}]: {member.spec!r} is {first} again; an ensemble member must be another "
                    "network (another seed or checkpoint of the target's architecture and data)"
                )
        return self


# the toy world's components and the roles each can take (a judge is a network too: it can be a target)
TOYWORLD_ROLES = {
    "target": ("target", "encoder", "ensemble"),  # T is the network the toy world's G inverts
    "judge": ("target",),
    "planted": ("target", "encoder"),  # T with planted units: T's layers too
    "reader": ("target",),  # the attribute reader: a network like any other
    "generator": ("generator",),
    "dae": ("dae",),
    # T trained again with other seeds: an ensemble's members (not as the target: the toy G draws T's code,
    # which another seed's network does not share)
    **dict.fromkeys(MEMBERS, ("ensemble",)),
}


def _check_toyworld_role(key: str, model: ModelConfig | None) -> None:
    """``toyworld:<component>`` in a role it cannot take (``generator: toyworld:dae``) fails here, in one
    line, before anything loads (else a worker would fail mid-run). ``key``: the role, or
    ``ensemble[i]``."""
    if model is None or not model.spec.startswith("toyworld:"):
        return
    role = key.partition("[")[0]
    name = model.spec.partition(":")[2]
    fits = [n for n, roles in TOYWORLD_ROLES.items() if role in roles]
    if role == "ensemble":  # T itself is the target already
        fits.remove("target")
    if name not in TOYWORLD_ROLES:
        shown = [n for n in fits if n[-1] not in "3456789"]  # target2 stands for the other members
        valid = ", ".join(f"toyworld:{n}" + (" ... target9" if n == "target2" else "") for n in shown)
        raise ValueError(f"{key}: unknown toy-world component {name!r}; valid here: {valid}")
    if role not in TOYWORLD_ROLES[name]:
        what = "an ensemble member" if role == "ensemble" else f"{'an' if role[0] in 'aeiou' else 'a'} {role}"
        raise ValueError(
            f"{key}: {model.spec!r} is the toy world's {name}, not {what}"
            + (f"; use toyworld:{fits[0]}" if fits else "")
        )
