"""Tests of the knowledge base in the registry: sync, hand-added scanners, removal, export."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from imagelake import model
from imagelake.db import Database, utcnow
from imagelake.errors import ConfigError, RegistryError
from imagelake.knowledge import (
    KnowledgeBase,
    ScannerIndex,
    add_scanner,
    add_version,
    list_scanners,
    remove_scanner,
    remove_version,
    shipped_path,
    sync,
    to_yaml,
)

SMALL = """\
version: 1
scanners:
  - manufacturer: ACME
    model: Scan 1
    modality: CT
    raw_formats: [opaque]
    software_versions:
      - version: "1.0"
        emulator: acme-vm@1.0
  - manufacturer: Other
    model: MR 3
    modality: MR
"""


def _counts(db: Database) -> tuple[int, int]:
    with db.connect() as conn:
        scanners = conn.execute(sa.select(sa.func.count()).select_from(model.scanner)).scalar()
        versions = conn.execute(
            sa.select(sa.func.count()).select_from(model.scanner_version)
        ).scalar()
    return int(scanners or 0), int(versions or 0)


def test_sync_loads_the_shipped_file_and_is_idempotent(db: Database) -> None:
    kb = KnowledgeBase.load(shipped_path())
    first = sync(db, kb)
    assert first.added == len(kb)
    assert first.versions_added == sum(len(e.software_versions) for e in kb)
    assert _counts(db) == (len(kb), first.versions_added)

    second = sync(db, kb)
    assert not second.changed
    assert _counts(db) == (len(kb), first.versions_added)
    force = next(e for e in list_scanners(db) if e.model == "SOMATOM Force")
    assert force.source == "catalog"


def test_sync_keeps_hand_added_scanners_and_their_values(db: Database) -> None:
    add_scanner(db, "Canon Medical Systems", "Aquilion ONE PRISM", software_versions=["V10.12"])
    # a hand-added spelling of a catalog scanner, with a modality the file disagrees with
    add_scanner(db, "acme", "SCAN-1", modality="XA", software_versions=["3.0"])

    report = sync(db, KnowledgeBase.from_yaml(SMALL))
    assert report.added == 1  # Other MR 3; ACME Scan 1 merged into the hand-added row
    entries = {e.model.casefold(): e for e in list_scanners(db)}
    assert set(entries) == {"aquilion one prism", "scan-1", "mr 3"}
    acme = entries["scan-1"]
    assert acme.source == "cli"
    assert acme.modality == "XA"  # kept
    assert acme.raw_formats == ("opaque",)  # gap filled from the file
    assert {v.version for v in acme.software_versions} == {"3.0", "1.0"}
    canon = entries["aquilion one prism"]
    assert [v.version for v in canon.software_versions] == ["V10.12"]

    # an empty catalog changes nothing and reports the catalog-only scanner as stale
    report = sync(db, KnowledgeBase.from_yaml("version: 1\nscanners: []\n"))
    assert report.stale == ("other|mr 3",)
    assert not report.changed
    assert len(list_scanners(db)) == 3


def test_sync_updates_catalog_entries_when_the_file_changes(db: Database) -> None:
    sync(db, KnowledgeBase.from_yaml(SMALL))
    changed = SMALL.replace("modality: CT", "modality: PT").replace("acme-vm@1.0", "acme-vm@1.1")
    report = sync(db, KnowledgeBase.from_yaml(changed))
    assert (report.added, report.updated, report.versions_updated) == (0, 1, 1)
    acme = next(e for e in list_scanners(db) if e.manufacturer == "ACME")
    assert acme.modality == "PT"
    assert acme.software_versions[0].emulator == "acme-vm@1.1"


def test_add_scanner_merges_by_normalised_name(db: Database) -> None:
    first = add_scanner(db, "GE MEDICAL SYSTEMS", "Revolution CT", modality="CT")
    again = add_scanner(db, "GE Medical Systems", "revolution  ct", software_versions=["v1"])
    assert (again.manufacturer, again.model) == (first.manufacturer, first.model)
    assert [v.version for v in again.software_versions] == ["v1"]
    assert _counts(db) == (1, 1)
    with pytest.raises(RegistryError, match="manufacturer and a model"):
        add_scanner(db, "GE", " ")


def test_add_version_sets_emulator_and_suggests_names(db: Database) -> None:
    add_scanner(db, "SIEMENS", "Skyra", software_versions=["syngo MR E11"])
    entry = add_version(db, "Siemens", "SKYRA", "syngo MR XA30", emulator="siemens-mr@xa30")
    assert {(v.version, v.emulator) for v in entry.software_versions} == {
        ("syngo MR E11", None),
        ("syngo MR XA30", "siemens-mr@xa30"),
    }
    entry = add_version(db, "SIEMENS", "Skyra", "SYNGO MR E11", emulator="siemens-mr@e11")
    assert len(entry.software_versions) == 2
    assert ("syngo MR E11", "siemens-mr@e11") in {
        (v.version, v.emulator) for v in entry.software_versions
    }
    with pytest.raises(RegistryError, match=re.escape("did you mean 'siemens|skyra'")):
        add_version(db, "SIEMENS", "Skyr", "x")
    with pytest.raises(ConfigError, match="id@version"):
        add_version(db, "SIEMENS", "Skyra", "x", emulator="no version")
    assert len(list_scanners(db)[0].software_versions) == 2


def test_remove_scanner_and_version(db: Database) -> None:
    add_scanner(db, "ACME", "Scan 1", software_versions=["1", "2"])
    with db.begin() as conn:
        scanner_id = ScannerIndex.from_db(conn).check("ACME", "Scan 1").scanner_id
        conn.execute(
            sa.insert(model.raw_file).values(
                sha256="ab" * 32,
                format="opaque",
                size=1,
                scanner_id=scanner_id,
                meta={},
                ingested_at=utcnow(),
            )
        )
    assert remove_version(db, "acme", "scan 1", "2")
    assert not remove_version(db, "acme", "scan 1", "2")
    assert _counts(db) == (1, 1)

    assert remove_scanner(db, "Acme", "SCAN 1")
    assert not remove_scanner(db, "Acme", "SCAN 1")
    assert _counts(db) == (0, 0)
    with db.connect() as conn:
        assert conn.execute(sa.select(model.raw_file.c.scanner_id)).scalar_one() is None


def test_to_yaml_exports_what_the_registry_holds(db: Database) -> None:
    sync(db, KnowledgeBase.from_yaml(SMALL))
    add_scanner(db, "Canon Medical Systems", "Aquilion ONE PRISM", software_versions=["V10.12"])
    exported = KnowledgeBase.from_yaml(to_yaml(db))
    assert [(e.manufacturer, e.model) for e in exported] == [
        ("ACME", "Scan 1"),
        ("Canon Medical Systems", "Aquilion ONE PRISM"),
        ("Other", "MR 3"),
    ]
    acme = exported.find("ACME", "Scan 1")
    assert acme is not None
    assert acme.software_versions[0].emulator == "acme-vm@1.0"
