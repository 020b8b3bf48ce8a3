"""dciodvfy (dicom3tools) finds no error in an exported file that it did not find in the original.

Samples: a real CT, MR, enhanced MR, enhanced CT and ultrasound (one received compressed,
so the export changes transfer syntax and photometric interpretation), and a SYNTHETIC CT
received uncompressed and JPEG-LS compressed.
"""

from __future__ import annotations

import subprocess
import warnings
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest

from imagelake.lake import open_lake

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

REAL_SAMPLES = [
    "test_files/CT_small.dcm",
    "test_files/MR_small.dcm",
    "data/emri_small.dcm",
    "data/eCT_Supplemental.dcm",
    "data/US1_UNCR.dcm",
    "data/US1_J2KR.dcm",
]


def dciodvfy_errors(tool: str, path: Path) -> set[str]:
    """The "Error" lines dciodvfy prints for ``path`` (it exits 1 when there are any)."""
    proc = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=120)
    lines = {
        line.strip() for line in (proc.stdout + proc.stderr).splitlines()
        if line.strip().startswith("Error")
    }  # fmt: skip
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    return lines


@pytest.mark.peer
@pytest.mark.slow  # (the session's ingest of the real files)
@pytest.mark.parametrize("rel", REAL_SAMPLES)
def test_export_of_real_file_adds_no_dciodvfy_error(
    real_lakes,
    require_tool: Callable[[str], str],
    rel: str,
) -> None:
    tool = require_tool("dciodvfy")
    source = next(str(p) for p in real_lakes.files if real_lakes.relname(p) == rel)
    assert source in real_lakes.exported, real_lakes.quarantined.get(source)
    before = dciodvfy_errors(tool, Path(source))
    after = dciodvfy_errors(tool, real_lakes.exported[source])
    assert after - before == set()


@pytest.mark.peer
@pytest.mark.parametrize("transfer_syntax", [None, "jpeg-ls"])
def test_export_of_synthetic_ct_adds_no_dciodvfy_error(
    tmp_path: Path,
    require_tool: Callable[[str], str],
    transfer_syntax: str | None,
) -> None:
    from imagelake import synthetic

    tool = require_tool("dciodvfy")
    files = synthetic.write_series(
        synthetic.ct_series(4, 64, 64), tmp_path / "in", transfer_syntax=transfer_syntax
    )
    lake = open_lake(tmp_path / "lake", create=True)
    lake.ingest(tmp_path / "in", workers=1)
    report = lake.export(tmp_path / "out")
    assert report.instances == len(files)
    for path in files:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            uid = pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID
        exported = [p for p in report.files if p.name == f"{uid}.dcm"]
        assert len(exported) == 1
        before = dciodvfy_errors(tool, path)
        assert dciodvfy_errors(tool, exported[0]) - before == set()
