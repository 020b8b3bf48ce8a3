"""Read-only access to an encrypted remote lake through a local decrypting cache.

The cache folder holds *plaintext* lake files laid out as in the lake, so the ordinary
readers work on it: :func:`imagelake.index.query` on :attr:`RemoteLake.lakefs`,
:func:`imagelake.store.open_stack` on :meth:`RemoteLake.store_url`. Keep the cache on an
encrypted disk; :meth:`RemoteLake.clear` removes it.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd

from imagelake._fs import LakeFS, sha256_file
from imagelake.errors import QueryError
from imagelake.replicate._errors import ReplicateError
from imagelake.replicate._keys import MasterKey
from imagelake.replicate._remote import ObjectEntry, Remote
from imagelake.replicate._transfer import fetch_object, open_manifest

__all__ = ["RemoteLake", "open_remote"]

INDEX_PREFIX = "index/"


class RemoteLake:
    """An encrypted remote lake, read through a local cache. Use :func:`open_remote`."""

    def __init__(
        self, remote: Remote, manifest: dict[str, ObjectEntry], key: MasterKey, cache_dir: Path
    ) -> None:
        self._remote = remote
        self._manifest = manifest
        self._key = key
        self.cache_dir = cache_dir
        self._lock = threading.Lock()
        # file → (size, mtime, sha256) when its content last matched the manifest
        self._verified: dict[str, tuple[int, int, str]] = {}
        self._lakefs: LakeFS | None = None

    def __repr__(self) -> str:
        return f"RemoteLake({self._remote.url!r}, cache_dir={str(self.cache_dir)!r})"

    @property
    def url(self) -> str:
        return self._remote.url

    def refresh(self) -> None:
        """Re-read the remote manifest (after a new push); changed files are fetched again."""
        self._manifest = open_manifest(self._remote, self._key)
        self._lakefs = None

    def files(self, prefix: str = "") -> list[str]:
        """Lake-relative paths in the remote manifest (under ``prefix``)."""
        return sorted(p for p in self._manifest if p.startswith(prefix))

    def is_cached(self, rel: str) -> bool:
        """Whether ``rel`` is in the cache with the manifest's size and sha256."""
        entry = self._entry(rel)
        target = self.cache_dir / rel
        try:
            st = target.stat()
        except FileNotFoundError:
            return False
        stamp = (st.st_size, st.st_mtime_ns, entry.sha256)
        if self._verified.get(rel) == stamp:
            return True
        if st.st_size != entry.size or sha256_file(target) != entry.sha256:
            return False
        with self._lock:
            self._verified[rel] = stamp
        return True

    def fetch(self, rel: str) -> Path:
        """Local path of lake file ``rel``, downloading and decrypting it if not cached."""
        if not self.is_cached(rel):
            target = self.cache_dir / rel
            fetch_object(self._remote, self._entry(rel), target, self._key)
            st = target.stat()
            with self._lock:
                self._verified[rel] = (st.st_size, st.st_mtime_ns, self._entry(rel).sha256)
        return self.cache_dir / rel

    def prefetch(
        self,
        paths: Iterable[str] | None = None,
        *,
        query: Mapping[str, Any] | None = None,
        workers: int = 4,
    ) -> list[str]:
        """Download and decrypt ahead: the given files or folders, and/or what a query needs.

        Parameters
        ----------
        paths
            Lake-relative files or folder prefixes (``"stores/dicom/1.2.3"``).
        query
            Filters of :func:`imagelake.index.query`; every store of every series it
            returns is fetched (with the index files the query reads).

        Returns
        -------
        list of str
            The lake-relative files now in the cache for this request.
        """
        wanted: set[str] = set()
        for p in paths or ():
            wanted.update(self._expand(p))
        if query is not None:
            for store in self.query(query)["stores"]:
                for s in store:
                    wanted.update(self._expand(str(s)))
        ordered = sorted(wanted)
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            list(pool.map(self.fetch, ordered))
        return ordered

    @property
    def lakefs(self) -> LakeFS:
        """A :class:`LakeFS` on the cache folder, with the index files cached."""
        if self._lakefs is None:
            for rel in self.files(INDEX_PREFIX):
                self.fetch(rel)
            for rel in ("imagelake.json", "catalog.yaml"):
                if rel in self._manifest:
                    self.fetch(rel)
            self._lakefs = LakeFS(self.cache_dir)
        return self._lakefs

    def query(self, filters: Mapping[str, Any] | None = None, **kwargs: Any) -> pd.DataFrame:
        """:func:`imagelake.index.query` on the cached index (fetched on first use)."""
        from imagelake.index import query as index_query

        return index_query(self.lakefs, filters, **kwargs)

    def store_url(self, store_path: str) -> str:
        """Local path of a stack store, every file of it fetched (for ``open_stack``)."""
        files = self._expand(store_path)
        if not files:
            raise QueryError(f"no store {store_path!r} in the remote lake")
        for rel in files:
            self.fetch(rel)
        return str(self.cache_dir / store_path.rstrip("/"))

    def open_stack(self, store_path: str, **kwargs: Any) -> Any:
        """:func:`imagelake.store.open_stack` on the cached copy of a store."""
        from imagelake.store import open_stack

        return open_stack(self.store_url(store_path), **kwargs)

    def clear(self) -> None:
        """Delete the cache folder (plaintext)."""
        shutil.rmtree(self.cache_dir, ignore_errors=True)
        self._verified.clear()
        self._lakefs = None

    def _entry(self, rel: str) -> ObjectEntry:
        try:
            return self._manifest[rel]
        except KeyError:
            raise ReplicateError(f"no file {rel!r} in the remote lake at {self.url}") from None

    def _expand(self, p: str) -> list[str]:
        p = p.strip("/")
        if p in self._manifest:
            return [p]
        return self.files(p + "/")


def open_remote(
    url: str | os.PathLike[str],
    *,
    key: MasterKey,
    cache_dir: str | os.PathLike[str],
    storage_options: dict[str, Any] | None = None,
) -> RemoteLake:
    """Open an encrypted remote lake read-only, through a local decrypting cache.

    Reads and checks the manifest now; files are fetched on demand or by
    :meth:`RemoteLake.prefetch`. Once fetched, reading needs no network.

    Raises
    ------
    RemoteNotFoundError
        No finished push at ``url``.
    WrongKeyError
        ``key`` does not open the remote.
    """
    remote = Remote(url, storage_options)
    manifest = open_manifest(remote, key)
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    return RemoteLake(remote, manifest, key, cache)
