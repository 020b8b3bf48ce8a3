"""Identities and the DICOM modules every synthetic image shares.

Everything here is deterministic: UIDs are hashed from the parts that identify a thing
(seed, patient, series number...), dates and times come from the caller, so the same call
writes the same bytes.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal

import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian, generate_uid

from imagelake.errors import ConfigError

__all__ = [
    "DEFAULT_CT_PATIENT",
    "DEFAULT_MR_PATIENT",
    "GE_SIGNA_PREMIER",
    "SIEMENS_SOMATOM_FORCE",
    "SYNTHETIC_COMMENT",
    "InstanceFactory",
    "Patient",
    "Scanner",
    "SeriesContext",
    "base_dataset",
    "da",
    "dt_str",
    "stamp_instance",
    "synthetic_uid",
    "tm",
]

#: Written to ImageComments of every synthetic instance, so nobody mistakes it for a person.
SYNTHETIC_COMMENT = "SYNTHETIC imagelake test data"

_UID_NAMESPACE = "imagelake.synthetic"
_DEFAULT_STUDY_DATETIME = datetime(2024, 3, 5, 8, 15, 0)


@dataclass(frozen=True)
class Scanner:
    """The General Equipment module of a synthetic series.

    Parameters
    ----------
    manufacturer, model, software_versions
        Manufacturer, ManufacturerModelName and SoftwareVersions, as the scanner writes them;
        these are what the knowledge base (``catalog/scanners.yaml``) matches on.
    device_serial_number, station_name, institution_name
        DeviceSerialNumber, StationName and InstitutionName (obviously synthetic by default).
    """

    manufacturer: str
    model: str
    software_versions: str
    device_serial_number: str = "SYN-000001"
    station_name: str = "SYNSTATION01"
    institution_name: str = "SYNTHETIC HOSPITAL"


@dataclass(frozen=True)
class Patient:
    """A synthetic patient (Patient and Patient Study modules).

    Parameters
    ----------
    name
        PatientName; keep it obviously fake (``SYNTHETIC^...``).
    id
        PatientID.
    birth_date
        PatientBirthDate; PatientAge is derived from it at the study date.
    sex
        PatientSex: ``"F"``, ``"M"`` or ``"O"``.
    weight_kg, height_m
        PatientWeight and PatientSize.
    """

    name: str = "SYNTHETIC^PATIENT^001"
    id: str = "SYN-001"
    birth_date: date = date(1961, 6, 15)
    sex: Literal["F", "M", "O"] = "O"
    weight_kg: float = 75.0
    height_m: float = 1.75


#: A scanner listed in ``catalog/scanners.yaml`` with its known software version.
SIEMENS_SOMATOM_FORCE = Scanner(
    "SIEMENS", "SOMATOM Force", "syngo CT VA50A", "SYN-75001", "SYNCTAWP75001"
)
#: A known MR scanner (``catalog/scanners.yaml``).
GE_SIGNA_PREMIER = Scanner(
    "GE MEDICAL SYSTEMS", "SIGNA Premier", "MR30.1_R01", "SYN-000MR1", "SYNMRC01"
)
DEFAULT_CT_PATIENT = Patient("SYNTHETIC^CT^001", "SYN-CT-001", date(1961, 6, 15), "F", 68.0, 1.66)
DEFAULT_MR_PATIENT = Patient("SYNTHETIC^MR^001", "SYN-MR-001", date(1975, 2, 3), "M", 81.0, 1.80)


def synthetic_uid(*parts: object) -> UID:
    """A UID under pydicom's root, derived deterministically from ``parts``.

    Parameters
    ----------
    *parts
        Anything that identifies the object (seed, role, numbers...); equal parts give equal UIDs.

    Returns
    -------
    pydicom.uid.UID
        At most 64 characters, valid.
    """
    return generate_uid(entropy_srcs=[_UID_NAMESPACE, *(repr(p) for p in parts)])


def da(value: date | datetime) -> str:
    """Format a DICOM DA value (``YYYYMMDD``)."""
    return value.strftime("%Y%m%d")


def tm(value: datetime) -> str:
    """Format a DICOM TM value with milliseconds (``HHMMSS.fff``)."""
    return value.strftime("%H%M%S.") + f"{value.microsecond // 1000:03d}"


def dt_str(value: datetime) -> str:
    """Format a DICOM DT value (``YYYYMMDDHHMMSS.fff``)."""
    return da(value) + tm(value)


def _age(birth: date, on: date) -> str:
    years = on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))
    return f"{max(years, 0):03d}Y"


def _digits(text: str, n: int) -> str:
    return str(int(hashlib.sha256(text.encode()).hexdigest(), 16))[:n]


@dataclass(frozen=True)
class SeriesContext:
    """What all instances of one synthetic series share (internal)."""

    modality: str
    sop_class_uid: str
    scanner: Scanner
    patient: Patient
    study_uid: str
    series_uid: str
    frame_of_reference_uid: str
    study_datetime: datetime
    series_number: int
    series_description: str
    protocol_name: str
    body_part: str

    @property
    def series_datetime(self) -> datetime:
        """When the series starts: a few minutes into the study per series number."""
        return self.study_datetime + timedelta(minutes=2 * self.series_number)

    @classmethod
    def create(
        cls,
        *,
        modality: str,
        sop_class_uid: str,
        scanner: Scanner,
        patient: Patient,
        seed: int,
        study_uid: str | None,
        series_uid: str | None,
        study_datetime: datetime | None,
        series_number: int,
        series_description: str,
        protocol_name: str,
        body_part: str,
        identity: Sequence[object],
    ) -> SeriesContext:
        """Fill in UIDs and dates not given, deterministically from ``seed`` and ``identity``."""
        if series_number < 0:
            raise ConfigError(f"series_number must be >= 0, got {series_number}")
        study_uid = study_uid or synthetic_uid("study", seed, patient.id)
        series_uid = series_uid or synthetic_uid("series", study_uid, series_number, *identity)
        if study_datetime is None:
            study_datetime = _DEFAULT_STUDY_DATETIME + timedelta(days=seed % 1000)
        return cls(
            modality=modality,
            sop_class_uid=sop_class_uid,
            scanner=scanner,
            patient=patient,
            study_uid=study_uid,
            series_uid=series_uid,
            # One frame of reference per study: series of one study share patient positioning.
            frame_of_reference_uid=synthetic_uid("frame-of-reference", study_uid, modality),
            study_datetime=study_datetime,
            series_number=series_number,
            series_description=series_description,
            protocol_name=protocol_name,
            body_part=body_part,
        )


def base_dataset(ctx: SeriesContext) -> Dataset:
    """A dataset with file meta and every module shared by CT and MR images.

    Sets SOP Common, Patient, Patient Study, General Study, General Series, Frame of
    Reference, General Equipment and the series-level part of General Image. Per-instance
    values come from :func:`stamp_instance`; the caller adds the geometry, pixel and
    modality modules.
    """
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(ctx.sop_class_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = f"PYDICOM {pydicom.__version__}"[:16]

    ds = Dataset()
    ds.file_meta = meta
    p, s, study = ctx.patient, ctx.scanner, ctx.study_datetime
    series = ctx.series_datetime
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = ctx.sop_class_uid
    ds.StudyDate = da(study)
    ds.SeriesDate = da(series)
    ds.StudyTime = tm(study)
    ds.SeriesTime = tm(series)
    ds.AccessionNumber = "SYN" + _digits(ctx.study_uid, 9)
    ds.Modality = ctx.modality
    ds.Manufacturer = s.manufacturer
    ds.InstitutionName = s.institution_name
    ds.ReferringPhysicianName = "SYNTHETIC^REFERRER"
    ds.StationName = s.station_name
    ds.StudyDescription = f"SYNTHETIC {ctx.body_part.title()}"
    ds.SeriesDescription = ctx.series_description
    ds.ManufacturerModelName = s.model
    ds.PatientName = p.name
    ds.PatientID = p.id
    ds.PatientBirthDate = da(p.birth_date)
    ds.PatientSex = p.sex
    ds.PatientIdentityRemoved = "NO"
    ds.PatientAge = _age(p.birth_date, study.date())
    ds.PatientSize = f"{p.height_m:.2f}"
    ds.PatientWeight = f"{p.weight_kg:.1f}"
    ds.BodyPartExamined = ctx.body_part
    ds.DeviceSerialNumber = s.device_serial_number
    ds.SoftwareVersions = s.software_versions
    ds.ProtocolName = ctx.protocol_name
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = ctx.study_uid
    ds.SeriesInstanceUID = ctx.series_uid
    ds.StudyID = _digits(ctx.study_uid, 6)
    ds.SeriesNumber = ctx.series_number
    ds.AcquisitionNumber = 1
    ds.FrameOfReferenceUID = ctx.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.ImageComments = SYNTHETIC_COMMENT
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    return ds


def stamp_instance(
    ds: Dataset,
    *,
    sop_instance_uid: str,
    instance_number: int,
    acquisition: datetime,
    content: datetime,
) -> None:
    """Set the values that identify and date one instance (and its file meta)."""
    ds.file_meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
    ds.SOPInstanceUID = sop_instance_uid
    ds.InstanceNumber = instance_number
    ds.InstanceCreationDate = ds.ContentDate = da(content)
    ds.InstanceCreationTime = ds.ContentTime = tm(content)
    ds.AcquisitionDate = da(acquisition)
    ds.AcquisitionTime = tm(acquisition)
    ds.AcquisitionDateTime = dt_str(acquisition)


_STAMPED = (
    "SOPInstanceUID",
    "InstanceNumber",
    "InstanceCreationDate",
    "InstanceCreationTime",
    "ContentDate",
    "ContentTime",
    "AcquisitionDate",
    "AcquisitionTime",
    "AcquisitionDateTime",
)
_MEDIA_INSTANCE_TAG = 0x00020003


class InstanceFactory:
    """Makes the instances of a series from one template, cheaply.

    Setting ~90 elements through pydicom's attribute access costs milliseconds per
    instance, and a series repeats all but a dozen of them. The template (validated as usual
    when it was built) is encoded once; each new instance starts from a fresh dict of the
    template's raw elements. Raw elements are immutable tuples, and pydicom converts one into
    a new element of that instance on first access, so changing one instance never changes
    another. Unchanged elements are written back verbatim.

    Parameters
    ----------
    template
        A complete instance without PixelData, with file meta.
    varying
        Keywords every instance sets itself; leaving them out of the template saves decoding
        the template's value before replacing it. SOPInstanceUID and the instance values of
        :func:`stamp_instance` are always left out.
    """

    def __init__(self, template: Dataset, varying: Iterable[str] = ()) -> None:
        buffer = io.BytesIO()
        pydicom.dcmwrite(buffer, template, enforce_file_format=True)
        buffer.seek(0)
        decoded = pydicom.dcmread(buffer)
        skip = {tag_for_keyword(k) for k in (*_STAMPED, *varying)}
        self._raw = {elem.tag: elem for elem in decoded.elements() if elem.tag not in skip}
        self._raw_meta = {
            elem.tag: elem
            for elem in decoded.file_meta.elements()
            if elem.tag.element != 0 and elem.tag != _MEDIA_INSTANCE_TAG
        }
        self._charset = decoded.original_character_set

    def new(self) -> Dataset:
        """A new instance equal to the template (set its own values with :func:`stamp_instance`)."""
        ds = Dataset(dict(self._raw))
        ds.set_original_encoding(False, True, self._charset)
        ds.file_meta = FileMetaDataset(dict(self._raw_meta))
        return ds
