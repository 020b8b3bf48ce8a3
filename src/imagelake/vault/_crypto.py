"""Thin wrappers over ``cryptography`` (imported lazily: the ``crypto`` extra).

Nothing here is home-made: AES-256-GCM (:class:`AESGCM`), AES key wrap (RFC 3394,
:func:`aes_key_wrap`), scrypt and HKDF-SHA256 all come from ``cryptography``; HMAC-SHA256
from the standard library.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from types import ModuleType

from imagelake._optional import import_optional

__all__ = [
    "NONCE_BYTES",
    "AuthFailed",
    "hkdf",
    "mac",
    "open_sealed",
    "scrypt",
    "seal",
    "unwrap_key",
    "wrap_key",
]

NONCE_BYTES = 12  # 96-bit GCM nonce, fresh from os.urandom for every seal
_FEATURE = "the re-identification vault"


class AuthFailed(Exception):
    """Internal: authentication failed (wrong key, or data or associated data changed)."""


def _mod(name: str) -> ModuleType:
    import_optional("cryptography", extra="crypto", feature=_FEATURE)
    return import_optional(name, extra="crypto", feature=_FEATURE)


def seal(key: bytes, plaintext: bytes, aad: bytes) -> tuple[bytes, bytes]:
    """AES-256-GCM: return ``(nonce, ciphertext with tag)`` under a fresh random nonce."""
    aead = _mod("cryptography.hazmat.primitives.ciphers.aead")
    nonce = os.urandom(NONCE_BYTES)
    return nonce, bytes(aead.AESGCM(key).encrypt(nonce, plaintext, aad))


def open_sealed(key: bytes, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
    """Inverse of :func:`seal`; :class:`AuthFailed` when anything was changed."""
    aead = _mod("cryptography.hazmat.primitives.ciphers.aead")
    exceptions = _mod("cryptography.exceptions")
    if len(nonce) != NONCE_BYTES:
        raise AuthFailed
    try:
        return bytes(aead.AESGCM(key).decrypt(nonce, ciphertext, aad))
    except exceptions.InvalidTag:
        raise AuthFailed from None


def wrap_key(kek: bytes, key: bytes) -> bytes:
    """RFC 3394 AES key wrap of ``key`` under the key-encryption key ``kek``."""
    keywrap = _mod("cryptography.hazmat.primitives.keywrap")
    return bytes(keywrap.aes_key_wrap(kek, key))


def unwrap_key(kek: bytes, wrapped: bytes) -> bytes:
    """Inverse of :func:`wrap_key`; :class:`AuthFailed` on a wrong key or changed bytes."""
    keywrap = _mod("cryptography.hazmat.primitives.keywrap")
    try:
        return bytes(keywrap.aes_key_unwrap(kek, wrapped))
    except (keywrap.InvalidUnwrap, ValueError):
        raise AuthFailed from None


def scrypt(secret: bytes, salt: bytes, *, n: int, r: int, p: int, length: int = 32) -> bytes:
    """scrypt key derivation (RFC 7914)."""
    kdf = _mod("cryptography.hazmat.primitives.kdf.scrypt")
    return bytes(kdf.Scrypt(salt=salt, length=length, n=n, r=r, p=p).derive(secret))


def hkdf(key: bytes, info: bytes, length: int = 32) -> bytes:
    """HKDF-SHA256 sub-key of ``key`` for the purpose named by ``info``."""
    hashes = _mod("cryptography.hazmat.primitives.hashes")
    kdf = _mod("cryptography.hazmat.primitives.kdf.hkdf")
    return bytes(
        kdf.HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(key)
    )


def mac(key: bytes, data: bytes) -> bytes:
    """HMAC-SHA256 of ``data``."""
    return hmac.new(key, data, hashlib.sha256).digest()
