"""Records, keyed patient hashes and the site key file."""

from __future__ import annotations

import os
import stat
import threading
from datetime import UTC, date, datetime
from pathlib import Path

import pydicom
import pytest
from linking_factory import KEY, raw, series

from imagelake.errors import ConfigError
from imagelake.formats import PatientIdentity, RawMeta
from imagelake.linking import (
    PatientKeys,
    RawRecord,
    SeriesRecord,
    dicom_datetime,
    load_or_create_key,
    patient_keys,
)

# -- keyed hashes ------------------------------------------------------------------------


def test_normalisation_makes_spellings_equal() -> None:
    a = patient_keys(" pat-001 ", "doe^jane^^^", "1970-01-01", key=KEY)
    b = patient_keys("PAT-001", "DOE^JANE", "19700101", key=KEY)
    c = patient_keys("PAT-001", " Doe ^ Jane ", date(1970, 1, 1), key=KEY)
    d = patient_keys("pat-001", "DOE^JANE=ドウ^ジェーン", "1970.01.01", key=KEY)
    assert a == b == c == d
    assert a.id_key and a.name_dob_key and len(a.id_key) == 64


def test_different_values_or_keys_give_different_hashes() -> None:
    base = patient_keys("PAT-001", "Doe^Jane", "19700101", key=KEY)
    assert patient_keys("PAT-002", "Doe^Jane", "19700101", key=KEY).id_key != base.id_key
    assert (
        patient_keys("PAT-001", "Doe^Jane", "19700102", key=KEY).name_dob_key != base.name_dob_key
    )
    other = patient_keys("PAT-001", "Doe^Jane", "19700101", key=b"another-key-0123456789")
    assert other.id_key != base.id_key and other.name_dob_key != base.name_dob_key
    # the ID and the name+DOB hashes are domain-separated
    assert patient_keys("X", None, None, key=KEY).id_key != base.name_dob_key


def test_empty_inputs_give_none() -> None:
    assert patient_keys(None, None, None, key=KEY).empty
    assert patient_keys("  ", "^^", "", key=KEY) == PatientKeys(None, None)
    # a name without a usable birth date does not identify anyone
    only_name = patient_keys(None, "Doe^Jane", "not-a-date", key=KEY)
    assert only_name.name_dob_key is None
    assert patient_keys(None, "Doe^Jane", "19701340", key=KEY).name_dob_key is None


def test_short_key_is_refused() -> None:
    with pytest.raises(ConfigError, match="at least 16 bytes"):
        patient_keys("PAT", None, None, key=b"short")


def test_repr_hides_identity() -> None:
    k = patient_keys("PAT-001", "Doe^Jane", "19700101", key=KEY)
    assert k.id_key is not None and k.id_key not in repr(k)
    assert "id_key" in repr(k)
    r = RawRecord(key="x", patient=k)
    assert k.id_key not in repr(r) and "PAT-001" not in repr(r)
    assert PatientKeys().empty and RawRecord(key="y", patient=PatientKeys()).patient is None


# -- the key file ----------------------------------------------------------------------------


def test_key_created_private_and_reloaded(tmp_path: Path) -> None:
    p = tmp_path / "keys" / "patient.key"
    k1 = load_or_create_key(p)
    assert len(k1) == 32
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert load_or_create_key(p) == k1
    assert not [x for x in p.parent.iterdir() if x.name.endswith(".tmp")]
    assert load_or_create_key(tmp_path / "other.key") != k1


def test_concurrent_creation_agrees(tmp_path: Path) -> None:
    p = tmp_path / "race.key"
    out: list[bytes] = []
    threads = [threading.Thread(target=lambda: out.append(load_or_create_key(p))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(out) == 8 and len(set(out)) == 1


def test_bad_key_files(tmp_path: Path) -> None:
    short = tmp_path / "short.key"
    short.write_bytes(b"abc")
    with pytest.raises(ConfigError, match=r"short\.key.*3 bytes"):
        load_or_create_key(short)
    folder = tmp_path / "dir.key"
    folder.mkdir()
    with pytest.raises(ConfigError, match="cannot read"):
        load_or_create_key(folder)
    lake = tmp_path / "lake"
    lake.mkdir()
    (lake / "registry.sqlite").write_bytes(b"")
    with pytest.raises(ConfigError, match="inside the lake"):
        load_or_create_key(lake / "secrets" / "patient.key")
    assert not (lake / "secrets").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_key(tmp_path: Path) -> None:
    p = tmp_path / "locked.key"
    p.write_bytes(b"x" * 32)
    p.chmod(0)
    try:
        with pytest.raises(ConfigError, match="cannot read"):
            load_or_create_key(p)
    finally:
        p.chmod(0o600)


# -- records -------------------------------------------------------------------------------


def test_records_normalise() -> None:
    r = raw(manufacturer=" siemens ", station_name="", series_uids=["1.2", "1.3"])
    assert r.manufacturer == "SIEMENS" and r.station_name is None
    assert r.series_uids == frozenset({"1.2", "1.3"})
    with pytest.raises(ValueError, match="naive"):
        series(acquired_at=datetime(2024, 1, 1, tzinfo=UTC))
    with pytest.raises(TypeError, match="datetime"):
        raw(acquired_at="2024-01-01T10:00:00")


def test_dicom_datetime() -> None:
    assert dicom_datetime("20240305093012.5+0100") == datetime(2024, 3, 5, 9, 30, 12, 500000)
    assert dicom_datetime(da="20240305", tm="0930") == datetime(2024, 3, 5, 9, 30)
    assert dicom_datetime(da="20240305") == datetime(2024, 3, 5)
    assert dicom_datetime("garbage") is None
    assert dicom_datetime(da="20241340", tm="1200") is None
    assert dicom_datetime() is None


def test_series_from_a_pydicom_dataset() -> None:
    ds = pydicom.Dataset()
    ds.SeriesInstanceUID = "1.2.3.4"
    ds.StudyInstanceUID = "1.2.3"
    ds.Modality = "CT"
    ds.Manufacturer = "SIEMENS"
    ds.ImageType = ["DERIVED", "SECONDARY", "MPR"]
    ds.SeriesDate = "20240305"
    ds.SeriesTime = "101500"
    ds.StudyDate = "20240305"
    ds.StudyTime = "090000"
    ds.PatientID = "PAT-001"
    ds.PatientName = "Doe^Jane"
    ds.PatientBirthDate = "19700101"
    s = SeriesRecord.from_tags(ds, sop_uids=["1.2.3.4.1"], patient_key=KEY)
    assert s.acquired_at == datetime(2024, 3, 5, 10, 15)  # SeriesDate+Time before StudyDate+Time
    assert s.derived and not s.localizer and s.modality == "CT"
    assert s.patient == patient_keys("pat-001", "DOE^JANE", "19700101", key=KEY)
    ds.AcquisitionDateTime = "20240305101201"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    s2 = SeriesRecord.from_tags(ds)
    assert s2.acquired_at == datetime(2024, 3, 5, 10, 12, 1)
    assert s2.localizer and not s2.derived and s2.patient is None
    with pytest.raises(ValueError, match="SeriesInstanceUID"):
        SeriesRecord.from_tags({"Modality": "CT"})


def test_raw_from_meta() -> None:
    meta = RawMeta(
        modality="MR",
        manufacturer="Siemens",
        model="Skyra",
        device_serial="45385",
        acquired_at="2021-06-22T15:16:35",
        frame_of_reference_uid="1.2.3",
        series_instance_uids=("1.2.3.4",),
        referenced_sop_instance_uids=("1.2.3.9.1", "1.2.3.9.2"),
        patient=PatientIdentity(patient_id="PAT-001", name="Doe^Jane", birth_date="19700101"),
    )
    r = RawRecord.from_meta("f" * 64, "siemens-twix", meta, patient_key=KEY)
    assert r.acquired_at == datetime(2021, 6, 22, 15, 16, 35)
    assert r.referenced_sop_uids == frozenset({"1.2.3.9.1", "1.2.3.9.2"})
    assert r.patient == patient_keys("PAT-001", "Doe^Jane", "19700101", key=KEY)
    assert RawRecord.from_meta("e" * 64, "siemens-twix", meta).patient is None
    bad = RawMeta(acquired_at="June 22nd")
    assert RawRecord.from_meta("d" * 64, "opaque", bad).acquired_at is None
