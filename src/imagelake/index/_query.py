"""Query the index: filters on series columns, their DICOM keywords, or any instance tag.

Reading is narrow and cached (:mod:`imagelake.index._files`). ``series.parquet`` (one row
per series, small) is read whole once, as an Arrow table for filtering and a pandas frame
for answers. For ``instances.parquet`` the footer is parsed once; a query needs only
``series_id`` and the columns it filters on (plus those it returns), only from the row
groups whose statistics can hold a match (the file is sorted by series, and numeric
conditions bound each tag); the filter columns are decoded once and kept, within a
memory budget.

What is cached belongs to one :class:`IndexReader` and is keyed by the file's identity
(inode, mtime and size; or the object store's ETag). Locally the file is opened first and
its identity taken from the open handle, so cached footer and file always agree: a
snapshot replaces files by rename, so a changed file is a new, complete one.
"""

from __future__ import annotations

import difflib
import os
import threading
from collections.abc import Mapping, Sequence
from typing import IO, Any, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from imagelake._fs import LakeFS
from imagelake.errors import QueryError
from imagelake.index._files import DEFAULT_CACHE_BYTES, InstancesFile, SeriesFile
from imagelake.index._filters import Condition, combine
from imagelake.index._layout import (
    INSTANCES_FILE,
    KEYWORD_COLUMNS,
    SERIES_FILE,
    is_private_tag,
    normalize_tag_key,
)
from imagelake.index._measures import is_measure_field, measure_series_mask

__all__ = ["IndexReader", "Level", "query"]

Level = Literal["series", "instances"]
_LEVELS = ("series", "instances")
#: series.parquet's list columns (``store_urls`` is added when read).
_LIST_COLUMNS = ("stores", "store_urls")


class IndexReader:
    """Queries over one lake's index, keeping what it has read until the files change.

    Parameters
    ----------
    lakefs
        The lake whose ``index/`` to read.
    cache_bytes
        Memory for decoded instance columns that queries filter on, kept for the next
        queries (0 to keep none).

    Notes
    -----
    Safe to share between threads. :func:`query` keeps one reader per lake for you.
    """

    def __init__(self, lakefs: LakeFS, *, cache_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.lakefs = lakefs
        self.cache_bytes = cache_bytes
        self._lock = threading.Lock()
        self._series: SeriesFile | None = None
        self._instances: InstancesFile | None = None

    # -- files ------------------------------------------------------------------------
    def _open(self, rel: str) -> tuple[IO[bytes], tuple[Any, ...]]:
        """An open file and its identity (taken from the handle where the disk allows)."""
        path = self.lakefs.path(rel)
        try:
            if self.lakefs.is_local:
                fh: IO[bytes] = open(path, "rb")  # noqa: SIM115 - closed by the caller
                st = os.fstat(fh.fileno())
                return fh, (st.st_ino, st.st_mtime_ns, st.st_size)
            info = self.lakefs.fs.info(path)
            keys = ("ETag", "etag", "mtime", "LastModified")
            tag = next((info[k] for k in keys if k in info), None)
            return self.lakefs.fs.open(path, "rb"), (str(tag), info.get("size"))
        except FileNotFoundError:
            raise QueryError(
                f"the lake at {self.lakefs.url()} has no index ({rel} is missing); ingest writes "
                "it, or build it from the registry with Lake.refresh() or "
                "imagelake.index.write_snapshot(db, lakefs)"
            ) from None

    def _series_file(self) -> SeriesFile:
        """series.parquet, read once per version of the file."""
        fh, stamp = self._open(SERIES_FILE)
        with fh:
            cached = self._series
            if cached is not None and cached.stamp == stamp:
                return cached
            table = pq.read_table(fh)
        urls = [[self.lakefs.url(p) for p in paths] for paths in table.column("stores").to_pylist()]
        table = table.append_column("store_urls", pa.array(urls, pa.list_(pa.string())))
        # lists stay in the table (handed out as fresh Python lists per answer)
        frame = table.drop_columns(list(_LIST_COLUMNS)).to_pandas()
        loaded = SeriesFile(stamp, table, frame)
        with self._lock:
            self._series = loaded
        return loaded

    def _instances_file(self) -> tuple[IO[bytes], InstancesFile]:
        """instances.parquet opened for one query, and its footer (cached)."""
        fh, stamp = self._open(INSTANCES_FILE)
        try:
            cached = self._instances
            if cached is not None and cached.stamp == stamp:
                return fh, cached
            parquet = pq.ParquetFile(fh)
        except BaseException:
            fh.close()
            raise
        loaded = InstancesFile(stamp, parquet.metadata, parquet.schema_arrow, self.cache_bytes)
        with self._lock:
            self._instances = loaded
        return fh, loaded

    def instance_schema(self) -> pa.Schema:
        """The Arrow schema of ``instances.parquet``."""
        fh, opened = self._instances_file()
        fh.close()
        return opened.schema

    # -- names ------------------------------------------------------------------------
    def resolve(self, name: str, level: str | None = None) -> tuple[str, str]:
        """``(level, column)`` a field name refers to (see :func:`query`)."""
        instances = self.instance_schema().names
        return _resolve(name, level, self._series_file().table.column_names, instances)

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
        series = self._series_file()
        fh, instances = self._instances_file()
        with fh:
            names = (series.table.column_names, instances.schema.names)
            conditions = []
            on_measures: dict[str, Any] = {}
            for name, value in (filters or {}).items():
                if is_measure_field(name):  # measure.<name>: see imagelake.index._measures
                    on_measures[name] = value
                    continue
                where, column = _resolve(name, None, *names)
                conditions.append(Condition(name, column, where, value))
            on_series = [c for c in conditions if c.level == "series"]
            on_instances = [c for c in conditions if c.level == "instances"]
            masks = [c.mask(series.table.column(c.column)) for c in on_series]
            if on_measures:
                ids_all = series.table.column("series_id")
                masks.append(measure_series_mask(self.lakefs, on_measures, ids_all))
            keep = combine(masks)
            ids = series.table.column("series_id")
            chosen = ids if keep is None else ids.filter(keep)
            if level == "series":
                if on_instances and len(chosen):
                    hits = _scan(fh, instances, on_instances, chosen, ["series_id"])
                    found = pc.unique(hits.column("series_id"))
                    chosen = found if keep is None else found.filter(pc.is_in(found, chosen))
                return self._series_frame(series, chosen, columns)
            wanted = (
                list(instances.schema.names)
                if columns is None
                else [_resolve(c, "instances", *names)[1] for c in columns]
            )
            table = _scan(fh, instances, on_instances, chosen, wanted)
            if keep is not None:
                table = table.filter(pc.is_in(table.column("series_id"), chosen))
            table = table.select(wanted)
        return self._instances_frame(table)

    def _series_frame(
        self, series: SeriesFile, ids: pa.Array | pa.ChunkedArray, columns: Sequence[str] | None
    ) -> pd.DataFrame:
        table_names = series.table.column_names
        if columns is None:
            names = list(table_names)
        else:
            names = [_resolve(c, "series", table_names, ())[1] for c in columns]
        rows = pc.is_in(series.table.column("series_id"), ids)
        frame = series.frame.loc[rows.to_numpy(zero_copy_only=False)].reset_index(drop=True)
        for name in _LIST_COLUMNS:
            if name in names:
                frame[name] = series.table.column(name).filter(rows).to_pylist()
        return frame[names]

    def _instances_frame(self, table: pa.Table) -> pd.DataFrame:
        frame = table.to_pandas()
        if "stack_path" in frame:
            urls = {p: self.lakefs.url(p) for p in frame["stack_path"].dropna().unique()}
            frame["stack_url"] = frame["stack_path"].map(urls)
        return frame


def _scan(
    fh: IO[bytes],
    instances: InstancesFile,
    conditions: Sequence[Condition],
    series_ids: pa.Array | pa.ChunkedArray,
    wanted: Sequence[str],
) -> pa.Table:
    """Instance rows satisfying ``conditions``, from the row groups that may hold
    ``series_ids``; the columns ``wanted`` plus ``series_id``."""
    schema = instances.schema
    filtered = list(dict.fromkeys(["series_id", *(c.column for c in conditions)]))
    needed = list(dict.fromkeys([*wanted, *filtered]))
    if not len(series_ids):
        return schema.empty_table().select(needed)
    # the file is sorted by series: their id span prunes row groups, as do numeric bounds
    bounds = {"series_id": (pc.min(series_ids).as_py(), pc.max(series_ids).as_py())}
    for c in conditions:
        found = c.bounds(schema.field(c.column).type)
        if found is not None:
            bounds[c.column] = found
    groups = instances.row_groups(bounds)
    if not groups:
        return schema.empty_table().select(needed)
    # text is read as dictionaries: decoded, and matched, once per distinct value
    text = [c for c in filtered if pa.types.is_string(schema.field(c).type)]
    table = instances.read(fh, groups, needed, cached=filtered, dictionary=text)
    keep = combine([c.mask(table.column(c.column)) for c in conditions])
    if keep is not None:
        table = table.filter(keep)
    for name in text:
        if name in wanted:
            i = table.column_names.index(name)
            table = table.set_column(i, name, pc.cast(table.column(name), pa.string()))
    return table


def _resolve(
    name: str, level: str | None, series: Sequence[str], instances: Sequence[str]
) -> tuple[str, str]:
    """``(level, column)`` of a field, given the columns of both files.

    Series columns win over instance tags of the same meaning (``SliceThickness`` is the
    series' ``slice_thickness``); ``instances.SliceThickness`` names the tag.
    """
    if level is None and "." in name:
        prefix, _, rest = name.partition(".")
        if prefix in _LEVELS:
            return _resolve(rest, prefix, series, instances)
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
    raise QueryError(_unknown(name, level, series, instances, candidates))


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
    examples = [c for c in ("modality", "manufacturer", "slice_thickness") if c in names]
    tags = [c for c in instances if c[:1].isupper() or is_private_tag(c)]
    valid = []
    if examples:
        valid.append(
            f"the columns of index/series.parquet (e.g. {', '.join(examples)}, … "
            f"{len(series)} in all) and their DICOM keywords ({', '.join(keywords)}, …)"
        )
    if level in (None, "instances"):
        valid.append(f"the {len(tags)} tags of index/instances.parquet")
    return f"unknown {where}field {name!r}; {hint}valid fields are {' and '.join(valid)}"


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
