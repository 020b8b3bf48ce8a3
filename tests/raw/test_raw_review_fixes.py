"""Behaviours a review asked for: a foreign link key is refused, one bad raw file never stops
a batch, duplicates are archived once, people's decisions survive re-runs, manual links."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pydicom
import pytest
from raw_world import kspace_for, mr_session

from imagelake.config import override
from imagelake.errors import ConfigError
from imagelake.lake import open_lake
from imagelake.synthetic.sinogram import FanBeamGeometry, fan_beam_sinogram, write_ctpd

SMALL = FanBeamGeometry(n_views=36, n_channels=48, channel_spacing_rad=0.02, n_rows=1)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_different_link_key_is_refused(tmp_path: Path, require_tool: Any) -> None:
    require_tool("ismrmrd_generate_cartesian_shepp_logan")
    session = mr_session(tmp_path)
    raw = kspace_for(session, tmp_path / "raw" / "meas.h5")
    lake = open_lake(tmp_path / "lake", create=True)
    lake.ingest([session.dicom_dir, raw])
    assert len(lake.links("accepted")) == 1
    with override(link_key_file=str(tmp_path / "keys" / "other.key")):
        elsewhere = open_lake(tmp_path / "lake")  # e.g. a cron job run as another user
    with pytest.raises(ConfigError, match="fingerprint"):
        elsewhere.link()
    assert len(lake.links("accepted")) == 1  # nothing withdrawn


def test_bad_projection_files_do_not_stop_the_batch(tmp_path: Path, write_ct: Any) -> None:
    views = write_ctpd(tmp_path / "in" / "pd", fan_beam_sinogram(SMALL), SMALL)
    stray = tmp_path / "in" / "stray" / "view.dcm"
    stray.parent.mkdir()
    broken = pydicom.dcmread(views[3])
    del broken.SeriesInstanceUID  # a projection file nobody can group
    broken.save_as(stray, enforce_file_format=True)
    shutil.copytree(tmp_path / "in" / "pd", tmp_path / "in" / "pd_backup")  # the scan twice
    ct = write_ct("in/ct")
    lake = open_lake(tmp_path / "lake", create=True)
    report = lake.ingest([tmp_path / "in"])
    assert report.instances_new == len(ct)  # the DICOM series went in
    q = lake.quarantined()
    assert list(q.source) == [str(stray)]
    assert "SeriesInstanceUID" in q.reason.iloc[0]
    raw = lake.raw_files()
    # the views form one raw object; the backup copy adds no second one and no duplicates
    assert list(raw.format) == ["dicom-ct-pd"]
    members = json.loads(raw.meta.iloc[0])["members"]
    assert sorted(Path(m["name"]).name for m in members) == sorted(v.name for v in views)
    assert sorted(m["sha256"] for m in members) == sorted(_sha(v) for v in views)


def test_rejected_recon_link_stays_rejected(tmp_path: Path, require_tool: Any) -> None:
    require_tool("ismrmrd_generate_cartesian_shepp_logan")
    session = mr_session(tmp_path)
    raw = kspace_for(session, tmp_path / "raw" / "meas.h5")
    lake = open_lake(tmp_path / "lake", create=True)
    lake.ingest([raw])
    report = lake.reconstruct(_sha(raw))
    (link_id,) = report.link_ids
    lake.review(link_id, accept=False, user="bob", note="wrong coil combination")
    lake.reconstruct(_sha(raw))
    row = lake.links().set_index("link_id").loc[link_id]
    assert (row.status, row.decided_by) == ("rejected", "bob")


def test_manual_link_and_nested_lock(tmp_path: Path, require_tool: Any) -> None:
    require_tool("ismrmrd_generate_cartesian_shepp_logan")
    session = mr_session(tmp_path)
    raw = kspace_for(
        session, tmp_path / "raw" / "meas.h5", with_ids=False, with_patient=False, minutes=-300
    )
    lake = open_lake(tmp_path / "lake", create=True)
    lake.ingest([session.dicom_dir, raw])
    sha = _sha(raw)
    assert lake.descendants(sha).empty  # five hours apart, no ids: no evidence
    with lake.writer_lock():  # a caller holding the lock may still call the lake
        link_id = lake.add_link(sha[:12], session.series_uid, user="carol", note="scan log")
        lake.link()
    desc = lake.descendants(sha)
    assert list(desc.link_id) == [link_id]
    assert (desc.method.iloc[0], desc.decided_by.iloc[0]) == ("manual", "carol")
    assert [e.action for e in lake.audit.entries(action="link_manual")] == ["link_manual"]
    with pytest.raises(Exception, match="not a raw file id"):
        lake.descendants("zz%")


def test_demo_refuses_a_folder_it_did_not_make(tmp_path: Path) -> None:
    from imagelake.demo import build_demo_inputs

    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.tex").write_text("do not delete")
    with pytest.raises(ConfigError, match="not an imagelake demo folder"):
        build_demo_inputs(precious, size="small")
    assert (precious / "chapter1.tex").exists()


def test_incomplete_projection_sets_are_quarantined_not_archived(tmp_path: Path) -> None:
    views = write_ctpd(tmp_path / "pd", fan_beam_sinogram(SMALL), SMALL)
    for v in views[-3:]:
        v.unlink()  # the copy is still running
    lake = open_lake(tmp_path / "lake", create=True)
    report = lake.ingest([tmp_path / "pd"])
    assert report.raw_new == []
    reasons = set(lake.quarantined().reason)
    assert len(reasons) == 1 and "33 of the 36 views" in reasons.pop()


def test_raw_get_restores_into_a_folder_per_object(tmp_path: Path, imagelake_exe: str) -> None:
    import subprocess

    blob = tmp_path / "in" / "scan.blob"
    blob.parent.mkdir()
    blob.write_bytes(b"ACME" + bytes(range(256)) * 8)
    (tmp_path / "in" / "scan.blob.imagelake.yaml").write_text(
        "label: acme-blob\nmanufacturer: ACME\nmodel: P9\nnotes: keep me\n"
    )
    lake = open_lake(tmp_path / "lake", create=True)
    (sha,) = lake.ingest([tmp_path / "in"]).raw_new
    out = tmp_path / "out"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [imagelake_exe, *args, "--lake", lake.url], capture_output=True, text=True, check=False
        )

    got = run("raw", "get", sha[:10], "--out", str(out))
    assert got.returncode == 0, got.stderr
    folder = out / sha[:12]
    assert _sha(folder / "scan.blob") == sha
    assert "acme-blob" in (folder / "scan.blob.imagelake.yaml").read_text()
    # the restored folder is recognised again: same object, nothing new
    again = lake.ingest([folder])
    assert again.raw_new == [] and again.raw_skipped == 1 and lake.quarantined().empty
    (folder / "scan.blob").write_bytes(b"something else")
    refused = run("raw", "get", sha[:10], "--out", str(out))
    assert refused.returncode == 2 and "differs" in refused.stderr
    assert (folder / "scan.blob").read_bytes() == b"something else"
    both = run("link", "review", "--accept", "1", "--reject", "1")
    assert both.returncode != 0 and "both accepted and rejected" in both.stderr
    audit = run("audit", "verify")
    assert audit.returncode == 0 and "chain intact" in audit.stdout
