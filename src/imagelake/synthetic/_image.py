"""Geometry and pixel helpers shared by the synthetic series, localizers and bad inputs."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import MappingProxyType
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset

from imagelake.errors import ConfigError

__all__ = [
    "ORIENTATIONS",
    "Vector",
    "centred_position",
    "check",
    "check_grid",
    "ds_str",
    "plane_coordinates",
    "prefetched",
    "set_pixel_data",
    "set_pixel_module",
    "set_plane",
    "to_stored_ct",
    "uid_int",
]

_T = TypeVar("_T")

#: A point or direction in patient coordinates.
Vector = Sequence[float] | npt.NDArray[Any]

#: ImageOrientationPatient (row direction, column direction) of the named planes.
ORIENTATIONS: Mapping[str, tuple[float, float, float, float, float, float]] = MappingProxyType(
    {
        "axial": (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
        "coronal": (1.0, 0.0, 0.0, 0.0, 0.0, -1.0),
        "sagittal": (0.0, 1.0, 0.0, 0.0, 0.0, -1.0),
    }
)


def ds_str(value: float) -> str:
    """A DS string of at most 16 characters."""
    text = f"{value:.10g}"
    return "0" if text == "-0" else text


def prefetched(make: Callable[[int], _T], n: int, depth: int = 2) -> Iterator[_T]:
    """``make(0)`` ... ``make(n - 1)``, computed in order on a worker thread ahead of the caller.

    NumPy releases the GIL while it renders and filters, so a slice's pixels are computed
    while the caller builds and writes the previous slice's header. One worker keeps the
    random draws in order: the output stays deterministic.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="imagelake-synthetic") as pool:
        pending = deque(pool.submit(make, k) for k in range(min(depth, n)))
        for k in range(n):
            result = pending.popleft().result()
            if k + depth < n:
                pending.append(pool.submit(make, k + depth))
            yield result


def uid_int(uid: str) -> int:
    """A 64-bit integer from a UID, to seed per-series randomness."""
    return int(uid.replace(".", "")[-18:]) % 2**63


def check(condition: bool, message: str) -> None:
    """Raise :class:`~imagelake.errors.ConfigError` with ``message`` unless ``condition``."""
    if not condition:
        raise ConfigError(message)


def check_grid(n_slices: int, rows: int, cols: int, thickness: float, spacing: float) -> None:
    """Refuse sizes and distances no series can have."""
    check(n_slices >= 1, f"n_slices must be >= 1, got {n_slices}")
    check(rows >= 8 and cols >= 8, f"rows and cols must be >= 8, got {rows}×{cols}")
    check(thickness > 0, f"slice_thickness must be > 0, got {thickness}")
    check(spacing > 0, f"spacing must be > 0, got {spacing}")


def set_pixel_module(
    ds: Dataset, shape: tuple[int, int], *, signed: bool, bits_stored: int
) -> None:
    """Image Pixel module (without the data) for monochrome 16-bit frames."""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = shape
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0


def set_pixel_data(ds: Dataset, pixels: np.ndarray) -> None:
    little = pixels.astype(pixels.dtype.newbyteorder("<"), copy=False)
    ds.add_new(0x7FE00010, "OW", np.ascontiguousarray(little).tobytes())


def set_plane(
    ds: Dataset,
    position: Vector,
    orientation: Sequence[float],
    pixel_spacing: tuple[float, float] | None = None,
    thickness: float = 0.0,
) -> None:
    ds.ImagePositionPatient = [ds_str(v) for v in position]
    ds.SliceLocation = ds_str(float(np.dot(np.cross(orientation[:3], orientation[3:]), position)))
    if pixel_spacing:  # the rest is the same for every slice of a stack
        ds.ImageOrientationPatient = [ds_str(v) for v in orientation]
        ds.PixelSpacing = [ds_str(v) for v in pixel_spacing]
        ds.SliceThickness = ds_str(thickness)


def plane_coordinates(
    position: Vector,
    orientation: Sequence[float],
    pixel_spacing: tuple[float, float],
    shape: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Patient x, y, z (mm) of every pixel centre of a plane, broadcastable to ``shape``."""
    rows, cols = shape
    r = np.arange(rows, dtype=np.float32)[:, None] * pixel_spacing[0]
    c = np.arange(cols, dtype=np.float32)[None, :] * pixel_spacing[1]
    u, v = orientation[:3], orientation[3:]
    x, y, z = (
        np.float32(position[i]) + c * np.float32(u[i]) + r * np.float32(v[i]) for i in range(3)
    )
    return x, y, z


def centred_position(
    centre: np.ndarray,
    orientation: Sequence[float],
    pixel_spacing: tuple[float, float],
    shape: tuple[int, int],
) -> np.ndarray:
    u, v = np.asarray(orientation[:3]), np.asarray(orientation[3:])
    return (
        centre
        - (shape[1] - 1) / 2 * pixel_spacing[1] * u
        - (shape[0] - 1) / 2 * pixel_spacing[0] * v
    )


def to_stored_ct(hu: np.ndarray, dtype: str, padding: np.ndarray | None) -> np.ndarray:
    stored = np.rint(np.clip(hu, -1024.0, 3071.0)) + 1024.0
    if dtype == "int16":
        out = stored.astype(np.int16)
        if padding is not None:
            out[padding] = -2000  # outside the reconstruction circle, as GE scanners pad
        return out
    return stored.astype(np.uint16)
