"""Raw files go into an anonymized share de-identified with the same keys as their DICOM:
no identity in any byte, and the share's own linking finds the links again."""

from __future__ import annotations

import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parents[1] / "raw"))
from raw_world import PATIENT, kspace_for, mr_session

from imagelake import synthetic
from imagelake.formats.refscan import read_refscan_header
from imagelake.lake import open_lake
from imagelake.synthetic.refscan import (
    RefscanGeometry,
    parallel_beam_sinogram,
    refscan_meta,
    write_refscan,
)


def test_raw_parents_are_shared_deidentified_and_relinked(
    tmp_path: Path, require_tool: Any
) -> None:
    require_tool("ismrmrd_generate_cartesian_shepp_logan")
    session = mr_session(tmp_path)
    kspace_for(session, tmp_path / "raw" / "meas.h5")
    blob = tmp_path / "raw" / "vendor.blob"
    blob.write_bytes(b"ACME" * 100)
    (tmp_path / "raw" / "vendor.blob.imagelake.yaml").write_text(
        "label: acme\nmanufacturer: ACME\n"
    )
    lake = open_lake(tmp_path / "lake", create=True)
    lake.ingest([session.dicom_dir, tmp_path / "raw"])
    (blob_sha,) = lake.raw_files(format="opaque").sha256
    lake.add_link(blob_sha, session.series_uid, note="same session")  # an opaque parent too

    report = lake.anonymize(tmp_path / "share")
    assert (report.raw_files, report.raw_refused) == (1, 1)
    share = open_lake(tmp_path / "share")
    shared_raw = share.raw_files()
    assert list(shared_raw.format) == ["ismrmrd"]
    # the share's linking pass finds the k-space's series again, from de-identified headers
    (series_uid,) = share.series().series_instance_uid
    assert list(share.antecedents(series_uid).raw_sha256) == list(shared_raw.sha256)
    # no identity of the source in the shared raw bytes, metadata or registry
    restored = share.restore_raw(str(shared_raw.sha256.iloc[0]), tmp_path / "out")
    data = b"".join(p.read_bytes() for p in restored)
    data += (tmp_path / "share" / "registry.sqlite").read_bytes()
    for secret in (PATIENT.name, PATIENT.id, session.study_uid, session.frame_of_reference_uid):
        assert secret.encode() not in data, secret
    ds = share.open_raw(str(shared_raw.sha256.iloc[0]))
    original = lake.open_raw(str(lake.raw_files(format="ismrmrd").sha256.iloc[0]))
    assert (ds.kspace.values == original.kspace.values).all()


def test_refscan_parent_is_shared_deidentified_and_relinked(tmp_path: Path) -> None:
    """A refscan raw file (the reference emulator's format) of a CT series goes into the share
    with no identity left, its payload byte-identical, and the share links it again."""
    start = datetime(2024, 6, 3, 10, 0, 0)
    study = synthetic.synthetic_uid("refscan-share-study", 0)
    ct = list(
        synthetic.ct_series(4, 32, 32, patient=PATIENT, study_uid=study, study_datetime=start)
    )
    synthetic.write_series(ct, tmp_path / "dicom")
    first = ct[0]
    frame_uid, series_uid = str(first.FrameOfReferenceUID), str(first.SeriesInstanceUID)
    when = (start - timedelta(minutes=2)).isoformat(timespec="seconds")
    geometry = RefscanGeometry(n_views=16, n_detectors=24, n_slices=1)
    raw = write_refscan(
        tmp_path / "raw" / "scan.rfs",
        parallel_beam_sinogram(geometry),
        revision=2,
        geometry=geometry,
        meta=refscan_meta(
            patient_name=PATIENT.name,
            patient_id=PATIENT.id,
            patient_birth_date=PATIENT.birth_date.strftime("%Y%m%d"),
            study_uid=study,
            series_uid=synthetic.synthetic_uid("refscan-share-raw", 0),
            frame_of_reference_uid=frame_uid,
            acquired=when,
            manufacturer=str(first.Manufacturer),
            model=str(first.ManufacturerModelName),
            device_serial=str(first.DeviceSerialNumber),
            station_name=str(first.StationName),
            protocol_name=str(first.ProtocolName),  # another one: a sibling scan (a veto)
            institution="PHI Refscan Share Hospital",
        ),
    )
    lake = open_lake(tmp_path / "lake", create=True)
    lake.ingest([tmp_path / "dicom", tmp_path / "raw"])
    assert list(lake.links("accepted").series_instance_uid) == [series_uid]

    report = lake.anonymize(tmp_path / "share")
    assert (report.raw_files, report.raw_refused) == (1, 0)
    share = open_lake(tmp_path / "share")
    shared_raw = share.raw_files()
    assert list(shared_raw.format) == ["refscan"]
    (shared_series,) = share.series().series_instance_uid
    assert list(share.antecedents(shared_series).raw_sha256) == list(shared_raw.sha256)
    assert list(share.links("accepted").method) == ["rules"]  # found again, not copied
    (restored,) = share.restore_raw(str(shared_raw.sha256.iloc[0]), tmp_path / "out")
    data = restored.read_bytes() + (tmp_path / "share" / "registry.sqlite").read_bytes()
    birth = PATIENT.birth_date.strftime("%Y%m%d")
    secrets = [PATIENT.name, PATIENT.id, birth, study, frame_uid, when, "PHI Refscan Share"]
    for secret in secrets:
        assert secret.encode() not in data, secret
    # still a refscan file, the sinogram bytes unchanged
    before, after = read_refscan_header(raw), read_refscan_header(restored)
    n = 2 * geometry.n_slices * geometry.n_views * geometry.n_detectors
    a, b = int(before["payload_offset_bytes"]), int(after["payload_offset_bytes"])
    assert restored.read_bytes()[b : b + n] == raw.read_bytes()[a : a + n]
    # the same pseudonym and study UID as the shared DICOM
    shared = share.series().iloc[0]
    assert after["patient_id"] == after["patient_name"] == shared.patient_id != PATIENT.id
    assert after["study_uid"] == shared.study_instance_uid != study
    assert after["frame_of_reference_uid"] == shared.frame_of_reference_uid != frame_uid
