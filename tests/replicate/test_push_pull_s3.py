"""push / pull / rotate against a real S3 API (a local moto server) through s3fs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from replicate_testkit import (
    object_name,
    registry_rows,
    remote_blobs,
    remote_fs,
    tree_sha,
)

from imagelake.replicate import (
    MasterKey,
    PushReport,
    RemoteNotFoundError,
    TamperedObjectError,
    WrongKeyError,
    lake_files,
    pull,
    push,
    verify_remote,
)

REGISTRY = "registry.sqlite"


@dataclass
class Pushed:
    url: str
    opts: dict[str, Any]
    key: MasterKey
    report: PushReport
    fs: Any


@pytest.fixture(scope="module")
def pushed(source_lake: Path, moto_s3: Any) -> Pushed:
    """One push to a fresh bucket, shared by the tests of this module (they restore what they
    change)."""
    url = f"s3://{moto_s3.new_bucket()}/offsite/site-a"
    opts = moto_s3.options()
    key = MasterKey.generate("site-a-2026")
    report = push(source_lake, url, key=key, storage_options=opts, verify="decrypt")
    return Pushed(url, opts, key, report, remote_fs(url, opts)[0])


@contextmanager
def tampered(p: Pushed, *rels: str) -> Iterator[list[str]]:
    """The stored names of ``rels``; their bytes are put back afterwards."""
    names = [object_name(p.url, p.opts, p.key, r) for r in rels]
    saved = {n: p.fs.cat_file(n) for n in names}
    try:
        yield names
    finally:
        for n, data in saved.items():
            p.fs.pipe_file(n, data)


def test_push_pull_round_trip_is_byte_identical(
    source_lake: Path, pushed: Pushed, tmp_path: Path
) -> None:
    report, url, opts, key = pushed.report, pushed.url, pushed.opts, pushed.key
    files = lake_files(source_lake)
    assert report.objects == report.uploaded == report.verified == len(files)
    assert any(f.startswith("stores/") for f in files) and "index/series.parquet" in files
    assert {"catalog.yaml", "imagelake.json", "audit/log.jsonl", REGISTRY} <= set(files)

    seen: list[tuple[str, int, int]] = []
    pulled = pull(
        url,
        tmp_path / "restored",
        key=key,
        storage_options=opts,
        progress=lambda p, d, t: seen.append((p, d, t)),
    )
    assert pulled.written == len(files)
    assert {p for p, _, _ in seen} == set(files) and max(d for _, d, _ in seen) == len(files)
    src, out = tree_sha(source_lake), tree_sha(tmp_path / "restored")
    assert out.keys() == src.keys()
    # every file byte-identical; the registry is the online-backup snapshot, same content
    assert {k: v for k, v in out.items() if k != REGISTRY} == {
        k: v for k, v in src.items() if k != REGISTRY
    }
    assert out[REGISTRY] == report.registry_sha256
    assert registry_rows(tmp_path / "restored" / REGISTRY) == registry_rows(source_lake / REGISTRY)

    # the pulled folder is a working lake
    from imagelake.lake import open_lake

    assert len(open_lake(tmp_path / "restored").query()) == 2

    # a second push sends nothing, a second pull writes nothing
    again = push(source_lake, url, key=key, storage_options=opts)
    assert (again.uploaded, again.skipped, again.removed) == (0, len(files), 0)
    assert pull(url, tmp_path / "restored", key=key, storage_options=opts).written == 0


def test_no_plaintext_in_remote_bytes(source_lake: Path, pushed: Pushed) -> None:
    blobs = remote_blobs(pushed.url, pushed.opts)
    source = {rel: (source_lake / rel).read_bytes() for rel in lake_files(source_lake)}
    series_dir = next(r for r in source if r.startswith("stores/")).split("/")[2]
    needles = [
        b"SYNTHETIC^CT^001",
        b"SYNTHETIC^MR^001",
        b"PAR1",
        b"SQLite format 3",
        b"SYN-CT-001",
        series_dir.encode(),
    ]
    for needle in needles:
        # each needle is really in the plaintext, so the scan below can fail
        assert any(needle in data for data in source.values()), needle
        hits = [name for name, data in blobs.items() if needle in data or needle in name.encode()]
        assert hits == [], (needle, hits)
    assert len(blobs) == len(source) + 2  # + remote.ilk and manifest.ilk


def _pull_error(p: Pushed, dest: Path) -> TamperedObjectError:
    with pytest.raises(TamperedObjectError) as err:
        pull(p.url, dest, key=p.key, storage_options=p.opts, workers=1)
    return err.value


def test_flipped_ciphertext_byte_is_named(pushed: Pushed, tmp_path: Path) -> None:
    rel = "index/series.parquet"
    with tampered(pushed, rel) as [name]:
        data = bytearray(pushed.fs.cat_file(name))
        data[len(data) // 2] ^= 0x40
        pushed.fs.pipe_file(name, bytes(data))
        err = _pull_error(pushed, tmp_path / "out")
        for decrypt in (False, True):
            with pytest.raises(TamperedObjectError) as verr:
                verify_remote(
                    pushed.url, key=pushed.key, storage_options=pushed.opts, decrypt=decrypt
                )
            assert verr.value.path == rel
    assert err.path == rel and rel in str(err)


def test_swapped_objects_are_named(pushed: Pushed, tmp_path: Path) -> None:
    a, b = "index/series.parquet", "index/instances.parquet"
    with tampered(pushed, a, b) as [na, nb]:
        da, db = pushed.fs.cat_file(na), pushed.fs.cat_file(nb)
        pushed.fs.pipe_file(na, db)
        pushed.fs.pipe_file(nb, da)
        err = _pull_error(pushed, tmp_path / "out")
    assert err.path in (a, b)


def test_changed_key_id_is_named(pushed: Pushed, tmp_path: Path) -> None:
    rel = "catalog.yaml"
    with tampered(pushed, rel) as [name]:
        data = pushed.fs.cat_file(name)
        assert pushed.key.key_id.encode() in data[:80]
        pushed.fs.pipe_file(name, data.replace(pushed.key.key_id.encode(), b"site-x-2026", 1))
        err = _pull_error(pushed, tmp_path / "out")
    assert err.path == rel and "master key" in str(err)


def test_truncated_object_is_named(pushed: Pushed, tmp_path: Path) -> None:
    rel = "audit/log.jsonl"
    with tampered(pushed, rel) as [name]:
        pushed.fs.pipe_file(name, pushed.fs.cat_file(name)[:-5])
        err = _pull_error(pushed, tmp_path / "out")
    assert err.path == rel
    # nothing half-written is left under the file's name
    assert not (tmp_path / "out" / rel).exists()


def test_deleted_object_is_named(pushed: Pushed, tmp_path: Path) -> None:
    rel = "imagelake.json"
    with tampered(pushed, rel) as [name]:
        pushed.fs.rm(name)
        assert _pull_error(pushed, tmp_path / "out").path == rel


def test_restored_remote_pulls_again(pushed: Pushed, tmp_path: Path, source_lake: Path) -> None:
    # after the tamper tests put everything back, the remote is whole (the tests above
    # really changed only what they restored)
    v = verify_remote(pushed.url, key=pushed.key, storage_options=pushed.opts, decrypt=True)
    assert v.objects == len(lake_files(source_lake))
    pull(pushed.url, tmp_path / "ok", key=pushed.key, storage_options=pushed.opts)
    assert tree_sha(tmp_path / "ok").keys() == tree_sha(source_lake).keys()


def test_wrong_key_is_one_clear_error(source_lake: Path, pushed: Pushed, tmp_path: Path) -> None:
    url, opts, key = pushed.url, pushed.opts, pushed.key
    other_id = MasterKey.generate("site-b-2026")
    with pytest.raises(WrongKeyError) as err:
        pull(url, tmp_path / "a", key=other_id, storage_options=opts)
    assert "site-a-2026" in str(err.value) and "site-b-2026" in str(err.value)
    same_id = MasterKey.generate(key.key_id)
    with pytest.raises(WrongKeyError) as err2:
        pull(url, tmp_path / "b", key=same_id, storage_options=opts)
    assert key.key_id in str(err2.value)
    for e in (err.value, err2.value):
        assert key.material.hex() not in str(e) and same_id.material.hex() not in str(e)
    # pushing into it with another key is refused too
    with pytest.raises(WrongKeyError):
        push(source_lake, url, key=other_id, storage_options=opts)
    assert not (tmp_path / "a").exists() or not any((tmp_path / "a").iterdir())


def test_pull_from_nothing(
    s3_url: str, s3_opts: dict[str, Any], key: MasterKey, tmp_path: Path
) -> None:
    with pytest.raises(RemoteNotFoundError):
        pull(s3_url, tmp_path / "x", key=key, storage_options=s3_opts)
