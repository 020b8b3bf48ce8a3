"""The index's layout: file names, versions, and the DICOM keywords of series columns.

Shared by the writer (:mod:`imagelake.index._snapshot`) and the reader
(:mod:`imagelake.index._query`) so that both agree on names without importing each other.
"""

from __future__ import annotations

import re

__all__ = [
    "FILES",
    "INDEX_DIR",
    "INDEX_SCHEMA_VERSION",
    "INSTANCES_FILE",
    "KEYWORD_COLUMNS",
    "LINKS_FILE",
    "MEASURES_FILE",
    "MULTI_VALUE_SEPARATOR",
    "RAW_FILE",
    "SERIES_FILE",
    "SNAPSHOT_FILE",
    "is_private_tag",
    "normalize_tag_key",
]

#: Bumped when a file's columns or their meaning change (recorded in ``_snapshot.json``).
INDEX_SCHEMA_VERSION = 1

INDEX_DIR = "index"
SERIES_FILE = f"{INDEX_DIR}/series.parquet"
INSTANCES_FILE = f"{INDEX_DIR}/instances.parquet"
RAW_FILE = f"{INDEX_DIR}/raw.parquet"
LINKS_FILE = f"{INDEX_DIR}/links.parquet"
MEASURES_FILE = f"{INDEX_DIR}/measures.parquet"
SNAPSHOT_FILE = f"{INDEX_DIR}/_snapshot.json"

#: Name → relative path of every Parquet file of a snapshot, in the order they are written.
FILES = {
    "series": SERIES_FILE,
    "instances": INSTANCES_FILE,
    "raw": RAW_FILE,
    "links": LINKS_FILE,
    "measures": MEASURES_FILE,
}

#: How the values of a multi-valued tag are joined into one string (DICOM's own delimiter).
MULTI_VALUE_SEPARATOR = "\\"

#: DICOM keyword → column of ``series.parquet``, so a query may name either.
KEYWORD_COLUMNS: dict[str, str] = {
    "PatientID": "patient_id",
    "IssuerOfPatientID": "issuer",
    "PatientName": "patient_name",
    "PatientBirthDate": "birth_date",
    "PatientSex": "sex",
    "StudyInstanceUID": "study_instance_uid",
    "StudyDate": "study_date",
    "StudyTime": "study_time",
    "StudyDescription": "study_description",
    "AccessionNumber": "accession_number",
    "StudyID": "dicom_study_id",
    "SeriesInstanceUID": "series_instance_uid",
    "Modality": "modality",
    "SeriesNumber": "series_number",
    "SeriesDescription": "series_description",
    "SeriesDate": "series_date",
    "BodyPartExamined": "body_part",
    "Manufacturer": "manufacturer",
    "ManufacturerModelName": "model",
    "SoftwareVersions": "software_versions",
    "DeviceSerialNumber": "device_serial",
    "StationName": "station_name",
    "InstitutionName": "institution",
    "FrameOfReferenceUID": "frame_of_reference_uid",
    "Rows": "rows",
    "Columns": "columns",
    "SliceThickness": "slice_thickness",
    "SpacingBetweenSlices": "spacing_between_slices",
    "ConvolutionKernel": "convolution_kernel",
    "KVP": "kvp",
    "Exposure": "exposure",
    "SequenceName": "sequence_name",
    "ProtocolName": "protocol_name",
    "RepetitionTime": "repetition_time",
    "EchoTime": "echo_time",
    "FlipAngle": "flip_angle",
    "MagneticFieldStrength": "magnetic_field_strength",
    "ContrastBolusAgent": "contrast_agent",
    "PhotometricInterpretation": "photometric_interpretation",
    "BitsAllocated": "bits_allocated",
}

_PRIVATE = re.compile(r"^[0-9A-F]{8}$")
_TAG_SPELLING = re.compile(r"^\(?\s*([0-9A-Fa-f]{4})\s*,?\s*([0-9A-Fa-f]{4})\s*\)?$")


def is_private_tag(key: str) -> bool:
    """Whether ``key`` is an 8-hex-digit tag (private or unknown) rather than a keyword."""
    return bool(_PRIVATE.match(key))


def normalize_tag_key(key: str) -> str:
    """Spell a numeric tag as the index does: ``(0019,100c)`` → ``0019100C``; keywords unchanged."""
    m = _TAG_SPELLING.match(key)
    return (m.group(1) + m.group(2)).upper() if m else key
