"""The hash-chained audit log: appending under a lock, reading the tail, verifying the chain."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import json
import os
import posixpath
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

from imagelake._fs import LakeFS, fsync_dir
from imagelake.audit._entry import (
    AUDIT_KEY_ENV,
    ENTRY_FIELDS,
    GENESIS,
    AuditEntry,
    AuditReport,
    canonical_json,
    utc_iso,
)
from imagelake.errors import AuditChainError, ConfigError

try:  # fcntl is POSIX-only; without it appends are serialised within one process only
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["AuditLog"]

_BLOCK = 4096


class _Broken(Exception):
    """Internal: a verification problem at a line (becomes an AuditChainError or a report)."""

    def __init__(self, line: int | None, problem: str) -> None:
        super().__init__(problem)
        self.line = line
        self.problem = problem


@dataclass(frozen=True)
class _Head:
    seq: int
    hash: str
    size: int  # file size when this head was read or written: the cache's validity check
    ino: int | None


class AuditLog:
    """An append-only, hash-chained audit log inside a lake.

    Parameters
    ----------
    lakefs
        The lake's file system.
    rel
        Path of the log, relative to the lake root.
    key
        Secret key that turns every hash into an HMAC-SHA256 (see the package docstring);
        ``None`` for plain sha256. :meth:`from_env` reads it from ``IMAGELAKE_AUDIT_KEY``.
    anchor
        Path of the anchor file holding the newest seq and hash; default ``HEAD`` next to
        the log (give each log in one folder its own anchor).
    """

    def __init__(
        self,
        lakefs: LakeFS,
        rel: str = "audit/log.jsonl",
        *,
        key: bytes | None = None,
        anchor: str | None = None,
    ) -> None:
        if key is not None and not key:
            raise ConfigError("the audit key is empty; give a long random key or None")
        self.lakefs = lakefs
        self.rel = rel
        self.anchor = (
            anchor if anchor is not None else posixpath.join(posixpath.dirname(rel), "HEAD")
        )
        self._key = key
        self._lock = threading.Lock()
        self._head: _Head | None = None

    @classmethod
    def from_env(
        cls,
        lakefs: LakeFS,
        rel: str = "audit/log.jsonl",
        *,
        environ: Mapping[str, str] | None = None,
    ) -> AuditLog:
        """The log with the HMAC key from ``IMAGELAKE_AUDIT_KEY`` (UTF-8), if set and not empty."""
        value = (os.environ if environ is None else environ).get(AUDIT_KEY_ENV, "")
        return cls(lakefs, rel, key=value.encode("utf-8") if value else None)

    def __repr__(self) -> str:  # never shows the key
        mode = "hmac-sha256" if self._key else "sha256"
        return f"AuditLog({self.lakefs.url(self.rel)!r}, {mode})"

    @property
    def keyed(self) -> bool:
        """Whether hashes are HMACs under a secret key."""
        return self._key is not None

    # -- sealing ----------------------------------------------------------------------
    def _seal(self, body: Mapping[str, Any]) -> str:
        data = canonical_json(body).encode("utf-8")
        if self._key is None:
            return hashlib.sha256(data).hexdigest()
        return hmac.new(self._key, data, hashlib.sha256).hexdigest()

    def _check_entry(self, data: Any) -> tuple[int, str, str]:
        """``(seq, prev, hash)`` of a parsed line; raises ``ValueError`` saying what is wrong."""
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        if set(data) != ENTRY_FIELDS:
            missing, extra = sorted(ENTRY_FIELDS - set(data)), sorted(set(data) - ENTRY_FIELDS)
            raise ValueError(f"fields differ from an entry's (missing {missing}, extra {extra})")
        seq, prev, sealed = data["seq"], data["prev"], data["hash"]
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
            raise ValueError(f"seq {seq!r} is not a positive integer")
        if not isinstance(prev, str) or not isinstance(sealed, str):
            raise ValueError("prev and hash must be strings")
        body = {k: v for k, v in data.items() if k != "hash"}
        if not hmac.compare_digest(self._seal(body), sealed):
            hint = (
                "the line was edited, or the key is wrong"
                if self._key
                else f"the line was edited (or the log is sealed with a key: set {AUDIT_KEY_ENV})"
            )
            raise ValueError(f"hash mismatch: {hint}")
        return seq, prev, sealed

    # -- locking ----------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self, exclusive: bool = True) -> Iterator[None]:
        with self._lock:
            if not self.lakefs.is_local or fcntl is None:
                yield  # single-writer assumption (see the package docstring)
                return
            path = self.lakefs.path(self.rel) + ".lock"
            if exclusive:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            else:
                # A reader must not create files (the lake may be read-only); no lock file
                # means no writer has ever appended.
                try:
                    fd = os.open(path, os.O_RDONLY)
                except OSError:
                    yield
                    return
            try:
                # flock (not lockf): it binds to the open file, so it also excludes other
                # threads and other AuditLog objects of this process that opened the file.
                fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
                yield
            finally:
                os.close(fd)  # releases the lock

    # -- the anchor -------------------------------------------------------------------
    def _read_anchor(self) -> tuple[int, str] | None:
        if not self.lakefs.exists(self.anchor):
            return None
        try:
            data = json.loads(self.lakefs.read_text(self.anchor))
            seq, sealed = data["seq"], data["hash"]
            if not isinstance(seq, int) or not isinstance(sealed, str):
                raise TypeError
        except (ValueError, KeyError, TypeError) as exc:
            raise AuditChainError(f"{self.anchor} is not a valid anchor ({exc!r})") from exc
        return seq, sealed

    def _write_anchor(self, seq: int, sealed: str) -> None:
        self.lakefs.write_atomic(self.anchor, canonical_json({"seq": seq, "hash": sealed}) + "\n")

    # -- the tail ---------------------------------------------------------------------
    def _stat(self) -> tuple[int, int | None] | None:
        if self.lakefs.is_local:
            try:
                st = os.stat(self.lakefs.path(self.rel))
            except FileNotFoundError:
                return None
            return st.st_size, st.st_ino
        if not self.lakefs.exists(self.rel):
            return None
        return self.lakefs.size(self.rel), None

    def _read_tail(self, size: int) -> tuple[bytes | None, bytes]:
        """The last complete line (without its newline) and any unterminated fragment after it."""
        with self.lakefs.open(self.rel, "rb") as fh:
            pos, buf = size, b""
            # Two newlines bound the last complete line; stop as soon as both are in view.
            while pos > 0 and buf.count(b"\n") < 2:
                step = min(_BLOCK, pos)
                pos -= step
                fh.seek(pos)
                buf = fh.read(step) + buf
        cut = buf.rfind(b"\n")
        if cut < 0:
            return None, buf
        return buf[buf.rfind(b"\n", 0, cut) + 1 : cut], buf[cut + 1 :]

    def _current_head(self) -> _Head:
        """The newest entry, checked against the anchor; call with the lock held."""
        stat = self._stat()
        cached = self._head
        if cached is not None and stat is not None and (cached.size, cached.ino) == stat:
            return cached  # nobody appended since we last looked
        anchor = self._read_anchor()
        if stat is None or stat[0] == 0:
            if anchor is not None and anchor[0] > 0:
                raise AuditChainError(
                    f"{self.rel} is missing or empty but {self.anchor} records seq {anchor[0]}: "
                    "the log was deleted or truncated; refusing to start a new chain over it"
                )
            return _Head(0, GENESIS, 0, None if stat is None else stat[1])
        size, ino = stat
        last, fragment = self._read_tail(size)
        seq, sealed = 0, GENESIS
        if last is not None:
            try:
                seq, _prev, sealed = self._check_entry(json.loads(last.decode("utf-8")))
            except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
                raise AuditChainError(
                    f"{self.rel}: the last complete line is not a valid entry ({exc}); "
                    "run verify() to find the damage"
                ) from exc
        if anchor is not None and anchor[0] > seq:
            raise AuditChainError(
                f"{self.rel} ends at seq {seq} but {self.anchor} records seq {anchor[0]}: "
                "entries were removed from the end; refusing to append over the gap"
            )
        if anchor is not None and anchor[0] == seq and anchor[1] != sealed:
            raise AuditChainError(
                f"{self.rel}: the last entry (seq {seq}) does not match {self.anchor}"
            )
        if fragment:
            seq, sealed, size = self._settle_fragment(fragment, size, seq, sealed)
        return _Head(seq, sealed, size, ino)

    def _settle_fragment(
        self, fragment: bytes, size: int, seq: int, sealed: str
    ) -> tuple[int, str, int]:
        """Deal with an unterminated last line left by a crash; returns the new head and size."""
        try:
            data = json.loads(fragment.decode("utf-8"))
            f_seq, f_prev, f_hash = self._check_entry(data)
        except ValueError:
            pass
        else:
            if f_seq == seq + 1 and f_prev == sealed:
                # Complete but for its newline: the write got that far; finish it.
                self._append_bytes(b"\n")
                return f_seq, f_hash, size + 1
        if not self.lakefs.is_local:
            raise AuditChainError(f"{self.rel} ends with an incomplete line; repair it by hand")
        start = size - len(fragment)
        moved = {
            "offset": start,
            "fragment": fragment.decode("utf-8", "backslashreplace"),
            "moved_at": utc_iso(dt.datetime.now(dt.UTC)),
        }
        self.lakefs.append_line(self.rel + ".torn", canonical_json(moved))
        with open(self.lakefs.path(self.rel), "r+b") as fh:
            fh.truncate(start)
            fh.flush()
            os.fsync(fh.fileno())
        return seq, sealed, start

    def _append_bytes(self, payload: bytes) -> None:
        if not self.lakefs.is_local:
            existing = self.lakefs.read_bytes(self.rel) if self.lakefs.exists(self.rel) else b""
            self.lakefs.fs.pipe_file(self.lakefs.path(self.rel), existing + payload)
            return
        path = self.lakefs.path(self.rel)
        folder = os.path.dirname(path)
        created = not os.path.exists(path)
        os.makedirs(folder, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            fsync_dir(folder)

    # -- writing ----------------------------------------------------------------------
    def record(
        self,
        action: str,
        *,
        user: str,
        objects: Sequence[str] = (),
        details: Mapping[str, Any] | None = None,
    ) -> AuditEntry:
        """Append one entry and return it.

        Parameters
        ----------
        action
            What was done (``"ingest"``, ``"anonymize"``, ``"reidentify"``...).
        user
            Who did it.
        objects
            What it was done to: UIDs, store paths, URLs. Never patient identifiers.
        details
            JSON parameters of the action. Never patient identifiers or key material.

        Raises
        ------
        AuditChainError
            The log's tail is damaged (see :meth:`verify`); nothing is appended.
        TypeError, ValueError
            A bad argument: ``objects`` given as one string, details that are not JSON.
        """
        if not isinstance(action, str) or not action:
            raise ValueError("action must be a non-empty string")
        if not isinstance(user, str) or not user:
            raise ValueError("user must be a non-empty string")
        if isinstance(objects, str | bytes):
            raise TypeError("objects must be a sequence of strings, not one string; wrap it: [obj]")
        objs = [str(o) for o in objects]
        try:
            clean = json.loads(canonical_json(dict(details or {})))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"audit details must be JSON values: {exc}") from exc
        with self._locked():
            head = self._current_head()
            body = {
                "seq": head.seq + 1,
                "time": utc_iso(dt.datetime.now(dt.UTC)),
                "user": user,
                "action": action,
                "objects": objs,
                "details": clean,
                "prev": head.hash,
            }
            sealed = self._seal(body)
            line = (canonical_json({**body, "hash": sealed}) + "\n").encode("utf-8")
            # Drop the cache first: if the append or the anchor fails half-way, the next
            # call re-reads the file instead of trusting a stale head.
            self._head = None
            self._append_bytes(line)
            self._write_anchor(head.seq + 1, sealed)
            stat = self._stat()
            if stat is not None:
                self._head = _Head(head.seq + 1, sealed, *stat)
        return AuditEntry.from_json({**body, "hash": sealed})

    # -- reading ----------------------------------------------------------------------
    def _lines(self, fh: IO[bytes], limit: int | None) -> Iterator[tuple[int, bytes]]:
        read = 0
        for number, raw in enumerate(fh, start=1):
            if limit is not None and read >= limit:
                return
            read += len(raw)
            yield number, raw

    def entries(
        self, action: str | None = None, since: dt.datetime | str | None = None
    ) -> Iterator[AuditEntry]:
        """Entries in log order, optionally only one action and only at or after ``since``.

        This reads without verifying the chain (use :meth:`verify` for that): a line that is
        not an entry raises :class:`~imagelake.errors.AuditChainError`, an unterminated last
        line is skipped. A naive ``since`` is taken as UTC.
        """
        start = dt.datetime.fromisoformat(since) if isinstance(since, str) else since
        if start is not None and start.tzinfo is None:
            start = start.replace(tzinfo=dt.UTC)
        if not self.lakefs.exists(self.rel):
            return
        with self.lakefs.open(self.rel, "rb") as fh:
            for number, raw in self._lines(fh, None):
                if not raw.endswith(b"\n"):
                    return  # being appended right now, or torn by a crash (verify() says)
                try:
                    entry = AuditEntry.from_json(json.loads(raw.decode("utf-8")))
                except (ValueError, KeyError, TypeError) as exc:
                    raise AuditChainError(
                        f"{self.rel} line {number}: not an entry ({exc!r})"
                    ) from exc
                if action is not None and entry.action != action:
                    continue
                if start is not None and entry.time < start:
                    continue
                yield entry

    def verify(self, *, raise_error: bool = True) -> AuditReport:
        """Check the whole chain and the anchor.

        Parameters
        ----------
        raise_error
            Raise on the first problem (default); with ``False`` return a report whose
            ``ok`` is False and whose ``line`` and ``problem`` say what is wrong.

        Raises
        ------
        AuditChainError
            The chain is broken; the message names the line and what is wrong.
        """
        # Snapshot the size and the anchor together, so appends made while we read are
        # neither half-seen nor mistaken for tampering.
        with self._locked(exclusive=False):
            stat = self._stat()
            anchor = self._read_anchor()
        size = 0 if stat is None else stat[0]
        count, head = 0, GENESIS
        try:
            count, head = self._verify_lines(size, anchor)
            self._verify_anchor(count, anchor)
        except _Broken as broken:
            where = f" line {broken.line}" if broken.line is not None else ""
            if raise_error:
                raise AuditChainError(f"{self.rel}{where}: {broken.problem}") from None
            return AuditReport(
                self.rel,
                broken.line - 1 if broken.line else count,
                head,
                None if anchor is None else anchor[0],
                ok=False,
                line=broken.line,
                problem=broken.problem,
            )
        return AuditReport(self.rel, count, head, None if anchor is None else anchor[0])

    def _verify_lines(self, size: int, anchor: tuple[int, str] | None) -> tuple[int, str]:
        if size == 0:
            return 0, GENESIS
        prev = GENESIS
        count = 0
        with self.lakefs.open(self.rel, "rb") as fh:
            for number, raw in self._lines(fh, size):
                if not raw.endswith(b"\n"):
                    raise _Broken(
                        number,
                        "incomplete last line (no newline): a write cut short by a crash, "
                        "or the file was truncated",
                    )
                try:
                    seq, entry_prev, sealed = self._check_entry(json.loads(raw.decode("utf-8")))
                except ValueError as exc:
                    raise _Broken(number, f"not a valid entry: {exc}") from None
                if seq != number:
                    raise _Broken(number, self._explain_seq(number, seq, size))
                if entry_prev != prev:
                    raise _Broken(
                        number,
                        f"prev does not match the hash of line {number - 1}: an entry was "
                        "inserted or forged here, or the line before it was rewritten",
                    )
                prev, count = sealed, number
                if anchor is not None and anchor[0] == number and anchor[1] != sealed:
                    raise _Broken(number, f"the hash differs from the one in {self.anchor}")
        return count, prev

    def _explain_seq(self, number: int, seq: int, size: int) -> str:
        if seq < number:
            return f"seq {seq} where {number} was expected: lines were reordered or duplicated"
        # Seq jumped ahead: the missing entry is either later in the file (reordered) or gone.
        with self.lakefs.open(self.rel, "rb") as fh:
            for later, raw in self._lines(fh, size):
                if later <= number:
                    continue
                with contextlib.suppress(ValueError, AttributeError):
                    if json.loads(raw.decode("utf-8")).get("seq") == number:
                        return (
                            f"seq {seq} where {number} was expected; entry {number} is at "
                            f"line {later}: lines were reordered"
                        )
        return f"seq {seq} where {number} was expected: entries {number}..{seq - 1} were removed"

    def _verify_anchor(self, count: int, anchor: tuple[int, str] | None) -> None:
        if anchor is None:
            if count:
                raise _Broken(
                    None,
                    f"{self.anchor} is missing, so a cut-off end cannot be detected "
                    "(it was deleted, or the first append crashed before writing it)",
                )
            return
        anchored = anchor[0]
        if anchored > count:
            raise _Broken(
                count + 1,
                f"the log ends at seq {count} but {self.anchor} records seq {anchored}: "
                f"entries {count + 1}..{anchored} were removed from the end",
            )
        # One entry past the anchor is a crash between appending and updating the anchor;
        # more cannot come from this API.
        if count - anchored > 1:
            raise _Broken(
                anchored + 2,
                f"{count - anchored} entries after the seq in {self.anchor} ({anchored}): "
                "appended without the audit API",
            )
