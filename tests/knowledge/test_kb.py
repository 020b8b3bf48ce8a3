"""Tests of the knowledge-base file: the shipped file, validation errors, paths, YAML output."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from imagelake.config import override
from imagelake.errors import ConfigError
from imagelake.knowledge import KnowledgeBase, ScannerEntry, VersionEntry, shipped_path
from imagelake.knowledge._kb import default_path

GOOD = """\
version: 1
scanners:
  - manufacturer: ACME
    model: Scan 1
    modality: CT
    raw_formats: [opaque]
    software_versions:
      - version: "1.0"
        emulator: acme-vm@1.0
      - version: "2.0"
"""


def test_shipped_file_loads_and_lists_known_scanners() -> None:
    kb = KnowledgeBase.load(shipped_path())
    force = kb.find("Siemens", "SOMATOM  force")
    assert force is not None
    assert force.modality == "CT"
    assert force.raw_formats == ("dicom-ct-pd",)
    assert [v.version for v in force.software_versions] == ["syngo CT VA50A"]
    rhapsode = kb.find("GE MEDICAL SYSTEMS", "RHAPSODE")
    assert rhapsode is not None
    assert rhapsode.software_versions[0].version == "05"  # quoted, so not the number 5
    assert len(kb) == len(yaml.safe_load(shipped_path().read_text())["scanners"])


def test_default_path_is_the_shipped_file_unless_settings_name_another(tmp_path: Path) -> None:
    with override(knowledge_base=None):
        assert default_path() == shipped_path()
        assert KnowledgeBase.load().find("SIEMENS", "Skyra") is not None
    mine = tmp_path / "mine.yaml"
    mine.write_text(GOOD)
    with override(knowledge_base=str(mine)):
        kb = KnowledgeBase.load()
    assert kb.source == str(mine)
    assert [e.model for e in kb] == ["Scan 1"]


def test_entries_are_parsed_with_versions_and_emulators() -> None:
    kb = KnowledgeBase.from_yaml(GOOD)
    (entry,) = kb.scanners
    assert entry == ScannerEntry(
        "ACME",
        "Scan 1",
        "CT",
        ("opaque",),
        (VersionEntry("1.0", "acme-vm@1.0"), VersionEntry("2.0")),
    )
    assert entry.key == "acme|scan 1"


def test_yaml_round_trip() -> None:
    kb = KnowledgeBase.load(shipped_path())
    again = KnowledgeBase.from_yaml(kb.to_yaml())
    assert again.scanners == kb.scanners


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("version: 2\nscanners: []\n", "this imagelake reads version 1"),
        ("version: 1\nscanners: {}\n", "'scanners' must be a list"),
        ("version: 1\nscanners: []\nextra: 1\n", "unknown key(s) ['extra']"),
        ("version: 1\nscanners:\n  - model: X\n", "scanners[0]: 'manufacturer' is required"),
        (
            "version: 1\nscanners:\n  - {manufacturer: A, model: B, colour: red}\n",
            "scanners[0] (A B): unknown key(s) ['colour']",
        ),
        (
            "version: 1\nscanners:\n  - {manufacturer: A, model: B, software_versions: [{version: 05}]}\n",
            "quote it",
        ),
        (
            "version: 1\nscanners:\n  - {manufacturer: A, model: B, software_versions: [V1]}\n",
            "software_versions[0]: must be a mapping",
        ),
        (
            "version: 1\nscanners:\n  - {manufacturer: A, model: B, raw_formats: twix}\n",
            "'raw_formats' must be a list",
        ),
        (
            "version: 1\nscanners:\n  - manufacturer: A\n    model: B\n    software_versions:\n"
            "      - {version: V1, emulator: no-version}\n",
            "must look like id@version",
        ),
        (
            "version: 1\nscanners:\n  - {manufacturer: A, model: B, software_versions: "
            "[{version: V1}, {version: v1}]}\n",
            "listed twice",
        ),
        (
            "version: 1\nscanners:\n  - {manufacturer: GE MEDICAL SYSTEMS, model: X}\n"
            "  - {manufacturer: GE Medical Systems, model: x}\n",
            "same scanner as scanners[0]",
        ),
        ("version: 1\nscanners: [\n", "is not valid YAML"),
    ],
)
def test_invalid_files_name_the_file_and_the_entry(text: str, needle: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        KnowledgeBase.load(path)
    assert str(path) in str(err.value)
    assert needle in str(err.value)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        KnowledgeBase.load(tmp_path / "nope.yaml")
