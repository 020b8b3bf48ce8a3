"""The registry's data model as SQLAlchemy Core tables (ARCHITECTURE.md §4).

project → subject → visit → study → series → stack → instance, with image parameters
as queryable columns, the knowledge base of scanners, alerts, jobs, quarantined inputs,
raw files, raw↔series links, derived measures and non-imaging rows. The same tables run
on SQLite (default) and PostgreSQL (``IMAGELAKE_DB_URL``).

Column names follow the field's words; timestamps are timezone-aware UTC; free-form
details are JSON.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

__all__ = [
    "SCHEMA_VERSION",
    "alert",
    "image_parameters",
    "instance",
    "job",
    "link",
    "measure",
    "metadata",
    "nonimaging",
    "project",
    "quarantine",
    "raw_file",
    "scanner",
    "scanner_version",
    "series",
    "stack",
    "study",
    "subject",
    "visit",
]

#: Bumped when a table changes; stored in ``schema_info`` and checked on open.
SCHEMA_VERSION = 1

metadata = MetaData()

UID = String(64)
TS = DateTime(timezone=True)


def _id() -> Column[int]:
    return Column("id", Integer, primary_key=True, autoincrement=True)


schema_info = Table(
    "schema_info",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

project = Table(
    "project",
    metadata,
    _id(),
    Column("name", String(128), nullable=False, unique=True),
    Column("description", Text),
    Column("created_at", TS, nullable=False),
)

subject = Table(
    "subject",
    metadata,
    _id(),
    Column("project_id", ForeignKey("project.id"), nullable=False),
    Column("patient_id", String(64), nullable=False),
    Column("issuer", String(64), nullable=False, default=""),
    Column("patient_name", String(324)),
    Column("birth_date", String(8)),
    Column("sex", String(16)),
    Column("created_at", TS, nullable=False),
    UniqueConstraint("project_id", "patient_id", "issuer"),
)

visit = Table(
    "visit",
    metadata,
    _id(),
    Column("subject_id", ForeignKey("subject.id"), nullable=False),
    Column("label", String(64), nullable=False),
    Column("visit_date", String(8)),
    UniqueConstraint("subject_id", "label"),
)

study = Table(
    "study",
    metadata,
    _id(),
    Column("subject_id", ForeignKey("subject.id"), nullable=False),
    Column("visit_id", ForeignKey("visit.id")),
    Column("study_instance_uid", UID, nullable=False, unique=True),
    Column("study_date", String(8)),
    Column("study_time", String(32)),
    Column("study_description", String(256)),
    Column("accession_number", String(64)),
    Column("study_id", String(64)),
    Column("created_at", TS, nullable=False),
)

scanner = Table(
    "scanner",
    metadata,
    _id(),
    Column("manufacturer", String(128), nullable=False),
    Column("model", String(128), nullable=False),
    Column("modality", String(16)),
    Column("raw_formats", JSON, nullable=False, default=list),
    Column("notes", Text),
    Column("source", String(32), nullable=False, default="catalog"),
    UniqueConstraint("manufacturer", "model"),
)

scanner_version = Table(
    "scanner_version",
    metadata,
    _id(),
    Column("scanner_id", ForeignKey("scanner.id", ondelete="CASCADE"), nullable=False),
    Column("software_version", String(256), nullable=False),
    Column("emulator", String(128)),
    Column("raw_formats", JSON, nullable=False, default=list),
    UniqueConstraint("scanner_id", "software_version"),
)

series = Table(
    "series",
    metadata,
    _id(),
    Column("study_id", ForeignKey("study.id"), nullable=False),
    Column("series_instance_uid", UID, nullable=False, unique=True),
    Column("modality", String(16)),
    Column("series_number", Integer),
    Column("series_description", String(256)),
    Column("series_date", String(8)),
    Column("body_part", String(64)),
    Column("manufacturer", String(128)),
    Column("model", String(128)),
    Column("software_versions", String(256)),
    Column("device_serial", String(64)),
    Column("station_name", String(64)),
    Column("institution", String(128)),
    Column("frame_of_reference_uid", UID),
    Column("scanner_id", ForeignKey("scanner.id")),
    Column("n_instances", Integer, nullable=False, default=0),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
)
Index("ix_series_modality", series.c.modality)
Index("ix_series_scanner", series.c.manufacturer, series.c.model)

image_parameters = Table(
    "image_parameters",
    metadata,
    Column("series_id", ForeignKey("series.id", ondelete="CASCADE"), primary_key=True),
    Column("rows", Integer),
    Column("columns", Integer),
    Column("pixel_spacing_row", Float),
    Column("pixel_spacing_col", Float),
    Column("slice_thickness", Float),
    Column("spacing_between_slices", Float),
    Column("convolution_kernel", String(64)),
    Column("kvp", Float),
    Column("exposure", Float),
    Column("sequence_name", String(64)),
    Column("protocol_name", String(64)),
    Column("repetition_time", Float),
    Column("echo_time", Float),
    Column("flip_angle", Float),
    Column("magnetic_field_strength", Float),
    Column("contrast_agent", String(64)),
    Column("photometric_interpretation", String(16)),
    Column("bits_allocated", Integer),
)

stack = Table(
    "stack",
    metadata,
    _id(),
    Column("series_id", ForeignKey("series.id", ondelete="CASCADE"), nullable=False),
    Column("stack_key", String(128), nullable=False, unique=True),
    Column("stack_number", Integer, nullable=False),
    Column("store_path", String(512), nullable=False, unique=True),
    Column("content_hash", String(64), nullable=False),
    Column("frame_dim", String(16), nullable=False),
    Column("shape", JSON, nullable=False),
    Column("dtype", String(16), nullable=False),
    Column("reason", Text),
    Column("layout_version", Integer, nullable=False),
    Column("manifest_sha256", String(64), nullable=False),
    Column("stored_bytes", BigInteger, nullable=False),
    Column("source_bytes", BigInteger, nullable=False),
    Column("created_at", TS, nullable=False),
    UniqueConstraint("series_id", "stack_number"),
)

instance = Table(
    "instance",
    metadata,
    _id(),
    Column("series_id", ForeignKey("series.id", ondelete="CASCADE"), nullable=False),
    Column("stack_id", ForeignKey("stack.id")),
    Column("sop_instance_uid", UID, nullable=False, unique=True),
    Column("sop_class_uid", UID),
    Column("instance_number", Integer),
    Column("source_sha256", String(64), nullable=False),
    Column("source_path", Text),
    Column("source_size", BigInteger),
    Column("transfer_syntax_uid", UID),
    Column("n_frames", Integer, nullable=False, default=1),
    Column("stack_index", Integer),  # position in the stack store's headers
    Column("first_frame", Integer),  # first frame of this instance in the stack
    Column("acquisition_datetime", String(32)),
    Column("tags", JSON, nullable=False),
    Column("ingested_at", TS, nullable=False),
)
Index("ix_instance_series", instance.c.series_id)
Index("ix_instance_stack", instance.c.stack_id)

alert = Table(
    "alert",
    metadata,
    _id(),
    Column("kind", String(64), nullable=False),
    Column("key", String(512), nullable=False),
    Column("message", Text, nullable=False),
    Column("details", JSON, nullable=False, default=dict),
    Column("count", Integer, nullable=False, default=1),
    Column("first_seen", TS, nullable=False),
    Column("last_seen", TS, nullable=False),
    Column("status", String(16), nullable=False, default="open"),
    UniqueConstraint("kind", "key"),
)

job = Table(
    "job",
    metadata,
    _id(),
    Column("kind", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("user", String(128), nullable=False),
    Column("params", JSON, nullable=False, default=dict),
    Column("summary", JSON, nullable=False, default=dict),
    Column("started_at", TS, nullable=False),
    Column("finished_at", TS),
)

quarantine = Table(
    "quarantine",
    metadata,
    _id(),
    Column("job_id", ForeignKey("job.id")),
    Column("source", Text, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("reason", Text, nullable=False),
    Column("error", String(64), nullable=False),
    Column("path", String(512), nullable=False),
    Column("quarantined_at", TS, nullable=False),
    UniqueConstraint("sha256", "reason"),
)

raw_file = Table(
    "raw_file",
    metadata,
    _id(),
    Column("sha256", String(64), nullable=False, unique=True),
    Column("format", String(64), nullable=False),
    Column("source_path", Text),
    Column("size", BigInteger, nullable=False),
    Column("store_path", String(512)),
    Column("subject_id", ForeignKey("subject.id")),
    Column("manufacturer", String(128)),
    Column("model", String(128)),
    Column("software_version", String(256)),
    Column("device_serial", String(64)),
    Column("acquired_at", String(32)),
    Column("scanner_id", ForeignKey("scanner.id")),
    Column("meta", JSON, nullable=False, default=dict),
    Column("ingested_at", TS, nullable=False),
)

link = Table(
    "link",
    metadata,
    _id(),
    Column("raw_id", ForeignKey("raw_file.id", ondelete="CASCADE"), nullable=False),
    Column("series_id", ForeignKey("series.id", ondelete="CASCADE"), nullable=False),
    Column("method", String(32), nullable=False),
    Column("confidence", Float, nullable=False),
    Column("evidence", JSON, nullable=False, default=list),
    Column("status", String(16), nullable=False),
    Column("decided_by", String(128)),
    Column("decided_at", TS),
    Column("created_at", TS, nullable=False),
    UniqueConstraint("raw_id", "series_id"),
)

measure = Table(
    "measure",
    metadata,
    _id(),
    Column("series_id", ForeignKey("series.id", ondelete="CASCADE")),
    Column("raw_id", ForeignKey("raw_file.id", ondelete="CASCADE")),
    Column("name", String(128), nullable=False),
    Column("value", Float),
    Column("unit", String(32)),
    Column("payload", JSON),
    Column("tool", String(256), nullable=False),
    Column("tool_version", String(128), nullable=False),
    Column("params", JSON, nullable=False, default=dict),
    Column("inputs", JSON, nullable=False, default=dict),
    Column("provenance_key", String(64), nullable=False),
    Column("user", String(128), nullable=False),
    Column("created_at", TS, nullable=False),
)
Index("ix_measure_prov", measure.c.provenance_key)

nonimaging = Table(
    "nonimaging",
    metadata,
    _id(),
    Column("subject_id", ForeignKey("subject.id"), nullable=False),
    Column("visit_id", ForeignKey("visit.id")),
    Column("source", String(256), nullable=False),
    Column("row", JSON, nullable=False),
    Column("created_at", TS, nullable=False),
)
