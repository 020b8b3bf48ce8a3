"""Localizers: survey slices that share a series with the images they plan."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from datetime import datetime

import numpy as np
from pydicom.dataset import Dataset

from imagelake.synthetic._headers import synthetic_uid
from imagelake.synthetic._image import (
    ORIENTATIONS,
    centred_position,
    check,
    ds_str,
    plane_coordinates,
    set_pixel_data,
    set_pixel_module,
    set_plane,
    to_stored_ct,
)
from imagelake.synthetic.phantom import CorrelatedNoise, CTPhantom, MRPhantom

__all__ = ["localizer"]


def localizer(
    series: Sequence[Dataset], *, n_slices: int = 3, size: int | None = None, seed: int = 0
) -> list[Dataset]:
    """A localizer inside ``series``: same SeriesInstanceUID, another orientation and size.

    Parallel, equally spaced slices (coronal, or sagittal for a coronal series) through the
    middle of the series' volume, ImageType ``ORIGINAL\\PRIMARY\\LOCALIZER``, acquired before
    the series. Ingest must split such a series into two stacks (the series' slices and the
    localizer's).

    Parameters
    ----------
    series
        The series' instances (e.g. ``list(ct_series(...))``); CT or MR from this package.
    n_slices
        Number of localizer slices.
    size
        Rows and columns of the localizer; defaults to half the series' columns (at least 16).
    seed
        Seeds the noise.

    Returns
    -------
    list of pydicom.Dataset
        InstanceNumber continues after the series' highest, so numbered file names don't clash.
    """
    check(len(series) > 0, "series must hold at least one instance")
    check(n_slices >= 1, f"n_slices must be >= 1, got {n_slices}")
    ref = series[0]
    modality = str(ref.Modality)
    check(modality in ("CT", "MR"), f"localizer supports CT and MR series, got {modality!r}")
    positions = np.array([[float(v) for v in ds.ImagePositionPatient] for ds in series])
    ref_iop = [float(v) for v in ref.ImageOrientationPatient]
    rows_mm = float(ref.PixelSpacing[0]) * int(ref.Rows)
    cols_mm = float(ref.PixelSpacing[1]) * int(ref.Columns)
    # Centre of the imaged volume, from the first and last slice centres.
    u, v = np.asarray(ref_iop[:3]), np.asarray(ref_iop[3:])
    half = (int(ref.Columns) - 1) / 2 * float(ref.PixelSpacing[1]) * u + (
        int(ref.Rows) - 1
    ) / 2 * float(ref.PixelSpacing[0]) * v
    centre = (positions.min(axis=0) + positions.max(axis=0)) / 2 + half
    plane = "sagittal" if ref_iop == list(ORIENTATIONS["coronal"]) else "coronal"
    iop = ORIENTATIONS[plane]
    normal = np.cross(iop[:3], iop[3:])
    n = size or max(16, int(ref.Columns) // 2)
    extent = float(np.ptp(positions, axis=0).max()) + float(ref.SliceThickness or 1)
    ps = max(rows_mm, cols_mm, extent) * 1.1 / n
    step = min(rows_mm, cols_mm) / (4 * max(n_slices - 1, 1))
    if modality == "CT":
        phantom_ct = CTPhantom(float(positions[:, 2].max()), float(positions[:, 2].min()), seed)
    else:
        t2 = "T2" in str(ref.get("ProtocolName", ""))
        phantom_mr = MRPhantom("T2" if t2 else "T1", seed)
    noise = CorrelatedNoise((n, n), cutoff=0.2, std=10.0, rng=np.random.default_rng([seed, 0x10C]))
    first = max(int(ds.InstanceNumber or 0) for ds in series) + 1
    acquired = datetime.strptime(str(ref.SeriesDate) + str(ref.SeriesTime)[:6], "%Y%m%d%H%M%S")
    out: list[Dataset] = []
    for k in range(n_slices):
        slice_centre = centre + (k - (n_slices - 1) / 2) * step * normal
        position = centred_position(slice_centre, iop, (ps, ps), (n, n))
        x, y, z = plane_coordinates(position, iop, (ps, ps), (n, n))
        ds = copy.deepcopy(ref)
        uid = synthetic_uid("localizer", ref.SeriesInstanceUID, k, n_slices, n)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.InstanceNumber = first + k
        ds.AcquisitionNumber = 0
        ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        ds.AcquisitionDate = ds.ContentDate = acquired.strftime("%Y%m%d")
        ds.AcquisitionTime = ds.ContentTime = acquired.strftime("%H%M%S") + ".000"
        ds.AcquisitionDateTime = acquired.strftime("%Y%m%d%H%M%S") + ".000"
        for keyword in ("DataCollectionCenterPatient", "ReconstructionTargetCenterPatient"):
            if keyword in ds:
                delattr(ds, keyword)
        if modality == "CT":
            hu = phantom_ct.plane(x, y, z) + noise()
            pixels = to_stored_ct(hu, "int16" if ref.PixelRepresentation else "uint16", None)
            if "RescaleType" in ds:  # a survey image: dciodvfy warns on HU for a localizer
                del ds.RescaleType
        else:
            pixels = np.clip(
                np.rint(np.hypot(phantom_mr.plane(x, y, z) + noise(), noise())), 0, 4095
            )
            pixels = pixels.astype(np.uint16)
            ds.SpacingBetweenSlices = ds_str(step)
            ds.AcquisitionMatrix = [0, n, n, 0]
            ds.NumberOfPhaseEncodingSteps = str(n)
        thickness = min(float(ref.SliceThickness or 1), step)
        set_plane(ds, position, iop, (ps, ps), thickness)
        set_pixel_module(
            ds, (n, n), signed=bool(ref.PixelRepresentation), bits_stored=int(ref.BitsStored)
        )
        set_pixel_data(ds, pixels)
        out.append(ds)
    return out
