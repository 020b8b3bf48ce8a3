"""Which registry columns each index file holds, as SQL selects, and their Arrow types.

The selects follow :mod:`imagelake.model` column by column, so a column added to a table
appears in the index without touching this module; only the ids are renamed
(``id`` → ``series_id``, ``instance_id``, …) and DICOM's StudyID becomes ``dicom_study_id``
(``study_id`` is the registry's key of the study).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from imagelake import model

__all__ = [
    "INSTANCE_COLUMNS",
    "SERIES_STACK_COLUMNS",
    "arrow_type",
    "instance_select",
    "links_select",
    "measures_select",
    "raw_select",
    "series_select",
    "stack_select",
    "to_arrow",
]

UTC_TIMESTAMP = pa.timestamp("us", tz="UTC")

#: Columns of series.parquet computed from the series' stacks (appended last).
SERIES_STACK_COLUMNS: list[tuple[str, pa.DataType]] = [
    ("n_stacks", pa.int64()),
    ("stores", pa.list_(pa.string())),
    ("stored_bytes", pa.int64()),
    ("source_bytes", pa.int64()),
]


def arrow_type(kind: sa.types.TypeEngine[Any]) -> pa.DataType:
    """The Arrow type a SQL column becomes in the index (JSON is kept as JSON text)."""
    if isinstance(kind, sa.Boolean):
        return pa.bool_()
    if isinstance(kind, sa.Integer):
        return pa.int64()
    if isinstance(kind, sa.Float):
        return pa.float64()
    if isinstance(kind, sa.DateTime):
        return UTC_TIMESTAMP
    return pa.string()


def to_arrow(values: list[Any], column: ColumnElement[Any]) -> pa.Array:
    """``values`` fetched for ``column`` as an Arrow array of :func:`arrow_type`."""
    kind = column.type
    target = arrow_type(kind)
    if isinstance(kind, sa.JSON):
        values = [None if v is None else json.dumps(v) for v in values]
    elif target == UTC_TIMESTAMP:
        values = [_utc(v) for v in values]
    return pa.array(values, target)


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    # SQLite hands back naive datetimes; the registry writes them in UTC
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.UTC)


def _cols(
    table: sa.Table, skip: Iterable[str] = (), rename: dict[str, str] | None = None
) -> list[ColumnElement[Any]]:
    rename = rename or {}
    return [c.label(rename.get(c.name, c.name)) for c in table.columns if c.name not in skip]


def series_select() -> sa.Select[Any]:
    """One row per series: keys, subject/study columns, series and image parameters, counts.

    Ordered by ``series_id``; the stack columns (:data:`SERIES_STACK_COLUMNS`) come from
    :func:`stack_select`.
    """
    s, st, sub, proj, vis, ip, inst = (
        model.series,
        model.study,
        model.subject,
        model.project,
        model.visit,
        model.image_parameters,
        model.instance,
    )
    counts = (
        sa.select(
            inst.c.series_id,
            sa.func.count().label("n_instances"),
            sa.func.sum(inst.c.n_frames).label("n_frames"),
            sa.func.min(inst.c.acquisition_datetime).label("first_acquisition"),
            sa.func.max(inst.c.acquisition_datetime).label("last_acquisition"),
        )
        .group_by(inst.c.series_id)
        .subquery()
    )
    columns: list[ColumnElement[Any]] = [
        s.c.id.label("series_id"),
        st.c.id.label("study_id"),
        sub.c.id.label("subject_id"),
        vis.c.id.label("visit_id"),
        proj.c.id.label("project_id"),
        proj.c.name.label("project"),
        vis.c.label.label("visit"),
        *_cols(sub, skip=("id", "project_id", "created_at")),
        *_cols(
            st,
            skip=("id", "subject_id", "visit_id", "created_at"),
            rename={"study_id": "dicom_study_id"},
        ),
        *_cols(s, skip=("id", "study_id", "n_instances")),
        *_cols(ip, skip=("series_id",)),
        sa.func.coalesce(counts.c.n_instances, 0).label("n_instances"),
        sa.func.coalesce(counts.c.n_frames, 0).label("n_frames"),
        counts.c.first_acquisition,
        counts.c.last_acquisition,
    ]
    joined = (
        s.join(st, s.c.study_id == st.c.id)
        .join(sub, st.c.subject_id == sub.c.id)
        .join(proj, sub.c.project_id == proj.c.id)
        .outerjoin(vis, st.c.visit_id == vis.c.id)
        .outerjoin(ip, ip.c.series_id == s.c.id)
        .outerjoin(counts, counts.c.series_id == s.c.id)
    )
    return sa.select(*columns).select_from(joined).order_by(s.c.id)


def stack_select() -> sa.Select[Any]:
    """Every stack's series, store path and sizes, in series then stack order."""
    k = model.stack
    return sa.select(k.c.series_id, k.c.store_path, k.c.stored_bytes, k.c.source_bytes).order_by(
        k.c.series_id, k.c.stack_number
    )


def instance_select() -> sa.Select[Any]:
    """One row per instance, ordered by series; the raw tags JSON text is the last column."""
    i, s, k = model.instance, model.series, model.stack
    own = {c.name: c for c in i.columns}
    columns: list[ColumnElement[Any]] = [
        own["id"].label("instance_id"),
        own["series_id"],
        own["stack_id"],
        s.c.series_instance_uid,
        k.c.store_path.label("stack_path"),
        k.c.stack_number,
    ]
    rename = {"first_frame": "frame_offset"}
    columns += [
        c.label(rename.get(c.name, c.name))
        for c in i.columns
        if c.name not in ("id", "series_id", "stack_id", "tags")
    ]
    # as text, decoded per batch (in worker processes if asked), not by SQLAlchemy per row;
    # a CAST rather than type_coerce so that PostgreSQL's driver too hands back text
    columns.append(sa.cast(i.c.tags, sa.Text).label("tags"))
    joined = i.join(s, i.c.series_id == s.c.id).outerjoin(k, i.c.stack_id == k.c.id)
    return sa.select(*columns).select_from(joined).order_by(i.c.series_id, i.c.id)


#: Fixed (non-tag) columns of instances.parquet with their Arrow types, in order.
INSTANCE_COLUMNS: list[tuple[str, pa.DataType]] = [
    (c.name, arrow_type(c.type)) for c in instance_select().selected_columns[:-1]
]


def raw_select() -> sa.Select[Any]:
    """Every raw file."""
    r = model.raw_file
    return sa.select(*_cols(r, rename={"id": "raw_id"})).order_by(r.c.id)


def links_select() -> sa.Select[Any]:
    """Every raw ↔ series link, with both ends' natural keys for joining without ids."""
    lk, s, r = model.link, model.series, model.raw_file
    return (
        sa.select(
            *_cols(lk, rename={"id": "link_id"}),
            s.c.series_instance_uid,
            r.c.sha256.label("raw_sha256"),
        )
        .select_from(lk.join(s, lk.c.series_id == s.c.id).join(r, lk.c.raw_id == r.c.id))
        .order_by(lk.c.id)
    )


def measures_select() -> sa.Select[Any]:
    """Every derived measure, with the natural keys of its series or raw file."""
    m, s, r = model.measure, model.series, model.raw_file
    return (
        sa.select(
            *_cols(m, rename={"id": "measure_id"}),
            s.c.series_instance_uid,
            r.c.sha256.label("raw_sha256"),
        )
        .select_from(m.outerjoin(s, m.c.series_id == s.c.id).outerjoin(r, m.c.raw_id == r.c.id))
        .order_by(m.c.id)
    )
