"""Pydantic's validation errors as the one-line messages users read: the dotted key, the bad value and
what is valid; an unknown key lists the valid ones with a close-match suggestion.
"""

from __future__ import annotations

import difflib
import types
import typing
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ValidationError,
)

from atlas.config.units import UNITS_VALID, UnitSelection
from atlas.errors import ConfigError


def is_section(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def unwrap(tp: Any) -> Any:
    """``X`` from ``Annotated[X, ...]`` and ``X | None``."""
    while True:
        origin = typing.get_origin(tp)
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if origin is Annotated or (origin in (typing.Union, types.UnionType) and len(args) == 1):
            tp = args[0]
        else:
            return tp


def _type_at(root: type[BaseModel], loc: tuple[Any, ...]) -> Any:
    """The (unwrapped) type at a pydantic error location: ('layers', 0, 'units') -> UnitSelection."""
    tp: Any = root
    for part in loc:
        tp = unwrap(tp)
        if typing.get_origin(tp) is list:
            tp = typing.get_args(tp)[0]
        elif is_section(tp) and part in tp.model_fields:
            tp = tp.model_fields[part].annotation
        else:
            return None
    return unwrap(tp)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin is list:
        item = unwrap(typing.get_args(tp)[0])
        if is_section(item) and item.name_shorthand:
            return f"a list of mappings or of names (e.g. {item.name_shorthand})"
        return "a list of mappings" if is_section(item) else f"a list of {_type_name(item)}"
    if tp is UnitSelection:
        return UNITS_VALID
    if is_section(tp):
        return "a spec string or a mapping" if getattr(tp, "spec_shorthand", False) else "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false"}.get(tp, str(tp))


def _bound(value: Any) -> str:
    """A range bound as written: 10000 (not 10000.0), 0.5."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


RANGE_WORDS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
_UNKNOWN_KEY = ("extra_forbidden", "invalid_key")  # invalid_key: a key that is not a string (YAML 1: x)


def _nested_home(section: Any, key: str) -> str | None:
    """``sub.key`` when ``key`` is a field of exactly one sub-section of ``section`` (a key written one
    level too high: ``steps`` -> ``sampler.steps``), else None."""
    if not is_section(section):
        return None
    homes = [
        f"{name}.{key}"
        for name, field in section.model_fields.items()
        if is_section(unwrap(field.annotation)) and key in unwrap(field.annotation).model_fields
    ]
    return homes[0] if len(homes) == 1 else None


def _unknown_key(root: type[BaseModel], loc: tuple[Any, ...], prefix: str) -> str:
    section = _type_at(root, loc[:-1])
    valid = list(section.model_fields) if is_section(section) else []
    nested = _nested_home(section, str(loc[-1]))  # `steps:` at the top: sampler.steps, exactly
    near = difflib.get_close_matches(str(loc[-1]), valid, n=1, cutoff=0.8)  # sampler.step: steps, a typo
    hint = near or ([nested] if nested else difflib.get_close_matches(str(loc[-1]), valid, n=1))
    extra = f" (did you mean {hint[0]!r}?)" if hint else ""
    key, colon, value = str(loc[-1]).partition(":")
    if colon and value and not value.startswith(" "):  # {name:fc8} is the one key "name:fc8" in YAML
        extra = f" (YAML needs a space after ':': {key}: {value})"
    where = ".".join(str(p) for p in (*([prefix] if prefix else []), *loc[:-1]))
    inside = f" in '{where}'" if where else ""
    return f"unknown config key '{_dotted(prefix, loc)}'{extra}; valid keys{inside}: {', '.join(valid)}"


def _dotted(prefix: str, loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in ((prefix, *loc) if prefix else loc))


def _error_line(err: Any, root: type[BaseModel], prefix: str) -> str:
    """One pydantic error as the one-line message: dotted key, the bad value, what is valid."""
    loc, kind, value, ctx = tuple(err["loc"]), err["type"], err.get("input"), err.get("ctx") or {}
    if kind in _UNKNOWN_KEY:
        return _unknown_key(root, loc, prefix)
    key, tp = _dotted(prefix, loc), _type_at(root, loc)
    if kind == "value_error":
        message = str(ctx["error"])
        if not key:
            return message
        # a section's own validators name its key ("spec: ..."); a field's validator says what is wrong
        return f"{key}.{message}" if is_section(tp) else f"{key}: {message}"
    if kind == "literal_error":
        # each choice as YAML spells it (true, not True) and the hint taken from the same spellings
        shown = {
            str(c).lower() if isinstance(c, bool) else repr(c): str(c).lower() for c in typing.get_args(tp)
        }
        hint = difflib.get_close_matches(str(value).lower(), list(shown.values()), n=1)
        extra = f" (did you mean {next(k for k, v in shown.items() if v == hint[0])}?)" if hint else ""
        return f"{key}: invalid value {_shown(value)}; valid: {', '.join(shown)}{extra}"
    bounds = [f"{RANGE_WORDS[k]} {_bound(ctx[k])}" for k in RANGE_WORDS if k in ctx]
    if bounds:
        if tp is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)  # pydantic reports the input of an optional or list item as given
        return f"{key}: value {_shown(value)} is out of range; must be {bounds[0]}"
    if value is None:  # an empty section or key (`facets:` with nothing under it) reads as null
        return f"{key}: expected {_type_name(tp)}, got nothing (an empty value); give one or remove the key"
    return f"{key}: expected {_type_name(tp)}, got {_shown(value)}"


SHOWN_CHARS = 80  # a value echoed in an error: enough to recognize it, never a screenful


def _shown(value: Any) -> str:
    """``repr(value)``, cut to :data:`SHOWN_CHARS` (a 5,000-character value makes no readable line)."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else f"{text[: SHOWN_CHARS - 5]}...({len(text):,} chars)"


def config_error(exc: ValidationError, root: type[BaseModel], prefix: str = "") -> ConfigError:
    """Pydantic's first error as a one-line ConfigError; an unknown key (a typo) before any other."""
    errors = exc.errors(include_url=False)
    first = next((e for e in errors if e["type"] in _UNKNOWN_KEY), errors[0])
    return ConfigError(_error_line(first, root, prefix))
