"""Query the index: filters on series columns, their DICOM keywords, or any instance tag.

Reading is lazy and narrow. ``series.parquet`` (one row per series, small) is read whole
and kept; ``instances.parquet`` is opened as an Arrow dataset whose footer is parsed
once, and each query reads only ``series_id`` and the columns it filters on, with
numeric conditions pushed down to Parquet row-group statistics. Both are kept per
:class:`IndexReader` and re-read when the file's identity (inode, mtime and size, or the
object store's ETag) changes — a snapshot replaces files by rename, so a changed file is
always a new, complete one.
"""

from __future__ import annotations

import difflib
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from imagelake._fs import LakeFS
from imagelake.errors import QueryError
from imagelake.index._filters import Condition, combine
from imagelake.index._layout import (
    INSTANCES_FILE,
    KEYWORD_COLUMNS,
    SERIES_FILE,
    is_private_tag,
    normalize_tag_key,
)

__all__ = ["IndexReader", "Level", "query"]

Level = Literal["series", "instances"]
_LEVELS = ("series", "instances")


@dataclass(frozen=True)
class _Opened:
    stamp: tuple[Any, ...]
    value: Any


class IndexReader:
    """Queries over one lake's index, keeping what it has read until the files change.

    Parameters
    ----------
    lakefs
        The lake whose ``index/`` to read.

    Notes
    -----
    Safe to share between threads. :func:`query` keeps one reader per lake for you.
    """

    def __init__(self, lakefs: LakeFS) -> None:
        self.lakefs = lakefs
        self._lock = threading.Lock()
        self._cache: dict[str, _Opened] = {}

    # -- files ------------------------------------------------------------------------
    def _stamp(self, rel: str) -> tuple[Any, ...]:
        path = self.lakefs.path(rel)
        try:
            if self.lakefs.is_local:
                st = os.stat(path)
                return (st.st_ino, st.st_mtime_ns, st.st_size)
            info = self.lakefs.fs.info(path)
        except FileNotFoundError:
            raise QueryError(
                f"the lake at {self.lakefs.url()} has no index ({rel} is missing); build it with "
                "imagelake.index.write_snapshot(db, lakefs) or `imagelake index`"
            ) from None
        tag = next((info[k] for k in ("ETag", "etag", "mtime", "LastModified") if k in info), None)
        return (str(tag), info.get("size"))

    def _open(self, rel: str, load: Any) -> Any:
        stamp = self._stamp(rel)
        with self._lock:
            found = self._cache.get(rel)
        if found is not None and found.stamp == stamp:
            return found.value
        value = load(self.lakefs.path(rel))
        with self._lock:
            self._cache[rel] = _Opened(stamp, value)
        return value

    def _filesystem(self) -> Any:
        return None if self.lakefs.is_local else self.lakefs.fs

    def series_table(self) -> pa.Table:
        """All of ``series.parquet``."""
        return self._open(SERIES_FILE, lambda p: pq.read_table(p, filesystem=self._filesystem()))

    def instances_dataset(self) -> ds.Dataset:
        """``instances.parquet`` as a dataset (footer parsed once)."""

        def load(path: str) -> ds.Dataset:
            dataset = ds.dataset(path, format="parquet", filesystem=self._filesystem())
            for fragment in dataset.get_fragments():
                fragment.ensure_complete_metadata()
            return dataset

        return self._open(INSTANCES_FILE, load)

    # -- names ------------------------------------------------------------------------
    def resolve(self, name: str, level: str | None = None) -> tuple[str, str]:
        """``(level, column)`` a field name refers to.

        Series columns win over instance tags of the same meaning (``SliceThickness`` is the
        series' ``slice_thickness``); write ``instances.SliceThickness`` to filter on the tag.
        """
        if level is None and "." in name:
            prefix, _, rest = name.partition(".")
            if prefix in _LEVELS:
                return self.resolve(rest, prefix)
        series = self.series_table().column_names
        instances = self.instances_dataset().schema.names
        candidates: list[tuple[str, str]] = []
        if level in (None, "series"):
            if name in series:
                return ("series", name)
            if name in KEYWORD_COLUMNS and KEYWORD_COLUMNS[name] in series:
                return ("series", KEYWORD_COLUMNS[name])
            candidates += [("series", c) for c in series]
            candidates += [("series", k) for k, c in KEYWORD_COLUMNS.items() if c in series]
        if level in (None, "instances"):
            tag = normalize_tag_key(name)
            if tag in instances:
                return ("instances", tag)
            candidates += [("instances", c) for c in instances]
        # a unique case-insensitive match, with the same preference for series columns
        for where in _LEVELS:
            folded = {
                KEYWORD_COLUMNS.get(c, c) if where == "series" else c
                for lv, c in candidates
                if lv == where and c.lower() == name.lower()
            }
            if len(folded) == 1:
                return (where, folded.pop())
            if folded:
                break
        raise QueryError(self._unknown(name, level, series, instances, candidates))

    @staticmethod
    def _unknown(
        name: str,
        level: str | None,
        series: Sequence[str],
        instances: Sequence[str],
        candidates: Sequence[tuple[str, str]],
    ) -> str:
        names = sorted({c for _, c in candidates})
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.6)
        close += [c for c in names if c.lower() == name.lower() and c not in close]
        where = f"{level} " if level else ""
        hint = f"did you mean {', '.join(close)}? " if close else ""
        keywords = [k for k in ("Modality", "Manufacturer", "SliceThickness") if k in names]
        tags = [c for c in instances if c[:1].isupper() or is_private_tag(c)]
        examples = [c for c in ("modality", "manufacturer", "slice_thickness") if c in series]
        return (
            f"unknown {where}field {name!r}; {hint}"
            f"fields are the columns of index/series.parquet (e.g. "
            f"{', '.join(examples)}, … {len(series)} in all), "
            f"their DICOM keywords ({', '.join(keywords)}, …) and the {len(tags)} tags of "
            f"index/instances.parquet"
        )

    # -- query ------------------------------------------------------------------------
    def query(
        self,
        filters: Mapping[str, Any] | None = None,
        *,
        level: Level = "series",
        columns: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Rows of the index that satisfy every filter; see :func:`query`."""
        if level not in _LEVELS:
            raise QueryError(f"level must be one of {', '.join(_LEVELS)}, not {level!r}")
        conditions = []
        for name, value in (filters or {}).items():
            where, column = self.resolve(name)
            conditions.append(Condition(name, column, where, value))
        series = self.series_table()
        on_series = [c for c in conditions if c.level == "series"]
        on_instances = [c for c in conditions if c.level == "instances"]
        keep = combine([c.mask(series.column(c.column)) for c in on_series])
        chosen = series if keep is None else series.filter(keep)
        if level == "series":
            if on_instances and chosen.num_rows:
                hits = self._scan(on_instances, chosen, ["series_id"], narrowed=keep is not None)
                chosen = chosen.filter(pc.is_in(chosen.column("series_id"), pc.unique(hits[0])))
            return self._series_frame(chosen, columns)
        wanted = self._instance_columns(columns)
        if not chosen.num_rows:
            table = self.instances_dataset().schema.empty_table().select(wanted)
        else:
            table = self._scan(on_instances, chosen, wanted, narrowed=keep is not None)
        return self._instances_frame(table)

    def _scan(
        self,
        conditions: Sequence[Condition],
        series: pa.Table,
        wanted: Sequence[str],
        *,
        narrowed: bool,
    ) -> pa.Table:
        """Instance rows of ``series`` satisfying ``conditions``: columns ``wanted``."""
        dataset = self.instances_dataset()
        schema = dataset.schema
        expr: ds.Expression | None = None
        rest: list[Condition] = []
        for c in conditions:
            e = c.expression(schema.field(c.column).type)
            if e is None:
                rest.append(c)
            else:
                expr = e if expr is None else expr & e
        ids = series.column("series_id")
        if narrowed:
            # the index is sorted by series: a bound prunes row groups, is_in does the rest
            ids_expr = (ds.field("series_id") >= pc.min(ids).as_py()) & (
                ds.field("series_id") <= pc.max(ids).as_py()
            )
            expr = ids_expr if expr is None else expr & ids_expr
        needed = list(dict.fromkeys([*wanted, "series_id", *(c.column for c in rest)]))
        table = dataset.to_table(columns=needed, filter=expr)
        masks = [c.mask(table.column(c.column)) for c in rest]
        if narrowed:
            masks.append(pc.is_in(table.column("series_id"), ids))
        keep = combine(masks)
        if keep is not None:
            table = table.filter(keep)
        return table.select(list(wanted))

    def _instance_columns(self, columns: Sequence[str] | None) -> list[str]:
        names = self.instances_dataset().schema.names
        if columns is None:
            return list(names)
        return [self.resolve(name, "instances")[1] for name in columns]

    def _series_frame(self, table: pa.Table, columns: Sequence[str] | None) -> pd.DataFrame:
        if columns is None:
            names = [*table.column_names, "store_urls"]
        else:
            names = [
                "store_urls" if c == "store_urls" else self.resolve(c, "series")[1] for c in columns
            ]
        have = [n for n in names if n != "store_urls"]
        frame = table.select(have).to_pandas()
        if "stores" in frame:
            frame["stores"] = [list(x) for x in frame["stores"]]
        if "store_urls" in names:
            stores = table.column("stores").to_pylist()
            frame["store_urls"] = [[self.lakefs.url(p) for p in s] for s in stores]
        return frame[names]

    def _instances_frame(self, table: pa.Table) -> pd.DataFrame:
        frame = table.to_pandas()
        if "stack_path" in frame:
            urls = {p: self.lakefs.url(p) for p in frame["stack_path"].dropna().unique()}
            frame["stack_url"] = frame["stack_path"].map(urls)
        return frame


_READERS: dict[tuple[str, int], tuple[Any, IndexReader]] = {}
_READERS_LOCK = threading.Lock()
_MAX_READERS = 16


def _reader(lakefs: LakeFS) -> IndexReader:
    # fsspec hands out one file-system instance per set of options, so (root, fs) names a
    # lake as opened with given credentials; the entry holds the fs so its id stays unique
    key = (lakefs.url(), id(lakefs.fs))
    with _READERS_LOCK:
        found = _READERS.get(key)
        if found is None:
            if len(_READERS) >= _MAX_READERS:
                _READERS.pop(next(iter(_READERS)))
            found = (lakefs.fs, IndexReader(lakefs))
            _READERS[key] = found
        return found[1]


def query(
    lakefs: LakeFS,
    filters: Mapping[str, Any] | None = None,
    *,
    level: Level = "series",
    columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Series (or instances) of a lake's index that satisfy every filter.

    Parameters
    ----------
    lakefs
        The lake.
    filters
        Field → value. A field is a column of ``index/series.parquet`` (``modality``,
        ``slice_thickness``, …), its DICOM keyword (``Modality``, ``SliceThickness``,
        ``ManufacturerModelName``, ``StudyDate``, …), or a tag column of
        ``index/instances.parquet`` (keyword or ``0019100C``); prefix ``series.`` or
        ``instances.`` to choose. A series matches an instance-level filter when at least
        one of its instances satisfies all the instance-level filters together. Value forms
        are described in :mod:`imagelake.index` (scalar with wildcards, list, ``(lo, hi)``,
        ``"lo:hi"``, ``"YYYYMMDD-YYYYMMDD"``, callable).
    level
        ``"series"``: one row per series, with ``stores`` (paths in the lake) and
        ``store_urls`` (absolute URLs). ``"instances"``: one row per matching instance
        of the matching series, with ``stack_url``.
    columns
        Columns to return (names or keywords); all by default.

    Returns
    -------
    pandas.DataFrame
        In index order (by series, then instance).

    Raises
    ------
    QueryError
        An unknown field (the message suggests close names), a malformed value, or a lake
        without an index.
    """
    return _reader(lakefs).query(filters, level=level, columns=columns)
