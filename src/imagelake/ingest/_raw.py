"""Raw scanner files in an ingest: identify, group, archive byte-exact, decode, register, alert.

Every plain input file is offered to the raw-format registry first
(:func:`imagelake.formats.identify`: magic bytes, names, cheap checks; ordinary DICOM files
pass through in microseconds). Files a format claims become raw objects: one file, or,
for multi-file formats (DICOM-CT-PD: one file per projection view), the files sharing
the format's ``group_key``. Each object is archived in ``stores/raw/<sha256>.zarr``
(original bytes + decoded arrays), registered in ``raw_file`` and checked against the
knowledge base:

- an unknown scanner model or software version raises the same alerts as DICOM data;
- a known scanner whose knowledge-base entry lists the raw formats it writes, seen with
  another format, raises ``unexpected_raw_format`` (a new export option, a renamed file);
- a raw file nobody can decode (an opaque blob, or a reader that failed on the arrays)
  whose scanner version has no emulator raises a ``raw_not_viable`` alert.

A file a format claims but cannot read (truncated HDF5, corrupt TWIX) is quarantined with
the reader's reason; the batch goes on. Re-ingesting an object already in the lake (same
sha256) does nothing.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from imagelake import model
from imagelake._fs import LakeFS, sha256_file
from imagelake.db import Database, upsert_alert, utcnow
from imagelake.dicom import Source
from imagelake.errors import ConfigError, ImagelakeError
from imagelake.formats import PatientIdentity, RawContent, RawFormat, identify, read_head
from imagelake.formats.opaque import is_sidecar
from imagelake.knowledge import ScannerIndex, record_sighting
from imagelake.store import RawMember, raw_object_sha256, write_raw_store

__all__ = ["PatientHasher", "RawObject", "RawOutcome", "collect_raw", "ingest_raw_objects"]

#: turns a raw header's patient identity into keyed hashes (the lake injects one)
PatientHasher = Callable[[PatientIdentity], Mapping[str, str | None]]


@dataclass
class RawObject:
    """One raw object found among the inputs: a format and its member files, in order."""

    format: RawFormat
    paths: list[str]
    #: why the object cannot be ingested, found while collecting (error class, reason)
    error: tuple[str, str] | None = None

    @property
    def locator(self) -> str:
        if len(self.paths) == 1:
            return self.paths[0]
        return f"{os.path.commonpath(self.paths)} ({len(self.paths)} {self.format.name} files)"


@dataclass
class RawOutcome:
    """What happened to the raw objects of one ingest."""

    new: list[str] = field(default_factory=list)  # sha256 of objects added
    skipped: int = 0
    failed: list[tuple[RawObject, str, str]] = field(default_factory=list)  # (obj, error, reason)
    alerts: list[str] = field(default_factory=list)
    bytes_in: int = 0
    bytes_stored: int = 0


def collect_raw(sources: Sequence[Source]) -> tuple[list[RawObject], list[Source]]:
    """Split inputs into raw objects and DICOM candidates (sidecars are dropped)."""
    singles: list[RawObject] = []
    groups: dict[tuple[str, str], RawObject] = {}
    dicom: list[Source] = []
    for source in sources:
        if source.member is not None:  # zip members: DICOM only
            dicom.append(source)
            continue
        if is_sidecar(source.path):
            continue
        try:
            fmt = identify(source.path, read_head(source.path))
        except OSError:
            fmt = None  # unreadable: the DICOM path quarantines it with the OS error
        if fmt is None:
            dicom.append(source)
            continue
        try:
            key = fmt.group_key(source.path)
        except Exception as exc:  # noqa: BLE001 - a bad file must not stop the batch
            singles.append(RawObject(fmt, [source.path], error=(type(exc).__name__, str(exc))))
            continue
        if key is None:
            singles.append(RawObject(fmt, [source.path]))
        else:
            groups.setdefault((fmt.name, key), RawObject(fmt, [])).paths.append(source.path)
    return singles + list(groups.values()), dicom


def _member_names(paths: Sequence[str]) -> list[str]:
    if len(paths) == 1:
        return [os.path.basename(paths[0])]
    root = os.path.commonpath(paths)
    if root in paths:  # pragma: no cover - identical paths are deduplicated by discover
        root = os.path.dirname(root)
    return [os.path.relpath(p, root) for p in paths]


def _open(obj: RawObject) -> RawContent:
    if len(obj.paths) == 1 and obj.format.group_key(obj.paths[0]) is None:
        return obj.format.open(obj.paths[0])
    return obj.format.open_group(obj.paths)


def _existing(db: Database, sha: str) -> bool:
    with db.connect() as conn:
        row = conn.execute(
            sa.select(model.raw_file.c.id).where(model.raw_file.c.sha256 == sha)
        ).first()
    return row is not None


def _not_viable(
    conn: Connection, obj: RawObject, content: RawContent, why: str, sha: str
) -> tuple[bool, str]:
    meta = content.meta
    label = str(meta.extra.get("label") or obj.format.name)
    key = "|".join(
        str(v or "").strip().lower()
        for v in (label, meta.manufacturer, meta.model, meta.software_version)
    )
    message = (
        f"Raw data not viable: {label} from {meta.manufacturer or '?'} {meta.model or '?'} "
        f"(software {meta.software_version or 'not stated'}) {why}, and no emulator is "
        f"known for it; first seen in raw file sha256:{sha}"
    )
    upserted = upsert_alert(
        conn,
        "raw_not_viable",
        key,
        message,
        details={
            "format": obj.format.name,
            "label": label,
            "manufacturer": meta.manufacturer,
            "model": meta.model,
            "software_version": meta.software_version,
            "raw_sha256": sha,
        },
    )
    return upserted.created, message


#: registry column widths of raw_file (longer header values are cut, marked with "…")
_WIDTHS = {"manufacturer": 128, "model": 128, "software_version": 256, "device_serial": 64,
           "acquired_at": 32}  # fmt: skip


def _clip(name: str, value: Any) -> str | None:
    if value is None:
        return None
    text = str(value)
    width = _WIDTHS[name]
    return text if len(text) <= width else text[: width - 1] + "…"


def _plain(value: Any) -> Any:
    """JSON-able copy of reader metadata (numpy scalars and arrays, tuples, odd types)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "ndim", 1) == 0:
        return _plain(item())
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return _plain(tolist())
    return str(value)


def _register(
    conn: Connection,
    *,
    sha: str,
    obj: RawObject,
    content: RawContent,
    names: list[str],
    hashes: list[str],
    sizes: list[int],
    result: Any,
    patient: Mapping[str, str | None] | None,
    scanner_id: int | None,
) -> None:
    meta = content.meta
    details: dict[str, Any] = {
        **_plain(meta.public()),
        "members": [
            {"name": n, "sha256": h, "size": s}
            for n, h, s in zip(names, hashes, sizes, strict=True)
        ],
        "arrays": {k: list(v) for k, v in result.arrays.items()},
        "decode_error": result.decode_error,
        "manifest_sha256": result.manifest_sha256,
        "readable": obj.format.readable,
    }
    if patient is not None:
        details["patient_keys"] = dict(patient)
    conn.execute(
        sa.insert(model.raw_file).values(
            sha256=sha,
            format=obj.format.name,
            source_path=obj.paths[0] if len(obj.paths) == 1 else os.path.commonpath(obj.paths),
            size=sum(sizes),
            store_path=result.store_path,
            manufacturer=_clip("manufacturer", meta.manufacturer),
            model=_clip("model", meta.model),
            software_version=_clip("software_version", meta.software_version),
            device_serial=_clip("device_serial", meta.device_serial),
            acquired_at=_clip("acquired_at", meta.acquired_at),
            scanner_id=scanner_id,
            meta=details,
            ingested_at=utcnow(),
        )
    )


def ingest_raw_objects(
    lakefs: LakeFS,
    db: Database,
    objects: Sequence[RawObject],
    *,
    index: ScannerIndex,
    job_id: int | None,
    patient_hasher: PatientHasher | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> RawOutcome:
    """Archive, register and check each raw object; failures are returned, not raised."""
    out = RawOutcome()
    for done, obj in enumerate(objects):
        if progress is not None:
            progress(done, len(objects))
        if obj.error is not None:
            out.failed.append((obj, *obj.error))
            continue
        try:
            hashes = [sha256_file(p) for p in obj.paths]
            sizes = [os.path.getsize(p) for p in obj.paths]
        except OSError as exc:
            out.failed.append((obj, type(exc).__name__, f"cannot read raw file: {exc}"))
            continue
        if len(set(hashes)) < len(hashes):  # the same file twice (a backup copy): once
            first: dict[str, int] = {}
            for i, h in enumerate(hashes):
                first.setdefault(h, i)
            keep = sorted(first.values())
            obj = RawObject(obj.format, [obj.paths[i] for i in keep])
            hashes = [hashes[i] for i in keep]
            sizes = [sizes[i] for i in keep]
        names = _member_names(obj.paths)
        sha = raw_object_sha256(list(zip(names, hashes, strict=True)))
        if _existing(db, sha):
            out.skipped += 1
            continue
        try:
            content = _open(obj)
        except ImagelakeError as exc:
            out.failed.append((obj, type(exc).__name__, str(exc)))
            continue
        except Exception as exc:  # noqa: BLE001 - a reader bug on one file must not stop the batch
            out.failed.append((obj, type(exc).__name__, f"{obj.format.name} reader failed: {exc}"))
            continue
        try:
            members = [
                RawMember(name=n, path=p, sha256=h)
                for n, p, h in zip(names, obj.paths, hashes, strict=True)
            ]
            result = write_raw_store(lakefs, sha256=sha, members=members, content=content)
            meta = content.meta
            check = index.check(meta.manufacturer, meta.model, meta.software_version)
            patient = None
            if patient_hasher is not None and not meta.patient.empty:
                patient = patient_hasher(meta.patient)
            with db.begin() as conn:
                _register(
                    conn,
                    sha=sha,
                    obj=obj,
                    content=content,
                    names=names,
                    hashes=hashes,
                    sizes=sizes,
                    result=result,
                    patient=patient,
                    scanner_id=check.scanner_id,
                )
                context = {"raw_sha256": sha, "format": obj.format.name}
                if meta.device_serial:
                    context["device_serial"] = meta.device_serial
                alert = record_sighting(conn, check, modality=meta.modality, context=context)
                if alert is not None and alert.created:
                    who = " ".join(v for v in (check.manufacturer, check.model) if v)
                    out.alerts.append(f"{check.status}: {who or 'no Manufacturer/Model'} (raw)")
                if check.known and check.raw_formats and obj.format.name not in check.raw_formats:
                    label = str(meta.extra.get("label") or "")
                    if not label or label not in check.raw_formats:
                        upserted = upsert_alert(
                            conn,
                            "unexpected_raw_format",
                            f"{check.key}|{obj.format.name}|{label}",
                            f"Raw format {label or obj.format.name} from {check.manufacturer} "
                            f"{check.model}, which the knowledge base says writes "
                            f"{', '.join(check.raw_formats)}; first seen in raw file sha256:{sha}",
                            details={**context, "expected": list(check.raw_formats)},
                        )
                        if upserted.created:
                            out.alerts.append(
                                f"unexpected_raw_format: {obj.format.name} from {check.model}"
                            )
                why = None
                if not obj.format.readable:
                    why = "has no reader"
                elif result.decode_error:
                    why = f"could not be decoded ({result.decode_error})"
                if why is not None and check.emulator is None:
                    created, message = _not_viable(conn, obj, content, why, sha)
                    if created:
                        out.alerts.append(f"raw_not_viable: {message}")
        except ConfigError:
            raise  # the site's set-up (the link key...), not this file: stop, fix, re-run
        except Exception as exc:  # noqa: BLE001 - one bad raw file must not stop the batch
            out.failed.append((obj, type(exc).__name__, f"cannot archive raw file: {exc}"))
            continue
        out.new.append(sha)
        out.bytes_in += sum(sizes)
        out.bytes_stored += result.stored_bytes
    if progress is not None:
        progress(len(objects), len(objects))
    return out


def group_failures(failed: Sequence[tuple[RawObject, str, str]]) -> dict[str, list[str]]:
    """Failure reasons by member path (for quarantining each file)."""
    by_path: dict[str, list[str]] = defaultdict(list)
    for obj, _error, reason in failed:
        for p in obj.paths:
            by_path[p].append(reason)
    return by_path
