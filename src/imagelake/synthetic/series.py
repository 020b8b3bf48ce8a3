"""Synthetic CT and MR image series with full, valid headers.

Every instance carries ``ImageComments = "SYNTHETIC imagelake test data"`` and an obviously
fake patient. Series are generated lazily, one dataset at a time, and deterministically for a
seed: the same call yields the same UIDs, headers and pixels.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Literal

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, MRImageStorage

from imagelake.synthetic._headers import (
    DEFAULT_CT_PATIENT,
    DEFAULT_MR_PATIENT,
    GE_SIGNA_PREMIER,
    SIEMENS_SOMATOM_FORCE,
    InstanceFactory,
    Patient,
    Scanner,
    SeriesContext,
    base_dataset,
    stamp_instance,
    synthetic_uid,
)
from imagelake.synthetic._image import (
    ORIENTATIONS,
    centred_position,
    check,
    check_grid,
    ds_str,
    plane_coordinates,
    prefetched,
    set_pixel_data,
    set_pixel_module,
    set_plane,
    to_stored_ct,
    uid_int,
)
from imagelake.synthetic.phantom import CorrelatedNoise, CTPhantom, MRPhantom, kernel_noise

__all__ = ["ct_series", "mr_series"]

_CT_FOV_MM = 500.0
_MR_FOV_MM = 240.0


# --------------------------------------------------------------------------- CT


_REVOLUTION_S = 0.5
_TABLE_SPEED_MM_S = 115.2


def _ct_image_module(ds: Dataset, kernel: str, fov: float) -> None:
    """CT Image and VOI LUT values shared by all slices of a series."""
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    ds.KVP = "120"
    ds.DataCollectionDiameter = "500"
    ds.ReconstructionDiameter = ds_str(fov)
    ds.DistanceSourceToDetector = "1085.6"
    ds.DistanceSourceToPatient = "595"
    ds.GantryDetectorTilt = "0"
    ds.TableHeight = "160"
    ds.RotationDirection = "CW"
    ds.ExposureTime = str(int(_REVOLUTION_S * 1000))
    ds.FilterType = "FLAT"
    ds.FocalSpots = "1.2"
    ds.ConvolutionKernel = kernel
    ds.RevolutionTime = _REVOLUTION_S
    ds.SingleCollimationWidth = 0.6
    ds.TotalCollimationWidth = 57.6
    ds.TableSpeed = _TABLE_SPEED_MM_S
    ds.TableFeedPerRotation = 57.6
    ds.SpiralPitchFactor = 1.0
    phantom = Dataset()
    phantom.CodeValue = "113691"
    phantom.CodingSchemeDesignator = "DCM"
    phantom.CodeMeaning = "IEC Body Dosimetry Phantom"
    ds.CTDIPhantomTypeCodeSequence = [phantom]
    ds.WindowCenter = "40"
    ds.WindowWidth = "400"
    ds.WindowCenterWidthExplanation = "SOFT TISSUE"


_CT_VARYING = (
    "ImagePositionPatient",
    "SliceLocation",
    "XRayTubeCurrent",
    "Exposure",
    "GeneratorPower",
    "CTDIvol",
    "DataCollectionCenterPatient",
    "ReconstructionTargetCenterPatient",
)


def _ct_exposure(ds: Dataset, ma: int, z: float) -> None:
    """The per-slice values of a tube-current-modulated helical scan."""
    ds.XRayTubeCurrent = str(ma)
    ds.Exposure = str(round(ma * _REVOLUTION_S))
    ds.GeneratorPower = str(round(120 * ma / 1000))
    ds.CTDIvol = round(0.065 * ma * _REVOLUTION_S, 2)
    ds.DataCollectionCenterPatient = [0.0, 0.0, float(z)]
    ds.ReconstructionTargetCenterPatient = [0.0, 0.0, float(z)]


def ct_series(
    n_slices: int = 300,
    rows: int = 512,
    cols: int = 512,
    *,
    scanner: Scanner = SIEMENS_SOMATOM_FORCE,
    patient: Patient = DEFAULT_CT_PATIENT,
    slice_thickness: float = 1.0,
    spacing: float | None = None,
    pixel_spacing: float | None = None,
    kernel: str = "Br40",
    seed: int = 0,
    study_uid: str | None = None,
    series_uid: str | None = None,
    series_number: int = 1,
    series_description: str | None = None,
    study_datetime: datetime | None = None,
    dtype: Literal["uint16", "int16"] = "uint16",
) -> Iterator[Dataset]:
    """Yield a synthetic CT Image Storage series of axial slices, superior to inferior.

    The phantom is a chest/upper abdomen (:class:`~imagelake.synthetic.phantom.CTPhantom`)
    plus spatially correlated noise whose level and texture follow ``kernel`` and
    ``slice_thickness``. Pixels are stored values = HU + 1024 (RescaleIntercept -1024,
    RescaleSlope 1).

    Parameters
    ----------
    n_slices, rows, cols
        Number of slices and their size.
    scanner, patient
        General Equipment and Patient modules.
    slice_thickness
        SliceThickness (mm).
    spacing
        Distance between slice positions (mm); defaults to ``slice_thickness`` (contiguous).
        ImagePositionPatient steps by ``-spacing`` along z, the slice normal; InstanceNumber 1
        is the most superior slice, as scanners order a chest CT.
    pixel_spacing
        In-plane pixel size (mm); defaults to a 500 mm field of view.
    kernel
        ConvolutionKernel, e.g. ``"Br40"`` (smooth) or ``"Br64"`` (sharp, noisier).
    seed
        Seeds the UIDs not given, the lesions and the noise.
    study_uid, series_uid
        Defaults derive from ``seed``, the patient and the series parameters; pass the same
        ``study_uid`` (and ``study_datetime``) to put several series in one study.
    series_number, series_description, study_datetime
        SeriesNumber, SeriesDescription (default describes thickness and kernel), and
        StudyDate/StudyTime (series start ``2 × series_number`` minutes later).
    dtype
        ``"uint16"`` (BitsStored 12, as Siemens writes) or ``"int16"`` (BitsStored 16, pixels
        outside the reconstruction circle padded with -2000 and PixelPaddingValue set).

    Yields
    ------
    pydicom.Dataset
        One instance per slice, with file meta (Explicit VR Little Endian), ready for
        :func:`~imagelake.synthetic.write_series`.

    Raises
    ------
    imagelake.errors.ConfigError
        If a size, thickness, spacing or dtype is out of range.
    """
    spacing = slice_thickness if spacing is None else spacing
    check_grid(n_slices, rows, cols, slice_thickness, spacing)
    check(dtype in ("uint16", "int16"), f"dtype must be 'uint16' or 'int16', got {dtype!r}")
    ps = pixel_spacing or _CT_FOV_MM / max(rows, cols)
    check(ps > 0, f"pixel_spacing must be > 0, got {ps}")
    ctx = SeriesContext.create(
        modality="CT",
        sop_class_uid=CTImageStorage,
        scanner=scanner,
        patient=patient,
        seed=seed,
        study_uid=study_uid,
        series_uid=series_uid,
        study_datetime=study_datetime,
        series_number=series_number,
        series_description=series_description or f"Thorax {slice_thickness:g}mm {kernel} SYNTHETIC",
        protocol_name="SYNTHETIC Thorax",
        body_part="CHEST",
        identity=("CT", seed, n_slices, rows, cols, slice_thickness, spacing, ps, kernel, dtype),
    )
    return _ct_slices(
        ctx, n_slices, (rows, cols), slice_thickness, spacing, ps, kernel, seed, dtype
    )


def _ct_slices(
    ctx: SeriesContext,
    n_slices: int,
    shape: tuple[int, int],
    thickness: float,
    spacing: float,
    ps: float,
    kernel: str,
    seed: int,
    dtype: str,
) -> Iterator[Dataset]:
    rows, cols = shape
    z_top, z_bottom = 0.0, -(n_slices - 1) * spacing
    phantom = CTPhantom(z_top, z_bottom, seed)
    xs = (np.arange(cols) - (cols - 1) / 2) * ps
    ys = (np.arange(rows) - (rows - 1) / 2) * ps
    render = phantom.axial_renderer(xs, ys)
    std, cutoff = kernel_noise(kernel, thickness)
    # Noise differs between series of one seed (same anatomy, new acquisition).
    noise_rng = np.random.default_rng([seed, 0x4E, uid_int(ctx.series_uid)])
    noise = CorrelatedNoise(shape, cutoff=cutoff, std=std, rng=noise_rng)
    padding = None
    if dtype == "int16":
        radius = min(rows, cols) * ps / 2
        padding = xs[None, :] ** 2 + ys[:, None] ** 2 > radius**2
    start = ctx.series_datetime + timedelta(seconds=20)
    iop = ORIENTATIONS["axial"]

    def header(ds: Dataset, k: int) -> None:
        z = z_top - k * spacing
        stamp_instance(
            ds,
            sop_instance_uid=synthetic_uid("instance", ctx.series_uid, k),
            instance_number=k + 1,
            acquisition=start + timedelta(seconds=k * spacing / _TABLE_SPEED_MM_S),
            content=start + timedelta(minutes=1, seconds=k * 0.05),
        )
        set_plane(ds, (xs[0], ys[0], z), iop)
        # Tube current modulation: less current through the lungs, more in the abdomen.
        _ct_exposure(ds, round(160 * (0.8 + 0.4 * float(phantom.t_of(z)))), z)

    template = base_dataset(ctx)
    set_plane(template, (xs[0], ys[0], z_top), iop, (ps, ps), thickness)
    _ct_image_module(template, kernel, ps * max(rows, cols))
    set_pixel_module(
        template, shape, signed=dtype == "int16", bits_stored=12 if dtype == "uint16" else 16
    )
    if dtype == "int16":
        template.PixelPaddingValue = -2000
    header(template, 0)
    factory = InstanceFactory(template, _CT_VARYING)

    def pixels(k: int) -> np.ndarray:
        hu = render(z_top - k * spacing)
        hu += noise()
        return to_stored_ct(hu, dtype, padding)

    for k, stored in enumerate(prefetched(pixels, n_slices)):
        ds = factory.new()
        header(ds, k)
        set_pixel_data(ds, stored)
        yield ds


# --------------------------------------------------------------------------- MR

_MR_SEQUENCES = {
    # weighting: ScanningSequence, SequenceVariant, SequenceName, TR, TE, echo train, flip
    "T1": (["SE"], ["SK", "SS"], "synT1SE", 550.0, 12.0, 3, 90.0),
    "T2": (["SE"], ["SK", "SS"], "synT2FSE", 4500.0, 102.0, 16, 90.0),
}


def mr_series(
    n_slices: int = 24,
    rows: int = 256,
    cols: int = 256,
    *,
    scanner: Scanner = GE_SIGNA_PREMIER,
    patient: Patient = DEFAULT_MR_PATIENT,
    orientation: Literal["axial", "sagittal", "coronal"] = "axial",
    weighting: Literal["T1", "T2"] = "T1",
    slice_thickness: float = 5.0,
    spacing: float | None = None,
    pixel_spacing: float | None = None,
    field_strength: float = 3.0,
    seed: int = 0,
    study_uid: str | None = None,
    series_uid: str | None = None,
    series_number: int = 1,
    series_description: str | None = None,
    study_datetime: datetime | None = None,
) -> Iterator[Dataset]:
    """Yield a synthetic 2-D multi-slice MR Image Storage series of a brain-like phantom.

    Parameters
    ----------
    n_slices, rows, cols
        Number of slices and their size.
    scanner, patient
        General Equipment and Patient modules.
    orientation
        ``"axial"``, ``"sagittal"`` or ``"coronal"`` (see :data:`ORIENTATIONS`).
    weighting
        ``"T1"`` (spin echo, TR 550 / TE 12) or ``"T2"`` (fast spin echo, TR 4500 / TE 102).
    slice_thickness
        SliceThickness (mm).
    spacing
        SpacingBetweenSlices (mm), centre to centre; defaults to 1.2 × ``slice_thickness``
        (a 20 % gap, as usual for 2-D MR). Positions step by it along the slice normal.
    pixel_spacing
        In-plane pixel size (mm); defaults to a 240 mm field of view.
    field_strength
        MagneticFieldStrength (T); ImagingFrequency follows (42.577 MHz/T).
    seed, study_uid, series_uid, series_number, series_description, study_datetime
        As for :func:`ct_series`.

    Yields
    ------
    pydicom.Dataset
        One uint16 instance (BitsStored 12) per slice with magnitude (Rician) noise.
    """
    spacing = 1.2 * slice_thickness if spacing is None else spacing
    check_grid(n_slices, rows, cols, slice_thickness, spacing)
    check(
        orientation in ORIENTATIONS,
        f"orientation must be one of {sorted(ORIENTATIONS)}, got {orientation!r}",
    )
    check(
        weighting in _MR_SEQUENCES,
        f"weighting must be one of {sorted(_MR_SEQUENCES)}, got {weighting!r}",
    )
    check(field_strength > 0, f"field_strength must be > 0, got {field_strength}")
    ps = pixel_spacing or _MR_FOV_MM / max(rows, cols)
    ctx = SeriesContext.create(
        modality="MR",
        sop_class_uid=MRImageStorage,
        scanner=scanner,
        patient=patient,
        seed=seed,
        study_uid=study_uid,
        series_uid=series_uid,
        study_datetime=study_datetime,
        series_number=series_number,
        series_description=series_description or f"{orientation.title()} {weighting} SYNTHETIC",
        protocol_name=f"SYNTHETIC Brain {weighting}",
        body_part="HEAD",
        identity=(
            "MR",
            seed,
            n_slices,
            rows,
            cols,
            orientation,
            weighting,
            slice_thickness,
            spacing,
            ps,
        ),
    )
    return _mr_slices(
        ctx,
        n_slices,
        (rows, cols),
        orientation,
        weighting,
        slice_thickness,
        spacing,
        ps,
        field_strength,
        seed,
    )


def _mr_image_module(
    ds: Dataset,
    weighting: str,
    thickness: float,
    spacing: float,
    field: float,
    shape: tuple[int, int],
) -> None:
    scanning, variant, name, tr, te, etl, flip = _MR_SEQUENCES[weighting]
    rows, cols = shape
    ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
    ds.ScanningSequence = scanning
    ds.SequenceVariant = variant
    ds.ScanOptions = "FS" if weighting == "T2" else ""  # fat saturation
    ds.MRAcquisitionType = "2D"
    ds.SequenceName = name
    ds.AngioFlag = "N"
    ds.RepetitionTime = ds_str(tr)
    ds.EchoTime = ds_str(te)
    ds.NumberOfAverages = "1"
    ds.ImagingFrequency = ds_str(round(42.577478 * field, 6))
    ds.ImagedNucleus = "1H"
    ds.EchoNumbers = "1"
    ds.MagneticFieldStrength = ds_str(field)
    ds.SpacingBetweenSlices = ds_str(spacing)
    ds.NumberOfPhaseEncodingSteps = str(rows)
    ds.EchoTrainLength = str(etl)
    ds.PercentSampling = "100"
    ds.PercentPhaseFieldOfView = "100"
    ds.PixelBandwidth = "244.141"
    ds.ReceiveCoilName = "SYN HEAD 48"
    ds.TransmitCoilName = "BODY"
    ds.AcquisitionMatrix = [0, cols, rows, 0]
    ds.InPlanePhaseEncodingDirection = "ROW"
    ds.FlipAngle = ds_str(flip)
    ds.VariableFlipAngleFlag = "N"
    ds.SAR = "0.85"
    ds.dBdt = "0"
    ds.WindowCenter = "600"
    ds.WindowWidth = "1200"


def _mr_slices(
    ctx: SeriesContext,
    n_slices: int,
    shape: tuple[int, int],
    orientation: str,
    weighting: Literal["T1", "T2"],
    thickness: float,
    spacing: float,
    ps: float,
    field: float,
    seed: int,
) -> Iterator[Dataset]:
    iop = ORIENTATIONS[orientation]
    normal = np.cross(iop[:3], iop[3:])
    phantom = MRPhantom(weighting, seed)
    rng = np.random.default_rng([seed, 0x4D, uid_int(ctx.series_uid)])
    noise = CorrelatedNoise(shape, cutoff=0.35, std=14.0, rng=rng)
    acquired = ctx.series_datetime + timedelta(seconds=30)

    def position(k: int) -> np.ndarray:
        return centred_position((k - (n_slices - 1) / 2) * spacing * normal, iop, (ps, ps), shape)

    def header(ds: Dataset, k: int) -> None:
        stamp_instance(
            ds,
            sop_instance_uid=synthetic_uid("instance", ctx.series_uid, k),
            instance_number=k + 1,
            acquisition=acquired,
            content=acquired + timedelta(minutes=3, seconds=k * 0.1),
        )
        set_plane(ds, position(k), iop)

    template = base_dataset(ctx)
    set_plane(template, position(0), iop, (ps, ps), thickness)
    _mr_image_module(template, weighting, thickness, spacing, field, shape)
    set_pixel_module(template, shape, signed=False, bits_stored=12)
    header(template, 0)
    factory = InstanceFactory(template, ("ImagePositionPatient", "SliceLocation"))
    for k in range(n_slices):
        x, y, z = plane_coordinates(position(k), iop, (ps, ps), shape)
        signal = phantom.plane(x, y, z)
        magnitude = np.hypot(signal + noise(), noise())  # Rician, as in magnitude images
        ds = factory.new()
        header(ds, k)
        set_pixel_data(ds, np.clip(np.rint(magnitude), 0, 4095).astype(np.uint16))
        yield ds
