"""Plan: (layer, units) selections -> deterministic shards, the unit of scheduling and of resume."""

from __future__ import annotations

from dataclasses import dataclass

from atlas.errors import ConfigError
from atlas.store.manifest import check_name


@dataclass(frozen=True)
class Shard:
    id: str  # deterministic: "<layer>-<index>"; names its marker and (with an attempt tag) its files
    layer: str
    units: tuple[int, ...]


def plan_shards(layer_units: dict[str, list[int]], units_per_shard: int) -> list[Shard]:
    """Split each layer's unit list into consecutive shards of ``units_per_shard`` units. A layer's name
    names its partition folder and shard files, so one that cannot (``check_name``) is refused here, before
    any work, not when its first shard is written; distinct names give distinct shard ids."""
    shards = []
    for layer, units in layer_units.items():
        try:
            check_name("layer", layer)
        except ValueError:
            raise ConfigError(
                f"layers: the layer {layer!r} cannot name the run's files (letters, digits and '._+-', "
                "starting with a letter, digit or '_'); select it by another name, or rename the module"
            ) from None
        for i, start in enumerate(range(0, len(units), units_per_shard)):
            chunk = tuple(units[start : start + units_per_shard])
            shards.append(Shard(f"{layer}-{i:05d}", layer, chunk))
    return shards
