"""The linking engine over a lake's registry: records in, link rows out, review decisions.

:func:`raw_records` and :func:`series_records` build the engine's plain records from the
registry (patient identity enters only as keyed hashes); :func:`apply_proposals` writes
what the engine proposed into ``link`` without ever overriding a person's decision;
:func:`decide` records a review decision; :func:`record_link` stores a link whose origin
is certain (a reconstruction made here, a link typed by hand).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from imagelake import model
from imagelake.db import utcnow
from imagelake.errors import ImagelakeError
from imagelake.linking._records import (
    PatientKeys,
    RawRecord,
    SeriesRecord,
    dicom_datetime,
    is_derived,
    is_localizer,
)

__all__ = [
    "AUTO_USER",
    "LinkError",
    "LinkSummary",
    "apply_proposals",
    "decide",
    "parse_time",
    "raw_records",
    "record_link",
    "series_records",
]

#: ``decided_by`` of links the engine accepted by itself
AUTO_USER = "imagelake:auto"

#: (patient_id, name, birth_date) -> keyed hashes
SeriesHasher = Callable[[str | None, str | None, str | None], PatientKeys]


class LinkError(ImagelakeError, ValueError):
    """A link operation that cannot be done (unknown link, raw file or series...)."""


def parse_time(value: Any) -> datetime | None:
    """A time of day on a date, from DICOM DT / DA+TM text or ISO 8601; ``None`` otherwise.

    A date without a time is no time at all for linking (it would read as midnight and
    make a series "predate" its raw file by hours), so it gives ``None`` too.
    """
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    if "-" in text[:8] or "T" in text:  # ISO 8601 (raw headers)
        if "T" not in text and " " not in text:
            return None
        try:
            return datetime.fromisoformat(text).replace(tzinfo=None)
        except ValueError:
            return None
    digits = text.split(".")[0]
    digits = digits.split("+")[0].split("-")[0]
    if len(digits) < 12:  # YYYYMMDD without HHMM
        return None
    return dicom_datetime(text)


def _keys(value: Mapping[str, Any] | None) -> PatientKeys | None:
    if not value:
        return None
    keys = PatientKeys(id_key=value.get("id_key"), name_dob_key=value.get("name_dob_key"))
    return keys if (keys.id_key or keys.name_dob_key) else None


def raw_records(conn: Connection, shas: Iterable[str] | None = None) -> list[RawRecord]:
    """Engine records of the lake's raw objects (all, or those with the given sha256)."""
    r = model.raw_file
    if shas is None:
        rows = list(conn.execute(sa.select(r).order_by(r.c.id)))
    else:
        wanted = sorted(set(shas))
        rows = []
        for start in range(0, len(wanted), 900):  # bounded IN lists
            chunk = wanted[start : start + 900]
            rows.extend(conn.execute(sa.select(r).where(r.c.sha256.in_(chunk))))
        rows.sort(key=lambda row: row.id)
    out = []
    for row in rows:
        meta = row.meta or {}
        out.append(
            RawRecord(
                key=row.sha256,
                format=row.format,
                modality=meta.get("modality"),
                manufacturer=row.manufacturer,
                model=row.model,
                device_serial=row.device_serial,
                station_name=meta.get("station_name"),
                acquired_at=parse_time(row.acquired_at),
                study_uid=meta.get("study_instance_uid"),
                frame_of_reference_uid=meta.get("frame_of_reference_uid"),
                series_uids=frozenset(meta.get("series_instance_uids") or ()),
                referenced_sop_uids=frozenset(meta.get("referenced_sop_instance_uids") or ()),
                protocol_name=meta.get("protocol_name"),
                sequence_name=meta.get("sequence_name"),
                patient=_keys(meta.get("patient_keys")),
            )
        )
    return out


def _tags(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        return dict(json.loads(value))
    return dict(value or {})


def _first(value: Any) -> Any:
    if isinstance(value, list):
        return value[0] if value else None
    return value


def _series_time(
    first_acquisition: str | None,
    tags: Mapping[str, Any],
    study_date: str | None,
    study_time: str | None,
) -> datetime | None:
    for candidate in (
        first_acquisition,
        f"{_first(tags.get('SeriesDate')) or ''}{_first(tags.get('SeriesTime')) or ''}",
        f"{study_date or ''}{study_time or ''}",
    ):
        found = parse_time(candidate)
        if found is not None:
            return found
    return None


def series_records(
    conn: Connection,
    hasher: SeriesHasher | None,
    *,
    referenced_sops: Iterable[str] = (),
) -> list[SeriesRecord]:
    """Engine records of every series in the lake.

    ``sop_uids`` of a record holds only those of its instances that some raw header
    references (``referenced_sops``): that is all the rules need, and it keeps memory
    flat on a big lake.
    """
    se, st, su = model.series, model.study, model.subject
    ip, inst = model.image_parameters, model.instance
    first = (
        sa.select(
            inst.c.series_id,
            sa.func.min(inst.c.id).label("first_id"),
            # the earliest acquisition that has a time of day (a bare date is not one)
            sa.func.min(
                sa.case(
                    (sa.func.length(inst.c.acquisition_datetime) >= 12, inst.c.acquisition_datetime)
                )
            ).label("first_acq"),
        )
        .group_by(inst.c.series_id)
        .subquery()
    )
    rows = conn.execute(
        sa.select(
            se,
            st.c.study_instance_uid,
            st.c.study_date,
            st.c.study_time,
            su.c.patient_id,
            su.c.patient_name,
            su.c.birth_date,
            ip.c.protocol_name,
            ip.c.sequence_name,
            first.c.first_id,
            first.c.first_acq,
        )
        .join(st, st.c.id == se.c.study_id)
        .join(su, su.c.id == st.c.subject_id)
        .outerjoin(ip, ip.c.series_id == se.c.id)
        .outerjoin(first, first.c.series_id == se.c.id)
        .order_by(se.c.id)
    ).all()
    first_ids = [r.first_id for r in rows if r.first_id is not None]
    tags_by_id: dict[int, dict[str, Any]] = {}
    for start in range(0, len(first_ids), 900):
        chunk = first_ids[start : start + 900]
        for t in conn.execute(sa.select(inst.c.id, inst.c.tags).where(inst.c.id.in_(chunk))):
            tags_by_id[int(t.id)] = _tags(t.tags)
    wanted = list(set(referenced_sops))
    sops: dict[int, set[str]] = {}
    for start in range(0, len(wanted), 900):
        chunk = wanted[start : start + 900]
        for t in conn.execute(
            sa.select(inst.c.series_id, inst.c.sop_instance_uid).where(
                inst.c.sop_instance_uid.in_(chunk)
            )
        ):
            sops.setdefault(int(t.series_id), set()).add(t.sop_instance_uid)
    out = []
    for r in rows:
        tags = tags_by_id.get(r.first_id, {}) if r.first_id is not None else {}
        image_type = tags.get("ImageType")
        patient = hasher(r.patient_id, r.patient_name, r.birth_date) if hasher else None
        out.append(
            SeriesRecord(
                key=r.series_instance_uid,
                study_uid=r.study_instance_uid,
                frame_of_reference_uid=r.frame_of_reference_uid,
                modality=r.modality,
                manufacturer=r.manufacturer,
                model=r.model,
                device_serial=r.device_serial,
                station_name=r.station_name,
                acquired_at=_series_time(r.first_acq, tags, r.study_date, r.study_time),
                protocol_name=r.protocol_name or _first(tags.get("ProtocolName")),
                sequence_name=r.sequence_name or _first(tags.get("SequenceName")),
                series_description=r.series_description,
                derived=is_derived(image_type),
                localizer=is_localizer(image_type),
                sop_uids=frozenset(sops.get(int(r.id), ())),
                patient=patient,
            )
        )
    return out


@dataclass
class LinkSummary:
    """What one linking pass changed."""

    accepted: int = 0
    review: int = 0
    unchanged: int = 0
    kept_decisions: int = 0
    withdrawn: int = 0
    links: list[int] = field(default_factory=list)


def _ids(
    conn: Connection, table: sa.Table, key: sa.Column[Any], values: Iterable[str]
) -> dict[str, int]:
    wanted = list(set(values))
    out: dict[str, int] = {}
    for start in range(0, len(wanted), 900):
        chunk = wanted[start : start + 900]
        for row in conn.execute(sa.select(key, table.c.id).where(key.in_(chunk))):
            out[row[0]] = int(row[1])
    return out


def _evidence(proposal: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {
            "rule": e.rule,
            "weight": round(float(e.weight), 4),
            "detail": e.detail,
            "anchor": bool(e.anchor),
            "veto": bool(e.veto),
        }
        for e in proposal.evidence
    ]
    out.append(
        {"decision": proposal.decision, "reason": proposal.reason, "conflict": proposal.conflict}
    )
    return out


def apply_proposals(
    conn: Connection,
    proposals: Sequence[Any],
    *,
    raw_keys: Iterable[str],
    method: str = "rules",
) -> LinkSummary:
    """Write the engine's proposals for the raw objects ``raw_keys`` into ``link``.

    A link a person decided (accepted or rejected by someone other than the engine) is
    never changed; a rules link no longer proposed for these raw objects is withdrawn
    (deleted) unless a person decided it. Links of other methods (``recon``, ``manual``,
    ``emulator``) are left alone.
    """
    lk = model.link
    raw_ids = _ids(conn, model.raw_file, model.raw_file.c.sha256, raw_keys)
    series_ids = _ids(
        conn, model.series, model.series.c.series_instance_uid, (p.series_key for p in proposals)
    )
    existing = {}
    ids = list(raw_ids.values())
    for start in range(0, len(ids), 900):  # bounded IN lists (SQLite's variable limit)
        for r in conn.execute(sa.select(lk).where(lk.c.raw_id.in_(ids[start : start + 900]))):
            existing[(int(r.raw_id), int(r.series_id))] = r
    summary = LinkSummary()
    now = utcnow()
    seen: set[tuple[int, int]] = set()
    for p in proposals:
        raw_id, series_id = raw_ids.get(p.raw_key), series_ids.get(p.series_key)
        if raw_id is None or series_id is None:
            continue
        pair = (raw_id, series_id)
        seen.add(pair)
        status = "accepted" if p.decision == "accept" else "proposed"
        values = {
            "method": method,
            "confidence": float(p.confidence),
            "evidence": _evidence(p),
            "status": status,
            "decided_by": AUTO_USER if status == "accepted" else None,
            "decided_at": now if status == "accepted" else None,
        }
        old = existing.get(pair)
        if old is None:
            res = conn.execute(
                sa.insert(lk).values(raw_id=raw_id, series_id=series_id, created_at=now, **values)
            )
            summary.links.append(int(res.inserted_primary_key[0]))  # type: ignore[index]
        elif old.method != method or (old.decided_by and old.decided_by != AUTO_USER):
            summary.kept_decisions += 1
            summary.links.append(int(old.id))
            continue
        elif (old.status, round(old.confidence, 6)) == (status, round(float(p.confidence), 6)):
            summary.unchanged += 1
            summary.links.append(int(old.id))
            continue
        else:
            conn.execute(sa.update(lk).where(lk.c.id == old.id).values(**values))
            summary.links.append(int(old.id))
        if status == "accepted":
            summary.accepted += 1
        else:
            summary.review += 1
    for pair, old in existing.items():
        if pair in seen or old.method != method:
            continue
        if old.decided_by and old.decided_by != AUTO_USER:
            continue
        conn.execute(sa.delete(lk).where(lk.c.id == old.id))
        summary.withdrawn += 1
    return summary


def decide(
    conn: Connection, link_id: int, *, accept: bool, user: str, note: str | None = None
) -> dict[str, Any]:
    """Accept or reject a link (usually one waiting in review), recording who and when."""
    lk = model.link
    row = conn.execute(sa.select(lk).where(lk.c.id == link_id)).first()
    if row is None:
        raise LinkError(f"no link with id {link_id}")
    evidence = list(row.evidence or [])
    if note:
        evidence.append({"review_note": note, "by": user})
    status = "accepted" if accept else "rejected"
    conn.execute(
        sa.update(lk)
        .where(lk.c.id == link_id)
        .values(status=status, decided_by=user, decided_at=utcnow(), evidence=evidence)
    )
    raw = conn.execute(
        sa.select(model.raw_file.c.sha256).where(model.raw_file.c.id == row.raw_id)
    ).scalar_one()
    series = conn.execute(
        sa.select(model.series.c.series_instance_uid).where(model.series.c.id == row.series_id)
    ).scalar_one()
    return {
        "link_id": link_id,
        "status": status,
        "previous": row.status,
        "raw_sha256": raw,
        "series_instance_uid": series,
    }


def record_link(
    conn: Connection,
    raw_sha256: str,
    series_uid: str,
    *,
    method: str,
    user: str,
    evidence: Sequence[Mapping[str, Any]],
    confidence: float = 1.0,
) -> int:
    """Store an accepted link whose origin is certain (``recon``, ``manual``, ``emulator``)."""
    lk = model.link
    raw_id = conn.execute(
        sa.select(model.raw_file.c.id).where(model.raw_file.c.sha256 == raw_sha256)
    ).scalar()
    if raw_id is None:
        raise LinkError(f"no raw file sha256:{raw_sha256} in the lake")
    series_id = conn.execute(
        sa.select(model.series.c.id).where(model.series.c.series_instance_uid == series_uid)
    ).scalar()
    if series_id is None:
        raise LinkError(f"no series {series_uid} in the lake")
    now = utcnow()
    values = {
        "method": method,
        "confidence": confidence,
        "evidence": [dict(e) for e in evidence],
        "status": "accepted",
        "decided_by": user,
        "decided_at": now,
    }
    old = conn.execute(
        sa.select(lk.c.id, lk.c.status, lk.c.decided_by, lk.c.method).where(
            lk.c.raw_id == raw_id, lk.c.series_id == series_id
        )
    ).first()
    if old is not None:
        person = old.decided_by and old.decided_by != AUTO_USER
        if old.status == "rejected" and person and method != "manual":
            return int(old.id)  # a person rejected it: a re-run does not bring it back
        conn.execute(sa.update(lk).where(lk.c.id == old.id).values(**values))
        return int(old.id)
    res = conn.execute(
        sa.insert(lk).values(raw_id=raw_id, series_id=series_id, created_at=now, **values)
    )
    return int(res.inserted_primary_key[0])  # type: ignore[index]
