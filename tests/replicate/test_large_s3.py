"""Objects larger than one segment: streamed (multipart on S3), sealed segment by segment."""

from __future__ import annotations

import hashlib
import os
import shutil
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from replicate_testkit import object_name, remote_fs, tree_sha

from imagelake.replicate import MasterKey, TamperedObjectError, pull, push, rotate

BIG = "quarantine/big-scan.bin"
SEG = 1 << 23


def test_large_object_round_trip_tamper_and_rotate(
    source_lake: Path, s3_url: str, s3_opts: dict[str, Any], key: MasterKey, tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    shutil.copytree(source_lake, lake)
    big = lake / BIG
    big.parent.mkdir(exist_ok=True)
    big.write_bytes(os.urandom(2 * SEG + 12345))  # three segments, the last one short

    report = push(lake, s3_url, key=key, storage_options=s3_opts, workers=1)
    assert report.uploaded == report.objects

    fs = remote_fs(s3_url, s3_opts)[0]
    name = object_name(s3_url, s3_opts, key, BIG)
    header_len = 8 + len(key.key_id) + 12 + 60
    assert fs.size(name) == header_len + big.stat().st_size + 3 * 16

    pull(s3_url, tmp_path / "out", key=key, storage_options=s3_opts)
    assert tree_sha(tmp_path / "out")[BIG] == hashlib.sha256(big.read_bytes()).hexdigest()

    new = MasterKey.generate("site-a-2027")
    rotate(s3_url, key, new, storage_options=s3_opts)
    pull(s3_url, tmp_path / "out2", key=new, storage_options=s3_opts)
    assert (tmp_path / "out2" / BIG).read_bytes() == big.read_bytes()
    assert not [p for p in fs.find(s3_url) if p.endswith(".rotating")]

    # flip one byte in the middle segment
    data = bytearray(fs.cat_file(name))
    data[len(data) // 2] ^= 0x80
    fs.pipe_file(name, bytes(data))
    with pytest.raises(TamperedObjectError, match="segment 1") as err:
        pull(s3_url, tmp_path / "out3", key=new, storage_options=s3_opts)
    assert err.value.path == BIG


def test_push_and_pull_memory_stays_flat(source_lake: Path, key: MasterKey, tmp_path: Path) -> None:
    # a local destination, so the in-process moto server's own buffers do not count
    lake = tmp_path / "lake"
    shutil.copytree(source_lake, lake)
    size = 24 << 20
    (lake / BIG).parent.mkdir(exist_ok=True)
    (lake / BIG).write_bytes(os.urandom(size))
    seg_log2 = 20  # 1 MiB segments
    for step in ("push", "pull"):
        tracemalloc.start()
        if step == "push":
            push(lake, tmp_path / "remote", key=key, segment_log2=seg_log2, workers=1)
        else:
            pull(tmp_path / "remote", tmp_path / "out", key=key, workers=1)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        # a few segments, not the 24 MiB file (let alone plaintext + ciphertext)
        assert peak < 8 << 20, (step, peak)
    assert (tmp_path / "out" / BIG).read_bytes() == (lake / BIG).read_bytes()
