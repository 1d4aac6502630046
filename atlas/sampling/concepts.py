"""Unit labels from labelled natural images: which concept does a unit detect, and how well?

Usage::

    concepts = ConceptSet(["class:hook", "colour:red"], members)   # members (N, C) bool over N images
    scores = auroc(values, concepts.members)                      # values (N, U) -> (U, C) AUROC
    labels = label_units(values, concepts)                         # one UnitLabel per unit

Each concept is scored as a detector of the unit: the area under the ROC curve of the unit's value on the
images with the concept (positives) against the images without it (negatives), the Mann-Whitney statistic
``AUROC = (sum of the positives' ranks - P (P + 1) / 2) / (P N_neg)`` with tied values sharing their average
rank (post-ReLU units are often 0 on many images). 1.0: every image with the concept drives the unit more
than every image without; 0.5: chance. A unit's label is its best concept when that scores at least
``LABEL_THRESHOLD`` (else "no label"), with the runner-up and the margin between them; concepts with fewer
than ``MIN_POSITIVES`` images are not scored.

Three rules keep labels from claiming more than the images show:

- **top consistency**: the label must also describe the unit's strongest responses: at least ``TOP_SHARE``
  of its top ``TOP_K`` images show it (``UnitLabel.top_share``). AUROC scores the whole ranking, a
  maximizing picture shows the top of it: a unit whose yellow rings rank high on average but whose top
  images are white rings is labelled by the best concept that passes both (``white ring``), or not at all;
- **parsimony**: a compound concept (``ConceptSet.parts``) — a conjunction ("red pill" = colour:red and
  class:pill) or a union ("class:ring|frame" = class:ring or class:frame; Mu & Andreas 2020's compositional
  explanations) — is the label only when it beats each of its own parts by more than ``PARSIMONY_MARGIN``;
  else its best part is (a unit that fires for every ring, for white ones a shade more, is a ring detector;
  one that fires for rings and frames alike is a ring-or-frame detector, not a ring detector). Every part
  must also hold ``PART_TOP_SHARE`` of the unit's top images (automatic for a conjunction that passes top
  consistency): an output unit for half disks that ranks pills above the other classes, but has only half
  disks at its top, is a half-disk detector. The runner-up is the best concept that is neither the label
  nor a compound containing it;
- **silence**: a unit that no image activates (``silent``: its maximum over the images <= 0, a hidden unit
  the ReLU after it keeps at zero on every natural image) gets no label, as Network Dissection leaves units
  that never fire unlabelled: the order of its negative pre-activations is not a concept the network uses.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

LABEL_THRESHOLD = 0.85  # AUROC of a unit's best concept below this: "no label"
DISSECTION_QUANTILE = 0.995  # Network Dissection: a conv unit is "on" where its map exceeds this quantile
DISSECTION_THRESHOLD = 0.04  # Network Dissection: a concept with a lower IoU is no label
WEAK_PERCENTILE = 0.99  # a picture driving its unit less than 1 % of natural images do is flagged "weak"
MIN_POSITIVES = 10  # concepts on fewer images are not scored (their AUROC is noise)
TOP_K = 20  # a unit's strongest responses: its top 20 images (1 % of the toy world's 2,000)
TOP_SHARE = 0.5  # a label must show in at least half of them
PART_TOP_SHARE = 0.1  # every part of a compound must hold this share (2 of 20) of the unit's top images
PARSIMONY_MARGIN = 0.02  # a compound must beat each of its parts by more than this AUROC (about one
# standard error of a 25-image concept's AUROC near 0.95) to be the label
TUNING_TOP = 10  # concepts kept per unit for its tuning chart


@dataclass(frozen=True)
class ConceptSet:
    names: list[str]  # C concept names, "kind:value" (class:hook, colour:red, pos:top-left, red hook, ...)
    members: torch.Tensor  # (N, C) bool, image n shows concept c
    masks: torch.Tensor | None = (
        None  # (N, H, W) bool, where image n shows its concepts (the object's pixels)
    )
    parts: dict[str, tuple[str, ...]] | None = None  # compound (conjunction or union) -> its atomic concepts
    localizable: tuple[str, ...] = ()  # concepts about the masked object itself (class, colour, ...): they
    # get a place-bound twin "<concept>@here" for conv units (``located``)

    def take(self, idx: list[int]) -> ConceptSet:
        """The concepts of the images at ``idx`` (each concept as defined on the whole set)."""
        i = torch.tensor(idx, dtype=torch.long)
        masks = None if self.masks is None else self.masks[i]
        return replace(self, members=self.members[i], masks=masks)

    def __post_init__(self) -> None:
        if self.members.dim() != 2 or self.members.shape[1] != len(self.names):
            shape = tuple(self.members.shape)
            raise ValueError(f"members {shape} do not fit {len(self.names)} concept names")
        if self.masks is not None and (self.masks.dim() != 3 or self.masks.shape[0] != self.members.shape[0]):
            raise ValueError(
                f"masks {tuple(self.masks.shape)} are not (N, H, W) for {self.members.shape[0]} images"
            )
        unknown = {p for ps in (self.parts or {}).values() for p in ps} - set(self.names)
        if unknown:
            raise ValueError(f"compound parts {sorted(unknown)} are not concepts of the set")
        if set(self.localizable) - set(self.names):
            raise ValueError(
                f"localizable {sorted(set(self.localizable) - set(self.names))} are not concepts"
            )

    def parts_of(self, name: str) -> tuple[str, ...]:
        """The atomic concepts of ``name`` (itself when it is not a compound)."""
        return (self.parts or {}).get(name, (name,))


@dataclass(frozen=True)
class Dissection:
    """A conv unit's Network Dissection result (Bau et al. 2017): its best concept by mask IoU."""

    label: str | None  # None: no concept reaches DISSECTION_THRESHOLD
    iou: float  # the best concept's IoU
    best: str | None  # the best concept even when below the threshold


@dataclass(frozen=True)
class UnitLabel:
    label: str | None  # None: no concept reaches LABEL_THRESHOLD
    score: float  # the best concept's AUROC
    runner_up: str | None
    margin: float  # best AUROC - runner-up AUROC
    best: str | None = None  # the best concept even when below the threshold
    tuning: tuple[
        tuple[str, float, float], ...
    ] = ()  # top TUNING_TOP (concept, AUROC, mean value), best first
    dissection: Dissection | None = None  # conv units with concept masks: Network Dissection's verdict
    top_share: float = float("nan")  # share of the unit's TOP_K images that show the label (or ``best``)
    cell: tuple[int, int, int, int] | None = None  # a conv unit's place in the image (``cell_of``): where
    # its place-bound concepts ("here:edge", "colour:red@here") are, in the probe images and in its pictures


def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """(N, U) -> (N, U) 1-based ranks of each column's values, ties sharing their average rank."""
    cols = values.detach().float().T.contiguous()  # (U, N)
    cols = torch.nan_to_num(cols, nan=float("-inf"))
    ordered, _ = torch.sort(cols, dim=1)
    below = torch.searchsorted(ordered, cols, right=False)  # values strictly smaller
    upto = torch.searchsorted(ordered, cols, right=True)  # values smaller or equal
    return ((below + upto + 1).float() / 2).T  # (N, U)


def auroc(values: torch.Tensor, members: torch.Tensor) -> torch.Tensor:
    """values (N, U), members (N, C) bool -> (U, C) AUROC of each unit as a detector of each concept
    (NaN where a concept has no positives or no negatives)."""
    ranks = average_ranks(values).double()  # (N, U)
    pos = members.double()  # (N, C)
    n_pos = pos.sum(0)  # (C,)
    n_neg = pos.shape[0] - n_pos
    rank_sum = ranks.T @ pos  # (U, C)
    u_stat = rank_sum - n_pos * (n_pos + 1) / 2
    out = u_stat / (n_pos * n_neg)
    return torch.where((n_pos > 0) & (n_neg > 0), out, torch.full_like(out, float("nan"))).float()


def label_units(
    values: torch.Tensor,
    concepts: ConceptSet,
    threshold: float = LABEL_THRESHOLD,
    min_positives: int = MIN_POSITIVES,
    silent: torch.Tensor | None = None,
    parsimony: float = PARSIMONY_MARGIN,
    top_share: float = TOP_SHARE,
    top_k: int = TOP_K,
) -> list[UnitLabel]:
    """One UnitLabel per unit (column of ``values`` (N, U)); ``silent`` (U,) bool: units no image activates
    (no label, their best concept kept). See the module docstring for the rules."""
    keep = concepts.members.sum(0) >= min_positives  # (C,)
    names = [n for n, k in zip(concepts.names, keep.tolist(), strict=True) if k]
    if not names:
        return [UnitLabel(None, float("nan"), None, float("nan"))] * values.shape[1]
    members = concepts.members[:, keep]  # (N, C')
    scores = torch.nan_to_num(auroc(values, members), nan=0.0)  # (U, C')
    means = torch.nan_to_num(values.detach().float()).T @ members.float() / members.sum(0).float()  # (U, C')
    top = torch.topk(scores, k=min(TUNING_TOP, len(names)), dim=1)
    strongest = torch.topk(torch.nan_to_num(values.detach().float(), nan=float("-inf")),
                           k=min(top_k, values.shape[0]), dim=0).indices  # (k, U)  # fmt: skip
    shares = members[strongest].float().mean(0)  # (U, C'): share of each unit's top images per concept
    column = {n: i for i, n in enumerate(names)}
    quiet = silent.tolist() if silent is not None else [False] * values.shape[1]
    out = []
    for u in range(values.shape[1]):
        idx, sc = top.indices[u].tolist(), top.values[u].tolist()
        tuning = tuple((names[i], s, float(means[u, i])) for i, s in zip(idx, sc, strict=True))
        first = _first_consistent(scores[u], shares[u], threshold, top_share, idx[0])
        su, sh = scores[u], shares[u]
        best, score = _parsimonious(names[first], float(su[first]), su, sh, column, concepts, parsimony)
        rival, rival_score = _runner_up(best, su, names, concepts)
        share = float(shares[u, column[best]])
        confident = score >= threshold and share >= top_share and not quiet[u]
        label = best if confident else None
        out.append(UnitLabel(label, score, rival, score - rival_score, best, tuning, top_share=share))
    return out


def _runner_up(
    best: str, scores: torch.Tensor, names: list[str], concepts: ConceptSet
) -> tuple[str | None, float]:
    """(concept, AUROC) of the best-scoring concept that is neither ``best`` nor a compound holding it,
    among all concepts (not only the tuning chart's top ones, which may all hold ``best``); scores (C',)."""
    for i in torch.argsort(scores, descending=True).tolist():
        if names[i] != best and best not in concepts.parts_of(names[i]):
            return names[i], float(scores[i])
    return None, 0.0


def _first_consistent(
    scores: torch.Tensor, shares: torch.Tensor, threshold: float, share: float, best: int
) -> int:
    """Index of the best-scoring concept that passes both the AUROC threshold and the top share; ``best``
    (the best by AUROC) when none does. scores, shares: (C',)."""
    ok = (shares >= share) & (scores >= threshold)
    return int(torch.where(ok, scores, torch.full_like(scores, -1.0)).argmax()) if bool(ok.any()) else best


def _parsimonious(
    best: str,
    score: float,
    scores: torch.Tensor,
    shares: torch.Tensor,
    column: dict[str, int],
    concepts: ConceptSet,
    margin: float,
) -> tuple[str, float]:
    """(concept, AUROC): ``best``, or its best-scoring part when that is within ``margin`` of it, or when a
    part holds less than PART_TOP_SHARE of the unit's top images (scores, shares: (C',))."""
    parts = [p for p in concepts.parts_of(best) if p != best and p in column]
    if not parts:
        return best, score
    present = [p for p in parts if float(shares[column[p]]) >= PART_TOP_SHARE]  # parts the top images show
    part = max(present or parts, key=lambda p: float(scores[column[p]]))
    part_score = float(scores[column[part]])
    return (part, part_score) if part_score >= score - margin or len(present) < len(parts) else (best, score)


def dissection_iou(
    maps: torch.Tensor, concepts: ConceptSet, quantile: float = DISSECTION_QUANTILE, chunk: int = 16
) -> torch.Tensor:
    """Network Dissection IoU (Bau et al. 2017, Eq. 1): maps (N, U, h, w) conv activation maps -> (U, C).

    Unit u is "on" where its map, upsampled (bilinear) to the masks' size, exceeds T_u, the ``quantile`` of
    its values over all images and positions; concept c covers image n's mask when the image shows c.
    IoU_uc = sum_n |on_u(n) & mask_c(n)| / sum_n |on_u(n) | mask_c(n)|. Needs ``concepts.masks``."""
    if concepts.masks is None:
        raise ValueError("Network Dissection needs concept masks")
    masks = concepts.masks.to(maps.device)  # (N, H, W)
    members = concepts.members.to(maps.device).float()  # (N, C)
    n, u = maps.shape[:2]
    flat = maps.detach().float().transpose(0, 1).reshape(u, -1)  # (U, N h w)
    k = max(1, min(flat.shape[1], round(quantile * flat.shape[1])))
    thresholds = flat.kthvalue(k, dim=1).values  # (U,)
    flat_masks = masks.flatten(1).float()  # (N, H W)
    mask_area = flat_masks.sum(1)  # (N,)
    rows = []
    for i in range(0, u, chunk):
        up = torch.nn.functional.interpolate(
            maps[:, i : i + chunk].detach().float(),
            size=masks.shape[1:],
            mode="bilinear",
            align_corners=False,
        )  # (N, k, H, W)
        on = (up > thresholds[i : i + chunk].view(1, -1, 1, 1)).flatten(2).float()  # (N, k, H W)
        inter = torch.einsum("nkp,np->nk", on, flat_masks)  # (N, k)
        area = on.sum(2)  # (N, k)
        both = inter.T @ members  # (k, C)
        union = area.sum(0)[:, None] + (mask_area @ members)[None] - both
        rows.append(torch.where(union > 0, both / union.clamp_min(1e-9), torch.zeros_like(both)))
    return torch.cat(rows)  # (U, C)


def dissect_units(
    maps: torch.Tensor,
    concepts: ConceptSet,
    threshold: float = DISSECTION_THRESHOLD,
    quantile: float = DISSECTION_QUANTILE,
) -> list[Dissection]:
    """One Dissection per unit of ``maps`` (N, U, h, w): the concept with the highest mask IoU."""
    iou = dissection_iou(maps, concepts, quantile)  # (U, C)
    best = iou.max(1)
    return [
        Dissection(concepts.names[c] if v >= threshold else None, v, concepts.names[c])
        for c, v in zip(best.indices.tolist(), best.values.tolist(), strict=True)
    ]


# ------------------------------------------------------------------------------- place-bound (conv units)
HERE = "@here"  # suffix of a place-bound concept: "colour:red@here" = a red object covers the unit's cell
HERE_OBJECT, HERE_INTERIOR, HERE_EDGE, HERE_BACKGROUND = (
    "here:object",
    "here:interior",
    "here:edge",
    "here:background",
)
HERE_PARTS = (HERE_OBJECT, HERE_INTERIOR, HERE_EDGE, HERE_BACKGROUND)
OBJECT_COVER = 0.5  # the object covers a cell when it holds at least half of the cell's pixels
INTERIOR_COVER = 0.95  # inside the object: (almost) every pixel of the cell
BACKGROUND_COVER = 0.05  # background: (almost) none


def place_kind(concept: str | None) -> str | None:
    """ "part" for a part at the cell (``here:edge``), "twin" for a place-bound twin (``colour:red@here``),
    None for any other concept."""
    if concept is None:
        return None
    return "part" if concept in HERE_PARTS else "twin" if concept.endswith(HERE) else None


def cell_coverage(masks: torch.Tensor, cell: tuple[int, int, int, int]) -> torch.Tensor:
    """masks (N, H, W) bool or [0, 1] -> (N,) the share of the cell's pixels that are the object's."""
    y0, y1, x0, x1 = cell
    return masks[:, y0:y1, x0:x1].float().mean((1, 2))


def here_parts(coverage: torch.Tensor) -> dict[str, torch.Tensor]:
    """(N,) cell coverage -> the part vocabulary at the cell, {here concept: (N,) bool}: ``here:object``
    (the object covers the cell), ``here:interior`` (the cell lies inside it), ``here:edge`` (its outline
    crosses the cell), ``here:background`` (no object there)."""
    return {
        HERE_OBJECT: coverage >= OBJECT_COVER,
        HERE_INTERIOR: coverage >= INTERIOR_COVER,
        HERE_EDGE: (coverage > BACKGROUND_COVER) & (coverage < INTERIOR_COVER),
        HERE_BACKGROUND: coverage <= BACKGROUND_COVER,
    }


def located(concepts: ConceptSet, cell: tuple[int, int, int, int]) -> ConceptSet:
    """``concepts`` plus what is at a conv unit's cell (needs masks): the part vocabulary ``here:*``
    (:func:`here_parts`) and, for each localizable concept c, ``c@here`` = the image shows c and its object
    covers the cell. Its parts, for the parsimony rule: c, ``here:object`` and the twins of c's own parts
    (``white ring@here``: also ``colour:white@here`` and ``class:ring@here``; a union
    ``class:ring|frame@here`` must so beat ``class:ring@here`` and ``class:frame@here``, each holding some
    of the unit's top images, as an image-level union its alternatives). A unit read at one
    place of its map sees part of the image; "a red object here" is what it can detect, "a red object
    somewhere" is not (Bau et al. 2017 score conv units against masks for the same reason)."""
    if concepts.masks is None:
        raise ValueError("place-bound concepts need concept masks")
    parts = here_parts(cell_coverage(concepts.masks, cell))
    names, cols, compound = list(concepts.names), [concepts.members], dict(concepts.parts or {})
    names += list(parts)
    cols.append(torch.stack(list(parts.values()), dim=1))
    index = {n: i for i, n in enumerate(concepts.names)}
    here = [n for n in concepts.localizable if n in index]
    if here:
        cols.append(concepts.members[:, [index[n] for n in here]] & parts[HERE_OBJECT][:, None])
        names += [n + HERE for n in here]
        for n in here:  # the concept anywhere, the object here, and the twins of its own parts
            own = [p + HERE for p in concepts.parts_of(n) if p != n and p in concepts.localizable]
            compound[n + HERE] = (n, HERE_OBJECT, *own)
    return ConceptSet(names, torch.cat(cols, dim=1), concepts.masks, compound, concepts.localizable)


def natural_percentile(natural_sorted: torch.Tensor, value: float) -> float:
    """Fraction of natural images whose value is below ``value`` (ties count half); natural_sorted (N,)."""
    n = natural_sorted.numel()
    if n == 0 or value != value:  # no natural images, or NaN
        return float("nan")
    x = torch.tensor([float(value)], dtype=natural_sorted.dtype)
    below = int(torch.searchsorted(natural_sorted, x, right=False))
    upto = int(torch.searchsorted(natural_sorted, x, right=True))
    return (below + upto) / (2 * n)


def picture_flags(
    natural_percentile: float,
    path_percentile: float = float("nan"),
    manifold_percentile: float = float("nan"),
) -> str | None:
    """Comma-separated flags of a synthetic picture ("" = none; None = not checked: every percentile NaN,
    a run without real images, whose pictures a trial's audit page called all clear): ``weak`` when it
    drives its unit less than the top 1 % of natural images do (natural_percentile < WEAK_PERCENTILE);
    ``off_path`` when its earlier-layer patterns are further from the unit's natural path than those of
    99 % of all natural images (path_percentile < OFF_PATH_PERCENTILE, ``path_score``); ``off_manifold``
    when G redraws it from its own code worse than 99 % of natural images (manifold_percentile < 0.01,
    ``atlas.sampling.manifold``). ``weak`` is about strength; ``off_path`` and ``off_manifold`` about
    faithfulness (FAITHFULNESS_FLAGS)."""
    if all(p != p for p in (natural_percentile, path_percentile, manifold_percentile)):
        return None
    flags = []
    if natural_percentile == natural_percentile and natural_percentile < WEAK_PERCENTILE:
        flags.append("weak")
    if path_percentile == path_percentile and path_percentile < OFF_PATH_PERCENTILE:
        flags.append("off_path")
    if manifold_percentile == manifold_percentile and manifold_percentile < OFF_MANIFOLD_PERCENTILE:
        flags.append("off_manifold")
    return ",".join(flags)


# ------------------------------------------------------------------------------------------ path similarity
PATH_LAYERS = 3  # earlier layers compared (spread over the layers before the unit's)
PATH_TOP_K = 9  # the unit's natural top images that define its processing path
OFF_PATH_PERCENTILE = 0.01  # further from the unit's path than 99 % of natural images: "off_path"
OFF_MANIFOLD_PERCENTILE = 0.01  # redrawn by G worse than 99 % of natural images: "off_manifold"
FAITHFULNESS_FLAGS = ("off_path", "off_manifold")  # flags that say a picture may not show what the unit does


def choose_path_layers(
    order: list[tuple[str, tuple[int, ...]]], layer: str, n: int = PATH_LAYERS
) -> list[str]:
    """Up to ``n`` layers before ``layer`` (execution order; (C, H, W) or (U,) outputs), spread evenly and
    ending with the one right before it."""
    names = [name for name, _ in order]
    if layer not in names:
        return []
    before = [name for name, shape in order[: names.index(layer)] if len(shape) in (1, 3)]
    if not before:
        return []
    picks = {round((len(before) - 1) * (i + 1) / n) for i in range(n)}
    return [before[i] for i in sorted(picks)]


def path_pattern(acts: torch.Tensor) -> torch.Tensor:
    """A layer's activation pattern: (B, C, H, W) -> channel means (B, C); (B, U) as it is."""
    acts = acts.detach().float()
    return acts.mean((2, 3)) if acts.dim() == 4 else acts.flatten(1)


@dataclass(frozen=True)
class PathReference:
    """A unit's natural processing path (Geirhos et al. 2023): per earlier layer, the mean activation pattern
    of its top natural images, how far those images spread around it, and how close *every* natural image
    comes to it (cosine similarity)."""

    means: dict[str, torch.Tensor]  # layer -> (C,) mean pattern of the top images
    spread: dict[str, tuple[float, float]]  # layer -> (mean, std) of each top image's cosine to the others'
    natural: dict[str, torch.Tensor]  # layer -> (N,) ascending cosines of all natural images to the mean


def path_reference(patterns: dict[str, torch.Tensor], natural: dict[str, torch.Tensor]) -> PathReference:
    """patterns: layer -> (k, C) the unit's top-k natural images' patterns (k >= 2); natural: layer -> (N, C)
    the patterns of all natural images (the calibration set for ``path_score``'s percentile)."""
    means, spread, cosines = {}, {}, {}
    for name, p in patterns.items():
        p = p.float()
        k = p.shape[0]
        others = (p.sum(0, keepdim=True) - p) / max(k - 1, 1)  # (k, C) leave-one-out means
        sims = torch.nn.functional.cosine_similarity(p, others, dim=1)  # (k,)
        means[name] = p.mean(0)
        spread[name] = (float(sims.mean()), float(sims.std()) if k > 2 else 0.0)
        all_sims = torch.nn.functional.cosine_similarity(natural[name].float(), means[name][None], dim=1)
        cosines[name] = torch.sort(all_sims).values  # (N,)
    return PathReference(means, spread, cosines)


@dataclass(frozen=True)
class PathScore:
    z: float  # lowest over layers of (cos - top images' mean cos) / their std: how typical of the top images
    similarity: float  # mean cosine over layers
    percentile: float  # lowest over layers of the share of natural images less similar (flag: off_path)


def path_score(ref: PathReference, pattern: dict[str, torch.Tensor], min_std: float = 0.02) -> PathScore:
    """A picture's path similarity (Geirhos et al. 2023's sanity check). Per earlier layer: the cosine c of
    its pattern to the unit's natural mean pattern; z = (c - mean) / max(std, min_std) against the top
    images' own spread; percentile = share of all natural images whose cosine is below c (ties half). The
    path breaks where any layer departs, so z and percentile are the lowest over layers, similarity the
    mean. The percentile is calibrated on every natural image, not only the top ones: a picture that pushes
    the unit further along its natural path stays as close to it as ordinary images do, while a picture
    that reaches the unit another way is further from it than (almost) every natural image. NaN without
    layers."""
    zs, sims, pcts = [], [], []
    for name, mean in ref.means.items():
        if name not in pattern:
            continue
        cos = float(torch.nn.functional.cosine_similarity(pattern[name].float(), mean, dim=0))
        mu, sd = ref.spread[name]
        zs.append((cos - mu) / max(sd, min_std))
        sims.append(cos)
        pcts.append(natural_percentile(ref.natural[name], cos))
    if not zs:
        return PathScore(float("nan"), float("nan"), float("nan"))
    return PathScore(min(zs), sum(sims) / len(sims), min(pcts))
