"""Batching: an out-of-memory error halves the batch, keeping whole units when the chains are coupled."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from atlas.sampling.batches import run_batches

pytestmark = pytest.mark.unit


@dataclass(frozen=True)
class Todo:
    unit_pos: int
    chain: int


class Rows:
    def __init__(self):
        self.errors: dict[int, BaseException] = {}
        self.fell_back: dict[int, BaseException] = {}
        self.added: list[list[Todo]] = []

    def add(self, batch, out, remaining):
        self.added.append(batch)
        return 0


def run_with_memory_for(limit: int, seen: list[int]):
    def run(batch):
        seen.append(len(batch))
        if len(batch) > limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return [None] * len(batch)

    return run


@pytest.mark.parametrize("granule, expected", [(1, 5), (4, 4)])
def test_out_of_memory_halves_the_batch_in_whole_units(monkeypatch, granule, expected):
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    todo = [Todo(u, c) for u in range(6) for c in range(4)]  # 6 units x 4 chains
    rows, seen = Rows(), []
    size = run_batches(todo, 20, run_with_memory_for(6, seen), rows, granule=granule)
    assert size == expected  # 20 -> 10 -> 5 alone; 20 -> 8 -> 4 in whole units of 4
    assert [c for b in rows.added for c in b] == todo  # every chain once, in order
    if granule > 1:
        for batch in rows.added:  # no unit split across batches
            units = {c.unit_pos for c in batch}
            assert all(sum(c.unit_pos == u for c in batch) == granule for u in units)


def test_a_cudnn_allocation_failure_halves_the_batch_as_out_of_memory_does(monkeypatch):
    """cuDNN's autotuner (compute.cudnn_benchmark, on by default on CUDA) can fail under memory pressure
    with a RuntimeError, not torch's OutOfMemoryError: it must halve the batch, not run units alone."""
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    todo = [Todo(u, c) for u in range(4) for c in range(2)]

    def run(batch):
        if len(batch) > 2:
            raise RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED")
        return [None] * len(batch)

    rows = Rows()
    assert run_batches(todo, 8, run, rows) == 2
    assert rows.fell_back == {} and rows.errors == {}
    assert [c for b in rows.added for c in b] == todo


def test_out_of_memory_at_one_granule_is_raised():
    todo = [Todo(0, c) for c in range(4)]
    with pytest.raises(torch.cuda.OutOfMemoryError):
        run_batches(todo, 4, run_with_memory_for(3, []), Rows(), granule=4)


def test_a_batch_that_fails_as_a_whole_reruns_its_units_alone_and_says_so():
    """A network that raises on batches of more than 2 chains: every unit's chains succeed alone, and each
    unit is listed with the batch's error (its note), so the fallback is not silent."""
    todo = [Todo(u, c) for u in range(3) for c in range(2)]  # 3 units x 2 chains

    def run(batch):
        if len(batch) > 2:
            raise ValueError("expected a batch of at most 2")
        return [object()] * len(batch)

    rows = Rows()
    run_batches(todo, 6, run, rows)
    assert rows.errors == {}
    assert set(rows.fell_back) == {0, 1, 2}
    assert all(str(e) == "expected a batch of at most 2" for e in rows.fell_back.values())
    fine = Rows()
    run_batches(todo, 2, run, fine)  # batches the network takes: nothing to say
    assert fine.fell_back == {} and fine.errors == {}
