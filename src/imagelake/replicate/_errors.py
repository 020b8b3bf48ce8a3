"""Errors of :mod:`imagelake.replicate` (to move into :mod:`imagelake.errors`).

::

    ImagelakeError
    └── ReplicateError
        ├── RemoteNotFoundError (FileNotFoundError)   no encrypted lake at the URL
        ├── RemoteUnavailableError (ConnectionError)  the storage cannot be reached or refused
        ├── WrongKeyError (ValueError)                the master key does not open the remote
        └── TamperedObjectError (ValueError)          an object fails authentication or its hash
"""

from __future__ import annotations

from imagelake.errors import ImagelakeError

__all__ = [
    "RemoteNotFoundError",
    "RemoteUnavailableError",
    "ReplicateError",
    "TamperedObjectError",
    "WrongKeyError",
]


class ReplicateError(ImagelakeError):
    """A push, pull, rotation or remote read failed."""


class RemoteNotFoundError(ReplicateError, FileNotFoundError):
    """No encrypted lake (no manifest) exists at the URL."""


class RemoteUnavailableError(ReplicateError, ConnectionError):
    """The remote storage could not be reached, or refused a read or write."""


class WrongKeyError(ReplicateError, ValueError):
    """The master key given is not the one the remote was sealed with; names the key ids only."""


class TamperedObjectError(ReplicateError, ValueError):
    """An object failed authentication (edited, truncated, moved or re-keyed); names the object."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"encrypted object {path!r} failed verification: {reason}")
        self.path = path
