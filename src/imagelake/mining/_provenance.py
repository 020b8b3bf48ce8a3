"""Provenance of derived measures, and their rows in the registry's ``measure`` table.

A measure's provenance key is the sha256 of the analysis name, its explicit version, the
hash of its code, its parameters, and the identity of the store it read (a stack's content
hash and manifest digest, a raw object's sha256). A run skips every target whose key is
already in the registry; a target whose input or analysis changed is recomputed, and its
earlier rows for that analysis are replaced (superseded, not duplicated; the job and the
audit log keep the history).

Each row records: ``tool`` (analysis name), ``tool_version`` (``version+codehash``),
``params``, ``inputs`` (store path, identity, stack number, function, code hash, job id),
``provenance_key``, ``user`` and ``created_at``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from imagelake import model
from imagelake.db import Database, utcnow
from imagelake.mining._analysis import Analysis
from imagelake.mining._selection import Target

__all__ = [
    "existing_keys",
    "finish_job",
    "measures_table",
    "provenance_key",
    "start_job",
    "stored_measures",
    "write_measures",
]

#: provenance keys compared per SQL statement
_IN_CHUNK = 500


def provenance_key(analysis: Analysis, params: Mapping[str, Any], target: Target) -> str:
    """sha256 of (analysis name, version, code hash, params, target kind and identity)."""
    doc = {
        "analysis": analysis.name,
        "version": analysis.version,
        "code": analysis.code_hash,
        "params": params,
        "kind": target.kind,
        "input": target.identity,
    }
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def existing_keys(db: Database, keys: Iterable[str]) -> set[str]:
    """The provenance keys among ``keys`` that the registry already holds measures for."""
    wanted = sorted(set(keys))
    found: set[str] = set()
    m = model.measure
    with db.connect() as conn:
        for start in range(0, len(wanted), _IN_CHUNK):
            chunk = wanted[start : start + _IN_CHUNK]
            found.update(
                r[0]
                for r in conn.execute(
                    sa.select(m.c.provenance_key).where(m.c.provenance_key.in_(chunk)).distinct()
                )
            )
    return found


def start_job(db: Database, user: str, params: Mapping[str, Any]) -> int:
    """A ``job`` row of kind ``mine``, status ``running``."""
    with db.begin() as conn:
        res = conn.execute(
            sa.insert(model.job).values(
                kind="mine",
                status="running",
                user=user,
                params=dict(params),
                summary={},
                started_at=utcnow(),
            )
        )
        return int(res.inserted_primary_key[0])  # type: ignore[index]


def finish_job(db: Database, job_id: int, status: str, summary: Mapping[str, Any]) -> None:
    with db.begin() as conn:
        conn.execute(
            sa.update(model.job)
            .where(model.job.c.id == job_id)
            .values(status=status, summary=dict(summary), finished_at=utcnow())
        )


def _target_filter(target: Target) -> Any:
    m = model.measure
    if target.kind == "raw":
        return m.c.raw_id == target.raw_id
    return m.c.series_id == target.series_id


def _same_stack(inputs: Any, target: Target) -> bool:
    if target.kind == "raw":
        return True
    data = inputs if isinstance(inputs, Mapping) else json.loads(inputs or "{}")
    return data.get("stack_number") == target.stack_number


def write_measures(
    conn: Connection,
    analysis: Analysis,
    params: Mapping[str, Any],
    target: Target,
    key: str,
    measures: Mapping[str, tuple[float | None, str, Any]],
    *,
    user: str,
    job_id: int | None,
) -> tuple[int, int]:
    """Replace ``target``'s rows of ``analysis`` with ``measures``, in ``conn``'s transaction.

    Returns (rows written, rows superseded). Rows already carrying ``key`` (another run
    wrote them meanwhile) are left alone and nothing is written.
    """
    m = model.measure
    old = conn.execute(
        sa.select(m.c.id, m.c.inputs, m.c.provenance_key).where(
            m.c.tool == analysis.name, _target_filter(target)
        )
    ).all()
    mine = [r for r in old if _same_stack(r.inputs, target)]
    if any(r.provenance_key == key for r in mine):
        return 0, 0
    if mine:
        conn.execute(sa.delete(m).where(m.c.id.in_([r.id for r in mine])))
    inputs: dict[str, Any] = {
        "kind": target.kind,
        "store_path": target.store_path,
        "identity": target.identity,
        "function": analysis.function,
        "code_hash": analysis.code_hash,
        "job_id": job_id,
    }
    if target.kind == "stack":
        content, _, manifest = target.identity.partition(":")
        inputs.update(
            stack_number=target.stack_number, content_hash=content, manifest_sha256=manifest
        )
    else:
        inputs["sha256"] = target.raw_sha256
    now = utcnow()
    rows = [
        {
            "series_id": target.series_id,
            "raw_id": target.raw_id,
            "name": name,
            "value": value,
            "unit": unit or None,
            "payload": payload,
            "tool": analysis.name,
            "tool_version": analysis.tool_version,
            "params": dict(params),
            "inputs": inputs,
            "provenance_key": key,
            "user": user,
            "created_at": now,
        }
        for name, (value, unit, payload) in measures.items()
    ]
    if rows:
        conn.execute(sa.insert(m), rows)
    return len(rows), len(mine)


def stored_measures(db: Database, keys: Sequence[str]) -> dict[str, dict[str, tuple[Any, ...]]]:
    """Measures in the registry by provenance key: name → (value, unit, payload, created_at)."""
    m = model.measure
    out: dict[str, dict[str, tuple[Any, ...]]] = {}
    wanted = sorted(set(keys))
    with db.connect() as conn:
        for start in range(0, len(wanted), _IN_CHUNK):
            chunk = wanted[start : start + _IN_CHUNK]
            for r in conn.execute(
                sa.select(
                    m.c.provenance_key, m.c.name, m.c.value, m.c.unit, m.c.payload, m.c.created_at
                ).where(m.c.provenance_key.in_(chunk))
            ):
                out.setdefault(r.provenance_key, {})[r.name] = (
                    r.value,
                    r.unit,
                    r.payload,
                    r.created_at,
                )
    return out


def measures_table(db: Database) -> pd.DataFrame:
    """Every measure row with its series UID or raw sha256 (for callers without an index)."""
    m, s, r = model.measure, model.series, model.raw_file
    sel = (
        sa.select(m, s.c.series_instance_uid, r.c.sha256.label("raw_sha256"))
        .select_from(m.outerjoin(s, m.c.series_id == s.c.id).outerjoin(r, m.c.raw_id == r.c.id))
        .order_by(m.c.id)
    )
    with db.connect() as conn:
        return pd.DataFrame(conn.execute(sel).mappings().all())
