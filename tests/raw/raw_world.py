"""Helpers for the raw-file lake tests: an MR session with its k-space, written by real tools.

(Not named conftest: test modules import it by this unique name.)
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pydicom

from imagelake import synthetic
from imagelake.synthetic.samples import ismrmrd_phantom

PATIENT = synthetic.Patient(name="SYNTHETIC^RAWTEST^ALPHA", id="SYN-RAW-0042")
OTHER = synthetic.Patient(name="SYNTHETIC^RAWTEST^BETA", id="SYN-RAW-0043")
STUDY_TIME = datetime(2024, 6, 3, 10, 0, 0)


@dataclass
class Session:
    dicom_dir: Path
    series_uid: str
    study_uid: str
    frame_of_reference_uid: str
    device_serial: str
    when: datetime


def mr_session(
    root: Path,
    *,
    patient: synthetic.Patient = PATIENT,
    tag: str = "s1",
    start: datetime = STUDY_TIME,
) -> Session:
    """A small SYNTHETIC MR series on disk (GE SIGNA Premier, known to the knowledge base)."""
    study = synthetic.synthetic_uid("rawtest-study", 0, tag)
    series = list(
        synthetic.mr_series(
            6, 32, 32, patient=patient, study_uid=study, study_datetime=start, seed=3
        )
    )
    folder = root / f"dicom_{tag}"
    synthetic.write_series(series, folder)
    first = series[0]
    acq = str(first.get("AcquisitionDate", "")) + str(first.get("AcquisitionTime", ""))
    when = datetime.strptime(acq[:14], "%Y%m%d%H%M%S") if len(acq) >= 14 else start
    return Session(
        dicom_dir=folder,
        series_uid=str(first.SeriesInstanceUID),
        study_uid=study,
        frame_of_reference_uid=str(first.FrameOfReferenceUID),
        device_serial=str(first.DeviceSerialNumber),
        when=when,
    )


def kspace_for(
    session: Session,
    dest: Path,
    *,
    with_ids: bool = True,
    with_patient: bool = True,
    patient: synthetic.Patient = PATIENT,
    minutes: float = -2,
    matrix: int = 32,
) -> Path:
    """An ISMRMRD file from Debian's generator, stamped as if that session's scanner wrote it."""
    import ismrmrd.xsd as xsd
    from xsdata.models.datatype import XmlDate, XmlTime

    when = session.when + timedelta(minutes=minutes)
    meta: dict[str, Any] = {
        "acquisitionSystemInformation": {
            "systemVendor": "GE MEDICAL SYSTEMS",
            "systemModel": "SIGNA Premier",
            "deviceSerialNumber": session.device_serial,
        },
        "measurementInformation": {
            "patientPosition": xsd.patientPositionType.HFS,
            "seriesDate": XmlDate(when.year, when.month, when.day),
            "seriesTime": XmlTime(when.hour, when.minute, when.second),
        },
    }
    if with_ids:
        meta["measurementInformation"]["frameOfReferenceUID"] = session.frame_of_reference_uid
        meta["studyInformation"] = {"studyInstanceUID": session.study_uid}
    if with_patient:
        bd = patient.birth_date
        meta["subjectInformation"] = {
            "patientName": patient.name,
            "patientID": patient.id,
            "patientBirthdate": XmlDate(bd.year, bd.month, bd.day),
        }
    return ismrmrd_phantom(dest, matrix=matrix, coils=2, metadata=meta)


def truncate(src: Path, dest: Path, fraction: float) -> Path:
    data = src.read_bytes()
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(data[: int(len(data) * fraction)])
    return dest


def copy(src: Path, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dest)
    return dest


def series_uid_of(folder: Path) -> str:
    first = sorted(folder.rglob("*.dcm"))[0]
    return str(pydicom.dcmread(first, stop_before_pixels=True).SeriesInstanceUID)
