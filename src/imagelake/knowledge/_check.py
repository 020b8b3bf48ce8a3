"""Checking a series' scanner against the knowledge base, and alerting on what is new.

Ingest checks every series; it builds one :class:`ScannerIndex` per job (two queries)
and calls :meth:`ScannerIndex.check`, a dictionary lookup. :func:`check` is the one-off
form that builds the index for a single question.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from imagelake import model as m
from imagelake.db import AlertUpsert, Database, upsert_alert
from imagelake.knowledge._db import transaction
from imagelake.knowledge._kb import KnowledgeBase
from imagelake.knowledge._normalize import (
    normalize_name,
    normalize_version,
    scanner_key,
    split_versions,
)

__all__ = [
    "SIGHTING_CONTEXT_KEYS",
    "ScannerCheck",
    "ScannerIndex",
    "ScannerStatus",
    "check",
    "record_sighting",
]

ScannerStatus = Literal["known", "unknown_scanner", "unknown_software_version", "unidentified"]

#: What a sighting's context may carry into an alert. An allow-list, because alerts are
#: shown to anyone who looks after the lake: no patient identifiers, no file paths (which
#: often hold patient names).
SIGHTING_CONTEXT_KEYS = frozenset(
    {"series_instance_uid", "raw_sha256", "format", "job_id", "station_name", "device_serial"}
)


@dataclass(frozen=True)
class ScannerCheck:
    """The knowledge base's answer about one scanner identity.

    Attributes
    ----------
    status
        ``"known"``; ``"unknown_scanner"`` (the model is not listed);
        ``"unknown_software_version"`` (the model is, none of the versions is);
        ``"unidentified"`` (neither manufacturer nor model is given).
    manufacturer, model
        As given (stripped).
    software_versions
        The SoftwareVersions values given.
    key
        The normalised ``manufacturer|model``.
    scanner_id
        The matched ``scanner`` row (``None`` when unknown, or for an index built from a
        file rather than a registry).
    matched_version
        The listed version that matched, as the knowledge base spells it.
    emulator
        The emulator of the matched version, if any.
    raw_formats
        Raw formats the knowledge base says this scanner writes (the scanner's list and
        the matched version's); empty when unknown or not stated.
    """

    status: ScannerStatus
    manufacturer: str
    model: str
    software_versions: tuple[str, ...]
    key: str
    scanner_id: int | None = None
    matched_version: str | None = None
    emulator: str | None = None
    raw_formats: tuple[str, ...] = ()

    @property
    def known(self) -> bool:
        """Whether the scanner and its software version are known."""
        return self.status == "known"


@dataclass(frozen=True)
class _Known:
    scanner_id: int | None
    # normalised version -> (version as listed, emulator)
    versions: Mapping[str, tuple[str, str | None]]
    raw_formats: tuple[str, ...] = ()
    # normalised version -> raw formats listed for that version
    version_formats: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


class ScannerIndex:
    """An in-memory index of the known scanners for fast, repeated checks.

    Parameters
    ----------
    scanners
        Normalised ``manufacturer|model`` key -> what is known of that scanner.
        Build one with :meth:`from_db` or :meth:`from_kb`.
    """

    def __init__(self, scanners: Mapping[str, _Known]) -> None:
        self._scanners = dict(scanners)

    @classmethod
    def from_db(cls, target: Database | Connection) -> ScannerIndex:
        """Index the registry's ``scanner`` and ``scanner_version`` tables (two queries)."""
        with transaction(target) as conn:
            scanners = conn.execute(
                sa.select(
                    m.scanner.c.id,
                    m.scanner.c.manufacturer,
                    m.scanner.c.model,
                    m.scanner.c.raw_formats,
                )
            ).all()
            versions = conn.execute(
                sa.select(
                    m.scanner_version.c.scanner_id,
                    m.scanner_version.c.software_version,
                    m.scanner_version.c.emulator,
                    m.scanner_version.c.raw_formats,
                ).order_by(m.scanner_version.c.id)
            ).all()
        by_id: dict[int, dict[str, tuple[str, str | None]]] = {int(s.id): {} for s in scanners}
        formats_by_id: dict[int, dict[str, tuple[str, ...]]] = {int(s.id): {} for s in scanners}
        for v in versions:
            listed = by_id.get(int(v.scanner_id))
            if listed is not None:
                norm = normalize_version(v.software_version)
                listed.setdefault(norm, (v.software_version, v.emulator))
                formats_by_id[int(v.scanner_id)].setdefault(norm, tuple(v.raw_formats or ()))
        index: dict[str, _Known] = {}
        for s in sorted(scanners, key=lambda r: int(r.id)):
            index.setdefault(
                scanner_key(s.manufacturer, s.model),
                _Known(s.id, by_id[s.id], tuple(s.raw_formats or ()), formats_by_id[int(s.id)]),
            )
        return cls(index)

    @classmethod
    def from_kb(cls, kb: KnowledgeBase) -> ScannerIndex:
        """Index a knowledge-base file directly (no registry; ``scanner_id`` is ``None``)."""
        return cls(
            {
                e.key: _Known(
                    None,
                    {
                        normalize_version(v.version): (v.version, v.emulator)
                        for v in e.software_versions
                    },
                    tuple(e.raw_formats),
                    {
                        normalize_version(v.version): tuple(v.raw_formats)
                        for v in e.software_versions
                    },
                )
                for e in kb.scanners
            }
        )

    def __len__(self) -> int:
        return len(self._scanners)

    def check(
        self,
        manufacturer: str | None,
        model: str | None,
        software_versions: str | Iterable[object] | None = (),
    ) -> ScannerCheck:
        """Check one scanner identity (see :class:`ScannerCheck`).

        Parameters
        ----------
        manufacturer, model
            Manufacturer and ManufacturerModelName of the series or raw file.
        software_versions
            SoftwareVersions: one string (split at ``\\``), or a sequence such as
            pydicom's ``MultiValue``. Known when *any* value is listed for the scanner.
            A scanner listed without versions accepts any version; a series that gives
            no version is judged on its scanner alone.
        """
        mfr, mdl = (manufacturer or "").strip(), (model or "").strip()
        versions = split_versions(software_versions)
        unidentified = ScannerCheck("unidentified", mfr, mdl, versions, scanner_key(mfr, mdl))
        if not normalize_name(mfr) and not normalize_name(mdl):
            return unidentified
        known = self._scanners.get(unidentified.key)
        if known is None:
            return replace(unidentified, status="unknown_scanner")
        found = replace(
            unidentified,
            status="known",
            scanner_id=known.scanner_id,
            raw_formats=known.raw_formats,
        )
        if not known.versions or not versions:
            return found
        for version in versions:
            norm = normalize_version(version)
            match = known.versions.get(norm)
            if match is not None:
                extra = known.version_formats.get(norm, ())
                formats = tuple(dict.fromkeys((*known.raw_formats, *extra)))
                return replace(
                    found, matched_version=match[0], emulator=match[1], raw_formats=formats
                )
        return replace(found, status="unknown_software_version")


def check(
    target: Database | Connection,
    manufacturer: str | None,
    model: str | None,
    software_versions: str | Iterable[object] | None = (),
) -> ScannerCheck:
    """Check one scanner identity against the registry (builds a :class:`ScannerIndex`).

    For many checks build the index once with :meth:`ScannerIndex.from_db` instead.
    """
    return ScannerIndex.from_db(target).check(manufacturer, model, software_versions)


def _where(context: Mapping[str, Any]) -> str:
    if context.get("series_instance_uid"):
        return f"; first seen in series {context['series_instance_uid']}"
    if context.get("raw_sha256"):
        return f"; first seen in raw file sha256:{context['raw_sha256']}"
    return ""


def record_sighting(
    conn: Connection,
    result: ScannerCheck,
    *,
    count: int = 1,
    modality: str | None = None,
    context: Mapping[str, Any] | None = None,
) -> AlertUpsert | None:
    """Raise (once) or bump the alert for an unknown scanner, version or identity.

    One alert exists per new combination: kind ``"unknown_scanner"`` keyed on the
    normalised ``manufacturer|model``, ``"unknown_software_version"`` keyed on
    ``manufacturer|model|versions``, ``"unidentified_scanner"`` keyed on the modality.
    Later sightings add ``count`` to it and move its ``last_seen``.

    Parameters
    ----------
    conn
        A connection inside the caller's (ingest) transaction.
    result
        What :meth:`ScannerIndex.check` said.
    count
        How many instances (images, raw files) were seen with this identity.
    modality
        The series' modality, for the message and the unidentified key.
    context
        Where it was seen; only the keys in :data:`SIGHTING_CONTEXT_KEYS` (a series
        UID, a raw file's sha256...), never patient identifiers.

    Returns
    -------
    AlertUpsert or None
        The alert raised or bumped; ``None`` when the scanner is known.

    Raises
    ------
    ValueError
        ``count`` is not positive, or ``context`` has a key outside the allow-list.
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    ctx = dict(context or {})
    unexpected = sorted(set(ctx) - SIGHTING_CONTEXT_KEYS)
    if unexpected:
        raise ValueError(
            f"sighting context keys {unexpected} are not allowed (alerts must not carry "
            f"patient identifiers); allowed: {sorted(SIGHTING_CONTEXT_KEYS)}"
        )
    if result.known:
        return None
    shown = "\\".join(result.software_versions) or "not stated"
    mod = (modality or "").strip().upper()
    details: dict[str, Any] = {
        "manufacturer": result.manufacturer,
        "model": result.model,
        "software_versions": list(result.software_versions),
        "modality": mod or None,
        **ctx,
    }
    if result.status == "unknown_scanner":
        kind, key = "unknown_scanner", result.key
        message = (
            f"Unknown scanner model: {result.manufacturer} {result.model} "
            f"(software {shown}){_where(ctx)}"
        )
    elif result.status == "unknown_software_version":
        normalised = "\\".join(normalize_version(v) for v in result.software_versions)
        kind, key = "unknown_software_version", f"{result.key}|{normalised}"
        message = (
            f"Unknown software version {shown} of known scanner "
            f"{result.manufacturer} {result.model}{_where(ctx)}"
        )
    else:
        kind, key = "unidentified_scanner", mod or "unknown"
        message = (
            "Data without Manufacturer or ManufacturerModelName "
            f"(modality {mod or 'not stated'}){_where(ctx)}"
        )
    return upsert_alert(conn, kind, key, message, details=details, increment=count)
