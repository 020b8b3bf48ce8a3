"""SYNTHETIC axial fan-beam CT projection data, written as DICOM-CT-PD.

A modified Shepp-Logan head made of ellipsoids (so neighbouring detector rows see slightly
different slices) is projected analytically: every ray's line integral of the linear
attenuation coefficient is exact, not a discretised Radon transform. The geometry is
Siemens-like (source-isocentre 595 mm, source-detector 1085.6 mm, 360 views per rotation,
368 channels of 0.0023684 rad on a cylindrical detector). Each detector row is treated as its
own fan (rays parallel to the axial plane): a multi-slice fan beam, not a cone beam.

Conventions (shared with :mod:`imagelake.formats.ctpd` and the ``ct-fbp`` reconstructor):

- patient/gantry coordinates in mm, x and y in the axial plane, z along the table;
- the source at view angle ``phi`` (DetectorFocalCenterAngularPosition) sits at
  ``(-rho sin phi, rho cos phi)`` (the Mayo/LEAP convention);
- channel ``j`` (0-based) looks along the central ray turned counter-clockwise by the fan
  angle ``(j - central_channel) * channel_spacing_rad``;
- row ``i`` (0-based) lies at ``z = table_position + (central_row - i) * row_spacing * rho / d``
  at the isocentre (DICOM-CT-PD's row direction).

The DICOM files follow the DICOM-CT-PD convention of the Mayo Clinic / AAPM low-dose CT data
(Chen et al., Med Phys 2015): one file per view, private blocks 7029/7031/7033/7037/7041 and,
as in the Mayo data, **DICOM Rows = detector channels and Columns = detector rows**. That
table is written here independently of the reader in :mod:`imagelake.formats.ctpd`, so a
round trip checks both against the published tag list.

Layer L1: imports numpy, pydicom and imagelake's L0 only.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, CTImageStorage, ImplicitVRLittleEndian

from imagelake.errors import ConfigError
from imagelake.synthetic._headers import (
    SIEMENS_SOMATOM_FORCE,
    SYNTHETIC_COMMENT,
    InstanceFactory,
    Patient,
    Scanner,
    da,
    stamp_instance,
    synthetic_uid,
    tm,
)

__all__ = [
    "CT_PD_PATIENT",
    "HEAD_ELLIPSOIDS",
    "FanBeamGeometry",
    "fan_beam_sinogram",
    "rasterize_phantom",
    "write_ctpd",
]

#: attenuation of water at ~70 keV effective energy, per mm
MU_WATER_PER_MM = 0.0192

#: Modified Shepp-Logan ellipsoids, values relative to water (so the brain is 0 HU):
#: (value, a, b, c, x0, y0, z0, phi_deg), lengths in units of the phantom radius.
HEAD_ELLIPSOIDS: tuple[tuple[float, ...], ...] = (
    (1.8, 0.69, 0.92, 0.90, 0.0, 0.0, 0.0, 0.0),  # skull: 1.8 x water (+800 HU)
    (-0.8, 0.6624, 0.874, 0.88, 0.0, -0.0184, 0.0, 0.0),  # brain: water
    (-0.2, 0.11, 0.31, 0.22, 0.22, 0.0, 0.0, -18.0),  # ventricles: -200 HU
    (-0.2, 0.16, 0.41, 0.28, -0.22, 0.0, 0.0, 18.0),
    (0.1, 0.21, 0.25, 0.41, 0.0, 0.35, -0.15, 0.0),  # +100 HU features
    (0.1, 0.046, 0.046, 0.05, 0.0, 0.1, 0.0, 0.0),
    (0.1, 0.046, 0.046, 0.05, 0.0, -0.1, 0.01, 0.0),
    (0.1, 0.046, 0.023, 0.02, -0.08, -0.605, 0.0, 0.0),
    (0.1, 0.023, 0.023, 0.02, 0.0, -0.606, 0.005, 0.0),
    (0.1, 0.023, 0.046, 0.02, 0.06, -0.605, -0.005, 0.0),
)

#: the patient written into synthetic DICOM-CT-PD files
CT_PD_PATIENT = Patient("SYNTHETIC^CTPD^001", "SYN-CTPD-001")


@dataclass(frozen=True)
class FanBeamGeometry:
    """An axial fan-beam scan on a cylindrical (equiangular) detector.

    Parameters
    ----------
    source_isocenter_mm, source_detector_mm
        Focal spot to isocentre and focal spot to detector distances.
    n_views
        Views over one full rotation, equally spaced from ``start_angle_rad``.
    n_channels, channel_spacing_rad
        Detector channels and their angular spacing seen from the source.
    n_rows, row_spacing_mm
        Detector rows and their width measured at the detector.
    central_channel, central_row
        0-based (fractional) element on the ray through the isocentre; ``None``: the
        middle, plus a quarter channel offset as real scanners use.
    table_position_mm
        Table (focal centre axial) position of the scan.
    water_attenuation_per_mm
        mu of water, for Hounsfield units.
    """

    source_isocenter_mm: float = 595.0
    source_detector_mm: float = 1085.6
    n_views: int = 360
    n_channels: int = 368
    channel_spacing_rad: float = 0.0023684
    n_rows: int = 4
    row_spacing_mm: float = 3.6
    central_channel: float | None = None
    central_row: float | None = None
    start_angle_rad: float = 0.0
    table_position_mm: float = 0.0
    water_attenuation_per_mm: float = MU_WATER_PER_MM

    def __post_init__(self) -> None:
        if min(self.n_views, self.n_channels, self.n_rows) < 1:
            raise ConfigError("n_views, n_channels and n_rows must be >= 1")
        if not 0 < self.source_isocenter_mm < self.source_detector_mm:
            raise ConfigError("need 0 < source_isocenter_mm < source_detector_mm")

    @property
    def channel_center(self) -> float:
        if self.central_channel is not None:
            return self.central_channel
        return (self.n_channels - 1) / 2 + 0.25

    @property
    def row_center(self) -> float:
        return (self.n_rows - 1) / 2 if self.central_row is None else self.central_row

    def view_angles(self) -> np.ndarray[Any, np.dtype[np.float64]]:
        """Source angle of each view (rad)."""
        step = 2 * math.pi / self.n_views
        return np.asarray(self.start_angle_rad + np.arange(self.n_views) * step, np.float64)

    def fan_angles(self) -> np.ndarray[Any, np.dtype[np.float64]]:
        """Fan angle of each channel (rad)."""
        fan = (np.arange(self.n_channels) - self.channel_center) * self.channel_spacing_rad
        return np.asarray(fan, np.float64)

    def row_positions(self) -> np.ndarray[Any, np.dtype[np.float64]]:
        """Axial position (mm at the isocentre) of each detector row."""
        at_iso = self.row_spacing_mm * self.source_isocenter_mm / self.source_detector_mm
        rows = self.table_position_mm + (self.row_center - np.arange(self.n_rows)) * at_iso
        return np.asarray(rows, np.float64)


def _slice_ellipses(
    z_over_r: float, ellipsoids: Sequence[Sequence[float]]
) -> list[tuple[float, float, float, float, float, float]]:
    """Cross-sections of the ellipsoids at height z: (value, a, b, x0, y0, phi_rad)."""
    out = []
    for value, a, b, c, x0, y0, z0, phi in ellipsoids:
        t = 1.0 - ((z_over_r - z0) / c) ** 2
        if t > 0:
            s = math.sqrt(t)
            out.append((value, a * s, b * s, x0, y0, math.radians(phi)))
    return out


def fan_beam_sinogram(
    geometry: FanBeamGeometry | None = None,
    *,
    radius_mm: float = 180.0,
    photons: float | None = None,
    seed: int = 0,
    ellipsoids: Sequence[Sequence[float]] = HEAD_ELLIPSOIDS,
) -> np.ndarray[Any, np.dtype[np.float32]]:
    """Exact line integrals of the phantom: float32 (view, row, channel).

    Parameters
    ----------
    geometry
        The scan (default :class:`FanBeamGeometry`).
    radius_mm
        Phantom size: ellipsoid lengths are in units of this radius.
    photons
        Unattenuated photons per ray for Poisson noise (``None``: noiseless).
    seed
        Seed of the noise.
    """
    g = geometry or FanBeamGeometry()
    beta = g.view_angles()
    sx, sy = -g.source_isocenter_mm * np.sin(beta), g.source_isocenter_mm * np.cos(beta)
    central = np.arctan2(-sy, -sx)
    ang = central[:, None] + g.fan_angles()[None, :]
    ux, uy = np.cos(ang), np.sin(ang)  # (view, channel)
    out = np.zeros((g.n_views, g.n_rows, g.n_channels), np.float64)
    for r, z in enumerate(g.row_positions()):
        for value, a, b, x0, y0, phi in _slice_ellipses(z / radius_mm, ellipsoids):
            a, b, x0, y0 = a * radius_mm, b * radius_mm, x0 * radius_mm, y0 * radius_mm
            c, s = math.cos(phi), math.sin(phi)
            px, py = (sx - x0)[:, None], (sy - y0)[:, None]
            qx, qy = (c * px + s * py) / a, (-s * px + c * py) / b
            vx, vy = (c * ux + s * uy) / a, (-s * ux + c * uy) / b
            qa = vx * vx + vy * vy
            qb = 2 * (qx * vx + qy * vy)
            disc = qb * qb - 4 * qa * (qx * qx + qy * qy - 1)
            chord = np.sqrt(np.maximum(disc, 0.0)) / qa  # length of the ray inside the ellipse
            out[:, r, :] += value * g.water_attenuation_per_mm * chord
    if photons is not None:
        rng = np.random.default_rng(seed)
        counts = rng.poisson(photons * np.exp(-out))
        out = -np.log(np.maximum(counts, 1) / photons)
    return out.astype(np.float32)


def rasterize_phantom(
    n: int = 256,
    pixel_mm: float = 1.0,
    *,
    z_mm: float = 0.0,
    radius_mm: float = 180.0,
    supersample: int = 3,
    water_attenuation_per_mm: float = MU_WATER_PER_MM,
    ellipsoids: Sequence[Sequence[float]] = HEAD_ELLIPSOIDS,
) -> np.ndarray[Any, np.dtype[np.float64]]:
    """The true attenuation (per mm) on an ``n`` x ``n`` grid centred on the isocentre.

    Array row ``i`` is y = ``(i - (n-1)/2) * pixel_mm`` and column ``j`` is x, as the
    ``ct-fbp`` reconstructor grids its images. Each pixel averages ``supersample``\\ ² points
    (partial volume at edges).
    """
    sub = (np.arange(supersample) + 0.5) / supersample - 0.5
    coords = ((np.arange(n) - (n - 1) / 2)[:, None] + sub[None, :]).ravel() * pixel_mm
    x, y = np.meshgrid(coords, coords)  # rows: y, columns: x
    img = np.zeros_like(x)
    for value, a, b, x0, y0, phi in _slice_ellipses(z_mm / radius_mm, ellipsoids):
        c, s = math.cos(phi), math.sin(phi)
        px, py = x - x0 * radius_mm, y - y0 * radius_mm
        inside = ((c * px + s * py) / (a * radius_mm)) ** 2 + (
            (-s * px + c * py) / (b * radius_mm)
        ) ** 2 <= 1
        img += value * water_attenuation_per_mm * inside
    return img.reshape(n, supersample, n, supersample).mean(axis=(1, 3))


def _template(
    geometry: FanBeamGeometry,
    scanner: Scanner,
    patient: Patient,
    uids: tuple[str, str, str],
    acquired: datetime,
    slope: float,
    intercept: float,
    protocol_name: str,
) -> Dataset:
    g = geometry
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.TransferSyntaxUID = ImplicitVRLittleEndian  # as real DICOM-CT-PD files appear to be
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    # placeholders: every view stamps its own (InstanceFactory leaves these out)
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID = synthetic_uid("ctpd-template", uids)
    ds.StudyDate = ds.SeriesDate = da(acquired)
    ds.StudyTime = ds.SeriesTime = tm(acquired)
    ds.Modality = "CT"
    ds.Manufacturer = scanner.manufacturer
    ds.InstitutionName = scanner.institution_name
    ds.StationName = scanner.station_name
    ds.ManufacturerModelName = scanner.model
    ds.DeviceSerialNumber = scanner.device_serial_number
    ds.SoftwareVersions = scanner.software_versions
    ds.SeriesDescription = "SYNTHETIC projection data"
    ds.ProtocolName = protocol_name
    ds.PatientName = patient.name
    ds.PatientID = patient.id
    ds.PatientBirthDate = da(patient.birth_date)
    ds.PatientSex = patient.sex
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = uids
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.AcquisitionNumber = 1
    ds.ImageComments = SYNTHETIC_COMMENT
    # The Mayo quirk: Rows are the detector channels, Columns the detector rows.
    ds.Rows, ds.Columns = g.n_channels, g.n_rows
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope = _ds_number(slope)
    ds.RescaleIntercept = _ds_number(intercept)
    ds.RescaleType = "US"

    b29 = ds.private_block(0x7029, "DetectorSystemArrangementModule", create=True)
    b29.add_new(0x02, "FL", g.channel_spacing_rad * g.source_detector_mm)  # mm at detector
    b29.add_new(0x06, "FL", g.row_spacing_mm)
    b29.add_new(0x0B, "CS", "CYLINDRICAL")
    b29.add_new(0x10, "US", g.n_rows)
    b29.add_new(0x11, "US", g.n_channels)
    b31 = ds.private_block(0x7031, "DetectorDynamicsModule", create=True)
    b31.add_new(0x01, "FL", 0.0)  # per view
    b31.add_new(0x02, "FL", g.table_position_mm)
    b31.add_new(0x03, "FL", g.source_isocenter_mm)
    b31.add_new(0x31, "FL", g.source_detector_mm)
    b31.add_new(0x33, "FL", [g.channel_center + 1, g.row_center + 1])  # 1-based (col, row)
    b33 = ds.private_block(0x7033, "SourceDynamicsModule", create=True)
    b33.add_new(0x0B, "FL", 0.0)  # angular shift (readers' order, not dictionary v8's)
    b33.add_new(0x0C, "FL", 0.0)  # axial shift
    b33.add_new(0x0D, "FL", 0.0)  # radial shift
    b33.add_new(0x0E, "CS", "FFSNONE")
    b33.add_new(0x13, "US", g.n_views)
    b37 = ds.private_block(0x7037, "ProjectionDataDefinitions", create=True)
    b37.add_new(0x09, "CS", "AXIAL")
    b37.add_new(0x0A, "CS", "FANBEAM")
    b41 = ds.private_block(0x7041, "WaterAttenuationModule", create=True)
    b41.add_new(0x01, "DS", _ds_number(g.water_attenuation_per_mm))
    return ds


def _ds_number(value: float) -> str:
    """A DS string (at most 16 characters) that reads back as close to ``value`` as possible."""
    for digits in range(12, 0, -1):
        text = f"{value:.{digits}g}"
        if len(text) <= 16:
            return text
    raise ConfigError(f"cannot write {value!r} as a DICOM DS")


def write_ctpd(
    dest_dir: str | os.PathLike[str],
    sinogram: np.ndarray[Any, Any],
    geometry: FanBeamGeometry | None = None,
    *,
    scanner: Scanner = SIEMENS_SOMATOM_FORCE,
    patient: Patient = CT_PD_PATIENT,
    study_uid: str | None = None,
    series_uid: str | None = None,
    frame_of_reference_uid: str | None = None,
    acquired_at: datetime = datetime(2024, 3, 5, 9, 30, 0),
    seed: int = 0,
    protocol_name: str = "SYNTHETIC head axial",
) -> list[Path]:
    """Write a sinogram as DICOM-CT-PD: one Implicit VR file per view, ``000001.dcm``...

    Parameters
    ----------
    dest_dir
        Folder to write into (created).
    sinogram
        Line integrals (view, row, channel), as :func:`fan_beam_sinogram` returns.
    geometry
        The scan that made it; its sizes must match the sinogram.
    scanner, patient
        General Equipment and Patient modules (keep the patient ``SYNTHETIC^...``).
    study_uid, series_uid, frame_of_reference_uid
        Default: derived deterministically from ``seed`` (the series also from the data and
        geometry, so another sinogram is another series of the same study).
    acquired_at
        Acquisition (and study, series, content) date and time.
    protocol_name
        ProtocolName (linking compares it with the series' protocol).

    Returns
    -------
    list of pathlib.Path
        The files, in view order.
    """
    g = geometry or FanBeamGeometry()
    sino = np.asarray(sinogram, dtype=np.float64)
    if sino.shape != (g.n_views, g.n_rows, g.n_channels):
        raise ConfigError(
            f"sinogram shape {sino.shape} does not match the geometry "
            f"(views, rows, channels) = {(g.n_views, g.n_rows, g.n_channels)}"
        )
    # One scale for the series: 1/4096 per count unless the data needs more range.
    intercept = -1.0 if sino.min() < 0 else 0.0
    slope = max(1 / 4096, (float(sino.max()) - intercept) / 65000)
    slope = float(_ds_number(slope))
    counts = np.clip(np.rint((sino - intercept) / slope), 0, 65535).astype("<u2")
    study = study_uid or synthetic_uid("ctpd-study", seed)
    # a different sinogram or geometry is another series of the same (seeded) study
    content_id = hashlib.sha256(counts.tobytes() + repr(g).encode()).hexdigest()[:16]
    series = series_uid or synthetic_uid("ctpd-series", study, seed, content_id)
    frame = frame_of_reference_uid or synthetic_uid("ctpd-frame-of-reference", study)
    factory = InstanceFactory(
        _template(
            g,
            scanner,
            patient,
            (study, series, frame),
            acquired_at,
            slope,
            intercept,
            protocol_name,
        )
    )
    out_dir = Path(dest_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    angles = g.view_angles()
    paths = []
    for v in range(g.n_views):
        ds = factory.new()
        uid = synthetic_uid("ctpd-view", series, v)
        stamp_instance(
            ds, sop_instance_uid=uid, instance_number=v + 1, acquisition=acquired_at,
            content=acquired_at,
        )  # fmt: skip
        ds.private_block(0x7031, "DetectorDynamicsModule").add_new(0x01, "FL", float(angles[v]))
        # (channel, row) in memory: DICOM Rows = channels, Columns = rows
        ds.PixelData = np.ascontiguousarray(counts[v].T).tobytes()
        path = out_dir / f"{v + 1:06d}.dcm"
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
        paths.append(path)
    return paths
