"""Raw files go into an anonymized share de-identified with the same keys as their DICOM:
no identity in any byte, and the share's own linking finds the links again."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parents[1] / "raw"))
from raw_world import PATIENT, kspace_for, mr_session

from imagelake.lake import open_lake


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
