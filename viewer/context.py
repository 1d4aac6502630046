"""What every page receives: the open run and helpers (no Streamlit state in here)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from atlas.store.location import Location


@dataclass
class Context:
    conn: Any  # sandboxed DuckDB connection (atlas.store.catalog.open_run)
    run_dir: Location  # the run (local directory or object-store prefix); .name, .uri, .parent()
    info: dict[str, Any]  # the run table (manifest basics, parsed config)
    layers: list[tuple[str, int]]  # (layer, units) in config order
    siblings: list[Location] = field(default_factory=list)  # other runs next to this one
    open_other: Callable[[Location], Any] | None = None  # connection to a sibling run
    multi_run: bool = False
    unit_ids: Callable[[str], list[int]] | None = None  # sorted unit ids of a layer (cached per refresh)
    manifest: dict[str, Any] = field(default_factory=dict)  # run.json ({} when it does not read)
    composites: dict[str, int] = field(default_factory=dict)  # layer -> its composite objectives
    pages: dict[str, Any] = field(default_factory=dict)  # page name -> its st.Page (st.page_link's target)

    def ids(self, layer: str) -> list[int]:
        if self.unit_ids is not None:
            return self.unit_ids(layer)
        from viewer import data

        return data.unit_ids(self.conn, layer)

    @property
    def layer_names(self) -> list[str]:
        return [name for name, _ in self.layers]

    @property
    def unwritten_layers(self) -> list[str]:
        """The layers run.json plans that no completed shard holds yet (in the run's order)."""
        planned = [str(e.get("name")) for e in self.manifest.get("layers") or [] if isinstance(e, dict)]
        return [name for name in planned if name not in self.layer_names]

    def size_text(self, layer: str) -> str:
        """ "10 units", or with composites counted apart: "10 units + 4 composites"."""
        n, k = dict(self.layers).get(layer, 0), self.composites.get(layer, 0)
        own = f"{n - k:,} unit{'' if n - k == 1 else 's'}"
        return f"{own} + {k} composite{'' if k == 1 else 's'}" if k else own
