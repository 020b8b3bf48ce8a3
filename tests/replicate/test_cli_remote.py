"""`imagelake remote query | prefetch | clear`: an encrypted remote lake read from the CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from conftest import MotoS3
from imagelake.lake import open_lake
from imagelake.replicate import MasterKey


def _run(
    exe: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([exe, *args], capture_output=True, text=True, check=False, env=env)


def _pushed(
    tmp_path: Path, source_lake: Path, exe: str, remote: str, env: dict[str, str] | None = None
) -> Path:
    lake_dir = tmp_path / "lake"
    shutil.copytree(source_lake, lake_dir)
    key_file = tmp_path / "site.key"
    MasterKey.generate("site-2026").to_file(key_file)
    pushed = _run(
        exe,
        "push",
        remote,
        "--lake",
        str(lake_dir),
        "--key-file",
        str(key_file),
        "--no-progress",
        env=env,
    )
    assert pushed.returncode == 0, pushed.stderr
    return key_file


def test_remote_query_and_prefetch_local(
    tmp_path: Path, source_lake: Path, imagelake_exe: str
) -> None:
    remote = str(tmp_path / "offsite")
    key_file = _pushed(tmp_path, source_lake, imagelake_exe, remote)
    cache = tmp_path / "cache"
    lake = open_lake(source_lake)
    ct = lake.query({"modality": "CT"})
    assert len(ct) == 1

    q = _run(
        imagelake_exe,
        "remote",
        "query",
        remote,
        "Modality=CT",
        "--key-file",
        str(key_file),
        "--cache",
        str(cache),
        "--format",
        "json",
    )
    assert q.returncode == 0, q.stderr
    rows = json.loads(q.stdout)
    assert [r["series_instance_uid"] for r in rows] == list(ct["series_instance_uid"])
    # only the index (and lake description) came down, no store yet
    assert not (cache / "stores").exists()

    p = _run(
        imagelake_exe,
        "remote",
        "prefetch",
        remote,
        "Modality=CT",
        "--key-file",
        str(key_file),
        "--cache",
        str(cache),
    )
    assert p.returncode == 0, p.stderr
    store = ct["stores"].iloc[0][0]
    src_files = sorted(
        f.relative_to(source_lake / store) for f in (source_lake / store).rglob("*") if f.is_file()
    )
    got_files = sorted(
        f.relative_to(cache / store) for f in (cache / store).rglob("*") if f.is_file()
    )
    assert got_files == src_files
    for rel in src_files:
        assert (cache / store / rel).read_bytes() == (source_lake / store / rel).read_bytes()
    mr_store = lake.query({"modality": "MR"})["stores"].iloc[0][0]
    assert not (cache / mr_store).exists()  # what the query did not ask for stays offsite
    assert "decrypted and verified" in p.stdout

    wrong = tmp_path / "other.key"
    MasterKey.generate("other").to_file(wrong)
    bad = _run(
        imagelake_exe,
        "remote",
        "query",
        remote,
        "--key-file",
        str(wrong),
        "--cache",
        str(tmp_path / "c2"),
    )
    assert bad.returncode == 2 and bad.stderr.startswith("error:") and "Traceback" not in bad.stderr

    cleared = _run(imagelake_exe, "remote", "clear", remote, "--cache", str(cache))
    assert cleared.returncode == 0 and not cache.exists()


def test_remote_query_on_s3(
    tmp_path: Path, source_lake: Path, imagelake_exe: str, moto_s3: MotoS3, s3_url: str
) -> None:
    env = dict(
        os.environ,
        AWS_ENDPOINT_URL=moto_s3.endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
    )
    key_file = _pushed(tmp_path, source_lake, imagelake_exe, s3_url, env=env)
    q = _run(
        imagelake_exe,
        "remote",
        "query",
        s3_url,
        "--key-file",
        str(key_file),
        "--cache",
        str(tmp_path / "cache"),
        "--format",
        "json",
        env=env,
    )
    assert q.returncode == 0, q.stderr
    assert sorted(r["modality"] for r in json.loads(q.stdout)) == ["CT", "MR"]
    p = _run(
        imagelake_exe,
        "remote",
        "prefetch",
        s3_url,
        "--key-file",
        str(key_file),
        "--cache",
        str(tmp_path / "cache"),
        env=env,
    )
    assert p.returncode == 0, p.stderr
    # the whole lake, byte-identical to the source (but the audit, which the push appended to)
    lake_dir = tmp_path / "lake"
    for f in lake_dir.rglob("*"):
        rel = f.relative_to(lake_dir)
        if f.is_file() and rel.parts[0] not in ("audit", ".lock") and rel.name != "registry.sqlite":
            assert (tmp_path / "cache" / rel).read_bytes() == f.read_bytes(), rel
