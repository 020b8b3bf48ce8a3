"""No raw format claims an ordinary DICOM file: every real test file goes the DICOM way."""

from __future__ import annotations

from pathlib import Path

from imagelake.formats import identify


def test_no_raw_format_claims_real_dicom_files(real_dicom_dirs: tuple[Path, Path]) -> None:
    files = [p for folder in real_dicom_dirs for p in folder.rglob("*") if p.is_file()]
    assert len(files) > 200
    claimed = {}
    for path in files:
        fmt = identify(path)
        if fmt is not None:
            claimed[path.name] = fmt.name
    assert claimed == {}
