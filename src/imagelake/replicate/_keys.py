"""Master keys: an id plus 32 bytes of key material, from a file, the environment or a passphrase.

The material never appears in a repr, str, log line or error message.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from imagelake._optional import import_optional
from imagelake.errors import ConfigError

__all__ = ["KEY_BYTES", "MasterKey"]

KEY_BYTES = 32
_KEY_ID = re.compile(r"^[A-Za-z0-9._:@+-]{1,64}$")
# scrypt cost: n=2**15, r=8 takes ~0.1 s and 32 MiB, the interactive-login figure of RFC 7914
_SCRYPT_N = 1 << 15
_SCRYPT_R = 8
_SCRYPT_P = 1


def _decode_material(text: str, where: str) -> bytes:
    text = text.strip()
    for decode in (bytes.fromhex, base64.b64decode):
        try:
            raw = decode(text)
        except (ValueError, binascii.Error):
            continue
        if len(raw) == KEY_BYTES:
            return raw
    raise ConfigError(
        f"the master key in {where} is not {KEY_BYTES} bytes written as hex (64 digits) or "
        "base64 (44 characters)"
    )


@dataclass(frozen=True)
class MasterKey:
    """A named AES-256 master key that wraps the per-object data keys.

    Parameters
    ----------
    key_id
        Public name of the key (1-64 of ``A-Z a-z 0-9 . _ : @ + -``), stored in every object
        header so a wrong or retired key is reported by name.
    material
        The 32 secret bytes. Never shown.
    """

    key_id: str
    material: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.key_id, str) or not _KEY_ID.match(self.key_id):
            raise ConfigError(
                "a master key id is 1-64 characters of letters, digits and . _ : @ + -"
            )
        if not isinstance(self.material, bytes) or len(self.material) != KEY_BYTES:
            raise ConfigError(f"master key {self.key_id!r} must be exactly {KEY_BYTES} bytes")

    def __repr__(self) -> str:
        return f"MasterKey(key_id={self.key_id!r}, material=<hidden>)"

    __str__ = __repr__

    @classmethod
    def generate(cls, key_id: str) -> MasterKey:
        """A new random key (store it outside the lake, e.g. with :meth:`to_file`)."""
        return cls(key_id, os.urandom(KEY_BYTES))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], key_id: str | None = None) -> MasterKey:
        """Read a key file: hex or base64 material, optionally preceded by ``<key id>:``.

        The key id defaults to the one in the file, else the file's stem.
        """
        p = Path(path)
        try:
            text = p.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the master key file {str(p)!r}") from exc
        found_id, sep, rest = text.rpartition(":") if ":" in text else ("", "", text)
        if sep and not found_id:
            raise ConfigError(f"the master key file {str(p)!r} has an empty key id")
        material = _decode_material(rest, f"file {str(p)!r}")
        return cls(key_id or found_id or p.stem, material)

    def to_file(self, path: str | os.PathLike[str]) -> None:
        """Write ``<key id>:<hex>`` to a new file readable by its owner only (mode 0600)."""
        fd = os.open(os.fspath(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(f"{self.key_id}:{self.material.hex()}\n")

    @classmethod
    def from_env(
        cls, var: str = "IMAGELAKE_MASTER_KEY", *, key_id_var: str = "IMAGELAKE_MASTER_KEY_ID"
    ) -> MasterKey:
        """Key material (hex or base64) from ``$var``, key id from ``$key_id_var``."""
        text = os.environ.get(var)
        if not text:
            raise ConfigError(f"environment variable {var} holds no master key")
        key_id = os.environ.get(key_id_var, "")
        if not key_id:
            raise ConfigError(f"environment variable {key_id_var} must name the master key")
        return cls(key_id, _decode_material(text, f"${var}"))

    @classmethod
    def from_passphrase(cls, key_id: str, passphrase: str, *, salt: bytes | str) -> MasterKey:
        """Derive the key from a passphrase with scrypt (n=2**15, r=8, p=1).

        ``salt`` must be the same every time (e.g. the site's name); a passphrase alone would
        give every site the same key.
        """
        if not passphrase:
            raise ConfigError("an empty passphrase cannot make a master key")
        salt_b = salt.encode() if isinstance(salt, str) else salt
        if len(salt_b) < 8:
            raise ConfigError("the scrypt salt must be at least 8 bytes")
        kdf_mod = import_optional(
            "cryptography.hazmat.primitives.kdf.scrypt", extra="crypto", feature="encryption"
        )
        kdf = kdf_mod.Scrypt(salt=salt_b, length=KEY_BYTES, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P)
        return cls(key_id, kdf.derive(passphrase.encode("utf-8")))
