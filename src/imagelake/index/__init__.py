"""The lake's analytic index: Parquet snapshots of the registry, and queries over them.

:func:`write_snapshot` writes ``index/series.parquet`` (one row per series: keys, series
and image-parameter columns, counts, store paths), ``index/instances.parquet`` (one row per
instance, one typed column per DICOM tag), ``raw.parquet``, ``links.parquet``,
``measures.parquet`` and ``_snapshot.json``, each replaced atomically. DuckDB, pandas, Dask
and Intake read them directly.

:func:`query` finds series (or instances) by any of those columns::

    >>> from imagelake.index import query, parse_filters          # doctest: +SKIP
    >>> query(lakefs, {"Modality": "CT", "SliceThickness": (0.5, 1.5),
    ...                "Manufacturer": "SIEM*", "XRayTubeCurrent": "300:"})
    >>> query(lakefs, parse_filters(["Modality=CT", "StudyDate=20200101-20201231"]))

A field is a column of ``series.parquet`` or its DICOM keyword (these win), or a tag of
``instances.parquet``; ``series.`` / ``instances.`` prefixes choose explicitly. Values:

* scalar — equality; text is case-insensitive with DICOM wildcards ``*`` and ``?``, and a
  multi-valued tag matches when any one of its values does (``ImageType="LOCALIZER"``);
* list or set — any of;
* ``(lo, hi)`` — inclusive range, ``None`` for an open end (numbers, dates, timestamps);
* ``"lo:hi"`` numeric range, ``"YYYYMMDD-YYYYMMDD"`` DICOM date range;
* callable — takes the column as a :class:`pandas.Series`, returns a boolean mask.

``measure.<name>`` filters on derived measures (``measures.parquet``) with the same value
forms, e.g. ``{"measure.hu_mean": "0:"}`` (see :mod:`imagelake.index._measures`).

:class:`IndexReader` is what :func:`query` uses underneath (one per lake): it keeps the
series table, the instances file's footer and the columns filtered on, until a new
snapshot replaces the files.
"""

from imagelake.index._facets import (
    SCANNER_SEPARATOR,
    FacetOptions,
    FacetSelection,
    facet_options,
    scanner_label,
)
from imagelake.index._filters import parse_filters
from imagelake.index._layout import INDEX_SCHEMA_VERSION
from imagelake.index._measures import measures_frame, write_measures_index
from imagelake.index._query import IndexReader, Level, query
from imagelake.index._raw import links_frame, query_raw, query_series_with_raw, raw_frame
from imagelake.index._snapshot import write_snapshot

__all__ = [
    "INDEX_SCHEMA_VERSION",
    "SCANNER_SEPARATOR",
    "FacetOptions",
    "FacetSelection",
    "IndexReader",
    "Level",
    "facet_options",
    "links_frame",
    "measures_frame",
    "parse_filters",
    "query",
    "query_raw",
    "query_series_with_raw",
    "raw_frame",
    "scanner_label",
    "write_measures_index",
    "write_snapshot",
]
