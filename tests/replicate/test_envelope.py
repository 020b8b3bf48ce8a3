"""The sealed-object format on its own: segments, associated data, header."""

from __future__ import annotations

import io
import os

import pytest

from imagelake.replicate import MasterKey, TamperedObjectError, WrongKeyError
from imagelake.replicate._envelope import (
    read_header,
    rewrap_header,
    seal_bytes,
    seal_stream,
    unseal_bytes,
    unseal_stream,
)

SEG = 10  # 1 KiB segments, so a few KiB make several
KEY = MasterKey("k1", bytes(range(32)))


def sealed(data: bytes, path: str = "a/b.bin") -> tuple[bytes, int]:
    out = io.BytesIO()
    seal_stream(io.BytesIO(data), out, path=path, key=KEY, segment_log2=SEG)
    blob = out.getvalue()
    return blob, read_header(io.BytesIO(blob), path).length


def opened(blob: bytes, path: str = "a/b.bin", key: MasterKey = KEY) -> bytes:
    out = io.BytesIO()
    unseal_stream(io.BytesIO(blob), out, path=path, key=key)
    return out.getvalue()


@pytest.mark.parametrize("size", [0, 1, 1023, 1024, 1025, 4096, 5000])
def test_round_trip_sizes(size: int) -> None:
    data = os.urandom(size)
    blob, hlen = sealed(data)
    n_segments = max(1, -(-size // 1024))  # an exact multiple needs no empty final segment
    assert len(blob) == hlen + size + 16 * n_segments
    assert opened(blob) == data


def test_same_plaintext_gives_different_ciphertext() -> None:
    data = b"SYNTHETIC^CT^001" * 10
    a, b = seal_bytes(data, path="p", key=KEY), seal_bytes(data, path="p", key=KEY)
    assert a != b and data not in a
    assert unseal_bytes(a, path="p", key=KEY) == data


def test_moved_object_fails() -> None:
    blob, _ = sealed(b"x" * 3000, path="index/series.parquet")
    with pytest.raises(TamperedObjectError) as err:
        opened(blob, path="index/instances.parquet")
    assert err.value.path == "index/instances.parquet"


def test_reordered_segments_fail() -> None:
    blob, h = sealed(os.urandom(3000))
    seg = 1024 + 16
    body = blob[h:]
    swapped = blob[:h] + body[seg : 2 * seg] + body[:seg] + body[2 * seg :]
    with pytest.raises(TamperedObjectError, match="segment 0"):
        opened(swapped)


@pytest.mark.parametrize("cut", ["last_segment", "mid_segment", "into_header"])
def test_truncation_fails(cut: str) -> None:
    blob, h = sealed(os.urandom(3000))  # segments of 1024, 1024, 952
    end = {"last_segment": h + 2 * (1024 + 16), "mid_segment": len(blob) - 7, "into_header": 9}
    with pytest.raises(TamperedObjectError):
        opened(blob[: end[cut]])


def test_flipped_bit_anywhere_in_body_fails() -> None:
    blob, h = sealed(os.urandom(2500))
    for pos in (h, h + 1500, len(blob) - 1):
        bad = bytearray(blob)
        bad[pos] ^= 0x01
        with pytest.raises(TamperedObjectError):
            opened(bytes(bad))


def test_wrong_key_id_and_wrong_material() -> None:
    blob, _ = sealed(b"data")
    with pytest.raises(WrongKeyError, match=r"'k1'.*'k2'"):
        opened(blob, key=MasterKey("k2", bytes(range(32))))
    with pytest.raises(TamperedObjectError, match="does not unwrap"):
        opened(blob, key=MasterKey("k1", bytes(32)))


def test_edited_key_id_fails_to_unwrap() -> None:
    blob, _ = sealed(b"data")
    edited = blob.replace(b"k1", b"k9", 1)
    with pytest.raises(TamperedObjectError):
        opened(edited, key=MasterKey("k9", KEY.material))


def test_not_sealed() -> None:
    with pytest.raises(TamperedObjectError, match="bad magic"):
        opened(b"PAR1" + bytes(200))


def test_rewrap_changes_header_only() -> None:
    data = os.urandom(3000)
    blob, h = sealed(data)
    new = MasterKey("k2", os.urandom(32))
    header = read_header(io.BytesIO(blob), "a/b.bin")
    rewrapped = rewrap_header(header, path="a/b.bin", old_key=KEY, new_key=new) + blob[h:]
    assert rewrapped[-(len(blob) - h) :] == blob[h:]
    assert opened(rewrapped, key=new) == data
    with pytest.raises(WrongKeyError):
        opened(rewrapped, key=KEY)
