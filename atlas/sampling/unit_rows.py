"""One ``UnitResult`` per requested unit, built as its last chain finishes (or as its error).

Usage (inside ``Engine.map_units``)::

    rows = UnitRows(engine, "fc8", "output")
    rows.fail(pos, unit_index, exc)                       # a unit that never ran (e.g. index out of range)
    n_finished = rows.add(batch, chain_results, remaining={positions still queued})
    results = rows.in_order(len(units))

A finished unit's chains get their facets (``facets.assign_facets``) and the unit its dataset examples
(the top real images) and best values; a unit whose chains raised becomes a ``status="error"`` row.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from atlas.config.composites import Composite
from atlas.errors import first_line, raised_at
from atlas.models.spaces import to_uint8_images
from atlas.sampling.concepts import path_score
from atlas.sampling.facets import assign_facets
from atlas.sampling.manifold import reconstruction_error
from atlas.sampling.objectives import Objective
from atlas.sampling.results import ChainResult, UnitResult
from atlas.sampling.units import Unit

if TYPE_CHECKING:
    from atlas.sampling.engine import Engine


NO_GRADIENT = (
    "no gradient reached the unit in any chain (its pictures moved by the method's prior or regularizers "
    "only, not toward the unit): it is 0 around the starts behind a ReLU that sampler.relu_gradient cannot "
    "redirect (a functional F.relu), so try sampler.start_pool or name the layer before that ReLU"
)


AT_FLOOR = (
    "the composite only lowers units that are 0 on every picture its chains drew, the least a unit behind "
    "a ReLU can be: no picture lowers them further (for what lowers such a unit most, read the layer "
    "before its ReLU)"
)


def _at_floor(composite: Composite | None, chains: list[ChainResult]) -> bool:
    """Whether ``composite`` (``-3``, ``-3 - 5``) only lowers units and every chain's picture has them all
    at 0: the objective is at its top, not cut off (the unit's gradient is 0 because it cannot go lower)."""
    if composite is None or any(w > 0 for _u, w in composite.terms) or not chains:
        return False
    return all(t.get("activation") == 0 for c in chains for t in c.trajectory if "activation" in t)


def fell_back_note(exc: BaseException) -> str:
    """A unit's note when its batch raised and its chains then ran alone (their results are sound: chains do
    not interact); the same text for every unit of a cause, so the run's summary counts them together (no
    "; ": the summary splits a unit's notes there)."""
    return (
        f"the batch failed ({type(exc).__name__}: {first_line(exc).replace('; ', ', ')}) and the unit's "
        "chains ran alone: the network fails on some batches (a batch size, a mix of inputs), and a "
        "compute.batch_size it takes saves the reruns"
    )


def _no_gradient(chains: list[ChainResult]) -> bool:
    """Whether every recorded step of every chain had a zero gradient (gradient methods record
    ``grad_norm``, NaN on the final row; search methods none): the objective never moved the chains."""
    norms = [n for c in chains for t in c.trajectory if math.isfinite(n := t.get("grad_norm", math.nan))]
    return bool(norms) and all(n == 0 for n in norms)


class UnitRows:
    def __init__(self, engine: Engine, layer: str, kind: str, objective: Objective | None = None) -> None:
        self.engine, self.layer, self.kind = engine, layer, kind
        self.objective = objective if objective is not None else engine.objective  # describes the units
        self.done: dict[int, UnitResult] = {}  # position in the map_units call -> row
        self.errors: dict[int, BaseException] = {}  # position -> what its chains raised
        self.fell_back: dict[int, BaseException] = {}  # position -> what its batch raised (it ran alone then)
        self.real_error: BaseException | None = None  # the real-image pass failed: rows say so
        self._chains: dict[int, list[ChainResult]] = {}

    def fail(self, pos: int, index: int, exc: BaseException, unit: Unit | None = None) -> None:
        self.done[pos] = self._error_row(index, exc, unit)

    def add(self, batch: list[Any], results: list[ChainResult | None], remaining: set[int]) -> int:
        """Collect a batch's chain results (``batch``: items with ``unit_pos`` and ``unit``); build the rows
        of the units none of whose chains is still queued; -> how many units finished."""
        for ch, res in zip(batch, results, strict=True):
            if res is not None:
                self._chains.setdefault(ch.unit_pos, []).append(res)
        finished = {ch.unit_pos: ch.unit for ch in batch if ch.unit_pos not in remaining}
        for pos, unit in sorted(finished.items()):
            if pos in self.errors:
                self.fail(pos, unit.index, self.errors[pos], unit)
            else:
                self.done[pos] = row = self._unit_row(unit, self._chains.pop(pos, []))
                if pos in self.fell_back:
                    row.error = "; ".join(filter(None, [row.error, fell_back_note(self.fell_back[pos])]))
        return len(finished)

    def in_order(self, n: int) -> list[UnitResult]:
        return [self.done[p] for p in range(n) if p in self.done]

    def _unit_row(self, unit: Unit, chains: list[ChainResult]) -> UnitResult:
        eng = self.engine
        chains = sorted(chains, key=lambda c: c.chain)
        count = (
            assign_facets(chains, eng.facet_cfg.distance, eng.facet_cfg.max_facets)
            if eng.facet_cfg.enabled
            else 0
        )
        ok = [c for c in chains if not c.diverged] or chains
        # the unit's best picture: the chains' best with the highest activation; its log-prob and rank too
        # (the highest log-prob and lowest rank of any chain mixed pictures: 251 of 362 demo units)
        best = max(
            (c.best for c in ok if math.isfinite(c.best.activation)), key=lambda b: b.activation, default=None
        )
        real_topk, real_names = self._real_topk(unit)
        row = UnitResult(
            layer=self.layer,
            unit=unit.index,
            kind=self.kind,
            spatial=unit.spatial_label,
            objective=self.objective.describe(unit),
            composite=self._composite(unit.index),
            method=eng.method_text(self.layer),
            facet_count=count,
            chains=chains,
            real_topk=real_topk,
            real_names=real_names,
            best_activation=best.activation if best is not None else float("nan"),
            best_log_prob=best.log_prob if best is not None else float("nan"),
            best_rank=best.rank if best is not None else -1,
        )
        notes = []
        if self.real_error is not None:
            notes.append(f"real images unavailable: {type(self.real_error).__name__}: {self.real_error}")
        if chains and all(c.diverged for c in chains):
            cause = (
                "not one finite value of the unit on any picture the chains drew: does the network "
                "return NaN or inf for it? else check models.code_stats and the sampler's step size"
                if best is None
                else "check models.code_stats and the sampler's step size"
            )
            notes.append(
                f"all {len(chains)} chains diverged (a non-finite code, picture or objective); {cause}"
            )
            if best is None:  # not one finite picture before they did: the unit failed
                row.status = "error"
        if _no_gradient(chains):
            notes.append(AT_FLOOR if _at_floor(self.objective.composite(unit.index), chains) else NO_GRADIENT)
        row.error = "; ".join(notes) or None
        self._add_truth(row, unit)
        return row

    def _add_truth(self, row: UnitResult, unit: Unit) -> None:
        """The unit's concept label and each picture's natural percentile (needs the real images)."""
        real = self.engine.real
        if real is None or real.values(self.layer) is None or not self.engine.truth:
            return
        row.label = real.unit_label(self.layer, unit.index)
        ref = real.path_reference(self.layer, unit.index, self.engine.path_layers(self.layer))
        for c in row.chains:
            for rec in (c.last, c.best, *c.snapshots):
                rec.natural_percentile = real.percentile(self.layer, unit.index, rec.activation)
            if ref is not None and c.path_patterns:
                score = path_score(ref, c.path_patterns)
                c.last.path_z, c.last.path_similarity = score.z, score.similarity
                c.last.path_percentile = score.percentile
        self._add_manifold(row.chains)

    def _add_manifold(self, chains: list[ChainResult]) -> None:
        """Each last picture's on-manifold score: G's error redrawing it from its code, vs natural images'."""
        real, with_code = self.engine.real, [c for c in chains if c.last_code is not None]
        if real is None or real.codes is None or not with_code:
            return
        images = (
            torch.from_numpy(np.stack([c.last.image for c in with_code])).permute(0, 3, 1, 2).float() / 255
        )
        codes = torch.stack([c.last_code for c in with_code])  # type: ignore[misc]  # (K, D)
        errors = reconstruction_error(self.engine.nets, images, codes)  # (K,)
        for c, err in zip(with_code, errors.tolist(), strict=True):
            c.last.manifold_percentile = real.manifold_percentile(err)

    def _real_topk(self, unit: Unit) -> tuple[list[tuple[int, float, object]], dict[int, str]]:
        """The unit's top ``facets.top_k_real`` real images: [(index, activation, (H, W, 3) uint8)], and
        each one's file inside the user's folder (none for the toy world), by index; an index is the
        image's position in the whole set (``facets.real_limit`` samples it)."""
        k, real = self.engine.facet_cfg.top_k_real, self.engine.real
        if real is None or k <= 0 or real.values(self.layer) is None:
            return [], {}
        idx, vals = real.top(self.layer, unit.index, k)
        # a gray target's real images as the luminance it reads, as its pictures
        imgs = to_uint8_images(self.engine.nets.space.seen(real.images[idx.cpu()])).numpy()
        loaded = idx.tolist()
        places = [real.source_index(i) for i in loaded]  # in the whole set (facets.real_limit samples it)
        top = [(p, float(v), imgs[j]) for j, (p, v) in enumerate(zip(places, vals.tolist(), strict=True))]
        names = {p: real.name(i) for p, i in zip(places, loaded, strict=True)}
        return top, {p: n for p, n in names.items() if n is not None}

    def _composite(self, index: int) -> str | None:
        """Unit ``index``'s composite expression (``3 - 5``), None for the layer's own units."""
        comp = self.objective.composite(index)
        return comp.text if comp is not None else None

    def _error_row(self, index: int, exc: BaseException, unit: Unit | None) -> UnitResult:
        eng = self.engine
        loc = raised_at(exc)
        return UnitResult(
            layer=self.layer,
            unit=index,
            kind=self.kind,
            spatial=unit.spatial_label if unit else None,
            objective=self.objective.describe(unit)
            if unit
            else f"{eng.objective.kind}[{self.layer}:{index}]",
            composite=self._composite(index),
            method=eng.method_text(self.layer),
            facet_count=0,
            status="error",
            error=f"{type(exc).__name__}: {exc}{loc}",
        )
