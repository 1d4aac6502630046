"""Model specs -> frozen modules with their image spaces.

Spec strings (the design notes' "Models"):

- ``toyworld:target|judge|generator|dae``   the toy world (trained on demand, cached)
- ``toyworld:target2`` ... ``target9``       T trained again with other seeds (``models.ensemble``)
- ``toyworld:planted``                       T plus a layer of planted units (concept, silent, fooling)
- ``torchvision:NAME``                      any torchvision classification model; ``weights:`` a state-dict
                                             file, or a torchvision weights enum name (needs a network)
- ``python:package.module:factory``         any ``nn.Module`` returned by ``factory()``; optional weights
- ``deepsim:fc6|fc7|fc8|pool5``             DeePSiM generators (upconvGAN layout: ``G.defc7.weight``)
- ``dae:residual_mlp``                      a code DAE trained by ``atlas train-dae`` (weights required)

Usage::

    target = load_model(ModelConfig(spec="torchvision:alexnet", weights="alexnet.pth"), "target")
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import io
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from atlas.config import ModelConfig, PreprocessConfig, RunConfig, ToyWorldRef, build
from atlas.errors import ConfigError, ModelError, did_you_mean, raised_at, some
from atlas.models import deepsim
from atlas.models.loaded import IMAGE_ROLES, LoadedModel, Role, freeze
from atlas.models.probes import LayerInfo, forward_outputs, list_layers, resolve_modules
from atlas.models.spaces import ImageSpace, deepsim_space, torchvision_space
from atlas.models.weights import apply_state_dict, is_uri, module_fingerprint, read_state_dict, weights_source

RANDOM_SEED = 0  # random weights are deterministic so every worker builds the same network


@dataclass(frozen=True)
class LoadOptions:
    """What every scheme's loader is told besides the model's own config."""

    allow_random_weights: bool = False
    toyworld: ToyWorldRef = field(default_factory=ToyWorldRef)
    storage: Mapping[str, Any] = field(default_factory=dict)  # weights URIs open with the storage: options
    train: bool = True  # a toy-world component missing from the cache and the shipped weights trains
    members: int = 0  # toy-world ensemble members the run lists: an untrained world's hint trains them too


def _random_init(build: Callable[[], nn.Module]) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_SEED)
        return build()


def _override_space(space: ImageSpace, pre: PreprocessConfig | None, spec: str) -> ImageSpace:
    if pre is None:
        return space
    updates = {
        k: getattr(pre, k) for k in ("size", "geometry", "channel_order", "value_scale") if getattr(pre, k)
    }
    for key in ("mean", "std"):  # three values, or one: PreprocessConfig checks
        value = getattr(pre, key)
        if value is not None:
            updates[key] = tuple(float(v) for v in value)
    return ImageSpace(**{**space.__dict__, **updates})


def _weights(
    module: nn.Module,
    cfg: ModelConfig,
    opts: LoadOptions,
    role: Role,
    read: tuple[dict[str, torch.Tensor], str] | None = None,
) -> tuple[str, bool, str]:
    """Load cfg.weights (or ``read``, its (state, fingerprint) read already) into module, or accept random
    weights. Returns (weights, random, fingerprint)."""
    if cfg.weights:
        state, fingerprint = read if read is not None else read_state_dict(cfg.weights, opts.storage)
        apply_state_dict(module, state, cfg.weights)
        return str(cfg.weights), False, fingerprint
    if not opts.allow_random_weights:
        raise ModelError(
            f"{role} {cfg.spec!r} has no weights file; set models.{role}.weights to a state-dict file "
            "(or models.allow_random_weights: true to run on random weights, for tests)"
        )
    return "random", True, f"random:{RANDOM_SEED}"


def _torchvision_layout(name: str, state: dict[str, torch.Tensor] | None) -> dict[str, bool]:
    """Constructor arguments for torchvision models whose pretrained layout differs from a fresh one:
    GoogLeNet and Inception v3 are built as torchvision builds them for its pretrained weights (inputs
    re-normalized inside, ``transform_input=True``; auxiliary heads only when the weights hold them).
    Without weights: torchvision's defaults (its weight-initialization warning silenced)."""
    classes = _fine_tuned_classes(name, state) if state is not None else {}
    aux = {"googlenet": "aux1.", "inception_v3": "AuxLogits."}.get(name)
    if aux is None:
        return classes
    if state is None:
        return {"init_weights": True}
    has_aux = any(k.startswith(aux) for k in state)
    return {"transform_input": True, "aux_logits": has_aux, "init_weights": False, **classes}


def _fine_tuned_classes(name: str, state: dict[str, torch.Tensor]) -> dict[str, int]:
    """``{"num_classes": N}`` when ``state`` is the model fine-tuned to N classes (its classifier, the last
    Linear or Conv2d, has N outputs and the inputs torchvision's has), else {}: a state dict saved from
    ``resnet18(num_classes=10)`` loads into ``torchvision:resnet18`` as it is."""
    import torchvision

    try:
        with torch.device("meta"), warnings.catch_warnings():  # the layout only: no memory, no init
            warnings.simplefilter("ignore")  # GoogLeNet's note on its future initialization
            fresh = torchvision.models.get_model(name, weights=None)
    except Exception:  # noqa: BLE001 - a model meta tensors cannot build: the shape check names a mismatch
        return {}
    heads = [(n, m) for n, m in fresh.named_modules() if isinstance(m, nn.Linear | nn.Conv2d)]
    if not heads:
        return {}
    head, module = heads[-1]
    key = f"{head}.weight"
    aux = (".AuxLogits.", ".aux1.", ".aux2.")  # inception's and googlenet's side heads end in .fc.weight too
    heads = sorted(  # the key itself, else under a wrapper's prefix (the shortest)
        (k for k in state if f".{k}".endswith(f".{key}") and not any(a in f".{k}" for a in aux)), key=len
    )
    saved = state[heads[0]] if heads else None
    own = tuple(module.weight.shape)
    if saved is None or tuple(saved.shape[1:]) != own[1:] or saved.shape[0] == own[0]:
        return {}
    return {"num_classes": int(saved.shape[0])}


def _leaf_names(module: nn.Module) -> list[str]:
    return [n for n, m in module.named_modules() if n and not any(True for _ in m.children())]


# ------------------------------------------------------------------------------------------------ schemes


def _check_torchvision_name(name: str) -> None:
    import torchvision

    available = sorted(torchvision.models.list_models(module=torchvision.models))
    if name not in available:
        hint = difflib.get_close_matches(name, available, n=3)
        extra = f" (did you mean {', '.join(hint)}?)" if hint else ""
        raise ModelError(
            f"unknown torchvision model {name!r}{extra}; torchvision has {len(available)} models, e.g. "
            "alexnet, vgg16, resnet50, vit_b_16 (torchvision.models.list_models() names them all)"
        )


def _load_torchvision(name: str, cfg: ModelConfig, role: Role, opts: LoadOptions) -> LoadedModel:
    import torchvision

    if role not in IMAGE_ROLES:
        raise ModelError(f"{cfg.spec!r} is a classifier; it can be a target, not a {role}")
    _check_torchvision_name(name)
    weights = cfg.weights
    if weights and _names_weights_enum(weights):
        # a weights enum name such as IMAGENET1K_V1: torchvision downloads it (needs a network)
        family = torchvision.models.get_model_weights(name)
        owner = weights.rpartition(".")[0]
        valid = f"{', '.join(w.name for w in family)} (or {family.__name__}.<name>), or a file"
        if owner and owner != family.__name__:  # ResNet50_Weights.DEFAULT for alexnet: AlexNet's DEFAULT
            raise ModelError(f"weights {weights!r} are not torchvision:{name}'s; valid: {valid}")
        try:
            enum = family[weights.split(".")[-1]]
            said = io.StringIO()  # torch.hub's 'Downloading: "https://..."' line and progress bar: offline,
            with contextlib.redirect_stderr(said), contextlib.redirect_stdout(said):  # a second line
                module = torchvision.models.get_model(name, weights=enum)
        except KeyError:
            raise ModelError(f"unknown weights {weights!r} for torchvision:{name}; valid: {valid}") from None
        except Exception as exc:  # noqa: BLE001 - offline download failures come in many types
            raise ModelError(
                f"could not fetch torchvision weights {weights!r} ({type(exc).__name__}); no network? "
                "download them elsewhere and pass the state-dict file as weights"
            ) from None
        w, random, fp = weights, False, module_fingerprint(module)
    else:
        read = read_state_dict(cfg.weights, opts.storage) if cfg.weights else None
        layout = _torchvision_layout(name, read[0] if read else None)
        module = _random_init(lambda: torchvision.models.get_model(name, weights=None, **layout))
        w, random, fp = _weights(module, cfg, opts, role, read)
    size = 299 if name.startswith("inception") else 224
    space = _override_space(torchvision_space(size), cfg.preprocess, cfg.spec)
    return LoadedModel(
        freeze(module),
        role,
        cfg.spec,
        space,  # the output layer: the module that runs last (load_model)
        weights=w,
        random_weights=random,
        fingerprint=fp,
    )


def _declared(factory: object, module: nn.Module, name: str) -> object:
    """A ``python:`` declaration: the returned module's attribute, else the factory function's."""
    value = getattr(module, name, None)
    return value if value is not None else getattr(factory, name, None)


def _declared_space(value: object, spec: str) -> ImageSpace:
    """``atlas_image_space``: an ImageSpace, or a mapping of models.target.preprocess keys with a size."""
    if isinstance(value, ImageSpace):
        return value
    where = f"spec {spec!r}: atlas_image_space"
    if not isinstance(value, dict):
        raise ModelError(f"{where} must be a mapping such as {{'size': 64}} or an ImageSpace, got {value!r}")
    try:
        pre = build(PreprocessConfig, dict(value), "atlas_image_space")
    except ConfigError as exc:
        raise ModelError(f"spec {spec!r}: {exc}") from None
    if pre.size is None:
        raise ModelError(f"{where} declares no 'size'; add the square input size in pixels, e.g. 'size': 64")
    return _override_space(ImageSpace(size=pre.size), pre, spec)


def _import_factory(target: str, spec: str) -> Callable[[], object]:
    if ":" not in target:
        raise ModelError(f"spec {spec!r}: expected python:package.module:factory")
    module_name, factory_name = target.rsplit(":", 1)
    try:
        py_module = importlib.import_module(module_name)
    except ImportError as exc:
        missing = getattr(exc, "name", None)
        own = (
            isinstance(exc, ModuleNotFoundError)
            and missing is not None
            and (module_name == missing or module_name.startswith(missing + "."))
        )  # the module itself (or its package) is not found, not something it imports
        if own:
            raise ModelError(
                f"spec {spec!r}: cannot import module {module_name!r} ({exc}); is it on PYTHONPATH?"
            ) from None
        not_found = isinstance(exc, ModuleNotFoundError) and missing
        needs = f"it imports {missing!r}, which is not installed" if not_found else _one_line(exc)
        raise ModelError(
            f"spec {spec!r}: module {module_name!r} was found but importing it failed ({needs}); install "
            "what it needs in this environment (and on every node)"
        ) from None
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - user code: SyntaxError, NameError, sys.exit()
        raise ModelError(f"spec {spec!r}: importing {module_name!r} failed ({_one_line(exc)})") from None
    factory = getattr(py_module, factory_name, None)
    if not callable(factory):
        public = [  # defined there, not imported
            n
            for n, obj in vars(py_module).items()
            if not n.startswith("_") and callable(obj) and getattr(obj, "__module__", None) == module_name
        ]
        hint = did_you_mean(factory_name, public)
        raise ModelError(
            f"spec {spec!r}: module {module_name!r} has no callable {factory_name!r}"
            + (
                hint
                or (f"; its callables: {some(sorted(public))}" if public else "; it defines none of its own")
            )
        )
    return factory


def _names_weights_enum(weights: str) -> bool:
    """Does ``weights`` name a torchvision weights enum (``IMAGENET1K_V1``, ``DEFAULT``, or as torchvision
    prints it, ``AlexNet_Weights.IMAGENET1K_V1``) rather than a file?"""
    if Path(weights).exists() or "/" in weights:
        return False
    return not Path(weights).suffix or re.fullmatch(r"\w+_Weights\.\w+", weights) is not None


def _one_line(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split())
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _check_code_model(
    spec: str, factory_name: str, role: Role, code_shape: Any, space: ImageSpace | None
) -> None:
    """A generator or DAE of one's own declares its code's shape (and a generator its pictures' space):
    without them every worker died on the first batch, after a pre-flight that had passed (a trial)."""
    if role not in ("generator", "dae"):
        return
    if not code_shape:
        raise ModelError(
            f"spec {spec!r}: the {role} declares no code_shape; set module.code_shape = (D,) on the module "
            f"{factory_name}() returns (D: its code's size, e.g. (4096,) for an fc6 code)"
        )
    if role == "generator" and space is None:
        raise ModelError(
            f"spec {spec!r}: the generator declares no picture space; set {factory_name}.atlas_image_space = "
            '{"size": N} (its pictures\' side in pixels; README: "Bring your own model")'
        )


def _load_python(target: str, cfg: ModelConfig, role: Role, opts: LoadOptions) -> LoadedModel:
    """Any ``nn.Module`` from ``factory()``; the factory (or the module) may declare ``atlas_image_space``,
    ``atlas_loads_own_weights`` and ``atlas_output_layer`` (README: "Bring your own model")."""
    factory = _import_factory(target, cfg.spec)
    factory_name = target.rsplit(":", 1)[1]
    if isinstance(factory, nn.Module):  # called, it ran the module's forward with no input
        raise ModelError(
            f"spec {cfg.spec!r}: {factory_name} is an nn.Module instance, not a factory; name a function "
            "(or class) that builds the module, e.g. def build(): return MyNet()"
        )
    try:
        module = _random_init(factory)  # type: ignore[arg-type]
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - user code (sys.exit() ended atlas in silence)
        raise ModelError(f"spec {cfg.spec!r}: {factory_name}() raised {_one_line(exc)}") from None
    if not isinstance(module, nn.Module):
        raise ModelError(
            f"spec {cfg.spec!r}: {factory_name}() returned {type(module).__name__}, not an nn.Module"
        )
    own = _declared(factory, module, "atlas_loads_own_weights")
    if own and not cfg.weights:  # an explicit weights file still wins
        w, random, fp = f"python:{target} (own weights)", False, module_fingerprint(module)
    else:
        w, random, fp = _weights(module, cfg, opts, role)
    declared = _declared(factory, module, "atlas_image_space")
    if declared is None:
        declared = _declared(factory, module, "atlas_input_space")  # the older name
    space, source = None, "none"
    if declared is not None:
        space, source = (
            _override_space(_declared_space(declared, cfg.spec), cfg.preprocess, cfg.spec),
            "declared",
        )
    elif role in IMAGE_ROLES and cfg.preprocess is not None and cfg.preprocess.size is not None:
        space, source = (
            _override_space(ImageSpace(size=cfg.preprocess.size), cfg.preprocess, cfg.spec),
            "config",
        )
    output = _declared(factory, module, "atlas_output_layer")
    if output is not None:
        _check_layer(module, output, f"spec {cfg.spec!r}: atlas_output_layer")
    code_shape = getattr(module, "code_shape", None)
    _check_code_model(cfg.spec, factory_name, role, code_shape, space)
    return LoadedModel(
        freeze(module),
        role,
        cfg.spec,
        space,
        code_shape=tuple(code_shape) if code_shape else None,
        output_layer=str(output) if output is not None else None,  # else the module that runs last
        weights=w,
        random_weights=random,
        fingerprint=fp,
        extras={"input_space_from": source},
    )


def _check_deepsim_variant(variant: str) -> None:
    if variant not in deepsim.VARIANTS:
        raise ModelError(f"unknown DeePSiM variant {variant!r}; valid: {', '.join(deepsim.VARIANTS)}")


def _load_deepsim(variant: str, cfg: ModelConfig, role: Role, opts: LoadOptions) -> LoadedModel:
    if role != "generator":
        raise ModelError(f"{cfg.spec!r} is a generator; it cannot be the {role}")
    _check_deepsim_variant(variant)
    module = _random_init(lambda: deepsim.DeePSiMGenerator(variant))
    w, random, fp = _weights(module, cfg, opts, role)
    return LoadedModel(
        freeze(module),
        role,
        cfg.spec,
        deepsim_space(),
        code_shape=deepsim.CODE_SHAPES[variant],
        weights=w,
        random_weights=random,
        fingerprint=fp,
        extras={"variant": variant},
    )


def _load_dae(kind: str, cfg: ModelConfig, role: Role, opts: LoadOptions) -> LoadedModel:
    from atlas.models.dae import ResidualMLPDAE

    if role != "dae":
        raise ModelError(f"{cfg.spec!r} is a code DAE; it cannot be the {role}")
    if kind != "residual_mlp":
        raise ModelError(f"unknown DAE kind {kind!r}; valid: residual_mlp")
    if not cfg.weights:
        raise ModelError(f"dae {cfg.spec!r} needs a weights file; train one with `atlas train-dae`")
    state, fingerprint = read_state_dict(cfg.weights, opts.storage)
    module = ResidualMLPDAE.from_state_dict(state, cfg.weights)
    return LoadedModel(
        freeze(module),
        role,
        cfg.spec,
        code_shape=(module.dim,),
        weights=cfg.weights,
        random_weights=False,
        fingerprint=fingerprint,
    )


def _load_toyworld(name: str, cfg: ModelConfig, role: Role, opts: LoadOptions) -> LoadedModel:
    from atlas import toyworld
    from atlas.toyworld.world import NotTrained

    tw = opts.toyworld
    if cfg.weights:
        raise ModelError(f"{cfg.spec!r}: toy-world models come from the toy-world cache; remove 'weights'")
    try:
        if name == "planted" and role == "target":  # T plus units whose truth is known (toyworld/planted.py)
            from atlas.toyworld.planted import planted_target

            loaded = planted_target(tw.preset, tw.cache_dir, train_if_missing=opts.train)
        else:
            loaded = toyworld.load_component(
                name, preset=tw.preset, cache_dir=tw.cache_dir, train_if_missing=opts.train
            )
    except NotTrained:  # and this load may not train it (atlas config --check)
        raise ModelError(_untrained(cfg.spec, name, tw.preset, opts.members)) from None
    if cfg.preprocess is not None and loaded.space is not None:
        loaded.space = _override_space(loaded.space, cfg.preprocess, cfg.spec)
    return loaded


def _untrained(spec: str, name: str, preset: str, members: int = 0) -> str:
    """A toy-world network that a load which may not train (a check) finds neither cached (current) nor
    shipped; the bootstrap it names trains the run's ensemble members too (``members``: how many)."""
    own = _members_up_to(name)  # a member itself: the bootstrap that trains it
    also = " and the run's ensemble members" if members and not own else ""
    members = max(members, own)
    flag = f" --members {members}" if members else ""
    return (
        f"{spec!r} is not trained yet (or its cached file is stale), and a check trains nothing: "
        f"`atlas bootstrap --preset {preset}{flag}` trains it{also} (minutes), or `atlas run` on demand"
    )


def _members_up_to(name: str) -> int:
    """The `atlas bootstrap --members` that trains toy-world component ``name``: N - 1 for targetN, else 0."""
    member = re.fullmatch(r"target([2-9])", name)
    return int(member.group(1)) - 1 if member else 0


def toyworld_members(specs: Sequence[str]) -> int:
    """How many toy-world ensemble members (``toyworld:target2`` ... ``target9``) ``specs`` reach: the
    highest N - 1, what ``atlas bootstrap --members`` trains."""
    names = (spec.removeprefix("toyworld:") for spec in specs if spec.startswith("toyworld:"))
    return max((_members_up_to(name) for name in names), default=0)


SCHEMES: dict[str, Callable[[str, ModelConfig, Role, LoadOptions], LoadedModel]] = {
    "toyworld": _load_toyworld,
    "torchvision": _load_torchvision,
    "python": _load_python,
    "deepsim": _load_deepsim,
    "dae": _load_dae,
}


def _scheme_and_name(spec: str) -> tuple[str, str]:
    scheme, _, rest = spec.partition(":")
    if scheme not in SCHEMES:
        raise ModelError(
            f"unknown model scheme {scheme!r} in {spec!r}{did_you_mean(scheme, SCHEMES)}; "
            f"valid: {', '.join(SCHEMES)}"
        )
    if not rest:
        raise ModelError(f"model spec {spec!r} names no model; e.g. {scheme}:NAME")
    return scheme, rest


def check_spec(spec: str) -> None:
    """What :func:`load_model` says of a spec that names no model, without building one or reading weights:
    the scheme, a torchvision model's name, a ``python:`` factory (its module imported), a DeePSiM variant.
    For checks that would otherwise blame another key for a typo in the spec (the pre-flight's starts)."""
    scheme, rest = _scheme_and_name(spec)
    if scheme == "torchvision":
        _check_torchvision_name(rest)
    elif scheme == "python":
        _import_factory(rest, spec)
    elif scheme == "deepsim":
        _check_deepsim_variant(rest)


def load_model(
    cfg: ModelConfig | str,
    role: Role = "target",
    *,
    allow_random_weights: bool = False,
    toyworld: ToyWorldRef | None = None,
    storage: Mapping[str, Any] | None = None,
    default_size: int | None = None,
    train: bool = True,
    members: int = 0,
) -> LoadedModel:
    """Resolve a model spec (or ModelConfig) to a frozen LoadedModel. Raises ModelError with one line.

    ``storage``: the options a weights URI opens with (a run config's ``storage:`` section).

    ``default_size``: input size for a target that declares none (``atlas layers`` probes at 224);
    without it such a target is an error asking for ``models.<role>.preprocess.size``.

    ``train``: a toy-world component neither cached nor shipped trains (False: a one-line error, whose
    ``atlas bootstrap`` also trains ``members`` ensemble members: the run's, :func:`toyworld_members`).
    """
    if isinstance(cfg, str):
        cfg = ModelConfig(spec=cfg)
    scheme, rest = _scheme_and_name(cfg.spec)
    opts = LoadOptions(allow_random_weights, toyworld or ToyWorldRef(), dict(storage or {}), train, members)
    model = SCHEMES[scheme](rest, cfg, role, opts)
    if role in IMAGE_ROLES and model.space is None:
        if default_size is None:
            raise ModelError(
                f"spec {cfg.spec!r} declares no input size; set models.{role}.preprocess.size (and geometry, "
                "channel_order, value_scale, mean, std) or declare atlas_image_space on the factory"
            )
        model.space = _override_space(ImageSpace(size=default_size), cfg.preprocess, cfg.spec)
        model.extras["input_space_from"] = "default"
    if cfg.output_layer is not None:
        _check_layer(model.module, cfg.output_layer, f"models.{role}.output_layer")
        model.output_layer = cfg.output_layer
    elif model.output_layer is None and role in ("target", "judge"):
        model.output_layer = _default_output_layer(model)
    return model


def load_run_model(run: RunConfig, role: Role, train: bool = True) -> LoadedModel | None:
    """The model a run config names for ``role`` (``models.<role>``; None when it names none), loaded as
    that run loads it: its random-weights permission, toy world and ``storage:`` options (``train``: as
    :func:`load_model`'s)."""
    cfg = getattr(run.models, role)
    if cfg is None:
        return None
    try:
        return _load_for_run(run, cfg, role, train)
    except ModelError as exc:  # which of the run's models: four take weights files
        said = str(exc)
        said = said if said.startswith("models.") else f"models.{role}: {said}"
        if _missing_local_file(cfg.weights) and not _toyworld(cfg):  # a toy-world model takes no file
            said += _missing_weights_hint(run, role)
        raise ModelError(said) from None


def load_run_ensemble(run: RunConfig, train: bool = True) -> list[LoadedModel]:
    """The networks of ``models.ensemble``, each loaded as the run loads its target; an error names the
    member (``models.ensemble[1]: ...``)."""
    members = []
    for i, cfg in enumerate(run.models.ensemble):
        try:
            members.append(_load_for_run(run, cfg, "target", train))
        except ModelError as exc:  # load_model names the role it loaded as, in its hints too
            key = f"models.ensemble[{i}]"
            said = str(exc).replace("models.target", key)
            raise ModelError(said if said.startswith(key) else f"{key}: {said}") from None
    return members


def check_run_ensemble_files(run: RunConfig) -> None:
    """The members of a run that leaves them unloaded (none of its layers is the output layer) are still
    held to their local weights files, with loading's one-line error: the config run.json records must
    load once the run grows by its output layer."""
    for i, cfg in enumerate(run.models.ensemble):
        if cfg.weights and not is_uri(cfg.weights) and not _toyworld(cfg):
            try:
                weights_source(cfg.weights)
            except ModelError as exc:
                raise ModelError(f"models.ensemble[{i}]: {exc}") from None


def _load_for_run(run: RunConfig, cfg: ModelConfig, role: Role, train: bool = True) -> LoadedModel:
    return load_model(
        cfg,
        role,
        allow_random_weights=run.models.allow_random_weights,
        toyworld=run.toyworld,
        storage=run.storage_options_for(cfg.weights),
        train=train,
        members=toyworld_members([m.spec for m in run.models.ensemble]),
    )


def _missing_weights_hint(run: RunConfig, role: Role) -> str:
    """What follows a missing weights file of ``models.<role>``: the run's other missing ones, said at once
    (a trial found the target's, the generator's and the encoder's in three reruns), and the overrides
    that run the config on random weights for a test of its plumbing. The DAE counts only where the run
    loads it (PPGN-h's DAE prior) and has no random form: it is trained on the generator's codes."""
    loaded = ["target", "generator", "encoder", "judge", *(["dae"] if run.sampler.uses_dae else [])]
    given = {r: getattr(run.models, r, None) for r in loaded}
    missing = [
        r for r, m in given.items() if m is not None and not _toyworld(m) and _missing_local_file(m.weights)
    ]
    others = [r for r in missing if r != role]
    too = f"; not found either: {', '.join(f'models.{r}.weights' for r in others)}" if others else ""
    dae = (
        " (the DAE: `atlas train-dae` with this config, or sampler.ppgn_h.prior: joint)"
        if "dae" in missing
        else ""
    )
    random = [r for r in missing if r != "dae"]
    if not random:
        return too + dae
    if run.models.allow_random_weights:
        return f"{too} (or models.{role}.weights: null to run it on random weights too){dae}"
    sets = " ".join(f"--set models.{r}.weights=null" for r in random)
    return f"{too} (random weights, to test the plumbing: --set models.allow_random_weights=true {sets}){dae}"


def _toyworld(cfg: ModelConfig) -> bool:
    return cfg.spec.startswith("toyworld:")


def _missing_local_file(weights: str | None) -> bool:
    return bool(weights) and not is_uri(weights) and not Path(weights).expanduser().exists()


def _default_output_layer(model: LoadedModel) -> str | None:
    """A network's default output layer: the leaf module that runs last in a batch-1 forward pass (not the
    one registered last: a dropout defined after the classifier but applied before it). A forward that
    returns several tensors (a multi-head network) gets a note the pre-flight says (``extras
    ["output_note"]``, naming the heads: a user's trial found the last-run head of two taken in silence).
    When that pass fails (a size the network cannot take) the last registered leaf; ``model_layers``
    reports the failure."""
    try:
        last, heads = forward_outputs(model.module, example_input(model))  # one pass for both
    except Exception:  # noqa: BLE001 - reported in one line by the next model_layers call
        leaves = _leaf_names(model.module)
        return leaves[-1] if leaves else None
    if len(heads) > 1:
        named = ", ".join("computed in forward()" if h is None else repr(h) for h in heads)
        model.extras["output_note"] = (
            f"the forward returns {len(heads)} outputs ({named}); the output layer is {last!r}, the module "
            "that runs last"
        )
    return last


def _check_layer(module: nn.Module, name: object, where: str) -> None:
    if not isinstance(name, str):
        raise ModelError(f"{where}: expected a layer name (a string), got {name!r}")
    try:
        resolve_modules(module, [name])
    except ModelError as exc:
        raise ModelError(f"{where}: {exc}") from None


def example_input(model: LoadedModel, batch: int = 1) -> torch.Tensor:
    """A zero-valued encoded input for a target (or a zero code for a generator/DAE)."""
    if model.role in ("generator", "dae"):
        assert model.code_shape is not None
        return torch.zeros(batch, *model.code_shape)
    assert model.space is not None
    return model.space.encode(torch.full((batch, 3, model.space.size, model.space.size), 0.5))


def model_layers(model: LoadedModel, include_containers: bool = False) -> list[LayerInfo]:
    """``list_layers`` on the model's example input; a forward pass that fails at the model's input size
    is one line naming the size and how to set it (the usual cause: a network built for another size)."""
    if model.role in ("generator", "dae") and not model.code_shape:
        raise ModelError(f"{model.spec}: the {model.role} declares no code_shape (module.code_shape = (D,))")
    x = example_input(model)
    try:
        return list_layers(model.module, x, include_containers=include_containers)
    except Exception as exc:  # noqa: BLE001 - user networks fail in many ways
        shape = "x".join(map(str, x.shape[1:]))
        if model.role in IMAGE_ROLES:
            size = model.space.size if model.space is not None else "?"
            how = (
                f"set the size it expects with models.{model.role}.preprocess.size (atlas run) or "
                "--size N (atlas layers)"
            )
            if model.spec.startswith("python:"):
                how += ", or declare atlas_image_space on the factory"
            if "channels" in str(exc) and model.space is not None:  # torch: "expected ... to have 1 channels"
                gray = "leave out --gray" if model.space.channels == 1 else "--gray"
                how = (
                    f"the network reads another number of channels than the {model.space.channels} it was "
                    f"given: set models.{model.role}.preprocess.channel_order (gray: one channel, the "
                    f"picture's luminance; RGB or BGR: three), or {gray} (atlas layers)"
                )
            raise ModelError(
                f"{model.spec}: a forward pass at {size}x{size} px (input {shape}) failed "
                f"({_one_line(exc, 160)}{raised_at(exc, users_only=True)}); {how}"
            ) from None
        raise ModelError(
            f"{model.spec}: a forward pass on a {shape} code failed "
            f"({_one_line(exc, 160)}{raised_at(exc, users_only=True)})"
        ) from None
