"""Raw files and links in the index, and queries that cross them in both directions.

>>> ct = query_series_with_raw(lakefs, {"Modality": "CT", "ConvolutionKernel": "B*"})   # doctest: +SKIP
>>> ct[["series_instance_uid", "raw_sha256"]]                                          # doctest: +SKIP
>>> query_raw(lakefs, {"model": "Skyra"}, descendants={"SliceThickness": 1.0})          # doctest: +SKIP

``raw.parquet`` is small (one row per raw object), so it is read whole; its ``meta`` JSON
is spread into columns (``modality``, ``protocol_name``, ``study_instance_uid``...), so
those can be filtered on like the registry columns. Only links with status ``accepted``
count as descent unless ``status=`` says otherwise.
"""

from __future__ import annotations

import difflib
import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from imagelake._fs import LakeFS
from imagelake.errors import QueryError
from imagelake.index._filters import Condition, combine
from imagelake.index._layout import LINKS_FILE, RAW_FILE
from imagelake.index._query import query

__all__ = ["links_frame", "query_raw", "query_series_with_raw", "raw_frame"]

#: raw meta keys spread into columns of the raw table
_META_COLUMNS = (
    "modality",
    "station_name",
    "institution",
    "study_instance_uid",
    "frame_of_reference_uid",
    "protocol_name",
    "sequence_name",
)
_STATUSES = ("accepted", "proposed", "rejected")


def _read(lakefs: LakeFS, rel: str) -> pd.DataFrame:
    if not lakefs.exists(rel):
        raise QueryError(f"the lake has no index file {rel}; run an ingest or `Lake.refresh()`")
    return pq.read_table(io.BytesIO(lakefs.read_bytes(rel))).to_pandas()


def raw_frame(lakefs: LakeFS) -> pd.DataFrame:
    """Every raw object, one row each, with meta fields spread into columns."""
    df = _read(lakefs, RAW_FILE)
    metas = [json.loads(m) if isinstance(m, str) else (m or {}) for m in df.get("meta", [])]
    for key in _META_COLUMNS:
        df[key] = [m.get(key) for m in metas]
    df["label"] = [(m.get("extra") or {}).get("label") for m in metas]
    df["decode_error"] = [m.get("decode_error") for m in metas]
    df["arrays"] = [sorted(m.get("arrays") or {}) for m in metas]
    return df


def links_frame(lakefs: LakeFS, status: str | Sequence[str] | None = "accepted") -> pd.DataFrame:
    """Links (raw_sha256 ↔ series_instance_uid) with the given status(es); ``None``: all."""
    df = _read(lakefs, LINKS_FILE)
    if status is None:
        return df
    wanted = [status] if isinstance(status, str) else list(status)
    bad = sorted(set(wanted) - set(_STATUSES))
    if bad:
        raise QueryError(f"unknown link status {bad}; valid: {', '.join(_STATUSES)}")
    return df[df["status"].isin(wanted)].reset_index(drop=True)


def _filter_frame(df: pd.DataFrame, filters: Mapping[str, Any], what: str) -> pd.DataFrame:
    if not filters:
        return df
    table = pa.Table.from_pandas(df.drop(columns=["arrays"], errors="ignore"), preserve_index=False)
    masks = []
    for name, value in filters.items():
        column = name if name in table.column_names else None
        if column is None:
            folded = [c for c in table.column_names if c.lower() == name.lower().replace(" ", "_")]
            column = folded[0] if folded else None
        if column is None:
            close = difflib.get_close_matches(name, table.column_names, n=4, cutoff=0.6)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise QueryError(
                f"unknown {what} field {name!r}; {hint}valid fields: {', '.join(table.column_names)}"
            )
        masks.append(Condition(name, column, what, value).mask(table[column]))
    mask = combine(masks)
    if mask is None:
        return df
    return df[mask.to_numpy(zero_copy_only=False)].reset_index(drop=True)


def query_series_with_raw(
    lakefs: LakeFS,
    filters: Mapping[str, Any] | None = None,
    *,
    raw: Mapping[str, Any] | None = None,
    status: str | Sequence[str] | None = "accepted",
    columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Series matching ``filters`` with their raw antecedents in a ``raw_sha256`` list column.

    ``raw`` filters the antecedents (``{"format": "siemens-twix"}``); with it, only series
    having at least one matching antecedent are returned.
    """
    series = query(lakefs, filters, columns=columns)
    links = links_frame(lakefs, status)
    if raw is not None:
        keep = set(_filter_frame(raw_frame(lakefs), raw, "raw")["sha256"])
        links = links[links["raw_sha256"].isin(keep)]
    by_series = links.groupby("series_instance_uid")["raw_sha256"].agg(lambda s: sorted(set(s)))
    out = series.copy()
    out["raw_sha256"] = [by_series.get(uid, []) for uid in out["series_instance_uid"]]
    if raw is not None:
        out = out[out["raw_sha256"].map(len) > 0].reset_index(drop=True)
    return out


def query_raw(
    lakefs: LakeFS,
    filters: Mapping[str, Any] | None = None,
    *,
    descendants: Mapping[str, Any] | None = None,
    status: str | Sequence[str] | None = "accepted",
) -> pd.DataFrame:
    """Raw objects matching ``filters`` (columns of the raw table), with their descendants.

    ``descendants`` are series conditions (as for :func:`imagelake.index.query`): only raw
    objects with at least one such descendant are kept. Every row carries the
    ``series_instance_uid`` list of its (matching) descendants.
    """
    raw = _filter_frame(raw_frame(lakefs), dict(filters or {}), "raw")
    links = links_frame(lakefs, status)
    if descendants is not None:
        uids = set(
            query(lakefs, descendants, columns=["series_instance_uid"])["series_instance_uid"]
        )
        links = links[links["series_instance_uid"].isin(uids)]
    by_raw = links.groupby("raw_sha256")["series_instance_uid"].agg(lambda s: sorted(set(s)))
    raw = raw.copy()
    raw["series_instance_uid"] = [by_raw.get(sha, []) for sha in raw["sha256"]]
    if descendants is not None:
        raw = raw[raw["series_instance_uid"].map(len) > 0].reset_index(drop=True)
    return raw
