"""The compare page: the best picture per unit of one run or method, and a method summary per layer."""

from __future__ import annotations

import typing
from typing import Any

import pandas as pd

from atlas.config import config_differences
from atlas.store.catalog import unit_sources
from viewer.data.query import fetch_frame, is_null, png_bytes
from viewer.data.truth import AUDIT_KINDS, pictures_sql, table_columns


def best_images(conn: Any, layer: str, units: list[int], method: str | None = None) -> pd.DataFrame:
    """Per unit: its best image (optionally among chains of one method) and that image's activation."""
    if not units:
        return pd.DataFrame(columns=["unit", "png", "activation", "chains"])
    marks = ", ".join("?" for _ in units)
    method_filter = "AND c.method = ?" if method else ""
    params: list[Any] = [min(units), max(units), *units, min(units), max(units), *units]
    if method:
        params.append(method)
    src = unit_sources(conn, layer, units)
    return fetch_frame(
        conn,
        f"""
        SELECT i.unit, arg_max(i.png, coalesce(i.activation, -1e308)) AS png, max(i.activation) AS activation,
               count(DISTINCT i.chain) AS chains
        FROM (SELECT * FROM {src["images"]} WHERE unit BETWEEN ? AND ? AND unit IN ({marks})
              AND kind = 'best') i
        JOIN (SELECT unit, chain, method FROM {src["chains"]} WHERE unit BETWEEN ? AND ?
              AND unit IN ({marks})) c
          ON i.unit = c.unit AND i.chain = c.chain
        WHERE true {method_filter}
        GROUP BY i.unit ORDER BY i.unit
        """,
        params,
    )


def best_image_map(conn: Any, layer: str, units: list[int], method: str | None = None) -> dict[int, dict]:
    """unit -> {"png": bytes | None, "activation": float | None} from :func:`best_images` (absent units:
    no best image)."""
    df = best_images(conn, layer, units, method)
    return {
        int(r.unit): {
            "png": png_bytes(r.png),
            "activation": None if is_null(r.activation) else r.activation,
        }
        for r in df.itertuples()
    }


def method_summary(conn: Any, layer: str) -> pd.DataFrame:
    """A row per method of the layer's chains, in words a reader takes in (the runs' summary's): chains,
    mean best activation, mean final log-prob, diverged chains (a count), seconds per chain."""
    return fetch_frame(
        conn,
        """SELECT method, count(*) AS chains, avg(best_activation) AS "mean best activation",
                  avg(final_log_prob) AS "mean final log-prob", count(*) FILTER (WHERE diverged)
                  AS "diverged chains", avg(seconds) AS "seconds per chain"
           FROM chains WHERE layer = ? GROUP BY method ORDER BY method""",
        [layer],
    )


def stats_over(conn: Any, layer: str, units: list[int]) -> dict[str, Any]:
    """mean best activation, mean facets, diverged chains, the judge's accuracy (output units of the toy
    world), the share of distinct best and last pictures carrying a flag (as the Audit page counts them),
    the steps a chain had and the forward passes it spent (``chains.passes``: a gradient step 3, a search
    generation its population), of ``layer`` over ``units`` only (two runs compared over the units both
    hold, not each over its own). A number the run does not record is None: a higher activation alone can
    hide pictures nobody recognizes."""
    if not units:
        empty = ("mean_best_activation", "mean_facets", "judge_accuracy", "flagged_share", "steps", "passes")
        return {**dict.fromkeys(empty), "diverged_chains": 0}
    marks = ", ".join("?" for _ in units)
    has_flags = "flags" in table_columns(conn, "images")
    kinds = AUDIT_KINDS["best and last pictures"]
    # the Audit page's count: distinct pictures (a best = last picture once, with the flags of both) over
    # those the checks could read (a trial read 55 % here and 100 % there for the same run)
    flagged = (
        f"""(SELECT count(*) FILTER (WHERE len(fl) > 0)::DOUBLE / nullif(count(*) FILTER (WHERE checked), 0)
             FROM ({pictures_sql(conn, kinds, f"AND layer = ? AND unit IN ({marks})")}))"""
        if has_flags
        else "NULL::DOUBLE"
    )
    chain_columns = table_columns(conn, "chains")
    steps = "max(steps)" if "steps" in chain_columns else "NULL::BIGINT"
    # a GA generation is a step too: its forward passes are what two methods' budgets compare on (a trial)
    passes = "max(passes)" if "passes" in chain_columns else "NULL::BIGINT"
    frame = fetch_frame(
        conn,
        f"""SELECT avg(best_activation) AS mean_best_activation, avg(facet_count) AS mean_facets,
                   (SELECT count(*) FROM chains WHERE layer = ? AND diverged AND unit IN ({marks}))
                       AS diverged_chains,
                   avg(judge_correct::DOUBLE) AS judge_accuracy,
                   {flagged} AS flagged_share,
                   (SELECT {steps} FROM chains WHERE layer = ? AND unit IN ({marks})) AS steps,
                   (SELECT {passes} FROM chains WHERE layer = ? AND unit IN ({marks})) AS passes
            FROM units WHERE layer = ? AND unit IN ({marks})""",
        [
            *[layer, *units],
            *([*kinds, layer, *units] if has_flags else []),
            *[layer, *units, layer, *units, layer, *units],
        ],
    )
    row = frame.iloc[0].to_dict()
    return {k: (None if is_null(v) else v) for k, v in row.items()}


def setting_differences(config: dict[str, Any], other: dict[str, Any]) -> list[str]:
    """The settings that change results and differ between two runs' configs, as ``key: a vs b``, the
    broadest first (``sampler.steps`` before ``sampler.dgn_am.lr``): the run's name and its layers left
    out (the comparison is of one layer's units), and so are the settings of a method neither run used
    (a trial read ``sampler.ppgn_h.*`` for two DGN-AM runs while ``sampler.steps`` fell past the cut)."""
    used = {_sampler_method(config), _sampler_method(other)}
    dae_unused = not _uses_dae(config) and not _uses_dae(other)  # the demo's DAE beside a maco run (a trial)
    out = []
    for key in sorted(config_differences(config, other), key=lambda k: k.count(".")):
        parts = key.split(".")
        if key == "name" or key.startswith("layers"):
            continue
        if len(parts) > 1 and parts[0] == "sampler" and parts[1] in METHOD_SECTIONS and parts[1] not in used:
            continue
        if dae_unused and parts[:2] == [
            "models",
            "dae",
        ]:  # the generator stays: every method's manifold score
            continue
        (ours, ours_default), (theirs, theirs_default) = _value_at(config, key), _value_at(other, key)
        if ours == theirs:  # a default one run's file leaves out and the other's names is no difference
            continue
        out.append(f"{key}: {_shown(ours)}{ours_default} vs {_shown(theirs)}{theirs_default}")
    return out


MISSING = object()


def omitted_default(key: str) -> Any:
    """The default of the run-config key ``key`` (``sampler.stop_at``) when run.json leaves it out at its
    default (``omit_default``: a newer key keeps older configs' hashes), else MISSING."""
    from pydantic import BaseModel

    from atlas.config import RunConfig
    from atlas.config.section import field_extra

    cls: Any = RunConfig
    field = None
    for part in key.split("."):
        field = cls.model_fields.get(part) if isinstance(cls, type) and issubclass(cls, BaseModel) else None
        if field is None:
            return MISSING
        cls = field.annotation
        models = [a for a in typing.get_args(cls) if isinstance(a, type) and issubclass(a, BaseModel)]
        cls = models[0] if models else cls  # ModelConfig | None: the section's model
    if field is None or not field_extra(field).get("omit_default"):
        return MISSING
    return field.get_default(call_default_factory=True)


METHOD_SECTIONS = ("dgn_am", "ppgn_h", "pixel", "fourier", "maco", "accentuation", "ga", "cmaes")


def _uses_dae(config: dict[str, Any]) -> bool:
    """Whether a run's method reads ``models.dae``: PPGN-h with its DAE prior (the default prior)."""
    prior = ((config.get("sampler") or {}).get("ppgn_h") or {}).get("prior", "dae")
    return _sampler_method(config) == "ppgn_h" and prior == "dae"


def _sampler_method(config: dict[str, Any]) -> str:
    sampler = config.get("sampler") if isinstance(config, dict) else None
    return str((sampler or {}).get("method") or "") if isinstance(sampler, dict) else ""


def _value_at(config: Any, key: str) -> tuple[Any, str]:
    """(the value of dotted ``key`` in a run's config dict, " (default)" when run.json left it out at its
    default — a trial read ``stop_at: 1.0 vs –`` — else ""); None when the config has no such key."""
    value = config
    for part in key.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, dict):
            default = omitted_default(key)
            return (None, "") if default is MISSING else (default, " (default)")
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None, ""
    return value, ""


def _shown(value: Any) -> str:
    """A config value as a caption shows it: a model section by its spec (and weights), a mapping as
    ``key: value`` pairs without its unset keys (not a Python dict's repr), nothing as –."""
    if value is None:
        return "–"
    if isinstance(value, dict):
        if "spec" in value:
            return str(value["spec"]) + (f" ({value['weights']})" if value.get("weights") else "")
        return "{" + ", ".join(f"{k}: {_shown(v)}" for k, v in value.items() if v is not None) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_shown(v) for v in value) + "]"
    return str(value)


def match_units(
    ids: list[int], kinds: dict[int, dict], other_ids: list[int], other_kinds: dict[int, dict]
) -> tuple[dict[int, int], dict[int, tuple[str | None, str | None]]]:
    """Which unit of the other run each unit of this one is compared with: a layer's own unit with the
    same number, a composite with the same expression (composites are numbered after the layer's own
    units, so unit 10 can be ``3 + 5`` in one run and ``1 + 2`` in another). Returns (unit -> the other
    run's unit, for those matched; unit -> (its objective here, there) for the units both runs number
    alike that hold different objectives; None = the layer's own unit)."""
    held = set(other_ids)
    by_expression = {k["composite"]: u for u, k in other_kinds.items() if k.get("composite")}
    matched: dict[int, int] = {}
    differ: dict[int, tuple[str | None, str | None]] = {}
    for unit in ids:
        mine = kinds.get(unit, {}).get("composite")
        theirs = other_kinds.get(unit, {}).get("composite") if unit in held else None
        if unit in held and mine != theirs:
            differ[unit] = (mine, theirs)
        if mine is None and unit in held and theirs is None:
            matched[unit] = unit
        elif mine is not None and mine in by_expression:
            matched[unit] = by_expression[mine]
    return matched, differ


def failed_units(kinds: dict[int, dict]) -> set[int]:
    """The failed units of :func:`viewer.data.units.unit_kinds`."""
    return {u for u, k in kinds.items() if k.get("status") == "error"}
