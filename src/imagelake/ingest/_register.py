"""Registry writes for one series: subject, study, series, parameters, stacks, instances.

Called inside one transaction per series, after its stack stores are published, so a
series is either entirely visible (registry rows pointing at complete stores) or not.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from imagelake import model
from imagelake.db import ensure_project, ensure_study, ensure_subject, utcnow
from imagelake.dicom import InstanceInfo, StackPlan
from imagelake.store import LAYOUT_VERSION, StackResult

__all__ = ["SERIES_FIELDS", "register_series", "series_values"]

DEFAULT_PROJECT = "default"


def _text(value: Any, limit: int = 256) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, list):
        value = "\\".join(str(v) for v in value)
    return str(value)[:limit]


def _num(value: Any) -> float | None:
    if isinstance(value, list):
        value = value[0] if value else None
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _int(value: Any) -> int | None:
    f = _num(value)
    return None if f is None else int(f)


#: series column -> DICOM keyword
SERIES_FIELDS = {
    "modality": "Modality",
    "series_number": "SeriesNumber",
    "series_description": "SeriesDescription",
    "series_date": "SeriesDate",
    "body_part": "BodyPartExamined",
    "manufacturer": "Manufacturer",
    "model": "ManufacturerModelName",
    "software_versions": "SoftwareVersions",
    "device_serial": "DeviceSerialNumber",
    "station_name": "StationName",
    "institution": "InstitutionName",
    "frame_of_reference_uid": "FrameOfReferenceUID",
}

_PARAMETER_FIELDS = {
    "slice_thickness": "SliceThickness",
    "spacing_between_slices": "SpacingBetweenSlices",
    "convolution_kernel": "ConvolutionKernel",
    "kvp": "KVP",
    "exposure": "Exposure",
    "sequence_name": "SequenceName",
    "protocol_name": "ProtocolName",
    "repetition_time": "RepetitionTime",
    "echo_time": "EchoTime",
    "flip_angle": "FlipAngle",
    "magnetic_field_strength": "MagneticFieldStrength",
    "contrast_agent": "ContrastBolusAgent",
    "photometric_interpretation": "PhotometricInterpretation",
    "bits_allocated": "BitsAllocated",
    "rows": "Rows",
    "columns": "Columns",
}
_NUMERIC = {
    "slice_thickness",
    "spacing_between_slices",
    "kvp",
    "exposure",
    "repetition_time",
    "echo_time",
    "flip_angle",
    "magnetic_field_strength",
}
_INTEGER = {"rows", "columns", "bits_allocated", "series_number"}


def _representative(instances: Sequence[InstanceInfo]) -> InstanceInfo:
    """The instance whose values describe the series: an image of the main stack."""
    images = [i for i in instances if i.has_pixels and not i.is_localizer]
    return (images or list(instances))[0]


def series_values(instances: Sequence[InstanceInfo]) -> dict[str, Any]:
    """Series-level registry values from the instances' tags."""
    tags = _representative(instances).tags
    out: dict[str, Any] = {}
    for column, keyword in SERIES_FIELDS.items():
        out[column] = _int(tags.get(keyword)) if column in _INTEGER else _text(tags.get(keyword))
    return out


def _parameters(instances: Sequence[InstanceInfo]) -> dict[str, Any]:
    info = _representative(instances)
    tags = info.tags
    out: dict[str, Any] = {}
    for column, keyword in _PARAMETER_FIELDS.items():
        value = tags.get(keyword)
        if column in _NUMERIC:
            out[column] = _num(value)
        elif column in _INTEGER:
            out[column] = _int(value)
        else:
            out[column] = _text(value, 64)
    if out["slice_thickness"] is None and info.slice_thickness is not None:
        out["slice_thickness"] = info.slice_thickness  # enhanced objects: functional groups
    if info.pixel_spacing:
        out["pixel_spacing_row"], out["pixel_spacing_col"] = info.pixel_spacing
    return out


def _upsert(
    conn: Connection,
    table: sa.Table,
    key: dict[str, Any],
    values: dict[str, Any],
    on_insert: dict[str, Any] | None = None,
) -> int:
    cond = [table.c[k] == v for k, v in key.items()]
    pk = next(iter(table.primary_key.columns))
    row = conn.execute(sa.select(pk).where(*cond)).first()
    if row is None:
        res = conn.execute(sa.insert(table).values(**key, **values, **(on_insert or {})))
        return int(res.inserted_primary_key[0])  # type: ignore[index]
    conn.execute(sa.update(table).where(*cond).values(**values))
    return int(row[0])


def register_series(
    conn: Connection,
    *,
    plans: Sequence[StackPlan],
    results: Sequence[StackResult],
    new_uids: set[str],
) -> tuple[int, list[str]]:
    """Write one series' rows; return its id and the store paths no longer referenced."""
    instances = [i for p in plans for i in p.instances]
    info = _representative(instances)
    tags = info.tags
    now = utcnow()
    project_id = ensure_project(conn, DEFAULT_PROJECT)
    subject_id = ensure_subject(
        conn,
        project_id,
        _text(tags.get("PatientID"), 64) or "",
        issuer=_text(tags.get("IssuerOfPatientID"), 64) or "",
        patient_name=_text(tags.get("PatientName"), 324),
        birth_date=_text(tags.get("PatientBirthDate"), 8),
        sex=_text(tags.get("PatientSex"), 16),
    )
    study_id = ensure_study(
        conn,
        subject_id,
        info.study_instance_uid,
        study_date=_text(tags.get("StudyDate"), 8),
        study_time=_text(tags.get("StudyTime"), 32),
        study_description=_text(tags.get("StudyDescription")),
        accession_number=_text(tags.get("AccessionNumber"), 64),
        study_id=_text(tags.get("StudyID"), 64),
    )
    values = series_values(instances)
    series_id = _upsert(
        conn,
        model.series,
        {"series_instance_uid": info.series_instance_uid},
        {**values, "study_id": study_id, "n_instances": len(instances), "updated_at": now},
        on_insert={"created_at": now},
    )
    _upsert(conn, model.image_parameters, {"series_id": series_id}, _parameters(instances))

    old_paths = {
        r.store_path
        for r in conn.execute(
            sa.select(model.stack.c.store_path).where(model.stack.c.series_id == series_id)
        )
    }
    # detach instances, then replace the stack rows
    conn.execute(
        sa.update(model.instance)
        .where(model.instance.c.series_id == series_id)
        .values(stack_id=None, stack_index=None, first_frame=None)
    )
    conn.execute(sa.delete(model.stack).where(model.stack.c.series_id == series_id))
    for plan, result in zip(plans, results, strict=True):
        assert result.store_path is not None and result.manifest_sha256 is not None
        stack_id = int(
            conn.execute(
                sa.insert(model.stack).values(
                    series_id=series_id,
                    stack_key=f"{info.series_instance_uid}-{plan.number}",
                    stack_number=plan.number,
                    store_path=result.store_path,
                    content_hash=plan.content_hash,
                    frame_dim=plan.frame_dim,
                    shape=list(result.shape),
                    dtype=result.dtype or "none",
                    reason=plan.reason,
                    layout_version=LAYOUT_VERSION,
                    manifest_sha256=result.manifest_sha256,
                    stored_bytes=result.stored_bytes,
                    source_bytes=result.source_bytes,
                    created_at=now,
                )
            ).inserted_primary_key[0]  # type: ignore[index]
        )
        first_frames = plan.first_frame_of()
        for index, inst in enumerate(plan.instances):
            placement = {
                "stack_id": stack_id,
                "stack_index": index,
                "first_frame": first_frames.get(inst.sop_instance_uid),
            }
            if inst.sop_instance_uid in new_uids:
                source = inst.source
                conn.execute(
                    sa.insert(model.instance).values(
                        series_id=series_id,
                        sop_instance_uid=inst.sop_instance_uid,
                        sop_class_uid=inst.sop_class_uid,
                        instance_number=inst.instance_number,
                        source_sha256=inst.sha256,
                        source_path=source.locator,
                        source_size=inst.size,
                        transfer_syntax_uid=inst.transfer_syntax_uid,
                        n_frames=inst.n_frames if inst.has_pixels else 0,
                        acquisition_datetime=inst.acquisition_time,
                        tags=inst.tags,
                        ingested_at=now,
                        **placement,
                    )
                )
            else:
                conn.execute(
                    sa.update(model.instance)
                    .where(model.instance.c.sop_instance_uid == inst.sop_instance_uid)
                    .values(**placement)
                )
    new_paths = {r.store_path for r in results}
    return series_id, sorted(old_paths - new_paths)
