"""Helpers for the raw-header anonymization tests: what identifies someone in a raw file.

What counts as identifying is decided here from the files themselves (twixtools' parsed header,
the DICOM of the CT-PD views), independently of the key lists the anonymizer uses.
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

SECRET = b"imagelake-raw-test-secret-012345"

# header keys (twixtools' parsed header, any buffer) whose values name or locate the patient,
# the visit, the site or the device, chosen from what the keys mean
_TWIX_IDENTIFYING = re.compile(
    r"(?i)(patient(s)?(name|id|birth)|institution|serialnumber|stationname|physician|operator"
    r"|loid|uid$|frameofreference|referenceimage|exammemory|dicom_uid_root)"
)

# injected into the TWIX samples' blank (x-filled) identity fields, same lengths
TWIX_INJECTED = {
    "PatientName": b"PHINAME",  # 7 characters, as the samples' "xxxxxxx"
    "PatientBirthDay": b"19710517",
}
TWIX_INJECTED_ID = b"PHI-TWIX-PID-424242"
TWIX_RAID_NAME = b"PHI^RAIDPATIENT"


def encodings(value: str | bytes) -> list[bytes]:
    """``value`` as ASCII/UTF-8, UTF-16-LE and as MATLAB/UFF uint16 character codes."""
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    out = [text.encode("utf-8"), text.encode("utf-16-le")]
    out.append(np.array([ord(c) for c in text], dtype="<u2").tobytes())
    out.append(np.array([ord(c) for c in text], dtype=">u2").tobytes())
    return out


def leaks(data: bytes, values: Iterable[str | bytes]) -> list[str]:
    """Indices (never the values: they are PHI-like) of ``values`` found in ``data``."""
    found = []
    for i, value in enumerate(values):
        if any(e in data for e in encodings(value)):
            found.append(f"value #{i} ({len(value)} chars)")
    return found


def read_twix(path: Path) -> list[dict[str, Any]]:
    import twixtools

    with contextlib.redirect_stdout(io.StringIO()):
        return list(twixtools.read_twix(str(path), verbose=False, keep_acqend=True))


def _walk(obj: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _walk(v, f"{path}.{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _walk(v, f"{path}[{i}]")
    else:
        yield path, obj


def twix_identifying_values(path: Path) -> set[str]:
    """Every identifying value twixtools finds in the header of ``path`` (x-placeholders out)."""
    values: set[str] = set()
    for scan in read_twix(path):
        for buffer, content in scan["hdr"].items():
            if buffer.endswith("_raw"):
                continue
            for key, value in _walk(content, buffer):
                leaf = key.rsplit(".", 1)[-1]
                if not _TWIX_IDENTIFYING.search(leaf):
                    continue
                if isinstance(value, float) and value.is_integer():
                    if abs(value) > 1e12:
                        continue  # a long digit string twixtools parsed as a float
                    value = int(value)
                text = str(value).strip().strip('"')
                if len(text) >= 4 and set(text) - {"x"} and text not in ("True", "False"):
                    values.add(text)
    return values


def twix_uid_values(path: Path) -> dict[str, str]:
    """FrameOfReference and tReferenceImage* of the last measurement (original strings)."""
    hdr = read_twix(path)[-1]["hdr"]
    out: dict[str, str] = {}
    for buffer in ("Meas", "MeasYaps", "Config"):
        for key, value in hdr.get(buffer, {}).items():
            if key == "FrameOfReference" or re.fullmatch(r"tReferenceImage\d", key):
                out.setdefault(key, str(value).strip())
    return out


def inject_twix_identity(src: Path, dest: Path) -> Path:
    """Copy a TWIX sample, writing fake identity into its x-filled identity fields.

    Same byte lengths, so the copy stays a valid TWIX file; the multi-raid header's patient
    name field gets :data:`TWIX_RAID_NAME`.
    """
    data = bytearray(src.read_bytes())
    for key, value in TWIX_INJECTED.items():
        pattern = re.compile(rb'(<ParamString\."' + key.encode() + rb'">\s*\{[^"}]*")(x+)(")')
        for m in list(pattern.finditer(data)):
            if len(m.group(2)) == len(value):
                data[m.start(2) : m.end(2)] = value
    pid = re.compile(rb'(<ParamString\."PatientID">\s*\{[^"}]*")(x+)(")')
    for m in list(pid.finditer(data)):
        width = len(m.group(2))
        data[m.start(2) : m.end(2)] = TWIX_INJECTED_ID.ljust(width, b" ")[:width]
    count = int(np.frombuffer(bytes(data[4:8]), dtype="<u4")[0])
    for k in range(count):
        base = 8 + k * 152 + 24
        data[base : base + 64] = TWIX_RAID_NAME.ljust(64, b"\x00")
    dest.write_bytes(bytes(data))
    return dest
