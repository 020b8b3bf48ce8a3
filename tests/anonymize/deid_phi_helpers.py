"""Helpers for the de-identification tests: real files, and what in them identifies someone.

What counts as identifying is decided here, independently of the table the engine applies: every
person name, date, non-standard UID, private attribute value, and the values of a list of
attributes that name or locate the patient, the visit, the institution or the device.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pydicom
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.uid import UID_dictionary

SECRET = b"imagelake-test-secret-0123456789"

# Attributes whose values identify the patient, the visit, the site or the device (HIPAA-style
# identifiers), chosen from what the attributes mean, not from Table E.1-1.
IDENTIFYING_KEYWORDS = frozenset(
    {
        "PatientID",
        "OtherPatientIDs",
        "IssuerOfPatientID",
        "PatientAddress",
        "PatientTelephoneNumbers",
        "PatientAge",
        "PatientBirthTime",
        "PatientComments",
        "AdditionalPatientHistory",
        "MedicalRecordLocator",
        "MilitaryRank",
        "BranchOfService",
        "Occupation",
        "AccessionNumber",
        "StudyID",
        "AdmissionID",
        "InstitutionName",
        "InstitutionAddress",
        "InstitutionalDepartmentName",
        "ReferringPhysicianAddress",
        "ReferringPhysicianTelephoneNumbers",
        "StationName",
        "DeviceSerialNumber",
        "DetectorID",
        "PlateID",
        "GantryID",
        "RequestedProcedureID",
        "PerformedProcedureStepID",
        "ScheduledProcedureStepID",
        "PlacerOrderNumberImagingServiceRequest",
        "FillerOrderNumberImagingServiceRequest",
        "StudyDescription",
        "SeriesDescription",
        "PerformedProcedureStepDescription",
        "RequestedProcedureDescription",
        "ProtocolName",
        "ImageComments",
        "StudyComments",
        "DerivationDescription",
        "TextValue",
        "ContentLabel",
    }
)
MIN_LEN = 5  # shorter values ("M", "1", "CT") match by chance and identify nobody


def pydicom_files() -> Path:
    return Path(pydicom.__file__).parent / "data" / "test_files"


def pydicom_data_files() -> Path:
    import data_store

    return Path(data_store.__file__).parent / "data"


def deid_data_files() -> Path:
    import deid_data

    return Path(deid_data.__file__).parent / "data"


def real_files() -> dict[str, Path]:
    """Real DICOM files with identifiers, by a short name."""
    files = {
        f"deid-data/{p.parent.name}/{p.name}": p
        for p in sorted(deid_data_files().rglob("*.dcm"))
        if p.stat().st_size < 20_000_000  # the 43 MB cine adds time, not coverage
    }
    for name in (
        "CT_small.dcm",
        "MR_small.dcm",
        "rtplan.dcm",
        "rtdose.dcm",
        "test-SR.dcm",
        "reportsi.dcm",
        "waveform_ecg.dcm",
        "JPEG2000.dcm",
    ):
        files[f"pydicom/{name}"] = pydicom_files() / name
    for name in (
        "MR-SIEMENS-DICOM-WithOverlays.dcm",
        "gdcm-US-ALOKA-16.dcm",
        "eCT_Supplemental.dcm",
    ):
        files[f"pydicom-data/{name}"] = pydicom_data_files() / name
    return files


def _raw_items(ds: Dataset) -> Iterator[tuple[int, str, bytes | None, Dataset | None]]:
    """(tag, VR, raw value bytes, None) for leaf elements; (tag, "SQ", None, item) per item."""
    for tag in list(ds.keys()):
        raw = ds.get_item(tag)
        vr = raw.VR if raw is not None else None
        if vr is None or vr == "UN":
            try:
                vr = dictionary_VR(tag)
            except KeyError:
                vr = vr or "UN"
        if vr == "SQ" or not isinstance(raw, RawDataElement):
            elem = ds[tag]
            if elem.VR == "SQ":
                for item in elem.value or ():
                    yield tag, "SQ", None, item
                continue
            value = elem.value
            if isinstance(value, bytes):
                yield tag, elem.VR, value, None
            elif value is not None:
                yield tag, elem.VR, str(value).encode("latin-1", "replace"), None
            continue
        yield tag, vr, raw.value, None


def _split(vr: str, value: bytes) -> set[bytes]:
    text = value.strip(b" \x00")
    parts = {text}
    for piece in text.split(b"\\"):
        parts.add(piece.strip(b" \x00"))
        if vr == "PN":
            for group in piece.split(b"="):
                parts.update(c.strip(b" \x00") for c in group.split(b"^"))
    # values made only of zeros ("000000" birth time) are placeholders that identify nobody
    return {p for p in parts if len(p) >= MIN_LEN and p.strip(b"0")}


def _binary_probe(value: bytes) -> set[bytes]:
    head = value[:32]
    return {head} if len(head) >= 16 and len(set(head)) >= 8 else set()


def identifying_values(ds: Dataset) -> tuple[set[bytes], set[bytes]]:
    """(identifying values, values of other public attributes) of ``ds`` at any depth, as bytes."""
    found: set[bytes] = set()
    other: set[bytes] = set()
    for tag, vr, value, item in _raw_items(ds):
        if item is not None:
            sub_found, sub_other = identifying_values(item)
            found |= sub_found
            other |= sub_other
            continue
        if value is None or tag == 0x7FE00010:
            continue
        group, elem = tag >> 16, tag & 0xFFFF
        keyword = pydicom.datadict.keyword_for_tag(tag)
        if group & 1:
            if elem >= 0x1000:  # private data (creators name a vendor, nobody)
                text_like = vr not in (
                    "OB",
                    "OW",
                    "UN",
                    "OF",
                    "OD",
                    "OL",
                    "UL",
                    "US",
                    "SL",
                    "SS",
                    "FL",
                    "FD",
                )
                found |= _split(vr, value) if text_like else _binary_probe(value)
            continue
        if vr == "UI":
            for uid in value.strip(b" \x00").split(b"\\"):
                text = uid.decode("ascii", "replace")
                if text and not text.startswith("1.2.840.10008.") and text not in UID_dictionary:
                    found.add(uid)
        elif vr in ("PN", "DA", "DT") or keyword in IDENTIFYING_KEYWORDS:
            found |= _split(vr, value)
        elif vr not in ("OB", "OW", "OF", "OD", "OL", "UN"):
            other |= _split(vr, value)
    return found, other


def phi_candidates(path: Path) -> set[bytes]:
    """Identifying values of the file at ``path`` that a byte scan of an output can look for.

    Values that are also (part of) the value of a non-identifying public attribute (an
    institution called like the manufacturer, a private copy of a kept value), or that occur in the input's own pixel data bytes (which the
    de-identification keeps), cannot be told apart by a byte scan and are left out.
    """
    ds = pydicom.dcmread(path)
    found, other = identifying_values(ds)
    pixels = ds.get_item(0x7FE00010)
    pixel_bytes = pixels.value if pixels is not None and isinstance(pixels.value, bytes) else b""
    return {v for v in found if v not in pixel_bytes and not any(v in o for o in other)}


def to_bytes(ds: Dataset) -> bytes:
    """The dataset written as a DICOM file."""
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=False)
    return buf.getvalue()


def uid_pairs(before: Dataset, after: Dataset) -> Iterator[tuple[str, str]]:
    """(input UID, output UID) for every UI attribute present at the same place in both."""
    for tag in list(before.keys()):
        if tag not in after:
            continue
        a, b = before[tag], after[tag]
        if a.VR == "SQ" and b.VR == "SQ":
            for item_a, item_b in zip(a.value or (), b.value or (), strict=False):
                yield from uid_pairs(item_a, item_b)
        elif a.VR == "UI" and a.value and b.value:
            va = a.value if a.VM > 1 else [a.value]
            vb = b.value if b.VM > 1 else [b.value]
            yield from zip((str(v) for v in va), (str(v) for v in vb), strict=False)
