"""How scanner names and software versions are compared (the rules in ``scanners.yaml``).

The same scanner is written many ways across sites and software releases ("GE MEDICAL
SYSTEMS", "GE Medical Systems", "TOSHIBA_MEC" ...). Names are compared on a normal form:
casefolded, every punctuation character (``_`` included) turned into a space, runs of
white space collapsed, and stripped. ``+`` is the exception: it tells models apart
("SOMATOM Definition AS" and "SOMATOM Definition AS+" are different scanners), so it is
kept as a word of its own ("AS+" == "AS +").

Software versions keep their punctuation, which carries meaning there ("V3.51*P25",
"2.0" vs "20"); they are only casefolded, white-space-collapsed and stripped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["normalize_name", "normalize_version", "scanner_key", "split_versions"]

_PUNCT = re.compile(r"[^\w\s+]|_")
_PLUS = re.compile(r"\+")
_SPACE = re.compile(r"\s+")


def normalize_name(text: str | None) -> str:
    """Normal form of a manufacturer or model name (see the module docstring).

    >>> normalize_name("  Philips Medical Systems, Inc. ")
    'philips medical systems inc'
    >>> normalize_name("TOSHIBA_MEC")
    'toshiba mec'
    >>> normalize_name("SOMATOM Definition AS+")
    'somatom definition as +'
    """
    if not text:
        return ""
    folded = _PLUS.sub(" + ", _PUNCT.sub(" ", str(text).casefold()))
    return _SPACE.sub(" ", folded).strip()


def normalize_version(text: str | None) -> str:
    """Normal form of one software version: casefolded, spaces collapsed, punctuation kept.

    >>> normalize_version(" syngo  CT VA50A ")
    'syngo ct va50a'
    """
    if not text:
        return ""
    return _SPACE.sub(" ", str(text).casefold()).strip()


def scanner_key(manufacturer: str | None, model: str | None) -> str:
    """The key a scanner is matched and alerted on: ``"<manufacturer>|<model>"``, normalised."""
    return f"{normalize_name(manufacturer)}|{normalize_name(model)}"


def split_versions(value: str | Iterable[object] | None) -> tuple[str, ...]:
    """The values of a SoftwareVersions element, stripped, empty ones dropped.

    Accepts one string (a raw multi-valued DICOM string is split at ``\\``), or any
    iterable of values such as pydicom's ``MultiValue``.

    >>> split_versions("VE11C\\\\ 2.0 ")
    ('VE11C', '2.0')
    """
    if value is None:
        return ()
    items: Iterable[object] = value.split("\\") if isinstance(value, str) else value
    return tuple(s for s in (str(item).strip() for item in items if item is not None) if s)
