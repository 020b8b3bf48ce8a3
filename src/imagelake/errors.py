"""Errors raised by imagelake.

Every error derives from :class:`ImagelakeError`. Where a builtin exception has the
same meaning, the subclass inherits it too, so callers may catch either::

    ImagelakeError
    ├── ConfigError (ValueError)
    ├── MissingExtraError (ImportError)
    ├── PluginNotFoundError (KeyError)
    ├── LakeNotFoundError (FileNotFoundError)
    ├── LakeLockedError (RuntimeError)
    ├── InvalidInputError (ValueError)
    │   ├── NotDicomError
    │   ├── PixelDataError
    │   ├── RawFormatError      (imagelake.formats: a raw file its format cannot read)
    │   └── ReconError          (imagelake.recon: data a reconstruction cannot handle)
    ├── DuplicateInstanceError (ValueError)
    ├── StoreError (OSError)
    │   └── FixityError
    ├── RegistryError (RuntimeError)
    ├── QueryError (ValueError)
    ├── LinkError (ValueError)  (imagelake.linking: unknown link, raw file or series)
    └── AuditChainError (ValueError)
"""

from __future__ import annotations

__all__ = [
    "AuditChainError",
    "ConfigError",
    "DuplicateInstanceError",
    "FixityError",
    "ImagelakeError",
    "InvalidInputError",
    "LakeLockedError",
    "LakeNotFoundError",
    "MissingExtraError",
    "NotDicomError",
    "PixelDataError",
    "PluginNotFoundError",
    "QueryError",
    "RegistryError",
    "StoreError",
]


class ImagelakeError(Exception):
    """Root of every error raised by imagelake."""


class ConfigError(ImagelakeError, ValueError):
    """A setting has a value imagelake cannot use."""


class MissingExtraError(ImagelakeError, ImportError):
    """An optional dependency is not installed; the message names the extra."""


class PluginNotFoundError(ImagelakeError, KeyError):
    """A named plugin (format, profile, rule, command...) is not registered."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0]) if self.args else ""


class LakeNotFoundError(ImagelakeError, FileNotFoundError):
    """No lake exists at the given URL."""


class LakeLockedError(ImagelakeError, RuntimeError):
    """Another process holds the lake's writer lock."""


class InvalidInputError(ImagelakeError, ValueError):
    """An input file cannot be ingested; it is quarantined with this reason."""


class NotDicomError(InvalidInputError):
    """The input is not a DICOM file (no preamble/prefix and no parsable dataset)."""


class PixelDataError(InvalidInputError):
    """Pixel data is missing, short, or cannot be decoded."""


class DuplicateInstanceError(ImagelakeError, ValueError):
    """A SOPInstanceUID already in the lake arrived again with different content."""


class StoreError(ImagelakeError, OSError):
    """A store cannot be written or read."""


class FixityError(StoreError):
    """A stored object is missing or its checksum changed."""


class RegistryError(ImagelakeError, RuntimeError):
    """The registry database refused an operation."""


class QueryError(ImagelakeError, ValueError):
    """A query names an unknown field or has a malformed condition."""


class AuditChainError(ImagelakeError, ValueError):
    """The audit log's hash chain is broken (an edited, removed or reordered line)."""
