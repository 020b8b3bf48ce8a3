"""Audit entries: their canonical JSON, their fields, and the verification report."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "AUDIT_KEY_ENV",
    "ENTRY_FIELDS",
    "GENESIS",
    "AuditEntry",
    "AuditReport",
    "canonical_json",
    "utc_iso",
]

#: ``prev`` of the first entry.
GENESIS = "0" * 64
#: Environment variable read by :meth:`AuditLog.from_env` for the HMAC key.
AUDIT_KEY_ENV = "IMAGELAKE_AUDIT_KEY"

#: The fields of every log line.
ENTRY_FIELDS = frozenset({"seq", "time", "user", "action", "objects", "details", "prev", "hash"})


def canonical_json(value: Any) -> str:
    """The canonical JSON text that audit hashes are computed over.

    Keys sorted, no spaces, non-ASCII kept as UTF-8, NaN and infinities refused.

    Raises
    ------
    TypeError
        ``value`` holds something that is not a JSON value.
    ValueError
        ``value`` holds a NaN or an infinity.
    """
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def utc_iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class AuditEntry:
    """One line of the audit log.

    Attributes
    ----------
    seq
        Position in the log, from 1, equal to the line number.
    time
        When the entry was recorded (timezone-aware, UTC).
    user
        Who acted.
    action
        What was done, a short verb-like name (``"ingest"``, ``"anonymize"``...).
    objects
        What it was done to (series UIDs, store paths, lake URLs...).
    details
        Free-form JSON parameters of the action.
    prev
        Hash of the previous entry (:data:`GENESIS` for the first).
    hash
        The entry's own seal (sha256, or HMAC-SHA256 under the log's key).
    """

    seq: int
    time: dt.datetime
    user: str
    action: str
    objects: tuple[str, ...]
    details: Mapping[str, Any] = field(default_factory=dict)
    prev: str = GENESIS
    hash: str = ""

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AuditEntry:
        """Entry from a parsed log line (raises ``KeyError``/``TypeError``/``ValueError``)."""
        return cls(
            seq=int(data["seq"]),
            time=dt.datetime.fromisoformat(data["time"]),
            user=data["user"],
            action=data["action"],
            objects=tuple(data["objects"]),
            details=dict(data["details"]),
            prev=data["prev"],
            hash=data["hash"],
        )


@dataclass(frozen=True)
class AuditReport:
    """Outcome of :meth:`AuditLog.verify`.

    Attributes
    ----------
    path
        The log verified (relative to the lake).
    entries
        Entries checked (up to the first problem).
    head
        Hash of the last good entry (:data:`GENESIS` for an empty log).
    anchored_seq
        The seq recorded in ``audit/HEAD`` (``None`` when there is no anchor).
    ok
        Whether the whole chain verified.
    line
        Line number of the first problem, if any and if it has one.
    problem
        What is wrong, if anything.
    """

    path: str
    entries: int
    head: str
    anchored_seq: int | None
    ok: bool = True
    line: int | None = None
    problem: str | None = None

    def __str__(self) -> str:
        if self.ok:
            anchor = f", anchored at entry {self.anchored_seq}" if self.anchored_seq else ""
            return f"audit log {self.path}: {self.entries} entries, chain intact{anchor}"
        where = f" at line {self.line}" if self.line else ""
        return f"audit log {self.path}: BROKEN{where}: {self.problem}"
