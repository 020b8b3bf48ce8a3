"""Raw scanner files for the demo: real files from real tools, tied to the demo's series.

- ``raw/mr/``: an ISMRMRD k-space file written by Debian's ismrmrd-tools, stamped with
  the scanner, study, frame of reference, time and patient of demo series ``c`` (as the
  scanner would have written it), plus a second file from the same scanner the same
  afternoon with no UIDs and no patient: evidence too weak to link automatically, so it
  waits in the review queue;
- ``raw/ct/``: SYNTHETIC fan-beam projections of a head phantom in the DICOM-CT-PD
  convention, from the scanner, study and frame of reference of demo series ``a``/``b``;
- ``raw/twix/``: the real Siemens TWIX examples shipped in twixtools' source distribution;
- ``raw/vendor/``: an opaque vendor file (SYNTHETIC bytes) described by a sidecar, from
  a scanner the knowledge base does not know: it is archived, and raises alerts.
"""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pydicom

from imagelake.synthetic._headers import Patient, Scanner
from imagelake.synthetic.demo import DemoManifest
from imagelake.synthetic.refscan import (
    RefscanGeometry,
    parallel_beam_sinogram,
    refscan_meta,
    write_refscan,
)
from imagelake.synthetic.samples import ismrmrd_phantom, twix_samples
from imagelake.synthetic.sinogram import FanBeamGeometry, fan_beam_sinogram, write_ctpd

__all__ = ["build_demo_raw"]


def _first_header(files: Any) -> pydicom.Dataset:
    for path in files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if "IMAGE" in str(ds.get("ImageType", "")) and "LOCALIZER" not in str(
            ds.get("ImageType", "")
        ):
            return ds
    return pydicom.dcmread(files[0], stop_before_pixels=True)


def _when(ds: pydicom.Dataset) -> datetime:
    date = str(ds.get("AcquisitionDate") or ds.get("SeriesDate") or ds.get("StudyDate"))
    time = str(ds.get("AcquisitionTime") or ds.get("SeriesTime") or ds.get("StudyTime") or "000000")
    return datetime.strptime(date + time.split(".")[0].ljust(6, "0")[:6], "%Y%m%d%H%M%S")


def _ismrmrd_meta(ds: pydicom.Dataset, when: datetime, *, with_ids: bool) -> dict[str, Any]:
    import ismrmrd.xsd as xsd
    from xsdata.models.datatype import XmlDate, XmlTime

    meta: dict[str, Any] = {
        "acquisitionSystemInformation": {
            "systemVendor": str(ds.Manufacturer),
            "systemModel": str(ds.ManufacturerModelName),
            "deviceSerialNumber": str(ds.get("DeviceSerialNumber", "")),
            "stationName": str(ds.get("StationName", "")),
            "institutionName": "SYNTHETIC HOSPITAL",
        },
        "measurementInformation": {
            "patientPosition": xsd.patientPositionType.HFS,
            "seriesDate": XmlDate(when.year, when.month, when.day),
            "seriesTime": XmlTime(when.hour, when.minute, when.second),
            "protocolName": str(ds.get("ProtocolName") or ds.get("SeriesDescription") or "demo"),
        },
    }
    if with_ids:
        meta["measurementInformation"]["frameOfReferenceUID"] = str(ds.FrameOfReferenceUID)
        meta["studyInformation"] = {
            "studyInstanceUID": str(ds.StudyInstanceUID),
            "studyDate": XmlDate(when.year, when.month, when.day),
        }
        dob = str(ds.get("PatientBirthDate", ""))
        meta["subjectInformation"] = {
            "patientName": str(ds.PatientName),
            "patientID": str(ds.PatientID),
            **(
                {"patientBirthdate": XmlDate(int(dob[:4]), int(dob[4:6]), int(dob[6:8]))}
                if len(dob) == 8
                else {}
            ),
        }
    return meta


_SIDECAR = """\
# SYNTHETIC demo: an opaque vendor raw file nobody can parse yet, described by hand.
label: ge-pfile
modality: MR
manufacturer: GE MEDICAL SYSTEMS
model: Signa HDxt
software_version: 15.0_M4_0910.a
acquired_at: "2024-03-07T14:05:00"
protocol_name: SYNTHETIC legacy spectroscopy
notes: legacy P-file from a decommissioned scanner; needs the vendor's recon
"""


def build_demo_raw(root: Path, manifest: DemoManifest) -> dict[str, list[Path]]:
    """Write the demo's raw inputs under ``root``; returns the files by kind."""
    by_key = {s.key: s for s in manifest.series}
    out: dict[str, list[Path]] = {}

    mr = _first_header(by_key["c"].files)
    mr_when = _when(mr) - timedelta(minutes=2)  # raw data is written as the scan runs
    out["ismrmrd"] = [
        ismrmrd_phantom(
            root / "mr" / "meas_T1_axial.h5",
            matrix=128,
            coils=4,
            metadata=_ismrmrd_meta(mr, mr_when, with_ids=True),
        ),
        ismrmrd_phantom(
            root / "mr" / "meas_unlabelled.h5",
            matrix=64,
            coils=4,
            metadata=_ismrmrd_meta(mr, mr_when + timedelta(minutes=20), with_ids=False),
        ),
    ]

    ct = _first_header(by_key["a"].files)
    geometry = FanBeamGeometry(n_views=360, n_channels=368, n_rows=2)
    sinogram = fan_beam_sinogram(geometry, photons=2e5, seed=manifest.seed)
    scanner = Scanner(
        manufacturer=str(ct.Manufacturer),
        model=str(ct.ManufacturerModelName),
        software_versions=str(ct.SoftwareVersions),
        device_serial_number=str(ct.get("DeviceSerialNumber", "SYN-000001")),
        station_name=str(ct.get("StationName", "SYNSTATION01")),
    )
    dob = str(ct.get("PatientBirthDate", "19610615"))
    patient = Patient(
        name=str(ct.PatientName),
        id=str(ct.PatientID),
        birth_date=datetime.strptime(dob, "%Y%m%d").date(),
    )
    out["dicom-ct-pd"] = write_ctpd(
        root / "ct" / "projections_thorax",
        sinogram,
        geometry,
        scanner=scanner,
        patient=patient,
        study_uid=str(ct.StudyInstanceUID),
        frame_of_reference_uid=str(ct.FrameOfReferenceUID),
        acquired_at=_when(ct) - timedelta(seconds=30),
        seed=manifest.seed,
        protocol_name=str(ct.get("ProtocolName") or "SYNTHETIC Thorax"),
    )

    twix = root / "twix"
    twix.mkdir(parents=True, exist_ok=True)
    out["siemens-twix"] = []
    for name, path in sorted(twix_samples().items()):
        shutil.copy2(path, twix / name)
        out["siemens-twix"].append(twix / name)

    vendor = root / "vendor"
    vendor.mkdir(parents=True, exist_ok=True)
    blob = vendor / "P12288.7"
    header = b"SYNTHETIC imagelake demo: opaque vendor raw file\n"
    blob.write_bytes(header + bytes(range(256)) * 64)
    (vendor / "P12288.7.imagelake.yaml").write_text(_SIDECAR)
    out["opaque"] = [blob]

    # a legacy file of a scanner whose software was upgraded: only emulator 1.0 reads it
    geometry_rs = RefscanGeometry(n_views=180, n_detectors=256)
    out["refscan"] = [
        write_refscan(
            root / "legacy" / "refscan_2019_head.rfs",
            parallel_beam_sinogram(geometry_rs),
            revision=1,
            geometry=geometry_rs,
            meta=refscan_meta(software_version="R1.1"),
        )
    ]
    return out
