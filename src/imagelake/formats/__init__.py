"""Raw scanner file formats: a lazy registry of readers (entry-point group ``imagelake.formats``).

>>> fmt = identify("scan.h5")                  # doctest: +SKIP
>>> content = fmt.open("scan.h5")              # doctest: +SKIP
>>> content.meta.model, list(content.arrays)   # doctest: +SKIP
('Avanto', ['kspace'])

Built in: ``ismrmrd`` (MR raw, HDF5), ``siemens-twix`` (Siemens .dat, VB and VD/VE),
``dicom-ct-pd`` (CT projections, one DICOM file per view), ``ustb-uff`` (ultrasound
channel data, USTB's HDF5 container) and ``opaque`` (any file nobody can parse yet,
archived byte-exact and described by a sidecar or a site rule). Third parties add a
:class:`RawFormat` subclass under the entry-point group and test it with
:class:`imagelake.testing.FormatConformance`.
"""

from __future__ import annotations

import os
import warnings
from functools import cache

from imagelake._registry import Registry
from imagelake.formats._base import (
    HEAD_BYTES,
    PatientIdentity,
    RawArray,
    RawContent,
    RawFormat,
    RawFormatError,
    RawMeta,
    read_head,
)

__all__ = [
    "HEAD_BYTES",
    "PatientIdentity",
    "RawArray",
    "RawContent",
    "RawFormat",
    "RawFormatError",
    "RawMeta",
    "formats",
    "get_format",
    "identify",
    "read_head",
]

#: every raw format, by name: built-ins first, then entry points
formats: Registry[type[RawFormat]] = Registry(
    "raw format",
    "imagelake.formats",
    {
        "ismrmrd": "imagelake.formats.ismrmrd:IsmrmrdFormat",
        "siemens-twix": "imagelake.formats.twix:TwixFormat",
        "dicom-ct-pd": "imagelake.formats.ctpd:CtpdFormat",
        "ustb-uff": "imagelake.formats.uff:UffFormat",
        "refscan": "imagelake.formats.refscan:RefscanFormat",
        "opaque": "imagelake.formats.opaque:OpaqueFormat",
    },
)


@cache
def _instance(cls: type[RawFormat]) -> RawFormat:
    return cls()


def get_format(name: str) -> RawFormat:
    """The format registered as ``name`` (an instance)."""
    return _instance(formats.get(name))


def _ordered() -> list[RawFormat]:
    found = [_instance(cls) for cls in formats.available().values()]
    return sorted(found, key=lambda f: f.priority)


def identify(path: str | os.PathLike[str], head: bytes | None = None) -> RawFormat | None:
    """The first format (by priority) whose ``guess_can_open`` accepts ``path``, or ``None``.

    ``None`` means "not a raw file we know": ordinary DICOM, or an unknown file with
    neither a sidecar nor a site rule.
    """
    if head is None:
        head = read_head(path, HEAD_BYTES)
    for fmt in _ordered():
        try:
            if fmt.guess_can_open(path, head):
                return fmt
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not stop identification
            warnings.warn(
                f"raw format {fmt.name!r} failed to check {os.fspath(path)!r}: {exc}", stacklevel=2
            )
    return None
