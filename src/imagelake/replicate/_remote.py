"""The layout of an encrypted remote lake, over any fsspec URL.

::

    <url>/remote.ilk             sealed JSON: format, version, the object-naming key
    <url>/objects/ab/<hex>       one sealed object per lake file; the name is an HMAC of
                                 the lake-relative path, so paths (which hold UIDs) stay private
    <url>/journal/<run>-<n>.ilk  sealed batches of finished objects while a push runs
    <url>/manifest.ilk           sealed JSON listing every object; written last

Every object is sealed by :mod:`imagelake.replicate._envelope` with its *lake-relative*
path (``remote.ilk`` etc. for the bookkeeping objects) as associated data.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import posixpath
from dataclasses import asdict, dataclass
from typing import Any

from imagelake._fs import LakeFS
from imagelake.replicate._envelope import UnwrapError, seal_bytes, unseal_bytes
from imagelake.replicate._errors import (
    RemoteNotFoundError,
    RemoteUnavailableError,
    ReplicateError,
    TamperedObjectError,
    WrongKeyError,
)
from imagelake.replicate._keys import MasterKey

__all__ = ["MANIFEST", "REMOTE_INFO", "ObjectEntry", "Remote"]

REMOTE_INFO = "remote.ilk"
MANIFEST = "manifest.ilk"
JOURNAL = "journal"
OBJECTS = "objects"
FORMAT = "imagelake-encrypted-lake"
VERSION = 1
SMALL = 8 << 20
WRITE_BLOCK = 16 << 20
_BLOCK = 1 << 20
"""Objects up to this size are sealed in memory and moved in one request."""


@dataclass(frozen=True)
class ObjectEntry:
    """One lake file in the remote manifest."""

    path: str
    name: str
    size: int
    sha256: str
    cipher_size: int
    cipher_sha256: str

    @classmethod
    def from_json(cls, d: dict[str, Any], where: str) -> ObjectEntry:
        try:
            return cls(
                path=str(d["path"]),
                name=str(d["name"]),
                size=int(d["size"]),
                sha256=str(d["sha256"]),
                cipher_size=int(d["cipher_size"]),
                cipher_sha256=str(d["cipher_sha256"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise TamperedObjectError(where, "an entry is malformed") from exc


class Remote:
    """An encrypted remote lake at ``url``.

    Parameters
    ----------
    url
        Any fsspec URL (``s3://bucket/site-a``, a local folder, ``memory://x``...).
    storage_options
        fsspec options (for s3fs: ``key``, ``secret``, ``client_kwargs``...).
    """

    def __init__(
        self, url: str | os.PathLike[str], storage_options: dict[str, Any] | None = None
    ) -> None:
        self.url = os.fspath(url)
        self.lfs = LakeFS(url, **(storage_options or {}))
        self._naming_key: bytes | None = None

    # -- raw objects ------------------------------------------------------------------
    def exists(self, name: str) -> bool:
        try:
            return self.lfs.exists(name)
        except Exception as exc:
            raise self._unavailable("reach", exc) from exc

    def open_write(self, name: str) -> Any:
        if self.lfs.is_local:
            self.lfs.fs.makedirs(posixpath.dirname(self.lfs.path(name)), exist_ok=True)
        if self.lfs.is_local:
            return self.lfs.fs.open(self.lfs.path(name), "wb")
        # parts of 16 MiB keep memory flat (s3fs buffers 50 MiB per part by default)
        return self.lfs.fs.open(self.lfs.path(name), "wb", block_size=WRITE_BLOCK)

    def open_read(self, name: str) -> Any:
        try:
            return self.lfs.fs.open(self.lfs.path(name), "rb")
        except FileNotFoundError as exc:
            raise TamperedObjectError(name, "the object is missing") from exc
        except Exception as exc:
            raise self._unavailable("read from", exc) from exc

    def put(self, name: str, data: bytes) -> None:
        """Store a small object in one request (one PUT on object stores)."""
        try:
            if self.lfs.is_local:
                self.lfs.write_atomic(name, data)
            else:
                self.lfs.fs.pipe_file(self.lfs.path(name), data)
        except Exception as exc:
            raise self._unavailable("write to", exc) from exc

    def get(self, name: str) -> bytes:
        """Read a small object in one request."""
        try:
            return bytes(self.lfs.fs.cat_file(self.lfs.path(name)))
        except FileNotFoundError as exc:
            raise TamperedObjectError(name, "the object is missing") from exc
        except Exception as exc:
            raise self._unavailable("read from", exc) from exc

    def _unavailable(self, what: str, exc: Exception) -> RemoteUnavailableError:
        # the transport's message names the endpoint, never a lake path (names are HMACs)
        return RemoteUnavailableError(f"cannot {what} {self.url}: {type(exc).__name__}: {exc}")

    def cipher_sha256(self, name: str, size_hint: int = 0) -> tuple[str, int] | None:
        """sha256 and size of the stored bytes of ``name``, or ``None`` when absent.

        Objects up to ``SMALL`` bytes (by ``size_hint``) are read in one request.
        """
        if size_hint <= SMALL:
            try:
                data = self.get(name)
            except TamperedObjectError:
                return None
            return hashlib.sha256(data).hexdigest(), len(data)
        h = hashlib.sha256()
        size = 0
        try:
            with self.lfs.fs.open(self.lfs.path(name), "rb") as fh:
                while block := fh.read(_BLOCK):
                    h.update(block)
                    size += len(block)
        except FileNotFoundError:
            return None
        return h.hexdigest(), size

    def list_objects(self) -> list[str]:
        return (
            [f"{OBJECTS}/{p}" for p in self.lfs.walk_files(OBJECTS)] if self.exists(OBJECTS) else []
        )

    def remove(self, name: str) -> None:
        self.lfs.fs.rm(self.lfs.path(name))

    # -- sealed JSON ------------------------------------------------------------------
    def write_json(self, name: str, payload: dict[str, Any], key: MasterKey) -> None:
        self.put(name, seal_bytes(json.dumps(payload, sort_keys=True).encode(), path=name, key=key))

    def read_json(self, name: str, key: MasterKey) -> dict[str, Any]:
        blob = self.get(name)
        try:
            payload = json.loads(unseal_bytes(blob, path=name, key=key))
        except UnicodeDecodeError as exc:
            raise TamperedObjectError(name, "the content is not JSON") from exc
        except json.JSONDecodeError as exc:
            raise TamperedObjectError(name, "the content is not JSON") from exc
        if not isinstance(payload, dict):
            raise TamperedObjectError(name, "the content is not a JSON object")
        return payload

    # -- the remote's identity --------------------------------------------------------
    def open(self, key: MasterKey) -> None:
        """Read ``remote.ilk`` with ``key``; a key that does not open it is a wrong key."""
        if not self.exists(REMOTE_INFO):
            raise RemoteNotFoundError(f"no encrypted imagelake lake at {self.url}")
        try:
            info = self.read_json(REMOTE_INFO, key)
        except UnwrapError as exc:
            raise WrongKeyError(
                f"master key {key.key_id!r} does not open the encrypted lake at {self.url} "
                "(same key id, different key material)"
            ) from exc
        except WrongKeyError as exc:
            raise WrongKeyError(f"the encrypted lake at {self.url}: {exc}") from exc
        if info.get("format") != FORMAT or info.get("version") != VERSION:
            raise ReplicateError(f"{self.url} holds an unknown remote format")
        try:
            self._naming_key = bytes.fromhex(str(info["naming_key"]))
        except (KeyError, ValueError) as exc:
            raise TamperedObjectError(REMOTE_INFO, "it has no valid naming key") from exc

    def create(self, key: MasterKey) -> None:
        """Open the remote, or initialise an empty one."""
        if self.exists(REMOTE_INFO):
            self.open(key)
            return
        naming = os.urandom(32)
        self.write_json(
            REMOTE_INFO, {"format": FORMAT, "version": VERSION, "naming_key": naming.hex()}, key
        )
        self._naming_key = naming

    def rewrite_info(self, key: MasterKey) -> None:
        assert self._naming_key is not None
        self.write_json(
            REMOTE_INFO,
            {"format": FORMAT, "version": VERSION, "naming_key": self._naming_key.hex()},
            key,
        )

    def object_name(self, rel: str) -> str:
        """The stored name of lake file ``rel`` (keyed hash: reveals nothing of the path)."""
        if self._naming_key is None:
            raise ReplicateError("the remote is not open")
        digest = hmac.new(self._naming_key, rel.encode("utf-8"), hashlib.sha256).hexdigest()
        return f"{OBJECTS}/{digest[:2]}/{digest[2:]}"

    # -- manifest and journal ---------------------------------------------------------
    def load_manifest(self, key: MasterKey) -> dict[str, ObjectEntry] | None:
        if not self.exists(MANIFEST):
            return None
        return self._entries(self.read_json(MANIFEST, key), MANIFEST)

    def write_manifest(self, entries: dict[str, ObjectEntry], key: MasterKey) -> None:
        payload = {
            "format": FORMAT,
            "version": VERSION,
            "objects": [asdict(entries[p]) for p in sorted(entries)],
        }
        self.write_json(MANIFEST, payload, key)

    def journal_names(self) -> list[str]:
        if not self.exists(JOURNAL):
            return []
        return [f"{JOURNAL}/{p}" for p in self.lfs.walk_files(JOURNAL)]

    def load_journal(self, key: MasterKey) -> dict[str, ObjectEntry]:
        found: dict[str, ObjectEntry] = {}
        for name in self.journal_names():
            found.update(self._entries(self.read_json(name, key), name))
        return found

    def append_journal(
        self, entries: list[ObjectEntry], key: MasterKey, run_id: str, seq: int
    ) -> None:
        payload = {"objects": [asdict(e) for e in entries]}
        self.write_json(f"{JOURNAL}/{run_id}-{seq:06d}.ilk", payload, key)

    def clear_journal(self) -> None:
        for name in self.journal_names():
            self.remove(name)

    def _entries(self, payload: dict[str, Any], where: str) -> dict[str, ObjectEntry]:
        items = payload.get("objects")
        if not isinstance(items, list):
            raise TamperedObjectError(where, "it lists no objects")
        out: dict[str, ObjectEntry] = {}
        for item in items:
            if not isinstance(item, dict):
                raise TamperedObjectError(where, "an entry is malformed")
            e = ObjectEntry.from_json(item, where)
            out[e.path] = e
        return out
