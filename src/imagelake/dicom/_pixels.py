"""Decode an instance's pixels losslessly, and regenerate an instance from header + pixels.

Pixels are decoded "raw" (pydicom's term): no colour-space conversion, so YBR_FULL
stays YBR_FULL and values are exactly those stored. Decoders that necessarily change
the colour space (JPEG 2000's reversible transform, subsampled YBR_FULL_422 expanded)
report the photometric interpretation of what they return; it is kept with the stack
and written into regenerated files.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import get_decoder, pack_bits
from pydicom.uid import UID, ExplicitVRLittleEndian

from imagelake.dicom._inspect import PIXEL_TAGS, read_dataset, read_header_bytes
from imagelake.errors import PixelDataError

__all__ = ["DecodedPixels", "decode_pixels", "regenerate", "to_bytes"]


@dataclass
class DecodedPixels:
    """Frames of one instance, shape ``(frames, rows, columns[, samples])``."""

    array: np.ndarray
    photometric_interpretation: str

    @property
    def n_frames(self) -> int:
        return int(self.array.shape[0])


def _decode(decoder: Any, ds: Dataset) -> tuple[np.ndarray, str]:
    # Raw first: values exactly as stored. pydicom refuses raw mode for some JPEG
    # baseline YBR_FULL_422 files (the JPEG codec converts colour itself there), so fall
    # back to pydicom's default output, which is RGB for YBR colour data.
    pi = str(ds.get("PhotometricInterpretation", ""))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr, meta = decoder.as_array(ds, raw=True)
        return arr, str(meta.get("photometric_interpretation", pi))
    except Exception:  # noqa: BLE001 - retry with pydicom's default processing
        pass
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = ds.pixel_array
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        raise PixelDataError(f"pixel data cannot be decoded: {first}") from exc
    return arr, ("RGB" if pi.startswith("YBR") else pi)


def decode_pixels(data: bytes | Dataset) -> DecodedPixels:
    """Decode every frame of an instance without colour conversion.

    Raises
    ------
    PixelDataError
        No decoder is available for the transfer syntax, or the data is corrupt.
    """
    ds = read_dataset(data) if isinstance(data, bytes) else data
    n_frames = int(ds.get("NumberOfFrames") or 1)
    if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
        arr = ds.pixel_array  # float data is never compressed
        pi = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    else:
        tsyntax = UID(ds.file_meta.get("TransferSyntaxUID", "1.2.840.10008.1.2"))
        try:
            decoder = get_decoder(tsyntax)
        except NotImplementedError as exc:
            raise PixelDataError(f"no pixel decoder for transfer syntax {tsyntax.name}") from exc
        if not decoder.is_available:
            raise PixelDataError(
                f"no installed plugin decodes {tsyntax.name}; install pylibjpeg plugins or "
                "pip install 'imagelake[gdcm]'"
            )
        arr, pi = _decode(decoder, ds)
    spp = int(ds.get("SamplesPerPixel") or 1)
    expected_ndim = 3 if spp == 1 else 4
    if arr.ndim == expected_ndim - 1:
        arr = arr[np.newaxis]
    if arr.ndim != expected_ndim or arr.shape[0] != n_frames:
        raise PixelDataError(
            f"decoded pixel array has shape {arr.shape}, expected {n_frames} frame(s) of "
            f"{ds.get('Rows')}x{ds.get('Columns')}x{spp}"
        )
    if pi == "YBR_FULL_422":
        pi = "YBR_FULL"  # decoded arrays are never subsampled
    return DecodedPixels(np.ascontiguousarray(arr), pi)


def _native_bytes(frames: np.ndarray, header: Dataset, little_endian: bool) -> bytes:
    bits = int(header.get("BitsAllocated") or frames.dtype.itemsize * 8)
    if bits == 1:
        return bytes(pack_bits(frames.reshape(-1), pad=False))
    arr = frames
    if (
        arr.ndim == 4
        and arr.shape[-1] == 3
        and str(header.get("PhotometricInterpretation", "")) == "YBR_FULL_422"
    ):
        # native YBR_FULL_422 is stored subsampled (Y1 Y2 Cb Cr per pair of pixels); the
        # decoded frames repeat each pair's Cb Cr, so taking them back is exact
        pairs = arr.reshape(arr.shape[0], arr.shape[1], arr.shape[2] // 2, 2, 3)
        arr = np.concatenate([pairs[..., 0, 0:1], pairs[..., 1, 0:1], pairs[..., 0, 1:3]], axis=-1)
    elif arr.ndim == 4 and int(header.get("PlanarConfiguration", 0) or 0) == 1:
        arr = np.ascontiguousarray(np.moveaxis(arr, -1, 1))  # frames, samples, rows, cols
    target = arr.dtype.newbyteorder("<" if little_endian else ">")
    return np.ascontiguousarray(arr, dtype=target).tobytes()


def regenerate(header: bytes, frames: np.ndarray, photometric_interpretation: str) -> Dataset:
    """Rebuild a complete instance from its stored header and its frames.

    An instance received in a native (uncompressed) transfer syntax comes back in the
    same one, byte-for-byte the same pixel values. One received compressed comes back
    as Explicit VR Little Endian, with the photometric interpretation of the decoded
    values (e.g. YBR_RCT becomes RGB) and PlanarConfiguration 0.
    """
    ds = read_header_bytes(header)
    # Convert every element now: a header kept byte-exact from a file that declares
    # explicit VR but is encoded implicit reads back as raw elements without a VR,
    # which pydicom would then write as they are (or fail to write) in explicit VR.
    for _ in ds.iterall():
        pass
    meta = getattr(ds, "file_meta", None) or FileMetaDataset()
    tsyntax = UID(meta.get("TransferSyntaxUID", "1.2.840.10008.1.2"))
    if frames.size == 0 and not any(t in ds for t in PIXEL_TAGS):
        return ds  # a non-image object: the header is the whole instance
    if tsyntax.is_compressed or tsyntax == "1.2.840.10008.1.2.1.99":
        # deflate is lossless but re-deflating is not what a reader expects: go native
        tsyntax = ExplicitVRLittleEndian
        meta.TransferSyntaxUID = tsyntax
        ds.PhotometricInterpretation = photometric_interpretation
        if "PlanarConfiguration" in ds:
            ds.PlanarConfiguration = 0
        ds.set_original_encoding(False, True)
    little = tsyntax != "1.2.840.10008.1.2.2"
    n_frames = int(ds.get("NumberOfFrames") or 1)
    if frames.shape[0] != n_frames:
        raise PixelDataError(f"{frames.shape[0]} frames given, the header says {n_frames}")
    payload = _native_bytes(frames, ds, little)
    if len(payload) % 2:
        payload += b"\x00"
    if frames.dtype.kind == "f":
        # float images live in their own elements (only native, little endian by rule)
        keyword = "FloatPixelData" if frames.dtype.itemsize == 4 else "DoubleFloatPixelData"
        setattr(ds, keyword, payload)
    else:
        ds.PixelData = payload
        ds["PixelData"].VR = "OB" if int(ds.get("BitsAllocated") or 16) <= 8 else "OW"
    ds.file_meta = meta
    return ds


def to_bytes(ds: Dataset) -> bytes:
    """Serialise a regenerated dataset as DICOM bytes (with file meta when it has one)."""
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=False)
    return buf.getvalue()
