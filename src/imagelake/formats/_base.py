"""The raw-format contract: what every reader of a raw scanner file provides.

A format is a class with a few declarations (name, file patterns, magic bytes, the extra
it needs) and two methods, ``guess_can_open`` and ``open``, like xarray's
``BackendEntrypoint``. ``open`` returns a :class:`RawContent`: the scanner metadata found
in the file (:class:`RawMeta`) and its arrays (:class:`RawArray`), which are read only when
asked for.

Patient identity read from a raw header is held in :class:`PatientIdentity`, whose
``repr`` hides the values: it is compared as keyed hashes, never printed or logged.
"""

from __future__ import annotations

import fnmatch
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from imagelake.errors import InvalidInputError

__all__ = [
    "HEAD_BYTES",
    "PatientIdentity",
    "RawArray",
    "RawContent",
    "RawFormat",
    "RawFormatError",
    "RawMeta",
    "read_head",
]

#: How many leading bytes of a file identification looks at.
HEAD_BYTES = 65536


class RawFormatError(InvalidInputError):
    """A raw file claims a format but cannot be read as it (truncated, corrupt...)."""


def read_head(path: str | os.PathLike[str], n: int = HEAD_BYTES) -> bytes:
    """The first ``n`` bytes of a file (fewer if it is shorter)."""
    with open(path, "rb") as fh:
        return fh.read(n)


@dataclass(frozen=True, repr=False)
class PatientIdentity:
    """Who a raw file says the patient is. PHI: never print it; compare keyed hashes."""

    patient_id: str | None = None
    name: str | None = None
    birth_date: str | None = None  # YYYYMMDD

    def __repr__(self) -> str:
        present = [k for k in ("patient_id", "name", "birth_date") if getattr(self, k)]
        return f"PatientIdentity(<hidden: {', '.join(present) or 'empty'}>)"

    __str__ = __repr__

    @property
    def empty(self) -> bool:
        return not (self.patient_id or self.name or self.birth_date)


@dataclass(frozen=True)
class RawMeta:
    """Scanner metadata read from a raw file's own header (``None`` when absent).

    Times are ISO 8601 local scanner time without zone (``2021-06-22T15:16:35``), as
    DICOM's DA/TM would give. UIDs are the ones the raw header names: its study, its
    frame of reference, the series it belongs to or references, and any referenced
    instances (localizers...). ``extra`` holds JSON-able details of the format that carry
    no patient identity (``{"twix_version": "VD", "n_coils": 32}``).
    """

    modality: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    software_version: str | None = None
    device_serial: str | None = None
    station_name: str | None = None
    institution: str | None = None
    acquired_at: str | None = None
    study_instance_uid: str | None = None
    frame_of_reference_uid: str | None = None
    series_instance_uids: tuple[str, ...] = ()
    referenced_sop_instance_uids: tuple[str, ...] = ()
    protocol_name: str | None = None
    sequence_name: str | None = None
    patient: PatientIdentity = field(default_factory=PatientIdentity)
    extra: Mapping[str, Any] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        """Every field but the patient identity, JSON-able (for stores, registry, index)."""
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            if name == "patient":
                continue
            value = getattr(self, name)
            out[name] = list(value) if isinstance(value, tuple) else value
        out["extra"] = dict(self.extra)
        return out


@dataclass(frozen=True)
class RawArray:
    """One array of a raw file, read only when :meth:`load` is called.

    ``dims`` name the axes (``("coil", "ky", "kx")``, ``("view", "row", "channel")``);
    ``attrs`` are JSON-able (geometry, units); ``coords`` optional 1-D coordinates by dim
    (``{"view": angles}``).
    """

    name: str
    dims: tuple[str, ...]
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    loader: Callable[[], np.ndarray[Any, Any]]
    attrs: Mapping[str, Any] = field(default_factory=dict)
    coords: Mapping[str, np.ndarray[Any, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.dims) != len(self.shape):
            raise ValueError(
                f"array {self.name!r}: dims {self.dims} do not match shape {self.shape}"
            )

    def load(self) -> np.ndarray[Any, Any]:
        """Read the whole array; it must have the declared shape and dtype."""
        data = np.asarray(self.loader())
        if data.shape != self.shape or data.dtype != self.dtype:
            raise RawFormatError(
                f"array {self.name!r} read as {data.dtype}{list(data.shape)}, "
                f"declared {self.dtype}{list(self.shape)}"
            )
        return data

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


@dataclass(frozen=True)
class RawContent:
    """What :meth:`RawFormat.open` returns."""

    format: str
    meta: RawMeta
    arrays: Mapping[str, RawArray] = field(default_factory=dict)
    #: the files this raw object is made of (one, except for multi-file formats)
    members: tuple[str, ...] = ()


class RawFormat(ABC):
    """A raw file format. Subclass it, fill in the declarations, implement ``open``.

    Register it under the entry-point group ``imagelake.formats``::

        [project.entry-points."imagelake.formats"]
        myvendor = "mypkg.formats:MyVendorFormat"

    and check it with :class:`imagelake.testing.FormatConformance`.
    """

    #: short unique name, used in the registry, the knowledge base and the lake
    name: ClassVar[str]
    #: one line for people
    description: ClassVar[str] = ""
    #: modality of the data ("MR", "CT", "US"), or None
    modality: ClassVar[str | None] = None
    #: file-name patterns (fnmatch, case-insensitive), e.g. ("*.h5", "*.mrd")
    patterns: ClassVar[tuple[str, ...]] = ()
    #: magic bytes as (offset, bytes); any one matching is enough
    magic: ClassVar[tuple[tuple[int, bytes], ...]] = ()
    #: the pip extra ``open`` needs (named in the error when it is missing)
    extra: ClassVar[str | None] = None
    #: lower is tried first; specific formats before generic ones (opaque last)
    priority: ClassVar[int] = 50
    #: whether files of this format can be decoded into arrays (else archived only)
    readable: ClassVar[bool] = True

    # -- identification ---------------------------------------------------------------
    def matches_name(self, path: str | os.PathLike[str]) -> bool:
        base = os.path.basename(os.fspath(path)).lower()
        return any(fnmatch.fnmatch(base, p.lower()) for p in self.patterns)

    def matches_magic(self, head: bytes) -> bool:
        return any(head[off : off + len(m)] == m for off, m in self.magic)

    def guess_can_open(self, path: str | os.PathLike[str], head: bytes | None = None) -> bool:
        """Cheap check that ``path`` is this format (no full parse).

        ``head`` is the file's first :data:`HEAD_BYTES` bytes when the caller already
        read them. The default accepts a magic-bytes match, or a name match when the
        format declares no magic.
        """
        if self.magic:
            if head is None:
                head = read_head(path)
            return self.matches_magic(head)
        return self.matches_name(path)

    # -- reading ------------------------------------------------------------------------
    @abstractmethod
    def open(self, path: str | os.PathLike[str]) -> RawContent:
        """Read the metadata and describe the arrays; raise :class:`RawFormatError` if corrupt."""

    def group_key(self, path: str | os.PathLike[str]) -> str | None:
        """For formats whose raw object spans several files (one DICOM-CT-PD file per
        projection): a key shared by the files of one object. ``None``: one file, one object."""
        return None

    def open_group(self, paths: Sequence[str | os.PathLike[str]]) -> RawContent:
        """Open the files of one multi-file object (same :meth:`group_key`), in order."""
        if len(paths) != 1:
            raise RawFormatError(
                f"format {self.name!r} reads one file at a time, not a group of {len(paths)}"
            )
        return self.open(paths[0])

    def __repr__(self) -> str:
        return f"<raw format {self.name!r}>"
