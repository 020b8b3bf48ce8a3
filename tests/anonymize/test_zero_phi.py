"""Zero PHI left: no identifying value of a real input occurs anywhere in the output file bytes."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from deid_phi_helpers import SECRET, phi_candidates, real_files, to_bytes

from imagelake.anonymize import Deidentifier, load_policy

FILES = real_files()
POLICIES = {
    "basic": {},
    "modified-dates": {"options": ["retain_long_modified_dates"]},
}


@pytest.mark.parametrize("policy", sorted(POLICIES))
@pytest.mark.parametrize("name", sorted(FILES))
def test_no_identifying_value_left_in_output_bytes(name: str, policy: str, tmp_path: Path) -> None:
    path = FILES[name]
    candidates = phi_candidates(path)
    assert candidates, f"{name}: the scan found nothing to look for, so it would prove nothing"
    source = pydicom.dcmread(path)
    deid = Deidentifier(load_policy(POLICIES[policy]), secret=SECRET)
    result = deid.deidentify(source, subject_key=str(source.get("PatientID") or name))
    out = tmp_path / "out.dcm"
    result.dataset.save_as(out, enforce_file_format=False)
    data = out.read_bytes()
    left = sorted(v for v in candidates if v in data)
    # report how many and which attributes' values, never the values themselves
    assert not left, f"{name}: {len(left)} identifying values left in the output bytes"
    # the output is still a DICOM file pydicom reads back, marked as de-identified
    back = pydicom.dcmread(out)
    assert back.PatientIdentityRemoved == "YES"
    assert back.PatientID == result.pseudonym


def test_the_scan_does_find_identifiers_in_an_untouched_file() -> None:
    """The byte scan is not blind: every candidate of an input is found in the input itself."""
    path = FILES["deid-data/humans/ctbrain1.dcm"]
    data = to_bytes(pydicom.dcmread(path))
    candidates = phi_candidates(path)
    assert len(candidates) > 20
    assert all(v in data for v in candidates)


def test_input_dataset_is_not_changed() -> None:
    path = FILES["pydicom/CT_small.dcm"]
    source = pydicom.dcmread(path)
    before = to_bytes(source)
    Deidentifier(load_policy(), secret=SECRET).deidentify(source, subject_key="s")
    assert to_bytes(source) == before


def test_inplace_deidentifies_the_given_dataset() -> None:
    source = pydicom.dcmread(FILES["pydicom/CT_small.dcm"])
    copy_result = Deidentifier(load_policy(), secret=SECRET).deidentify(source, subject_key="s")
    result = Deidentifier(load_policy(), secret=SECRET).deidentify(
        source, subject_key="s", inplace=True
    )
    assert result.dataset is source
    assert to_bytes(source) == to_bytes(copy_result.dataset)
