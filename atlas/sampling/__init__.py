"""Sampling engine: preferred images for many units at once (DGN-AM, PPGN-h, pixel baselines). Pure PyTorch.

Recipe::

    import torch
    from atlas.config import SamplerConfig, FacetConfig, ComputeConfig
    from atlas.sampling import Engine

    engine = Engine(target, generator, dae,                 # LoadedModel (atlas.models.registry.load_model)
                    SamplerConfig(method="dgn_am", steps=100, chains_per_unit=8),
                    FacetConfig(), ComputeConfig(batch_size=64), torch.device("cpu"),
                    real=real_images)                       # optional: facet seeds + dataset examples
    kind, n_units, shape = engine.layer_info("fc8")
    for r in engine.map_units("fc8", list(range(n_units)), seed=0):
        print(r.objective, r.status, r.facet_count, r.best_activation, [c.last.activation for c in r.chains])

Modules (one per thing that varies): ``units`` (what a unit is), ``objectives`` (raw / softmax / log_softmax,
composites), ``parametrizations`` (pixels or G(h)), ``priors`` (DAE, joint E(G(h)), hand-made pixel priors),
``steps`` (DGN-AM Eq. 1, PPGN-h Eq. 11, pixel ascent), ``samplers`` (method = parametrization + prior + step),
``chain`` (the one batched loop), ``batches`` (batching, out-of-memory back-off, failing units isolated),
``starts`` and ``start_pool`` (where chains start), ``relu_redirect`` (Lucid's redirected ReLU for dead
starts), ``stats`` (per-chain statistics), ``results`` (what a chain and a unit return), ``unit_rows``
(results in unit order), ``seeds`` (per-chain determinism), ``facets`` (clustering, facet-seeded starts),
``nets`` (target, G and DAE on one device; layer probes), ``real`` (image folders), ``real_features`` (the
real images' activations: top images, natural percentiles), ``concepts`` (concept labels, flags, path
similarity), ``manifold`` (on-manifold score), ``compute`` (autocast / channels_last / compile), ``engine``
(the high-level API). Peers (docs/methods.md): ``fourier`` (Lucid's and MACO's parametrizations),
``transforms`` (robustness views, crops), ``peer_samplers`` (Fourier, MACO, feature accentuation), ``search``
(GA, CMA-ES: the population loop), ``peers`` (their wiring, forward-pass budgets).

Names are imported on first use (``atlas.sampling.Engine`` loads the engine then), so importing one module
of the package (``atlas.sampling.units``) does not load all of them.
"""

from typing import TYPE_CHECKING

from atlas.lazy_names import lazy_getattr

if TYPE_CHECKING:
    from atlas.sampling.chain import TargetReadout, run_chains
    from atlas.sampling.compute import ComputeSetup, resolve_device
    from atlas.sampling.engine import Engine
    from atlas.sampling.facets import cluster_facets, facet_exemplars, kmeans, top_real
    from atlas.sampling.objectives import Objective, layer_values, unit_readout
    from atlas.sampling.peers import PEER_METHODS, passes_per_image
    from atlas.sampling.real import (
        FolderImages,
        RealImagesLike,
        check_image_folder,
        image_files,
        load_image_folder,
    )
    from atlas.sampling.results import ChainResult, ImageRecord, UnitResult
    from atlas.sampling.search import run_search
    from atlas.sampling.seeds import chain_seed
    from atlas.sampling.stats import TRAJECTORY_KEYS
    from atlas.sampling.units import Unit, make_unit

_HOMES = {
    "TargetReadout": "chain",
    "run_chains": "chain",
    "ComputeSetup": "compute",
    "resolve_device": "compute",
    "Engine": "engine",
    "cluster_facets": "facets",
    "facet_exemplars": "facets",
    "kmeans": "facets",
    "top_real": "facets",
    "Objective": "objectives",
    "layer_values": "objectives",
    "unit_readout": "objectives",
    "PEER_METHODS": "peers",
    "passes_per_image": "peers",
    "FolderImages": "real",
    "RealImagesLike": "real",
    "check_image_folder": "real",
    "image_files": "real",
    "load_image_folder": "real",
    "ChainResult": "results",
    "ImageRecord": "results",
    "UnitResult": "results",
    "run_search": "search",
    "chain_seed": "seeds",
    "TRAJECTORY_KEYS": "stats",
    "Unit": "units",
    "make_unit": "units",
}


__getattr__ = lazy_getattr(__name__, _HOMES)


__all__ = [
    "PEER_METHODS",
    "TRAJECTORY_KEYS",
    "ChainResult",
    "ComputeSetup",
    "Engine",
    "FolderImages",
    "ImageRecord",
    "Objective",
    "RealImagesLike",
    "TargetReadout",
    "Unit",
    "UnitResult",
    "chain_seed",
    "check_image_folder",
    "cluster_facets",
    "facet_exemplars",
    "image_files",
    "kmeans",
    "layer_values",
    "load_image_folder",
    "make_unit",
    "passes_per_image",
    "resolve_device",
    "run_chains",
    "run_search",
    "top_real",
    "unit_readout",
]
