"""push, pull and rotate: whole-lake copies to and from an encrypted remote."""

from __future__ import annotations

import hashlib
import io
import os
import sqlite3
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from imagelake._fs import fsync_dir, sha256_file
from imagelake.errors import ConfigError, LakeNotFoundError
from imagelake.replicate._envelope import (
    DEFAULT_SEGMENT_LOG2,
    read_header,
    rewrap_header,
    seal_stream,
    unseal_stream,
)
from imagelake.replicate._errors import (
    RemoteNotFoundError,
    ReplicateError,
    TamperedObjectError,
    WrongKeyError,
)
from imagelake.replicate._keys import MasterKey
from imagelake.replicate._remote import SMALL, ObjectEntry, Remote

__all__ = [
    "Progress",
    "PullReport",
    "PushReport",
    "RotateReport",
    "VerifyReport",
    "lake_files",
    "pull",
    "push",
    "rotate",
    "verify_remote",
]

Progress = Callable[[str, int, int], None]
"""``progress(path, done, total)`` after each object."""

REGISTRY = "registry.sqlite"
_BLOCK = 1 << 20
_SKIP_NAMES = {".lock", f"{REGISTRY}-wal", f"{REGISTRY}-shm", f"{REGISTRY}-journal"}


def _skipped(rel: str) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return (
        rel.startswith(".tmp/")
        or name in _SKIP_NAMES
        or name.endswith(".lock")
        or (name.startswith(".") and name.endswith(".tmp"))
    )


def lake_files(root: str | os.PathLike[str]) -> list[str]:
    """Lake-relative paths of every file a push copies (locks and temporary files left out)."""
    base = Path(root)
    out: list[str] = []
    for folder, _dirs, files in os.walk(base):
        for f in files:
            rel = (Path(folder) / f).relative_to(base).as_posix()
            if not _skipped(rel):
                out.append(rel)
    return sorted(out)


def _snapshot_registry(db: Path, target: Path) -> None:
    """A consistent copy of a live SQLite registry through SQLite's online backup API."""
    src = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()


@dataclass(frozen=True)
class PushReport:
    """What a :func:`push` did."""

    url: str
    objects: int
    uploaded: int
    skipped: int
    verified: int
    removed: int
    plain_bytes: int
    uploaded_bytes: int
    seconds: float
    registry_sha256: str | None

    @property
    def mb_per_s(self) -> float:
        """Plaintext throughput of the objects actually uploaded, in MB/s."""
        return self.uploaded_bytes / 1e6 / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:
        return (
            f"{self.objects} objects in {self.url}: {self.uploaded} uploaded "
            f"({self.uploaded_bytes / 1e6:.1f} MB), {self.skipped} already there, "
            f"{self.verified} verified, {self.removed} stale removed ({self.seconds:.1f} s)"
        )


@dataclass(frozen=True)
class PullReport:
    """What a :func:`pull` did."""

    objects: int
    written: int
    skipped: int
    plain_bytes: int
    seconds: float

    @property
    def mb_per_s(self) -> float:
        return self.plain_bytes / 1e6 / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:
        return (
            f"{self.objects} objects decrypted and verified: {self.written} written, "
            f"{self.skipped} already identical ({self.plain_bytes / 1e6:.1f} MB, "
            f"{self.seconds:.1f} s)"
        )


@dataclass(frozen=True)
class RotateReport:
    """What a :func:`rotate` did."""

    objects: int
    rewrapped: int
    already: int


class _Journal:
    """Finished objects, written to the remote in sealed batches so a re-run can skip them."""

    def __init__(self, remote: Remote, key: MasterKey, every: int) -> None:
        self.remote, self.key, self.every = remote, key, max(1, every)
        self.run_id = uuid.uuid4().hex[:12]
        self.pending: list[ObjectEntry] = []
        self.seq = 0
        self.lock = threading.Lock()

    def add(self, entry: ObjectEntry) -> None:
        with self.lock:
            self.pending.append(entry)
            if len(self.pending) >= self.every:
                self._flush()

    def flush(self) -> None:
        with self.lock:
            self._flush()

    def _flush(self) -> None:
        if self.pending:
            self.remote.append_journal(self.pending, self.key, self.run_id, self.seq)
            self.seq += 1
            self.pending = []


def _object_error(rel: str, exc: Exception) -> TamperedObjectError:
    if isinstance(exc, TamperedObjectError) and exc.path == rel:
        return exc
    if isinstance(exc, WrongKeyError):
        return TamperedObjectError(
            rel, "its header names another master key (edited key id, or an unfinished rotation)"
        )
    reason = str(exc).split(": ", 1)[-1] if isinstance(exc, TamperedObjectError) else repr(exc)
    return TamperedObjectError(rel, reason)


def push(
    src_root: str | os.PathLike[str],
    dest_url: str | os.PathLike[str],
    *,
    key: MasterKey,
    storage_options: dict[str, Any] | None = None,
    progress: Progress | None = None,
    verify: Literal["ciphertext", "decrypt"] = "ciphertext",
    workers: int = 4,
    journal_every: int = 16,
    segment_log2: int = DEFAULT_SEGMENT_LOG2,
) -> PushReport:
    """Copy a local lake to ``dest_url``, every file sealed client-side with ``key``.

    Resumable: objects a previous (even killed) run finished are in the remote journal or
    manifest, and are skipped when their stored bytes still hash to the recorded ciphertext
    sha256 and the local file is unchanged. The manifest is written last; objects no longer
    in the lake are then removed from the remote.

    Parameters
    ----------
    src_root
        Folder of a local lake.
    dest_url
        Any fsspec URL.
    key
        Master key that wraps the per-object data keys.
    storage_options
        fsspec options for ``dest_url``.
    progress
        Called as ``progress(path, done, total)`` after each object (sent or skipped).
    verify
        ``"ciphertext"``: re-read every uploaded object and compare its sha256;
        ``"decrypt"``: also decrypt it and compare the plaintext sha256.
    workers
        Objects sealed and uploaded at once.
    journal_every
        Objects per journal batch.

    Raises
    ------
    LakeNotFoundError
        ``src_root`` is not a lake.
    WrongKeyError
        The remote already exists under another master key.
    TamperedObjectError
        An object reads back differently after upload.
    """
    t0 = time.perf_counter()
    if verify not in ("ciphertext", "decrypt"):
        raise ConfigError(f"verify must be 'ciphertext' or 'decrypt', not {verify!r}")
    if not 10 <= segment_log2 <= 30:
        raise ConfigError(f"segment_log2 must be 10..30 (1 KiB..1 GiB), not {segment_log2!r}")
    root = Path(src_root)
    if not (root / "imagelake.json").is_file():
        raise LakeNotFoundError(f"no imagelake lake at {root}")
    remote = Remote(dest_url, storage_options)
    remote.create(key)
    known = remote.load_manifest(key) or {}
    known.update(remote.load_journal(key))

    with tempfile.TemporaryDirectory(prefix="imagelake-push-") as tmp:
        sources = {rel: root / rel for rel in lake_files(root)}
        registry_sha: str | None = None
        if REGISTRY in sources:
            snap = Path(tmp) / REGISTRY
            _snapshot_registry(root / REGISTRY, snap)
            sources[REGISTRY] = snap
            registry_sha = sha256_file(snap)
        total = len(sources)
        done = 0
        done_lock = threading.Lock()
        entries: dict[str, ObjectEntry] = {}
        to_send: list[str] = []

        def tick(rel: str) -> None:
            nonlocal done
            with done_lock:
                done += 1
                n = done
            if progress is not None:
                progress(rel, n, total)

        for rel, local in sources.items():
            prev = known.get(rel)
            if (
                prev is not None
                and prev.name == remote.object_name(rel)
                and prev.size == local.stat().st_size
                and prev.sha256 == sha256_file(local)
                and remote.cipher_sha256(prev.name, prev.cipher_size)
                == (prev.cipher_sha256, prev.cipher_size)
            ):
                entries[rel] = prev
                tick(rel)
            else:
                to_send.append(rel)

        journal = _Journal(remote, key, journal_every)

        def send(rel: str) -> ObjectEntry:
            name = remote.object_name(rel)
            with open(sources[rel], "rb") as src:
                if os.fstat(src.fileno()).st_size <= SMALL:
                    buf = io.BytesIO()
                    r = seal_stream(src, buf, path=rel, key=key, segment_log2=segment_log2)
                    remote.put(name, buf.getvalue())
                else:
                    with remote.open_write(name) as dst:
                        r = seal_stream(src, dst, path=rel, key=key, segment_log2=segment_log2)
            entry = ObjectEntry(
                rel, name, r.plain_size, r.plain_sha256, r.cipher_size, r.cipher_sha256
            )
            journal.add(entry)
            tick(rel)
            return entry

        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            sent = list(pool.map(send, to_send))
        journal.flush()
        uploaded_bytes = sum(e.size for e in sent)

        def check(entry: ObjectEntry) -> None:
            got: tuple[object, ...] | None
            want: tuple[object, ...]
            if verify == "decrypt":
                try:
                    with _reader(remote, entry) as fh:
                        r = unseal_stream(fh, None, path=entry.path, key=key)
                except (TamperedObjectError, WrongKeyError) as exc:
                    raise _object_error(entry.path, exc) from exc
                got = (r.cipher_sha256, r.cipher_size, r.plain_sha256)
                want = (entry.cipher_sha256, entry.cipher_size, entry.sha256)
            else:
                got = remote.cipher_sha256(entry.name, entry.cipher_size)
                want = (entry.cipher_sha256, entry.cipher_size)
            if got != want:
                raise TamperedObjectError(entry.path, "it reads back differently after upload")

        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            list(pool.map(check, sent))
        entries.update({e.path: e for e in sent})

    remote.write_manifest(entries, key)
    remote.clear_journal()
    live = {e.name for e in entries.values()}
    stale = [n for n in remote.list_objects() if n not in live]
    for name in stale:
        remote.remove(name)
    return PushReport(
        url=os.fspath(dest_url),
        objects=len(entries),
        uploaded=len(sent),
        skipped=len(entries) - len(sent),
        verified=len(entries),
        removed=len(stale),
        plain_bytes=sum(e.size for e in entries.values()),
        uploaded_bytes=uploaded_bytes,
        seconds=time.perf_counter() - t0,
        registry_sha256=registry_sha,
    )


def open_manifest(remote: Remote, key: MasterKey) -> dict[str, ObjectEntry]:
    """Open ``remote`` with ``key`` and read its manifest (no manifest: no finished push)."""
    remote.open(key)
    manifest = remote.load_manifest(key)
    if manifest is None:
        raise RemoteNotFoundError(
            f"{remote.url} has no manifest: no push to it has finished; run push again"
        )
    return manifest


def _reader(remote: Remote, entry: ObjectEntry) -> Any:
    """A read handle on a stored object: small ones come in one request."""
    if entry.cipher_size <= SMALL:
        return io.BytesIO(remote.get(entry.name))
    return remote.open_read(entry.name)


def fetch_object(remote: Remote, entry: ObjectEntry, target: Path, key: MasterKey) -> None:
    """Decrypt one object to ``target`` (atomically), checking it against the manifest."""
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        try:
            with _reader(remote, entry) as src, open(part, "wb") as dst:
                r = unseal_stream(src, dst, path=entry.path, key=key)
                dst.flush()
                os.fsync(dst.fileno())
        except (TamperedObjectError, WrongKeyError) as exc:
            raise _object_error(entry.path, exc) from exc
        if (r.plain_sha256, r.plain_size) != (entry.sha256, entry.size) or (
            r.cipher_sha256 != entry.cipher_sha256
        ):
            raise TamperedObjectError(entry.path, "it differs from the manifest's sha256")
        os.replace(part, target)
    finally:
        if part.exists():
            part.unlink()


def pull(
    src_url: str | os.PathLike[str],
    dest_root: str | os.PathLike[str],
    *,
    key: MasterKey,
    storage_options: dict[str, Any] | None = None,
    progress: Progress | None = None,
    workers: int = 4,
) -> PullReport:
    """Decrypt an encrypted remote lake into ``dest_root``, byte-identical to what was pushed.

    Files already in ``dest_root`` with the manifest's sha256 are kept (a pull resumes too);
    a ``dest_root`` holding files the remote does not have (another lake) is refused.

    Raises
    ------
    RemoteNotFoundError
        No finished push at ``src_url``.
    ReplicateError
        ``dest_root`` holds files that are not in the remote.
    WrongKeyError
        ``key`` is not the remote's master key (the message names the key ids).
    TamperedObjectError
        An object fails authentication or its hash; names the object's lake path.
    """
    t0 = time.perf_counter()
    remote = Remote(src_url, storage_options)
    manifest = open_manifest(remote, key)
    dest = Path(dest_root)
    foreign = sorted(set(lake_files(dest)) - set(manifest)) if dest.is_dir() else []
    if foreign:
        raise ReplicateError(
            f"{dest} holds {len(foreign)} file(s) that are not in the remote lake (e.g. "
            f"{foreign[0]!r}); pull into an empty folder or an earlier pull of this remote"
        )
    dest.mkdir(parents=True, exist_ok=True)
    total = len(manifest)
    counter = {"done": 0, "written": 0}
    lock = threading.Lock()

    def one(entry: ObjectEntry) -> None:
        target = dest / entry.path
        if not (
            target.is_file()
            and target.stat().st_size == entry.size
            and sha256_file(target) == entry.sha256
        ):
            fetch_object(remote, entry, target, key)
            with lock:
                counter["written"] += 1
        with lock:
            counter["done"] += 1
            n = counter["done"]
        if progress is not None:
            progress(entry.path, n, total)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        list(pool.map(one, manifest.values()))
    fsync_dir(dest)
    return PullReport(
        objects=total,
        written=counter["written"],
        skipped=total - counter["written"],
        plain_bytes=sum(e.size for e in manifest.values()),
        seconds=time.perf_counter() - t0,
    )


@dataclass(frozen=True)
class VerifyReport:
    """What a :func:`verify_remote` checked."""

    objects: int
    cipher_bytes: int
    decrypted: bool
    seconds: float


def verify_remote(
    url: str | os.PathLike[str],
    *,
    key: MasterKey,
    storage_options: dict[str, Any] | None = None,
    decrypt: bool = False,
    workers: int = 4,
) -> VerifyReport:
    """Check every object of an encrypted remote against its manifest.

    ``decrypt=False`` compares each stored object's sha256 with the manifest (no key use
    beyond the manifest); ``decrypt=True`` also authenticates every segment and compares
    the plaintext sha256.

    Raises
    ------
    TamperedObjectError
        The first object that differs; names its lake path.
    """
    t0 = time.perf_counter()
    remote = Remote(url, storage_options)
    manifest = open_manifest(remote, key)

    def one(entry: ObjectEntry) -> None:
        if decrypt:
            try:
                with _reader(remote, entry) as fh:
                    r = unseal_stream(fh, None, path=entry.path, key=key)
            except (TamperedObjectError, WrongKeyError) as exc:
                raise _object_error(entry.path, exc) from exc
            ok = (r.cipher_sha256, r.cipher_size, r.plain_sha256, r.plain_size) == (
                entry.cipher_sha256,
                entry.cipher_size,
                entry.sha256,
                entry.size,
            )
        else:
            got = remote.cipher_sha256(entry.name, entry.cipher_size)
            if got is None:
                raise TamperedObjectError(entry.path, "the object is missing")
            ok = got == (entry.cipher_sha256, entry.cipher_size)
        if not ok:
            raise TamperedObjectError(entry.path, "it differs from the manifest's sha256")

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        list(pool.map(one, manifest.values()))
    return VerifyReport(
        objects=len(manifest),
        cipher_bytes=sum(e.cipher_size for e in manifest.values()),
        decrypted=decrypt,
        seconds=time.perf_counter() - t0,
    )


def _open_either(remote: Remote, keys: Iterable[MasterKey]) -> MasterKey:
    errors: list[WrongKeyError] = []
    for k in keys:
        try:
            remote.open(k)
            return k
        except WrongKeyError as exc:
            errors.append(exc)
    raise errors[0]


def rotate(
    url: str | os.PathLike[str],
    old_key: MasterKey,
    new_key: MasterKey,
    *,
    storage_options: dict[str, Any] | None = None,
    workers: int = 4,
) -> RotateReport:
    """Rewrap every object's data key from ``old_key`` to ``new_key``; bodies are not touched.

    Each object is rewritten with its new header (small ones in one PUT, large ones through
    a temporary name moved over the old one),
    then the manifest and ``remote.ilk`` are sealed with ``new_key``. An interrupted
    rotation can be run again: objects already under ``new_key`` are left as they are.
    """
    if old_key.key_id == new_key.key_id:
        raise ReplicateError("the new master key needs a key id of its own")
    remote = Remote(url, storage_options)
    info_key = _open_either(remote, [old_key, new_key])
    if remote.journal_names():
        raise ReplicateError(f"a push to {url} is unfinished; run push again before rotating")
    try:
        manifest = remote.load_manifest(old_key)
    except WrongKeyError:
        manifest = remote.load_manifest(new_key)
    if manifest is None:
        raise RemoteNotFoundError(f"{url} has no manifest: no push to it has finished")

    def one(entry: ObjectEntry) -> tuple[ObjectEntry, bool]:
        rel = entry.path
        try:
            with _reader(remote, entry) as fh:
                header = read_header(fh, rel)
                if header.key_id == new_key.key_id:
                    # done by an interrupted run: keep it, with its current hash
                    h = hashlib.sha256(header.to_bytes())
                    size = header.length
                    while block := fh.read(_BLOCK):
                        h.update(block)
                        size += len(block)
                    return replace(entry, cipher_sha256=h.hexdigest(), cipher_size=size), False
                new_header = rewrap_header(header, path=rel, old_key=old_key, new_key=new_key)
                h = hashlib.sha256(new_header)
                size = len(new_header)
                if entry.cipher_size <= SMALL:
                    body = fh.read()
                    h.update(body)
                    size += len(body)
                    # one PUT replaces an object atomically; a local file is renamed over
                    remote.put(entry.name, new_header + body)
                else:
                    tmp_name = f"{entry.name}.rotating"
                    with remote.open_write(tmp_name) as out:
                        out.write(new_header)
                        while block := fh.read(_BLOCK):
                            out.write(block)
                            h.update(block)
                            size += len(block)
                    remote.lfs.fs.mv(remote.lfs.path(tmp_name), remote.lfs.path(entry.name))
        except (TamperedObjectError, WrongKeyError) as exc:
            raise _object_error(rel, exc) from exc
        return replace(entry, cipher_sha256=h.hexdigest(), cipher_size=size), True

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(pool.map(one, manifest.values()))
    updated = {e.path: e for e, _ in results}
    rewrapped = sum(1 for _, done in results if done)
    already = len(results) - rewrapped
    remote.write_manifest(updated, new_key)
    if info_key.key_id != new_key.key_id:
        remote.rewrite_info(new_key)

    return RotateReport(objects=len(manifest), rewrapped=rewrapped, already=already)
