"""The one chain loop shared by every method (DGN-AM Eq. 1, PPGN-h Eq. 11, pixel ascent).

Usage::

    results = run_chains(sampler, readout, objective, units, start, gens, steps=200, record_every=10,
                         setup=setup, meta=[(chain, seed, start_label), ...])

One forward/backward pass serves the whole batch; chain b maximizes its own unit ``units[b]``::

    img   = param.image(state)                        # (B, 3, H, W) rgb01        (G(h) decoded, or pixels)
    acts  = probe(encode(view(img)))                  # {layer: (B, U) | (B, C, H', W')}, stops early
    v     = layer_values(acts[layer], units)          # (B, U) layer vector at each unit's position
    f     = objective(v, index) - penalty(img)        # (B,)
    g     = d sum_b f_b / d state                     # (B, *S): input gradient only, parameters frozen
    state = sampler.update(state, g, R(h) - h, t)     # Eq. 1 / Eq. 11 / pixel step

A chain whose picture, objective, gradient or state becomes NaN/Inf is frozen at its last finite state and
flagged ``diverged``; the rest of the batch goes on. Every random draw uses the chain's own generator, so a
chain's result does not depend on the batch it runs in.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from atlas.models.probes import LayerProbe
from atlas.models.spaces import as_stored
from atlas.sampling.compute import ComputeSetup
from atlas.sampling.concepts import path_pattern
from atlas.sampling.ensemble import TargetEnsemble
from atlas.sampling.manifold import encode_code
from atlas.sampling.objectives import Objective, diversity_features, diversity_penalty, layer_values
from atlas.sampling.results import ChainResult
from atlas.sampling.samplers import Sampler
from atlas.sampling.stats import ChainTracker, finite_rows, per_chain_norm
from atlas.sampling.units import Unit


@dataclass
class TargetReadout:
    """How the loop reads the target network."""

    encode: Callable[[torch.Tensor], torch.Tensor]  # rgb01 (B, 3, H, W) -> target input (B, 3, S, S)
    probe: LayerProbe  # the unit layer (+ the prior's code layer); stops after the deepest
    final_probe: LayerProbe  # the unit layer (+ the facet-feature layer), for the last picture
    layer: str
    facet_layer: str | None = None
    path_layers: tuple[str, ...] = ()  # earlier layers read on the last picture (path similarity, issue 16)
    code_layer: str | None = None  # read on the last picture: its code E(x) (on-manifold score, issue 16)
    code_encoder: nn.Module | None = None  # the code layer's activations -> G's code (subspace generators)
    diversity_layer: str | None = None  # read every step: the diversity term's features (issue 17)
    diversity: float = 0.0  # its weight (sampler.diversity)
    seen: Callable[[torch.Tensor], torch.Tensor] = lambda rgb01: rgb01  # what is kept: ImageSpace.seen
    # a separate encoder (models.encoder): rgb01 -> its code layer's activations, stored in acts under
    # code_key (the joint prior's and code_layer's name for it); None: the target's own pass holds the code
    code_reader: Callable[[torch.Tensor], torch.Tensor] | None = None
    code_key: str | None = None
    code_every_step: bool = False  # the prior reads the code at every step (PPGN-h, prior: joint)
    ensemble: TargetEnsemble | None = None  # more targets whose objective joins T's (output layers)

    def climbed(
        self, values: Tensor, img: Tensor, units: list[Unit], objective: Objective, index: Tensor
    ) -> Tensor:
        """(B,) the objective the chains climb and rank their pictures by, from T's unit-layer ``values``
        (B, U) on ``img`` (B, 3, H, W) rgb01: T's own, or the ensemble's (``ensemble.py``), whose members
        read the picture as T reads and keeps it (``seen``: a crop's border reaches no unit of T)."""
        if self.ensemble is None:
            return objective(values, index)
        return self.ensemble.objective(values, self.seen(img), units, objective, index)

    def with_code(self, acts: dict[str, Tensor], img: Tensor, final: bool) -> dict[str, Tensor]:
        """``acts`` plus the encoder's code of ``img`` (B, 3, H, W) where the step or the last readout needs
        it; ``acts`` itself when the target's own pass reads the code."""
        if self.code_reader is None or self.code_key is None or not (self.code_every_step or final):
            return acts
        return {**acts, self.code_key: self.code_reader(img)}


def run_chains(
    sampler: Sampler,
    readout: TargetReadout,
    objective: Objective,
    units: list[Unit],
    start: torch.Tensor,
    gens: list[torch.Generator],
    steps: int,
    record_every: int,
    setup: ComputeSetup,
    meta: list[tuple[int, int, str]],
    stop_at: torch.Tensor | None = None,
) -> list[ChainResult]:
    """Run B chains for ``steps`` updates; start: (B, *S) float32; meta[b] = (chain, seed, start label).

    ``stop_at`` (B,): chain b stops moving once its unit's activation reaches ``stop_at[b]`` (inf: never);
    its state, picture and best record stay those of the step that reached it. Once every chain of the
    batch has stopped (or diverged) the loop goes straight to its last step: no forward pass is spent on
    pictures that can no longer change."""
    t0 = time.perf_counter()
    b = start.shape[0]
    device = start.device
    index = torch.tensor([u.index for u in units], dtype=torch.long, device=device)  # (B,)
    tracker = ChainTracker(b, record_every, device)
    state = start.detach().float().clone()
    sampler.begin(state)  # per-batch optimizer state (Adam moments, reference features)

    t = 0
    while t <= steps:
        final = t == steps
        state = state.detach().requires_grad_(not final)
        with torch.set_grad_enabled(not final), setup.autocast():
            img = sampler.param.image(state)  # (B, 3, H, W)
            seen = img if final else sampler.view(img, t, gens)
            acts = (readout.final_probe if final else readout.probe)(setup.to_input(readout.encode(seen)))
            acts = readout.with_code(acts, img, final)
            values = layer_values(acts[readout.layer], units).float()  # (B, U)
            f = readout.climbed(values, seen, units, objective, index)  # (B,)
            pen = None if final else sampler.penalty(img)
            total = f - pen if pen is not None else f
            if not final and readout.diversity_layer is not None:  # Lucid's diversity, per unit's chains
                feats = diversity_features(acts[readout.diversity_layer])
                total = total - readout.diversity * diversity_penalty(feats, index)
        if not final and sampler.views_randomly:  # T climbed a random view: read the picture itself
            values_kept, f_kept = _read_picture(readout, setup, img, units, objective, index)
        else:
            values_kept, f_kept = values, f
        read = objective.readout(values_kept, index)
        bad = ~finite_rows(img) | ~torch.isfinite(f.detach())
        tracker.diverge(bad, t)
        tracker.observe(t, readout.seen(img), read, f_kept)
        if stop_at is not None:  # natural range reached: this state is the chain's picture from now on
            tracker.stop(read["activation"].detach().float() >= stop_at, t)

        grad = residual = None
        if not final:
            alive = ~tracker.diverged
            # NaN rows must not poison the summed objective's graph: mask them out of the sum.
            grad = torch.autograd.grad(torch.where(alive, total, torch.zeros_like(total)).sum(), state)[
                0
            ].float()
            if sampler.prior is not None:
                residual = sampler.prior.residual(state.detach(), acts)
            tracker.diverge(~finite_rows(grad), t)
        if t % record_every == 0 or final:
            tracker.record(
                t,
                read,
                per_chain_norm(state, b, device),
                per_chain_norm(residual, b, device),
                per_chain_norm(grad, b, device),
                readout.seen(img),
            )
        if sampler.snapshot_every and t > 0 and t % sampler.snapshot_every == 0:
            keep = read["log_prob"].exp() > sampler.snapshot_threshold
            tracker.snapshot(t, readout.seen(img), read, keep)
        if final:
            break

        state = _next_state(sampler, state, grad, residual, t, steps, gens, tracker)
        # every chain stopped (stop_at) or diverged: their states stay, so the steps left would only repeat
        # them; the last step reads and records the pictures once
        t = steps if bool((tracker.stopped | tracker.diverged).all()) else t + 1

    seconds = (time.perf_counter() - t0) / max(b, 1)
    values = read_kept_as_stored(tracker, readout, setup, units, objective, index)
    return collect_results(tracker, meta, readout, acts, values, seconds)


def read_kept_as_stored(
    tracker: ChainTracker,
    readout: TargetReadout,
    setup: ComputeSetup,
    units: list[Unit],
    objective: Objective,
    index: torch.Tensor,
) -> torch.Tensor:
    """Read each chain's best and last pictures again as they are stored (rounded to their PNG's 8 bits) in
    float32, whatever the chain's precision, and keep those numbers in their records; returns the last
    pictures' unit-layer values (B, U). A user's own forward pass of a stored picture then gives its stored
    activation: bf16 readings differ from it by 1-3 % and tie between pictures (a user's trial). A forward
    pass of each kind (B pictures: the batch the chains ran in, which a network that takes only small
    batches was given), no gradient.

    A last picture that reads higher than the best one in float32 becomes the best: the chain picked its
    best on its own (bf16) readings, and gaps below their resolution left ``best`` under ``last`` in 7 of
    16 chains of a user's run."""
    assert tracker.best_img is not None and tracker.last_img is not None
    best_img, last_img = as_stored(tracker.best_img), as_stored(tracker.last_img)  # (B, 3, H, W)
    with torch.no_grad():
        best, last = (  # (B, U) each
            layer_values(readout.probe(setup.to_input(readout.encode(img)))[readout.layer], units).float()
            for img in (best_img, last_img)
        )
        f_last = readout.climbed(last, last_img, units, objective, index)
        higher = f_last > readout.climbed(best, best_img, units, objective, index)  # (B,)
    tracker.best_img = torch.where(higher.view(-1, 1, 1, 1), tracker.last_img, tracker.best_img)
    drawn = torch.where(tracker.stopped, tracker.stop_step, tracker.last_step)  # a stopped chain's picture
    tracker.best_step = torch.where(higher, drawn, tracker.best_step)  # is its stop step's, frozen since
    best = torch.where(higher.view(-1, 1), last, best)
    tracker.best_read, tracker.last_read = objective.readout(best, index), objective.readout(last, index)
    return last


def _read_picture(
    readout: TargetReadout,
    setup: ComputeSetup,
    img: torch.Tensor,
    units: list[Unit],
    objective: Objective,
    index: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The unit layer's values (B, U) and the objective (B,) on the picture as stored, not on the random
    view the step climbed (one forward pass, no gradient): the best picture, ``stop_at`` and the recorded
    activations then belong to the picture kept."""
    with torch.no_grad(), setup.autocast():
        acts = readout.probe(setup.to_input(readout.encode(img.detach())))
        values = layer_values(acts[readout.layer], units).float()
        return values, readout.climbed(values, img.detach(), units, objective, index)


def collect_results(
    tracker: ChainTracker,
    meta: list[tuple[int, int, str]],
    readout: TargetReadout,
    acts: dict[str, torch.Tensor],
    values: torch.Tensor,
    seconds: float,
) -> list[ChainResult]:
    """ChainResults from the tracker and the final readout pass (``acts`` of ``readout.final_probe``;
    values (B, U) of the unit layer): facet features, path patterns and codes of the last pictures."""
    features = None
    if readout.facet_layer is not None:
        features = acts[readout.facet_layer].detach().float().flatten(1).cpu()  # (B, F)
    paths = {name: path_pattern(acts[name]).cpu() for name in readout.path_layers}  # layer -> (B, C)
    out = _results(tracker, meta, values.detach().float().cpu(), features, seconds, paths)
    _attach_codes(out, acts, readout.code_layer, readout.code_encoder)
    return out


def _attach_codes(
    out: list[ChainResult],
    acts: dict[str, torch.Tensor],
    code_layer: str | None,
    encoder: nn.Module | None = None,
) -> None:
    """Each chain's last picture's code E(x), when the readout reads the code layer."""
    if code_layer is None:
        return
    codes = encode_code(acts[code_layer].detach(), encoder).cpu()  # (B, D)
    for i, res in enumerate(out):
        res.last_code = codes[i].clone()


@torch.no_grad()
def _next_state(
    sampler: Sampler,
    state: torch.Tensor,
    grad: torch.Tensor,
    residual: torch.Tensor | None,
    t: int,
    steps: int,
    gens: list[torch.Generator],
    tracker: ChainTracker,
) -> torch.Tensor:
    """The sampler's update (non-finite gradients zeroed; PPGN resets); diverged and stopped chains stay."""
    old = state.detach()
    safe_res = torch.nan_to_num(residual, nan=0.0, posinf=0.0, neginf=0.0) if residual is not None else None
    safe_grad = torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0)
    new = sampler.update(old, safe_grad, safe_res, t, steps, gens)
    if sampler.redraw is not None and sampler.reset_every and (t + 1) % sampler.reset_every == 0:
        new = sampler.redraw(gens)  # PPGN reset_every: fresh start states (B, *S)
    tracker.diverge(~finite_rows(new), t)
    frozen = (tracker.diverged | tracker.stopped).view(-1, *([1] * (new.dim() - 1)))
    return torch.where(frozen, torch.nan_to_num(old, nan=0.0, posinf=0.0, neginf=0.0), new)


def _results(
    tracker: ChainTracker,
    meta: list[tuple[int, int, str]],
    final_values: torch.Tensor,
    features: torch.Tensor | None,
    seconds: float,
    paths: dict[str, torch.Tensor],
) -> list[ChainResult]:
    """One ChainResult per chain; final_values (B, U) of the last picture, features (B, F) or None."""
    last, best, best_steps = tracker.records()
    diverged = tracker.diverged.cpu().tolist()
    stop_steps = tracker.stop_step.cpu().tolist()
    return [
        ChainResult(
            chain=chain,
            seed=seed,
            start=label,
            facet=-1,
            last=last[i],
            best=best[i],
            best_step=best_steps[i],
            stopped_step=stop_steps[i] if stop_steps[i] >= 0 else None,
            snapshots=tracker.snapshots[i],
            trajectory=tracker.rows[i],
            diverged=bool(diverged[i]),
            final_activations=final_values[i].clone(),
            seconds=seconds,
            features=features[i].clone() if features is not None else None,
            path_patterns={name: p[i].clone() for name, p in paths.items()},
        )
        for i, (chain, seed, label) in enumerate(meta)
    ]
