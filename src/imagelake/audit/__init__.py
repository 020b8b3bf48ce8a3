"""The lake's audit trail: append-only, hash-chained JSON lines in ``<lake>/audit/``.

Every action that changes a lake or reveals its data (ingest, anonymize, export, push, a
re-identification lookup...) is recorded as one line of ``audit/log.jsonl``::

    {"action":"ingest","details":{...},"hash":"9f2c…","objects":["series/1.2.3"],
     "prev":"41d0…","seq":17,"time":"2026-11-03T09:12:44.123456Z","user":"alice"}

``hash`` seals the entry: it is the sha256 of the entry's canonical JSON without ``hash``
(keys sorted, no spaces, UTF-8), and ``prev`` repeats the previous entry's hash (64 zeros
for the first), so each line vouches for everything before it (the provenance record that
21 CFR Part 11 and the HIPAA audit controls ask for). After each append the newest
``seq`` and ``hash`` are written atomically to the anchor ``audit/HEAD``.

What :meth:`AuditLog.verify` detects, naming the line:

* an edited line (its hash no longer matches its content);
* a removed, inserted, duplicated or reordered line (``seq`` is not the line number, or
  ``prev`` is not the hash of the line before);
* a line that is not a well-formed entry (bad JSON, missing or extra fields);
* a log cut short: lines removed from the end, so the log ends before the seq recorded in
  ``audit/HEAD``, or a half-written last line;
* lines appended behind the API's back when they do not chain (wrong ``prev``).

What it cannot detect:

* someone with write access who rewrites the whole chain from the first changed line on
  and rewrites ``audit/HEAD`` to match: sha256 is public, so anyone can recompute it. Set
  a secret key (``AuditLog(..., key=...)``, or ``IMAGELAKE_AUDIT_KEY`` through
  :meth:`AuditLog.from_env`) and every hash becomes an HMAC-SHA256 under that key, so a
  rewrite needs the key. Keep the key outside the lake (the lake may be shared) and use a
  long random value; a log is sealed with one key from its first line on;
* cutting lines off the end *and* rolling ``audit/HEAD`` back to an earlier state (a
  key does not help: the old anchor is a valid one). Compare the head against a copy kept
  elsewhere (a replica, the registry's job rows, a printed report) to close this gap;
* deleting the whole ``audit/`` folder, or a forged log when nobody verifies with the key.

Appends are fsynced and serialised between threads and between processes by an
``fcntl.flock`` on a sibling lock file (``audit/log.jsonl.lock``). On a lake that is not
on the local disk (an fsspec URL) there is no lock: one process must write the audit log
at a time (the single-writer assumption), and an append rewrites the whole object.

A record that would extend a broken tail (the log shorter than ``audit/HEAD``) is refused
with :class:`~imagelake.errors.AuditChainError`, because appending would hide the damage.
A half-written last line left by a crash is moved to ``audit/log.jsonl.torn`` before the
next append (the crash happened before ``audit/HEAD`` was updated, so nothing recorded
is lost).

Details must be JSON values and must never contain patient identifiers or key material:
name objects by UIDs, store keys or pseudonyms.
"""

from imagelake.audit._entry import (
    AUDIT_KEY_ENV,
    GENESIS,
    AuditEntry,
    AuditReport,
    canonical_json,
)
from imagelake.audit._log import AuditLog

__all__ = [
    "AUDIT_KEY_ENV",
    "GENESIS",
    "AuditEntry",
    "AuditLog",
    "AuditReport",
    "canonical_json",
]
