"""Pre-flight: every check of a run that needs no worker, on the driver, before Ray or any write.

Usage (what the driver does: the model-free checks first, so nothing loads or trains for a bad config)::

    warnings = preflight_config(cfg, address=address)    # raises AtlasError: one line, exit 2
    models = build_models(cfg)
    report = preflight_models(cfg, models)                # or preflight(cfg, models, address=...): both
    for line in report.warnings:
        log(f"atlas: warning: {line}")
    report.facet_layer, report.layer_shapes              # what the workers will use (run.json)

``preflight_config`` is the part that needs no model (the Ray address's form, device, image folder, starts).

Rules worth knowing:

- ``compute.device: cuda`` without a visible GPU is refused only for a local run (no ``address``, no
  ``RAY_ADDRESS``): on a cluster the driver may have no GPU while its workers do (then it is a warning).
- ``facets.real_images``: a folder must exist, hold images, and every image must decode. An unreadable
  file is an error, not a skip: workers load the same folder and record real images by index.
- ``sampler.start: real | facet_seeded`` without real images is refused (the engine would start from the
  mean code instead, and the run record would claim seeded starts).
- Units are checked against each layer's size without expanding the selection.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn

from atlas.config import CODE_METHODS, OWN_START_METHODS, RunConfig, check_sampler_models
from atlas.config.advice import config_warnings
from atlas.errors import AtlasError, ConfigError, ModelError, error_line, first_line, some
from atlas.models import model_layers
from atlas.models.deepsim import CAFFENET_CODE_LAYERS, foreign_code_note
from atlas.models.loaded import LoadedModel
from atlas.models.probes import LayerInfo, LayerProbe, resolve_modules
from atlas.models.registry import check_spec, example_input
from atlas.sampling.compute import channels_last_breaks
from atlas.sampling.concepts import MIN_POSITIVES
from atlas.sampling.ensemble import check_member_shapes, ensemble_output_layer
from atlas.sampling.facets import default_facet_layer, pass_through_layers
from atlas.sampling.peers import SEARCH_METHODS
from atlas.sampling.real import check_image_folder, evenly_spaced, image_files, small_concepts
from atlas.sampling.units import layer_kind
from atlas.tables import counted

if TYPE_CHECKING:
    from atlas.pipeline.models_setup import RunModels

SEEDED_STARTS = ("real", "facet_seeded")
Shapes = dict[str, tuple[int, ...]]  # layer name -> per-example output shape


@dataclass
class PreflightReport:
    """What pre-flight found: warnings to print, and what the workers will use."""

    warnings: list[str] = field(default_factory=list)
    layer_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)  # configured layers
    output_layer: str | None = None
    facet_layer: str | None = None  # None: facets disabled
    code_layer: str | None = None
    contiguous_only: bool = False  # the target fails in channels_last: the run turns it off (a warning says)


def is_local(address: str | None) -> bool:
    """A run on a Ray instance of its own (no cluster address): the driver's devices are the workers'."""
    return not (address or os.environ.get("RAY_ADDRESS"))


# ------------------------------------------------------------------------------------------- no models


def check_device(cfg: RunConfig, local: bool) -> list[str]:
    """compute.device / autocast / ray.gpus_per_worker against this machine (refused only when local) and
    against each other (on any cluster: an actor sees only the GPUs Ray gives it)."""
    device, cuda = cfg.compute.device, torch.cuda.is_available()
    gpus = cfg.ray.gpus_per_worker
    if device.startswith("cuda") and gpus == 0:
        raise ConfigError(
            f"compute.device: {device} but ray.gpus_per_worker: 0 gives the actors no GPU (Ray hides the "
            "others); set ray.gpus_per_worker: 1 or use device: auto"
        )
    notes = []
    if device == "cpu" and gpus:
        notes.append(
            f"ray.gpus_per_worker: {gpus:g} reserves GPUs for actors that compute on the CPU "
            "(compute.device: cpu); use device auto or cuda, or drop gpus_per_worker"
        )
    if device.startswith("cuda") and not cuda:
        if not local:
            return [
                f"compute.device is {device!r} and the driver sees no CUDA device; the workers must have one"
            ]
        raise ConfigError(
            f"compute.device: {device!r} requested but this machine has no visible CUDA device (local run); "
            "use cpu or auto, or run on a Ray cluster with GPU workers (--address)"
        )
    if local and device.startswith("cuda:") and int(device[5:]) >= torch.cuda.device_count():
        raise ConfigError(
            f"compute.device: {device!r} does not exist; this machine has CUDA devices "
            f"0-{torch.cuda.device_count() - 1}"
        )
    if local and not cuda:
        if cfg.compute.autocast == "fp16":
            raise ConfigError(
                "compute.autocast: fp16 needs a CUDA device and this machine has none (local run); "
                "use bf16 or auto"
            )
        if cfg.ray.gpus_per_worker:
            raise ConfigError(
                f"ray.gpus_per_worker: {cfg.ray.gpus_per_worker:g} GPU(s) per worker requested but this "
                "machine has no CUDA device (local run); remove it or set it to 0"
            )
    return notes


def check_model_specs(cfg: RunConfig) -> None:
    """Each configured model's spec names a model (:func:`atlas.models.registry.check_spec`: nothing is
    built or read): ``models.target: unknown torchvision model 'alexnett' (did you mean alexnet?)``."""
    roles = ("target", "generator", "dae", "encoder", "judge")
    named = [(f"models.{r}", getattr(cfg.models, r, None)) for r in roles]
    named += [(f"models.ensemble[{i}]", m) for i, m in enumerate(cfg.models.ensemble)]
    for key, model in named:
        if model is None:
            continue
        try:
            check_spec(model.spec)
        except ModelError as exc:
            raise ModelError(f"{key}: {exc}") from None


def check_real_images(cfg: RunConfig, decode: bool = True) -> tuple[bool, int | None, list[str]]:
    """(real images available, images in the folder, warnings); seeded starts without them are refused.

    ``decode=False`` only lists the folder (exists, a directory, holds images): for a caller that loads
    the folder itself right after (its unreadable-file error then needs the ``facets.real_images:`` key).
    """
    source, start, warnings = cfg.facets.real_images, cfg.sampler.start, []
    have, count, why = False, None, "facets.real_images is null"
    if source == "toyworld":
        have = cfg.models.target.spec.startswith("toyworld:")
        if not have:
            why = "facets.real_images is 'toyworld' and the target is not a toy-world model"
            # said unless the seeded start's error below says it, or the method's own warning does
            # (_without_real_images); fourier ran without a word (a trial: the key's default)
            method, spectrum = cfg.sampler.method, cfg.sampler.maco.spectrum
            own_warning = method == "accentuation" or (method == "maco" and spectrum == "real")
            refused = start in SEEDED_STARTS and method not in OWN_START_METHODS
            if not refused and not own_warning:
                warnings.append(
                    f"{why}: no real images (no dataset examples); set a folder of images or null"
                )
    elif source:
        try:
            every = image_files(source)  # one walk of the folder
            files = [every[i] for i in evenly_spaced(len(every), cfg.facets.real_limit)]  # what loads
            count = check_image_folder(source, files) if decode else len(files)
        except AtlasError as exc:
            raise AtlasError(f"facets.real_images: {exc}") from None
        have = True
        small = small_concepts(source, files, MIN_POSITIVES)
        if small:
            sampled = f" in the facets.real_limit sample of {len(files)}" if len(files) < len(every) else ""
            warnings.append(
                f"facets.real_images: concept folders with fewer than {MIN_POSITIVES} images{sampled} are "
                f"not scored as labels ({some(small, 4, quoted=True)}); give each concept {MIN_POSITIVES} "
                "or more" + (" (or a larger facets.real_limit)" if sampled else "")
            )
        warnings += _few_real_images(cfg, count, sampled=len(files) < len(every))
    if start in SEEDED_STARTS and not have and cfg.sampler.method not in OWN_START_METHODS:
        raise ConfigError(
            f"sampler.start: {start!r} needs real images and {why}; set facets.real_images to a folder of "
            "images, or use sampler.start: random (or mean)"
        )
    return have, count, warnings


def preflight_config(cfg: RunConfig, *, address: str | None = None, decode_images: bool = True) -> list[str]:
    """The checks that need no model: the Ray address's form (whether it answers: at connect), device,
    real-image folder, starts. Returns warnings."""
    from atlas.pipeline.cluster import check_address

    check_address(address)
    check_model_specs(cfg)  # a typo in a spec is named before the checks it would mislead (starts)
    _check_out_dir(cfg)
    warnings = check_device(cfg, is_local(address))
    have_real, _, said = check_real_images(cfg, decode_images)
    return warnings + said + _without_real_images(cfg, have_real)


def _check_out_dir(cfg: RunConfig) -> None:
    """A local ``out_dir`` where a new run cannot be written (a file on its path, a read-only folder) is one
    line here, before Ray starts: `atlas config --check` passed it and `atlas run` failed after Ray's start
    (a trial). A run folder that exists is left to the run: a complete run on read-only media reruns as
    "nothing to do"."""
    from pathlib import Path

    from atlas.atomic import check_writable_dir
    from atlas.uri_filesystem import is_remote

    if is_remote(cfg.out_dir):
        return
    run_dir = Path(cfg.out_dir.removeprefix("file://")).expanduser() / cfg.name
    if not run_dir.is_dir():  # named as Location.check_writable names it, where the run checks it again
        check_writable_dir(run_dir, "the run folder out_dir/name" if os.path.lexists(run_dir) else "out_dir")


def _without_real_images(cfg: RunConfig, have_real: bool) -> list[str]:
    """Warnings for the peer methods that fall back when the run has no real images."""
    s = cfg.sampler
    if have_real:
        return []
    if s.method == "maco" and s.maco.spectrum == "real":
        return [
            "sampler.maco.spectrum: real needs real images (facets.real_images); without them MACO fixes the "
            "1/f power-law spectrum instead (method maco[spectrum=power_law])"
        ]
    if s.method == "accentuation":
        return [
            "sampler.method: accentuation accentuates real images and the run has none (facets.real_images); "
            "its chains start from the mean picture instead"
        ]
    return []


# ---------------------------------------------------------------------------------------------- models


def _leaves(module: nn.Module) -> set[str]:
    return {n for n, m in module.named_modules() if n and not any(True for _ in m.children())}


def _known_layer(
    module: nn.Module, shapes: dict[str, tuple[int, ...]], name: str, key: str
) -> tuple[int, ...]:
    """The per-example output shape of a named target layer, or a one-line error under ``key``."""
    try:
        resolve_modules(module, [name])
    except ModelError as exc:
        raise ConfigError(f"{key}: {exc}") from None
    if name not in shapes:
        raise ConfigError(
            f"{key}: layer {name!r} produced no tensor in the target's forward pass (it does not run, or "
            "returns a tuple/dict); choose another with `atlas layers SPEC --all`"
        )
    return shapes[name]


def _check_layers(cfg: RunConfig, module: nn.Module, shapes: Shapes, output: str | None) -> Shapes:
    out = {}
    for i, layer in enumerate(cfg.layers):
        shape = _known_layer(module, shapes, layer.name, f"layers.{i}.name")
        layer_kind(layer.name, shape, output, layer.kind, f"layers.{i}")
        layer.units.check(shape[0], f"layers.{i}.units", layer.name)
        layer.composites(shape[0], f"layers.{i}.")
        out[layer.name] = shape
    return out


ENCODER_EXAMPLES = (
    "toyworld:target for toyworld:generator, python:atlas.models.caffenet:caffenet for deepsim:fc6"
)


def _check_code_layer(cfg: RunConfig, models: RunModels, module: nn.Module, shapes: Shapes) -> str | None:
    s, gen = cfg.sampler, models.generator
    check_sampler_models(
        s.method,
        s.ppgn_h.prior,
        generator=gen is not None,
        dae=models.dae is not None,
        code_layer=models.code_layer,
    )
    needed = (
        gen is not None
        and s.method in CODE_METHODS
        and (s.start in SEEDED_STARTS or (s.method == "ppgn_h" and s.ppgn_h.prior == "joint"))
    )
    name = models.code_layer
    if models.encoder is not None and not name:
        variant = gen.spec.partition(":")[2] if gen is not None and gen.spec.startswith("deepsim:") else ""
        layer = CAFFENET_CODE_LAYERS.get(variant)
        example = f" (e.g. {layer} of CaffeNet for deepsim:{variant})" if layer else ""
        raise ConfigError(
            f"models.code_layer: models.encoder is set, so name its layer whose output is G's code{example}; "
            "or remove the encoder"
        )
    if needed and not name:
        own = gen.extras.get("code_layer") if gen is not None else None
        lacks = ""
        if gen is not None and own:  # the target lacks G's layer, or its layer of that name is not G's code
            there = own in dict((models.encoder or models.target).module.named_modules())
            why = "not G's code there (another network's layer)" if there else "which it lacks"
            lacks = f" ({gen.spec} reads {own!r} of the network it was trained on, {why})"
        raise ConfigError(
            f"models.code_layer: sampler.start {s.start!r} turns real images into start codes through the "
            f"target layer whose output is G's code, and none is known{lacks}; set models.code_layer (and "
            f"models.encoder when G inverts another network than the target: {ENCODER_EXAMPLES}) or use "
            "sampler.start: random (or mean)"
        )
    if not name:
        return None
    where = "models.code_layer" if cfg.models.code_layer else f"models.code_layer (the generator's {name!r})"
    if models.encoder is not None:  # the code is the encoder's layer (models.encoder), not the target's
        module = models.encoder.module
        shapes = {r.name: r.shape for r in keyed_layers(models.encoder, "models.encoder")}
        where += " in models.encoder"
    # the generator's own layer name, looked up in a target that may not be the network G was trained on
    guessed = not cfg.models.code_layer and models.encoder is None and gen is not None
    hint = (
        f"; {gen.spec} draws from the code of the network it was trained on: name that network as "
        f"models.encoder ({ENCODER_EXAMPLES}), or a layer of the target whose output has G's code size as "
        "models.code_layer"
        if guessed and gen is not None
        else ""
    )
    try:
        shape = _known_layer(module, shapes, name, where)
    except ConfigError as exc:
        raise ConfigError(f"{exc}{hint}") from None
    encoder = gen.extras.get("code_encoder") if gen is not None else None
    if isinstance(encoder, nn.Module):  # a subspace generator: its encoder reads the layer
        probe = torch.zeros(1, *shape, device=next(encoder.buffers(), torch.zeros(0)).device)
        try:
            with torch.no_grad():
                shape = tuple(encoder(probe).shape[1:])
        except (RuntimeError, ValueError):
            raise ConfigError(
                f"{where}: the generator's code encoder cannot read layer {name!r} ({shape}); name the layer "
                "its subspace was fitted on"
            ) from None
    if gen is not None and gen.code_shape and math.prod(shape) != math.prod(gen.code_shape):
        raise ConfigError(
            f"{where}: layer {name!r} outputs {math.prod(shape)} values per image ({shape}) but the "
            f"generator's code has {math.prod(gen.code_shape)} {gen.code_shape}; name the layer G inverts"
            + hint
        )
    return name


def _generator_pictures(models: RunModels) -> torch.Tensor | None:
    """G's pictures of two codes far apart (0 and the statistics' upper bound, else 3) from one batch-2
    pass: (2, 3, H, W) rgb01, None without a generator (or when they do not decode). G must take a code of
    its ``code_shape`` and draw the size its space says: a trial's G declared 64 px and drew 48 (and
    ``atlas config --check`` printed a 64 px conversion); one declaring a code of 16 that takes 32 failed
    every unit of the run. Either is a ConfigError here."""
    gen = models.generator
    if gen is None or gen.space is None or not gen.code_shape:
        return None
    stats = models.code_stats
    far = stats.upper.reshape(gen.code_shape) if stats is not None else torch.full(gen.code_shape, 3.0)
    codes = torch.stack([torch.zeros(gen.code_shape), far.float().cpu()])  # (2, *code shape)
    try:
        with torch.no_grad():
            drawn = gen.module(codes)
    except Exception as exc:  # noqa: BLE001 - a user's generator fails in many ways
        raise ConfigError(
            f"models.generator ({gen.spec}): it fails on a code of its code_shape {gen.code_shape} "
            f"({type(exc).__name__}: {first_line(exc)[:160]}); declare the code_shape it takes"
        ) from None
    if drawn.dim() == 4 and tuple(drawn.shape[-2:]) != (gen.space.size, gen.space.size):
        raise ConfigError(
            f"models.generator ({gen.spec}): it draws {drawn.shape[-1]}x{drawn.shape[-2]} pictures but its "
            f"space says {gen.space.size} px; declare the size it draws (atlas_image_space's size)"
        )
    try:
        return gen.space.decode(drawn).clamp(0, 1)
    except (RuntimeError, ValueError, TypeError):
        return None  # what does not decode fails with its own message in the run


def _code_blind_generator(models: RunModels, pictures: torch.Tensor | None) -> list[str]:
    """A generator whose pictures do not depend on its code (a randomly initialized DeePSiM G draws one
    flat picture, whatever the code) gives every unit the same picture: said unless its weights are
    already named random. ``pictures``: :func:`_generator_pictures`'s two, from codes far apart; the same
    8-bit picture from both is the warning."""
    gen = models.generator
    if gen is None or gen.random_weights or pictures is None:
        return []
    apart = float((pictures[0] - pictures[1]).abs().max()) * 255
    if not apart < 1:  # apart, or not finite (cannot tell)
        return []
    return [
        f"models.generator ({gen.spec}): two codes far apart draw the same picture (at most {apart:.2f} of "
        "255 apart in any pixel), so every unit would get it; are its weights trained (a random DeePSiM "
        "generator draws one flat picture)?"
    ]


def _check_dae(cfg: RunConfig, models: RunModels) -> None:
    """PPGN-h's DAE prior denoises G's code (R(h) - h, Eq. 7 of Nguyen et al. 2017): one batch-1 pass on
    a code of G's shape must give a code of that shape, else every unit fails in the workers."""
    s, gen, dae = cfg.sampler, models.generator, models.dae
    if not s.uses_dae or dae is None or gen is None or not gen.code_shape:
        return
    code = torch.zeros(1, *gen.code_shape)
    try:
        with torch.no_grad():
            out = dae.module(code)
        problem = None if tuple(out.shape) == tuple(code.shape) else f"returns shape {tuple(out.shape[1:])}"
    except (RuntimeError, ValueError, TypeError) as exc:
        problem = f"fails on it ({first_line(exc)})"
    if problem is not None:
        dae_code = f" (it was made for codes of shape {dae.code_shape})" if dae.code_shape else ""
        joint = " or use sampler.ppgn_h.prior: joint" if models.code_layer else ""
        raise ConfigError(
            f"models.dae: the generator's code has shape {tuple(gen.code_shape)} and the DAE {problem}"
            f"{dae_code}; train one on this generator's code (atlas train-dae with this config){joint}"
        )


def _facet_layer(
    cfg: RunConfig, module: nn.Module, rows: list[LayerInfo], shapes: Shapes, output: str | None
) -> str | None:
    if not cfg.facets.enabled:
        return None
    if cfg.facets.layer:
        _known_layer(module, shapes, cfg.facets.layer, "facets.layer")
        return cfg.facets.layer
    leaves = _leaves(module)
    layers = [(r.name, r.shape) for r in rows if r.name in leaves]
    return default_facet_layer(layers, output, pass_through_layers(module))


def _model_warnings(cfg: RunConfig, models: RunModels) -> list[str]:
    out = []
    kept_for_ppgn = "ppgn_h" in cfg.sampler.model_fields_set  # the config sets ppgn_h up: a method switch
    if cfg.models.dae is not None and models.dae is None and not kept_for_ppgn:  # (shipped configs: a trial)
        out.append(
            f"models.dae is set but unused by sampler.method {cfg.sampler.method} (only ppgn_h with prior: "
            "dae uses it)"
        )
    out += config_warnings(cfg)
    for role in ("target", "generator", "dae", "encoder"):
        m = getattr(models, role)
        if m is not None and m.random_weights:
            said = f"models.{role} ({m.spec}) runs on RANDOM weights: the pictures show nothing learned"
            if role == "generator" and m.spec.startswith("deepsim:"):  # a user's trial: all-grey pictures
                said += " (a random DeePSiM generator draws nearly flat mean-colour pictures: plumbing only)"
            out.append(said)
    for key, m in [("models.target", models.target)] + [
        (f"models.ensemble[{i}]", m) for i, m in enumerate(models.ensemble)
    ]:
        if m.extras.get("output_note"):  # a multi-head network's default output layer, said
            out.append(
                f"{key} ({m.spec}): {m.extras['output_note']}; name the head whose units are the classes "
                f"with {key}.output_layer"
            )
    random = [f"models.ensemble[{i}] ({m.spec})" for i, m in enumerate(models.ensemble) if m.random_weights]
    if random:
        verb = "runs" if len(random) == 1 else "run"
        out.append(
            f"{', '.join(random)} {verb} on RANDOM weights: the pictures are pulled toward nothing learned"
        )
    return out


REAL_IMAGES_WARN_BYTES = 2 << 30  # a real-image set this large (float32, in every worker) is named


def _real_images_size(cfg: RunConfig, target: LoadedModel) -> list[str]:
    """A folder of real images that takes gigabytes in every worker (``load_real_images``: float32 at the
    target's input size) names ``facets.real_limit``, which samples it."""
    source = cfg.facets.real_images
    if not source or source == "toyworld":
        return []
    count = len(evenly_spaced(len(image_files(source)), cfg.facets.real_limit))
    size = target.space.size
    held = count * 3 * size * size * 4
    if held < REAL_IMAGES_WARN_BYTES:
        return []
    sample = max(1, count * REAL_IMAGES_WARN_BYTES // (2 * held))  # a sample that takes half the warning size
    return [
        f"facets.real_images: {count:,} images take {held / 1e9:.1f} GB as float32 at {size} px in every "
        f"worker, and each layer passes them all through the target; set facets.real_limit (e.g. {sample:,}) "
        "to use an evenly spaced sample of them"
    ]


def _few_real_images(cfg: RunConfig, count: int, sampled: bool = False) -> list[str]:
    """A real-image set smaller than a unit's dataset examples (``facets.top_k_real``): every unit ranks
    the same few pictures, seeded chains share their starts, and MACO's mean spectrum is theirs (a trial's
    one-image folder ran in silence, both accentuation chains from one picture). ``sampled``: the count is
    the ``facets.real_limit`` sample of a larger folder, so the limit is named."""
    wanted = cfg.facets.top_k_real
    if count >= wanted:
        return []
    spectrum = " and MACO's magnitude spectrum" if cfg.sampler.method == "maco" else ""
    return [
        f"facets.real_images: {counted(count, 'image')} only, fewer than facets.top_k_real {wanted}: every "
        f"unit's dataset examples, natural percentiles{spectrum} rest on them, and real-image starts are at "
        f"most {counted(count, 'distinct picture')}; "
        + ("raise facets.real_limit (the folder holds more)" if sampled else "use a folder of a few hundred")
    ]


def _foreign_code(cfg: RunConfig, models: RunModels) -> list[str]:
    """A DeePSiM generator inverts CaffeNet's code: read from another network (torchvision's AlexNet, a
    ResNet, as the target or the encoder), the joint prior, real-image starts and the on-manifold score use
    codes whose units are not G's (``deepsim.foreign_code_note``)."""
    gen, s, layer = models.generator, cfg.sampler, models.code_layer
    if gen is None or not layer:
        return []
    uses = []
    if s.method == "ppgn_h" and s.ppgn_h.prior == "joint":
        uses.append("the joint prior E(G(h))")
    if s.start in SEEDED_STARTS:
        uses.append(f"sampler.start {s.start!r}")
    if cfg.facets.real_images:
        uses.append("the on-manifold score")
    network = models.encoder if models.encoder is not None else models.target
    note = foreign_code_note(gen.spec, network.spec, layer, uses, via_encoder=models.encoder is not None)
    return [note] if note else []


def _stats_of_another_code(cfg: RunConfig, models: RunModels, code_layer: str | None) -> list[str]:
    """models.code_stats computed from another network's or layer's codes than the run's (the file records
    where `atlas code-stats` read them): its bounds and mean would clip and start G's code on another
    scale. Only a code of another size is an error (the shape check); this one is said."""
    stats = models.code_stats
    if stats is None or stats.read_from is None or not cfg.models.code_stats or not code_layer:
        return []
    network = (models.encoder or models.target).spec
    if stats.read_from == (network, code_layer):
        return []
    was = f"{stats.read_from[0]}'s {stats.read_from[1]!r}"
    return [
        f"models.code_stats: {cfg.models.code_stats} holds statistics of {was}, but the run reads its code "
        f"from {network}'s {code_layer!r}; recompute them for it (atlas code-stats --config ... --images DIR)"
    ]


def keyed_layers(model: LoadedModel, key: str) -> list[LayerInfo]:
    """:func:`model_layers` of a run's model, a failure named by its config key (``models.target: ...``),
    as the run's other model errors are."""
    try:
        return model_layers(model, include_containers=True)
    except ModelError as exc:
        raise ModelError(f"{key}: {exc}") from None


def preflight_models(cfg: RunConfig, models: RunModels) -> PreflightReport:
    """The checks that need the loaded models (one batch-1 forward pass of the target on the CPU)."""
    target, s = models.target, cfg.sampler
    module = target.module
    rows = keyed_layers(target, "models.target")  # a failing forward pass: one line, with the size
    check_batches(target)
    shapes = {r.name: r.shape for r in rows}
    output = target.output_layer
    layer_shapes = _check_layers(cfg, module, shapes, output)
    code_layer = _check_code_layer(cfg, models, module, shapes)
    if s.pair_start == "composed" and models.generator is not None and not code_layer:  # before Ray starts
        raise ConfigError(
            "models.code_layer: sampler.pair_start: composed reads each pair's composed picture back into "
            "G's code through the layer whose output is G's code, and none is known; set models.code_layer "
            "or sampler.pair_start: start"
        )
    pictures = _generator_pictures(models)
    _check_dae(cfg, models)
    if s.method in CODE_METHODS and s.start == "mean" and models.code_stats is None:
        raise ConfigError(
            "sampler.start: 'mean' needs the mean code and the generator has no code statistics; set "
            "models.code_stats (atlas code-stats --images DIR) or use sampler.start: random"
        )
    facet_layer = _facet_layer(cfg, module, rows, shapes, output)
    if s.method == "accentuation" and s.accentuation.layer:
        _known_layer(module, shapes, s.accentuation.layer, "sampler.accentuation.layer")
    if s.diversity and s.diversity_layer:
        _known_layer(module, shapes, s.diversity_layer, "sampler.diversity_layer")
    if s.method not in SEARCH_METHODS:
        _check_differentiable(target, list(layer_shapes), s.method, models.generator is not None)
    own_code = code_layer if models.encoder is None else None  # an encoder's layer is none of the target's
    warnings = (
        _model_warnings(cfg, models) + _reused_modules(cfg, rows, own_code) + _real_images_size(cfg, target)
    )
    warnings += _foreign_code(cfg, models) + _stats_of_another_code(cfg, models, code_layer)
    warnings += _code_blind_generator(models, pictures)
    warnings += _check_ensemble(cfg, models, shapes, list(layer_shapes))
    contiguous_only = _channels_last_note(cfg, target)
    for i, member in enumerate(models.ensemble):  # a member that needs contiguous memory turns it off too
        contiguous_only += _channels_last_note(cfg, member, f"models.ensemble[{i}]")
    warnings += contiguous_only
    if cfg.models.target.output_layer and facet_layer and not cfg.facets.layer:
        warnings.append(
            f"facets cluster the features of {facet_layer!r} (the last 1-D layer before the output layer "
            f"{output!r}); for a multi-head network set facets.layer to the shared features"
        )
    return PreflightReport(
        warnings=warnings,
        layer_shapes=layer_shapes,
        output_layer=output,
        facet_layer=facet_layer,
        code_layer=code_layer,
        contiguous_only=bool(contiguous_only),
    )


def _check_ensemble(cfg: RunConfig, models: RunModels, shapes: Shapes, layers: list[str]) -> list[str]:
    """``models.ensemble``: an error for a member without the target's output classes (or a target without
    an output layer), that fails on a batch, or gives a gradient method no input gradient, as the target's
    checks; a warning naming the run's layers the members leave alone (they join output units' objectives
    only)."""
    if not models.ensemble:
        if not cfg.models.ensemble:
            return []
        return [  # build_models left them unloaded
            f"models.ensemble is unused: none of the run's layers ({', '.join(layers)}) is the target's "
            f"output layer {models.target.output_layer!r}, whose objectives it joins; its members were not "
            "loaded"
        ]
    output = ensemble_output_layer(models.target)
    check_member_shapes(models.ensemble, shapes[output])
    for i, member in enumerate(models.ensemble):
        key = f"models.ensemble[{i}]"
        check_batches(member, key)
        if cfg.sampler.method not in SEARCH_METHODS and member.output_layer:
            has_generator = models.generator is not None
            _check_differentiable(member, [member.output_layer], cfg.sampler.method, has_generator, key)
    said = _member_spaces(models)
    alone = [name for name in layers if name not in (output, "output")]
    if not alone:
        return said
    return said + [
        f"models.ensemble joins the objectives of the output layer {output!r} only; the run's other layers "
        f"({', '.join(alone)}) use the target alone (hidden units of networks trained apart are unrelated)"
    ]


def _member_spaces(models: RunModels) -> list[str]:
    """A member of the target's own spec that reads pictures in another input space (its preprocess set
    apart from the target's: a user's trial gave one only ``size``, so mean 0 / std 1 against the target's
    own) is named: other seeds of one network are trained on the same input."""
    target = models.target
    out = []
    for i, member in enumerate(models.ensemble):
        if member.spec != target.spec or member.space is None or target.space is None:
            continue
        theirs, ours = member.space.describe(), target.space.describe()
        if theirs != ours:
            out.append(
                f"models.ensemble[{i}] ({member.spec}) reads pictures as {theirs}, the target as {ours}: "
                "if it was trained as the target was, give it the target's preprocess"
            )
    return out


def check_batches(target: LoadedModel, key: str = "models.target") -> None:
    """The workers run the target (and an ensemble's members, ``key``) on batches; a forward that assumes
    one picture (``x.view(1, -1)``) passed the one-picture probe and failed every unit in the workers (a
    trial)."""
    try:
        with torch.no_grad():
            target.module(example_input(target, 2))
    except Exception as exc:  # noqa: BLE001 - user networks fail in many ways
        raise ModelError(
            f"{key}: a forward pass on a batch of 2 pictures failed ({error_line(exc)}) where one "
            "picture passes; atlas runs the target on batches: "
            "keep the batch dimension (x.flatten(1) or x.reshape(x.size(0), -1), not x.view(1, -1))"
        ) from None


def _channels_last_note(cfg: RunConfig, target: LoadedModel, key: str = "models.target") -> list[str]:
    """A target (or an ensemble member, ``key``) that fails in the channels_last memory format
    (``compute.channels_last``, on by default for CPUs, :func:`channels_last_breaks`) runs in the default
    one: ``atlas run`` turns the setting off for the run (``PreflightReport.contiguous_only``) and says so."""
    cl = cfg.compute.channels_last  # auto: CPU workers only (CUDA ones run contiguous)
    used = cl is True or (cl == "auto" and not cfg.compute.device.startswith("cuda"))
    if not used or target.space is None:
        return []
    why = channels_last_breaks(target.module, example_input(target, 2))
    if why is None:
        return []
    return [
        f"{key} fails in the channels_last memory format ({why}); the run turns "
        "compute.channels_last off: use .reshape or .flatten there (a .view of a conv output needs "
        "contiguous memory) for channels_last's speed, or set compute.channels_last: false to leave this out"
    ]


def _check_differentiable(
    target: LoadedModel, layers: list[str], method: str, generator: bool, key: str = "models.target"
) -> None:
    """Gradient methods climb the input gradient of each layer: a target whose forward runs under
    ``torch.no_grad`` (or detaches, or leaves torch) gives none, and every unit would fail in the workers.
    The way out (GA or CMA-ES, forward passes only) searches a generator's code: without a generator the
    error says that one is needed too."""
    search = "use ga or cmaes (forward passes only)"
    if not generator:  # a user's trial was sent from here to ga, which then asked for a generator
        search += ", which search a generator's code: set models.generator too"
    leaf = example_input(target).requires_grad_(True)
    try:
        with torch.enable_grad():
            acts = LayerProbe(target.module, layers)(leaf * 1)  # not a leaf: a forward may change it in place
    except AtlasError:
        raise
    except Exception as exc:  # noqa: BLE001 - user networks fail in many ways
        raise ModelError(
            f"{key}: a forward pass with input gradients failed ({type(exc).__name__}: "
            f"{first_line(exc)}); sampler.method {method!r} needs them: {search}"
        ) from None
    flat = [name for name in layers if not acts[name].requires_grad]
    if flat:
        raise ModelError(
            f"{key}: layer {flat[0]!r} does not depend differentiably on the input (a forward under "
            f"torch.no_grad, a detach, or a step outside torch); sampler.method {method!r} needs input "
            f"gradients: {search}; or make the forward differentiable"
        )


def _reused_modules(cfg: RunConfig, rows: list[LayerInfo], code_layer: str | None) -> list[str]:
    """A module that runs more than once in a forward pass (ResNet's ``layer4.2.relu`` runs three times) is
    read at its first call; say so for every layer the run reads, since its later calls are what a reader
    of the network's code may expect."""
    calls = {r.name: r.calls for r in rows}
    named = [layer.name for layer in cfg.layers] + [n for n in (code_layer, cfg.facets.layer) if n]
    return [
        f"layer {name!r} runs {calls[name]} times in one forward pass; atlas reads its first call (for a "
        "later one, name a module that runs once, e.g. the block that contains it)"
        for name in dict.fromkeys(named)
        if calls.get(name, 1) > 1
    ]


def preflight(
    cfg: RunConfig, models: RunModels, *, address: str | None = None, decode_images: bool = True
) -> PreflightReport:
    """Every check that needs no worker, as the driver runs them (:func:`preflight_config` before the models
    load, then :func:`preflight_models`); raises AtlasError (one line) or returns the report."""
    warnings = preflight_config(cfg, address=address, decode_images=decode_images)
    report = preflight_models(cfg, models)
    report.warnings = warnings + report.warnings
    return report
