"""Inputs that could not be ingested: kept byte-exact with their reason, never dropped."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from imagelake import model
from imagelake._fs import LakeFS, sha256_file
from imagelake.db import utcnow

__all__ = ["QuarantineEntry", "quarantine"]


@dataclass(frozen=True)
class QuarantineEntry:
    """One quarantined input."""

    source: str
    reason: str
    error: str
    path: str
    sha256: str


def quarantine(
    lakefs: LakeFS,
    conn: Connection,
    *,
    data: bytes | None = None,
    path: str | None = None,
    source: str,
    name: str,
    error: str,
    reason: str,
    job_id: int | None,
) -> QuarantineEntry:
    """Copy ``data`` (or the file at ``path``, streamed: raw files can be gigabytes) to
    ``quarantine/<sha256>/`` with ``reason.json``, and register it.

    Idempotent: the same bytes quarantined again for the same reason add nothing.
    """
    if (data is None) == (path is None):
        raise ValueError("give exactly one of data= and path=")
    sha = hashlib.sha256(data).hexdigest() if data is not None else sha256_file(str(path))
    folder = f"quarantine/{sha}"
    safe_name = "".join(c if c.isalnum() or c in "._-" else "_" for c in name) or "input"
    if not lakefs.exists(f"{folder}/{safe_name}"):
        if data is not None:
            lakefs.write_atomic(f"{folder}/{safe_name}", data)
        else:
            lakefs.copy_in(str(path), f"{folder}/{safe_name}")
    entry = QuarantineEntry(source=source, reason=reason, error=error, path=folder, sha256=sha)
    reasons_rel = f"{folder}/reason.json"
    reasons = json.loads(lakefs.read_text(reasons_rel)) if lakefs.exists(reasons_rel) else []
    record = {"source": source, "file": safe_name, "error": error, "reason": reason}
    if record not in reasons:
        reasons.append(record)
        lakefs.write_atomic(reasons_rel, json.dumps(reasons, indent=1))
    exists = conn.execute(
        sa.select(model.quarantine.c.id).where(
            model.quarantine.c.sha256 == sha, model.quarantine.c.reason == reason
        )
    ).first()
    if exists is None:
        conn.execute(
            sa.insert(model.quarantine).values(
                job_id=job_id,
                source=source,
                sha256=sha,
                reason=reason,
                error=error,
                path=folder,
                quarantined_at=utcnow(),
            )
        )
    return entry
