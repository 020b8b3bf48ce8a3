"""Bad inputs, one file per kind, for testing that ingest quarantines what it cannot read.

| kind | what | ingest should |
|---|---|---|
| ``truncated`` | a valid CT file cut in the middle of its pixel data | quarantine: pixels |
| ``not_dicom`` | a small PNG image | quarantine: not DICOM |
| ``missing_pixels`` | a CT Image Storage instance without PixelData | quarantine: pixels |
| ``short_pixels`` | PixelData half as long as Rows × Columns × 2 bytes | quarantine: pixels |
| ``inconsistent_size`` | a *valid* slice of the reference series, at half its Rows and Columns | ingest as its own stack |
| ``empty`` | a 0-byte file | quarantine: not DICOM |
| ``garbage_after_preamble`` | 128-byte preamble, ``DICM``, then random bytes | quarantine: not DICOM |

:data:`EXPECTED_ERRORS` says the same as data. ``garbage_after_preamble`` is the subtle one: the
magic ``DICM`` is there and pydicom parses the bytes into a junk element without raising, but
there is no File Meta Information (no TransferSyntaxUID) and no SOP Class, so ingest must not
trust the magic alone.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from imagelake.errors import InvalidInputError, NotDicomError, PixelDataError
from imagelake.synthetic._headers import Patient, synthetic_uid
from imagelake.synthetic.series import ct_series

__all__ = ["BAD_INPUT_KINDS", "EXPECTED_ERRORS", "bad_inputs"]

#: The error ingest should quarantine each kind with; ``None``: valid, ingest it.
EXPECTED_ERRORS: Mapping[str, type[InvalidInputError] | None] = MappingProxyType(
    {
        "truncated": PixelDataError,
        "not_dicom": NotDicomError,
        "missing_pixels": PixelDataError,
        "short_pixels": PixelDataError,
        "inconsistent_size": None,
        "empty": NotDicomError,
        "garbage_after_preamble": NotDicomError,
    }
)
#: Every kind :func:`bad_inputs` writes.
BAD_INPUT_KINDS: tuple[str, ...] = tuple(EXPECTED_ERRORS)

_BAD_PATIENT = Patient("SYNTHETIC^BAD^001", "SYN-BAD-001")


def _encode(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def _png(pixels: np.ndarray) -> bytes:
    """A minimal valid 8-bit greyscale PNG (the screenshot someone left among the DICOM)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows, cols = pixels.shape
    raw = b"".join(b"\x00" + pixels[r].astype(np.uint8).tobytes() for r in range(rows))
    header = struct.pack(">IIBBBBB", cols, rows, 8, 0, 0, 0, 0)
    text = b"Comment\x00SYNTHETIC imagelake test data: not a DICOM file"
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"tEXt", text)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def _half_size_slice(reference: Dataset) -> Dataset:
    """A valid instance of ``reference``'s series with half its Rows and Columns."""
    ds = pydicom.dcmread(io.BytesIO(_encode(reference)))  # a copy: never change the reference
    pixels = ds.pixel_array[::2, ::2]
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        ds.decompress(generate_instance_uid=False)
    uid = synthetic_uid("inconsistent-size", reference.SOPInstanceUID)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid
    ds.InstanceNumber = 9001
    ds.Rows, ds.Columns = pixels.shape
    ds.PixelSpacing = [f"{2 * float(v):.10g}" for v in reference.PixelSpacing]
    ds.PixelData = np.ascontiguousarray(pixels, dtype=pixels.dtype.newbyteorder("<")).tobytes()
    return ds


def bad_inputs(
    out_dir: str | os.PathLike[str], *, reference: Dataset | None = None, seed: int = 0
) -> dict[str, Path]:
    """Write one file per kind of bad input (see the module docstring and :data:`EXPECTED_ERRORS`).

    Parameters
    ----------
    out_dir
        Folder to write into; created if missing.
    reference
        An instance of a series you write too: the ``inconsistent_size`` slice joins its series
        (same StudyInstanceUID, SeriesInstanceUID, FrameOfReferenceUID and position, a new
        SOPInstanceUID, InstanceNumber 9001). Without it, the slice joins a small synthetic CT
        series that is not written, so nothing is left to split it from. The broken-pixel
        kinds always come from their own synthetic series (patient ``SYNTHETIC^BAD^001``),
        so they never count towards ``reference``'s series.
    seed
        Seeds the synthetic series and the garbage bytes.

    Returns
    -------
    dict of str to pathlib.Path
        The file written for each kind, in :data:`BAD_INPUT_KINDS` order.
    """
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    source = list(
        ct_series(
            4,
            32,
            32,
            patient=_BAD_PATIENT,
            seed=seed,
            series_number=999,
            series_description="SYNTHETIC bad inputs",
        )
    )
    data: dict[str, bytes] = {}

    whole = _encode(source[0])
    pixel_bytes = int(source[0].Rows) * int(source[0].Columns) * 2
    data["truncated"] = whole[: len(whole) - pixel_bytes // 2]

    data["not_dicom"] = _png(np.clip(source[1].pixel_array // 16, 0, 255))

    missing = source[2]
    del missing.PixelData
    data["missing_pixels"] = _encode(missing)

    short = source[3]
    short.PixelData = bytes(short.PixelData)[: pixel_bytes // 2]
    data["short_pixels"] = _encode(short)

    data["inconsistent_size"] = _encode(_half_size_slice(reference or source[0]))
    data["empty"] = b""
    rng = np.random.default_rng([seed, 0xBAD])
    data["garbage_after_preamble"] = bytes(128) + b"DICM" + rng.bytes(4096)

    paths: dict[str, Path] = {}
    for kind in BAD_INPUT_KINDS:
        path = folder / (f"{kind}.png" if kind == "not_dicom" else f"{kind}.dcm")
        path.write_bytes(data[kind])
        paths[kind] = path
    return paths
