"""An anonymized share of a real lake: a derived lake with zero identifying values, the same
pseudonyms on re-runs, burned-in images held back, the vault and its audited lookups."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from deid_phi_helpers import phi_candidates, real_files

from imagelake.lake import open_lake

#: real image files with identifiers that a share should carry (no burned-in risk)
SHARED = ("pydicom/CT_small.dcm", "pydicom/MR_small.dcm", "pydicom/JPEG2000.dcm")


@pytest.fixture
def source(tmp_path: Path) -> tuple[Any, dict[str, Path]]:
    files = real_files()
    chosen = {k: files[k] for k in SHARED}
    cookies = sorted(k for k in files if k.startswith("deid-data/") and "cookie" in k)[:4]
    chosen.update({k: files[k] for k in cookies})
    us = [k for k in files if "US" in k and k.startswith("pydicom-data/")][:1]
    chosen.update({k: files[k] for k in us})  # ultrasound: burned-in text risk
    folder = tmp_path / "in"
    for i, (_, path) in enumerate(sorted(chosen.items())):
        (folder / f"{i:02d}").mkdir(parents=True)
        shutil.copy2(path, folder / f"{i:02d}" / path.name)
    lake = open_lake(tmp_path / "lake", create=True)
    lake.ingest([folder])
    return lake, chosen


def _lake_text(root: Path, exported: Path) -> bytes:
    """Every byte a recipient gets, in readable form: regenerated DICOM files, the registry,
    the index tables (decoded), the catalog and the audit log."""
    parts = [p.read_bytes() for p in exported.rglob("*") if p.is_file()]
    parts.append((root / "registry.sqlite").read_bytes())
    for table in root.glob("index/*.parquet"):
        parts.append(pq.read_table(table).to_pandas().to_csv().encode())
    parts += [p.read_bytes() for p in [root / "catalog.yaml", *root.glob("audit/*")] if p.is_file()]
    return b"\n".join(parts)


def test_share_has_no_identifying_value_and_is_stable(
    tmp_path: Path, source: tuple[Any, dict[str, Path]]
) -> None:
    lake, chosen = source
    report = lake.anonymize(tmp_path / "share")
    assert report.instances >= 2 and report.subjects >= 2  # CT and MR; SC and US held back
    assert report.held_back >= 4
    share = open_lake(tmp_path / "share")
    out = tmp_path / "exported"
    share.export(out)
    blob = _lake_text(tmp_path / "share", out)
    leaks = {
        (name, value)
        for name, path in chosen.items()
        for value in phi_candidates(path)
        if value in blob
    }
    assert leaks == set()
    series = share.series()
    assert series.patient_id.str.startswith("SUBJ-").all()
    # re-running adds nothing and keeps the pseudonyms
    again = lake.anonymize(tmp_path / "share")
    assert again.instances_new == 0
    assert set(open_lake(tmp_path / "share").series().patient_id) == set(series.patient_id)
    # the source lake is unchanged, and knows what left it
    assert [e.action for e in lake.audit.entries(action="anonymize")] == ["anonymize"] * 2


def test_burned_in_images_are_held_back(
    tmp_path: Path, source: tuple[Any, dict[str, Path]]
) -> None:
    lake, chosen = source
    if not any("US" in k for k in chosen):
        pytest.skip("no ultrasound file among the real test files")
    report = lake.anonymize(tmp_path / "share")
    assert report.held_back >= 1
    share = open_lake(tmp_path / "share")
    assert "US" not in set(share.series().modality)


def test_vault_seals_identities_and_lookups_are_audited(
    tmp_path: Path, source: tuple[Any, dict[str, Path]], imagelake_exe: str
) -> None:
    from imagelake.vault import Vault, create_key_file

    lake, _ = source
    key_file = tmp_path / "keys" / "vault.key"
    create_key_file(key_file)
    env = {**os.environ, "IMAGELAKE_USER": "dana"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [imagelake_exe, *args, "--lake", lake.url], capture_output=True, text=True, env=env
        )

    made = run(
        "anonymize", "Modality=CT", "--out", str(tmp_path / "share"),
        "--vault", str(tmp_path / "vault"), "--vault-key-file", str(key_file),
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    pseudonym = str(open_lake(tmp_path / "share").series().patient_id.iloc[0])
    vault = Vault.open(tmp_path / "vault", _key(key_file))
    assert vault.pseudonyms() == [pseudonym]
    shown = run("vault", "lookup", pseudonym, "--vault", str(tmp_path / "vault"),
                "--vault-key-file", str(key_file))  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "PatientID:" in shown.stdout
    env["IMAGELAKE_USER"] = "mallory"
    refused = run("vault", "lookup", pseudonym, "--vault", str(tmp_path / "vault"),
                  "--vault-key-file", str(key_file))  # fmt: skip
    assert refused.returncode == 2 and "PatientID" not in refused.stdout
    actions = [(e.action, e.user) for e in lake.audit.entries() if e.action.startswith("vault")]
    assert actions == [("vault.lookup", "dana"), ("vault.lookup", "mallory")]
    assert lake.verify_audit().ok


def _key(path: Path) -> Any:
    from imagelake.vault import VaultKey

    return VaultKey.from_file(path)
