"""The sealed-object format: envelope encryption with AES-256-GCM, streamed in segments.

Every object gets a fresh random 256-bit data key. The data key is wrapped (AES-256-GCM)
by the master key, with the master key id and the object's relative path as associated
data; the body is cut into segments sealed with the data key, each with the path, its
index and a final flag as associated data. So a flipped byte, a moved or swapped object,
a changed key id, reordered segments and a truncation all fail authentication, and a key
rotation only rewrites the header.

Layout (big-endian)::

    magic  "ILKE"   4 bytes
    version         1 byte   (1)
    flags           1 byte   (0, reserved)
    segment_log2    1 byte   plaintext segment size = 2**segment_log2
    key_id_len      1 byte
    key_id          key_id_len bytes (ASCII)
    nonce           12 bytes  base nonce of the segments
    wrapped_key     60 bytes  wrap nonce (12) + sealed data key (32) + tag (16)
    segments        each: ciphertext of up to 2**segment_log2 bytes + 16-byte tag;
                    the last one (possibly empty) has final = 1
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass
from typing import Any, BinaryIO

from imagelake._optional import import_optional
from imagelake.replicate._errors import TamperedObjectError, WrongKeyError
from imagelake.replicate._keys import KEY_BYTES, MasterKey

__all__ = [
    "DEFAULT_SEGMENT_LOG2",
    "FORMAT_VERSION",
    "Header",
    "SealResult",
    "read_header",
    "rewrap_header",
    "seal_bytes",
    "seal_stream",
    "unseal_bytes",
    "unseal_stream",
]

MAGIC = b"ILKE"
FORMAT_VERSION = 1
DEFAULT_SEGMENT_LOG2 = 23  # 8 MiB
_PREFIX = struct.Struct(">4sBBBB")
_NONCE = 12
_TAG = 16
_WRAPPED = _NONCE + KEY_BYTES + _TAG
_WRAP_AAD = b"imagelake/wrap/v1\x00"
_SEG_AAD = b"imagelake/segment/v1\x00"
_SEG_INDEX = struct.Struct(">QB")


class UnwrapError(TamperedObjectError):
    """The data key did not unwrap: a wrong key of the right id, or an edited header."""


def _aesgcm(key: bytes) -> Any:
    mod = import_optional(
        "cryptography.hazmat.primitives.ciphers.aead", extra="crypto", feature="encryption"
    )
    return mod.AESGCM(key)


def _invalid_tag() -> type[Exception]:
    mod = import_optional("cryptography.exceptions", extra="crypto", feature="encryption")
    return mod.InvalidTag  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Header:
    """The parsed header of a sealed object."""

    key_id: str
    segment_log2: int
    nonce: bytes
    wrapped_key: bytes
    length: int

    def to_bytes(self) -> bytes:
        kid = self.key_id.encode("ascii")
        return (
            _PREFIX.pack(MAGIC, FORMAT_VERSION, 0, self.segment_log2, len(kid))
            + kid
            + self.nonce
            + self.wrapped_key
        )


@dataclass(frozen=True)
class SealResult:
    """Sizes and sha256 digests of one object's plaintext and ciphertext."""

    plain_sha256: str
    plain_size: int
    cipher_sha256: str
    cipher_size: int


def _wrap_aad(key_id: str, path: str) -> bytes:
    return _WRAP_AAD + key_id.encode("ascii") + b"\x00" + path.encode("utf-8")


def _seg_aad(path: str, index: int, final: bool) -> bytes:
    return _SEG_AAD + path.encode("utf-8") + b"\x00" + _SEG_INDEX.pack(index, int(final))


def _seg_nonce(base: bytes, index: int) -> bytes:
    counter = int.from_bytes(base[4:], "big") ^ index
    return base[:4] + counter.to_bytes(8, "big")


def _wrap(key: MasterKey, path: str, data_key: bytes) -> bytes:
    nonce = os.urandom(_NONCE)
    return nonce + bytes(
        _aesgcm(key.material).encrypt(nonce, data_key, _wrap_aad(key.key_id, path))
    )


def _unwrap(key: MasterKey, path: str, header: Header) -> bytes:
    if header.key_id != key.key_id:
        raise WrongKeyError(
            f"object {path!r} is sealed with master key {header.key_id!r}, "
            f"but the key given is {key.key_id!r}"
        )
    w = header.wrapped_key
    try:
        return bytes(
            _aesgcm(key.material).decrypt(w[:_NONCE], w[_NONCE:], _wrap_aad(key.key_id, path))
        )
    except _invalid_tag() as exc:
        raise UnwrapError(
            path, f"its data key does not unwrap with master key {key.key_id!r}"
        ) from exc


def _read_exact(reader: BinaryIO, n: int) -> bytes:
    parts: list[bytes] = []
    while n > 0:
        block = reader.read(n)
        if not block:
            break
        parts.append(block)
        n -= len(block)
    return b"".join(parts)


def read_header(reader: BinaryIO, path: str) -> Header:
    """Parse the header at the start of ``reader``.

    Raises
    ------
    TamperedObjectError
        Not a sealed object, an unknown version, or a truncated header.
    """
    prefix = _read_exact(reader, _PREFIX.size)
    if len(prefix) < _PREFIX.size:
        raise TamperedObjectError(path, "the header is truncated")
    magic, version, _flags, seg_log2, kid_len = _PREFIX.unpack(prefix)
    if magic != MAGIC:
        raise TamperedObjectError(path, "it is not an imagelake sealed object (bad magic)")
    if version != FORMAT_VERSION:
        raise TamperedObjectError(path, f"unknown format version {version}")
    if not 10 <= seg_log2 <= 30 or kid_len == 0:
        raise TamperedObjectError(path, "the header is malformed")
    rest = _read_exact(reader, kid_len + _NONCE + _WRAPPED)
    if len(rest) < kid_len + _NONCE + _WRAPPED:
        raise TamperedObjectError(path, "the header is truncated")
    try:
        key_id = rest[:kid_len].decode("ascii")
    except UnicodeDecodeError as exc:
        raise TamperedObjectError(path, "the key id in the header is not ASCII") from exc
    return Header(
        key_id=key_id,
        segment_log2=seg_log2,
        nonce=rest[kid_len : kid_len + _NONCE],
        wrapped_key=rest[kid_len + _NONCE :],
        length=_PREFIX.size + len(rest),
    )


class _HashingWriter:
    def __init__(self, writer: BinaryIO) -> None:
        self.writer = writer
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self.writer.write(data)
        self.sha.update(data)
        self.size += len(data)


def seal_stream(
    reader: BinaryIO,
    writer: BinaryIO,
    *,
    path: str,
    key: MasterKey,
    segment_log2: int = DEFAULT_SEGMENT_LOG2,
) -> SealResult:
    """Encrypt ``reader`` into ``writer`` as object ``path``; memory stays at ~2 segments."""
    data_key = os.urandom(KEY_BYTES)
    header = Header(key.key_id, segment_log2, os.urandom(_NONCE), _wrap(key, path, data_key), 0)
    aead = _aesgcm(data_key)
    out = _HashingWriter(writer)
    out.write(header.to_bytes())
    plain_sha = hashlib.sha256()
    plain_size = 0
    seg = 1 << segment_log2
    current = _read_exact(reader, seg)
    index = 0
    while True:
        upcoming = _read_exact(reader, seg) if len(current) == seg else b""
        final = not upcoming
        plain_sha.update(current)
        plain_size += len(current)
        nonce = _seg_nonce(header.nonce, index)
        out.write(bytes(aead.encrypt(nonce, current, _seg_aad(path, index, final))))
        if final:
            break
        current, index = upcoming, index + 1
    return SealResult(plain_sha.hexdigest(), plain_size, out.sha.hexdigest(), out.size)


def unseal_stream(
    reader: BinaryIO, writer: BinaryIO | None, *, path: str, key: MasterKey
) -> SealResult:
    """Decrypt object ``path`` from ``reader`` into ``writer`` (``None``: verify only).

    Raises
    ------
    WrongKeyError
        The header names another master key id.
    TamperedObjectError
        Any authentication failure; names ``path``.
    """
    cipher_sha = hashlib.sha256()
    cipher_size = 0

    class _Tee:
        def read(self, n: int) -> bytes:
            nonlocal cipher_size
            block = reader.read(n)
            cipher_sha.update(block)
            cipher_size += len(block)
            return bytes(block)

    tee: Any = _Tee()
    header = read_header(tee, path)
    aead = _aesgcm(_unwrap(key, path, header))
    invalid = _invalid_tag()
    plain_sha = hashlib.sha256()
    plain_size = 0
    seg = (1 << header.segment_log2) + _TAG
    current = _read_exact(tee, seg)
    index = 0
    while True:
        upcoming = _read_exact(tee, seg) if len(current) == seg else b""
        final = not upcoming
        if len(current) < _TAG:
            raise TamperedObjectError(path, "it is truncated")
        nonce = _seg_nonce(header.nonce, index)
        try:
            plain = bytes(aead.decrypt(nonce, current, _seg_aad(path, index, final)))
        except invalid as exc:
            raise TamperedObjectError(
                path, f"segment {index} does not authenticate (edited, moved or truncated)"
            ) from exc
        plain_sha.update(plain)
        plain_size += len(plain)
        if writer is not None:
            writer.write(plain)
        if final:
            break
        current, index = upcoming, index + 1
    return SealResult(plain_sha.hexdigest(), plain_size, cipher_sha.hexdigest(), cipher_size)


def seal_bytes(data: bytes, *, path: str, key: MasterKey) -> bytes:
    """Seal a small in-memory object."""
    import io

    out = io.BytesIO()
    seal_stream(io.BytesIO(data), out, path=path, key=key)
    return out.getvalue()


def unseal_bytes(blob: bytes, *, path: str, key: MasterKey) -> bytes:
    """Open a small in-memory object."""
    import io

    out = io.BytesIO()
    unseal_stream(io.BytesIO(blob), out, path=path, key=key)
    return out.getvalue()


def rewrap_header(header: Header, *, path: str, old_key: MasterKey, new_key: MasterKey) -> bytes:
    """The header of ``path`` with its data key rewrapped from ``old_key`` to ``new_key``."""
    data_key = _unwrap(old_key, path, header)
    return Header(
        new_key.key_id, header.segment_log2, header.nonce, _wrap(new_key, path, data_key), 0
    ).to_bytes()
