"""Shared builders for the linking tests: one raw file and one series of the same exam."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from imagelake.linking import PatientKeys, RawRecord, SeriesRecord, patient_keys

KEY = b"linking-tests-key-0123456789abcdef"
T0 = datetime(2024, 3, 5, 9, 30, 0)
STUDY = "1.2.826.0.1.3680043.8.498.1"
FRAME = "1.2.826.0.1.3680043.8.498.2"


def keys(pid: str = "PAT-001", name: str = "Doe^Jane", dob: str = "19700101") -> PatientKeys:
    return patient_keys(pid, name, dob, key=KEY)


def raw(key: str = "a" * 64, **kw: Any) -> RawRecord:
    base: dict[str, Any] = dict(
        key=key,
        format="siemens-twix",
        modality="MR",
        manufacturer="Siemens",
        model="Skyra",
        device_serial="45385",
        station_name="MRC45385",
        acquired_at=T0,
        study_uid=STUDY,
        frame_of_reference_uid=FRAME,
        protocol_name="t1_mprage_sag",
        patient=keys(),
    )
    base.update(kw)
    return RawRecord(**base)


def series(key: str = "1.2.826.0.1.3680043.8.498.10", **kw: Any) -> SeriesRecord:
    base: dict[str, Any] = dict(
        key=key,
        study_uid=STUDY,
        frame_of_reference_uid=FRAME,
        modality="MR",
        manufacturer="SIEMENS",
        model="MAGNETOM Skyra",
        device_serial="45385",
        station_name="MRC45385",
        acquired_at=T0 + timedelta(minutes=2),
        protocol_name="t1_mprage_sag",
        series_description="t1_mprage_sag",
        sop_uids=frozenset({f"{key}.1", f"{key}.2"}),
        patient=keys(),
    )
    base.update(kw)
    return SeriesRecord(**base)
