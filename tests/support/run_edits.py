"""Edits of a written synthetic run for tests: a column of its units table changed in place, with its
shard markers' recorded sizes kept true (as the writer records them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq


def set_units_column(run_dir: Path, column: str, value: Any, below: int) -> None:
    """``units.<column> = value`` for every unit id below ``below``, in every layer of the run."""
    for path in (run_dir / "units").rglob("*.parquet"):
        schema = pq.read_schema(path)
        frame = pq.read_table(path).to_pandas()
        frame.loc[frame["unit"] < below, column] = value
        pq.write_table(pa.Table.from_pandas(frame, schema=schema, preserve_index=False), path)
    for marker in (run_dir / "_shards").glob("*.done"):
        record = json.loads(marker.read_text())
        record["sizes"]["units"] = (run_dir / record["files"]["units"]).stat().st_size
        marker.write_text(json.dumps(record))
