"""push/pull to a plain local folder (any fsspec URL), the registry snapshot, the public API."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

import imagelake.replicate as replicate
from imagelake.errors import ConfigError, ImagelakeError, LakeNotFoundError
from imagelake.replicate import (
    MasterKey,
    RemoteUnavailableError,
    ReplicateError,
    lake_files,
    open_remote,
    pull,
    push,
)


def test_public_api_matches_all() -> None:
    public = {n for n in dir(replicate) if not n.startswith("_")}
    assert set(replicate.__all__) == public - {"annotations"}
    for name in ("ReplicateError", "WrongKeyError", "TamperedObjectError", "RemoteNotFoundError"):
        assert issubclass(getattr(replicate, name), ImagelakeError)


def test_snapshot_has_what_only_the_wal_holds(
    source_lake: Path, key: MasterKey, tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    shutil.copytree(source_lake, lake)
    con = sqlite3.connect(lake / "registry.sqlite")
    try:
        assert con.execute("pragma journal_mode").fetchone()[0] == "wal"
        con.execute("pragma wal_autocheckpoint=0")
        con.execute("create table push_probe (x text)")
        con.execute("insert into push_probe values ('committed, still in the WAL')")
        con.commit()
        # the live main file alone does not have the table yet
        (tmp_path / "copy").mkdir()
        shutil.copy(lake / "registry.sqlite", tmp_path / "copy" / "registry.sqlite")
        raw = sqlite3.connect(tmp_path / "copy" / "registry.sqlite")
        tables = {r[0] for r in raw.execute("select name from sqlite_master")}
        raw.close()
        assert "push_probe" not in tables

        report = push(lake, str(tmp_path / "remote"), key=key)
    finally:
        con.close()
    assert report.objects == len(lake_files(lake))
    assert "registry.sqlite-wal" not in lake_files(lake)
    pull(str(tmp_path / "remote"), tmp_path / "out", key=key)
    got = sqlite3.connect(tmp_path / "out" / "registry.sqlite")
    try:
        assert got.execute("select x from push_probe").fetchall() == [
            ("committed, still in the WAL",)
        ]
    finally:
        got.close()


def test_locks_and_temporary_files_stay_home(source_lake: Path, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    shutil.copytree(source_lake, lake)
    (lake / ".tmp").mkdir(exist_ok=True)
    (lake / ".tmp" / "half-written.zarr").write_bytes(b"x")
    (lake / "index" / ".series.parquet.abc.tmp").write_bytes(b"x")
    files = lake_files(lake)
    assert ".lock" not in files and not any(f.endswith((".lock", ".tmp")) for f in files)
    assert not any(f.startswith(".tmp/") for f in files)
    assert "index/series.parquet" in files


def test_push_needs_a_lake(tmp_path: Path, key: MasterKey) -> None:
    with pytest.raises(LakeNotFoundError):
        push(tmp_path, str(tmp_path / "remote"), key=key)


def test_pull_refuses_a_folder_with_other_files(
    source_lake: Path, key: MasterKey, tmp_path: Path
) -> None:
    push(source_lake, str(tmp_path / "remote"), key=key)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("someone else's")
    with pytest.raises(ReplicateError, match=r"notes\.txt"):
        pull(str(tmp_path / "remote"), tmp_path / "busy", key=key)
    assert sorted(p.name for p in (tmp_path / "busy").iterdir()) == ["notes.txt"]


def test_open_remote_refresh_sees_a_new_push(
    source_lake: Path, key: MasterKey, tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    shutil.copytree(source_lake, lake)
    push(lake, str(tmp_path / "remote"), key=key)
    rl = open_remote(str(tmp_path / "remote"), key=key, cache_dir=tmp_path / "cache")
    assert rl.fetch("catalog.yaml").read_bytes() == (lake / "catalog.yaml").read_bytes()
    (lake / "catalog.yaml").write_text((lake / "catalog.yaml").read_text() + "# v2\n")
    push(lake, str(tmp_path / "remote"), key=key)
    assert not rl.fetch("catalog.yaml").read_text().endswith("# v2\n")  # old manifest
    rl.refresh()
    assert rl.fetch("catalog.yaml").read_text().endswith("# v2\n")


def test_unreachable_remote_is_a_clear_error(key: MasterKey, tmp_path: Path) -> None:
    import socket

    import s3fs  # noqa: F401  (the s3 extra; a missing one fails the test)

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    opts = {
        "key": "x",
        "secret": "x",
        "client_kwargs": {"endpoint_url": f"http://127.0.0.1:{port}"},
        "config_kwargs": {"retries": {"max_attempts": 1}},
        "retries": 1,
    }
    with pytest.raises(RemoteUnavailableError, match="s3://nowhere/lake"):
        pull("s3://nowhere/lake", tmp_path / "out", key=key, storage_options=opts)


@pytest.mark.parametrize("bad", [{"verify": "none"}, {"segment_log2": 40}])
def test_bad_push_options(source_lake: Path, key: MasterKey, tmp_path: Path, bad: dict) -> None:
    with pytest.raises(ConfigError):
        push(source_lake, str(tmp_path / "remote"), key=key, **bad)
    assert not (tmp_path / "remote").exists()
