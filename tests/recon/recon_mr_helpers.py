"""Test helpers for the MR reconstruction tests (own h5py reading, independent of formats)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from imagelake.formats import RawArray, RawContent, RawMeta


def debian_recon(tool: str, source: Path, work: Path) -> np.ndarray[Any, Any]:
    """Run ``ismrmrd_recon_cartesian_2d`` on a COPY (it writes into its input); (y, x) image."""
    copy = work / "for-debian-recon.h5"
    shutil.copyfile(source, copy)
    run = subprocess.run([tool, str(copy)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    with h5py.File(copy, "r") as f:
        images = [
            k for k in f["dataset"] if k not in ("data", "xml", "phantom", "csm", "coil_images")
        ]
        assert images == ["cpp"], images  # Debian 1.8 writes /dataset/cpp
        data = f["dataset/cpp/data"][...]
    assert data.shape[:3] == (1, 1, 1), data.shape
    return np.asarray(data[0, 0, 0], np.float64)


def phantom_truth(path: Path) -> np.ndarray[Any, Any]:
    """The generator's ground truth ``/dataset/phantom`` magnitude (y, x)."""
    with h5py.File(path, "r") as f:
        arr = np.asarray(f["dataset/phantom"][...])
    if arr.dtype.names:  # stored as a compound of real and imaginary parts
        arr = arr["real"] + 1j * arr["imag"]
    return np.abs(arr.reshape(arr.shape[-2:]))


def own_kspace_content(path: Path) -> RawContent:
    """A minimal ISMRMRD reader: last line wins, noise included (what the Debian tool does)."""
    with h5py.File(path, "r") as f:
        rec = f["dataset/data"][...]
        xml = f["dataset/xml"][0]
    head = rec["head"]
    nc = int(head["active_channels"][0])
    ns = int(head["number_of_samples"][0])
    e1 = head["idx"]["kspace_encode_step_1"]
    text = xml.decode() if isinstance(xml, bytes) else str(xml)

    def matrix(section: str) -> list[int]:
        block = text.split(f"<{section}>")[1].split("<matrixSize>")[1].split("</matrixSize>")[0]
        return [int(block.split(f"<{a}>")[1].split(f"</{a}>")[0]) for a in "xyz"]

    ey = matrix("encodedSpace")[1]
    k = np.zeros((nc, ey, ns), np.complex64)
    for i in range(rec.shape[0]):
        k[:, e1[i], :] = rec["data"][i].view(np.complex64).reshape(nc, ns)
    arr = RawArray(
        name="kspace",
        dims=("coil", "ky", "kx"),
        shape=k.shape,
        dtype=k.dtype,
        loader=lambda: k,
        attrs={"recon_matrix": matrix("reconSpace"), "encoded_matrix": matrix("encodedSpace")},
    )
    return RawContent(format="ismrmrd", meta=RawMeta(modality="MR"), arrays={"kspace": arr})
