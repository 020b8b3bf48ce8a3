"""Regions of interest and patch sampling over lazily opened stores.

Everything here slices dask-backed arrays: a patch reads only the chunks it touches, and
nothing is read until the caller computes. Use them inside an analysis or on a dataset
opened with ``lake.open_series(uid, chunks={})``::

    >>> box = roi(ds, center=(40, 256, 256), size=(16, 64, 64))             # doctest: +SKIP
    >>> patches = sample_patches(ds, size=(8, 32, 32), n=16, seed=0)        # doctest: +SKIP
    >>> patches.shape                        # (16, 8, 32, 32), still lazy  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

__all__ = ["grid_patches", "patch_origins", "roi", "roi_mm", "sample_patches"]


def _box(center: Sequence[int], size: Sequence[int], shape: Sequence[int]) -> tuple[slice, ...]:
    if len(center) != len(shape) or len(size) != len(shape):
        raise ValueError(f"center and size need {len(shape)} values (one per dimension)")
    out = []
    for c, s, n in zip(center, size, shape, strict=True):
        if s < 1 or s > n:
            raise ValueError(f"a size of {s} does not fit a dimension of {n}")
        start = min(max(int(c) - int(s) // 2, 0), n - int(s))
        out.append(slice(start, start + int(s)))
    return tuple(out)


def roi(ds: Any, center: Sequence[int], size: Sequence[int], *, var: str = "image") -> Any:
    """The box of ``size`` voxels around ``center`` (voxel indices) of ``ds[var]``, moved
    inside the array where it would cross an edge; lazy."""
    array = ds[var]
    return array.isel(dict(zip(array.dims, _box(center, size, array.shape), strict=True)))


def roi_mm(
    ds: Any, center_mm: Sequence[float], size_mm: Sequence[float], *, var: str = "image"
) -> Any:
    """As :func:`roi` with the centre and size in mm along the stack's (slice, y, x)
    coordinates (``z`` per slice, ``y`` and ``x`` in-plane)."""
    array = ds[var]
    coords = [np.asarray(ds["z"].values), np.asarray(ds["y"].values), np.asarray(ds["x"].values)]
    center = [int(np.abs(c - v).argmin()) for c, v in zip(coords, center_mm, strict=True)]
    steps = [abs(float(c[1] - c[0])) if len(c) > 1 else 1.0 for c in coords]
    size = [
        max(1, min(len(c), round(s / step)))
        for c, s, step in zip(coords, size_mm, steps, strict=True)
    ]
    return array.isel(dict(zip(array.dims, _box(center, size, array.shape), strict=True)))


def patch_origins(
    shape: Sequence[int],
    size: Sequence[int],
    n: int,
    *,
    seed: int = 0,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """``n`` random patch origins (``(n, ndim)`` ints) such that each patch fits in ``shape``.

    With ``mask`` (a boolean array of ``shape``, in memory), only patches whose centre
    voxel is in the mask are drawn. The same seed gives the same patches.
    """
    rng = np.random.default_rng(seed)
    limits = [int(s) - int(p) + 1 for s, p in zip(shape, size, strict=True)]
    if min(limits) < 1:
        raise ValueError(f"a patch of {tuple(size)} does not fit an array of {tuple(shape)}")
    if mask is None:
        return np.stack([rng.integers(0, lim, size=n) for lim in limits], axis=1)
    half = np.asarray(size) // 2
    centres = np.argwhere(np.asarray(mask))
    origins = centres - half
    ok = np.all((origins >= 0) & (origins < np.asarray(limits)), axis=1)
    origins = origins[ok]
    if not len(origins):
        raise ValueError("no patch centre lies in the mask")
    return origins[rng.integers(0, len(origins), size=n)]


def sample_patches(
    ds: Any,
    size: Sequence[int],
    n: int,
    *,
    seed: int = 0,
    var: str = "image",
    mask: Any = None,
) -> Any:
    """``n`` random patches of ``size`` from ``ds[var]``, as one lazy dask array
    ``(n, *size)``.

    ``mask`` (boolean, same shape, numpy or lazy) restricts the patch centres; a lazy mask
    is computed (one pass, reduced to booleans) to draw them.
    """
    import dask.array as da

    data = ds[var].data
    if not isinstance(data, da.Array):
        data = da.from_array(data)
    if mask is not None:
        mask = np.asarray(getattr(mask, "values", mask))
    origins = patch_origins(data.shape, size, n, seed=seed, mask=mask)
    patches = [
        data[tuple(slice(int(o), int(o) + int(s)) for o, s in zip(origin, size, strict=True))]
        for origin in origins
    ]
    return da.stack(patches)


def grid_patches(
    shape: Sequence[int], size: Sequence[int], stride: Sequence[int] | None = None
) -> Iterator[tuple[slice, ...]]:
    """Slices of a regular grid of patches covering ``shape`` (the last ones may be cut
    short at the edges); ``stride`` defaults to ``size`` (no overlap)."""
    step = list(stride or size)
    ranges = [range(0, int(n), int(s)) for n, s in zip(shape, step, strict=True)]
    for starts in np.stack(np.meshgrid(*ranges, indexing="ij"), -1).reshape(-1, len(shape)):
        yield tuple(
            slice(int(a), min(int(a) + int(p), int(n)))
            for a, p, n in zip(starts, size, shape, strict=True)
        )
