"""Blank rectangular regions of the pixel data (burned-in annotation removal)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from imagelake.errors import PixelDataError

__all__ = ["Region", "mask_regions"]

#: A rectangle in pixel coordinates: ``(top, left, bottom, right)``, bottom/right exclusive.
Region = tuple[int, int, int, int]


def mask_regions(
    ds: Dataset, regions: Iterable[Region], *, fill: int | None = None, record: bool = True
) -> Dataset:
    """Set every pixel inside ``regions`` to ``fill`` in every frame, in place; return ``ds``.

    Compressed pixel data is decompressed first (the result is stored uncompressed, Explicit VR
    Little Endian). ``fill`` defaults to the smallest stored value of the image (black for
    MONOCHROME2 and RGB).

    With ``record``, BurnedInAnnotation becomes ``NO`` and "Clean Pixel Data Option" (113101) is
    added to DeidentificationMethodCodeSequence: only pass ``record=True`` once the regions are
    known to cover all burned-in text.

    Raises
    ------
    PixelDataError
        No pixel data, pixel data that cannot be decoded, or a region outside the image.
    """
    if "PixelData" not in ds:
        raise PixelDataError("the dataset has no pixel data to mask")
    boxes = [tuple(int(v) for v in r) for r in regions]
    rows, cols = int(ds.Rows), int(ds.Columns)
    for top, left, bottom, right in boxes:
        if not (0 <= top < bottom <= rows and 0 <= left < right <= cols):
            raise PixelDataError(
                f"region {(top, left, bottom, right)} is outside the {rows}x{cols} image "
                "(top, left, bottom, right; bottom/right exclusive)"
            )
    if int(ds.get("BitsAllocated", 8)) == 1:
        raise PixelDataError("masking 1-bit pixel data is not supported")
    try:
        if ds.file_meta.TransferSyntaxUID.is_compressed:
            ds.decompress()
        pixels = ds.pixel_array.copy()
    except Exception as exc:  # any decoder failure means the same to the caller
        raise PixelDataError(f"cannot decode the pixel data to mask it: {exc}") from exc
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    # bring the array to (frames, rows, cols[, samples]) whatever pydicom returned
    view = pixels.reshape((frames, rows, cols) + ((samples,) if samples > 1 else ()))
    value = fill if fill is not None else int(np.min(view)) if view.size else 0
    for top, left, bottom, right in boxes:
        view[:, top:bottom, left:right, ...] = value
    ds.PixelData = view.astype(pixels.dtype, copy=False).tobytes()
    if record:
        from imagelake.anonymize._engine import method_codes  # local: avoids a module cycle

        ds.BurnedInAnnotation = "NO"
        items = list(ds.get("DeidentificationMethodCodeSequence") or [])
        if not any(str(item.get("CodeValue", "")) == "113101" for item in items):
            items.insert(1 if items else 0, method_codes(frozenset(), clean_pixels=True)[1])
        ds.DeidentificationMethodCodeSequence = Sequence(items)
    return ds
