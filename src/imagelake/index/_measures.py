"""Derived measures in the index: ``measures.parquet``, and filters on measure values.

``measures.parquet`` holds one row per measure (name, value, unit, payload as JSON text,
tool, tool version, params, inputs, provenance key, user, time, and the series UID or raw
sha256 it describes). :func:`write_measures_index` rewrites that one file atomically after
a mining run (the other index files did not change) and keeps ``_snapshot.json``'s row
count in step.

A query filters on measures like on tags, with the prefix ``measure.``::

    >>> query(lakefs, {"Modality": "CT", "measure.hu_mean": "0:"})        # doctest: +SKIP
    >>> query(lakefs, {"measure.body_volume_ml": (500, None)})            # doctest: +SKIP

A series matches when any of its measures of that name (one per stack) satisfies the
value, in any form :mod:`imagelake.index` accepts; ``measure.<tool>/<name>`` picks one
analysis' measure when two analyses use the same name.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from imagelake import model
from imagelake._fs import LakeFS
from imagelake.db import Database, utcnow
from imagelake.errors import QueryError
from imagelake.index._columns import measures_select
from imagelake.index._filters import Condition, combine
from imagelake.index._layout import MEASURES_FILE, SNAPSHOT_FILE

__all__ = [
    "MEASURE_PREFIX",
    "is_measure_field",
    "measure_series_mask",
    "measures_frame",
    "write_measures_index",
]

#: filters naming a measure start with this
MEASURE_PREFIX = "measure."


def is_measure_field(name: str) -> bool:
    return name.startswith(MEASURE_PREFIX)


def write_measures_index(db: Database, lakefs: LakeFS) -> int:
    """Rewrite ``index/measures.parquet`` from the registry (atomically); returns its rows."""
    from imagelake.index._snapshot import _parquet_bytes, _snapshot_read, _table

    with _snapshot_read(db) as conn:
        table = _table(conn, measures_select())
    lakefs.write_atomic(MEASURES_FILE, _parquet_bytes(table))
    if lakefs.exists(SNAPSHOT_FILE):
        info = json.loads(lakefs.read_text(SNAPSHOT_FILE))
        info.setdefault("rows", {})["measures"] = table.num_rows
        info["measures_written_at"] = utcnow().isoformat()
        info["registry_schema_version"] = model.SCHEMA_VERSION
        lakefs.write_atomic(SNAPSHOT_FILE, json.dumps(info, indent=2) + "\n")
    return int(table.num_rows)


def _read_table(lakefs: LakeFS) -> pa.Table:
    if not lakefs.exists(MEASURES_FILE):
        raise QueryError(
            f"the lake at {lakefs.url()} has no {MEASURES_FILE}; Lake.refresh() writes it"
        )
    return pq.read_table(io.BytesIO(lakefs.read_bytes(MEASURES_FILE)))


def measures_frame(
    lakefs: LakeFS,
    *,
    analysis: str | None = None,
    name: str | None = None,
    wide: bool = False,
) -> pd.DataFrame:
    """The lake's measures from the index.

    Parameters
    ----------
    analysis
        Only this analysis' measures (the ``tool`` column).
    name
        Only measures of this name.
    wide
        One row per series/stack (or raw object) and one column per measure name,
        instead of one row per measure.
    """
    df = _read_table(lakefs).to_pandas()
    for column in ("params", "inputs", "payload"):
        if column in df:
            df[column] = [json.loads(v) if isinstance(v, str) else v for v in df[column]]
    if analysis is not None:
        df = df[df["tool"] == analysis]
    if name is not None:
        df = df[df["name"] == name]
    df["stack_number"] = [
        (i or {}).get("stack_number") if isinstance(i, Mapping) else None for i in df["inputs"]
    ]
    df = df.reset_index(drop=True)
    if not wide:
        return df
    keys = ["series_instance_uid", "stack_number", "raw_sha256"]
    if df.empty:
        return pd.DataFrame(columns=keys)
    filled = df.assign(**{k: df[k].astype(object).where(df[k].notna(), "") for k in keys})
    # a name two analyses both measure becomes "<tool>/<name>" (as in measure.<tool>/<name>)
    tools_per_name = filled.groupby("name")["tool"].nunique()
    shared = set(tools_per_name[tools_per_name > 1].index)
    filled["column"] = [
        f"{t}/{n}" if n in shared else n
        for t, n in zip(filled["tool"], filled["name"], strict=True)
    ]
    out = filled.pivot_table(
        index=keys, columns="column", values="value", aggfunc="last", dropna=False
    )
    out = out.reset_index()
    out.columns.name = None
    for k in keys:
        out[k] = out[k].replace("", None)
    return out


def _split(field: str) -> tuple[str | None, str]:
    rest = field[len(MEASURE_PREFIX) :]
    tool, sep, name = rest.rpartition("/")
    return (tool if sep else None), name


def measure_series_mask(
    lakefs: LakeFS, filters: Mapping[str, Any], series_ids: pa.Array | pa.ChunkedArray
) -> pa.Array:
    """Boolean mask over ``series_ids``: the series satisfying every measure filter."""
    table = _read_table(lakefs)
    names = table.column("name")
    tools = table.column("tool")
    sid = table.column("series_id")
    keep: pa.Array | pa.ChunkedArray | None = None
    for field, value in filters.items():
        tool, name = _split(field)
        rows = pc.equal(names, name)
        if tool is not None:
            rows = pc.and_(rows, pc.equal(tools, tool))
        rows = pc.and_(rows, pc.is_valid(sid))
        if not pc.any(rows).as_py():
            known = sorted(set(names.to_pylist()))
            raise QueryError(
                f"no measure {name!r}"
                + (f" of analysis {tool!r}" if tool else "")
                + " in the index; measures: "
                + (", ".join(known) if known else "none yet (run `imagelake mine`)")
            )
        values = table.filter(rows)
        hit = Condition(field, "value", "measure", value).mask(values.column("value"))
        matched = pc.unique(values.column("series_id").filter(hit))
        mask = pc.is_in(series_ids, matched)
        keep = mask if keep is None else combine([keep, mask])
    return keep if keep is not None else pc.is_valid(series_ids)
