"""Composite objectives' grammar: a weighted sum of a layer's units (``"3 + 5"``, ``"3 - 5"``,
``"0.7*3 + 0.3*7"``), parsed and checked where the config is read (no torch); ``atlas.sampling.objectives``
computes them (docs/sampling.md, "Objective algebra")."""

from __future__ import annotations

import re
from dataclasses import dataclass

from atlas.errors import ConfigError

MAX_WEIGHT = 1e4  # a composite term's largest weight in size: larger ones are typos (as config.HUGE)


@dataclass(frozen=True)
class Composite:
    """A weighted sum of a layer's units, e.g. ``3 - 5`` -> terms ((3, 1.0), (5, -1.0))."""

    terms: tuple[tuple[int, float], ...]
    text: str  # normalized expression, e.g. "3 - 5", "0.7*3 + 0.3*7"

    @property
    def is_pair(self) -> bool:
        """Two units of positive weights (``a + b``, ``0.7*a + 0.3*b``): what ``sampler.pair_start:
        composed`` starts from its units' own pictures."""
        return len(self.terms) == 2 and all(w > 0 for _, w in self.terms)


# [+-] [signed weight *] unit: "3 + -1*5" as "3 - 5" (a trial wrote it so)
_TERM = re.compile(r"\s*([+-])?\s*(?:([+-]?\s*(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*\*\s*)?(\d+)\s*")


def parse_composite(text: str, n_units: int | None = None, key: str = "layers.objectives") -> Composite:
    """``"3 + 5"``, ``"3 - 5"``, ``"0.7*3 + 0.3*7"``, ``"-2*4 + 1"``, ``"3 + -1*5"``, ``"1e-2*3 + 5"``,
    ``"-3"`` (the unit's negative) -> Composite; a
    one-line ConfigError naming ``key`` for anything else (unknown syntax, a unit out of range, a repeated
    unit, one term, a weight of 0 or above ``MAX_WEIGHT``)."""
    pos, terms = 0, []
    while pos < len(text):
        m = _TERM.match(text, pos)
        if m is None or m.end() == pos or (terms and m.group(1) is None):
            raise ConfigError(
                f"{key}: cannot read {text!r} at {text[pos:]!r}; write a weighted sum of unit indices "
                "such as '3 + 5', '3 - 5' or '0.7*3 + 0.3*7'"
            )
        sign = -1.0 if m.group(1) == "-" else 1.0
        terms.append((int(m.group(3)), sign * float((m.group(2) or "1").replace(" ", ""))))
        pos = m.end()
    units = [u for u, _ in terms]
    repeated = sorted({u for u in units if units.count(u) > 1})
    if repeated:
        raise ConfigError(
            f"{key}: unit {repeated[0]} appears more than once in {text!r}; give each unit one term "
            "and add its weights (e.g. '2*3 + 5')"
        )
    if not terms:
        raise ConfigError(f"{key}: an empty composite; write a weighted sum of units such as '3 + 5'")
    if len(terms) < 2 and terms[0][1] > 0:  # '-3' stands: the unit's negative (Lucid's), what lowers it
        unit, weight = terms[0]
        read = f"{weight:g} x unit {unit}" if weight != 1 else f"unit {unit}"  # "3 * 5": weight 3, unit 5
        raise ConfigError(
            f"{key}: {text!r} reads as {read} alone, the unit itself (list it in units); a composite sums "
            "two or more units ('3 + 5', '3 - 5') or negates one ('-3': what lowers it most)"
        )
    for unit, weight in terms:
        if weight == 0 or abs(weight) > MAX_WEIGHT:
            raise ConfigError(
                f"{key}: unit {unit} in {text!r} has weight {weight:g}; weights are nonzero and at most "
                f"{MAX_WEIGHT:g} in size (drop a unit rather than weigh it 0)"
            )
    if n_units is not None and max(units) >= n_units:
        raise ConfigError(
            f"{key}: unit {max(units)} in {text!r} is out of range; the layer has units 0-{n_units - 1}"
        )
    return Composite(tuple(terms), _composite_text(terms))


def _composite_text(terms: list[tuple[int, float]]) -> str:
    parts = []
    for i, (unit, w) in enumerate(terms):
        mag = "" if abs(w) == 1 else f"{abs(w):g}*"
        sign = ("-" if w < 0 else "") if i == 0 else (" - " if w < 0 else " + ")
        parts.append(f"{sign}{mag}{unit}")
    return "".join(parts)
