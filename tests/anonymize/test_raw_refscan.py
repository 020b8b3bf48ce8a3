"""Raw-header anonymization of refscan (the reference emulator's CT raw format), revisions 1-2.

Every test scans the OUTPUT BYTES for each identifying value of the input (in the encodings
:func:`leaks` checks), checks that the output is still a refscan file the host reader accepts
and that the payload (the sinogram bytes) is byte-identical.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from raw_deid_helpers import SECRET, leaks

from imagelake.anonymize import Deidentifier, load_policy
from imagelake.anonymize.raw import RawDeidError, anonymize_raw, raw_anonymizers
from imagelake.formats import get_format
from imagelake.formats.refscan import read_refscan_header
from imagelake.synthetic.refscan import (
    RefscanGeometry,
    parallel_beam_sinogram,
    refscan_meta,
    write_refscan,
)

GEOMETRY = RefscanGeometry(n_views=24, n_detectors=40, n_slices=2, slice_spacing_mm=10.0)

# fake identity, distinctive enough that a byte scan cannot find it by chance
PHI = {
    "patient_name": "SYNTHETIC^PHI^REFSCANNAME",
    "patient_id": "PHI-REFSCAN-9917",
    "patient_birth_date": "19710517",
    "institution": "PHI Refscan General Hospital",
    "station_name": "PHISTATRS01",
    "device_serial": "PHISER-RS-7731",
    "study_uid": "1.2.826.0.1.3680043.8.498.5711",
    "series_uid": "1.2.826.0.1.3680043.8.498.5712",
    "frame_of_reference_uid": "1.2.826.0.1.3680043.8.498.5713",
    "acquired": "2024-03-05T09:30:00",
    "protocol_name": "PHI head for REFSCANNAME",
}
# a free-text key revision 2 does not define (a vendor's operator note)
EXTRA_KEY = {"operator_note": "PHI^OPERATOR^NOTE"}
# written into revision 1's reserved zero tail and after a field's terminating NUL
HIDDEN_TAIL = b"PHI-HIDDEN-TAIL-0042"
HIDDEN_AFTER_NUL = b"PHIAFTERNUL"


def _deid(**policy: Any) -> Deidentifier:
    return Deidentifier(load_policy(policy or None), secret=SECRET)


def _identifying(revision: int) -> list[str]:
    """Every identifying value as the file of ``revision`` stores it."""
    values = [v for k, v in PHI.items() if k != "acquired"]
    values += ["20240305093000", "20240305"] if revision == 1 else [PHI["acquired"]]
    values.append("REFSCANNAME")  # the name's distinctive part, inside the protocol too
    if revision == 2:
        values.append(EXTRA_KEY["operator_note"])
    else:
        values += [HIDDEN_TAIL.decode(), HIDDEN_AFTER_NUL.decode()]
    return values


def _write(path: Path, revision: int) -> Path:
    meta = refscan_meta(**PHI, **(EXTRA_KEY if revision == 2 else {}))
    out = write_refscan(
        path, parallel_beam_sinogram(GEOMETRY), revision=revision, meta=meta, geometry=GEOMETRY
    )
    if revision == 1:
        # what a careless vendor leaves in a revision 1 header: text in the reserved tail and
        # after a shorter value's terminating NUL (the reader stops at the NUL)
        data = bytearray(out.read_bytes())
        data[800 : 800 + len(HIDDEN_TAIL)] = HIDDEN_TAIL
        station = 224 + len(PHI["station_name"]) + 1  # station_name: offset 224, 32 bytes
        data[station : station + len(HIDDEN_AFTER_NUL)] = HIDDEN_AFTER_NUL
        out.write_bytes(bytes(data))
    return out


@pytest.fixture(params=[1, 2], ids=["rev1", "rev2"])
def revision(request: pytest.FixtureRequest) -> int:
    return int(request.param)


@pytest.fixture
def refscan_file(tmp_path: Path, revision: int) -> Path:
    return _write(tmp_path / f"phi-rev{revision}.rfs", revision)


def _payload(path: Path) -> bytes:
    fields = read_refscan_header(path)
    width = 4 if fields["revision"] == 1 else 2
    n = width * fields["slices"] * fields["views"] * fields["detectors"]
    start = int(fields["payload_offset_bytes"])
    data = path.read_bytes()
    assert len(data) == start + n  # no byte after the payload
    return data[start:]


def _subject_dicom() -> Dataset:
    """The same subject's DICOM, as the reference emulator writes it from the raw header."""
    ds = Dataset()
    ds.PatientID = PHI["patient_id"]
    ds.PatientName = PHI["patient_name"]
    ds.PatientBirthDate = PHI["patient_birth_date"]
    ds.StudyInstanceUID = PHI["study_uid"]
    ds.SeriesInstanceUID = PHI["series_uid"]
    ds.FrameOfReferenceUID = PHI["frame_of_reference_uid"]
    ds.StudyDate = "20240305"
    ds.StudyTime = "093000"
    ds.DeviceSerialNumber = PHI["device_serial"]
    return ds


def test_refscan_no_identifying_value_left(
    refscan_file: Path, revision: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    values = _identifying(revision)
    assert leaks(refscan_file.read_bytes(), values) == [
        f"value #{i} ({len(v)} chars)" for i, v in enumerate(values)
    ]  # every value really is in the input
    out = tmp_path / "anon.rfs"
    result = anonymize_raw(refscan_file, "refscan", _deid(), out)
    assert result.out_paths == (out,)
    assert leaks(out.read_bytes(), values) == []
    captured = capsys.readouterr()
    text = captured.out + captured.err + repr(result) + " ".join(result.warnings)
    assert leaks(text.encode(), values) == []
    assert not out.with_name(out.name + ".partial").exists()
    # the pseudonym is keyed on the file's patient ID (no subject_key given), as in the DICOM
    dicom = _deid().deidentify(_subject_dicom(), subject_key=PHI["patient_id"]).dataset
    meta = get_format("refscan").open(out).meta
    assert meta.patient.patient_id == meta.patient.name == result.pseudonym == dicom.PatientID
    assert meta.patient.birth_date is None and meta.acquired_at is None
    assert meta.institution is None and meta.device_serial is None and meta.station_name is None
    assert meta.protocol_name is None
    # what is no identity is kept: the scanner's make, model and software (emulator routing)
    assert (meta.manufacturer, meta.model, meta.software_version) == (
        "Imagelake Reference",
        "RefScan CT",
        "R1.1",
    )
    assert result.actions["pseudonym"] == 2 and result.actions["U"] == 3


def test_refscan_layout_valid_and_payload_identical(
    refscan_file: Path, revision: int, tmp_path: Path
) -> None:
    out = tmp_path / "anon.rfs"
    anonymize_raw(refscan_file, "refscan", _deid(), out, subject_key="subject-1")
    before, after = read_refscan_header(refscan_file), read_refscan_header(out)
    assert after["revision"] == revision
    assert _payload(out) == _payload(refscan_file)
    # every number (dimensions, geometry, quantization) is unchanged
    numbers = set(before) - set(refscan_meta()) - {"payload_offset_bytes", *EXTRA_KEY}
    assert numbers >= {"slices", "views", "detectors", "slice_spacing_mm", "revision"}
    assert {k: after[k] for k in numbers} == {k: before[k] for k in numbers}
    src, data = refscan_file.read_bytes(), out.read_bytes()
    if revision == 1:
        # in place: same size, the binary numbers and the payload offset unchanged
        assert len(data) == len(src) and data[:60] == src[:60]
        assert after["payload_offset_bytes"] == 1024
        assert data[732:1024] == bytes(292)  # the zero tail is zero again
    else:
        (length,) = struct.unpack_from("<I", data, 8)
        assert after["payload_offset_bytes"] == 12 + length
        text = data[12 : 12 + length].decode("ascii")
        assert text.endswith("\nend=header\n") and text.count("end=header") == 1
        keys = [line.partition("=")[0] for line in text.splitlines()]
        assert "operator_note" not in keys
        assert "payload_scale" in keys and "payload_offset" in keys
    for key in ("payload_scale", "payload_offset", "start_angle_deg", "kvp"):
        assert after.get(key) == before.get(key), key


def test_refscan_pseudonym_uids_and_dates_match_the_dicom(
    refscan_file: Path, revision: int, tmp_path: Path
) -> None:
    deid = _deid(options=["retain_long_modified_dates"])
    key = "site-subject-17"
    out = tmp_path / "anon.rfs"
    result = anonymize_raw(refscan_file, "refscan", deid, out, subject_key=key)
    dicom = deid.deidentify(_subject_dicom(), subject_key=key).dataset
    meta = get_format("refscan").open(out).meta
    assert meta.patient.patient_id == meta.patient.name == result.pseudonym == dicom.PatientID
    assert meta.study_instance_uid == dicom.StudyInstanceUID == deid.uid(PHI["study_uid"])
    assert meta.series_instance_uids == (dicom.SeriesInstanceUID,)
    assert meta.frame_of_reference_uid == dicom.FrameOfReferenceUID
    assert meta.frame_of_reference_uid == deid.uid(PHI["frame_of_reference_uid"])
    # the visit moves by the subject's shift, time of day kept, as in the DICOM
    assert meta.acquired_at is not None
    assert meta.acquired_at[:10].replace("-", "") == dicom.StudyDate != "20240305"
    assert meta.acquired_at[10:] == "T09:30:00"
    assert meta.patient.birth_date is None  # Table E.1-1: Z, also under Modified Dates
    assert "PatientBirthDate" not in dicom or not dicom.PatientBirthDate
    assert result.actions["date shift"] == 1
    assert leaks(out.read_bytes(), ["20240305", PHI["patient_id"]]) == []


def test_refscan_retain_device_identity_keeps_the_serial(
    refscan_file: Path, tmp_path: Path
) -> None:
    kept = tmp_path / "kept.rfs"
    anonymize_raw(
        refscan_file, "refscan", _deid(options=["retain_device_identity"]), kept, subject_key="s"
    )
    meta = get_format("refscan").open(kept).meta
    assert meta.device_serial == PHI["device_serial"]
    assert meta.station_name == PHI["station_name"]
    assert meta.institution is None  # not the device: still removed
    assert leaks(kept.read_bytes(), [PHI["institution"], PHI["patient_id"]]) == []
    # the institution option keeps the institution, not the device
    inst = tmp_path / "inst.rfs"
    options = ["retain_institution_identity"]
    anonymize_raw(refscan_file, "refscan", _deid(options=options), inst, subject_key="s")
    meta = get_format("refscan").open(inst).meta
    assert meta.institution == PHI["institution"] and meta.device_serial is None
    assert _payload(kept) == _payload(inst) == _payload(refscan_file)


def test_refscan_errors_are_clear_and_quote_no_value(tmp_path: Path) -> None:
    assert "refscan" in raw_anonymizers.names()
    bad = tmp_path / "bad.rfs"
    bad.write_bytes(b"NOTRFS" + PHI["patient_name"].encode() * 40)
    with pytest.raises(RawDeidError, match="not a readable refscan") as info:
        anonymize_raw(bad, "refscan", _deid(), tmp_path / "out.rfs", subject_key="s")
    assert leaks(str(info.value).encode(), _identifying(2)) == []
    # a truncated payload: refused, nothing written
    cut = tmp_path / "cut.rfs"
    cut.write_bytes(_write(tmp_path / "whole.rfs", 2).read_bytes()[:-10])
    with pytest.raises(RawDeidError, match="truncated") as info:
        anonymize_raw(cut, "refscan", _deid(), tmp_path / "out.rfs")
    assert leaks(str(info.value).encode(), _identifying(2)) == []
    assert not (tmp_path / "out.rfs").exists()
    assert not (tmp_path / "out.rfs.partial").exists()
    # no patient in the header and no subject_key: the pseudonym cannot be chosen
    anonymous = write_refscan(
        tmp_path / "anonymous.rfs",
        parallel_beam_sinogram(GEOMETRY),
        revision=1,
        meta=refscan_meta(patient_id="", patient_name=""),
        geometry=GEOMETRY,
    )
    with pytest.raises(RawDeidError, match="subject_key"):
        anonymize_raw(anonymous, "refscan", _deid(), tmp_path / "out.rfs")
