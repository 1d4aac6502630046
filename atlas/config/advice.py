"""Settings that are valid but likely not meant, read from the config alone (no model, no torch import):
``atlas config`` says them, and ``atlas run`` / ``atlas config --check`` with the model's."""

from __future__ import annotations

from atlas.config.run import RunConfig
from atlas.config.sampler import SamplerConfig


def config_warnings(cfg: RunConfig) -> list[str]:
    """Settings that are valid but likely not meant, read from the config alone (``atlas config`` says
    them without --check)."""
    out, s = [], cfg.sampler
    if cfg.facets.enabled and s.chains_per_unit == 1:
        out.append("facets.enabled with sampler.chains_per_unit: 1 finds one facet per unit; use >= 4 chains")
    if not cfg.facets.enabled and cfg.facets.layer:
        out.append("facets.layer is set but facets.enabled is false")
    if s.diversity > 0 and s.method in ("ga", "cmaes"):
        out.append(f"sampler.diversity is a gradient term: sampler.method {s.method} ignores it")
    elif s.diversity > 0 and s.chains_per_unit == 1:
        out.append("sampler.diversity pushes a unit's chains apart and does nothing with one chain a unit")
    out += _start_not_applied(s)
    composites = [c for layer in cfg.layers for c in layer.composites()]
    if s.pair_start == "composed" and not any(c.is_pair for c in composites):
        out.append(
            "sampler.pair_start: composed starts the chains of two-unit composites of positive weights "
            "(a + b, layers[].pairs, 0.7*a + 0.3*b); this config has none, so it changes nothing"
        )
    if s.method == "dgn_am" and s.dgn_am.lr_end > s.dgn_am.lr:
        out.append(
            f"sampler.dgn_am.lr_end {s.dgn_am.lr_end:g} is above lr {s.dgn_am.lr:g}: the step grows over the "
            "run instead of decaying (set lr_end <= lr)"
        )
    return out


def _start_not_applied(s: SamplerConfig) -> list[str]:
    """A ``sampler.start`` set in the config that the method does not use (``atlas.sampling.peers``):
    fourier and maco draw their own random state, accentuation starts from the unit's top real images. A
    trial compared methods with ``--set sampler.method=...`` on the demo config and read maco's random
    starts against the others' real ones."""
    if "start" not in s.model_fields_set:
        return []
    if s.method in ("fourier", "maco") and s.start != "random":
        own = "spectrum" if s.method == "fourier" else "phase"
        return [
            f"sampler.start {s.start} does not apply to sampler.method {s.method}: it draws its own random "
            f"{own} (chains of code methods start from {_START_TEXT[s.start]}; compare them from "
            "sampler.start: random)"
        ]
    if s.method == "accentuation" and s.start in ("random", "mean"):
        return [
            f"sampler.start {s.start} does not apply to sampler.method accentuation: its chains start from "
            "the unit's top real images"
        ]
    return []


_START_TEXT = {
    "mean": "the mean code",
    "real": "the unit's top real images",
    "facet_seeded": "the unit's facets",
}
