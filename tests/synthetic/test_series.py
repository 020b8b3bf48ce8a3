"""CT and MR series and localizers: headers, geometry, pixel values, noise, determinism."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, CTImageStorage, ExplicitVRLittleEndian

from imagelake.errors import ConfigError
from imagelake.synthetic import (
    SYNTHETIC_COMMENT,
    Scanner,
    correlated_noise,
    ct_series,
    localizer,
    mr_series,
    write_series,
)

from ._helpers import hu, normal, positions

# Type 1 and 2 attributes of the modules of the CT and MR Image IODs, plus what the brief asks.
COMMON = [
    "SOPClassUID",
    "SOPInstanceUID",
    "SpecificCharacterSet",
    "InstanceCreationDate",
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
    "StudyDescription",
    "Modality",
    "SeriesInstanceUID",
    "SeriesNumber",
    "SeriesDate",
    "SeriesTime",
    "SeriesDescription",
    "PatientPosition",
    "FrameOfReferenceUID",
    "PositionReferenceIndicator",
    "Manufacturer",
    "ManufacturerModelName",
    "SoftwareVersions",
    "DeviceSerialNumber",
    "StationName",
    "InstitutionName",
    "InstanceNumber",
    "ContentDate",
    "ContentTime",
    "AcquisitionDate",
    "AcquisitionTime",
    "ImageType",
    "PixelSpacing",
    "ImageOrientationPatient",
    "ImagePositionPatient",
    "SliceThickness",
    "SliceLocation",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "Rows",
    "Columns",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "PixelData",
    "ImageComments",
]
CT_ONLY = [
    "RescaleIntercept",
    "RescaleSlope",
    "RescaleType",
    "KVP",
    "AcquisitionNumber",
    "ConvolutionKernel",
    "XRayTubeCurrent",
    "ExposureTime",
    "Exposure",
]
MR_ONLY = [
    "ScanningSequence",
    "SequenceVariant",
    "SequenceName",
    "RepetitionTime",
    "EchoTime",
    "MagneticFieldStrength",
    "FlipAngle",
    "ImagingFrequency",
    "EchoTrainLength",
    "MRAcquisitionType",
    "SpacingBetweenSlices",
    "ImagedNucleus",
    "EchoNumbers",
]
TYPE_2_MAY_BE_EMPTY = {"PositionReferenceIndicator"}


def _assert_complete(ds: pydicom.Dataset, keywords: list[str]) -> None:
    missing = [k for k in keywords if k not in ds]
    empty = [k for k in keywords if k in ds and ds[k].is_empty and k not in TYPE_2_MAY_BE_EMPTY]
    assert not missing and not empty, f"missing {missing}, empty {empty}"


def test_ct_headers_are_complete_and_labelled_synthetic(ct_small: list[pydicom.Dataset]) -> None:
    for ds in (ct_small[0], ct_small[-1]):
        _assert_complete(ds, COMMON + CT_ONLY)
        assert ds.SOPClassUID == CTImageStorage
        assert ds.ImageComments == SYNTHETIC_COMMENT
        assert str(ds.PatientName).startswith("SYNTHETIC^")
        assert list(ds.ImageType) == ["ORIGINAL", "PRIMARY", "AXIAL"]
        assert (ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType) == (-1024, 1, "HU")
        meta = ds.file_meta
        assert meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert meta.MediaStorageSOPClassUID == ds.SOPClassUID
        assert meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert meta.ImplementationClassUID == PYDICOM_IMPLEMENTATION_UID
    first = ct_small[0]
    assert (first.Manufacturer, first.ManufacturerModelName) == ("SIEMENS", "SOMATOM Force")


def test_ct_series_identity_is_shared_and_instances_unique(
    ct_small: list[pydicom.Dataset],
) -> None:
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "PatientID"):
        assert len({ds[keyword].value for ds in ct_small}) == 1, keyword
    assert len({ds.SOPInstanceUID for ds in ct_small}) == len(ct_small)
    assert [ds.InstanceNumber for ds in ct_small] == list(range(1, len(ct_small) + 1))


@pytest.mark.parametrize(("thickness", "spacing"), [(1.0, None), (1.0, 0.7), (3.0, 5.0)])
def test_ct_positions_step_by_spacing_along_the_normal(
    thickness: float, spacing: float | None
) -> None:
    series = list(ct_series(6, 32, 32, slice_thickness=thickness, spacing=spacing))
    n = normal(series[0])
    np.testing.assert_allclose(n, [0, 0, 1])
    along = positions(series) @ n
    np.testing.assert_allclose(np.abs(np.diff(along)), spacing or thickness, atol=1e-6)
    np.testing.assert_allclose([float(ds.SliceLocation) for ds in series], along, atol=1e-6)
    in_plane = positions(series)[:, :2]
    assert np.ptp(in_plane, axis=0).max() == 0
    assert {float(ds.SliceThickness) for ds in series} == {thickness}


def test_ct_tissues_have_their_hounsfield_units(ct_small: list[pydicom.Dataset]) -> None:
    ds = ct_small[18]  # mid-chest: lungs, heart, spine
    image = hu(ds)
    ps = float(ds.PixelSpacing[0])
    x0, y0 = (float(v) for v in ds.ImagePositionPatient[:2])

    def at(x: float, y: float) -> float:
        r, c = round((y - y0) / ps), round((x - x0) / ps)
        return float(np.median(image[r - 1 : r + 2, c - 1 : c + 2]))

    assert -1050 < at(-200, -200) < -950  # air
    assert -900 < at(76, -6) < -780 and -900 < at(-76, -6) < -780  # lungs
    assert 20 < at(0, -90) < 70  # soft tissue
    assert -140 < at(0, -113) < -60  # subcutaneous fat
    assert 600 < at(0, 58) < 1250  # vertebra


def test_ct_lungs_change_along_z(ct_small: list[pydicom.Dataset]) -> None:
    def lung_pixels(ds: pydicom.Dataset) -> int:
        image = hu(ds)
        return int(((image > -950) & (image < -500)).sum())

    apex, middle, abdomen = (lung_pixels(ct_small[k]) for k in (1, 18, 38))
    assert apex < middle / 2 and abdomen < middle / 20


def test_ct_noise_is_spatially_correlated(ct_small: list[pydicom.Dataset]) -> None:
    air = hu(ct_small[18])[:20, :]  # above the body: air plus noise only
    air = air - air.mean()
    assert 8 < air.std() < 25
    neighbour = float((air[:, 1:] * air[:, :-1]).mean() / air.var())
    white = np.random.default_rng(0).normal(size=air.shape)
    white_neighbour = float((white[:, 1:] * white[:, :-1]).mean() / white.var())
    assert neighbour > 0.5 and abs(white_neighbour) < 0.1


def test_correlated_noise_has_the_requested_level() -> None:
    field = correlated_noise((256, 256), std=15.0, cutoff=0.12, seed=3)
    assert field.dtype == np.float32
    assert 13 < field.std() < 17
    assert (field[1:, :] * field[:-1, :]).mean() / field.var() > 0.7


def test_sharper_kernel_and_thinner_slices_are_noisier() -> None:
    def noise(**kw: object) -> float:
        ds = next(ct_series(1, 64, 64, **kw))  # type: ignore[arg-type]
        return float(hu(ds)[:8, :].std())

    assert noise(kernel="Br64") > noise(kernel="Br40") > noise(kernel="Br40", slice_thickness=5.0)


def test_same_seed_same_series_other_seed_other_series() -> None:
    def make(seed: int) -> list[pydicom.Dataset]:
        return list(ct_series(3, 32, 32, seed=seed))

    a, b, c = make(5), make(5), make(6)
    assert [ds.SOPInstanceUID for ds in a] == [ds.SOPInstanceUID for ds in b]
    assert all(x.PixelData == y.PixelData for x, y in zip(a, b, strict=True))
    assert a[0].SeriesInstanceUID != c[0].SeriesInstanceUID
    assert a[0].PixelData != c[0].PixelData


def test_series_of_one_study_share_it_but_not_their_noise() -> None:
    kw = {"study_uid": "1.2.826.0.1.3680043.8.498.1234", "seed": 4}
    thin = next(ct_series(1, 32, 32, slice_thickness=1.0, series_number=2, **kw))  # type: ignore[arg-type]
    thick = next(ct_series(1, 32, 32, slice_thickness=3.0, series_number=3, **kw))  # type: ignore[arg-type]
    assert thin.StudyInstanceUID == thick.StudyInstanceUID == kw["study_uid"]
    assert thin.StudyDate == thick.StudyDate and thin.StudyTime == thick.StudyTime
    assert thin.FrameOfReferenceUID == thick.FrameOfReferenceUID
    assert thin.SeriesInstanceUID != thick.SeriesInstanceUID


def test_int16_ct_is_signed_with_padding() -> None:
    ds = next(ct_series(1, 64, 64, dtype="int16"))
    assert ds.PixelRepresentation == 1 and ds.BitsStored == 16
    pixels = ds.pixel_array
    assert pixels.dtype == np.int16
    assert pixels[0, 0] == ds.PixelPaddingValue == -2000
    assert pixels[32, 32] > 0


def test_changing_one_instance_leaves_the_others_alone() -> None:
    first, second = ct_series(2, 16, 16)
    first.PatientName = "SYNTHETIC^CHANGED"
    first.ImageType[2] = "REFORMATTED"
    assert second.PatientName == "SYNTHETIC^CT^001"
    assert list(second.ImageType) == ["ORIGINAL", "PRIMARY", "AXIAL"]


def test_scanner_is_written_as_given() -> None:
    scanner = Scanner("Canon Medical Systems", "Aquilion ONE PRISM", "V10.12", "SYN-1")
    ds = next(ct_series(1, 16, 16, scanner=scanner))
    equipment = (ds.Manufacturer, ds.ManufacturerModelName, ds.SoftwareVersions)
    assert equipment == ("Canon Medical Systems", "Aquilion ONE PRISM", "V10.12")
    assert ds.DeviceSerialNumber == "SYN-1"


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"n_slices": 0}, "n_slices"),
        ({"rows": 4}, "rows"),
        ({"slice_thickness": 0}, "slice_thickness"),
        ({"spacing": -1.0}, "spacing"),
        ({"dtype": "float32"}, "dtype"),
    ],
)
def test_bad_ct_arguments_are_refused_up_front(kwargs: dict[str, object], word: str) -> None:
    with pytest.raises(ConfigError, match=word):
        ct_series(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("orientation", ["axial", "sagittal", "coronal"])
def test_mr_headers_and_geometry(orientation: str) -> None:
    series = list(mr_series(8, 64, 64, orientation=orientation, slice_thickness=4.0))  # type: ignore[arg-type]
    for ds in (series[0], series[-1]):
        _assert_complete(ds, COMMON + MR_ONLY)
        assert ds.Modality == "MR" and ds.ImageComments == SYNTHETIC_COMMENT
        assert ds.BitsStored == 12 and ds.pixel_array.max() < 4096
    n = normal(series[0])
    along = positions(series) @ n
    np.testing.assert_allclose(np.diff(along), float(series[0].SpacingBetweenSlices), atol=1e-6)
    np.testing.assert_allclose(float(series[0].SpacingBetweenSlices), 4.8)
    assert abs(float(series[0].ImagingFrequency) - 127.73) < 0.01


def test_mr_weighting_sets_contrast_and_sequence() -> None:
    def middle(weighting: str) -> pydicom.Dataset:
        return list(mr_series(5, 64, 64, weighting=weighting))[2]  # type: ignore[arg-type]

    t1, t2 = middle("T1"), middle("T2")
    assert float(t1.RepetitionTime) < 1000 < float(t2.RepetitionTime)
    assert float(t1.EchoTime) < 30 < float(t2.EchoTime)
    # White matter (beside the ventricles) is bright on T1, darker than CSF-filled ventricles
    # on T2; the ventricles are the other way round.
    wm, csf = (slice(38, 42), slice(38, 42)), (slice(29, 33), slice(28, 29))
    assert t1.pixel_array[wm].mean() > 2 * t1.pixel_array[csf].mean()
    assert t2.pixel_array[csf].mean() > 2 * t2.pixel_array[wm].mean()


@pytest.mark.parametrize("which", ["ct", "mr"])
def test_localizer_joins_the_series_as_another_stack(
    which: str, ct_small: list[pydicom.Dataset], mr_small: list[pydicom.Dataset]
) -> None:
    series = ct_small if which == "ct" else mr_small
    loc = localizer(series)
    assert len(loc) == 3
    ref = series[0]
    for ds in loc:
        assert ds.SeriesInstanceUID == ref.SeriesInstanceUID
        assert ds.StudyInstanceUID == ref.StudyInstanceUID
        assert ds.FrameOfReferenceUID == ref.FrameOfReferenceUID
        assert ds.ImageType[2] == "LOCALIZER"
        assert list(ds.ImageOrientationPatient) != list(ref.ImageOrientationPatient)
        assert (ds.Rows, ds.Columns) != (ref.Rows, ref.Columns)
        assert ds.pixel_array.shape == (ds.Rows, ds.Columns)
    uids = {ds.SOPInstanceUID for ds in [*series, *loc]}
    assert len(uids) == len(series) + 3
    assert min(ds.InstanceNumber for ds in loc) > max(ds.InstanceNumber for ds in series)
    along = positions(loc) @ normal(loc[0])
    assert len(set(np.round(np.diff(along), 6))) == 1  # parallel, equally spaced: one stack
    assert list(loc[0].ImageOrientationPatient) == list(loc[-1].ImageOrientationPatient)


def _errors_and_warnings(
    dciodvfy: Callable[[Path], dict[str, list[str]]], path: Path
) -> tuple[list[str], list[str]]:
    found = dciodvfy(path)
    return found["Error"], found["Warning"]


@pytest.mark.peer
def test_dciodvfy_finds_no_errors(
    dciodvfy: Callable[[Path], dict[str, list[str]]],
    ct_small: list[pydicom.Dataset],
    mr_small: list[pydicom.Dataset],
    tmp_path: Path,
) -> None:
    files = write_series(
        [ct_small[0], localizer(ct_small)[0], mr_small[0], localizer(mr_small)[0]], tmp_path
    )
    files += write_series([next(ct_series(1, 32, 32, dtype="int16", seed=9))], tmp_path)
    for path in files:
        errors, _ = _errors_and_warnings(dciodvfy, path)
        assert errors == [], f"{pydicom.dcmread(path).Modality}: {errors}"


@pytest.mark.peer
def test_dciodvfy_helper_reports_errors(
    dciodvfy: Callable[[Path], dict[str, list[str]]], tmp_path: Path
) -> None:
    ds = next(ct_series(1, 16, 16))
    del ds.PixelData
    (path,) = write_series([ds], tmp_path)
    errors, _ = _errors_and_warnings(dciodvfy, path)
    assert any("PixelData" in e for e in errors)


@pytest.mark.slow
def test_full_size_ct_is_fast(tmp_path: Path) -> None:
    start = time.perf_counter()
    paths = write_series(ct_series(300, 512, 512), tmp_path)
    elapsed = time.perf_counter() - start
    assert len(paths) == 300
    assert all(p.stat().st_size > 512 * 512 * 2 for p in paths[:3])
    last = pydicom.dcmread(paths[-1])
    assert float(last.ImagePositionPatient[2]) == -299.0
    assert elapsed < 60, f"generating and writing 300 × 512² took {elapsed:.1f} s"
