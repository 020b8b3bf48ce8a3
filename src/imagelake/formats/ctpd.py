"""DICOM-CT-PD: CT projection data, one DICOM file per view (Mayo Clinic / AAPM convention).

Chen et al., "Development and validation of an open data format for CT projection data",
Med Phys 42(12) 2015. The geometry lives in private blocks (table below); pixel data is
uint16 with RescaleSlope/Intercept giving attenuation line integrals, and, as in the Mayo
data, **DICOM Rows are the detector channels and Columns the detector rows**, so each file's
pixel array is (channel, row) and is transposed here to (row, channel).

Files seem to be Implicit VR Little Endian, so without a private dictionary pydicom returns
the values as raw bytes (VR UN): they are decoded by the VR the table gives.

The sinogram is offered as a :class:`~imagelake.formats.RawArray` named ``sinogram``,
float32 (view, row, channel) line integrals, with coordinates ``view`` (source angle, rad)
and ``row`` (axial position of each detector row at the isocentre, mm) and the geometry in
``attrs`` (keys in :data:`GEOMETRY_ATTRS`; the ``ct-fbp`` reconstructor reads them). The
table position is ``focal_center_axial_mm`` (the first view's); when views differ in it
(helical), ``view_axial_positions_mm`` lists every view's.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from imagelake.formats._base import (
    PatientIdentity,
    RawArray,
    RawContent,
    RawFormat,
    RawFormatError,
    RawMeta,
    read_head,
)

__all__ = ["CTPD_TAGS", "GEOMETRY_ATTRS", "CtpdFormat"]

#: keyword -> (group, element offset in the block, VR, creator string); the creator strings
#: of real files are not confirmed, so a block is also found without its creator.
CTPD_TAGS: Mapping[str, tuple[int, int, str, str]] = {
    "DetectorElementTransverseSpacing": (0x7029, 0x02, "FL", "DetectorSystemArrangementModule"),
    "DetectorElementAxialSpacing": (0x7029, 0x06, "FL", "DetectorSystemArrangementModule"),
    "DetectorShape": (0x7029, 0x0B, "CS", "DetectorSystemArrangementModule"),
    "NumberofDetectorRows": (0x7029, 0x10, "US", "DetectorSystemArrangementModule"),
    "NumberofDetectorColumns": (0x7029, 0x11, "US", "DetectorSystemArrangementModule"),
    "DetectorFocalCenterAngularPosition": (0x7031, 0x01, "FL", "DetectorDynamicsModule"),
    "DetectorFocalCenterAxialPosition": (0x7031, 0x02, "FL", "DetectorDynamicsModule"),
    "DetectorFocalCenterRadialDistance": (0x7031, 0x03, "FL", "DetectorDynamicsModule"),
    "ConstantRadialDistance": (0x7031, 0x31, "FL", "DetectorDynamicsModule"),
    "DetectorCentralElement": (0x7031, 0x33, "FL", "DetectorDynamicsModule"),
    # (7033,100B/C/D): angular, axial, radial shift, as every reader and real data have it
    # (dictionary v8 swaps the first two names).
    "SourceAngularPositionShift": (0x7033, 0x0B, "FL", "SourceDynamicsModule"),
    "SourceAxialPositionShift": (0x7033, 0x0C, "FL", "SourceDynamicsModule"),
    "SourceRadialDistanceShift": (0x7033, 0x0D, "FL", "SourceDynamicsModule"),
    "FlyingFocalSpotMode": (0x7033, 0x0E, "CS", "SourceDynamicsModule"),
    "NumberofSourceAngularSteps": (0x7033, 0x13, "US", "SourceDynamicsModule"),
    "TypeofProjectionData": (0x7037, 0x09, "CS", "ProjectionDataDefinitions"),
    "TypeofProjectionGeometry": (0x7037, 0x0A, "CS", "ProjectionDataDefinitions"),
    "WaterAttenuationCoefficient": (0x7041, 0x01, "DS", "WaterAttenuationModule"),
}

#: the geometry attributes of the ``sinogram`` array
GEOMETRY_ATTRS = (
    "projection_type",
    "projection_geometry",
    "detector_shape",
    "source_isocenter_mm",
    "source_detector_mm",
    "channel_spacing_rad",
    "channel_spacing_mm",
    "row_spacing_mm",
    "central_channel",
    "central_row",
    "views_per_rotation",
    "flying_focal_spot",
    "focal_center_axial_mm",
    "water_attenuation_per_mm",
)

_REQUIRED = (
    "NumberofDetectorRows",
    "NumberofDetectorColumns",
    "DetectorElementTransverseSpacing",
    "DetectorFocalCenterAngularPosition",
    "DetectorFocalCenterRadialDistance",
    "ConstantRadialDistance",
    "DetectorCentralElement",
)

# (7029,xx10) NumberofDetectorRows and (7031,xx01) DetectorFocalCenterAngularPosition,
# little endian, in any private block xx.
_ROWS_TAG = re.compile(rb"\x29\x70\x10[\x10-\xff]")
_ANGLE_TAG = re.compile(rb"\x31\x70\x01[\x10-\xff]")
_VR_DTYPE = {"FL": "<f4", "FD": "<f8", "US": "<u2", "UL": "<u4", "SS": "<i2", "SL": "<i4"}
_PUBLIC_KEYS = [
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "FrameOfReferenceUID",
    "InstanceNumber",
    "Rows",
    "Columns",
]


def _block_start(ds: Dataset, group: int, creator: str) -> int | None:
    """The element offset (0x1000 for block 0x10) of a private block, by creator or the first."""
    found = []
    for slot in range(0x10, 0x100):
        elem = ds.get((group, slot))
        if elem is None:
            continue
        value = elem.value
        text = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
        if text.strip(" \x00") == creator:
            return slot << 8
        found.append(slot)
    return found[0] << 8 if found else None


def _private(ds: Dataset, keyword: str) -> Any:
    """A DICOM-CT-PD private value decoded by its VR (from bytes when read as UN), or None."""
    group, offset, vr, creator = CTPD_TAGS[keyword]
    start = _block_start(ds, group, creator)
    if start is None:
        return None
    elem = ds.get((group, start | offset))
    if elem is None or elem.value is None:
        return None
    value = elem.value
    if isinstance(value, bytes):
        if vr in _VR_DTYPE:
            dtype = np.dtype(_VR_DTYPE[vr])
            if len(value) % dtype.itemsize:
                raise ValueError(f"{keyword}: {len(value)} bytes is no whole number of {vr}")
            arr = np.frombuffer(value, dtype)
            return arr.tolist() if arr.size != 1 else arr.item()
        value = value.decode("ascii", "replace").strip(" \x00")
        return float(value) if vr == "DS" else value
    if vr == "DS":
        return float(value)
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        return [v for v in value]
    return value


def _text(ds: Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    return str(value).strip() or None


def _acquired_at(ds: Dataset) -> str | None:
    for date_kw, time_kw in (
        ("AcquisitionDate", "AcquisitionTime"),
        ("ContentDate", "ContentTime"),
    ):
        d, t = _text(ds, date_kw), _text(ds, time_kw) or "000000"
        if d and len(d) == 8 and d.isdigit():
            t = (t.split(".")[0] + "000000")[:6]
            return f"{d[:4]}-{d[4:6]}-{d[6:]}T{t[:2]}:{t[2:4]}:{t[4:6]}"
    return None


def _meta(ds: Dataset) -> RawMeta:
    patient = PatientIdentity(
        patient_id=_text(ds, "PatientID"),
        name=_text(ds, "PatientName"),
        birth_date=_text(ds, "PatientBirthDate"),
    )
    series = _text(ds, "SeriesInstanceUID")
    return RawMeta(
        modality="CT",
        manufacturer=_text(ds, "Manufacturer"),
        model=_text(ds, "ManufacturerModelName"),
        software_version=_text(ds, "SoftwareVersions"),
        device_serial=_text(ds, "DeviceSerialNumber"),
        station_name=_text(ds, "StationName"),
        institution=_text(ds, "InstitutionName"),
        acquired_at=_acquired_at(ds),
        study_instance_uid=_text(ds, "StudyInstanceUID"),
        frame_of_reference_uid=_text(ds, "FrameOfReferenceUID"),
        series_instance_uids=(series,) if series else (),
        protocol_name=_text(ds, "ProtocolName"),
        patient=patient,
        extra={"projection_format": "DICOM-CT-PD"},
    )


class _View:
    """The header of one view file: what must agree across a group, and its own values."""

    def __init__(self, path: str, ds: Dataset) -> None:
        self.path = path
        self.ds = ds
        try:
            values = {kw: _private(ds, kw) for kw in CTPD_TAGS}
        except ValueError as exc:
            raise RawFormatError(f"{path}: bad DICOM-CT-PD private value: {exc}") from None
        missing = [kw for kw in _REQUIRED if values[kw] is None]
        if missing:
            raise RawFormatError(f"{path}: not DICOM-CT-PD, missing {', '.join(missing)}")
        self.values = values
        self.angle = float(values["DetectorFocalCenterAngularPosition"])
        self.axial = float(values["DetectorFocalCenterAxialPosition"] or 0.0)
        self.n_rows = int(values["NumberofDetectorRows"])
        self.n_channels = int(values["NumberofDetectorColumns"])
        central = values["DetectorCentralElement"]
        if not isinstance(central, list) or len(central) != 2:
            raise RawFormatError(f"{path}: DetectorCentralElement must hold 2 values (column, row)")
        self.rows, self.columns = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
        if (self.rows, self.columns) != (self.n_channels, self.n_rows):
            raise RawFormatError(
                f"{path}: pixel matrix Rows x Columns = {self.rows} x {self.columns}, expected "
                f"channels x detector rows = {self.n_channels} x {self.n_rows}"
            )
        number = ds.get("InstanceNumber")
        self.instance_number = int(number) if number not in (None, "") else None
        d0 = float(values["ConstantRadialDistance"])
        water = values["WaterAttenuationCoefficient"]
        if water is not None and water > 0.1:
            water /= 10.0  # given per cm (mu_water ~ 0.19/cm ~ 0.019/mm)
        self.geometry: dict[str, Any] = {
            "projection_type": values["TypeofProjectionData"] or "AXIAL",
            "projection_geometry": values["TypeofProjectionGeometry"] or "FANBEAM",
            "detector_shape": values["DetectorShape"] or "CYLINDRICAL",
            "source_isocenter_mm": float(values["DetectorFocalCenterRadialDistance"]),
            "source_detector_mm": d0,
            "channel_spacing_rad": float(values["DetectorElementTransverseSpacing"]) / d0,
            "channel_spacing_mm": float(values["DetectorElementTransverseSpacing"]),
            "row_spacing_mm": float(values["DetectorElementAxialSpacing"] or 0.0),
            "central_channel": float(central[0]) - 1.0,  # 1-based in the file
            "central_row": float(central[1]) - 1.0,
            "views_per_rotation": values["NumberofSourceAngularSteps"],
            "flying_focal_spot": values["FlyingFocalSpotMode"] or "FFSNONE",
            "water_attenuation_per_mm": water,
        }

    def pixels(self) -> np.ndarray[Any, np.dtype[np.float32]]:
        """Line integrals (row, channel) of this view."""
        try:
            ds = pydicom.dcmread(self.path)
            counts = ds.pixel_array
        except Exception as exc:  # noqa: BLE001 - any decoding failure is a corrupt file
            raise RawFormatError(f"{self.path}: cannot read the projection pixels: {exc}") from None
        if counts.shape != (self.n_channels, self.n_rows):
            counts = counts.reshape(self.n_channels, self.n_rows)  # a single row/column squeezes
        slope = float(ds.get("RescaleSlope", 1) or 1)
        intercept = float(ds.get("RescaleIntercept", 0) or 0)
        return (counts.T.astype(np.float64) * slope + intercept).astype(np.float32)


def _read_header(path: str) -> Dataset:
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, EOFError, ValueError, KeyError, TypeError) as exc:
        raise RawFormatError(f"{path}: not a readable DICOM file: {exc}") from None


class CtpdFormat(RawFormat):
    """CT projection data in the DICOM-CT-PD convention (one file per view)."""

    name = "dicom-ct-pd"
    description = "CT projection data, DICOM-CT-PD (Mayo/AAPM): one DICOM file per view"
    modality = "CT"
    patterns = ("*.dcm", "*.ima")
    magic = ((128, b"DICM"),)
    extra = None
    priority = 10

    def guess_can_open(self, path: str | os.PathLike[str], head: bytes | None = None) -> bool:
        """DICM magic and the CT-PD private tags in the head; a header parse only on a hit."""
        if head is None:
            head = read_head(path)
        if head[128:132] != b"DICM":
            return False
        # cheap: ordinary DICOM never gets past these substring searches
        if b"\x29\x70" not in head or b"\x31\x70" not in head:
            return False
        if not (_ROWS_TAG.search(head) and _ANGLE_TAG.search(head)):
            return False
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            return all(_private(ds, kw) is not None for kw in _REQUIRED)
        except Exception:  # noqa: BLE001 - anything unreadable is not ours
            return False

    def group_key(self, path: str | os.PathLike[str]) -> str | None:
        """``StudyInstanceUID/SeriesInstanceUID``: the views of one scan."""
        p = os.fspath(path)
        try:
            ds = pydicom.dcmread(
                p, stop_before_pixels=True, specific_tags=["StudyInstanceUID", "SeriesInstanceUID"]
            )
        except Exception as exc:  # noqa: BLE001
            raise RawFormatError(f"{p}: not a readable DICOM file: {exc}") from None
        series = _text(ds, "SeriesInstanceUID")
        if not series:
            raise RawFormatError(f"{p}: DICOM-CT-PD view without SeriesInstanceUID")
        return f"{_text(ds, 'StudyInstanceUID') or ''}/{series}"

    def open(self, path: str | os.PathLike[str]) -> RawContent:
        """One view file as a one-view sinogram (to look at; ingest uses :meth:`open_group`)."""
        return self._open_views([path], complete=False)

    def open_group(self, paths: Sequence[str | os.PathLike[str]]) -> RawContent:
        """The views of one scan, sorted by InstanceNumber (else by angle), as a sinogram.

        A scan is archived whole: fewer views than one rotation is an incomplete transfer
        and raises :class:`RawFormatError` (the files are quarantined, not lost).
        """
        return self._open_views(paths, complete=True)

    def _open_views(self, paths: Sequence[str | os.PathLike[str]], *, complete: bool) -> RawContent:
        if not paths:
            raise RawFormatError("DICOM-CT-PD: no files given")
        views = [_View(os.fspath(p), _read_header(os.fspath(p))) for p in paths]
        first = views[0]
        for v in views[1:]:
            for key in ("StudyInstanceUID", "SeriesInstanceUID"):
                if _text(v.ds, key) != _text(first.ds, key):
                    raise RawFormatError(f"{v.path}: {key} differs from {first.path}")
            for key, value in first.geometry.items():
                other = v.geometry[key]
                same = (
                    math.isclose(other, value, rel_tol=1e-6, abs_tol=1e-9)
                    if isinstance(value, float) and isinstance(other, float)
                    else other == value
                )
                if not same:
                    raise RawFormatError(
                        f"{v.path}: geometry {key} = {other!r} differs from {value!r} in {first.path}"
                    )
            if (v.n_rows, v.n_channels) != (first.n_rows, first.n_channels):
                raise RawFormatError(f"{v.path}: detector size differs from {first.path}")
        numbers = [v.instance_number for v in views]
        if all(n is not None for n in numbers):
            if len(set(numbers)) != len(numbers):
                raise RawFormatError("DICOM-CT-PD: duplicated InstanceNumber in the group")
            views.sort(key=lambda v: v.instance_number or 0)
            ordered = [v.instance_number or 0 for v in views]
            if ordered[-1] - ordered[0] != len(ordered) - 1:
                raise RawFormatError(
                    f"DICOM-CT-PD: views missing in the middle (InstanceNumber {ordered[0]}.."
                    f"{ordered[-1]} but {len(ordered)} files)"
                )
        else:
            views.sort(key=lambda v: v.angle)
        per_rotation = first.geometry.get("views_per_rotation")
        if (
            complete
            and isinstance(per_rotation, int | float)
            and per_rotation > 0
            and len(views) < per_rotation
        ):
            numbers_seen = [v.instance_number for v in views if v.instance_number is not None]
            span = (
                f" (InstanceNumber {min(numbers_seen)}..{max(numbers_seen)})"
                if numbers_seen
                else ""
            )
            raise RawFormatError(
                f"DICOM-CT-PD: incomplete projection set: {len(views)} of the "
                f"{int(per_rotation)} views of one rotation{span}; the rest may still be "
                "arriving. Ingest the whole folder once it is complete."
            )
        angles = np.array([v.angle for v in views], np.float64)
        axial = np.array([v.axial for v in views], np.float64)
        if (
            first.geometry["projection_type"] == "AXIAL"
            and len(views) > 1
            and np.unique(np.round(np.mod(angles, 2 * math.pi), 6)).size != len(views)
        ):
            raise RawFormatError("DICOM-CT-PD: duplicated view angles in an axial scan")
        geometry = dict(first.geometry)
        geometry["focal_center_axial_mm"] = float(axial[0])
        if np.ptp(axial) > 1e-3:  # not one table position: give every view's
            geometry["view_axial_positions_mm"] = [float(z) for z in axial]
        geometry["units"] = "attenuation line integral"
        d0, rho = geometry["source_detector_mm"], geometry["source_isocenter_mm"]
        row_z = float(axial[0]) + (geometry["central_row"] - np.arange(first.n_rows)) * (
            geometry["row_spacing_mm"] * rho / d0
        )
        shape = (len(views), first.n_rows, first.n_channels)

        def load() -> np.ndarray[Any, np.dtype[np.float32]]:
            out = np.empty(shape, np.float32)
            for i, v in enumerate(views):
                out[i] = v.pixels()
            return out

        sinogram = RawArray(
            name="sinogram",
            dims=("view", "row", "channel"),
            shape=shape,
            dtype=np.dtype(np.float32),
            loader=load,
            attrs=geometry,
            coords={"view": angles, "row": row_z},
        )
        return RawContent(
            format=self.name,
            meta=_meta(first.ds),
            arrays={"sinogram": sinogram},
            members=tuple(v.path for v in views),
        )
