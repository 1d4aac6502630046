"""Chains in batches: one forward/backward pass per batch, OOM back-off, failures isolated to their unit.

Usage (inside ``Engine.map_units``)::

    batch_size = run_batches(todo, batch_size, run=lambda b: engine._run(layer, b, seed, objective),
                             rows=rows, progress=progress, granule=chains_per_unit_or_1)

``todo``: chains (items with ``unit_pos``) in unit order. A batch that raises CUDA out-of-memory is retried
at half the size, in multiples of ``granule`` (the smaller size is kept for later calls); any other failure
re-runs the batch unit by unit, so only the unit that fails becomes an error row (``rows.errors``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from atlas.sampling.results import ChainResult
from atlas.sampling.unit_rows import UnitRows

RunChains = Callable[[list[Any]], list[ChainResult]]


def run_batches(
    todo: Sequence[Any],
    batch_size: int,
    run: RunChains,
    rows: UnitRows,
    progress: Callable[[int], None] | None = None,
    granule: int = 1,
) -> int:
    """Run every chain of ``todo``; finished units go to ``rows``; -> the batch size that worked.

    ``granule``: batch sizes stay multiples of it, also when an out-of-memory error halves them (the
    diversity term compares a unit's chains within a batch, so they must not be split)."""
    i = 0
    while i < len(todo):
        batch = list(todo[i : i + batch_size])
        try:
            out = run_isolated(run, batch, rows.errors, rows.fell_back)
        except Exception as exc:
            if not is_out_of_memory(exc) or batch_size <= granule:
                raise
            batch_size = max(granule, batch_size // 2 // granule * granule)  # back off, retry the same chains
            torch.cuda.empty_cache()
            continue
        i += len(batch)
        finished = rows.add(batch, out, remaining={c.unit_pos for c in todo[i:]})
        if progress and finished:
            progress(finished)
    return batch_size


_ALLOC_FAILED = ("CUDNN_STATUS_ALLOC_FAILED", "CUBLAS_STATUS_ALLOC_FAILED", "CUDA out of memory")


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA's out-of-memory error, or a library's allocation failure said as a RuntimeError (cuDNN's
    autotuner, ``compute.cudnn_benchmark``, can fail so under memory pressure): the batch is halved."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and any(s in str(exc) for s in _ALLOC_FAILED)


def run_isolated(
    run: RunChains,
    batch: list[Any],
    errors: dict[int, BaseException],
    fell_back: dict[int, BaseException] | None = None,
) -> list[ChainResult | None]:
    """Run a batch; if it fails, run its units one by one: only a failing unit's chains are None (and its
    exception lands in ``errors``); a unit whose chains ran alone after its batch failed lands in
    ``fell_back`` with the batch's exception (a network failing at some batch sizes is said, not hidden)."""
    try:
        return run(batch)
    except Exception as exc:  # noqa: BLE001 - isolate the failing unit
        if is_out_of_memory(exc):
            raise
        first = exc
    parts = [[c for c in batch if c.unit_pos == p] for p in dict.fromkeys(c.unit_pos for c in batch)]
    if len(parts) == 1:  # one unit: its failure is known, no re-run
        errors[batch[0].unit_pos] = first
        return [None] * len(batch)
    out: list[ChainResult | None] = []
    for part in parts:
        try:
            out.extend(run(part))
        except Exception as exc:  # noqa: BLE001
            errors[part[0].unit_pos] = exc
            out.extend([None] * len(part))
        else:
            if fell_back is not None:
                fell_back[part[0].unit_pos] = first
    return out
