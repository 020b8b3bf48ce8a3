"""Writing series to files, uncompressed and in the lossless compressed transfer syntaxes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian

from imagelake.errors import ConfigError
from imagelake.synthetic import (
    LOSSLESS_TRANSFER_SYNTAXES,
    compress,
    ct_series,
    localizer,
    mr_series,
    transfer_syntax_uid,
    write_series,
)

COMPRESSED = ["jpeg-ls", "jpeg2000", "rle"]


def test_write_series_round_trips_headers_and_pixels(
    ct_small: list[pydicom.Dataset], tmp_path: Path
) -> None:
    series = ct_small[:5]
    paths = write_series(series, tmp_path)
    assert [p.name for p in paths] == [f"{ds.SOPInstanceUID}.dcm" for ds in series]
    for path, ds in zip(paths, series, strict=True):
        back = pydicom.dcmread(path)
        assert back.preamble == b"\x00" * 128
        assert back.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert back.SOPInstanceUID == ds.SOPInstanceUID
        assert back.PatientName == ds.PatientName
        assert back.ImagePositionPatient == ds.ImagePositionPatient
        np.testing.assert_array_equal(back.pixel_array, ds.pixel_array)


def test_numbered_names_and_no_silent_overwrite(tmp_path: Path) -> None:
    series = list(ct_series(3, 16, 16, series_number=7))
    paths = write_series([*series, *localizer(series)], tmp_path, naming="number")
    assert [p.name for p in paths] == [f"007_{i:05d}.dcm" for i in range(1, 7)]
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_series(series[:1], tmp_path, naming="number")
    assert write_series(series[:1], tmp_path, naming="number", overwrite=True) == paths[:1]


def test_write_series_consumes_a_generator(tmp_path: Path) -> None:
    paths = write_series(mr_series(4, 32, 32), tmp_path / "new" / "folder")
    assert len(paths) == 4 and all(p.exists() for p in paths)


def test_bad_naming_or_syntax_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="naming"):
        write_series([], tmp_path, naming="date")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="jpeg-ls"):
        write_series([], tmp_path, transfer_syntax="jpeg-xl")
    assert transfer_syntax_uid("rle") == LOSSLESS_TRANSFER_SYNTAXES["rle"]
    assert transfer_syntax_uid(str(LOSSLESS_TRANSFER_SYNTAXES["rle"])) == "1.2.840.10008.1.2.5"


@pytest.mark.parametrize("syntax", COMPRESSED)
@pytest.mark.parametrize("kind", ["ct_uint16", "ct_int16", "mr"])
def test_compressed_files_decode_to_identical_pixels(
    syntax: str, kind: str, tmp_path: Path
) -> None:
    if kind == "mr":
        original = list(mr_series(2, 64, 64))
    else:
        original = list(ct_series(2, 64, 64, dtype="int16" if kind == "ct_int16" else "uint16"))
    paths = write_series(original, tmp_path, transfer_syntax=syntax)
    for path, ds in zip(paths, original, strict=True):
        back = pydicom.dcmread(path)
        assert back.file_meta.TransferSyntaxUID == LOSSLESS_TRANSFER_SYNTAXES[syntax]
        assert back.SOPInstanceUID == ds.SOPInstanceUID  # lossless: the same instance
        assert len(back.PixelData) < len(ds.PixelData)
        decoded = back.pixel_array
        assert decoded.dtype == ds.pixel_array.dtype
        np.testing.assert_array_equal(decoded, ds.pixel_array)


def test_compress_returns_a_copy_and_can_undo_itself(ct_small: list[pydicom.Dataset]) -> None:
    ds = ct_small[0]
    before = bytes(ds.PixelData)
    packed = compress(ds, "jpeg-ls")
    assert ds.PixelData == before
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    unpacked = compress(packed, "explicit")
    assert unpacked.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    np.testing.assert_array_equal(unpacked.pixel_array, ds.pixel_array)
