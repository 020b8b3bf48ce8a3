"""imagelake.dicom on REAL files: inspect, plan stacks, decode and regenerate.

Each test pins down a case the real-data round trip (tests/export) found broken.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest

from imagelake.dicom import (
    Source,
    decode_pixels,
    header_bytes,
    inspect_bytes,
    plan_stacks,
    read_dataset,
    regenerate,
    to_bytes,
)
from imagelake.errors import NotDicomError, PixelDataError


@pytest.fixture(scope="module")
def test_files() -> Path:
    return Path(pydicom.__file__).parent / "data" / "test_files"


def round_trip(path: Path) -> tuple[pydicom.Dataset, pydicom.Dataset]:
    """(original, regenerated) as ingest and export do it, without a lake."""
    data = path.read_bytes()
    ds = read_dataset(data)
    pixels = decode_pixels(ds)
    header = header_bytes(read_dataset(data), data)
    out = regenerate(header, pixels.array, pixels.photometric_interpretation)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path), pydicom.dcmread(io.BytesIO(to_bytes(out)))


def test_native_ybr_full_422_is_accepted_and_comes_back_subsampled(test_files: Path) -> None:
    path = test_files / "SC_ybr_full_422_uncompressed.dcm"
    info = inspect_bytes(path.read_bytes(), Source(str(path)))  # not "pixel data is short"
    assert info.photometric_interpretation == "YBR_FULL_422"
    original, again = round_trip(path)
    assert again.PhotometricInterpretation == "YBR_FULL_422"
    assert again.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    assert len(again.PixelData) == 100 * 100 * 2
    assert again.PixelData == original.PixelData
    np.testing.assert_array_equal(again.pixel_array, original.pixel_array)


def test_header_of_a_file_encoded_otherwise_than_declared_can_be_written(
    test_files: Path,
) -> None:
    # declares JPEG Baseline (explicit VR) but its dataset is encoded implicit VR
    original, again = round_trip(test_files / "SC_rgb_jpeg.dcm")
    assert again.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    for keyword in ("ImageType", "SOPInstanceUID", "Rows", "Columns", "PatientName"):
        assert again[keyword].value == original[keyword].value


def test_truncated_file_is_named_truncated(test_files: Path) -> None:
    data = (test_files / "CT_small.dcm").read_bytes()
    with pytest.raises(PixelDataError, match="truncated"):
        inspect_bytes(data[:-1000], Source("cut.dcm"))


def test_dicm_marker_followed_by_garbage_is_not_dicom() -> None:
    rng = np.random.default_rng(7)
    data = bytes(128) + b"DICM" + rng.bytes(2048)
    with pytest.raises(NotDicomError, match="not a DICOM file"):
        inspect_bytes(data, Source("garbage.dcm"))


def test_instances_decoding_to_other_colour_spaces_get_their_own_stacks(
    test_files: Path, real_dicom_dirs: tuple[Path, Path]
) -> None:
    pydicom_data = real_dicom_dirs[1]
    paths = [
        pydicom_data / "SC_rgb.dcm",
        pydicom_data / "SC_ybr_full_uncompressed.dcm",
        test_files / "SC_rgb_dcmtk_+eb+cy+np.dcm",  # JPEG baseline, YBR_FULL_422
    ]
    infos = [inspect_bytes(p.read_bytes(), Source(str(p))) for p in paths]
    assert len({i.series_instance_uid for i in infos}) == 1
    assert [i.decoded_photometric for i in infos] == ["RGB", "YBR_FULL", "YBR_FULL"]
    plans = plan_stacks(infos)
    by_pi = {tuple(sorted(i.photometric_interpretation for i in p.instances)): p for p in plans}
    assert set(by_pi) == {("RGB",), ("YBR_FULL", "YBR_FULL_422")}
    assert "photometric interpretation" in (plans[1].reason or "")
