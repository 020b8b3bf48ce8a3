"""A writer lock for a vault: ``fcntl.flock`` on a lock file, between threads and processes.

A local vault locks ``<vault>/.lock``. A vault at a remote fsspec URL locks a file in the
local temporary folder named after the URL's hash, which serialises writers on one host
only: writers on several hosts must not share a remote vault (single-writer assumption).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["lock_path_for", "locked"]


def lock_path_for(url: str, local_root: str | None) -> str:
    """The lock file of the vault at ``url`` (``local_root`` for a vault on the local disk)."""
    if local_root is not None:
        return os.path.join(local_root, ".lock")
    digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:24]
    return os.path.join(tempfile.gettempdir(), f"imagelake-vault-{digest}.lock")


@contextmanager
def locked(lock_file: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_file`` (created if missing) for the block."""
    os.makedirs(os.path.dirname(lock_file), exist_ok=True)
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
