"""Tests of the scanner check and the alerts it raises."""

from __future__ import annotations

import time

import pydicom
import pytest
import sqlalchemy as sa

from imagelake import model
from imagelake.db import Database
from imagelake.knowledge import (
    KnowledgeBase,
    ScannerIndex,
    add_scanner,
    check,
    record_sighting,
    shipped_path,
    sync,
)


@pytest.fixture
def known(db: Database) -> Database:
    sync(db, KnowledgeBase.load(shipped_path()))
    add_scanner(db, "ACME", "Any Version")  # listed without versions
    return db


def _alerts(db: Database) -> list[sa.Row[tuple[object, ...]]]:
    with db.connect() as conn:
        return list(conn.execute(sa.select(model.alert).order_by(model.alert.c.id)).all())


@pytest.mark.parametrize(
    ("manufacturer", "model_name", "versions", "status"),
    [
        ("SIEMENS", "SOMATOM Force", "syngo CT VA50A", "known"),
        ("Siemens", "somatom-force", ["syngo ct va50a"], "known"),
        ("TOSHIBA MEC", "MRT50H1", ["V3.51*P25"], "known"),
        ("SIEMENS", "SOMATOM Force", ["syngo CT VA70A"], "unknown_software_version"),
        ("SIEMENS", "SOMATOM Force", [], "known"),
        ("SIEMENS", "SOMATOM Definition AS", ["syngo CT 2011A"], "unknown_scanner"),
        ("Canon Medical Systems", "Aquilion ONE PRISM", ["V10.12"], "unknown_scanner"),
        ("ACME", "Any Version", ["whatever"], "known"),
        ("", None, ["V1"], "unidentified"),
        ("SIEMENS", "", [], "unknown_scanner"),
    ],
)
def test_statuses(
    known: Database, manufacturer: str, model_name: str | None, versions: object, status: str
) -> None:
    result = check(known, manufacturer, model_name, versions)  # type: ignore[arg-type]
    assert result.status == status
    assert (result.scanner_id is not None) == (status in {"known", "unknown_software_version"})


def test_any_of_several_software_versions_is_enough(known: Database) -> None:
    ds = pydicom.Dataset()
    ds.SoftwareVersions = ["VE11C", "syngo MR E11"]
    assert isinstance(ds.SoftwareVersions, pydicom.multival.MultiValue)
    result = check(known, "SIEMENS", "Skyra", ds.SoftwareVersions)
    assert result.known
    assert result.matched_version == "syngo MR E11"
    assert result.software_versions == ("VE11C", "syngo MR E11")
    assert check(known, "SIEMENS", "Skyra", "VE11C\\VE11D").status == "unknown_software_version"


def test_index_from_db_and_from_file_agree(known: Database) -> None:
    from_db = ScannerIndex.from_db(known)
    from_kb = ScannerIndex.from_kb(KnowledgeBase.load(shipped_path()))
    assert len(from_db) == len(from_kb) + 1
    for args in [
        ("GE MEDICAL SYSTEMS", "RHAPSODE", ["05"]),
        ("GE MEDICAL SYSTEMS", "RHAPSODE", ["5"]),
        ("Philips Medical Systems, Inc.", "Eclipse 1.5T", ["VIA5.2"]),
        ("Philips", "Eclipse 1.5T", ["VIA5.2"]),
    ]:
        assert from_db.check(*args).status == from_kb.check(*args).status
    assert from_kb.check("GE MEDICAL SYSTEMS", "RHAPSODE", ["5"]).status == (
        "unknown_software_version"
    )
    assert from_kb.check("SIEMENS", "Skyra", ["syngo MR E11"]).scanner_id is None


def test_emulator_of_the_matched_version_is_returned(db: Database) -> None:
    add_scanner(db, "ACME", "Scan 1", software_versions=["2.0"], emulator="acme-vm@2.0")
    assert check(db, "acme", "scan 1", ["2.0"]).emulator == "acme-vm@2.0"


def test_alert_once_per_combination_with_counts_and_times(known: Database) -> None:
    index = ScannerIndex.from_db(known)
    canon = index.check("Canon Medical Systems", "Aquilion ONE PRISM", ["V10.12"])
    canon_again = index.check("CANON MEDICAL SYSTEMS", "Aquilion ONE  PRISM", ["V10.13"])
    new_version = index.check("SIEMENS", "SOMATOM Force", ["syngo CT VA70A"])

    with known.begin() as conn:
        first = record_sighting(
            conn, canon, count=120, modality="CT", context={"series_instance_uid": "1.2.3"}
        )
        assert first is not None
        assert first.created
        assert first.count == 120
        assert record_sighting(conn, new_version, count=3, modality="CT") is not None
    time.sleep(0.01)
    with known.begin() as conn:
        later = record_sighting(conn, canon_again, count=80, modality="CT")
        assert later is not None
        assert not later.created
        assert later.id == first.id
        assert later.count == 200
        again = record_sighting(conn, new_version, count=4, modality="CT")
        assert again is not None
        assert again.count == 7

    alerts = _alerts(known)
    assert [(a.kind, a.key, a.count) for a in alerts] == [
        ("unknown_scanner", "canon medical systems|aquilion one prism", 200),
        ("unknown_software_version", "siemens|somatom force|syngo ct va70a", 7),
    ]
    assert alerts[0].message == (
        "Unknown scanner model: Canon Medical Systems Aquilion ONE PRISM (software V10.12); "
        "first seen in series 1.2.3"
    )
    assert "syngo CT VA70A" in alerts[1].message
    assert alerts[0].details["series_instance_uid"] == "1.2.3"
    assert alerts[0].first_seen < alerts[0].last_seen


def test_unidentified_scanners_are_keyed_by_modality(known: Database) -> None:
    index = ScannerIndex.from_db(known)
    nameless = index.check(None, "  ", ["V1"])
    with known.begin() as conn:
        record_sighting(conn, nameless, count=2, modality="mr")
        record_sighting(conn, nameless, count=5, modality="MR")
        record_sighting(conn, nameless, count=1, modality=None)
    alerts = _alerts(known)
    assert [(a.kind, a.key, a.count) for a in alerts] == [
        ("unidentified_scanner", "MR", 7),
        ("unidentified_scanner", "unknown", 1),
    ]


def test_known_scanners_raise_nothing_and_context_is_allow_listed(known: Database) -> None:
    index = ScannerIndex.from_db(known)
    with known.begin() as conn:
        assert record_sighting(conn, index.check("SIEMENS", "Skyra", ["syngo MR E11"])) is None
        unknown = index.check("X", "Y")
        with pytest.raises(ValueError, match="patient_id"):
            record_sighting(conn, unknown, context={"patient_id": "12345"})
        with pytest.raises(ValueError, match="count"):
            record_sighting(conn, unknown, count=0)
    assert _alerts(known) == []
