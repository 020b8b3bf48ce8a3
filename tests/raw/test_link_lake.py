"""Linking in a real lake: automatic links with evidence, the review queue with who and
when, human decisions kept, queries in both directions, and the CLI over them."""

from __future__ import annotations

import json
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from raw_world import OTHER, PATIENT, STUDY_TIME, kspace_for, mr_session

from imagelake.lake import Lake, open_lake


@pytest.fixture
def world(tmp_path: Path, require_tool: Any) -> dict[str, Any]:
    """Two MR sessions an hour apart on one scanner; a raw file with full evidence for the
    first, and one for the second with nothing but the scanner and the time."""
    require_tool("ismrmrd_generate_cartesian_shepp_logan")
    s1 = mr_session(tmp_path, tag="s1")
    s2 = mr_session(tmp_path, patient=OTHER, tag="s2", start=STUDY_TIME + timedelta(hours=1))
    strong = kspace_for(s1, tmp_path / "raw" / "strong.h5")
    # same scanner, right time, but no UIDs and no patient: too weak to accept alone
    weak = kspace_for(
        s2, tmp_path / "raw" / "weak.h5", with_ids=False, with_patient=False, minutes=-1
    )
    lake = open_lake(tmp_path / "lake", create=True)
    lake.ingest([s1.dicom_dir, s2.dicom_dir, strong, weak])
    return {"lake": lake, "s1": s1, "s2": s2, "strong": strong, "weak": weak}


def _sha(lake: Lake, path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_strong_evidence_is_linked_automatically(world: dict[str, Any]) -> None:
    lake: Lake = world["lake"]
    strong = _sha(lake, world["strong"])
    desc = lake.descendants(strong)
    assert list(desc.series_instance_uid) == [world["s1"].series_uid]
    row = desc.iloc[0]
    assert (row.method, row.status, row.decided_by) == ("rules", "accepted", "imagelake:auto")
    rules = {e["rule"] for e in row.evidence if "rule" in e}
    assert {"frame-of-reference", "study-uid", "patient"} <= rules
    text = json.dumps(list(row.evidence))
    assert PATIENT.id not in text and PATIENT.name not in text  # evidence never shows identity
    ante = lake.antecedents(world["s1"].series_uid)
    assert list(ante.raw_sha256) == [strong]
    assert lake.antecedents(world["s2"].series_uid).empty


def test_weak_evidence_waits_for_review_and_decisions_are_kept(world: dict[str, Any]) -> None:
    lake: Lake = world["lake"]
    weak = _sha(lake, world["weak"])
    assert lake.descendants(weak).empty  # nothing accepted on device + time alone
    queue = lake.review_queue()
    mine = queue[queue.raw_sha256 == weak]
    assert not mine.empty, "the ambiguous raw file should wait in the review queue"
    assert set(mine.series_instance_uid) == {world["s2"].series_uid}
    target = mine[mine.series_instance_uid == world["s2"].series_uid]
    link_id = int(target.link_id.iloc[0])
    decision = lake.review(link_id, accept=True, user="alice", note="operator log says session 2")
    assert decision["status"] == "accepted" and decision["previous"] == "proposed"
    others = [int(i) for i in mine.link_id if int(i) != link_id]
    for other in others:
        lake.review(other, accept=False, user="alice")

    lake.link()  # a new pass must not undo people's decisions
    links = lake.links()
    mine = links[links.raw_sha256 == weak].set_index("link_id")
    assert mine.loc[link_id, "status"] == "accepted"
    assert mine.loc[link_id, "decided_by"] == "alice"
    assert mine.loc[link_id, "decided_at"] is not None
    for other in others:
        assert mine.loc[other, "status"] == "rejected"
    assert list(lake.descendants(weak).series_instance_uid) == [world["s2"].series_uid]
    reviews = list(lake.audit.entries(action="link_review"))
    assert len(reviews) == 1 + len(others)
    assert reviews[0].user == "alice"
    assert lake.verify_audit().ok


def test_queries_in_both_directions(world: dict[str, Any]) -> None:
    lake: Lake = world["lake"]
    strong = _sha(lake, world["strong"])
    with_raw = lake.query_with_raw(Modality="MR")
    by_uid = dict(zip(with_raw.series_instance_uid, with_raw.raw_sha256, strict=True))
    assert strong in by_uid[world["s1"].series_uid]
    only = lake.query_with_raw(Modality="MR", raw={"format": "ismrmrd", "model": "SIGNA*"})
    assert world["s1"].series_uid in set(only.series_instance_uid)
    assert world["s2"].series_uid not in set(only.series_instance_uid)
    assert lake.query_with_raw(Modality="MR", raw={"format": "siemens-twix"}).empty

    parents = lake.query_raw(
        descendants={"Modality": "MR", "SeriesInstanceUID": world["s1"].series_uid}
    )
    assert strong in set(parents.sha256)
    assert lake.query_raw(descendants={"Modality": "CT"}).empty
    listed = lake.raw_files(format="ismrmrd")
    assert len(listed) == 2


def test_link_cli(world: dict[str, Any], imagelake_exe: str) -> None:
    lake: Lake = world["lake"]
    url = lake.url

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [imagelake_exe, *args, "--lake", url], capture_output=True, text=True, check=False
        )

    listed = run("link", "list", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert any(r["status"] == "accepted" for r in rows)
    queue = run("link", "review", "--evidence")
    assert queue.returncode == 0 and "device" in queue.stdout
    proposed = [r for r in rows if r["status"] == "proposed"]
    decided = run("link", "review", "--reject", str(proposed[0]["link_id"]))
    assert decided.returncode == 0 and "-> rejected" in decided.stdout
    raw = run("raw", "list", "--descendant", "Modality=MR", "--format", "json")
    assert raw.returncode == 0 and len(json.loads(raw.stdout)) == 1
    query = run("query", "Modality=MR", "--with-raw", "--format", "json")
    assert sum(1 for r in json.loads(query.stdout) if r["raw_sha256"]) == 1
    bad = run("link", "review", "--accept", "999999")
    assert bad.returncode == 2 and "no link with id" in bad.stderr
    # the lake named on the group reaches the subcommands
    grouped = subprocess.run(
        [imagelake_exe, "link", "--lake", url, "list", "--format", "json"],
        capture_output=True,
        text=True,
        check=False,
        cwd="/",
    )
    assert grouped.returncode == 0, grouped.stderr
    assert len(json.loads(grouped.stdout)) == len(rows)
    relink = run("link")
    assert relink.returncode == 0 and "proposals" in relink.stdout
