"""The packaged Table E.1-1, and a cross-check of its Basic Profile column with dicom-anonymizer."""

from __future__ import annotations

import csv
import importlib
import os
from importlib import resources
from pathlib import Path
from types import ModuleType

import pytest

from imagelake.anonymize import Option, confidentiality_table
from imagelake.anonymize._table import ACTIONS

DIFFERENCES = Path(__file__).parent / "data" / "dicom_anonymizer_2023_differences.csv"


def test_table_has_every_row_and_column_with_valid_codes() -> None:
    table = confidentiality_table()
    base = [row for row in table if not row.supplement]
    assert len(base) == 433  # rows of the source JSON (dicom-standard 0.1.0)
    # the 2023e supplement adds rows only for attributes the 2020 table lacks
    extra = [row for row in table if row.supplement]
    assert len(extra) == 178 and not {r.tag for r in extra} & {r.tag for r in base}
    assert table.by_keyword()["InstanceCreationDate"].basic == "X/D"
    for row in table:
        assert row.basic in ACTIONS
        assert set(row.options.values()) <= {"K", "C", "X"}, row.tag
    # every option column is used by some row
    used = {option for row in table for option in row.options}
    assert used == set(Option)


def test_table_names_its_source() -> None:
    text = resources.files("imagelake.anonymize").joinpath("data/table_e1_1.csv").read_text("utf-8")
    header = "".join(line for line in text.splitlines(keepends=True) if line.startswith("#"))
    assert "dicom-standard 0.1.0" in header and "confidentiality_profile_attributes.json" in header


@pytest.mark.parametrize(
    ("keyword", "basic", "option", "optioned"),
    [
        # well-known rows of PS3.15 Table E.1-1 (spot checks of the transcription)
        ("PatientName", "Z", None, None),
        ("PatientID", "Z", None, None),
        ("PatientBirthDate", "Z", None, None),
        ("SOPInstanceUID", "U", Option.RETAIN_UIDS, "K"),
        ("StudyDate", "Z", Option.RETAIN_LONG_MODIFIED_DATES, "C"),
        ("StudyDate", "Z", Option.RETAIN_LONG_FULL_DATES, "K"),
        ("PatientSex", "Z", Option.RETAIN_PATIENT_CHARACTERISTICS, "K"),
        ("DeviceSerialNumber", "X/Z/D", Option.RETAIN_DEVICE_IDENTITY, "K"),
        ("InstitutionName", "X/Z/D", Option.RETAIN_INSTITUTION_IDENTITY, "K"),
        ("StudyDescription", "X", Option.CLEAN_DESCRIPTORS, "C"),
        ("ContentSequence", "D", Option.CLEAN_STRUCTURED_CONTENT, "C"),
        ("ReferencedImageSequence", "X/Z/U*", Option.RETAIN_UIDS, "K"),
    ],
)
def test_known_rows(keyword: str, basic: str, option: Option | None, optioned: str | None) -> None:
    row = confidentiality_table().by_keyword()[keyword]
    assert row.basic == basic
    if option is not None:
        assert row.options[option] == optioned
        assert row.action([option]) == optioned
    assert row.action([]) == basic


def test_patterns_cover_groups() -> None:
    table = confidentiality_table()
    overlay = table.lookup(0x60023000)
    assert overlay is not None and overlay.tag == "60xx3000"
    assert table.lookup(0x50100042) is not None  # curve data, any element
    assert table.lookup(0x00280010) is None  # Rows: not an identifying attribute
    private = [row for row in table if row.tag == "odd"]
    assert private and private[0].matches(0x00291010) and not private[0].matches(0x00281010)


def _dicom_anonymizer() -> ModuleType:
    try:
        return importlib.import_module(
            "dicomanonymizer.dicom_anonymization_databases.dicomfields_2023"
        )
    except ImportError:
        reason = "dicom-anonymizer is not installed (pip install dicom-anonymizer)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true: a missing dependency fails the test)", pytrace=False)
        pytest.skip(reason)


def _key(tag: tuple[int, ...]) -> str:
    if len(tag) == 2:
        return f"{tag[0]:04X}{tag[1]:04X}"
    group, elem, group_mask, elem_mask = tag  # a masked tag such as 60xx,3000
    value, mask = (group << 16) | elem, (group_mask << 16) | elem_mask
    return "".join(
        f"{(value >> s) & 0xF:X}" if (mask >> s) & 0xF else "x" for s in range(28, -4, -4)
    )


def test_basic_profile_agrees_with_dicom_anonymizer() -> None:
    """Every difference with dicom-anonymizer's lists is one documented, with its reason."""
    module = _dicom_anonymizer()
    theirs: dict[str, str] = {}
    for name in ("D", "Z", "X", "U", "Z_D", "X_Z", "X_D", "X_Z_D", "X_Z_U_STAR"):
        action = name.replace("_STAR", "*").replace("_", "/")
        for tag in getattr(module, f"{name}_TAGS"):
            theirs[_key(tag)] = action
    ours = {row.tag: row.basic for row in confidentiality_table()}
    found = {
        (tag, ours.get(tag, ""), theirs.get(tag, ""))
        for tag in set(ours) | set(theirs)
        if ours.get(tag) != theirs.get(tag)
    }
    lines = DIFFERENCES.read_text("utf-8").splitlines()
    documented = list(csv.DictReader(line for line in lines if not line.startswith("#")))
    assert all(d["reason"].strip() for d in documented)
    assert found == {(d["tag"], d["ours"], d["theirs"]) for d in documented}
    agree = set(ours) & set(theirs)
    assert len(agree) - sum(1 for t, o, th in found if o and th) >= 425  # most rows agree
