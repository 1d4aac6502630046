"""Arrow schemas of the run store's tables.

One schema per table; rows arrive as dicts and are converted with :func:`to_table`. The ``layer``
column is *not* stored inside the files: it comes from the hive partition directory
(``<table>/layer=<name>/``), so DuckDB's ``hive_partitioning`` adds it exactly once.

Evolution rule: only ever add nullable columns (readers use ``union_by_name``) and bump
:data:`SCHEMA_VERSION` when the meaning of a column changes. The version is stored in every file's
metadata (``atlas.schema_version``), next to the table name.

Usage::

    from atlas.store.schema import SCHEMAS, to_table
    table = to_table("units", [{"unit": 7, "best_activation": 3.2}])
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pyarrow as pa

SCHEMA_VERSION = 1

# file-metadata keys (bytes, as Parquet stores them)
META_SCHEMA_VERSION = b"atlas.schema_version"
META_TABLE = b"atlas.table"

# columns holding raw image bytes: written without Parquet compression (PNG is already compressed)
UNCOMPRESSED_COLUMNS = frozenset({"png"})

_i32, _i64, _f32, _f64 = pa.int32(), pa.int64(), pa.float32(), pa.float64()
_str, _bool = pa.string(), pa.bool_()


def _schema(table: str, fields: list[tuple[str, pa.DataType, bool]]) -> pa.Schema:
    return pa.schema(
        [pa.field(name, dtype, nullable=nullable) for name, dtype, nullable in fields],
        metadata={META_SCHEMA_VERSION: str(SCHEMA_VERSION).encode(), META_TABLE: table.encode()},
    )


SCHEMAS: dict[str, pa.Schema] = {
    # one row per (layer, unit)
    "units": _schema(
        "units",
        [
            ("unit", _i32, False),
            ("kind", _str, True),  # output | fc | conv
            ("spatial", _str, True),  # conv units: "center (y,x)" or "mean"; null for fc / output units
            ("objective", _str, True),  # self-describing objective, e.g. "log_softmax[fc8, 7]"
            # a composite objective's expression ("3 - 5"; units numbered after the layer's own): its
            # best_log_prob is the weighted sum of its terms' log-probs, its best_rank its first term's
            ("composite", _str, True),  # null for the layer's own units
            ("method", _str, True),  # the sampler and its settings: dgn_am, ppgn_h/dae, cmaes[pop=20], ...
            ("n_chains", _i32, True),
            ("facet_count", _i32, True),
            ("best_activation", _f64, True),
            ("best_log_prob", _f64, True),
            ("best_rank", _i32, True),  # 0 = the unit is the layer's most active unit
            ("mean_last_activation", _f64, True),
            ("real_top1_activation", _f64, True),
            ("real_top9_mean", _f64, True),
            ("activation_ratio", _f64, True),  # best synthetic / real top-1
            ("judge_label", _str, True),
            ("judge_correct", _bool, True),
            ("judge_prob", _f64, True),
            ("status", _str, True),  # ok | error
            ("error", _str, True),
            ("shard", _str, True),
            # truth (issue 16): the unit's best concept on labelled natural images (atlas.sampling.concepts)
            ("label", _str, True),  # null: no concept reaches AUROC 0.85 (or no labelled images)
            ("label_score", _f64, True),  # AUROC of label_best (also when below the threshold)
            ("label_best", _str, True),  # the concept the label rules pick, also when it is no label
            ("label_runner_up", _str, True),
            ("label_margin", _f64, True),  # label_score - runner-up AUROC (< 0: a higher one failed a rule)
            ("label_top_share", _f64, True),  # share of the unit's top 20 probe images showing the label
            # conv units with concept masks: the image block [y0, y1, x0, x1) (pixels) the unit is read at,
            # where its place-bound concepts ("here:edge", "colour:red@here") are; null for other units
            ("label_cell", pa.list_(_i32), True),
            # conv units with concept masks (toy world): Network Dissection's best concept by mask IoU
            ("dissection_label", _str, True),  # null below IoU 0.04 (or not a conv unit / no masks)
            ("dissection_iou", _f64, True),
            ("tuning_concepts", pa.list_(_str), True),  # the unit's top 10 concepts by AUROC, best first
            ("tuning_auroc", pa.list_(_f64), True),  # their AUROC
            ("tuning_mean", pa.list_(_f64), True),  # the unit's mean value on each concept's images
            # the attribute reader (toy world, atlas.toyworld.reading) on the chains' last pictures: share
            # showing the label (null: no label, or no reader); agreement of their decoded attributes
            ("label_shown", _f64, True),
            ("reader_agreement", _f64, True),
        ],
    ),
    # one row per chain
    "chains": _schema(
        "chains",
        [
            ("unit", _i32, False),
            ("chain", _i32, False),
            ("seed", _i64, True),
            ("facet", _i32, True),
            ("method", _str, True),
            ("start", _str, True),  # facet_seed:K | real:I | mean | random | composed, ":poolN" after a pool
            ("final_activation", _f64, True),
            ("final_log_prob", _f64, True),
            ("final_rank", _i32, True),
            ("best_activation", _f64, True),
            ("best_step", _i32, True),
            ("diverged", _bool, True),
            ("seconds", _f64, True),
            ("steps", _i32, True),
            ("passes", _i64, True),  # forward-pass equivalents spent (gradient step 3, search member 1)
            ("stopped_step", _i32, True),  # the step the unit reached sampler.stop_at; null: it never did
        ],
    ),
    # one row per kept image
    "images": _schema(
        "images",
        [
            ("unit", _i32, False),
            ("chain", _i32, True),  # null for real images
            ("kind", _str, False),  # last | best | snapshot | real
            ("step", _i32, True),
            ("facet", _i32, True),
            ("real_index", _i32, True),
            ("real_name", _str, True),  # a real image's file inside facets.real_images (null: the toy world)
            ("png", pa.binary(), True),
            ("width", _i32, True),
            ("height", _i32, True),
            ("activation", _f64, True),
            ("log_prob", _f64, True),
            ("rank", _i32, True),
            # faithfulness (issue 16): share of natural images driving the unit less than this picture
            ("natural_percentile", _f64, True),
            # path similarity (Geirhos et al. 2023), last pictures: lowest z over 3 earlier layers of the
            # picture's pattern vs the unit's natural top-9 (cosine, in natural spreads); mean cosine
            ("path_z", _f64, True),
            ("path_similarity", _f64, True),
            # share of all natural images whose patterns are further from the unit's natural mean pattern
            # (lowest over the layers): < 0.01 flags the picture off_path
            ("path_percentile", _f64, True),
            # on-manifold (last pictures, runs with G and a code layer): share of natural images that G
            # redraws from their own code worse than this picture (atlas.sampling.manifold)
            ("manifold_percentile", _f64, True),
            # the attribute reader's decoded concepts of a last / best picture (class, facet, colour, pos,
            # size, distractor; atlas.toyworld.concepts.picture_concepts); null: snapshots, real, no reader
            ("reader_concepts", pa.list_(_str), True),
            ("flags", _str, True),  # comma-separated (concepts.picture_flags); "" none, null: not checked
        ],
    ),
    # trajectory rows, every k steps of every chain
    "steps": _schema(
        "steps",
        [
            ("unit", _i32, False),
            ("chain", _i32, False),
            ("step", _i32, False),
            ("activation", _f64, True),
            ("log_prob", _f64, True),
            ("rank", _i32, True),
            ("top_competitor", _i32, True),
            ("code_norm", _f64, True),
            ("prior_residual", _f64, True),
            ("grad_norm", _f64, True),
            ("image_change", _f64, True),
        ],
    ),
    # the final image's activations of the whole layer (or only its top units when the layer is wide)
    "activations": _schema(
        "activations",
        [
            ("unit", _i32, False),
            ("chain", _i32, True),
            ("values", pa.list_(_f32), True),
            ("top_units", pa.list_(_i32), True),
            ("top_values", pa.list_(_f32), True),
        ],
    ),
}

TABLES: tuple[str, ...] = tuple(SCHEMAS)

# within a file, rows are sorted by these columns so Parquet row-group statistics prune unit lookups
SORT_KEYS: dict[str, tuple[str, ...]] = {
    "units": ("unit",),
    "chains": ("unit", "chain"),
    "images": ("unit", "chain", "kind", "step"),
    "steps": ("unit", "chain", "step"),
    "activations": ("unit", "chain"),
}

_DUCKDB_TYPES = {
    pa.int32(): "INTEGER",
    pa.int64(): "BIGINT",
    pa.float32(): "FLOAT",
    pa.float64(): "DOUBLE",
    pa.string(): "VARCHAR",
    pa.bool_(): "BOOLEAN",
    pa.binary(): "BLOB",
}


def duckdb_type(dtype: pa.DataType) -> str:
    """The DuckDB SQL type of an Arrow type used in :data:`SCHEMAS`."""
    if pa.types.is_list(dtype):
        return f"{duckdb_type(dtype.value_type)}[]"
    return _DUCKDB_TYPES[dtype]


def _plain(value: Any) -> Any:
    """numpy scalars/arrays -> Python values pyarrow converts without surprises."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def to_table(table: str, rows: Iterable[Mapping[str, Any]], *, shard: str | None = None) -> pa.Table:
    """Convert dict rows to an Arrow table with the table's schema (missing keys -> null).

    A ``layer`` key is dropped (it lives in the partition directory); any other unknown key raises
    ``ValueError`` so a typo in a producer is caught at write time, not discovered in the viewer.
    """
    if table not in SCHEMAS:
        raise ValueError(f"unknown table {table!r}; tables are {', '.join(TABLES)}")
    schema = SCHEMAS[table]
    names = set(schema.names)
    clean: list[dict[str, Any]] = []
    for row in rows:
        unknown = set(row) - names - {"layer"}
        if unknown:
            raise ValueError(
                f"table {table!r}: unknown column(s) {sorted(unknown)}; columns are {schema.names}"
            )
        item = {k: _plain(v) for k, v in row.items() if k != "layer"}
        if shard is not None and "shard" in names and item.get("shard") is None:
            item["shard"] = shard
        clean.append(item)
    keys = SORT_KEYS[table]
    clean.sort(key=lambda r: tuple(_sort_value(r.get(k)) for k in keys))
    return pa.Table.from_pylist(clean, schema=schema)


def _sort_value(value: Any) -> tuple[int, Any]:
    # nulls first, then by value; strings and numbers never share a key column
    return (0, 0) if value is None else (1, value)
