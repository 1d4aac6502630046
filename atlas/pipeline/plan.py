"""Plan: (layer, units) selections -> deterministic shards, the unit of scheduling and of resume."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Shard:
    id: str  # deterministic: "<layer>-<index>"; names its Parquet files and its completion marker
    layer: str
    units: tuple[int, ...]


def shard_prefix(layer: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", layer)


def plan_shards(layer_units: dict[str, list[int]], units_per_shard: int) -> list[Shard]:
    """Split each layer's unit list into consecutive shards of ``units_per_shard`` units."""
    shards = []
    for layer, units in layer_units.items():
        for i, start in enumerate(range(0, len(units), units_per_shard)):
            chunk = tuple(units[start : start + units_per_shard])
            shards.append(Shard(f"{shard_prefix(layer)}-{i:05d}", layer, chunk))
    return shards
