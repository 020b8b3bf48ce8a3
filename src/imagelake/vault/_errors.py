"""Errors of the re-identification vault.

They live here until the lead engineer moves them into :mod:`imagelake.errors`::

    ImagelakeError
    └── VaultError
        ├── VaultNotFoundError (FileNotFoundError)   no vault header at the URL
        ├── VaultExistsError (FileExistsError)       create() over an existing vault / key file
        ├── VaultKeyError (ValueError)               no usable key; wrong key or tampered header
        ├── VaultTamperedError (ValueError)          a header or record fails its integrity check
        ├── VaultConflictError (ValueError)          put() of another identity for a pseudonym
        ├── VaultInputError (ValueError)             a malformed pseudonym, identity or user list
        ├── VaultPermissionError (PermissionError)   lookup() by a user who is not permitted
        ├── VaultRecordNotFoundError (KeyError)      lookup() of an unknown pseudonym
        └── VaultLocationError (ValueError)          a key file or vault inside a lake

No message ever holds key material or an identity value; pseudonyms, key ids (a one-way
fingerprint) and file names are the only things they name.
"""

from __future__ import annotations

from typing import Any

from imagelake.errors import ImagelakeError

__all__ = [
    "VaultConflictError",
    "VaultError",
    "VaultExistsError",
    "VaultInputError",
    "VaultKeyError",
    "VaultLocationError",
    "VaultNotFoundError",
    "VaultPermissionError",
    "VaultRecordNotFoundError",
    "VaultTamperedError",
]


class VaultError(ImagelakeError):
    """Root of the vault's errors.

    Attributes
    ----------
    event
        For a refused or failed :meth:`~imagelake.vault.Vault.lookup`: the audit-ready event
        (same keys as the successful one, ``details["outcome"]`` says why), so the caller
        can audit refusals too. ``None`` otherwise.
    """

    def __init__(self, message: str, *, event: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.event = event

    def __str__(self) -> str:  # KeyError subclasses would quote the message
        return str(self.args[0]) if self.args else ""


class VaultNotFoundError(VaultError, FileNotFoundError):
    """There is no vault (no header file) at the given location."""


class VaultExistsError(VaultError, FileExistsError):
    """A vault or key file already exists where a new one was to be created."""


class VaultKeyError(VaultError, ValueError):
    """No usable key: missing, malformed, too open, or not the vault's key."""


class VaultTamperedError(VaultError, ValueError):
    """A vault header or record failed authentication (edited, swapped or corrupted)."""


class VaultConflictError(VaultError, ValueError):
    """A pseudonym already maps to a different identity."""


class VaultInputError(VaultError, ValueError):
    """A pseudonym, identity or permitted-users list the vault cannot store."""


class VaultPermissionError(VaultError, PermissionError):
    """The user is not on the vault's permitted-users list."""


class VaultRecordNotFoundError(VaultError, KeyError):
    """The vault holds no record for the pseudonym."""


class VaultLocationError(VaultError, ValueError):
    """A key file or vault would live inside a lake (keys and identities stay outside)."""
