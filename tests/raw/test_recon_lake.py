"""Reference reconstructions inside a lake: raw → DICOM → ingested → linked (method recon)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from raw_world import kspace_for, mr_session

from imagelake.lake import Lake, open_lake


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_mr_reconstruction_is_ingested_and_linked_once(
    tmp_path: Path, require_tool: Any, lake_disk: Any
) -> None:
    require_tool("ismrmrd_generate_cartesian_shepp_logan")
    session = mr_session(tmp_path)
    raw = kspace_for(session, tmp_path / "raw" / "meas.h5", matrix=64)
    lake: Lake = open_lake(tmp_path / "lake", create=True)
    lake.ingest([raw])
    sha = _sha(raw)

    report = lake.reconstruct(sha)
    assert report.method == "mr-cartesian"
    assert len(report.series_instance_uids) == 1
    uid = report.series_instance_uids[0]
    series = lake.query(SeriesInstanceUID=uid)
    assert list(series.modality) == ["MR"]
    # the new series comes from the raw file's scanner and session
    assert series.manufacturer.iloc[0] == "GE MEDICAL SYSTEMS"
    assert series.frame_of_reference_uid.iloc[0] == session.frame_of_reference_uid

    ante = lake.antecedents(uid)
    assert list(ante.raw_sha256) == [sha]
    link = ante.iloc[0]
    assert (link.method, link.status) == ("recon", "accepted")
    provenance = link.evidence[0]["provenance"]
    assert provenance["raw_sha256"] == sha
    assert provenance["method"] == "mr-cartesian" and provenance["version"]

    image = lake.open_series(uid).image.values
    assert image.shape[-2:] == (64, 64) and float(np.asarray(image).max()) > 0

    # again: the same UIDs, so nothing is doubled
    n_instances = lake_disk.count(lake, "instance")
    again = lake.reconstruct(sha)
    assert again.series_instance_uids == [uid]
    assert lake_disk.count(lake, "instance") == n_instances
    assert len(lake.antecedents(uid)) == 1
    assert lake.verify() == []


def test_ct_projections_reconstruct_to_a_linked_ct_series(tmp_path: Path) -> None:
    from imagelake.synthetic.sinogram import FanBeamGeometry, fan_beam_sinogram, write_ctpd

    geometry = FanBeamGeometry(n_views=180, n_channels=184, channel_spacing_rad=0.0047368, n_rows=1)
    files = write_ctpd(tmp_path / "pd", fan_beam_sinogram(geometry), geometry)
    lake: Lake = open_lake(tmp_path / "lake", create=True)
    report = lake.ingest([tmp_path / "pd"])
    assert len(report.raw_new) == 1  # one raw object made of every view file
    raw = lake.raw_files()
    assert list(raw.format) == ["dicom-ct-pd"] and int(raw["size"].iloc[0]) == sum(
        f.stat().st_size for f in files
    )
    sha = str(raw.sha256.iloc[0])
    restored = lake.restore_raw(sha, tmp_path / "restored")
    assert sorted(_sha(p) for p in restored) == sorted(_sha(f) for f in files)

    recon = lake.reconstruct(sha)
    assert recon.method == "ct-fbp"
    (uid,) = recon.series_instance_uids
    ds = lake.open_series(uid)
    hu = np.asarray(ds.image.values, dtype=float)
    assert hu.ndim == 3
    centre = hu[
        0, hu.shape[1] // 2 - 5 : hu.shape[1] // 2 + 5, hu.shape[2] // 2 - 5 : hu.shape[2] // 2 + 5
    ]
    assert -200 < float(np.median(centre)) < 200  # soft tissue / water inside the head, not air
    assert float(hu[0, 0, 0]) < -500  # air in the corner
    assert list(lake.antecedents(uid).method) == ["recon"]


def test_unknown_method_is_a_clear_error(tmp_path: Path, require_tool: Any) -> None:
    require_tool("ismrmrd_generate_cartesian_shepp_logan")
    session = mr_session(tmp_path)
    raw = kspace_for(session, tmp_path / "raw" / "meas.h5")
    lake = open_lake(tmp_path / "lake", create=True)
    lake.ingest([raw])
    with pytest.raises(Exception, match="unknown reconstructor"):
        lake.reconstruct(_sha(raw), "no-such-method")
