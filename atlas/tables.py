"""Plain-text tables for the terminal (benchmarks, `atlas layers`, `atlas sql`), and counts in words."""

from __future__ import annotations

from collections.abc import Callable, Sequence


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def format_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[object]],
    align_right: Sequence[int] = (),
    cell: Callable[[object], str] = _cell,
) -> str:
    """Column-aligned table with a header rule; ``align_right`` lists numeric column indices; ``cell``
    writes one value (default: floats to 4 significant digits, None as blank)."""
    cells = [[cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        pairs = enumerate(zip(values, widths, strict=True))
        out = [v.rjust(w) if i in align_right else v.ljust(w) for i, (v, w) in pairs]
        return "  ".join(out).rstrip()

    return "\n".join([line(list(headers)), line(["-" * w for w in widths]), *(line(r) for r in cells)])


def unique_names(columns: list[str]) -> list[str]:
    """``a, a, b`` -> ``a, a_2, b``: JSON objects and shown tables need distinct names."""
    seen: dict[str, int] = {}
    names = []
    for c in columns:
        seen[c] = seen.get(c, 0) + 1
        name = c if seen[c] == 1 else f"{c}_{seen[c]}"
        while name in columns and seen[c] > 1:
            seen[c] += 1
            name = f"{c}_{seen[c]}"
        names.append(name)
    return names


def counted(n: int, noun: str) -> str:
    """``1 unit``, ``2 units`` (a noun whose plural adds an s)."""
    return f"{n} {noun}{'' if n == 1 else 's'}"
