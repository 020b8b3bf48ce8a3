"""Read stack stores: as xarray (lazy, dask-backed) or instance by instance for export."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import xarray as xr
import zarr

from imagelake._fs import LakeFS
from imagelake.errors import StoreError

__all__ = ["StackReader", "open_stack"]


def open_stack(
    url: str, *, chunks: Any = None, storage_options: dict[str, Any] | None = None
) -> xr.Dataset:
    """Open a stack store as an :class:`xarray.Dataset`, lazily.

    ``image`` is decoded to physical units through its CF ``scale_factor`` /
    ``add_offset`` (e.g. Hounsfield units for CT) and read only where indexed.

    Parameters
    ----------
    chunks
        ``None`` (default): xarray's own lazy indexing, no dask; a slice reads only the
        chunks it touches, and a whole read is about twice as fast as through dask.
        ``{}``: dask-backed, one dask chunk per stored chunk (for mining with Dask);
        or any xarray ``chunks`` value.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # every store has consolidated metadata: one read, and no listing of the group
        return xr.open_zarr(url, chunks=chunks, storage_options=storage_options, consolidated=True)


class StackReader:
    """Instance-level access to a stack store: headers, and the frames of one instance."""

    def __init__(self, lakefs: LakeFS, store_path: str) -> None:
        self.lakefs = lakefs
        self.store_path = store_path
        opts = None if lakefs.is_local else lakefs.storage_options
        try:
            self.group = zarr.open_group(lakefs.url(store_path), mode="r", storage_options=opts)
        except Exception as exc:
            raise StoreError(f"cannot open stack store {store_path}: {exc}") from exc
        self.attrs: dict[str, Any] = dict(self.group.attrs)
        self._headers: Any = self.group["headers/dicom"]
        self._instance: np.ndarray | None = None

    @property
    def photometric(self) -> str:
        return str(self.attrs.get("photometric_interpretation") or "")

    @property
    def n_instances(self) -> int:
        return int(self._headers.shape[0])

    @property
    def has_image(self) -> bool:
        return "image" in self.group

    def header(self, index: int) -> bytes:
        """The stored DICOM header bytes of instance ``index``."""
        value = self._headers[index]
        # zarr returns one element of a variable-length array as a 0-d object array, and
        # bytes() of that array would be its buffer (a pointer), not the stored bytes
        if isinstance(value, np.ndarray):
            value = value.item()
        return bytes(value)

    def headers(self) -> list[bytes]:
        return [bytes(h) for h in self._headers[:]]

    def _instance_of_frame(self) -> np.ndarray:
        if self._instance is None:
            frames_instance: Any = self.group["instance"]
            self._instance = np.asarray(frames_instance[:])
        return self._instance

    def instance_frames(self, index: int) -> np.ndarray:
        """Stored frames of instance ``index``, shape (frames, rows, columns[, samples])."""
        if not self.has_image:
            return np.empty((0,), dtype="uint8")
        where = np.flatnonzero(self._instance_of_frame() == index)
        if where.size == 0:
            raise StoreError(f"{self.store_path}: no frames for instance {index}")
        image: Any = self.group["image"]
        if where.size == 1:
            return np.asarray(image[int(where[0]) : int(where[0]) + 1])
        if np.all(np.diff(where) == 1):
            return np.asarray(image[int(where[0]) : int(where[-1]) + 1])
        return np.stack([np.asarray(image[int(k)]) for k in where])

    def iter_instances(self) -> Iterator[tuple[int, bytes, np.ndarray]]:
        """Every instance: (index, header bytes, frames), reading the image in order."""
        for index in range(self.n_instances):
            yield index, self.header(index), self.instance_frames(index)
