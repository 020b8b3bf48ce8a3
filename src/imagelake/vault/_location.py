"""Refuse key files and vaults inside a lake: identities and keys must live elsewhere."""

from __future__ import annotations

import posixpath
from typing import Any

__all__ = ["LAKE_MARKERS", "enclosing_lake"]

# the files that make a folder a lake (imagelake.lake's marker and the default registry)
LAKE_MARKERS = ("imagelake.json", "registry.sqlite")


def enclosing_lake(fs: Any, path: str) -> str | None:
    """The folder at or above ``path`` that holds a lake marker, or ``None``.

    Parameters
    ----------
    fs
        An fsspec file system (local or remote).
    path
        A path in that file system's own terms (absolute for the local disk).
    """
    current = path.rstrip("/") or "/"
    seen: set[str] = set()
    while current not in seen:
        seen.add(current)
        for marker in LAKE_MARKERS:
            try:
                if fs.isfile(posixpath.join(current, marker)):
                    return current
            except (OSError, ValueError):  # an unreadable parent, a bucket we may not list
                continue
        parent = posixpath.dirname(current)
        if not parent or parent == current:
            break
        current = parent
    return None
