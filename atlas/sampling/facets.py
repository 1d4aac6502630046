"""Multifaceted units: facets of chain end points, facet-seeded starts, dataset examples.

Usage::

    labels = cluster_facets(features, distance=0.35, max_facets=4)   # (K, F) -> facet id per chain
    n = assign_facets(chain_results, distance=0.35, max_facets=4)   # sets ChainResult.facet, -> count
    centers, sizes = kmeans(codes, k=4, seed=0)                     # torch k-means (k-means++ init)
    pos, sizes = facet_exemplars(features_of_top_images, k=4)       # one real exemplar per cluster (codes)
    idx, vals = top_real(values, unit, k=9)                         # the unit's top real images
    default_facet_layer([("fc7", (32,)), ("fc8", (10,))], "fc8")    # -> "fc7" (T's penultimate layer)

Facet criterion (``FacetConfig``): chain end points are described by T's penultimate-layer features of their
last picture, L2-normalized. Centroid agglomeration: start with one cluster per chain and merge
the two clusters whose mean directions are closest in cosine distance while that distance is <= ``distance``,
or while there are more than ``max_facets`` clusters. So two facets are kept apart iff their means differ by
more than ``distance`` in cosine distance (0.2-0.5 is sensible; lower splits more).

Facet-seeded starts (Nguyen et al. 2016, "Multifaceted feature visualization"): a unit's top-activating real
images are clustered with k-means on high-layer features (the paper: fc7; here the facet layer); pixel chains
start from each cluster's mean image, code chains from the code of each cluster's best real image (an
exemplar: a mean of codes decodes to no real picture).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from atlas.sampling.results import ChainResult


def pass_through_layers(module: nn.Module) -> set[str]:
    """Names of ``module``'s layers that compute nothing in eval mode (dropout, ``nn.Identity``): they repeat
    the layer before them, so they never stand for it (CaffeNet's ``drop7`` is its ``relu7``'s values)."""
    kinds = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)
    return {name for name, m in module.named_modules() if name and isinstance(m, kinds)}


def default_facet_layer(
    layers: Sequence[tuple[str, tuple[int, ...]]], output_layer: str | None, skip: Collection[str] = ()
) -> str | None:
    """The layer whose features are clustered into facets when ``facets.layer`` is not set: T's penultimate
    layer, the last layer with a 1-D output before the output layer (else the last layer before it).

    ``layers``: (name, per-example output shape) of the target's leaf modules in execution order; ``skip``:
    layers that pass their input through (:func:`pass_through_layers`), never chosen.
    """
    layers = [(n, shape) for n, shape in layers if n not in skip or n == output_layer]
    names = [n for n, _ in layers]
    before = names[: names.index(output_layer)] if output_layer in names else names
    shapes = dict(layers)
    flat = [n for n in before if len(shapes[n]) == 1]
    return flat[-1] if flat else (before[-1] if before else output_layer)


def cluster_facets(
    features: torch.Tensor, distance: float, max_facets: int, valid: torch.Tensor | None = None
) -> list[int]:
    """features: (K, F) end-point features of one unit's chains -> facet id per chain (0..n-1, -1 invalid).

    ``valid`` (K,) bool marks chains to cluster (e.g. not diverged). Ids are numbered by first appearance.
    """
    k = features.shape[0]
    ok = torch.ones(k, dtype=torch.bool) if valid is None else valid.cpu().bool()
    labels = [-1] * k
    members = [[i] for i in range(k) if ok[i]]
    if not members:
        return labels
    x = F.normalize(torch.nan_to_num(features.detach().float().cpu()), dim=1)  # (K, F) unit vectors
    while len(members) > 1:
        means = F.normalize(torch.stack([x[m].mean(0) for m in members]), dim=1)  # (M, F)
        d = 1.0 - means @ means.T  # (M, M) cosine distance
        d.fill_diagonal_(float("inf"))
        flat = int(torch.argmin(d))
        i, j = divmod(flat, len(members))
        if float(d[i, j]) > distance and len(members) <= max_facets:
            break
        i, j = min(i, j), max(i, j)
        members[i] = members[i] + members[j]
        del members[j]
    members.sort(key=min)
    for fid, m in enumerate(members):
        for i in m:
            labels[i] = fid
    return labels


def assign_facets(chains: list[ChainResult], distance: float, max_facets: int) -> int:
    """Set each chain's ``facet`` from its end-point features (diverged chains: -1); -> number of facets."""
    if not chains or chains[0].features is None:
        return 0
    feats = torch.stack([c.features for c in chains])  # type: ignore[misc]  # (K, F)
    valid = torch.tensor([not c.diverged for c in chains])
    labels = cluster_facets(feats, distance, max_facets, valid)
    for c, label in zip(chains, labels, strict=True):
        c.facet = label
    return facet_count(labels)


def facet_count(labels: list[int]) -> int:
    return len({label for label in labels if label >= 0})


def kmeans(x: torch.Tensor, k: int, seed: int = 0, iters: int = 50) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means with k-means++ init. x: (N, D) -> (centers (k', D), labels (N,)); k' = min(k, N).

    Deterministic given ``seed``; empty clusters are dropped (so k' may be smaller than k).
    """
    x = x.detach().float()
    n = x.shape[0]
    k = max(1, min(k, n))
    g = torch.Generator(device="cpu").manual_seed(int(seed))
    xc = x.cpu()
    first = int(torch.randint(n, (1,), generator=g))
    centers = [xc[first]]
    d2 = (xc - centers[0]).pow(2).sum(1)
    for _ in range(1, k):
        if float(d2.sum()) <= 0:
            break
        nxt = int(torch.multinomial(d2 / d2.sum(), 1, generator=g))
        centers.append(xc[nxt])
        d2 = torch.minimum(d2, (xc - xc[nxt]).pow(2).sum(1))
    c = torch.stack(centers)  # (k, D)
    labels = torch.cdist(xc, c).argmin(1)
    for _ in range(iters):
        new_c = torch.stack(
            [xc[labels == j].mean(0) if bool((labels == j).any()) else c[j] for j in range(c.shape[0])]
        )
        new_labels = torch.cdist(xc, new_c).argmin(1)
        c = new_c
        if torch.equal(new_labels, labels):
            break
        labels = new_labels
    used = [j for j in range(c.shape[0]) if bool((labels == j).any())]
    remap = torch.full((c.shape[0],), -1, dtype=torch.long)
    remap[torch.tensor(used)] = torch.arange(len(used))
    return c[used].to(x.device), remap[labels].to(x.device)


def facet_exemplars(features: torch.Tensor, k: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """One real exemplar per facet of a unit's top images (multifaceted starts that stay on G's manifold).

    features: (N, F) features of the unit's top N real images, **ordered by activation, highest first** (as
    :func:`top_real` returns them). k-means (k-means++, ``seed``) splits them into k' <= k clusters; each
    cluster's exemplar is its highest-activating member. Returns (positions into the N images (k',), cluster
    sizes (k',)), ordered by the exemplar's rank: the cluster holding the top image comes first, so chain
    c starts from exemplar c mod k'.

    Nguyen, Yosinski & Clune (2016) start from each cluster's *mean image*; a mean of codes is no real
    code: on the toy world the mean of 20 or more real codes decodes to a magenta blob whatever the colours
    averaged (docs/sampling.md, "The demo atlas, measured as it is built"), so code chains start from
    exemplars.
    """
    _, labels = kmeans(features, k, seed)
    labels = labels.cpu()
    n_clusters = int(labels.max()) + 1
    first = torch.stack([torch.nonzero(labels == j).min() for j in range(n_clusters)])  # (k',)
    sizes = torch.bincount(labels, minlength=n_clusters)
    order = torch.argsort(first)
    return first[order], sizes[order]


def top_real(values: torch.Tensor, unit: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """values (N, U) real images' layer vectors -> (indices (k,), activations (k,)) of the unit's top k."""
    k = min(k, values.shape[0])
    vals, idx = torch.topk(values[:, unit].float(), k)
    return idx, vals
