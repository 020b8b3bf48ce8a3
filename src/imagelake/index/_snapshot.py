"""Write the registry's analytic snapshot: ``index/*.parquet`` and ``index/_snapshot.json``.

Every file is replaced atomically (temporary name, then rename; one PUT on object stores),
so a reader sees the old file or the new one, never half of one. ``_snapshot.json`` is
written last. All tables are read inside one read transaction, so the files agree with
each other even while ingest writes.

``instances.parquet`` is the big one. Its rows stream from SQL in batches; each batch's
tags become typed Arrow columns (:mod:`imagelake.index._tags`) and are spilled to a
temporary Parquet part; once every tag's final type is known the parts are read back
one at a time, cast, and appended to the output. Peak memory is a few batches, not the
registry.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from imagelake import model
from imagelake._fs import LakeFS, fsync_dir
from imagelake.db import Database, utcnow
from imagelake.index._columns import (
    INSTANCE_COLUMNS,
    instance_select,
    links_select,
    measures_select,
    raw_select,
    series_select,
    to_arrow,
)
from imagelake.index._layout import (
    INDEX_SCHEMA_VERSION,
    INSTANCES_FILE,
    LINKS_FILE,
    MEASURES_FILE,
    RAW_FILE,
    SERIES_FILE,
    SNAPSHOT_FILE,
    is_private_tag,
)
from imagelake.index._tags import conform, tag_columns, unify_type

__all__ = ["write_snapshot"]

#: Rows fetched from SQL and converted per step; bounds the Python objects alive at once.
BATCH_ROWS = 20_000
#: Rows per Parquet row group of instances.parquet (sorted by series, so groups prune well).
ROW_GROUP_ROWS = 65_536
_COMPRESSION = "zstd"


def write_snapshot(
    db: Database, lakefs: LakeFS, *, batch_rows: int = BATCH_ROWS
) -> dict[str, str]:
    """Write the index of the registry ``db`` into the lake ``lakefs``.

    Parameters
    ----------
    db
        The registry.
    lakefs
        The lake; files go under ``index/``.
    batch_rows
        Instances converted per step (memory versus per-batch overhead).

    Returns
    -------
    dict
        Name (``series``, ``instances``, ``raw``, ``links``, ``measures``, ``snapshot``)
        → URL of the file written.
    """
    started = time.perf_counter()
    rows: dict[str, int] = {}
    with _snapshot_read(db) as conn:
        series = _table(conn, series_select())
        rows["series"] = _write_small(lakefs, SERIES_FILE, series)
        rows["instances"] = _write_instances(conn, lakefs, batch_rows)
        for rel, select, name in (
            (RAW_FILE, raw_select(), "raw"),
            (LINKS_FILE, links_select(), "links"),
            (MEASURES_FILE, measures_select(), "measures"),
        ):
            rows[name] = _write_small(lakefs, rel, _table(conn, select))
    info = {
        "schema_version": INDEX_SCHEMA_VERSION,
        "registry_schema_version": model.SCHEMA_VERSION,
        "written_at": utcnow().isoformat(),
        "seconds": round(time.perf_counter() - started, 3),
        "rows": rows,
        "files": {
            "series": SERIES_FILE,
            "instances": INSTANCES_FILE,
            "raw": RAW_FILE,
            "links": LINKS_FILE,
            "measures": MEASURES_FILE,
        },
    }
    lakefs.write_atomic(SNAPSHOT_FILE, json.dumps(info, indent=2) + "\n")
    written = {name: lakefs.url(rel) for name, rel in info["files"].items()}  # type: ignore[attr-defined]
    written["snapshot"] = lakefs.url(SNAPSHOT_FILE)
    return written


@contextmanager
def _snapshot_read(db: Database) -> Iterator[Connection]:
    """A connection whose reads all see one state of the registry."""
    with db.connect() as conn:
        if db.is_sqlite:
            # pysqlite opens no transaction for SELECTs, so each would see its own state;
            # an explicit deferred BEGIN pins one WAL snapshot at the first read.
            conn.exec_driver_sql("BEGIN")
        elif conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        try:
            yield conn
        finally:
            conn.rollback()


def _table(conn: Connection, select: sa.Select[Any]) -> pa.Table:
    result = conn.execute(select)
    names = list(result.keys())
    data = result.fetchall()
    columns = list(zip(*data, strict=True)) if data else [() for _ in names]
    return pa.table(
        [to_arrow(list(col), select.selected_columns[i]) for i, col in enumerate(columns)],
        names=names,
    )


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression=_COMPRESSION)
    return bytes(sink.getvalue())


def _write_small(lakefs: LakeFS, rel: str, table: pa.Table) -> int:
    lakefs.write_atomic(rel, _parquet_bytes(table))
    return table.num_rows


@dataclass
class _Parts:
    """Spilled batches of instances.parquet and what each tag column looked like in them."""

    folder: str
    paths: list[str] = field(default_factory=list)
    tag_types: dict[str, list[pa.DataType]] = field(default_factory=dict)

    def add(self, table: pa.Table) -> None:
        path = os.path.join(self.folder, f"part-{len(self.paths):06d}.parquet")
        pq.write_table(table, path, compression="none", use_dictionary=False)
        self.paths.append(path)

    def schema(self) -> pa.Schema:
        """Fixed columns first, then keyword tags, then numeric (private) tags, each sorted."""
        fixed = [pa.field(name, kind) for name, kind in INSTANCE_COLUMNS]
        fixed_names = {f.name for f in fixed}
        tags = sorted(
            (k for k in self.tag_types if k not in fixed_names),
            key=lambda k: (is_private_tag(k), k),
        )
        return pa.schema(fixed + [pa.field(k, unify_type(self.tag_types[k])) for k in tags])


def _write_instances(conn: Connection, lakefs: LakeFS, batch_rows: int) -> int:
    select = instance_select()
    base = lakefs.path(".tmp") if lakefs.is_local else None
    if base is not None:
        os.makedirs(base, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="index-", dir=base) as folder:
        parts = _Parts(folder)
        result = conn.execution_options(yield_per=batch_rows).execute(select)
        names = list(result.keys())
        for batch in result.partitions():
            table = _instance_batch(batch, names, select)
            for name in table.column_names[len(INSTANCE_COLUMNS) :]:
                parts.tag_types.setdefault(name, []).append(table.schema.field(name).type)
            parts.add(table)
        schema = parts.schema()
        final = os.path.join(folder, "instances.parquet")
        n = _merge(parts, schema, final)
        _publish(lakefs, final, INSTANCES_FILE)
    return n


def _instance_batch(batch: Sequence[Any], names: list[str], select: sa.Select[Any]) -> pa.Table:
    columns = list(zip(*batch, strict=True))
    fixed = [
        to_arrow(list(columns[i]), select.selected_columns[i]) for i in range(len(names) - 1)
    ]
    tags = [t if isinstance(t, dict) else json.loads(t) for t in columns[-1]]
    fixed_names = set(names[:-1])
    by_tag = tag_columns(tags)
    tag_names = sorted(by_tag)
    return pa.table(
        fixed + [by_tag[k] for k in tag_names],
        names=names[:-1] + [k if k not in fixed_names else f"tag_{k}" for k in tag_names],
    )


def _merge(parts: _Parts, schema: pa.Schema, target: str) -> int:
    """Cast every part to ``schema`` and append it to one Parquet file; returns its rows."""
    n = 0
    pending: list[pa.Table] = []
    with pq.ParquetWriter(target, schema, compression=_COMPRESSION) as writer:

        def flush() -> None:
            if pending:
                writer.write_table(pa.concat_tables(pending), row_group_size=ROW_GROUP_ROWS)
                pending.clear()

        held = 0
        for path in parts.paths:
            part = pq.read_table(path)
            arrays = [
                conform(part.column(f.name), f.type)
                if f.name in part.column_names
                else pa.nulls(part.num_rows, f.type)
                for f in schema
            ]
            pending.append(pa.Table.from_arrays(arrays, schema=schema))
            held += part.num_rows
            n += part.num_rows
            os.unlink(path)
            if held >= ROW_GROUP_ROWS:
                flush()
                held = 0
        flush()
        if n == 0:
            writer.write_table(schema.empty_table())
    return n


def _publish(lakefs: LakeFS, local_file: str, rel: str) -> None:
    """Move a finished local file to ``rel`` in the lake, atomically."""
    target = lakefs.path(rel)
    if not lakefs.is_local:
        lakefs.fs.put_file(local_file, target)  # one PUT: atomic on object stores
        return
    folder = os.path.dirname(target)
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(target)}.{uuid.uuid4().hex}.tmp")
    try:
        # the part files live under <lake>/.tmp (same file system): a rename, not a copy
        os.replace(local_file, tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    fsync_dir(folder)
