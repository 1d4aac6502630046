"""The ``layers`` section: which layers and units to map, with their composite objectives."""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

from pydantic import (
    Field,
    model_validator,
)

from atlas.config.composites import Composite, parse_composite
from atlas.config.section import Section
from atlas.config.units import UnitSelection
from atlas.errors import ConfigError

# what may name a run's files and folders (a layer's partition, a shard): not hidden, not an option
FILE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._+-]*$")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class LayerConfig(Section):
    name: str = Field(
        "", description="Module name of the layer in the target (see `atlas layers SPEC`), e.g. fc8."
    )
    units: UnitSelection = Field(
        UnitSelection(),
        description="'all', a range '0-15', ranges and indices '0-15,20', or a list [1, 5, 9]; checked "
        "against the layer's size before anything runs.",
        json_schema_extra={"type_doc": "all | 'a-b,c' | [int, ...]"},
    )
    kind: Literal["auto", "output", "fc", "conv"] = Field(
        "auto",
        description="Unit kind; auto: the target's output layer is 'output', 2-D layers 'fc', 4-D 'conv'.",
    )
    objectives: list[str] = Field(
        default_factory=list,
        description="Composite objectives over this layer's units, each visualized like one more unit "
        "(numbered after the layer's own units): '3 + 5' (both at once), '3 - 5' (contrast), "
        "'0.7*3 + 0.3*7' (any weights).",
        json_schema_extra={"omit_default": True, "type_doc": "[str, ...]"},
    )
    pairs: list[list[int]] = Field(
        default_factory=list,
        description="Shorthand for objectives: [[3, 5], [1, 2]] = '3 + 5', '1 + 2' (units visualized "
        "together).",
        json_schema_extra={"omit_default": True, "type_doc": "[[int, int], ...]"},
    )

    name_shorthand: ClassVar[str] = "[fc8, conv4]"

    @model_validator(mode="before")
    @classmethod
    def _name_shorthand(cls, data: Any) -> Any:
        """``layers: [fc8]``; and a number as a name (an ``nn.Sequential``'s layer ``4``, which YAML reads as
        an int) is that name's text."""
        if _is_int(data):
            data = str(data)
        if isinstance(data, dict) and _is_int(data.get("name")):
            data = {**data, "name": str(data["name"])}
        if (
            isinstance(data, dict)
            and data.get("units") in ([], "")
            and (data.get("objectives") or data.get("pairs"))
        ):
            raise ValueError(  # a user's trial wanted the pairs alone, and read "invalid unit list []"
                "units: [] selects none of the layer's own units, and a layer of composite objectives alone "
                "is not supported; keep one of its own units beside them (e.g. units: [3], a unit they use)"
            )
        return {"name": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _check(self) -> LayerConfig:
        if not self.name.strip():
            raise ValueError("name: empty layer name; name a layer of the target (see `atlas layers SPEC`)")
        if not FILE_NAME.match(self.name) or ".." in self.name:
            raise ValueError(
                f"name: the layer {self.name!r} cannot name the run's files (letters, digits and '._+-', "
                "starting with a letter, digit or '_'); rename the module"
            )
        for pair in self.pairs:
            if len(pair) != 2 or pair[0] == pair[1]:
                raise ValueError(f"pairs: {pair} is not two different unit indices; write e.g. [3, 5]")
            if min(pair) < 0:
                raise ValueError(f"pairs: {pair} has a negative unit index; units count from 0 (e.g. [3, 5])")
        try:
            self.composites()  # syntax now; ranges once the layer's size is known (driver.resolve_layers)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return self

    def composite_texts(self) -> list[tuple[str, str]]:
        """``objectives`` then ``pairs`` as (the key that wrote it, expression), in the order their units
        are numbered: ``("objectives", "3 - 5")``, ``("pairs", "1 + 2")``."""
        return [("objectives", t) for t in self.objectives] + [("pairs", f"{a} + {b}") for a, b in self.pairs]

    def composites(self, n_units: int | None = None, prefix: str = "") -> tuple[Composite, ...]:
        """The layer's composite objectives (units n_units, n_units + 1, ...); a ConfigError naming
        ``{prefix}objectives`` or ``{prefix}pairs`` when one cannot be read, names a unit outside
        0..n_units-1, or repeats another (the same units and weights: it would be drawn twice)."""
        out: list[Composite] = []
        for field_name, text in self.composite_texts():
            comp = parse_composite(text, n_units, f"{prefix}{field_name}")
            twin = next((c for c in out if sorted(c.terms) == sorted(comp.terms)), None)
            if twin is not None:
                raise ConfigError(
                    f"{prefix}{field_name}: {text!r} repeats {twin.text!r}; list each composite once"
                )
            out.append(comp)
        return tuple(out)
