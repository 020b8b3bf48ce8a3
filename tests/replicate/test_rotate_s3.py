"""Key rotation against a real S3 API (a local moto server): only headers change."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from replicate_testkit import remote_blobs, tree_sha

from imagelake.replicate import MasterKey, WrongKeyError, pull, push, rotate
from imagelake.replicate._envelope import read_header

REGISTRY = "registry.sqlite"


def _bodies(url: str, opts: dict[str, Any]) -> dict[str, tuple[str, bytes]]:
    """objects/... → (key id, ciphertext after the header)."""
    out = {}
    for name, data in remote_blobs(url, opts).items():
        if name.startswith("objects/"):
            h = read_header(io.BytesIO(data), name)
            out[name] = (h.key_id, data[h.length :])
    return out


def test_rotation_rewraps_headers_only(
    source_lake: Path, s3_url: str, s3_opts: dict[str, Any], key: MasterKey, tmp_path: Path
) -> None:
    push(source_lake, s3_url, key=key, storage_options=s3_opts)
    before = _bodies(s3_url, s3_opts)
    new = MasterKey.generate("site-a-2027")
    report = rotate(s3_url, key, new, storage_options=s3_opts)
    assert report.rewrapped == report.objects == len(before)
    after = _bodies(s3_url, s3_opts)
    assert after.keys() == before.keys()
    assert {kid for kid, _ in after.values()} == {new.key_id}
    assert {n: b for n, (_, b) in after.items()} == {n: b for n, (_, b) in before.items()}

    with pytest.raises(WrongKeyError, match="site-a-2027"):
        pull(s3_url, tmp_path / "old", key=key, storage_options=s3_opts)
    pull(s3_url, tmp_path / "new", key=new, storage_options=s3_opts)
    src, out = tree_sha(source_lake), tree_sha(tmp_path / "new")
    assert {k: v for k, v in out.items() if k != REGISTRY} == {
        k: v for k, v in src.items() if k != REGISTRY
    }
    # a re-run (e.g. after an interrupted rotation) finds everything done
    assert rotate(s3_url, key, new, storage_options=s3_opts).already == len(before)
    # and push continues under the new key with nothing to send
    assert push(source_lake, s3_url, key=new, storage_options=s3_opts).uploaded == 0
