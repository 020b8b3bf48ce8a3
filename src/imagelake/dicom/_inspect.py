"""Read one DICOM instance: identity, geometry, flattened tags and its header bytes.

Everything here is done by pydicom; imagelake never parses DICOM itself. The result,
:class:`InstanceInfo`, is small and picklable, so worker processes can inspect files in
parallel and hand the results back for grouping into series and stacks.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.tag import BaseTag, Tag
from pydicom.uid import UID

from imagelake.dicom._source import Source, StoredInstance
from imagelake.errors import ImagelakeError, InvalidInputError, NotDicomError, PixelDataError

__all__ = [
    "PIXEL_TAGS",
    "InstanceInfo",
    "flatten_tags",
    "header_bytes",
    "inspect_bytes",
    "inspect_source",
    "read_dataset",
    "read_header_bytes",
]

#: Pixel data elements: kept as arrays in the store, never in the header.
PIXEL_TAGS = (Tag(0x7FE00010), Tag(0x7FE00008), Tag(0x7FE00009))

# Sequences too large to be useful as index columns: their content becomes per-frame
# coordinates of the stack instead.
_SKIP_SEQUENCES = {Tag(0x52009230), Tag(0x52009229)}
# plain ints: set membership by hash (a tuple of Tags compares element by element)
_SKIP_INTS = frozenset({*(int(t) for t in PIXEL_TAGS), *(int(t) for t in _SKIP_SEQUENCES)})
_BINARY_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "UN"}
_MAX_SEQUENCE_JSON = 8192

# Media Storage Directory (DICOMDIR): an index of files, not an image.
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"


def _plain(value: Any, vr: str) -> Any:
    """A JSON-able value for one element value (one item of a multi-value)."""
    if value is None:
        return None
    if vr == "DS":
        try:
            f = float(value)
        except (TypeError, ValueError):
            return str(value)
        return f if np.isfinite(f) else str(value)
    if vr == "IS":
        try:
            return int(value)
        except (TypeError, ValueError):
            return str(value)
    if vr in {"US", "SS", "UL", "SL", "UV", "SV"}:
        return int(value)
    if vr in {"FL", "FD"}:
        f = float(value)
        return f if np.isfinite(f) else None
    if vr == "AT":
        return f"{int(value):08X}"
    return str(value)


def _tag_key(tag: BaseTag, keyword: str) -> str:
    return keyword if keyword and not tag.is_private else f"{int(tag):08X}"


def flatten_tags(ds: Dataset, *, depth: int = 0) -> dict[str, Any]:
    """Every element of ``ds`` (pixel data and binary values left out) as a flat dict.

    Keys are DICOM keywords, or 8 hex digits for private and unknown tags. Values are
    str, int, float, None or lists of those; a sequence becomes a JSON string of its
    items (flattened the same way), left out if longer than 8 KiB.
    """
    out: dict[str, Any] = {}
    for elem in ds:
        tag = elem.tag
        if int(tag) in _SKIP_INTS or tag.element == 0:
            continue
        vr = elem.VR
        key = _tag_key(tag, elem.keyword)
        if vr in _BINARY_VRS:
            continue
        if vr == "SQ":
            if depth >= 2:
                continue
            items = [flatten_tags(item, depth=depth + 1) for item in elem.value]
            text = json.dumps(items, separators=(",", ":"), default=str)
            if len(text) <= _MAX_SEQUENCE_JSON:
                out[key] = text
            continue
        value = elem.value
        if value is None or value == "":
            out[key] = None
        elif isinstance(value, list | tuple | pydicom.multival.MultiValue):
            out[key] = [_plain(v, vr) for v in value]
        elif isinstance(value, bytes):
            continue
        else:
            out[key] = _plain(value, vr)
    return out


def _header_prefix(ds: Dataset, data: bytes) -> bytes | None:
    """The file's own bytes before its pixel data element, when that is the last element.

    pydicom reports where the pixel data value starts (``value_tell`` of the raw
    element); its 12-byte (explicit VR) or 8-byte (implicit VR) element header sits just
    before. The tag bytes are checked at that offset, so a wrong guess falls back to
    re-encoding. Deflated files and files with elements after the pixel data fall back.
    """
    present = [t for t in PIXEL_TAGS if t in ds]
    if len(present) != 1 or max(ds.keys()) != present[0]:
        return None
    meta = getattr(ds, "file_meta", None)
    if meta is not None and meta.get("TransferSyntaxUID") == "1.2.840.10008.1.2.1.99":
        return None
    # a RawDataElement (never converted) knows where its value starts in the file
    raw: Any = ds.get_item(present[0])
    tell = getattr(raw, "value_tell", None)
    if tell is None or getattr(raw, "is_little_endian", False) is not True:
        return None
    start = tell - (8 if raw.is_implicit_VR else 12)
    tag = int(present[0])
    expected = struct.pack("<HH", tag >> 16, tag & 0xFFFF)
    if start <= 0 or data[start : start + 4] != expected:
        return None
    return data[:start]


def header_bytes(ds: Dataset, data: bytes | None = None) -> bytes:
    """The instance without its pixel data, as DICOM bytes (file meta included if present).

    The dataset is written as read: elements pydicom has not converted are copied raw,
    in the original encoding. A few files declare one VR encoding and use another, so
    implicit and then explicit little endian are tried next. Group length elements are
    dropped (they are retired and recomputed).

    Given the file's ``data`` too, and when the pixel data is the last element, the
    header is the file's own bytes before it: byte-exact, and no re-encoding at all.
    """
    if data is not None:
        prefix = _header_prefix(ds, data)
        if prefix is not None:
            return prefix
    removed = {tag: ds[tag] for tag in PIXEL_TAGS if tag in ds}
    for tag in removed:
        del ds[tag]
    attempts: list[dict[str, Any]] = [
        {},
        {"implicit_vr": True, "little_endian": True},
        {"implicit_vr": False, "little_endian": True},
    ]
    last: Exception | None = None
    try:
        for kwargs in attempts:
            buf = io.BytesIO()
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    pydicom.dcmwrite(buf, ds, enforce_file_format=False, **kwargs)
            except Exception as exc:  # noqa: BLE001 - try the next encoding
                last = exc
                continue
            return buf.getvalue()
        # last resort: convert every element and write a fresh dataset
        header = Dataset()
        header.update({e.tag: e for e in ds})
        header.file_meta = getattr(ds, "file_meta", FileMetaDataset())
        implicit, little = ds.original_encoding
        if implicit is not None and little is not None:
            header.set_original_encoding(implicit, little)
        buf = io.BytesIO()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pydicom.dcmwrite(buf, header, enforce_file_format=False)
            return buf.getvalue()
        except Exception as exc:  # noqa: BLE001 - reported below
            last = exc
    finally:
        for tag, elem in removed.items():
            ds[tag] = elem
    raise InvalidInputError(f"pydicom cannot re-encode this header: {last}")


def read_dataset(data: bytes) -> Dataset:
    """Parse a whole instance; files without the Part 10 preamble are read as raw datasets."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return pydicom.dcmread(io.BytesIO(data))
        except InvalidDicomError:
            return pydicom.dcmread(io.BytesIO(data), force=True)


def read_header_bytes(data: bytes) -> Dataset:
    """Parse bytes made by :func:`header_bytes` back into a dataset."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(io.BytesIO(data), force=True)


def _floats(value: Any, n: int) -> tuple[float, ...] | None:
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return out if len(out) == n and all(np.isfinite(out)) else None


@dataclass
class InstanceInfo:
    """What ingest needs to know about one instance before touching its pixels."""

    source: Source | StoredInstance
    sha256: str
    size: int
    sop_instance_uid: str
    sop_class_uid: str
    series_instance_uid: str
    study_instance_uid: str
    transfer_syntax_uid: str
    rows: int
    columns: int
    samples_per_pixel: int
    bits_allocated: int
    pixel_representation: int
    photometric_interpretation: str
    n_frames: int
    instance_number: int | None
    image_type: tuple[str, ...]
    orientation: tuple[float, ...] | None
    position: tuple[float, ...] | None
    pixel_spacing: tuple[float, ...] | None
    slice_thickness: float | None
    rescale: tuple[float, float] | None
    acquisition_time: str | None
    echo_number: int | None
    temporal_position: int | None
    acquisition_number: int | None
    float_pixels: bool
    tags: dict[str, Any] = field(repr=False)
    #: per-frame values of an enhanced multi-frame object (position, rescale, ...)
    per_frame: dict[str, list[Any]] = field(default_factory=dict, repr=False)

    @property
    def has_pixels(self) -> bool:
        """False for non-image objects (structured reports, RT plans, waveforms...)."""
        return self.rows > 0 and self.columns > 0

    @property
    def is_localizer(self) -> bool:
        return "LOCALIZER" in self.image_type

    @property
    def decoded_photometric(self) -> str:
        """The photometric interpretation of the decoded pixels (4:2:2 comes back full)."""
        pi = self.photometric_interpretation
        return "YBR_FULL" if pi == "YBR_FULL_422" else pi

    @property
    def geometry_key(self) -> tuple[Any, ...]:
        """Instances sharing this key can be stacked into one array.

        A stack has one photometric interpretation (regenerated instances take it), so
        RGB, YBR_FULL, MONOCHROME1 and MONOCHROME2 instances of a series never share one.
        """
        orient = None if self.orientation is None else tuple(round(v, 3) for v in self.orientation)
        spacing = (
            None if self.pixel_spacing is None else tuple(round(v, 4) for v in self.pixel_spacing)
        )
        return (
            self.rows,
            self.columns,
            self.samples_per_pixel,
            self.bits_allocated,
            self.pixel_representation,
            self.float_pixels,
            orient,
            spacing,
            self.is_localizer,
            self.decoded_photometric,
        )


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _first_value(value: Any) -> Any:
    """The first value of a possibly multi-valued element value."""
    if isinstance(value, list | tuple | pydicom.multival.MultiValue):
        return value[0] if len(value) else None
    return value


def _first_item(ds: Dataset, keyword: str) -> Dataset | None:
    seq = ds.get(keyword)
    return seq[0] if seq else None


def _enhanced_per_frame(ds: Dataset, n_frames: int) -> dict[str, list[Any]]:
    """Per-frame functional-group values worth having as coordinates."""
    per_frame: dict[str, list[Any]] = {}
    frames = ds.get("PerFrameFunctionalGroupsSequence")
    if not frames or len(frames) != n_frames:
        return per_frame
    positions, slopes, intercepts, temporal, echo, stack_pos = [], [], [], [], [], []
    for item in frames:
        pos = _first_item(item, "PlanePositionSequence")
        positions.append(_floats(pos.get("ImagePositionPatient"), 3) if pos else None)
        pvt = _first_item(item, "PixelValueTransformationSequence")
        slopes.append(float(pvt.RescaleSlope) if pvt and "RescaleSlope" in pvt else None)
        intercepts.append(
            float(pvt.RescaleIntercept) if pvt and "RescaleIntercept" in pvt else None
        )
        content = _first_item(item, "FrameContentSequence")
        temporal.append(_int_or_none(content.get("TemporalPositionIndex")) if content else None)
        stack_pos.append(_int_or_none(content.get("InStackPositionNumber")) if content else None)
        mr_echo = _first_item(item, "MREchoSequence")
        echo.append(
            float(mr_echo.EffectiveEchoTime) if mr_echo and "EffectiveEchoTime" in mr_echo else None
        )
    for name, values in (
        ("image_position_patient", positions),
        ("rescale_slope", slopes),
        ("rescale_intercept", intercepts),
        ("temporal_position_index", temporal),
        ("in_stack_position", stack_pos),
        ("effective_echo_time", echo),
    ):
        if any(v is not None for v in values):
            per_frame[name] = values
    return per_frame


def _shared(ds: Dataset, seq: str, keyword: str) -> Any:
    """A value from the shared functional groups of an enhanced object."""
    item = _first_item(ds, "SharedFunctionalGroupsSequence")
    inner = _first_item(item, seq) if item is not None else None
    return inner.get(keyword) if inner is not None else None


def _check_pixels(ds: Dataset, rows: int, cols: int, spp: int, bits: int, frames: int) -> None:
    present = [t for t in PIXEL_TAGS if t in ds]
    if not present:
        if rows or cols:
            raise PixelDataError(
                f"no pixel data: the header describes a {rows}x{cols} image but has no "
                "(7FE0,0010) Pixel Data"
            )
        return  # a non-image object (SR, RT, waveform...): kept as a header-only instance
    if rows <= 0 or cols <= 0:
        raise PixelDataError(f"invalid image size Rows={rows} Columns={cols}")
    elem = ds[present[0]]
    tsyntax = (
        UID(ds.file_meta.get("TransferSyntaxUID", "1.2.840.10008.1.2"))
        if hasattr(ds, "file_meta")
        else UID("1.2.840.10008.1.2")
    )
    if tsyntax.is_compressed:
        if not elem.value:
            raise PixelDataError("encapsulated pixel data is empty")
        return
    value = elem.value or b""
    if present[0] == Tag(0x7FE00010):
        expected = (
            rows * cols * spp * frames * bits // 8 if bits != 1 else (rows * cols * frames + 7) // 8
        )
        if spp == 3 and str(ds.get("PhotometricInterpretation", "")) == "YBR_FULL_422":
            expected = expected * 2 // 3  # native 4:2:2 holds two samples per pixel
    else:
        itemsize = 4 if present[0] == Tag(0x7FE00008) else 8
        expected = rows * cols * spp * frames * itemsize
    if len(value) < expected:
        raise PixelDataError(
            f"pixel data is short: {len(value)} bytes, expected {expected} for "
            f"{frames} frame(s) of {rows}x{cols}x{spp} at {bits} bits"
        )


def _check_truncation(ds: Dataset) -> None:
    """Raise if an element's value stops before its declared length (a truncated file)."""
    for tag in ds.keys():  # noqa: SIM118 - iterating a Dataset yields elements, not tags
        raw = ds.get_item(tag)
        length = getattr(raw, "length", None)
        value = getattr(raw, "value", None)
        if length is None or length == 0xFFFFFFFF or not isinstance(value, bytes):
            continue
        if len(value) < length:
            name = "Pixel Data" if tag in PIXEL_TAGS else f"element {tag}"
            error = PixelDataError if tag in PIXEL_TAGS else InvalidInputError
            raise error(
                f"truncated file: {name} declares {length} bytes but the file ends "
                f"after {len(value)}"
            )


def inspect_bytes(
    data: bytes,
    source: Source | StoredInstance,
    *,
    sha256: str | None = None,
    check_pixels: bool = True,
) -> InstanceInfo:
    """Inspect one instance given its bytes.

    ``check_pixels=False`` inspects a stored header (pixel data kept apart), trusting
    ``sha256`` as the checksum of the original file.

    Raises
    ------
    NotDicomError
        The bytes are not a DICOM dataset.
    PixelDataError
        Pixel data is missing or shorter than the header says.
    InvalidInputError
        Identifying UIDs are missing, or the file is truncated.
    """
    if not data:
        raise NotDicomError("empty file (0 bytes)")
    sha = sha256 or hashlib.sha256(data).hexdigest()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(io.BytesIO(data))
        except InvalidDicomError:
            try:
                ds = pydicom.dcmread(io.BytesIO(data), force=True)
            except Exception as exc:
                raise NotDicomError(f"not a DICOM file: {exc}") from exc
            if len(ds) == 0 or "SOPInstanceUID" not in ds:
                raise NotDicomError(
                    "not a DICOM file: no 'DICM' prefix and no parsable dataset with a SOPInstanceUID"
                ) from None
        except (EOFError, OSError, ValueError, KeyError, TypeError, struct.error) as exc:
            raise InvalidInputError(f"truncated or corrupt DICOM file: {exc}") from exc
        meta = getattr(ds, "file_meta", None)
        if (
            not (meta is not None and meta.get("TransferSyntaxUID"))
            and "SOPClassUID" not in ds
            and "SOPInstanceUID" not in ds
        ):
            # pydicom parses anything after a 'DICM' marker into some element: without
            # a transfer syntax and SOP UIDs those bytes are not a DICOM instance
            raise NotDicomError(
                "not a DICOM file: 'DICM' marker but no transfer syntax, SOP Class UID or "
                "SOP Instance UID (garbage after the preamble?)"
            )
        _check_truncation(ds)
    try:
        # building the index's tags converts every element: corruption surfaces here
        return _info_from_dataset(ds, source, sha, len(data), check_pixels=check_pixels)
    except ImagelakeError:
        raise
    except Exception as exc:
        raise InvalidInputError(f"truncated or corrupt DICOM file: {exc}") from exc


def _info_from_dataset(
    ds: Dataset,
    source: Source | StoredInstance,
    sha: str,
    size: int,
    *,
    check_pixels: bool = True,
) -> InstanceInfo:
    meta = getattr(ds, "file_meta", Dataset())
    sop_class = str(ds.get("SOPClassUID", meta.get("MediaStorageSOPClassUID", "")))
    if sop_class == MEDIA_STORAGE_DIRECTORY or "DirectoryRecordSequence" in ds:
        raise NotDicomError("a DICOMDIR (media storage directory), not an image: ingest its folder")
    missing = [
        k for k in ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID") if not ds.get(k)
    ]
    if missing:
        raise InvalidInputError(f"missing identifying attribute(s): {', '.join(missing)}")
    rows = _int_or_none(ds.get("Rows")) or 0
    cols = _int_or_none(ds.get("Columns")) or 0
    spp = _int_or_none(ds.get("SamplesPerPixel")) or 1
    bits = _int_or_none(ds.get("BitsAllocated")) or 0
    try:
        frames = int(ds.get("NumberOfFrames") or 1)
    except (TypeError, ValueError):
        raise InvalidInputError("NumberOfFrames is not an integer") from None
    if bits == 0 and "FloatPixelData" in ds:
        bits = 32
    if bits == 0 and "DoubleFloatPixelData" in ds:
        bits = 64
    if check_pixels:
        _check_pixels(ds, rows, cols, spp, bits, frames)
    tsyntax = str(meta.get("TransferSyntaxUID", "1.2.840.10008.1.2"))

    orientation = _floats(ds.get("ImageOrientationPatient"), 6)
    position = _floats(ds.get("ImagePositionPatient"), 3)
    spacing = _floats(ds.get("PixelSpacing"), 2)
    thickness = _floats([ds.get("SliceThickness")], 1) if ds.get("SliceThickness") else None
    per_frame: dict[str, list[Any]] = {}
    if "SharedFunctionalGroupsSequence" in ds or "PerFrameFunctionalGroupsSequence" in ds:
        orientation = orientation or _floats(
            _shared(ds, "PlaneOrientationSequence", "ImageOrientationPatient"), 6
        )
        spacing = spacing or _floats(_shared(ds, "PixelMeasuresSequence", "PixelSpacing"), 2)
        if thickness is None and _shared(ds, "PixelMeasuresSequence", "SliceThickness"):
            thickness = _floats([_shared(ds, "PixelMeasuresSequence", "SliceThickness")], 1)
        per_frame = _enhanced_per_frame(ds, frames)
        if position is None and per_frame.get("image_position_patient"):
            position = per_frame["image_position_patient"][0]

    rescale: tuple[float, float] | None = None
    if "RescaleSlope" in ds or "RescaleIntercept" in ds:
        slope = _floats([ds.get("RescaleSlope", 1)], 1)
        inter = _floats([ds.get("RescaleIntercept", 0)], 1)
        if slope and inter:
            rescale = (slope[0], inter[0])
    elif _shared(ds, "PixelValueTransformationSequence", "RescaleSlope") is not None:
        slope = _floats([_shared(ds, "PixelValueTransformationSequence", "RescaleSlope")], 1)
        inter = _floats([_shared(ds, "PixelValueTransformationSequence", "RescaleIntercept")], 1)
        if slope and inter:
            rescale = (slope[0], inter[0])

    acq = ds.get("AcquisitionDateTime") or (
        f"{ds.get('AcquisitionDate', '')}{ds.get('AcquisitionTime', '')}".strip() or None
    )
    raw_type = ds.get("ImageType") or []
    image_type = tuple(
        str(v).upper() for v in ([raw_type] if isinstance(raw_type, str) else raw_type)
    )
    return InstanceInfo(
        source=source,
        sha256=sha,
        size=size,
        sop_instance_uid=str(ds.SOPInstanceUID),
        sop_class_uid=sop_class,
        series_instance_uid=str(ds.SeriesInstanceUID),
        study_instance_uid=str(ds.StudyInstanceUID),
        transfer_syntax_uid=tsyntax,
        rows=rows,
        columns=cols,
        samples_per_pixel=spp,
        bits_allocated=bits,
        pixel_representation=_int_or_none(ds.get("PixelRepresentation")) or 0,
        photometric_interpretation=str(ds.get("PhotometricInterpretation", "")),
        n_frames=frames,
        instance_number=_int_or_none(ds.get("InstanceNumber")),
        image_type=image_type,
        orientation=orientation,
        position=position,
        pixel_spacing=spacing,
        slice_thickness=thickness[0] if thickness else None,
        rescale=rescale,
        acquisition_time=str(acq) if acq else None,
        echo_number=_int_or_none(_first_value(ds.get("EchoNumbers"))),
        temporal_position=_int_or_none(ds.get("TemporalPositionIdentifier")),
        acquisition_number=_int_or_none(ds.get("AcquisitionNumber")),
        float_pixels=("FloatPixelData" in ds or "DoubleFloatPixelData" in ds),
        tags=flatten_tags(ds),
        per_frame=per_frame,
    )


def inspect_source(source: Source) -> InstanceInfo:
    """Read ``source`` and inspect it (see :func:`inspect_bytes`)."""
    try:
        data = source.read_bytes()
    except OSError as exc:
        raise InvalidInputError(f"cannot read {source.locator}: {exc}") from exc
    return inspect_bytes(data, source)
