"""What the target sees in the real images: per-layer unit values, codes at the code layer, facet features.

Usage::

    feats = RealFeatures(real, nets, setup, code_layer="fc6", spatial="center")
    feats.load("fc8", facet_layer="fc7")         # one batched pass (cached per layer)
    feats.values("fc8")                          # (N, U) each unit's value on each image
    feats.codes                                  # (N, D) G's code of each image (the code layer), or None
    feats.facet_features                         # (N, F) features of the facet layer, or None
    idx, vals = feats.top("fc8", unit=3, k=9)    # the unit's top real images, highest first

Facet-seeded starts cluster the facet features of a unit's top images and start from their codes; dataset
examples (``real_topk``) and ``sampler.stop_at`` read the values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import torch
from torch import nn

from atlas.map_cells import cell_of
from atlas.sampling.compute import ComputeSetup
from atlas.sampling.concepts import (
    PATH_TOP_K,
    ConceptSet,
    Dissection,
    PathReference,
    UnitLabel,
    dissect_units,
    label_units,
    located,
    natural_percentile,
    path_pattern,
    path_reference,
)
from atlas.sampling.facets import top_real
from atlas.sampling.manifold import encode_code, reconstruction_error
from atlas.sampling.nets import EngineNets
from atlas.sampling.objectives import layer_values, variant
from atlas.sampling.real import RealImagesLike
from atlas.sampling.units import Spatial, center_of, make_unit


class RealFeatures:
    def __init__(
        self,
        real: RealImagesLike,
        nets: EngineNets,
        setup: ComputeSetup,
        code_layer: str | None,
        spatial: Spatial,
        batch: int = 256,
        dissect: bool = True,
        code_encoder: nn.Module | None = None,
        code_reader: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        """``dissect``: Network Dissection of conv layers when the concepts have masks (the truth columns).
        ``code_encoder``: the code layer's activations -> G's code (a subspace generator's); else flat.
        ``code_reader``: rgb01 -> the code layer's activations from a separate encoder (``models.encoder``,
        ``EngineNets.code_reader``); None: the target's own pass reads ``code_layer``."""
        # float32 whatever the chains' precision: the dataset examples are ranked, stored and compared on
        # the numbers a user's own forward pass of their files gives (bf16 readings were 0.5-3 % off and
        # tied, and 2 of 7 units of a user's run showed other top images than float32 ranks first)
        self.real, self.nets, self.setup = real, nets, replace(setup, dtype=None)
        self.code_layer, self.spatial, self.batch = code_layer, spatial, batch
        self.code_encoder, self.code_reader = code_encoder, code_reader
        self.dissect = dissect
        self._values: dict[str, torch.Tensor] = {}  # layer -> (N, U)
        self._sorted: dict[str, torch.Tensor] = {}  # layer -> (U, N) each unit's values, ascending
        self._labels: dict[str, list[UnitLabel]] = {}  # layer -> one label per unit
        self._dissections: dict[str, list[Dissection]] = {}  # conv layer -> Network Dissection per unit
        self._composites: dict[str, torch.Tensor | None] = {}  # layer -> (U, K) composite weights
        self._composite_kind: dict[str, str] = {}  # layer -> the objective variant its composites sum
        self._extended: dict[str, torch.Tensor] = {}  # layer -> (N, U + K) values with composites
        self._scores: dict[str, torch.Tensor] = {}  # layer -> (N, U + K) what top() ranks by
        self.codes: torch.Tensor | None = None  # (N, D)
        self.facet_features: torch.Tensor | None = None  # (N, F)
        self.patterns: dict[str, torch.Tensor] = {}  # path layer -> (N, C) activation patterns
        self._recon: torch.Tensor | None = None  # (N,) sorted errors of G redrawing each image from its code

    @property
    def images(self) -> torch.Tensor:
        return self.real.images  # (N, 3, H, W) float rgb01

    def name(self, index: int) -> str | None:
        """Real image ``index``'s file inside a user's folder (None for sets without files: the toy world)."""
        names = getattr(self.real, "names", None)
        return names[index] if names and 0 <= index < len(names) else None

    def source_index(self, index: int) -> int:
        """Real image ``index``'s position in the whole set it was sampled from (``facets.real_limit``)."""
        kept = getattr(self.real, "source_index", None)
        return kept[index] if kept is not None else index

    def values(self, layer: str) -> torch.Tensor | None:
        """(N, U [+ K]) the layer's unit values (at the units' position), then its composite objectives'
        raw weighted sums (``set_composites``); None before ``load(layer)``."""
        return self._all(layer) if layer in self._values else None

    def set_composites(self, layer: str, weights: torch.Tensor | None, kind: str = "raw") -> None:
        """Composite objectives of ``layer`` (``objectives.Objective.weights``: (U, K)) become units U ..
        U + K - 1 of its values: their natural values, percentiles, top images and labels. ``kind``: the
        objective variant they sum (``Objective.kind``), which ranks their top images (``top``)."""
        old = self._composites.get(layer)
        same = self._composite_kind.get(layer, "raw") == kind and (
            (old is None and weights is None)
            or (
                old is not None
                and weights is not None
                and old.shape == weights.shape
                and torch.equal(old, weights)
            )
        )
        if same:
            return
        self._composites[layer] = weights.detach().float().cpu() if weights is not None else None
        self._composite_kind[layer] = kind
        for cache in (self._extended, self._scores, self._sorted, self._labels):
            cache.pop(layer, None)

    def _all(self, layer: str) -> torch.Tensor:
        """(N, U + K) values with the composite columns (cached)."""
        w = self._composites.get(layer)
        if w is None or w.shape[1] == 0:
            return self._values[layer]
        if layer not in self._extended:
            base = self._values[layer]
            self._extended[layer] = torch.cat([base, base.float() @ w.to(base.device)], dim=1)
        return self._extended[layer]

    def top(self, layer: str, unit: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(indices (k,), values (k,)) of the unit's top k real images, highest first: ranked by what the
        unit's chains maximize (``_score``), valued as ``values`` (a composite: its raw weighted sum)."""
        idx, _ = top_real(self._score(layer), unit, k)
        return idx, self._all(layer)[idx, unit].float()

    def _score(self, layer: str) -> torch.Tensor:
        """(N, U + K) what ranks the top images: the layer's own values, then each composite's weighted sum
        of its objective variant g (Eq. 2 of Nguyen et al. 2016 at a real image): a ``log_softmax`` pair
        ``a + b`` scores log p(a) + log p(b), highest on pictures of both, where the raw sum is highest on
        one object halfway between the two classes."""
        w = self._composites.get(layer)
        kind = self._composite_kind.get(layer, "raw")
        if w is None or w.shape[1] == 0 or kind == "raw":
            return self._all(layer)
        if layer not in self._scores:
            base = self._values[layer].float()  # (N, U)
            g = variant(base, kind)  # type: ignore[arg-type]
            self._scores[layer] = torch.cat([base, g @ w.to(base.device)], dim=1)
        return self._scores[layer]

    @property
    def concepts(self) -> ConceptSet | None:
        """Ground-truth concepts of the images (toy world; a folder with one subfolder per concept)."""
        return getattr(self.real, "concepts", None)

    def unit_label(self, layer: str, unit: int) -> UnitLabel | None:
        """The unit's best concept on these images (``concepts.label_units``); None without concepts.
        Hidden units no image activates are silent (no label); output units are never silent."""
        if self.concepts is None or layer not in self._values:
            return None
        if layer not in self._labels:
            values = self._all(layer)  # (N, U [+ K])
            silent = None if layer == self.nets.output_layer else values.max(0).values <= 0
            cell = self.cell(layer)
            concepts = self.concepts if cell is None else located(self.concepts, cell)
            labels = [replace(lab, cell=cell) for lab in label_units(values, concepts, silent=silent)]
            dissected = self._dissections.get(layer)
            if dissected is not None:  # the layer's own units (composites have no single map)
                n = len(dissected)
                own = [replace(lab, dissection=d) for lab, d in zip(labels[:n], dissected, strict=True)]
                labels = own + labels[n:]
            self._labels[layer] = labels
        return self._labels[layer][unit]

    def cell(self, layer: str) -> tuple[int, int, int, int] | None:
        """The image block a conv layer's units are read at (``spatial="center"``, ``map_cells.cell_of``)
        when the concepts have masks, so their labels include place-bound concepts; None otherwise."""
        if self.concepts is None or self.concepts.masks is None or self.spatial != "center":
            return None
        shape = self.nets.layer_shape(layer)
        if len(shape) != 3:
            return None
        return cell_of(center_of(shape), (shape[1], shape[2]), tuple(self.concepts.masks.shape[1:]))

    def percentile(self, layer: str, unit: int, value: float) -> float:
        """Fraction of the images whose value for ``unit`` is below ``value`` (ties half)."""
        if layer not in self._sorted:
            self._sorted[layer] = torch.sort(self._all(layer).T.contiguous(), dim=1).values
        return natural_percentile(self._sorted[layer][unit], value)

    def natural_maximum(self, layer: str, units: list[int]) -> torch.Tensor:
        """(B,) each listed unit's highest value on the real images; inf for a unit no image activates
        (``sampler.stop_at`` never stops it)."""
        top = self._all(layer).max(0).values.float()  # (U + K,)
        top = torch.where(top > 0, top, torch.full_like(top, float("inf")))
        return top[torch.tensor(units, device=top.device)]

    def manifold_percentile(self, error: float) -> float:
        """Share of the images G redraws from their codes *worse* than ``error`` (sampling.manifold)."""
        if self._recon is None:
            assert self.codes is not None
            errors = [
                reconstruction_error(
                    self.nets, self.images[i : i + self.batch], self.codes[i : i + self.batch]
                )
                for i in range(0, self.images.shape[0], self.batch)
            ]
            self._recon = torch.sort(torch.cat(errors)).values
        return 1.0 - natural_percentile(self._recon, error)

    def path_reference(self, layer: str, unit: int, path_layers: list[str]) -> PathReference | None:
        """The unit's natural path: its top PATH_TOP_K images' patterns at ``path_layers`` (loaded ones)."""
        have = [name for name in path_layers if name in self.patterns]
        if not have or self.values(layer) is None:
            return None
        idx, _ = self.top(layer, unit, PATH_TOP_K)
        top = {name: self.patterns[name][idx.cpu()] for name in have}
        return path_reference(top, {name: self.patterns[name] for name in have})

    @torch.no_grad()
    def load(self, layer: str, facet_layer: str | None = None, path_layers: list[str] | tuple = ()) -> None:
        """One pass over the images: ``layer``'s values, and the codes / facet features / path-layer patterns
        while missing."""
        paths = [name for name in path_layers if name not in self.patterns]
        if layer in self._values and not paths:
            return
        want_codes = bool(self.code_layer) and self.codes is None
        want_facet = facet_layer is not None and self.facet_features is None
        in_target = want_codes and self.code_reader is None
        extra = ([self.code_layer] if in_target else []) + ([facet_layer] if want_facet else []) + paths
        names = list(dict.fromkeys([layer, *extra]))
        probe = self.nets.probes(names)[0]  # type: ignore[list-item]
        shape = self.nets.layer_shape(layer)
        dummy = [make_unit(layer, 0, shape, layer == self.nets.output_layer, self.spatial)]
        dissect = (
            self.dissect and self.concepts is not None and self.concepts.masks is not None and len(shape) == 3
        )
        vals, code_rows, feat_rows, maps = [], [], [], []
        path_rows: dict[str, list[torch.Tensor]] = {name: [] for name in paths}
        with self.setup.autocast():
            for i in range(0, self.images.shape[0], self.batch):
                x = self.images[i : i + self.batch].to(self.nets.device).float()  # (b, 3, H, W)
                acts = probe(self.setup.to_input(self.nets.space.encode(x)))
                vals.append(layer_values(acts[layer], dummy * x.shape[0]).float())  # (b, U)
                if dissect:
                    maps.append(acts[layer].float().cpu())  # (b, U, h, w)
                if want_codes:
                    held = acts[self.code_layer] if in_target else self.code_reader(x)  # type: ignore[misc]
                    code_rows.append(encode_code(held, self.code_encoder))  # (b, D)
                if want_facet:
                    feat_rows.append(acts[facet_layer].float().flatten(1))  # (b, F)
                for name in paths:
                    path_rows[name].append(path_pattern(acts[name]).cpu())  # (b, C)
        self._values[layer] = torch.cat(vals)
        if maps and self.concepts is not None:
            self._dissections[layer] = dissect_units(torch.cat(maps), self.concepts)
        if code_rows:
            self.codes = torch.cat(code_rows)
        if feat_rows:
            self.facet_features = torch.cat(feat_rows)
        self.patterns.update({name: torch.cat(rows) for name, rows in path_rows.items()})
