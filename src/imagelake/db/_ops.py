"""Write helpers shared by ingest and the knowledge base: get-or-create and alert upsert.

They run inside a caller's transaction (a :class:`sqlalchemy.engine.Connection`) so that
a whole ingest batch commits or rolls back as one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from imagelake import model
from imagelake.db._database import utcnow

__all__ = ["AlertUpsert", "ensure_project", "ensure_study", "ensure_subject", "upsert_alert"]


def _get_id(conn: Connection, table: sa.Table, **where: Any) -> int | None:
    cond = [table.c[k] == v for k, v in where.items()]
    row = conn.execute(sa.select(table.c.id).where(*cond)).first()
    return None if row is None else int(row[0])


def ensure_project(conn: Connection, name: str, description: str | None = None) -> int:
    """Id of project ``name``, created if missing."""
    found = _get_id(conn, model.project, name=name)
    if found is not None:
        return found
    res = conn.execute(
        sa.insert(model.project).values(name=name, description=description, created_at=utcnow())
    )
    return int(res.inserted_primary_key[0])  # type: ignore[index]


def ensure_subject(
    conn: Connection,
    project_id: int,
    patient_id: str,
    *,
    issuer: str = "",
    patient_name: str | None = None,
    birth_date: str | None = None,
    sex: str | None = None,
) -> int:
    """Id of the subject with this PatientID (and issuer) in the project, created if missing."""
    found = _get_id(
        conn, model.subject, project_id=project_id, patient_id=patient_id, issuer=issuer
    )
    if found is not None:
        return found
    res = conn.execute(
        sa.insert(model.subject).values(
            project_id=project_id,
            patient_id=patient_id,
            issuer=issuer,
            patient_name=patient_name,
            birth_date=birth_date,
            sex=sex,
            created_at=utcnow(),
        )
    )
    return int(res.inserted_primary_key[0])  # type: ignore[index]


def ensure_study(conn: Connection, subject_id: int, study_instance_uid: str, **values: Any) -> int:
    """Id of the study with this StudyInstanceUID, created if missing."""
    found = _get_id(conn, model.study, study_instance_uid=study_instance_uid)
    if found is not None:
        return found
    res = conn.execute(
        sa.insert(model.study).values(
            subject_id=subject_id,
            study_instance_uid=study_instance_uid,
            created_at=utcnow(),
            **values,
        )
    )
    return int(res.inserted_primary_key[0])  # type: ignore[index]


@dataclass(frozen=True)
class AlertUpsert:
    """What happened to an alert: ``created`` is True the first time its key is seen."""

    id: int
    created: bool
    count: int


def upsert_alert(
    conn: Connection,
    kind: str,
    key: str,
    message: str,
    *,
    details: dict[str, Any] | None = None,
    increment: int = 1,
) -> AlertUpsert:
    """Raise an alert once per ``(kind, key)``; later sightings bump its count and last_seen."""
    now = utcnow()
    row = conn.execute(
        sa.select(model.alert.c.id, model.alert.c.count).where(
            model.alert.c.kind == kind, model.alert.c.key == key
        )
    ).first()
    if row is None:
        res = conn.execute(
            sa.insert(model.alert).values(
                kind=kind,
                key=key,
                message=message,
                details=details or {},
                count=increment,
                first_seen=now,
                last_seen=now,
                status="open",
            )
        )
        return AlertUpsert(int(res.inserted_primary_key[0]), True, increment)  # type: ignore[index]
    count = int(row._mapping["count"]) + increment  # not row.count: that is tuple.count
    conn.execute(
        sa.update(model.alert).where(model.alert.c.id == row.id).values(count=count, last_seen=now)
    )
    return AlertUpsert(int(row.id), False, count)
