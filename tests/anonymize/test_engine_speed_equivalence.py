"""The de-identification engine's output is byte-identical to the reference engine's.

``data/deid_output_sha256.json`` holds, for every real file of
:func:`deid_phi_helpers.real_files` and two policies (the default one, and Retain Longitudinal
Modified Dates), the SHA-256 of the de-identified file as saved, and of the rest of the result
(action counts, burned-in risk, pseudonym, date shift). It was generated with the engine *before*
its speed-up (``python tests/anonymize/test_engine_speed_equivalence.py --write``), so these tests
fail on any change of behaviour, however small. It was re-recorded once, on purpose, when the
2023-edition supplement of Table E.1-1 arrived (InstanceCreationDate and 177 other attributes
gained their actions); a change of table is the only reason to re-record it.

Every file is de-identified three ways, which must all give the recorded output: a copy of a
freshly read dataset (raw, undecoded elements), in place on a freshly read dataset, and in place
on a dataset whose every element was decoded first (as the benchmark does).
"""

from __future__ import annotations

import copy
import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydicom
import pytest
from deid_phi_helpers import SECRET, real_files, to_bytes
from pydicom.dataset import Dataset

from imagelake.anonymize import Deidentifier, DeidResult, load_policy

DIGESTS = Path(__file__).parent / "data" / "deid_output_sha256.json"
POLICIES: dict[str, dict[str, Any]] = {
    "default": {},
    "retain_long_modified_dates": {"options": ["retain_long_modified_dates"]},
}


def _subject_key(ds: Dataset, name: str) -> str:
    return str(ds.get("PatientID", "")) or name


def _digest(result: DeidResult) -> dict[str, str]:
    rest = json.dumps(
        {
            "actions": sorted(result.actions.items()),
            "burned_in_risk": result.burned_in_risk,
            "pseudonym": result.pseudonym,
            "date_shift_days": result.date_shift_days,
        },
        sort_keys=True,
    )
    return {
        "file": hashlib.sha256(to_bytes(result.dataset)).hexdigest(),
        "result": hashlib.sha256(rest.encode()).hexdigest(),
    }


def _fresh(path: Path) -> Dataset:
    return pydicom.dcmread(path)


def _decoded(path: Path) -> Dataset:
    ds = pydicom.dcmread(path)
    for _ in ds.iterall():  # decode every element, at every depth
        pass
    return ds


def _run(policy: str, name: str, path: Path, mode: str) -> dict[str, str]:
    deid = Deidentifier(load_policy(POLICIES[policy]), secret=SECRET)
    read: Callable[[Path], Dataset] = _decoded if mode == "decoded in place" else _fresh
    ds = read(path)
    key = _subject_key(ds, name)
    if mode == "copy":
        before = to_bytes(copy.deepcopy(ds))
        result = deid.deidentify(ds, subject_key=key)
        assert to_bytes(ds) == before, "deidentify without inplace changed its input"
        assert result.dataset is not ds
    else:
        result = deid.deidentify(ds, subject_key=key, inplace=True)
        assert result.dataset is ds
    return _digest(result)


def _all_digests() -> dict[str, dict[str, dict[str, str]]]:
    return {
        policy: {
            name: _run(policy, name, path, "fresh in place") for name, path in real_files().items()
        }
        for policy in POLICIES
    }


@pytest.fixture(scope="module")
def expected() -> dict[str, dict[str, dict[str, str]]]:
    data: dict[str, dict[str, dict[str, str]]] = json.loads(DIGESTS.read_text("utf-8"))
    return data


def test_reference_covers_every_real_file(expected: dict[str, dict[str, Any]]) -> None:
    assert sorted(expected) == sorted(POLICIES)
    for policy in POLICIES:
        assert sorted(expected[policy]) == sorted(real_files())


@pytest.mark.parametrize("mode", ["copy", "fresh in place", "decoded in place"])
@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_output_bytes_match_reference_engine(
    policy: str, mode: str, expected: dict[str, dict[str, dict[str, str]]]
) -> None:
    mismatched = [
        name
        for name, path in real_files().items()
        if _run(policy, name, path, mode) != expected[policy][name]
    ]
    assert not mismatched, f"{policy}/{mode}: output differs from the reference for {mismatched}"


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_one_deidentifier_reused_for_every_file_twice(
    policy: str, expected: dict[str, dict[str, dict[str, str]]]
) -> None:
    """The per-Deidentifier memos (tags, IOD types, UIDs, subjects) change no later output."""
    deid = Deidentifier(load_policy(POLICIES[policy]), secret=SECRET)
    files = real_files()
    for _ in range(2):
        for name, path in files.items():
            ds = _fresh(path)
            result = deid.deidentify(ds, subject_key=_subject_key(ds, name), inplace=True)
            assert _digest(result) == expected[policy][name], name


def test_replaced_options_are_honoured(expected: dict[str, dict[str, dict[str, str]]]) -> None:
    """Options replaced on a used Deidentifier apply to the next call, as on a fresh one."""
    name, path = "pydicom/CT_small.dcm", real_files()["pydicom/CT_small.dcm"]
    deid = Deidentifier(load_policy(None), secret=SECRET)
    ds = _fresh(path)
    assert (
        _digest(deid.deidentify(ds, subject_key=_subject_key(ds, name)))
        == (expected["default"][name])
    )
    modified = load_policy(POLICIES["retain_long_modified_dates"])
    deid.policy, deid.options = modified, modified.effective_options()
    result = deid.deidentify(ds, subject_key=_subject_key(ds, name))
    assert _digest(result) == expected["retain_long_modified_dates"][name]


def test_digest_tells_outputs_apart() -> None:
    """The comparison can fail: another secret gives other bytes for the same input."""
    name, path = next(iter(real_files().items()))
    ds = _fresh(path)
    one = Deidentifier(load_policy(None), secret=SECRET).deidentify(
        ds, subject_key=_subject_key(ds, name)
    )
    other = Deidentifier(load_policy(None), secret=SECRET[::-1]).deidentify(
        ds, subject_key=_subject_key(ds, name)
    )
    assert _digest(one)["file"] != _digest(other)["file"]


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: test_engine_speed_equivalence.py --write  (regenerates the reference)")
    DIGESTS.write_text(json.dumps(_all_digests(), indent=1, sort_keys=True) + "\n", "utf-8")
    print(f"wrote {DIGESTS}")
