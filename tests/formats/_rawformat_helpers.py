"""Shared helpers of the raw-format tests (a uniquely named module, never ``conftest``)."""

from __future__ import annotations

import os
import random
import shutil
import struct
from pathlib import Path
from typing import NoReturn

import h5py
import numpy as np
import pytest


def missing(reason: str) -> NoReturn:
    """Skip locally, fail under ``CI=true`` (the policy of tests/conftest.py)."""
    __tracebackhide__ = True
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: a missing dependency fails the test)", pytrace=False)
    pytest.skip(reason)


def truncated_copy(src: Path, dest: Path, fraction: float) -> Path:
    """Copy the first ``fraction`` of ``src`` to ``dest``."""
    data = src.read_bytes()
    dest.write_bytes(data[: int(len(data) * fraction)])
    return dest


def garbled_copy(src: Path, dest: Path, start: int, length: int, seed: int = 0) -> Path:
    """Copy ``src`` with ``length`` random bytes overwriting it from ``start``."""
    data = bytearray(src.read_bytes())
    rng = random.Random(seed)
    data[start : start + length] = bytes(rng.randrange(256) for _ in range(length))
    dest.write_bytes(bytes(data))
    return dest


def patched_raid_length(src: Path, dest: Path, fraction: float) -> Path:
    """Truncate a VD/VE TWIX copy AND fix its raid header's length, so only the data is short."""
    data = src.read_bytes()
    cut = int(len(data) * fraction)
    out = bytearray(data[:cut])
    (off,) = struct.unpack_from("<Q", out, 8 + 8)
    struct.pack_into("<Q", out, 8 + 16, cut - off)
    dest.write_bytes(bytes(out))
    return dest


def plain_hdf5(dest: Path) -> Path:
    """An HDF5 file that is neither ISMRMRD nor UFF."""
    with h5py.File(dest, "w") as h5:
        h5.create_dataset("images", data=np.arange(100, dtype=np.int16).reshape(10, 10))
        h5.create_group("dataset").create_dataset("xml_not", data=[1, 2, 3])
    return dest


def copy_file(src: Path, dest: Path) -> Path:
    shutil.copyfile(src, dest)
    return dest


def multi_raid(first: Path, second: Path, dest: Path) -> Path:
    """A two-measurement VD/VE TWIX file made of the measurements of two real files."""
    entry = np.dtype(
        [("measId_", "<u4"), ("fileId_", "<u4"), ("off_", "<u8"), ("len_", "<u8"),
         ("patName_", "S64"), ("protName_", "S64")]
    )  # fmt: skip

    def measurement(path: Path) -> tuple[bytes, np.ndarray]:
        data = path.read_bytes()
        e = np.frombuffer(data[8 : 8 + entry.itemsize], dtype=entry)[0].copy()
        return data[int(e["off_"]) : int(e["off_"]) + int(e["len_"])], e

    (a, ea), (b, eb) = measurement(first), measurement(second)
    a_padded = a + b"\0" * (-len(a) % 512)
    ea["off_"], eb["off_"] = 10240, 10240 + len(a_padded)
    header = struct.pack("<II", 0, 2) + ea.tobytes() + eb.tobytes()
    dest.write_bytes(header + b"\0" * (10240 - len(header)) + a_padded + b)
    return dest
