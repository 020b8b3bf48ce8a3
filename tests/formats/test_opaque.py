"""The opaque format: files described by a sidecar or a site rule, archived as they are."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from imagelake.config import override
from imagelake.errors import ConfigError
from imagelake.formats import RawFormatError, get_format, identify
from imagelake.formats.opaque import OpaqueFormat, is_sidecar, sidecar_for
from imagelake.testing import FormatConformance

UID = "1.2.826.0.1.3680043.8.498.77"
SIDECAR = f"""\
label: siemens-rda
modality: MR
manufacturer: SIEMENS
model: Prisma
device_serial: 166001
acquired_at: 2024-03-01T10:22:05
frame_of_reference_uid: "{UID}"
series_instance_uids: ["{UID}.1"]
protocol_name: svs_se_30
notes: spectroscopy export
"""


def spectro(folder: Path, name: str = "spec.RDA", sidecar: str | None = SIDECAR) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(b">>> Begin of header <<<\r\nPatientName: hidden\r\n" + bytes(range(256)))
    if sidecar is not None:
        (folder / f"{name}.imagelake.yaml").write_text(sidecar)
    return path


def write_rules(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


class TestOpaqueConformance(FormatConformance):
    format_name = "opaque"

    @pytest.fixture
    def sample_path(self, tmp_path: Path) -> Path:
        return spectro(tmp_path / "sample")

    @pytest.fixture
    def corrupt_path(self, tmp_path: Path) -> Path:
        return spectro(tmp_path / "corrupt", sidecar="label: [unclosed\n")

    @pytest.fixture
    def expected_meta(self) -> Mapping[str, Any]:
        return {
            "modality": "MR",
            "manufacturer": "SIEMENS",
            "model": "Prisma",
            "device_serial": "166001",
            "acquired_at": "2024-03-01T10:22:05",
            "frame_of_reference_uid": UID,
            "series_instance_uids": (f"{UID}.1",),
            "protocol_name": "svs_se_30",
            "extra": {
                "label": "siemens-rda",
                "described_by": "sidecar:spec.RDA.imagelake.yaml",
                "notes": "spectroscopy export",
            },
        }


def test_sidecar_helpers(tmp_path: Path) -> None:
    path = spectro(tmp_path)
    side = tmp_path / "spec.RDA.imagelake.yaml"
    assert sidecar_for(path) == side
    assert is_sidecar(side) and is_sidecar("x.IMAGELAKE.JSON") and not is_sidecar(path)
    assert sidecar_for(side) is None
    assert not get_format("opaque").guess_can_open(side)
    assert identify(side) is None  # a sidecar is never an input
    assert sidecar_for(spectro(tmp_path, "other.RDA", sidecar=None)) is None


def test_json_sidecar(tmp_path: Path) -> None:
    path = spectro(tmp_path, "scan.raw", sidecar=None)
    sidecar = {"label": "vendor-x", "modality": "CT", "study_instance_uid": UID}
    (tmp_path / "scan.raw.imagelake.json").write_text(json.dumps(sidecar))
    content = get_format("opaque").open(path)
    assert content.meta.modality == "CT" and content.meta.study_instance_uid == UID
    assert content.meta.extra["described_by"] == "sidecar:scan.raw.imagelake.json"
    assert content.arrays == {} and content.members == (str(path),)


def test_undescribed_file_is_not_claimed(tmp_path: Path) -> None:
    path = spectro(tmp_path, sidecar=None)
    fmt = get_format("opaque")
    assert not fmt.guess_can_open(path)
    assert identify(path) is None
    with pytest.raises(RawFormatError, match=r"spec.RDA.*not described"):
        fmt.open(path)


def test_site_rules_pattern_and_regex(tmp_path: Path) -> None:
    rules = write_rules(
        tmp_path / "rules.yaml",
        f"""\
- pattern: "*.rda"
  label: siemens-rda
  modality: MR
  manufacturer: SIEMENS
- regex: "^meas_MID\\\\d+"
  label: unknown-meas
  study_instance_uid: "{UID}"
""",
    )
    data = tmp_path / "data"
    upper = spectro(data, "SPEC.RDA", sidecar=None)  # case-insensitive pattern
    meas = spectro(data, "meas_MID00042.bin", sidecar=None)
    other = spectro(data, "notes.txt", sidecar=None)
    fmt = get_format("opaque")
    assert not fmt.guess_can_open(upper)  # no rules configured yet
    with override(raw_rules=str(rules)):
        assert identify(upper) is fmt
        assert fmt.guess_can_open(meas) and not fmt.guess_can_open(other)
        a = fmt.open(upper)
        assert a.meta.extra == {
            "label": "siemens-rda",
            "described_by": "rule:*.rda",
            "size": a.meta.extra["size"],
        }
        assert a.meta.extra["size"] == upper.stat().st_size
        assert a.meta.manufacturer == "SIEMENS"
        b = fmt.open(meas)
        assert b.meta.extra["label"] == "unknown-meas"
        assert b.meta.extra["described_by"].startswith("rule:regex:")
        assert b.meta.study_instance_uid == UID


def test_sidecar_wins_over_rules(tmp_path: Path) -> None:
    rules = write_rules(tmp_path / "rules.yaml", "- pattern: '*.rda'\n  label: from-rule\n")
    path = spectro(tmp_path / "d")
    with override(raw_rules=str(rules)):
        assert get_format("opaque").open(path).meta.extra["label"] == "siemens-rda"


def test_rules_are_reread_when_changed(tmp_path: Path) -> None:
    rules = write_rules(tmp_path / "rules.yaml", "- pattern: '*.rda'\n  label: first\n")
    path = spectro(tmp_path / "d", sidecar=None)
    fmt = get_format("opaque")
    with override(raw_rules=str(rules)):
        assert fmt.open(path).meta.extra["label"] == "first"
        write_rules(rules, "- pattern: '*.rda'\n  label: second-version\n")
        st = rules.stat()
        os.utime(rules, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
        assert fmt.open(path).meta.extra["label"] == "second-version"
    other = write_rules(tmp_path / "other.yaml", "- pattern: '*.xyz'\n  label: x\n")
    with override(raw_rules=str(other)):  # a new setting is seen at once
        assert not fmt.guess_can_open(path)
    fresh = OpaqueFormat()
    with override(raw_rules=str(rules)):
        assert fresh.open(path).meta.extra["label"] == "second-version"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("label: x\nmanufacturer: A\ncolour: blue\n", "colour"),
        ("label: x\nmodel: [1, 2]\n", "'model'"),
        ("label: x\nacquired_at: yesterday\n", "acquired_at"),
        ("label: x\nseries_instance_uids: 3\n", "series_instance_uids"),
        ("modality: MR\n", "'label'"),
        ("label: [unclosed\n", "YAML"),
        ("- just\n- a list\n", "mapping"),
    ],
)
def test_bad_sidecar_names_file_and_key(tmp_path: Path, text: str, match: str) -> None:
    path = spectro(tmp_path, sidecar=text)
    with pytest.raises(RawFormatError, match=match) as info:
        get_format("opaque").open(path)
    assert "spec.RDA.imagelake.yaml" in str(info.value)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("- pattern: '*.rda'\n  label: x\n  vendor: y\n", "rule 1.*vendor"),
        ("- label: x\n", "rule 1.*exactly one of 'pattern' or 'regex'"),
        ("- pattern: '*.a'\n  regex: a\n  label: x\n", "exactly one"),
        ("- regex: '(unclosed'\n  label: x\n", "regex"),
        ("- pattern: '*.a'\n  label: x\n- pattern: '*.b'\n  label: 7\n", "rule 2.*'label'"),
        ("pattern: '*.a'\nlabel: x\n", "list of rules"),
        ("- [not: closed\n", "YAML"),
    ],
)
def test_bad_rules_file_is_a_config_error(tmp_path: Path, text: str, match: str) -> None:
    rules = write_rules(tmp_path / "rules.yaml", text)
    path = spectro(tmp_path / "d", sidecar=None)
    with override(raw_rules=str(rules)), pytest.raises(ConfigError, match=match) as info:
        get_format("opaque").open(path)
    assert "rules.yaml" in str(info.value)


def test_missing_rules_file_is_a_config_error(tmp_path: Path) -> None:
    path = spectro(tmp_path, sidecar=None)
    with override(raw_rules=str(tmp_path / "nope.yaml")), pytest.raises(ConfigError, match="nope"):
        get_format("opaque").guess_can_open(path)


def test_tried_last(tmp_path: Path) -> None:
    """A described file of a known format is still identified as that format."""
    from imagelake.synthetic.ultrasound import uff_channel_data

    uff = uff_channel_data(tmp_path / "rf.uff", n_elements=4, n_samples=32)
    (tmp_path / "rf.uff.imagelake.yaml").write_text("label: ultrasound\n")
    assert get_format("opaque").guess_can_open(uff)
    assert identify(uff) is get_format("ustb-uff")
