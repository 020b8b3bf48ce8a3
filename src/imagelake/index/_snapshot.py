"""Write the registry's analytic snapshot: ``index/*.parquet`` and ``index/_snapshot.json``.

Every file is replaced atomically (temporary name, then rename; one PUT on object stores),
so a reader sees the old file or the new one, never half of one. ``instances.parquet`` is
written first, the small files right after it, ``_snapshot.json`` last. All tables are
read inside one read transaction, so the files agree with each other even while ingest
writes.

``instances.parquet`` is the big one. Its rows stream from SQL in batches; each batch's
tags become typed Arrow columns (:mod:`imagelake.index._tags`) and are spilled to a
temporary Parquet part; once every tag's final type is known the parts are read back
one at a time, cast, and appended to the output. Peak memory is a few batches, not the
registry.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import tempfile
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from imagelake import model
from imagelake._fs import LakeFS
from imagelake.db import Database, utcnow
from imagelake.errors import ConfigError
from imagelake.index._columns import (
    INSTANCE_COLUMNS,
    SERIES_STACK_COLUMNS,
    instance_select,
    links_select,
    measures_select,
    raw_select,
    series_select,
    stack_select,
    to_arrow,
)
from imagelake.index._layout import (
    FILES,
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
    db: Database,
    lakefs: LakeFS,
    *,
    workers: int = 1,
    batch_rows: int = BATCH_ROWS,
    row_group_rows: int = ROW_GROUP_ROWS,
) -> dict[str, str]:
    """Write the index of the registry ``db`` into the lake ``lakefs``.

    Parameters
    ----------
    db
        The registry.
    lakefs
        The lake; files go under ``index/``.
    workers
        Processes that decode instance tags (the costly step, about two thirds of the
        time). 1 (default) does everything in this process; more start a process pool
        (``spawn``), worth it for registries of hundreds of thousands of instances. A
        script calling this with ``workers > 1`` needs the usual
        ``if __name__ == "__main__":`` guard.
    batch_rows
        Instances converted per step (memory versus per-batch overhead).
    row_group_rows
        Rows per row group of ``instances.parquet``: the unit queries skip by statistics.

    Returns
    -------
    dict
        Name (``series``, ``instances``, ``raw``, ``links``, ``measures``, ``snapshot``)
        → URL of the file written.

    Raises
    ------
    ConfigError
        ``workers``, ``batch_rows`` or ``row_group_rows`` below 1.
    """
    if min(workers, batch_rows, row_group_rows) < 1:
        raise ConfigError(
            "workers, batch_rows and row_group_rows must be at least 1, not "
            f"{workers}, {batch_rows}, {row_group_rows}"
        )
    started = time.perf_counter()
    rows: dict[str, int] = {}
    with _snapshot_read(db) as conn:
        series = _series_table(conn)
        # the slow file first, then the quick ones: readers mixing files of two snapshots
        # is possible only for the moment it takes to write the small files
        rows["instances"] = _write_instances(conn, lakefs, batch_rows, workers, row_group_rows)
        rows["series"] = _write_small(lakefs, SERIES_FILE, series)
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
        "files": dict(FILES),
    }
    lakefs.write_atomic(SNAPSHOT_FILE, json.dumps(info, indent=2) + "\n")
    written = {name: lakefs.url(rel) for name, rel in FILES.items()}
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


def _series_table(conn: Connection) -> pa.Table:
    """series.parquet: the series select plus each series' stacks, in stack order."""
    table = _table(conn, series_select())
    stores: dict[int, list[str]] = {}
    stored: dict[int, int] = {}
    source: dict[int, int] = {}
    for series_id, path, stored_bytes, source_bytes in conn.execute(stack_select()):
        stores.setdefault(series_id, []).append(path)
        stored[series_id] = stored.get(series_id, 0) + int(stored_bytes)
        source[series_id] = source.get(series_id, 0) + int(source_bytes)
    ids = table.column("series_id").to_pylist()
    values: dict[str, list[Any]] = {
        "n_stacks": [len(stores.get(i, ())) for i in ids],
        "stores": [stores.get(i, []) for i in ids],
        "stored_bytes": [stored.get(i, 0) for i in ids],
        "source_bytes": [source.get(i, 0) for i in ids],
    }
    for name, kind in SERIES_STACK_COLUMNS:
        table = table.append_column(pa.field(name, kind), pa.array(values[name], kind))
    return table


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

    def next_path(self) -> str:
        path = os.path.join(self.folder, f"part-{len(self.paths):06d}.parquet")
        self.paths.append(path)
        return path

    def record(self, types: dict[str, pa.DataType]) -> None:
        for name, kind in types.items():
            self.tag_types.setdefault(name, []).append(kind)

    def schema(self) -> pa.Schema:
        """Fixed columns first, then keyword tags, then numeric (private) tags, each sorted."""
        fixed = [pa.field(name, kind) for name, kind in INSTANCE_COLUMNS]
        tags = sorted(self.tag_types, key=lambda k: (is_private_tag(k), k))
        return pa.schema(fixed + [pa.field(k, unify_type(self.tag_types[k])) for k in tags])


def _write_instances(
    conn: Connection, lakefs: LakeFS, batch_rows: int, workers: int, row_group_rows: int
) -> int:
    select = instance_select()
    base = lakefs.path(".tmp") if lakefs.is_local else None
    if base is not None:
        os.makedirs(base, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="index-", dir=base) as folder:
        parts = _Parts(folder)
        result = conn.execution_options(yield_per=batch_rows).execute(select)
        batches = (_fixed_and_tags(batch, select) for batch in result.partitions())
        if workers > 1:
            _convert_in_pool(batches, parts, workers)
        else:
            for fixed, tags in batches:
                parts.record(convert_part(fixed, tags, parts.next_path()))
        final = os.path.join(folder, "instances.parquet")
        n = _merge(parts, parts.schema(), final, row_group_rows)
        lakefs.publish_file(final, INSTANCES_FILE)
    return n


def _fixed_and_tags(batch: Sequence[Any], select: sa.Select[Any]) -> tuple[pa.Table, list[Any]]:
    """A batch of SQL rows as an Arrow table of the fixed columns, and the raw tag JSON."""
    columns = list(zip(*batch, strict=True))
    selected = select.selected_columns
    fixed = pa.table(
        [to_arrow(list(columns[i]), selected[i]) for i in range(len(columns) - 1)],
        names=[c.name for c in selected][:-1],
    )
    return fixed, list(columns[-1])


def convert_part(fixed: pa.Table, tags: list[Any], path: str) -> dict[str, pa.DataType]:
    """Decode one batch's tags, write fixed + tag columns to the part file ``path``.

    Returns each tag column's type in this batch. Runs in a worker process when
    :func:`write_snapshot` has ``workers > 1``, hence plain picklable arguments.
    """
    decoded = [t if isinstance(t, dict) else json.loads(t) for t in tags]
    by_tag = tag_columns(decoded)
    taken = set(fixed.column_names)
    table = fixed
    types: dict[str, pa.DataType] = {}
    for key in sorted(by_tag):
        name = key if key not in taken else f"tag_{key}"
        table = table.append_column(name, by_tag[key])
        types[name] = by_tag[key].type
    pq.write_table(table, path, compression="none", use_dictionary=False)
    return types


def _convert_in_pool(
    batches: Iterator[tuple[pa.Table, list[Any]]], parts: _Parts, workers: int
) -> None:
    # spawn, not fork: the parent holds a database connection and Arrow's thread pools
    context = multiprocessing.get_context("spawn")
    pending: deque[Future[dict[str, pa.DataType]]] = deque()
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        try:
            for fixed, tags in batches:
                pending.append(pool.submit(convert_part, fixed, tags, parts.next_path()))
                # a bounded queue: SQL reading waits for the workers, so memory stays flat
                while len(pending) > workers:
                    parts.record(pending.popleft().result())
            while pending:
                parts.record(pending.popleft().result())
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise


def _merge(parts: _Parts, schema: pa.Schema, target: str, group: int) -> int:
    """Cast every part to ``schema`` and append it to one Parquet file; returns its rows.

    Parts are regrouped so that every row group but the last holds exactly ``group`` rows.
    """
    n = 0
    held: list[pa.Table] = []
    with pq.ParquetWriter(target, schema, compression=_COMPRESSION) as writer:
        for path in parts.paths:
            part = pq.read_table(path)
            arrays = [
                conform(part.column(f.name), f.type)
                if f.name in part.column_names
                else pa.nulls(part.num_rows, f.type)
                for f in schema
            ]
            held.append(pa.Table.from_arrays(arrays, schema=schema))
            n += part.num_rows
            os.unlink(path)
            if sum(t.num_rows for t in held) >= group:
                block = pa.concat_tables(held)
                full = block.num_rows // group * group
                writer.write_table(block.slice(0, full), row_group_size=group)
                held = [block.slice(full)]
        rest = pa.concat_tables(held) if held else schema.empty_table()
        if rest.num_rows or n == 0:
            writer.write_table(rest, row_group_size=group)
    return n
