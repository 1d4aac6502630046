"""The run store: Arrow schemas, an atomic shard writer and DuckDB views over a run directory.

This is the only package importing pyarrow and duckdb.

    from atlas.store import RunStore, encode_png, open_run, run_query

    store = RunStore("runs/demo")
    store.init_run(manifest)                      # refuses a different config_hash
    store.write_shard("fc8-0000", "fc8", {"units": [...], "images": [{"unit": 7, "png": encode_png(img)}]})
    conn = open_run("runs/demo")                  # sandboxed, one view per table
    columns, rows, truncated = run_query(conn, "SELECT * FROM units")
"""

from atlas.store.catalog import open_run
from atlas.store.manifest import list_runs, read_manifest
from atlas.store.png import decode_png, encode_png
from atlas.store.queries import run_query
from atlas.store.schema import SCHEMA_VERSION, SCHEMAS, TABLES
from atlas.store.writer import RunStore

__all__ = [
    "SCHEMAS",
    "SCHEMA_VERSION",
    "TABLES",
    "RunStore",
    "decode_png",
    "encode_png",
    "list_runs",
    "open_run",
    "read_manifest",
    "run_query",
]
