"""The base of every config section (frozen, strict, unknown keys refused), its number type and the
helpers that build, copy and write sections.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, ClassVar, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    ValidationError,
    model_validator,
)
from pydantic.fields import FieldInfo

from atlas.config.messages import config_error
from atlas.config.units import UnitSelection

HUGE = 1e4  # upper bound of step sizes and weights: larger values are typos (every chain diverges)
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _as_float(value: Any) -> Any:
    """Numbers become floats: integers (not booleans) and numeric text (PyYAML reads 1e-3, without a dot,
    as a string). Infinities and NaN are refused; anything else is left to pydantic's strict float."""
    number = value
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        number = value = float(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an integer too large for a float
            number = math.inf
    if isinstance(number, float) and not math.isfinite(number):
        raise ValueError(f"{value!r} is not a finite number; give a finite value such as 1e-5")
    return number


Float = Annotated[float, BeforeValidator(_as_float)]


class Section(BaseModel):
    """A config section: frozen, strict (no silent str -> int), unknown keys refused.

    Constructing one directly (``ModelConfig(spec="x")``) raises ConfigError, as loading a file does.
    Change one with ``replace(section, key=value)``: ``model_copy(update=...)`` would not validate.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)
    spec_shorthand: ClassVar[bool] = False  # a plain string stands for the section (ModelConfig: its spec)
    name_shorthand: ClassVar[str] = ""  # a list of these may list bare names (LayerConfig: "[fc8, conv4]")

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise config_error(exc, type(self)) from None

    # pydantic builds nested sections itself (their errors keep the full location) unless __init__ is
    # custom; this wrapper only translates errors, so it is declared a base __init__.
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    @model_validator(mode="after")
    def _ints_fit_int64(self) -> Section:
        """Every integer fits in 64 bits, as torch, Arrow and Ray take it (a huge one is a typo)."""
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
                raise ValueError(
                    f"{name}: {value} does not fit in 64 bits; give one from {-(2**63)} to {2**63 - 1}"
                )
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML-able values; unit selections in their ``to_yaml`` form."""
        return to_plain(self)


S = TypeVar("S", bound=BaseModel)


def replace(obj: S, **changes: Any) -> S:
    """A copy of config section ``obj`` with ``changes``, validated like a config file (ConfigError)."""
    return type(obj)(**{**dict(obj), **changes})


def field_extra(f: FieldInfo) -> dict[str, Any]:
    """The field's own documentation flags: type_doc, targets_only, image_networks_only, omit_default."""
    extra = f.json_schema_extra
    return extra if isinstance(extra, dict) else {}


def build(cls: type[S], data: Any, prefix: str = "") -> S:
    """Validate the plain mapping ``data`` as section ``cls``; errors name keys under ``prefix``."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise config_error(exc, cls, prefix) from None


def to_plain(obj: Any, shown: bool = False) -> Any:
    """Plain YAML-able values as hashed (``shown=False``), or as ``atlas config`` shows them (``shown``):
    every key, also one left at a default the hashed form omits, and unit selections in their compact form
    ('0-99', not 100 indices). Both forms read back as the same config, with the same hash."""
    if isinstance(obj, UnitSelection):
        return obj.compact() if shown else obj.to_yaml()
    if isinstance(obj, BaseModel):
        return {
            name: to_plain(getattr(obj, name), shown)
            for name, f in type(obj).model_fields.items()
            # a newer optional key left at its default is not written: older configs keep their hash
            if shown
            or not (
                field_extra(f).get("omit_default")
                and getattr(obj, name) == f.get_default(call_default_factory=True)
            )
        }
    if isinstance(obj, list | tuple):
        return [to_plain(v, shown) for v in obj]
    return obj
