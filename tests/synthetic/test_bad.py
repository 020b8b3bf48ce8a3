"""Each bad input fails to read the way it is meant to (or is valid, for inconsistent_size)."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom.errors import InvalidDicomError

from imagelake.errors import NotDicomError, PixelDataError
from imagelake.synthetic import BAD_INPUT_KINDS, EXPECTED_ERRORS, bad_inputs


@pytest.fixture(scope="module")
def reference(ct_small: list[pydicom.Dataset]) -> pydicom.Dataset:
    return ct_small[5]


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory, reference: pydicom.Dataset) -> dict[str, Path]:
    return bad_inputs(tmp_path_factory.mktemp("bad"), reference=reference)


def test_one_file_per_kind(bad: dict[str, Path]) -> None:
    assert tuple(bad) == BAD_INPUT_KINDS == tuple(EXPECTED_ERRORS)
    assert all(path.is_file() for path in bad.values())
    assert len({path.name for path in bad.values()}) == len(bad)


@pytest.mark.parametrize("kind", ["not_dicom", "empty"])
def test_not_dicom_is_refused_by_pydicom(kind: str, bad: dict[str, Path]) -> None:
    assert EXPECTED_ERRORS[kind] is NotDicomError
    with pytest.raises(InvalidDicomError):
        pydicom.dcmread(bad[kind])


def test_not_dicom_is_a_real_png(bad: dict[str, Path]) -> None:
    assert bad["not_dicom"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert bad["empty"].stat().st_size == 0


def test_garbage_after_preamble_has_the_magic_but_no_dicom(bad: dict[str, Path]) -> None:
    data = bad["garbage_after_preamble"].read_bytes()
    assert data[128:132] == b"DICM" and len(data) > 1000
    assert EXPECTED_ERRORS["garbage_after_preamble"] is NotDicomError
    try:
        ds = pydicom.dcmread(bad["garbage_after_preamble"])
    except (InvalidDicomError, ValueError, OSError, EOFError):
        return  # refusing is fine too
    # pydicom parses junk without complaint: what betrays it is what's missing.
    assert "TransferSyntaxUID" not in ds.file_meta
    assert "SOPClassUID" not in ds and "PixelData" not in ds


@pytest.mark.parametrize("kind", ["truncated", "short_pixels"])
def test_short_pixel_data_fails_to_decode(kind: str, bad: dict[str, Path]) -> None:
    assert EXPECTED_ERRORS[kind] is PixelDataError
    header = pydicom.dcmread(bad[kind], stop_before_pixels=True)
    assert header.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
    ds = pydicom.dcmread(bad[kind])
    assert len(ds.PixelData) < ds.Rows * ds.Columns * 2
    with pytest.raises(ValueError, match="less than expected"):
        _ = ds.pixel_array


def test_truncated_file_ends_inside_its_pixel_data(bad: dict[str, Path]) -> None:
    data = bad["truncated"].read_bytes()
    at = data.rfind(b"\xe0\x7f\x10\x00OW")  # (7FE0,0010) OW, explicit VR little endian
    declared = int.from_bytes(data[at + 8 : at + 12], "little")
    assert at > 0 and len(data) - (at + 12) == declared // 2


def test_missing_pixels_is_an_image_without_pixel_data(bad: dict[str, Path]) -> None:
    assert EXPECTED_ERRORS["missing_pixels"] is PixelDataError
    ds = pydicom.dcmread(bad["missing_pixels"])
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2" and ds.Rows == 32
    assert "PixelData" not in ds
    with pytest.raises(AttributeError):
        _ = ds.pixel_array


def test_inconsistent_size_is_a_valid_slice_of_the_reference_series(
    bad: dict[str, Path], reference: pydicom.Dataset
) -> None:
    assert EXPECTED_ERRORS["inconsistent_size"] is None
    ds = pydicom.dcmread(bad["inconsistent_size"])
    for keyword in (
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "FrameOfReferenceUID",
        "ImageOrientationPatient",
        "ImagePositionPatient",
    ):
        assert ds[keyword].value == reference[keyword].value, keyword
    assert ds.SOPInstanceUID != reference.SOPInstanceUID
    assert (ds.Rows, ds.Columns) == (reference.Rows // 2, reference.Columns // 2)
    assert ds.pixel_array.shape == (ds.Rows, ds.Columns)
    field_of_view = float(ds.PixelSpacing[0]) * ds.Rows
    assert field_of_view == pytest.approx(float(reference.PixelSpacing[0]) * reference.Rows)


def test_broken_pixel_files_stay_out_of_the_reference_series(
    bad: dict[str, Path], reference: pydicom.Dataset
) -> None:
    for kind in ("truncated", "missing_pixels", "short_pixels"):
        ds = pydicom.dcmread(bad[kind], stop_before_pixels=True)
        assert ds.SeriesInstanceUID != reference.SeriesInstanceUID
        assert str(ds.PatientName).startswith("SYNTHETIC^")


def test_without_reference_and_deterministic(tmp_path: Path) -> None:
    first = bad_inputs(tmp_path / "1", seed=3)
    second = bad_inputs(tmp_path / "2", seed=3)
    for kind in BAD_INPUT_KINDS:
        assert first[kind].read_bytes() == second[kind].read_bytes(), kind
