"""Opening HDF5 raw files (ISMRMRD, USTB UFF) read-only, with one clear error for bad ones."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from imagelake._optional import import_optional
from imagelake.formats._base import RawFormatError

__all__ = ["HDF5_MAGIC", "open_hdf5"]

#: the HDF5 signature (at offset 0 unless the file has a user block)
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


@contextmanager
def open_hdf5(path: str | os.PathLike[str], *, feature: str) -> Iterator[Any]:
    """An ``h5py.File`` opened read-only; a truncated or corrupt file is a RawFormatError.

    ``feature`` names what needs h5py, for the missing-extra message.
    """
    h5py = import_optional("h5py", extra="raw", feature=feature)
    p = os.fspath(path)
    if not os.path.exists(p):
        raise FileNotFoundError(f"{p}: no such file")
    try:
        h5 = h5py.File(p, "r")
    except OSError as exc:  # h5py says "truncated file" or "file signature not found"
        raise RawFormatError(
            f"{p}: not a readable HDF5 file (truncated or corrupt?): {exc}"
        ) from exc
    try:
        yield h5
    finally:
        h5.close()
