"""Looking at a stack: planes, reformats, window/level and mosaics (layer L2).

Everything here works on the lazy :class:`xarray.Dataset` that :func:`imagelake.store.open_stack`
(or :meth:`imagelake.lake.Lake.open_series`) returns, and reads only what it shows: an axial
plane reads the chunks that intersect that slice, a coronal or sagittal reformat the chunks that
intersect that row or column, a mosaic only its tiles' slices.

>>> ds = lake.open_series(uid)                                         # doctest: +SKIP
>>> plane = read_plane(ds, "coronal", 32)                              # doctest: +SKIP
>>> pixels = window(plane.values, *WINDOW_PRESETS["lung"])             # uint8
>>> plane.value_at(10, 20)                                             # (HU, (x, y, z) mm)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import xarray as xr

from imagelake.errors import QueryError

__all__ = [
    "ORIENTATIONS",
    "WINDOW_PRESETS",
    "Plane",
    "Window",
    "auto_window",
    "describe",
    "mosaic",
    "plane_count",
    "read_plane",
    "window",
]

Orientation = Literal["axial", "coronal", "sagittal"]
#: the planes a stack can be shown in: the stored one (``axial``) and two reformats
ORIENTATIONS: tuple[str, ...] = ("axial", "coronal", "sagittal")

#: (center, width) in Hounsfield units, as radiologists use them for CT
Window = tuple[float, float]
WINDOW_PRESETS: Mapping[str, Window] = {
    "lung": (-600.0, 1500.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
    "soft tissue": (40.0, 400.0),
}

# the dimension that each orientation fixes, in the stack's (slice|frame, y, x) order
_FIXED = {"axial": 0, "coronal": 1, "sagittal": 2}


@dataclass(frozen=True)
class Plane:
    """One displayed plane of a stack, in physical units.

    Attributes
    ----------
    values
        2-D array in physical units (HU for CT), rows first.
    orientation
        ``"axial"`` (the stored slices), ``"coronal"`` or ``"sagittal"`` (reformats).
    index, count
        This plane's index along the fixed axis, and how many planes there are.
    spacing
        (row, column) pixel spacing in mm, for drawing with square pixels.
    position_mm
        Where the plane is along its fixed axis (slice ``z``, or ``y``/``x``), in mm.
    units
        Units of ``values`` (``"HU"``, or ``""`` when the store names none).
    """

    values: np.ndarray = field(repr=False)
    orientation: str
    index: int
    count: int
    spacing: tuple[float, float]
    position_mm: float
    units: str = ""
    row_mm: np.ndarray | None = field(default=None, repr=False)
    col_mm: np.ndarray | None = field(default=None, repr=False)

    def value_at(self, row: int, col: int) -> tuple[float, tuple[float, float]]:
        """The value at pixel ``(row, col)`` and its (row, column) position in mm."""
        r = min(max(int(row), 0), self.values.shape[0] - 1)
        c = min(max(int(col), 0), self.values.shape[1] - 1)
        row_pos = float(self.row_mm[r]) if self.row_mm is not None else r * self.spacing[0]
        col_pos = float(self.col_mm[c]) if self.col_mm is not None else c * self.spacing[1]
        return float(self.values[r, c]), (row_pos, col_pos)

    def readout(self, row: int, col: int) -> str:
        """One line for people: value with units, and where it is."""
        value, (rpos, cpos) = self.value_at(row, col)
        units = f" {self.units}" if self.units else ""
        return (
            f"{self.orientation} {self.index + 1}/{self.count} at {self.position_mm:.1f} mm; "
            f"pixel ({row}, {col}) = {value:.1f}{units} at ({rpos:.1f}, {cpos:.1f}) mm; "
            f"spacing {self.spacing[0]:.2f} x {self.spacing[1]:.2f} mm"
        )


def _image(ds: xr.Dataset) -> xr.DataArray:
    if "image" not in ds:
        raise QueryError("this stack has no image (a header-only stack of non-image objects)")
    image = ds["image"]
    if image.ndim != 3:
        raise QueryError(
            f"planes are shown for (slice, y, x) stacks; this image has dims {image.dims}"
        )
    return image


def plane_count(ds: xr.Dataset, orientation: str) -> int:
    """How many planes ``orientation`` has (slices, rows or columns)."""
    return int(_image(ds).shape[_axis(orientation)])


def _axis(orientation: str) -> int:
    try:
        return _FIXED[orientation]
    except KeyError:
        raise QueryError(
            f"unknown orientation {orientation!r}; valid: {', '.join(ORIENTATIONS)}"
        ) from None


def _spacing(ds: xr.Dataset) -> tuple[float, float, float]:
    """(slice, row, column) spacing in mm, from the store's attributes and coordinates."""
    attrs = ds.attrs
    px = attrs.get("pixel_spacing") or [1.0, 1.0]
    between = attrs.get("spacing_between_frames") or attrs.get("slice_thickness") or 1.0
    try:
        dz = abs(float(between)) or 1.0
    except (TypeError, ValueError):
        dz = 1.0
    return dz, float(px[0]) or 1.0, float(px[1]) or 1.0


def _coord(ds: xr.Dataset, name: str, n: int, step: float) -> np.ndarray:
    if name in ds.coords and ds.coords[name].size == n:
        try:
            return np.asarray(ds.coords[name].values, dtype="float64")
        except (TypeError, ValueError):
            pass
    return np.arange(n, dtype="float64") * step


def read_plane(ds: xr.Dataset, orientation: str = "axial", index: int | None = None) -> Plane:
    """Read one plane of a stack (only the chunks that intersect it).

    Parameters
    ----------
    ds
        A stack as :meth:`imagelake.lake.Lake.open_series` returns it (lazy).
    orientation
        ``"axial"``: stored slice ``index``; ``"coronal"``: image row ``index`` across all
        slices; ``"sagittal"``: image column ``index`` across all slices.
    index
        Plane index (clipped to the valid range); ``None`` is the middle plane.
    """
    image = _image(ds)
    axis = _axis(orientation)
    count = int(image.shape[axis])
    k = count // 2 if index is None else min(max(int(index), 0), count - 1)
    dz, dy, dx = _spacing(ds)
    n, rows, cols = (int(s) for s in image.shape)
    zc = _coord(ds, "z", n, dz)
    yc = _coord(ds, "y", rows, dy)
    xc = _coord(ds, "x", cols, dx)
    dim = image.dims[axis]
    values = np.asarray(image.isel({dim: k}).values, dtype="float64")
    units = str(image.attrs.get("units", ""))
    if orientation == "axial":
        return Plane(values, orientation, k, count, (dy, dx), float(zc[k]), units, yc, xc)
    # reformats: slices become rows, drawn top (highest z) to bottom, like a radiologist
    flip = n > 1 and zc[-1] > zc[0]
    if flip:
        values = values[::-1]
        zc = zc[::-1]
    if orientation == "coronal":
        return Plane(values, orientation, k, count, (dz, dx), float(yc[k]), units, zc, xc)
    return Plane(values, orientation, k, count, (dz, dy), float(xc[k]), units, zc, yc)


def auto_window(values: np.ndarray) -> Window:
    """A (center, width) window from the 1st to 99th percentile of ``values``."""
    finite = values[np.isfinite(values)] if values.size else values
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(finite, [1.0, 99.0]))
    if hi <= lo:
        lo, hi = float(finite.min()), float(finite.max())
    return (lo + hi) / 2.0, max(hi - lo, 1.0)


def window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """Map ``values`` to uint8 grey levels with a window (DICOM PS3.3 C.11.2.1.2, linear)."""
    width = max(float(width), 1.0)
    lo = float(center) - 0.5 - (width - 1.0) / 2.0
    scaled = (np.asarray(values, dtype="float64") - lo) / (width - 1.0)
    return (np.clip(np.nan_to_num(scaled), 0.0, 1.0) * 255.0 + 0.5).astype("uint8")


def _default_window(ds: xr.Dataset, sample: np.ndarray) -> Window:
    modality = str(ds.attrs.get("modality", "")).upper()
    if modality == "CT" and str(ds["image"].attrs.get("units", "")) == "HU":
        return WINDOW_PRESETS["soft tissue"]
    return auto_window(sample)


def mosaic(
    ds: xr.Dataset,
    tiles: int = 9,
    *,
    window_: Window | None = None,
    tile_size: int = 96,
) -> np.ndarray:
    """A uint8 grid of ``tiles`` evenly spaced slices of a stack (a thumbnail).

    Reads only those slices. Each tile is ``tile_size`` pixels wide (nearest neighbour, so
    the function needs nothing beyond numpy); the grid is as square as possible. The window
    is ``window_``, else soft tissue for CT in HU, else the slices' own 1-99 % range.
    """
    image = _image(ds)
    n = int(image.shape[0])
    count = max(1, min(int(tiles), n))
    picks = sorted({round(i * (n - 1) / max(count - 1, 1)) for i in range(count)})
    planes = [np.asarray(image.isel({image.dims[0]: k}).values, dtype="float64") for k in picks]
    stacked = np.stack(planes)
    center, width = window_ or _default_window(ds, stacked)
    grey = window(stacked, center, width)
    rows, cols = grey.shape[1:]
    scale = tile_size / max(rows, cols)
    out_r, out_c = max(1, round(rows * scale)), max(1, round(cols * scale))
    ri = np.minimum((np.arange(out_r) / scale).astype(int), rows - 1)
    ci = np.minimum((np.arange(out_c) / scale).astype(int), cols - 1)
    small = grey[:, ri][:, :, ci]
    grid_c = math.ceil(math.sqrt(len(picks)))
    grid_r = math.ceil(len(picks) / grid_c)
    out = np.zeros((grid_r * out_r, grid_c * out_c), dtype="uint8")
    for k, tile in enumerate(small):
        r, c = divmod(k, grid_c)
        out[r * out_r : (r + 1) * out_r, c * out_c : (c + 1) * out_c] = tile
    return out


def describe(ds: xr.Dataset) -> dict[str, Any]:
    """Shape, spacing and modality of a stack, for a caption (no identifying values)."""
    image = _image(ds)
    dz, dy, dx = _spacing(ds)
    return {
        "shape": tuple(int(s) for s in image.shape),
        "spacing_mm": (dz, dy, dx),
        "modality": ds.attrs.get("modality"),
        "units": image.attrs.get("units", ""),
    }
