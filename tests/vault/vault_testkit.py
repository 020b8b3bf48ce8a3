"""Helpers for tests/vault (a uniquely named module; never import conftest)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imagelake.vault import ScryptParams

# small scrypt cost for tests (the default n = 2**15 is timed once in test_vault_keys.py)
FAST_SCRYPT = ScryptParams(n=2**10, r=8, p=1)

PHI_KEYWORDS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "PatientWeight",
    "OtherPatientIDs",
    "InstitutionName",
    "ReferringPhysicianName",
    "AccessionNumber",
    "StudyDate",
)


def pydicom_test_files() -> Path:
    import pydicom

    return Path(pydicom.__file__).parent / "data" / "test_files"


def real_identities() -> dict[str, dict[str, Any]]:
    """Pseudonym -> identifiers and demographics read from REAL DICOM files (pydicom's)."""
    import pydicom

    out: dict[str, dict[str, Any]] = {}
    names = ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "rtdose.dcm", "JPEG2000.dcm"]
    for i, name in enumerate(names):
        ds = pydicom.dcmread(pydicom_test_files() / name, stop_before_pixels=True)
        identity = {kw: str(ds.get(kw)) for kw in PHI_KEYWORDS if ds.get(kw) not in (None, "")}
        identity["source_file"] = name
        out[f"SUBJ-{i:04d}"] = identity
    return out


def identity_values(identities: dict[str, dict[str, Any]]) -> set[str]:
    """Every identifying value (long enough to be unambiguous when scanning bytes)."""
    values = set()
    for identity in identities.values():
        for field, value in identity.items():
            text = str(value)
            if field != "source_file" and len(text) >= 4:
                values.add(text)
    return values


def files_containing(folder: Path, needles: set[str]) -> list[tuple[str, str]]:
    """(file, needle) for every needle found in any file under ``folder`` (UTF-8 and UTF-16)."""
    hits = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        for needle in needles:
            for enc in ("utf-8", "utf-16-le"):
                if needle.encode(enc) in data:
                    hits.append((str(path), needle))
    return hits


def need_module(name: str) -> Any:
    """Import ``name``, or skip the test (fail it under ``CI=true``) when it is missing."""
    import importlib
    import os

    import pytest

    try:
        return importlib.import_module(name)
    except ImportError:
        reason = f"{name} is not installed (pip install -e '.[test,s3,crypto]')"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true: a missing dependency fails the test)", pytrace=False)
        pytest.skip(reason)
