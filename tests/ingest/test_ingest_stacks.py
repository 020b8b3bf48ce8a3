"""A SYNTHETIC CT series with a localizer and an odd-sized slice: stacks, z, HU, affine."""

from __future__ import annotations

import warnings
from pathlib import Path

import dask.array
import numpy as np
import pandas as pd
import pydicom
import pytest
import zarr

from imagelake import synthetic
from imagelake.lake import Lake, open_lake

N_SLICES, SIZE, THICKNESS, SPACING = 12, 32, 2.0, 2.5


def read(path: Path) -> pydicom.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path)


@pytest.fixture(scope="module")
def ct_lake(tmp_path_factory: pytest.TempPathFactory) -> tuple[Lake, list[Path], list[Path], Path]:
    """A lake holding one CT series: 12 axial slices, a 3-slice localizer, a half-size slice.

    Returns the lake, the CT slice files, the localizer files and the odd slice's file.
    """
    base = tmp_path_factory.mktemp("stacks")
    ct = list(synthetic.ct_series(N_SLICES, SIZE, SIZE, slice_thickness=THICKNESS, spacing=SPACING))
    loc = synthetic.localizer(ct, n_slices=3)
    ct_files = synthetic.write_series(ct, base / "in" / "ct")
    loc_files = synthetic.write_series(loc, base / "in" / "localizer")
    odd = synthetic.bad_inputs(base / "bad", reference=ct[0])["inconsistent_size"]
    (base / "in" / odd.name).write_bytes(odd.read_bytes())
    lake = open_lake(base / "lake", create=True)
    report = lake.ingest(base / "in", workers=1)
    assert report.quarantined == []
    assert report.instances_new == N_SLICES + 3 + 1
    return lake, ct_files, loc_files, base / "in" / odd.name


def series_uid(files: list[Path]) -> str:
    return str(read(files[0]).SeriesInstanceUID)


def test_one_series_three_stacks_with_reasons(ct_lake) -> None:
    lake, ct_files, loc_files, odd = ct_lake
    uid = series_uid(ct_files)
    assert {series_uid(loc_files), series_uid([odd])} == {uid}
    assert list(lake.series().series_instance_uid) == [uid]
    stacks = lake.stacks(uid).sort_values("stack_number").reset_index(drop=True)
    assert len(stacks) == 3
    main = stacks.iloc[0]
    assert main.stack_number == 0
    assert pd.isna(main.reason)
    assert tuple(main["shape"]) == (N_SLICES, SIZE, SIZE)
    assert main.frame_dim == "slice"
    others = {r.shape[0]: r.reason for r in stacks.iloc[1:].itertuples()}
    assert set(others) == {3, 1}
    assert "localizer" in others[3].lower()
    assert "size" in others[1].lower() and f"{SIZE // 2}x{SIZE // 2}" in others[1]
    # each stack holds exactly its own instances
    opened = {r.stack_number: lake.open_stack(r.store_path) for r in stacks.itertuples()}
    assert set(opened[0].sop_instance_uid.values) == {str(read(p).SOPInstanceUID) for p in ct_files}
    assert set(opened[1].sop_instance_uid.values) | set(opened[2].sop_instance_uid.values) == {
        str(read(p).SOPInstanceUID) for p in [*loc_files, odd]
    }


def test_main_stack_is_sorted_by_z_with_the_slice_spacing(ct_lake) -> None:
    lake, ct_files, _, _ = ct_lake
    ds = lake.open_series(series_uid(ct_files))
    assert ds.image.dims == ("slice", "y", "x")
    z = ds.z.values
    np.testing.assert_allclose(np.diff(z), SPACING, atol=1e-6)
    # z is the position along the slice normal: for axial slices, ImagePositionPatient z
    originals = sorted((read(p) for p in ct_files), key=lambda d: float(d.ImagePositionPatient[2]))
    np.testing.assert_allclose(z, [float(d.ImagePositionPatient[2]) for d in originals])
    assert list(ds.sop_instance_uid.values) == [str(d.SOPInstanceUID) for d in originals]


def test_image_is_lazy_and_in_hounsfield_units(ct_lake) -> None:
    lake, ct_files, _, _ = ct_lake
    uid = series_uid(ct_files)
    ds = lake.open_series(uid)
    # lazy without dask by default: nothing read yet, no dask graph
    assert ds.image.chunks is None
    assert not ds.image.variable._in_memory
    assert isinstance(lake.open_series(uid, chunks={}).image.data, dask.array.Array)
    assert ds.image.attrs.get("units") == "HU"
    originals = sorted((read(p) for p in ct_files), key=lambda d: float(d.ImagePositionPatient[2]))
    slope = {float(d.RescaleSlope) for d in originals}
    intercept = {float(d.RescaleIntercept) for d in originals}
    assert len(slope) == len(intercept) == 1
    path = lake.stacks(uid).query("stack_number == 0").store_path.iloc[0]
    stored = zarr.open_group(str(Path(lake.fs.root) / path), mode="r")["image"][:]
    # stored values are the original pixels, in the original dtype, ordered by z
    assert stored.dtype == originals[0].pixel_array.dtype
    np.testing.assert_array_equal(stored, np.stack([d.pixel_array for d in originals]))
    np.testing.assert_allclose(
        ds.image.values, stored * slope.pop() + intercept.pop(), rtol=0, atol=1e-9
    )
    assert float(ds.image.values.min()) <= -900  # air, in HU


def test_affine_maps_indices_to_patient_coordinates(ct_lake) -> None:
    lake, ct_files, _, _ = ct_lake
    ds = lake.open_series(series_uid(ct_files))
    affine = np.asarray(ds.attrs["affine"], dtype=float)
    assert affine.shape == (4, 4)
    originals = sorted((read(p) for p in ct_files), key=lambda d: float(d.ImagePositionPatient[2]))
    for k, d in enumerate(originals):
        np.testing.assert_allclose(
            (affine @ [k, 0, 0, 1])[:3], [float(v) for v in d.ImagePositionPatient], atol=1e-6
        )
    # a pixel (row i, column j): IPP + j * column spacing * row direction + i * row spacing
    # * column direction (PS3.3 C.7.6.2.1.1)
    d = originals[3]
    iop = np.asarray([float(v) for v in d.ImageOrientationPatient])
    dr, dc = (float(v) for v in d.PixelSpacing)
    i, j = 5, 7
    want = (
        np.asarray([float(v) for v in d.ImagePositionPatient]) + j * dc * iop[:3] + i * dr * iop[3:]
    )
    np.testing.assert_allclose((affine @ [3, i, j, 1])[:3], want, atol=1e-6)
