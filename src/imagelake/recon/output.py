"""A reconstruction written as a DICOM series (CT or MR Image Storage, single-frame).

The series is derived from raw data, so it is marked as such and made reproducible:

- ImageType ``DERIVED\\PRIMARY`` (value 3 AXIAL for CT, OTHER for MR): DERIVED because
  imagelake computed the pixels from the raw data, not the scanner's own reconstruction;
  PRIMARY because they come straight from the acquisition, not from other images
  (PS3.3 C.7.6.1.1.2).
- MR pixels are unsigned, scaled to 0..4095 with RescaleSlope (dciodvfy warns that the MR
  IOD does not expect a Modality LUT, as it does for vendors who do the same).
- SeriesInstanceUID and SOPInstanceUIDs are hashed from (raw sha256, method, version,
  parameters): running the same reconstruction again writes the same UIDs (and bytes), so
  ingesting it twice deduplicates. Study and Frame of Reference UIDs come from the raw
  header when it has them (the reconstruction lines up with the scanner's own images),
  otherwise they are hashed from the raw sha256.
- The scanner's General Equipment values are copied from the raw header, so the knowledge
  base sees the real scanner; imagelake is named in ContributingEquipmentSequence and
  DerivationDescription states the method and the raw file's sha256.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)

from imagelake._version import __version__
from imagelake.errors import ConfigError
from imagelake.formats import RawMeta
from imagelake.recon._base import ReconResult

__all__ = ["recon_series_uid", "write_recon_series"]

_NAMESPACE = "imagelake.recon"
_SOP_CLASS = {"CT": CTImageStorage, "MR": MRImageStorage}
#: unsigned MR pixels use this many bits' range
_MR_MAX = 4095


def _uid(*parts: object) -> UID:
    return generate_uid(entropy_srcs=[_NAMESPACE, *(str(p) for p in parts)])


def _identity(result: ReconResult, raw_sha256: str) -> str:
    prov = result.provenance
    return json.dumps(
        {
            "raw_sha256": raw_sha256,
            "method": prov.get("method"),
            "version": prov.get("version"),
            "params": prov.get("params", {}),
        },
        sort_keys=True,
        default=str,
    )


def recon_series_uid(result: ReconResult, raw_sha256: str) -> UID:
    """The SeriesInstanceUID a reconstruction of a raw file gets (same inputs, same UID)."""
    return _uid("series", _identity(result, raw_sha256))


def _valid_uid(value: str | None) -> str | None:
    return value if value and UID(value).is_valid else None


def _da_tm(acquired_at: str | None) -> tuple[str, str]:
    if not acquired_at or len(acquired_at) < 10:
        return "", ""
    date = acquired_at[:10].replace("-", "")
    time = acquired_at[11:19].replace(":", "") if len(acquired_at) >= 19 else ""
    return (date, time) if date.isdigit() and len(date) == 8 else ("", "")


def _scale(result: ReconResult) -> tuple[np.ndarray[Any, Any], float, float, int]:
    """Stored pixels, slope, intercept and PixelRepresentation for the modality."""
    vol = np.nan_to_num(result.volume.astype(np.float64))
    if result.modality == "CT":
        low, high = float(vol.min()), float(vol.max())
        slope = max(1.0, (high - low) / 65000.0) if high - low > 65000 else 1.0
        intercept = 0.0 if low >= -32768 and high <= 32767 else float(np.round((low + high) / 2))
        stored = np.clip(np.rint((vol - intercept) / slope), -32768, 32767).astype("<i2")
        return stored, slope, intercept, 1
    peak = float(vol.max())
    slope = float(f"{peak / _MR_MAX:.10g}") if peak > 0 else 1.0
    stored = np.clip(np.rint(np.maximum(vol, 0) / slope), 0, 65535).astype("<u2")
    return stored, slope, 0.0, 0


def _ds(value: float) -> str:
    for digits in range(12, 0, -1):
        text = f"{value:.{digits}g}"
        if len(text) <= 16:
            return text
    raise ConfigError(f"cannot write {value!r} as a DICOM DS")


def _base(
    result: ReconResult,
    meta: RawMeta,
    raw_sha256: str,
    series_uid: str,
    series_number: int,
    series_description: str | None,
) -> Dataset:
    modality = result.modality
    sop_class = _SOP_CLASS[modality]
    prov = result.provenance
    method, version = str(prov.get("method", "?")), str(prov.get("version", "?"))
    date, time = _da_tm(meta.acquired_at)
    ds = Dataset()
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = sop_class
    fm.TransferSyntaxUID = ExplicitVRLittleEndian
    fm.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = fm
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.ImageType = ["DERIVED", "PRIMARY", "AXIAL" if modality == "CT" else "OTHER"]
    ds.SOPClassUID = sop_class
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = date
    ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = time
    ds.AccessionNumber = ""
    ds.Modality = modality
    ds.Manufacturer = meta.manufacturer or ""
    if meta.institution:
        ds.InstitutionName = meta.institution
    ds.ReferringPhysicianName = ""
    if meta.station_name:
        ds.StationName = meta.station_name
    ds.SeriesDescription = (series_description or result.description or method)[:64]
    if meta.model:
        ds.ManufacturerModelName = meta.model
    ds.DerivationDescription = (
        f"Reconstructed from raw data by imagelake {__version__}, method {method} v{version}, "
        f"params {json.dumps(prov.get('params', {}), sort_keys=True, default=str)}; "
        f"raw file sha256 {raw_sha256}"
    )[:1024]
    patient = meta.patient
    ds.PatientName = patient.name or "SYNTHETIC^RECON"
    ds.PatientID = patient.patient_id or f"RECON-{raw_sha256[:12]}"
    birth = str(patient.birth_date or "").strip()
    # a raw header's birth date is not always a valid DA (TWIX writes "xxxxxxxx" when
    # unknown): keep it only when it is YYYYMMDD, else leave the Type 2 element empty
    ds.PatientBirthDate = birth if re.fullmatch(r"\d{8}", birth) else ""
    ds.PatientSex = ""
    if meta.device_serial:
        ds.DeviceSerialNumber = meta.device_serial
    if meta.software_version:
        ds.SoftwareVersions = meta.software_version
    if meta.protocol_name:
        ds.ProtocolName = meta.protocol_name
    ds.PatientPosition = ""
    ds.Laterality = ""
    ds.StudyInstanceUID = _valid_uid(meta.study_instance_uid) or _uid("study", raw_sha256)
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = str(int(hashlib.sha256(ds.StudyInstanceUID.encode()).hexdigest(), 16))[:8]
    ds.SeriesNumber = series_number
    ds.AcquisitionNumber = 1
    ds.FrameOfReferenceUID = _valid_uid(meta.frame_of_reference_uid) or _uid("frame", raw_sha256)
    ds.PositionReferenceIndicator = ""
    ds.ImageOrientationPatient = [_ds(v) for v in result.orientation]
    ds.PixelSpacing = [_ds(result.pixel_spacing[0]), _ds(result.pixel_spacing[1])]
    ds.SliceThickness = _ds(result.slice_thickness)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(result.volume.shape[1]), int(result.volume.shape[2])
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.ImageComments = f"imagelake reference reconstruction ({method} v{version})"
    if modality == "CT":
        ds.KVP = ""
        ds.RescaleType = "HU"
        ds.WindowCenter, ds.WindowWidth = "40", "400"
    else:
        ds.ScanningSequence = "RM"  # research mode: the sequence is not known from raw data
        ds.SequenceVariant = "NONE"
        ds.ScanOptions = ""
        ds.MRAcquisitionType = "2D"
        ds.RepetitionTime = ds.EchoTime = ds.EchoTrainLength = ""
        if meta.sequence_name:
            ds.SequenceName = meta.sequence_name[:16]
    equipment = Dataset()
    equipment.Manufacturer = "imagelake"
    equipment.ManufacturerModelName = f"imagelake recon {method}"
    equipment.SoftwareVersions = [__version__, f"{method} {version}"]
    equipment.ContributionDescription = f"reference reconstruction {method} v{version}"[:64]
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator = "109102", "DCM"
    code.CodeMeaning = "Processing Equipment"
    equipment.PurposeOfReferenceCodeSequence = Sequence([code])
    ds.ContributingEquipmentSequence = Sequence([equipment])
    return ds


def write_recon_series(
    result: ReconResult,
    meta: RawMeta,
    out_dir: str | os.PathLike[str],
    *,
    raw_sha256: str,
    series_number: int = 900,
    series_description: str | None = None,
) -> list[Path]:
    """Write a reconstruction as single-frame CT or MR Image Storage files.

    Parameters
    ----------
    result
        What :meth:`Reconstructor.run` returned (its provenance names method, version, params).
    meta
        The raw file's metadata: study, frame of reference, scanner, patient, date.
    out_dir
        Folder for the files (``IM00001.dcm``...), created.
    raw_sha256
        sha256 of the raw file (or object): goes into the UIDs and DerivationDescription.
    series_number, series_description
        SeriesNumber and SeriesDescription (default: the result's description).

    Returns
    -------
    list of pathlib.Path
        One file per slice, in slice order.

    Raises
    ------
    imagelake.errors.ConfigError
        For a modality other than CT or MR, or a malformed ``raw_sha256``.
    """
    if result.modality not in _SOP_CLASS:
        raise ConfigError(f"cannot write {result.modality!r} images; choose CT or MR")
    if len(raw_sha256) != 64 or any(c not in "0123456789abcdef" for c in raw_sha256.lower()):
        raise ConfigError(f"raw_sha256 must be 64 hex digits, got {raw_sha256!r}")
    raw_sha256 = raw_sha256.lower()
    identity = _identity(result, raw_sha256)
    series_uid = recon_series_uid(result, raw_sha256)
    stored, slope, intercept, representation = _scale(result)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    normal = np.cross(result.orientation[:3], result.orientation[3:])
    paths = []
    for i, position in enumerate(result.positions()):
        ds = _base(result, meta, raw_sha256, series_uid, series_number, series_description)
        uid = _uid("instance", identity, i)
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.SOPInstanceUID = uid
        ds.InstanceNumber = i + 1
        ds.ImagePositionPatient = [_ds(v) for v in position]
        ds.SliceLocation = _ds(float(np.dot(position, normal)))
        ds.PixelRepresentation = representation
        ds.RescaleSlope, ds.RescaleIntercept = _ds(slope), _ds(intercept)
        ds.PixelData = np.ascontiguousarray(stored[i]).tobytes()
        path = out / f"IM{i + 1:05d}.dcm"
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
        paths.append(path)
    return paths
