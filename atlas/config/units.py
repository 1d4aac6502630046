"""Unit selections: which units of a layer a config names ('all', '0-15,20', [1, 5]), checked against the
layer's size without expanding.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic_core import core_schema

from atlas.errors import ConfigError

LIST_FORM_MAX = 10_000  # to_yaml() writes selections up to this many units as an index list (stable hash)
UNITS_VALID = "'all', a range like '0-15', ranges and indices like '0-15,20', an index, or a list of indices"


@dataclass(frozen=True)
class UnitSelection:
    """Which units of a layer: all of them, or inclusive ranges ``(lo, hi)`` in the order given.

    Ranges are never expanded at parse time ('0-999999999' costs two integers): ``check(n_units)``
    compares them with the layer's size, and only ``resolve(n_units)`` lists indices, after the check.
    """

    all: bool = True
    ranges: tuple[tuple[int, int], ...] = ()

    @staticmethod
    def parse(value: Any, key: str) -> UnitSelection:
        try:
            return UnitSelection._parse(value)
        except ValueError as exc:
            raise ConfigError(f"{key}: {exc}") from None

    @staticmethod
    def _parse(value: Any) -> UnitSelection:
        """``parse`` without the key: raises ValueError (a pydantic validator, see the schema below)."""
        if isinstance(value, UnitSelection):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 0:
                raise ValueError(f"unit index {value} is negative; expected {UNITS_VALID}")
            return UnitSelection(all=False, ranges=((value, value),))
        if isinstance(value, str):
            return UnitSelection._parse_text(value)
        if isinstance(value, list | tuple):
            if not value or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
                raise ValueError(f"invalid unit list {value!r}; expected {UNITS_VALID}")
            return UnitSelection(all=False, ranges=tuple((v, v) for v in value))
        shown = str(value).lower() if isinstance(value, bool) else repr(value)  # YAML's spelling: true
        raise ValueError(f"invalid unit selection {shown}; expected {UNITS_VALID}")

    @staticmethod
    def _parse_text(value: str) -> UnitSelection:
        text = value.strip()
        if text.lower() == "all":  # ALL, All: what it can only mean
            return UnitSelection()
        ranges: list[tuple[int, int]] = []
        for part in text.split(","):
            m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
            if not m:
                raise ValueError(f"invalid unit selection {value!r}; expected {UNITS_VALID}")
            lo = int(m.group(1))
            hi = int(m.group(2)) if m.group(2) is not None else lo
            if hi < lo:
                raise ValueError(f"range {part.strip()!r} is empty (end < start); expected {UNITS_VALID}")
            ranges.append((lo, hi))
        return UnitSelection(all=False, ranges=tuple(ranges))

    @classmethod
    def __get_pydantic_core_schema__(cls, _source: Any, _handler: Any) -> core_schema.CoreSchema:
        """As a config field: validated by ``parse``, written by ``to_yaml``."""
        return core_schema.no_info_plain_validator_function(
            cls._parse, serialization=core_schema.plain_serializer_function_ser_schema(cls.to_yaml)
        )

    @property
    def size_bound(self) -> int | None:
        """Units selected, counting overlaps twice (None for 'all'); computed without expanding."""
        return None if self.all else sum(hi - lo + 1 for lo, hi in self.ranges)

    def check(self, n_units: int, key: str = "units", layer: str | None = None) -> None:
        """Refuse a selection reaching past the layer's last unit, without expanding it."""
        if self.all and n_units > 0:
            return
        where = f"layer {layer!r}" if layer else "the layer"
        if n_units <= 0:
            raise ConfigError(f"{key}: {where} has no units; choose a layer with a (U,) or (C, H, W) output")
        for lo, hi in self.ranges:
            if hi >= n_units:
                what = f"unit {lo}" if lo == hi else f"range {lo}-{hi}"
                raise ConfigError(f"{key}: {what} is out of range; {where} has units 0-{n_units - 1}")

    def resolve(self, n_units: int, key: str = "units", layer: str | None = None) -> list[int]:
        """Concrete unit indices (in the order given, without repeats), after ``check(n_units)``."""
        self.check(n_units, key, layer)
        if self.all:
            return list(range(n_units))
        return list(dict.fromkeys(i for lo, hi in self.ranges for i in range(lo, hi + 1)))

    def compact(self, merge: bool = False) -> str | int:
        """'all', an index, or ranges and indices as given ('0-15,20'): for people (``atlas config``).
        ``merge``: neighbouring ranges joined ([0, 1, 2, 3] as '0-3': run.json keeps short ones as lists)."""
        if self.all:
            return "all"
        ranges = [list(r) for r in self.ranges]
        if merge:
            ranges = []
            for lo, hi in self.ranges:
                if ranges and lo == ranges[-1][1] + 1:
                    ranges[-1][1] = hi
                else:
                    ranges.append([lo, hi])
        if len(ranges) == 1 and ranges[0][0] == ranges[0][1]:
            return ranges[0][0]
        return ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in ranges)

    def to_yaml(self) -> Any:
        """'all'; the index list for up to LIST_FORM_MAX units (so config hashes stay what they were);
        else the compact form '0-15,20'. Every form parses back to the same selection."""
        if self.all:
            return "all"
        bound = self.size_bound or 0
        if bound <= LIST_FORM_MAX:
            return list(dict.fromkeys(i for lo, hi in self.ranges for i in range(lo, hi + 1)))
        return str(self.compact())
