"""Tests of the matching rules: how names and versions are normalised."""

from __future__ import annotations

import pytest
from pydicom.multival import MultiValue

from imagelake.knowledge import normalize_name, normalize_version, scanner_key, split_versions


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("GE MEDICAL SYSTEMS", "GE Medical Systems"),
        ("TOSHIBA_MEC", "Toshiba MEC"),
        ("Philips Medical Systems, Inc.", "philips  medical systems inc"),
        ("  Agfa-Gevaert AG ", "AGFA GEVAERT AG"),
        ("SOMATOM Definition AS+", "somatom definition as +"),
        ("Ingenia\tElition X", "INGENIA ELITION-X"),
    ],
)
def test_names_that_match(a: str, b: str) -> None:
    assert normalize_name(a) == normalize_name(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("SOMATOM Definition AS", "SOMATOM Definition AS+"),
        ("Skyra", "Skyra fit"),
        ("LightSpeed Ultra", "LightSpeed Plus"),
    ],
)
def test_names_that_differ(a: str, b: str) -> None:
    assert normalize_name(a) != normalize_name(b)


def test_name_normal_form_is_folded_and_stripped() -> None:
    assert normalize_name("  Philips Medical Systems, Inc. ") == "philips medical systems inc"
    assert normalize_name(None) == ""
    assert normalize_name("--") == ""


def test_scanner_key_joins_normalised_names() -> None:
    assert scanner_key("GE MEDICAL SYSTEMS", "SIGNA  Premier") == "ge medical systems|signa premier"
    assert scanner_key(None, "") == "|"


def test_versions_keep_punctuation_but_fold_case_and_spaces() -> None:
    assert normalize_version(" syngo  CT VA50A ") == normalize_version("SYNGO CT va50a")
    assert normalize_version("V3.51*P25") != normalize_version("V3.51 P25")
    assert normalize_version("2.0") != normalize_version("20")


def test_split_versions_accepts_strings_lists_and_multivalue() -> None:
    assert split_versions("VE11C\\ syngo MR E11 ") == ("VE11C", "syngo MR E11")
    assert split_versions(MultiValue(str, ["A", "", " B "])) == ("A", "B")
    assert split_versions(["x", None, 2]) == ("x", "2")
    assert split_versions(None) == ()
    assert split_versions("") == ()
