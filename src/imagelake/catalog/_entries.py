"""What the catalog lists: image stacks and index tables, as plain data.

The lead (``imagelake.lake``) describes a lake with :class:`StackEntry` and
:class:`TableEntry` values; :mod:`imagelake.catalog._intake` turns them into Intake 2
entries. Everything here is checked up front, so a bad name or path fails when the
catalog is written, not when a user opens it.

Catalog keys
------------
An entry's key is what users type (``cat["ct_1_2_840_10008_s0"]`` or
``cat.ct_1_2_840_10008_s0``), so it must be a lower-case Python identifier:
``^[a-z][a-z0-9_]*$``, and not the name of a :class:`intake.readers.entry.Catalog`
attribute (``data``, ``entries``, ``search`` ...), which attribute access would find first.
:func:`make_stack_key` builds stack keys by the rule

1. ``"<modality>_<SeriesInstanceUID>_s<stack index>"`` (modality left out when unknown),
2. lower-cased, every run of characters other than ``a-z0-9`` replaced by one ``_``,
   leading and trailing ``_`` stripped,
3. prefixed with ``stack_`` when it does not start with a letter.

UIDs are digits and single dots, so step 2 maps distinct UIDs to distinct keys.

:func:`make_raw_key` builds the keys of decoded raw stores: ``"raw_<format>_<sha256[:12]>"``
(format lower-cased, runs of other characters than ``a-z0-9`` replaced by ``_``, ``f``
prepended when it does not start with a letter). They cannot collide with stack keys: a
stack key only starts with ``raw_`` for the modality ``RAW``, and then a UID (a digit)
follows, where a raw key has a letter.
"""

from __future__ import annotations

import json
import keyword
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from imagelake.errors import ImagelakeError

__all__ = [
    "KEY_PATTERN",
    "CatalogError",
    "RawEntry",
    "StackEntry",
    "TableEntry",
    "check_key",
    "check_relative_path",
    "jsonable",
    "make_raw_key",
    "make_stack_key",
]

#: What every catalog key must match.
KEY_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")

# Relative paths are pasted into templates ("{CATALOG_DIR}/<path>") that Intake formats with
# str.format_map, and into URLs that fsspec and xarray parse: braces, parentheses, globs,
# spaces, "%", "#" and "?" would each be misread somewhere, so only plain names are allowed.
_PATH_SEGMENT = re.compile(r"^[A-Za-z0-9_.=+@,-]+$")

# Intake's Catalog._rehydrate replaces any string *starting* like "data(x)" or "{data(x)}",
# anywhere in an entry (metadata included), by the dataset named x.
_DATA_REF = re.compile(r"^\{?data[(][^)]+[)]")


class CatalogError(ImagelakeError, ValueError):
    """A stack or table cannot be put in the catalog (bad key, path or metadata)."""


@dataclass(frozen=True)
class StackEntry:
    """One DICOM image stack (one Zarr v3 group) to list in the catalog.

    Attributes
    ----------
    key
        Catalog key; see :func:`make_stack_key` and the module docstring for the rule.
    store_path
        Path of the Zarr group relative to the lake root, with ``/`` separators,
        e.g. ``"stores/dicom/1.2.3.4-s0-ab12cd34.zarr"``.
    description
        One line shown to users (e.g. ``"CT CHEST 1.0 B30f, 120 slices"``).
    metadata
        JSON-able facts users filter on: ``modality``, ``manufacturer``, ``model``,
        ``series_instance_uid``, ``study_instance_uid``, ``shape``, ``dims`` ...
    """

    key: str
    store_path: str
    description: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RawEntry:
    """One raw store with decoded arrays (one Zarr v3 group) to list in the catalog.

    Raw stores holding only ``original`` (opaque formats, failed decodes) get no entry of
    their own; they are rows of the ``raw`` table.

    Attributes
    ----------
    key
        Catalog key; see :func:`make_raw_key`.
    store_path
        Path of the Zarr group relative to the lake root,
        e.g. ``"stores/raw/<sha256>.zarr"``.
    description
        One line shown to users (e.g. ``"ismrmrd k-space, Siemens Avanto, 2021-06-22"``).
    metadata
        JSON-able facts users filter on: ``format``, ``sha256``, ``modality``,
        ``manufacturer``, ``model``, ``arrays`` ... (never patient identity).
    """

    key: str
    store_path: str
    description: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TableEntry:
    """One Parquet snapshot of the registry (in ``index/``) to list in the catalog.

    Attributes
    ----------
    key
        Catalog key: ``"series"``, ``"instances"``, ``"raw"``, ``"links"``, ``"measures"``.
    path
        Path relative to the lake root, e.g. ``"index/series.parquet"`` (a file, or a
        folder holding a Parquet dataset).
    description
        One line shown to users.
    """

    key: str
    path: str
    description: str = ""


def make_stack_key(
    series_instance_uid: str, stack_index: int = 0, modality: str | None = None
) -> str:
    """Catalog key of a stack, by the rule in the module docstring.

    Parameters
    ----------
    series_instance_uid
        The series' SeriesInstanceUID.
    stack_index
        Index of the stack within its series (a series with mixed geometry is split).
    modality
        DICOM Modality (``"CT"``, ``"MR"`` ...), if known.

    Returns
    -------
    str
        A key matching :data:`KEY_PATTERN`.

    Examples
    --------
    >>> make_stack_key("1.2.840.10008.9", 0, "CT")
    'ct_1_2_840_10008_9_s0'
    >>> make_stack_key("1.2.840.10008.9", 2)
    'stack_1_2_840_10008_9_s2'
    """
    if not series_instance_uid:
        raise CatalogError("a stack key needs a SeriesInstanceUID, got an empty one")
    raw = f"{modality}_{series_instance_uid}" if modality else series_instance_uid
    key = re.sub(r"[^a-z0-9]+", "_", f"{raw}_s{int(stack_index)}".lower()).strip("_")
    if not key[:1].isalpha():
        key = f"stack_{key}"
    return key


def make_raw_key(sha256: str, format: str | None) -> str:
    """Catalog key of a raw store, by the rule in the module docstring.

    Parameters
    ----------
    sha256
        The raw object's id (hex sha256; at least its first 12 digits are used).
    format
        The raw format's registry name (``"ismrmrd"``, ``"siemens-twix"`` ...); ``None``
        for an unknown one.

    Returns
    -------
    str
        A key matching :data:`KEY_PATTERN`.

    Examples
    --------
    >>> make_raw_key("9f86d081884c7d659a2f", "siemens-twix")
    'raw_siemens_twix_9f86d081884c'
    """
    digest = (sha256 or "").lower()
    if len(digest) < 12 or not re.fullmatch(r"[0-9a-f]+", digest):
        raise CatalogError(f"a raw key needs a hex sha256, got {sha256!r}")
    fmt = re.sub(r"[^a-z0-9]+", "_", (format or "unknown").lower()).strip("_") or "unknown"
    if not fmt[:1].isalpha():
        fmt = f"f{fmt}"
    return f"raw_{fmt}_{digest[:12]}"


def check_key(key: str, *, reserved: frozenset[str] = frozenset(), what: str = "entry") -> str:
    """Return ``key`` if it may name a catalog entry, else raise :class:`CatalogError`.

    Parameters
    ----------
    key
        The proposed key.
    reserved
        Names that are taken (attributes of Intake's ``Catalog``, fixed entries).
    what
        What the key names, for the error message.
    """
    if not isinstance(key, str) or not KEY_PATTERN.match(key) or keyword.iskeyword(key):
        raise CatalogError(
            f"{what} key {key!r} is not a lower-case identifier matching {KEY_PATTERN.pattern}; "
            "build stack keys with imagelake.catalog.make_stack_key()"
        )
    if key in reserved:
        raise CatalogError(
            f"{what} key {key!r} is reserved (it names an Intake Catalog attribute or a "
            f"fixed entry); reserved: {sorted(reserved)}"
        )
    return key


def check_relative_path(path: str, *, what: str = "path") -> str:
    """Return ``path`` if it is a plain relative path inside the lake, else raise.

    Allowed: segments of ``A-Z a-z 0-9 _ . = + @ , -`` joined by ``/``; no empty, ``.``
    or ``..`` segment, no leading ``/``, no protocol.
    """
    segments = path.split("/") if isinstance(path, str) and path else [""]
    bad = [s for s in segments if s in ("", ".", "..") or not _PATH_SEGMENT.match(s)]
    if bad:
        raise CatalogError(
            f"{what} {path!r} must be relative to the lake root, '/'-separated, with segments "
            f"of letters, digits and '_.=+@,-' only (no '..', braces, spaces or globs)"
        )
    return path


def _plain(value: Any) -> Any:
    # json.dumps hook: numpy scalars and arrays (shape entries, spacing) become Python values.
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(type(value).__name__)


def _defuse(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _defuse(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_defuse(v) for v in value]
    if isinstance(value, str) and _DATA_REF.match(value):
        # Keep Intake from reading e.g. a SeriesDescription "data(raw)" as a reference.
        return " " + value
    return value


def jsonable(metadata: Mapping[str, Any], *, where: str) -> dict[str, Any]:
    """Deep copy of ``metadata`` made of plain JSON/YAML types.

    Tuples become lists, numpy values Python ones, and strings Intake would take for a
    ``data(...)`` reference get a leading space.

    Raises
    ------
    CatalogError
        If a value cannot be represented (an arbitrary object).
    """
    try:
        plain = json.loads(json.dumps(dict(metadata), default=_plain))
    except (TypeError, ValueError) as exc:
        raise CatalogError(
            f"metadata of {where} must be JSON-able (str, numbers, bools, None, lists, dicts "
            f"with str keys); offending value: {exc}"
        ) from exc
    result: dict[str, Any] = _defuse(plain)
    return result
