"""Helpers shared by the synthetic-data tests."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pydicom

#: A dciodvfy message line: "Error - <message>" or "Warning - <message>".
_DCIODVFY_LINE = re.compile(r"^(Error|Warning)\s*-\s*(.*)$")


def dciodvfy_messages(tool: str, path: Path) -> dict[str, list[str]]:
    """Run dciodvfy on ``path``; its messages by level (``"Error"``, ``"Warning"``)."""
    proc = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=60)
    found: dict[str, list[str]] = {"Error": [], "Warning": []}
    for line in (proc.stdout + proc.stderr).splitlines():
        match = _DCIODVFY_LINE.match(line.strip())
        if match:
            found[match.group(1)].append(match.group(2))
    if proc.returncode != 0 and not found["Error"]:
        found["Error"].append(f"exit status {proc.returncode}: {proc.stderr.strip()[:200]}")
    return found


def hu(ds: pydicom.Dataset) -> np.ndarray:
    """Pixels in Hounsfield units."""
    return ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


def positions(datasets: list[pydicom.Dataset]) -> np.ndarray:
    """ImagePositionPatient of each instance, n × 3."""
    return np.array([[float(v) for v in ds.ImagePositionPatient] for ds in datasets])


def normal(ds: pydicom.Dataset) -> np.ndarray:
    """The slice normal (row direction × column direction)."""
    iop = [float(v) for v in ds.ImageOrientationPatient]
    return np.cross(iop[:3], iop[3:])
