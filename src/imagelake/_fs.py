"""The lake's file system: a root URL (local folder or any fsspec URL) and atomic writes.

Atomicity is what keeps a crash from leaving half-written files visible:

* a small file is written to a temporary name in the same folder, flushed and fsynced,
  then renamed over the target (``os.replace`` is atomic on POSIX); on object stores a
  single PUT is already atomic, so it is written directly;
* a directory tree (a Zarr store) is built under ``<root>/.tmp/`` and moved into place
  with one rename once complete (local), or copied then published by the registry
  commit that references it (object stores; see :mod:`imagelake.store`).
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import fsspec

__all__ = ["LakeFS", "fsync_dir", "sha256_file"]

_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a local file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """fsync a directory so a rename inside it survives a power loss."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _replace_via_tmp(target: str, write: Callable[[BinaryIO], object]) -> None:
    """Write a file beside ``target`` under a temporary name, fsync it, rename it over."""
    folder = os.path.dirname(target)
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(target)}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    fsync_dir(folder)


class LakeFS:
    """Paths relative to a lake root, over the local disk or fsspec.

    Parameters
    ----------
    root
        Local path or fsspec URL of the lake.
    storage_options
        Passed to fsspec for remote URLs.
    """

    def __init__(self, root: str | os.PathLike[str], **storage_options: Any) -> None:
        root = os.fspath(root)
        self.fs, path = fsspec.core.url_to_fs(root, **storage_options)
        self.protocol = (
            self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        )
        self.is_local = self.protocol in ("file", "local")
        self.root = os.path.abspath(path) if self.is_local else path.rstrip("/")
        self.storage_options = storage_options

    # -- naming -----------------------------------------------------------------------
    def path(self, rel: str) -> str:
        """Absolute path (in the file system's own terms) of ``rel``."""
        return f"{self.root}/{rel}" if rel else self.root

    def url(self, rel: str = "") -> str:
        """URL of ``rel`` that fsspec, zarr and xarray understand."""
        p = self.path(rel)
        return p if self.is_local else f"{self.protocol}://{p}"

    # -- queries ----------------------------------------------------------------------
    def exists(self, rel: str) -> bool:
        return bool(self.fs.exists(self.path(rel)))

    def ls(self, rel: str) -> list[str]:
        """Names (not paths) directly under ``rel``; empty if it does not exist."""
        p = self.path(rel)
        if not self.fs.exists(p):
            return []
        return sorted(os.path.basename(e.rstrip("/")) for e in self.fs.ls(p, detail=False))

    def walk_files(self, rel: str) -> Iterator[str]:
        """Every file below ``rel``, as paths relative to ``rel``."""
        base = self.path(rel)
        for found in sorted(self.fs.find(base)):
            yield found[len(base) :].lstrip("/")

    def size(self, rel: str) -> int:
        return int(self.fs.size(self.path(rel)))

    # -- reading ----------------------------------------------------------------------
    def read_bytes(self, rel: str) -> bytes:
        with self.fs.open(self.path(rel), "rb") as fh:
            data: bytes = fh.read()
        return data

    def read_text(self, rel: str) -> str:
        return self.read_bytes(rel).decode("utf-8")

    def open(self, rel: str, mode: str = "rb") -> Any:
        return self.fs.open(self.path(rel), mode)

    def sha256(self, rel: str) -> str:
        if self.is_local:
            return sha256_file(self.path(rel))
        h = hashlib.sha256()
        with self.fs.open(self.path(rel), "rb") as fh:
            while block := fh.read(_CHUNK):
                h.update(block)
        return h.hexdigest()

    # -- writing ----------------------------------------------------------------------
    def makedirs(self, rel: str) -> None:
        self.fs.makedirs(self.path(rel), exist_ok=True)

    def write_atomic(self, rel: str, data: bytes | str) -> None:
        """Write a whole file so readers see either the old or the new content."""
        payload = data.encode("utf-8") if isinstance(data, str) else data
        target = self.path(rel)
        if not self.is_local:
            self.fs.pipe_file(target, payload)
            return
        _replace_via_tmp(target, lambda fh: fh.write(payload))

    def publish_file(self, local_file: str, rel: str) -> None:
        """Move a finished local file to ``rel`` so readers see the old or the new file.

        Object stores: one PUT (atomic). Local lakes: fsync, then one rename (a copy to a
        temporary name beside the target first when the file is on another device).
        """
        target = self.path(rel)
        if not self.is_local:
            self.fs.put_file(local_file, target)
            return
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(local_file, "rb+") as fh:
            os.fsync(fh.fileno())
        try:
            os.replace(local_file, target)
            fsync_dir(os.path.dirname(target))
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            with open(local_file, "rb") as src:
                _replace_via_tmp(target, lambda fh: shutil.copyfileobj(src, fh))

    def copy_in(self, local_file: str, rel: str) -> None:
        """Copy a local file (left in place) to ``rel``, streamed, old-or-new for readers."""
        target = self.path(rel)
        if not self.is_local:
            self.fs.put_file(local_file, target)
            return
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(local_file, "rb") as src:
            _replace_via_tmp(target, lambda fh: shutil.copyfileobj(src, fh, 1 << 20))

    def append_line(self, rel: str, line: str) -> None:
        """Append one line durably (local files only: the audit log lives next to the lake)."""
        target = Path(self.path(rel))
        if not self.is_local:
            existing = self.read_bytes(rel) if self.exists(rel) else b""
            self.fs.pipe_file(str(target), existing + line.encode("utf-8") + b"\n")
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "ab") as fh:
            fh.write(line.encode("utf-8") + b"\n")
            fh.flush()
            os.fsync(fh.fileno())

    def tmp_dir(self, prefix: str = "") -> str:
        """A fresh relative path under ``.tmp/`` for building a tree before publishing it."""
        rel = f".tmp/{prefix}{uuid.uuid4().hex}"
        self.makedirs(rel)
        return rel

    def publish_dir(self, tmp_rel: str, final_rel: str) -> None:
        """Move a complete tree from ``tmp_rel`` to ``final_rel`` (which must not exist)."""
        src, dst = self.path(tmp_rel), self.path(final_rel)
        if self.is_local:
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            os.rename(src, dst)
            fsync_dir(os.path.dirname(dst))
        else:
            self.fs.mv(src, dst, recursive=True)

    def rm_tree(self, rel: str) -> None:
        p = self.path(rel)
        if self.is_local:
            shutil.rmtree(p, ignore_errors=True)
        elif self.fs.exists(p):
            self.fs.rm(p, recursive=True)

    def rm_file(self, rel: str) -> None:
        p = self.path(rel)
        if self.fs.exists(p):
            self.fs.rm_file(p)
