"""Every config key with its type, range, default and doc, for ``atlas config`` without a file."""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
)
from pydantic.fields import FieldInfo

from atlas.config.messages import RANGE_WORDS, is_section, unwrap
from atlas.config.models import ModelsConfig
from atlas.config.run import RunConfig
from atlas.config.section import field_extra, to_plain
from atlas.config.units import UnitSelection


def _bounds(f: FieldInfo) -> dict[str, Any]:
    """The range constraints of a field (ge, gt, le, lt) as declared."""
    return {k: getattr(m, k) for m in f.metadata for k in RANGE_WORDS if getattr(m, k, None) is not None}


def _short_type(tp: Any, f: FieldInfo) -> str:
    """Compact type with its valid range, for `atlas config`: 'int >= 1, <= 100000', 'str | null'."""
    if "type_doc" in field_extra(f):
        return str(field_extra(f)["type_doc"])
    origin = typing.get_origin(tp)
    if origin is Annotated:
        return _short_type(typing.get_args(tp)[0], f)
    if origin is Literal:
        return " | ".join(str(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_short_type(a, f) for a in typing.get_args(tp))
    if origin is list:
        item = unwrap(typing.get_args(tp)[0])
        return "list of mappings" if is_section(item) else f"list of {_short_type(item, f)}"
    if tp is UnitSelection:
        return "units"
    if is_section(tp):
        return "spec | mapping" if getattr(tp, "spec_shorthand", False) else "mapping"
    name = {int: "int", float: "float", str: "str", bool: "bool", type(None): "null"}.get(tp, str(tp))
    if tp in (int, float):
        bounds = [
            f"{RANGE_WORDS[k]} {'2^63-1' if v == 2**63 - 1 else format(v, 'g')}"
            for k, v in _bounds(f).items()
        ]
        name += (" " + ", ".join(bounds)) if bounds else ""
    return name


def _yaml_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value == "":
        return "(required)"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list) and not value:
        return "[]"
    return str(value)


def describe_fields(
    cls: type[BaseModel] = RunConfig, prefix: str = "", *, role: str = "target"
) -> list[tuple[str, str, str, str]]:
    """(dotted key, type with range, default, doc) for every key, nested ones included, for `atlas config`.

    Optional sections (``models.target``, ``models.target.preprocess``) and list items (``layers[]``) are
    listed with their own keys; under ``models.<role>`` only the keys that role takes (``preprocess`` for
    image networks: the target and the encoder; ``output_layer`` for the target).
    """
    rows: list[tuple[str, str, str, str]] = []
    for name, f in cls.model_fields.items():
        extra = field_extra(f)
        if extra.get("targets_only") and role != "target":
            continue
        if extra.get("image_networks_only") and role not in ("target", "encoder"):
            continue
        key, tp = f"{prefix}{name}", f.annotation
        if is_section(tp):  # a section: its keys only
            rows.extend(describe_fields(tp, key + "."))
            continue
        default = f.get_default(call_default_factory=True)
        rows.append((key, _short_type(tp, f), _yaml_value(to_plain(default)), f.description or ""))
        inner = unwrap(tp)
        if typing.get_origin(inner) is list and is_section(unwrap(typing.get_args(inner)[0])):
            rows.extend(describe_fields(unwrap(typing.get_args(inner)[0]), key + "[]."))
        elif is_section(inner):  # an optional mapping: models.target, models.target.preprocess
            rows.extend(describe_fields(inner, key + ".", role=name if cls is ModelsConfig else role))
    return rows
