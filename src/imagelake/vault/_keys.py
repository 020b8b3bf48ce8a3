"""Vault keys: a 256-bit master key from a key file, the environment or a passphrase.

The master key only wraps the vault's data-encryption key (see :mod:`imagelake.vault`).
It is identified by a **key id**: the first 16 hex digits of HMAC-SHA256(key,
``"imagelake.vault.key-id.v1"``) - a one-way fingerprint that names the key in headers,
messages and audit events without revealing it.

Key material never appears in ``repr``/``str``, exception messages or logs.

Passphrases go through scrypt (RFC 7914, ``cryptography``'s :class:`Scrypt`) with the
default cost n = 2**15, r = 8, p = 1 (32 MiB of memory; about 0.1-0.2 s on one core of the
development machine) and a random 16-byte salt stored in the vault header. A
:class:`Passphrase` is derived only when the salt is known (on :meth:`Vault.create` or
:meth:`Vault.open`).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import stat
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagelake._fs import fsync_dir
from imagelake.vault import _crypto
from imagelake.vault._errors import VaultExistsError, VaultKeyError, VaultLocationError
from imagelake.vault._location import enclosing_lake

__all__ = [
    "KEY_BYTES",
    "VAULT_KEY_ENV",
    "Passphrase",
    "ScryptParams",
    "VaultKey",
    "create_key_file",
]

KEY_BYTES = 32
VAULT_KEY_ENV = "IMAGELAKE_VAULT_KEY"
_KEY_ID_INFO = b"imagelake.vault.key-id.v1"


def key_id_of(key: bytes) -> str:
    """One-way fingerprint of a key: 16 hex digits of HMAC-SHA256(key, fixed label)."""
    return _crypto.mac(key, _KEY_ID_INFO).hex()[:16]


@dataclass(frozen=True)
class ScryptParams:
    """scrypt cost parameters (RFC 7914).

    The defaults (n = 2**15, r = 8, p = 1: 32 MiB) follow the current OWASP/RFC guidance for
    interactive use. Tests may pass smaller ones; every vault stores the ones it used.
    """

    n: int = 2**15
    r: int = 8
    p: int = 1

    def __post_init__(self) -> None:
        if self.n < 2 or self.n & (self.n - 1) or self.r < 1 or self.p < 1:
            raise VaultKeyError("scrypt parameters need n a power of two >= 2, r >= 1, p >= 1")


class VaultKey:
    """A 256-bit vault master key; its repr shows only the key id.

    Build one with :meth:`from_file`, :meth:`from_env`, :meth:`from_passphrase`,
    :meth:`generate` or :func:`create_key_file`.
    """

    __slots__ = ("__key", "_key_id", "_source")

    def __init__(self, key: bytes, *, source: str = "bytes") -> None:
        if not isinstance(key, bytes | bytearray) or len(key) != KEY_BYTES:
            raise VaultKeyError(f"a vault key is {KEY_BYTES} bytes")
        self.__key = bytes(key)
        self._key_id = key_id_of(self.__key)
        self._source = source

    # -- construction -----------------------------------------------------------------
    @classmethod
    def generate(cls) -> VaultKey:
        """A fresh random key (``os.urandom``)."""
        return cls(os.urandom(KEY_BYTES), source="generated")

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], *, strict: bool = True) -> VaultKey:
        """Load a key file holding 32 raw bytes or their base64 text.

        Parameters
        ----------
        path
            The key file. It must not be inside a lake.
        strict
            Refuse a file that group or others may read or write (mode must be 0600 or
            tighter); with ``strict=False`` only warn.
        """
        p = Path(path).expanduser().absolute()
        _refuse_inside_lake(p, "key file")
        try:
            st = p.stat()
            raw = p.read_bytes()
        except FileNotFoundError:
            raise VaultKeyError(f"key file {p} does not exist") from None
        except OSError as exc:
            raise VaultKeyError(f"key file {p} cannot be read ({exc.strerror})") from None
        if st.st_mode & 0o077:
            msg = (
                f"key file {p} has mode {stat.S_IMODE(st.st_mode):04o}; "
                f"it must be readable by its owner only (chmod 600 {p})"
            )
            if strict:
                raise VaultKeyError(msg)
            warnings.warn(msg, stacklevel=2)
        return cls(_decode_key(raw, f"key file {p}"), source="file")

    @classmethod
    def from_env(cls, var: str = VAULT_KEY_ENV) -> VaultKey:
        """Load the base64 key held by the environment variable ``var``."""
        value = os.environ.get(var)
        if not value:
            raise VaultKeyError(f"environment variable {var} is not set")
        return cls(
            _decode_key(value.encode("ascii", "replace"), f"${var}", allow_raw=False), source="env"
        )

    @classmethod
    def from_passphrase(
        cls, passphrase: str | bytes, salt: bytes, params: ScryptParams | None = None
    ) -> VaultKey:
        """Derive a key from a passphrase with scrypt and the given salt."""
        secret = passphrase.encode("utf-8") if isinstance(passphrase, str) else passphrase
        if not secret:
            raise VaultKeyError("the passphrase is empty")
        if len(salt) < 16:
            raise VaultKeyError("a scrypt salt is at least 16 bytes")
        prm = params or ScryptParams()
        return cls(_crypto.scrypt(secret, salt, n=prm.n, r=prm.r, p=prm.p), source="passphrase")

    # -- use ------------------------------------------------------------------------------
    @property
    def key_id(self) -> str:
        """16 hex digits naming the key (a one-way fingerprint, never the key)."""
        return self._key_id

    @property
    def source(self) -> str:
        """Where the key came from: ``file``, ``env``, ``passphrase``, ``generated``..."""
        return self._source

    def _material(self) -> bytes:
        """The raw key, for :mod:`imagelake.vault` only."""
        return self.__key

    def __repr__(self) -> str:
        return f"VaultKey(key_id={self._key_id!r}, source={self._source!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VaultKey):
            return NotImplemented
        return hmac.compare_digest(self.__key, other.__key)

    def __hash__(self) -> int:
        return hash(self._key_id)

    def __reduce__(self) -> str | tuple[Any, ...]:
        raise TypeError("a VaultKey cannot be pickled; load it from its key file in each process")


class Passphrase:
    """A passphrase whose key is derived (scrypt) once the vault's salt is known.

    Parameters
    ----------
    secret
        The passphrase (never shown by ``repr``).
    params
        scrypt cost used when :meth:`Vault.create` or :meth:`Vault.rotate` makes a new salt.
        :meth:`Vault.open` uses the parameters stored in the vault header instead.
    """

    __slots__ = ("__secret", "params")

    def __init__(self, secret: str | bytes, params: ScryptParams | None = None) -> None:
        value = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
        if not value:
            raise VaultKeyError("the passphrase is empty")
        self.__secret = value
        self.params = params or ScryptParams()

    def derive(self, salt: bytes, params: ScryptParams | None = None) -> VaultKey:
        """The key for ``salt`` (and ``params``, default :attr:`params`)."""
        return VaultKey.from_passphrase(self.__secret, salt, params or self.params)

    def __repr__(self) -> str:
        return f"Passphrase(<hidden>, params={self.params!r})"

    __str__ = __repr__

    def __reduce__(self) -> str | tuple[Any, ...]:
        raise TypeError("a Passphrase cannot be pickled")


def create_key_file(path: str | os.PathLike[str]) -> VaultKey:
    """Create a new random key file (base64, mode 0600) atomically and return its key.

    The key is written to a temporary file opened with ``O_EXCL`` and mode 0600, fsynced,
    then hard-linked to ``path`` (which fails if ``path`` exists, so an existing key is
    never overwritten) - a crash leaves either no key file or a complete one.
    """
    p = Path(path).expanduser().absolute()
    _refuse_inside_lake(p, "key file")
    if p.exists():
        raise VaultExistsError(f"key file {p} already exists; refusing to overwrite a key")
    p.parent.mkdir(parents=True, exist_ok=True)
    key = os.urandom(KEY_BYTES)
    tmp = p.parent / f".{p.name}.{uuid.uuid4().hex}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, base64.b64encode(key) + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, p)
        except FileExistsError:
            raise VaultExistsError(
                f"key file {p} already exists; refusing to overwrite a key"
            ) from None
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(p.parent)
    return VaultKey(key, source="file")


def _decode_key(data: bytes, where: str, *, allow_raw: bool = True) -> bytes:
    """32 raw bytes, or base64 text of 32 bytes (surrounding whitespace ignored)."""
    if allow_raw and len(data) == KEY_BYTES:
        return data
    text = data.strip()
    try:
        decoded = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if len(decoded) != KEY_BYTES:
        kind = "32 raw bytes or their base64" if allow_raw else "the base64 of 32 bytes"
        raise VaultKeyError(f"{where} does not hold a vault key ({kind})")
    return decoded


def _refuse_inside_lake(path: Path, what: str) -> None:
    import fsspec

    lake = enclosing_lake(fsspec.filesystem("file"), path.as_posix())
    if lake is not None:
        raise VaultLocationError(
            f"{what} {path} is inside the lake at {lake}; keep keys and vaults outside any lake"
        )
