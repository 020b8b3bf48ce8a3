"""dciodvfy finds no new error in de-identified real files (compared with their input)."""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from deid_phi_helpers import SECRET, real_files

from imagelake.anonymize import Deidentifier, load_policy

FILES = real_files()
CHECKED = [
    "pydicom/CT_small.dcm",
    "pydicom/MR_small.dcm",
    "pydicom/rtplan.dcm",  # Treatment Machine Name: X in the table, Type 2 in RT Beams
    "pydicom/reportsi.dcm",  # SR content tree (Content Sequence D)
    "deid-data/humans/ctbrain1.dcm",
    "deid-data/ultrasounds/GREYSCALE_IMAGE.dcm",
    "deid-data/animals/cat.dcm",  # Responsible Person: X in the table, Type 2C for animals
    "pydicom-data/MR-SIEMENS-DICOM-WithOverlays.dcm",
    "pydicom-data/eCT_Supplemental.dcm",
]


def _errors(dciodvfy: str, path: Path) -> Counter[str]:
    run = subprocess.run([dciodvfy, str(path)], capture_output=True, timeout=60, check=False)
    text = (run.stdout + run.stderr).decode("latin-1")
    # numbers and UIDs differ between input and output by design: compare the messages only
    return Counter(
        re.sub(r"\b\d+(?:\.\d+)*\b", "<N>", line)
        for line in text.splitlines()
        if line.startswith("Error")
    )


@pytest.mark.parametrize("options", [[], ["retain_long_modified_dates"]], ids=["basic", "dates"])
@pytest.mark.parametrize("name", CHECKED)
def test_no_new_dciodvfy_errors(
    name: str, options: list[str], tmp_path: Path, require_tool: Callable[[str], str]
) -> None:
    dciodvfy = require_tool("dciodvfy")
    source = FILES[name]
    ds = pydicom.dcmread(source)
    result = Deidentifier(load_policy({"options": options}), secret=SECRET).deidentify(
        ds, subject_key="subject-1"
    )
    out = tmp_path / "out.dcm"
    result.dataset.save_as(out, enforce_file_format=False)
    new = _errors(dciodvfy, out) - _errors(dciodvfy, source)
    assert not new, f"{name}: new dciodvfy errors: {sorted(new)}"


def test_dciodvfy_sees_a_broken_output(tmp_path: Path, require_tool: Callable[[str], str]) -> None:
    """The comparison can fail: removing a Type 1 attribute is reported as a new error."""
    dciodvfy = require_tool("dciodvfy")
    source = FILES["pydicom/CT_small.dcm"]
    ds = pydicom.dcmread(source)
    del ds.Rows
    out = tmp_path / "broken.dcm"
    ds.save_as(out, enforce_file_format=False)
    assert _errors(dciodvfy, out) - _errors(dciodvfy, source)
