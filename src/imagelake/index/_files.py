"""The index files as a reader keeps them between queries.

:class:`SeriesFile` is series.parquet whole (it is small). :class:`InstancesFile` is
instances.parquet's footer: row-group statistics for pruning, and a bounded cache of the
columns queries filter on, decoded once per version of the file.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["DEFAULT_CACHE_BYTES", "InstancesFile", "SeriesFile"]

#: Decoded instance columns a reader keeps for later queries.
DEFAULT_CACHE_BYTES = 256 * 2**20


@dataclass(frozen=True)
class SeriesFile:
    """series.parquet in memory: the table (filtering, list columns) and its frame (answers)."""

    stamp: tuple[Any, ...]
    table: pa.Table
    frame: pd.DataFrame


@dataclass
class InstancesFile:
    """instances.parquet's footer, its row-group statistics, and cached filter columns."""

    stamp: tuple[Any, ...]
    metadata: pq.FileMetaData
    schema: pa.Schema
    cache_bytes: int = DEFAULT_CACHE_BYTES
    _leaf: dict[str, int] = field(default_factory=dict)
    _stats: dict[str, list[tuple[Any, Any, bool]]] = field(default_factory=dict)
    _offsets: list[int] = field(default_factory=list)
    _columns: OrderedDict[str, pa.ChunkedArray] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        md = self.metadata
        if md.num_row_groups:
            first = md.row_group(0)
            self._leaf = {first.column(j).path_in_schema: j for j in range(first.num_columns)}
        self._offsets = [0]
        for i in range(md.num_row_groups):
            self._offsets.append(self._offsets[-1] + md.row_group(i).num_rows)

    # -- pruning ----------------------------------------------------------------------
    def stats(self, column: str) -> list[tuple[Any, Any, bool]]:
        """Per row group: (min, max, all null) of ``column``; None where unknown."""
        found = self._stats.get(column)
        if found is None:
            found = []
            j = self._leaf.get(column)
            for i in range(self.metadata.num_row_groups):
                group = self.metadata.row_group(i)
                st = None if j is None else group.column(j).statistics
                if st is None:
                    found.append((None, None, False))
                    continue
                empty = bool(st.has_null_count and st.null_count == group.num_rows)
                found.append((st.min, st.max, empty) if st.has_min_max else (None, None, empty))
            self._stats[column] = found
        return found

    def row_groups(self, bounds: Mapping[str, tuple[Any, Any]]) -> list[int]:
        """Row groups that may hold rows within every ``(lo, hi)`` of ``bounds``."""
        keep = list(range(self.metadata.num_row_groups))
        for column, (lo, hi) in bounds.items():
            stats = self.stats(column)
            keep = [
                i
                for i in keep
                if not stats[i][2]
                and not (hi is not None and stats[i][0] is not None and stats[i][0] > hi)
                and not (lo is not None and stats[i][1] is not None and stats[i][1] < lo)
            ]
        return keep

    # -- reading ----------------------------------------------------------------------
    def read(
        self,
        fh: IO[bytes],
        groups: Sequence[int],
        columns: Sequence[str],
        *,
        cached: Sequence[str] = (),
        dictionary: Sequence[str] = (),
    ) -> pa.Table:
        """``columns`` of the row groups ``groups`` (ascending), as one table.

        Columns named in ``cached`` are decoded for the whole file once and kept (up to
        :attr:`cache_bytes`, least recently used out first); those in ``dictionary`` are
        read dictionary-encoded.
        """
        with self._lock:
            have = {c: self._columns[c] for c in cached if c in self._columns}
            for c in have:
                self._columns.move_to_end(c)
        parquet = pq.ParquetFile(fh, metadata=self.metadata, read_dictionary=list(dictionary))
        fill = [c for c in cached if c not in have]
        if fill:
            whole = parquet.read(columns=fill)
            for c in fill:
                have[c] = whole.column(c)
            self._keep({c: have[c] for c in fill})
        rest = [c for c in columns if c not in have]
        other = parquet.read_row_groups(list(groups), columns=rest) if rest else None
        arrays = [
            self._slice(have[c], groups) if c in have else other.column(c)  # type: ignore[union-attr]
            for c in columns
        ]
        return pa.Table.from_arrays(arrays, names=list(columns))

    def _slice(self, column: pa.ChunkedArray, groups: Sequence[int]) -> pa.ChunkedArray:
        if len(groups) == self.metadata.num_row_groups:
            return column
        chunks = []
        for g in groups:
            start = self._offsets[g]
            chunks += column.slice(start, self._offsets[g + 1] - start).chunks
        return pa.chunked_array(chunks, column.type)

    def _keep(self, columns: Mapping[str, pa.ChunkedArray]) -> None:
        with self._lock:
            for name, column in columns.items():
                if column.nbytes <= self.cache_bytes:
                    self._columns[name] = column
            total = sum(c.nbytes for c in self._columns.values())
            while total > self.cache_bytes and self._columns:
                _, dropped = self._columns.popitem(last=False)
                total -= dropped.nbytes
