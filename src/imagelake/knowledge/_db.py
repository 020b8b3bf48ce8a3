"""The knowledge base inside a registry: sync from the file, add and remove by hand, export.

The registry's ``scanner`` and ``scanner_version`` tables are what ingest checks against.
:func:`sync` loads the file into them (rows marked ``source="catalog"``); entries added with
:func:`add_scanner` (the ``imagelake scanners add`` command) are marked ``source="cli"`` and
survive every sync. Scanners are matched on their normalised ``manufacturer|model`` key, so
"GE Medical Systems" added by hand and "GE MEDICAL SYSTEMS" in the file are one scanner.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from imagelake import model as m
from imagelake.db import Database
from imagelake.errors import RegistryError
from imagelake.knowledge._kb import KnowledgeBase, ScannerEntry, VersionEntry, check_emulator
from imagelake.knowledge._normalize import normalize_name, normalize_version, scanner_key

__all__ = [
    "SyncReport",
    "add_scanner",
    "add_version",
    "list_scanners",
    "remove_scanner",
    "remove_version",
    "sync",
    "to_yaml",
]


@contextmanager
def transaction(target: Database | Connection) -> Iterator[Connection]:
    """A connection: a new transaction on a Database, or the caller's own connection."""
    if isinstance(target, Connection):
        yield target
    else:
        with target.begin() as conn:
            yield conn


@dataclass(frozen=True)
class SyncReport:
    """What :func:`sync` changed.

    Attributes
    ----------
    added
        Scanners that were not in the registry.
    updated
        Catalog scanners whose modality, raw formats, notes or spelling changed.
    versions_added
        Software versions added (to new and existing scanners).
    versions_updated
        Catalog versions whose emulator or raw formats changed.
    stale
        ``manufacturer|model`` of catalog scanners no longer in the file. They are kept
        (series may refer to them); remove them with :func:`remove_scanner`.
    """

    added: int = 0
    updated: int = 0
    versions_added: int = 0
    versions_updated: int = 0
    stale: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        """Whether the registry changed."""
        return bool(self.added or self.updated or self.versions_added or self.versions_updated)


def _scanner_rows(conn: Connection) -> dict[str, Row[Any]]:
    rows = conn.execute(sa.select(m.scanner).order_by(m.scanner.c.id)).all()
    out: dict[str, Row[Any]] = {}
    for row in rows:
        out.setdefault(scanner_key(row.manufacturer, row.model), row)
    return out


def _version_rows(conn: Connection, scanner_id: int) -> dict[str, Row[Any]]:
    rows = conn.execute(
        sa.select(m.scanner_version)
        .where(m.scanner_version.c.scanner_id == scanner_id)
        .order_by(m.scanner_version.c.id)
    ).all()
    return {normalize_version(r.software_version): r for r in rows}


def _insert_scanner(conn: Connection, entry: ScannerEntry, source: str) -> int:
    res = conn.execute(
        sa.insert(m.scanner).values(
            manufacturer=entry.manufacturer,
            model=entry.model,
            modality=entry.modality,
            raw_formats=list(entry.raw_formats),
            notes=entry.notes,
            source=source,
        )
    )
    return int(res.inserted_primary_key[0])  # type: ignore[index]


def _insert_version(conn: Connection, scanner_id: int, version: VersionEntry) -> None:
    conn.execute(
        sa.insert(m.scanner_version).values(
            scanner_id=scanner_id,
            software_version=version.version,
            emulator=version.emulator,
            raw_formats=list(version.raw_formats),
        )
    )


def _merge_versions(
    conn: Connection, scanner_id: int, versions: Sequence[VersionEntry], *, overwrite: bool
) -> tuple[int, int]:
    """Add missing versions; with ``overwrite`` make existing ones match. ``(added, updated)``."""
    existing = _version_rows(conn, scanner_id)
    added = updated = 0
    for version in versions:
        row = existing.get(normalize_version(version.version))
        if row is None:
            _insert_version(conn, scanner_id, version)
            added += 1
            continue
        wanted: dict[str, Any] = {}
        if overwrite:
            wanted = {"emulator": version.emulator, "raw_formats": list(version.raw_formats)}
        else:  # keep what is there, fill what is missing
            if version.emulator and not row.emulator:
                wanted["emulator"] = version.emulator
            if version.raw_formats and not row.raw_formats:
                wanted["raw_formats"] = list(version.raw_formats)
        changes = {k: v for k, v in wanted.items() if getattr(row, k) != v}
        if changes:
            conn.execute(
                sa.update(m.scanner_version)
                .where(m.scanner_version.c.id == row.id)
                .values(**changes)
            )
            updated += 1
    return added, updated


def _scanner_changes(row: Row[Any], entry: ScannerEntry, *, overwrite: bool) -> dict[str, Any]:
    if overwrite:
        wanted: dict[str, Any] = {
            "manufacturer": entry.manufacturer,
            "model": entry.model,
            "modality": entry.modality,
            "raw_formats": list(entry.raw_formats),
            "notes": entry.notes,
        }
    else:  # an entry added by hand: only fill the gaps
        wanted = {}
        if entry.modality and not row.modality:
            wanted["modality"] = entry.modality
        if entry.raw_formats and not row.raw_formats:
            wanted["raw_formats"] = list(entry.raw_formats)
        if entry.notes and not row.notes:
            wanted["notes"] = entry.notes
    return {k: v for k, v in wanted.items() if getattr(row, k) != v}


def sync(target: Database | Connection, kb: KnowledgeBase | None = None) -> SyncReport:
    """Load a knowledge base into the registry; running it twice changes nothing.

    Parameters
    ----------
    target
        The registry (a new transaction), or a connection inside the caller's transaction.
    kb
        The knowledge base; ``None`` loads the default one (:meth:`KnowledgeBase.load`).

    Notes
    -----
    Nothing is deleted: entries added by hand (source ``"cli"``) keep their values and
    only gain what the file adds; catalog entries that left the file are reported as
    ``stale``.
    """
    kb = KnowledgeBase.load() if kb is None else kb
    added = updated = versions_added = versions_updated = 0
    with transaction(target) as conn:
        rows = _scanner_rows(conn)
        for entry in kb.scanners:
            row = rows.get(entry.key)
            if row is None:
                scanner_id = _insert_scanner(conn, entry, "catalog")
                added += 1
                is_catalog = True
            else:
                scanner_id, is_catalog = int(row.id), row.source == "catalog"
                # the file is the authority for its own entries; hand-added ones keep theirs
                changes = _scanner_changes(row, entry, overwrite=is_catalog)
                if changes:
                    conn.execute(
                        sa.update(m.scanner).where(m.scanner.c.id == row.id).values(**changes)
                    )
                    updated += 1
            va, vu = _merge_versions(
                conn, scanner_id, entry.software_versions, overwrite=is_catalog
            )
            versions_added += va
            versions_updated += vu
        in_file = {e.key for e in kb.scanners}
        stale = tuple(
            sorted(k for k, r in rows.items() if r.source == "catalog" and k not in in_file)
        )
    return SyncReport(added, updated, versions_added, versions_updated, stale)


def _require(conn: Connection, manufacturer: str, model: str) -> Row[Any]:
    rows = _scanner_rows(conn)
    key = scanner_key(manufacturer, model)
    row = rows.get(key)
    if row is None:
        close = difflib.get_close_matches(key, list(rows), n=3)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise RegistryError(
            f"no scanner {manufacturer!r} {model!r} in the knowledge base{hint} "
            "(add it with add_scanner / `imagelake scanners add`)"
        )
    return row


def _entry(row: Row[Any], versions: Sequence[Row[Any]]) -> ScannerEntry:
    return ScannerEntry(
        manufacturer=row.manufacturer,
        model=row.model,
        modality=row.modality,
        raw_formats=tuple(row.raw_formats or ()),
        software_versions=tuple(
            VersionEntry(v.software_version, v.emulator, tuple(v.raw_formats or ()))
            for v in versions
        ),
        notes=row.notes,
        source=row.source,
    )


def _entries(conn: Connection, rows: Sequence[Row[Any]]) -> list[ScannerEntry]:
    ids = [int(r.id) for r in rows]
    versions: dict[int, list[Row[Any]]] = {i: [] for i in ids}
    if ids:
        found = conn.execute(
            sa.select(m.scanner_version)
            .where(m.scanner_version.c.scanner_id.in_(ids))
            .order_by(m.scanner_version.c.id)
        ).all()
        for v in found:
            versions[int(v.scanner_id)].append(v)
    return [_entry(r, versions[int(r.id)]) for r in rows]


def _check_names(manufacturer: str, model: str) -> tuple[str, str]:
    manufacturer, model = (manufacturer or "").strip(), (model or "").strip()
    if not normalize_name(manufacturer) or not normalize_name(model):
        raise RegistryError(
            f"a scanner needs both a manufacturer and a model, got {manufacturer!r} {model!r}"
        )
    return manufacturer, model


def add_scanner(
    target: Database | Connection,
    manufacturer: str,
    model: str,
    *,
    modality: str | None = None,
    software_versions: Sequence[str] = (),
    raw_formats: Sequence[str] = (),
    emulator: str | None = None,
    notes: str | None = None,
) -> ScannerEntry:
    """Add a scanner by hand (source ``"cli"``), or add versions to the one already known.

    Parameters
    ----------
    target
        The registry, or a connection inside the caller's transaction.
    manufacturer, model
        As the scanner writes Manufacturer and ManufacturerModelName.
    modality, raw_formats, notes
        Set on a new scanner; on a known one they only fill empty fields.
    software_versions
        Versions to trust (with ``emulator``, if given). A scanner without versions
        accepts any version.
    emulator
        ``id@version`` of the emulator for the given versions.

    Raises
    ------
    RegistryError
        Manufacturer or model is empty.
    ConfigError
        ``emulator`` is not ``id@version``.

    Returns
    -------
    ScannerEntry
        The scanner as now stored.
    """
    manufacturer, model = _check_names(manufacturer, model)
    check_emulator(emulator)
    entry = ScannerEntry(
        manufacturer=manufacturer,
        model=model,
        modality=modality or None,
        raw_formats=tuple(raw_formats),
        software_versions=tuple(VersionEntry(v.strip(), emulator) for v in software_versions),
        notes=notes,
        source="cli",
    )
    with transaction(target) as conn:
        row = _scanner_rows(conn).get(entry.key)
        if row is None:
            scanner_id = _insert_scanner(conn, entry, "cli")
        else:
            scanner_id = int(row.id)
            changes = _scanner_changes(row, entry, overwrite=False)
            if changes:
                conn.execute(
                    sa.update(m.scanner).where(m.scanner.c.id == scanner_id).values(**changes)
                )
        _merge_versions(conn, scanner_id, entry.software_versions, overwrite=False)
        return _entries(conn, [_require(conn, manufacturer, model)])[0]


def add_version(
    target: Database | Connection,
    manufacturer: str,
    model: str,
    version: str,
    *,
    emulator: str | None = None,
    raw_formats: Sequence[str] = (),
) -> ScannerEntry:
    """Trust one more software version of a known scanner (or set its emulator).

    Raises
    ------
    RegistryError
        The scanner is not known (the message suggests close names), or no version given.
    ConfigError
        ``emulator`` is not ``id@version``.
    """
    if not version or not version.strip():
        raise RegistryError("the software version must not be empty")
    check_emulator(emulator)
    with transaction(target) as conn:
        row = _require(conn, manufacturer, model)
        existing = _version_rows(conn, int(row.id)).get(normalize_version(version))
        if existing is None:
            _insert_version(
                conn, int(row.id), VersionEntry(version.strip(), emulator, tuple(raw_formats))
            )
        else:  # change only what was given
            changes: dict[str, Any] = {}
            if emulator is not None:
                changes["emulator"] = emulator
            if raw_formats:
                changes["raw_formats"] = list(raw_formats)
            if changes:
                conn.execute(
                    sa.update(m.scanner_version)
                    .where(m.scanner_version.c.id == existing.id)
                    .values(**changes)
                )
        return _entries(conn, [row])[0]


def remove_scanner(target: Database | Connection, manufacturer: str, model: str) -> bool:
    """Forget a scanner and its versions; False if it was not known.

    Series and raw files that pointed at it keep their own manufacturer/model columns
    but lose the link (``scanner_id`` becomes NULL); the next ingest of such data alerts.
    """
    with transaction(target) as conn:
        row = _scanner_rows(conn).get(scanner_key(manufacturer, model))
        if row is None:
            return False
        for table in (m.series, m.raw_file):
            conn.execute(
                sa.update(table).where(table.c.scanner_id == row.id).values(scanner_id=None)
            )
        conn.execute(sa.delete(m.scanner_version).where(m.scanner_version.c.scanner_id == row.id))
        conn.execute(sa.delete(m.scanner).where(m.scanner.c.id == row.id))
        return True


def remove_version(
    target: Database | Connection, manufacturer: str, model: str, version: str
) -> bool:
    """Stop trusting one software version; False if it was not listed."""
    with transaction(target) as conn:
        row = _require(conn, manufacturer, model)
        found = _version_rows(conn, int(row.id)).get(normalize_version(version))
        if found is None:
            return False
        conn.execute(sa.delete(m.scanner_version).where(m.scanner_version.c.id == found.id))
        return True


def list_scanners(target: Database | Connection) -> list[ScannerEntry]:
    """Every scanner in the registry, sorted by manufacturer and model (case-insensitive)."""
    with transaction(target) as conn:
        entries = _entries(conn, conn.execute(sa.select(m.scanner)).all())
    return sorted(entries, key=lambda e: (e.manufacturer.casefold(), e.model.casefold()))


def to_yaml(target: Database | Connection) -> str:
    """The registry's knowledge base as YAML (catalog and hand-added entries alike)."""
    return KnowledgeBase(tuple(list_scanners(target)), "registry").to_yaml()
