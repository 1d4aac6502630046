"""Plain-text tables for the terminal (benchmarks, `atlas layers`, `atlas sql`)."""

from __future__ import annotations

from collections.abc import Sequence


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def format_table(
    headers: Sequence[str], rows: Sequence[Sequence[object]], align_right: Sequence[int] = ()
) -> str:
    """Column-aligned table with a header rule; ``align_right`` lists numeric column indices."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        pairs = enumerate(zip(values, widths, strict=True))
        out = [v.rjust(w) if i in align_right else v.ljust(w) for i, (v, w) in pairs]
        return "  ".join(out).rstrip()

    return "\n".join([line(list(headers)), line(["-" * w for w in widths]), *(line(r) for r in cells)])
