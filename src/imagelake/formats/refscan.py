"""refscan: the reference emulator's CT raw format, whose payload only its emulator decodes.

refscan plays a vendor's proprietary raw format (issue 5): the lake archives the file
byte-exact, reads the scanner metadata and patient identity from its header, links it by the
header's UIDs and routes it to the emulator the knowledge base names for its software version
(``reference-recon@1.0`` for revision 1, ``reference-recon@2.0`` for revision 2). The host
declares **no arrays**: decoding the projections is the emulator's job, by design.

Byte layout (``emulators/reference/FORMAT.md`` is the full description): the magic
``b"RFSCN\\x00"`` and a ``u16`` little-endian revision, then

- revision 1: a fixed 1024-byte little-endian binary header (dimensions, geometry, fixed-width
  NUL-padded ASCII fields), then float32 LE line integrals;
- revision 2: a ``u32`` LE length and a ``key=value`` text header block, then int16 big-endian
  quantized line integrals (``payload_scale``, ``payload_offset``).

The reader checks that the payload the header announces is all there, so a truncated file
raises :class:`RawFormatError` (and is quarantined) instead of being archived as if whole.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Mapping
from typing import Any, ClassVar

from imagelake.formats._base import (
    PatientIdentity,
    RawContent,
    RawFormat,
    RawFormatError,
    RawMeta,
)

__all__ = [
    "REFSCAN_MAGIC",
    "REFSCAN_REVISIONS",
    "REV1_TEXT_FIELDS",
    "RefscanFormat",
    "read_refscan_header",
]

REFSCAN_MAGIC = b"RFSCN\x00"
#: the revisions this reader knows
REFSCAN_REVISIONS = (1, 2)
_REV1_HEADER = 1024
_REV2_MAX_TEXT = 65536
_REV1_NUMBERS = struct.Struct("<IIII10f")  # at offset 8
_REV1_NUMBER_KEYS = (
    "header_bytes", "slices", "views", "detectors", "detector_spacing_mm", "center_detector",
    "start_angle_rad", "angular_range_rad", "mu_water_per_mm", "first_slice_z_mm",
    "slice_spacing_mm", "slice_thickness_mm", "kvp", "reserved",
)  # fmt: skip
#: revision 1 text fields: key -> (offset, size) in the fixed 1024-byte header (FORMAT.md)
REV1_TEXT_FIELDS: Mapping[str, tuple[int, int]] = {
    "manufacturer": (64, 64),
    "model": (128, 32),
    "software_version": (160, 32),
    "device_serial": (192, 32),
    "station_name": (224, 32),
    "institution": (256, 64),
    "acquired": (320, 16),  # YYYYMMDDHHMMSS
    "study_uid": (336, 64),
    "series_uid": (400, 64),
    "frame_of_reference_uid": (464, 64),
    "patient_name": (528, 64),
    "patient_id": (592, 64),
    "patient_birth_date": (656, 8),
    "patient_sex": (664, 4),
    "protocol_name": (668, 64),
}
_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+$")
_DATE = re.compile(r"^\d{8}$")
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$")


def _uid(value: str | None) -> str | None:
    return value if value and len(value) <= 64 and _UID.match(value) else None


def _rev1(path: str, head: bytes, size: int) -> dict[str, Any]:
    if len(head) < _REV1_HEADER:
        raise RawFormatError(f"{path}: truncated refscan revision 1 header ({size} bytes)")
    numbers = dict(zip(_REV1_NUMBER_KEYS, _REV1_NUMBERS.unpack_from(head, 8), strict=True))
    if numbers["header_bytes"] != _REV1_HEADER:
        raise RawFormatError(
            f"{path}: refscan revision 1 header size {numbers['header_bytes']}, expected 1024"
        )
    fields: dict[str, Any] = {k: v for k, v in numbers.items() if k != "reserved"}
    for key, (offset, width) in REV1_TEXT_FIELDS.items():
        raw = head[offset : offset + width].split(b"\x00", 1)[0]
        try:
            fields[key] = raw.decode("ascii").strip()
        except UnicodeDecodeError:
            raise RawFormatError(f"{path}: header field {key} is not ASCII") from None
    acquired = fields.get("acquired", "")
    if len(acquired) == 14 and acquired.isdigit():
        a = acquired
        fields["acquired"] = f"{a[:4]}-{a[4:6]}-{a[6:8]}T{a[8:10]}:{a[10:12]}:{a[12:14]}"
    else:
        fields["acquired"] = ""
    fields["payload_encoding"] = "float32-le"
    fields["payload_offset_bytes"] = _REV1_HEADER
    return fields


def _rev2(path: str, fh: Any, size: int) -> dict[str, Any]:
    fh.seek(8)
    raw_len = fh.read(4)
    if len(raw_len) < 4:
        raise RawFormatError(f"{path}: truncated refscan revision 2 header ({size} bytes)")
    (text_len,) = struct.unpack("<I", raw_len)
    if text_len > _REV2_MAX_TEXT:
        raise RawFormatError(f"{path}: refscan revision 2 text header of {text_len} bytes")
    block = fh.read(text_len)
    if len(block) < text_len:
        raise RawFormatError(f"{path}: truncated refscan revision 2 text header")
    try:
        text = block.decode("ascii")
    except UnicodeDecodeError:
        raise RawFormatError(f"{path}: refscan revision 2 text header is not ASCII") from None
    fields: dict[str, Any] = {}
    for number, line in enumerate(text.split("\n"), 1):
        if not line:
            continue
        key, sep, value = line.partition("=")
        if not sep or not key:
            raise RawFormatError(f"{path}: text header line {number} is not key=value")
        fields[key] = value
    if fields.get("end") != "header":
        raise RawFormatError(f"{path}: refscan revision 2 text header lacks end=header")
    numbers: dict[str, Any] = {}
    for key in ("slices", "views", "detectors", "payload_bytes"):
        try:
            numbers[key] = int(fields[key])
        except (KeyError, ValueError):
            raise RawFormatError(f"{path}: header key {key} is missing or not an integer") from None
    fields.update(numbers)
    fields["payload_offset_bytes"] = 12 + text_len
    return fields


def read_refscan_header(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Every header field of a refscan file (both revisions), as a dict; checks its length.

    Keys: ``revision``, ``slices``, ``views``, ``detectors``, the text fields
    (``manufacturer``... ``patient_id``; ``acquired`` as ISO local time or ``""``),
    ``payload_encoding``, ``payload_offset_bytes`` and the revision's own numbers. Holds
    patient identity: never log it.
    """
    p = os.fspath(path)
    size = os.path.getsize(p)
    with open(p, "rb") as fh:
        head = fh.read(_REV1_HEADER)
        if len(head) < 8 or head[:6] != REFSCAN_MAGIC:
            raise RawFormatError(f"{p}: not a refscan file (no RFSCN magic)")
        (revision,) = struct.unpack_from("<H", head, 6)
        if revision == 1:
            fields = _rev1(p, head, size)
            width = 4
        elif revision == 2:
            fields = _rev2(p, fh, size)
            width = 2
        else:
            raise RawFormatError(
                f"{p}: refscan revision {revision} is unknown to this reader (knows "
                f"{', '.join(map(str, REFSCAN_REVISIONS))}); update imagelake"
            )
    fields["revision"] = revision
    dims = [fields["slices"], fields["views"], fields["detectors"]]
    if min(dims) < 1 or max(dims) > 65536:
        raise RawFormatError(f"{p}: implausible dimensions {dims} (slices, views, detectors)")
    expected = dims[0] * dims[1] * dims[2] * width
    if revision == 2 and fields["payload_bytes"] != expected:
        raise RawFormatError(
            f"{p}: payload_bytes {fields['payload_bytes']} does not match the dimensions"
        )
    have = size - int(fields["payload_offset_bytes"])
    if have < expected:
        raise RawFormatError(f"{p}: truncated refscan payload ({max(have, 0)} of {expected} bytes)")
    return fields


class RefscanFormat(RawFormat):
    """The reference emulator's proprietary-style CT raw format (header only; no arrays)."""

    name: ClassVar[str] = "refscan"
    description: ClassVar[str] = (
        "Imagelake Reference RefScan CT raw projections (revisions 1-2); payload decoded "
        "only by the reference-recon emulator"
    )
    modality: ClassVar[str | None] = "CT"
    patterns: ClassVar[tuple[str, ...]] = ("*.rfs", "*.refscan")
    magic: ClassVar[tuple[tuple[int, bytes], ...]] = ((0, REFSCAN_MAGIC),)
    priority: ClassVar[int] = 20
    readable: ClassVar[bool] = False

    def open(self, path: str | os.PathLike[str]) -> RawContent:
        p = os.fspath(path)
        fields = read_refscan_header(p)

        def text(key: str) -> str | None:
            value = fields.get(key)
            return str(value).strip() or None if value is not None else None

        birth = text("patient_birth_date")
        acquired = text("acquired")
        series = _uid(text("series_uid"))
        meta = RawMeta(
            modality="CT",
            manufacturer=text("manufacturer"),
            model=text("model"),
            software_version=text("software_version"),
            device_serial=text("device_serial"),
            station_name=text("station_name"),
            institution=text("institution"),
            acquired_at=acquired if acquired and _ISO.match(acquired) else None,
            study_instance_uid=_uid(text("study_uid")),
            frame_of_reference_uid=_uid(text("frame_of_reference_uid")),
            series_instance_uids=(series,) if series else (),
            protocol_name=text("protocol_name"),
            patient=PatientIdentity(
                patient_id=text("patient_id"),
                name=text("patient_name"),
                birth_date=birth if birth and _DATE.match(birth) else None,
            ),
            extra={
                "refscan_revision": int(fields["revision"]),
                "slices": int(fields["slices"]),
                "views": int(fields["views"]),
                "detectors": int(fields["detectors"]),
                "payload_encoding": str(fields.get("payload_encoding", "")),
                "payload_decodable_by_host": False,
            },
        )
        return RawContent(format=self.name, meta=meta, arrays={}, members=(p,))
