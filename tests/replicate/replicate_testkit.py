"""Helpers for the replicate tests (a uniquely named module; conftest holds the fixtures)."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path
from typing import Any

import fsspec

from imagelake.replicate import MasterKey, lake_files
from imagelake.replicate._remote import Remote


def tree_sha(root: Path) -> dict[str, str]:
    """sha256 of every file push copies, by lake-relative path."""
    return {rel: hashlib.sha256((root / rel).read_bytes()).hexdigest() for rel in lake_files(root)}


def registry_rows(db: Path) -> list[str]:
    """The registry's content as SQL, to compare a snapshot with its source."""
    con = sqlite3.connect(db)
    try:
        return list(con.iterdump())
    finally:
        con.close()


def remote_fs(url: str, opts: dict[str, Any]) -> tuple[Any, str]:
    fs, path = fsspec.core.url_to_fs(url, **opts)
    return fs, path.rstrip("/")


def remote_blobs(url: str, opts: dict[str, Any]) -> dict[str, bytes]:
    """Every stored object under ``url``: name relative to ``url`` → bytes."""
    fs, base = remote_fs(url, opts)
    return {p[len(base) + 1 :]: fs.cat_file(p) for p in fs.find(base)}


def object_name(url: str, opts: dict[str, Any], key: MasterKey, rel: str) -> str:
    """The stored name of lake file ``rel`` (absolute, in the remote file system's terms)."""
    remote = Remote(url, opts)
    remote.open(key)
    return remote.lfs.path(remote.object_name(rel))
