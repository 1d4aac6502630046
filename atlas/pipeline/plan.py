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
    """Split each layer's unit list into consecutive shards of ``units_per_shard`` units (one group each:
    :func:`plan_groups`)."""
    return plan_groups({layer: [list(units)] for layer, units in layer_units.items()}, units_per_shard)


def plan_groups(layer_groups: dict[str, list[list[int]]], units_per_shard: int) -> list[Shard]:
    """Split each group of each layer's units into consecutive shards of ``units_per_shard`` units, the
    shards of a layer numbered on across its groups (a run's first units, then each group a later config
    added: :func:`unit_groups`). A layer's name names its partition folder and shard files, so one that
    cannot (``check_name``) is refused here, before any work, not when its first shard is written;
    distinct names give distinct shard ids."""
    shards = []
    for layer, groups in layer_groups.items():
        try:
            check_name("layer", layer)
        except ValueError:
            raise ConfigError(
                f"layers: the layer {layer!r} cannot name the run's files (letters, digits and '._+-', "
                "starting with a letter, digit or '_'); select it by another name, or rename the module"
            ) from None
        chunks = [g[i : i + units_per_shard] for g in groups for i in range(0, len(g), units_per_shard)]
        shards += [Shard(f"{layer}-{i:05d}", layer, tuple(chunk)) for i, chunk in enumerate(chunks)]
    return shards


def unit_groups(held: list[list[int]] | None, units: list[int]) -> list[list[int]]:
    """A layer's unit groups when a config selects ``units``: the groups the run holds (``held``, its
    run.json's ``unit_groups``), then the selected units it does not hold yet as one more group, so the
    held shards keep their cut when a layer's selection grows. A selection that leaves out held units
    (or a run that records no groups) gives ``[units]``: the run's manifest check then refuses it as a
    changed layer."""
    have = {u for group in held or [] for u in group}
    if not held or not have <= set(units):
        return [list(units)]
    more = [u for u in units if u not in have]
    return [*held, more] if more else [list(g) for g in held]
