"""SYNTHETIC raw files in ``refscan``, the reference emulator's proprietary-style CT format.

``refscan`` plays a vendor's raw format whose payload the host cannot decode: only the
reference emulator's guest program (``emulators/reference/recon.c``) reconstructs it, one
software version per format revision. This module writes such files for tests and the demo:

- :func:`parallel_beam_sinogram`: exact line integrals of a modified Shepp-Logan head
  (the ellipsoids of :data:`imagelake.synthetic.sinogram.HEAD_ELLIPSOIDS`, cut at the slice
  height) in a parallel-beam geometry (Kak & Slaney eq. 3.45 for an ellipse);
- :func:`write_refscan`: the bytes of revision 1 (fixed little-endian binary header, float32
  payload) or revision 2 (``key=value`` text header, big-endian int16 payload with scale and
  offset), exactly as ``emulators/reference/FORMAT.md`` lays them out.

Conventions shared with the guest program and :func:`imagelake.recon.parallel.fbp_parallel`:
the ray of view angle ``theta`` at detector offset ``s`` is the line
``x cos(theta) + y sin(theta) = s``; detector ``j`` sits at ``s = (j - center) * spacing``;
image array row ``i`` is ``y = (i - (n-1)/2) * pixel`` and column ``j`` is ``x``.

Layer L1: imports numpy and imagelake's L0 only.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imagelake.errors import ConfigError
from imagelake.formats.refscan import REFSCAN_MAGIC, REV1_TEXT_FIELDS
from imagelake.synthetic.sinogram import HEAD_ELLIPSOIDS, MU_WATER_PER_MM, _slice_ellipses

__all__ = [
    "REFSCAN_MAGIC",
    "REFSCAN_PATIENT",
    "RefscanGeometry",
    "parallel_beam_sinogram",
    "refscan_meta",
    "write_refscan",
]

#: the fixed header size of revision 1
REV1_HEADER_BYTES = 1024

#: the patient written into synthetic refscan files
REFSCAN_PATIENT = {
    "patient_name": "SYNTHETIC^REFSCAN^001",
    "patient_id": "SYN-REFSCAN-001",
    "patient_birth_date": "19700101",
    "patient_sex": "O",
}


@dataclass(frozen=True)
class RefscanGeometry:
    """A parallel-beam axial scan: ``n_slices`` independent slices.

    ``angular_range_rad`` is pi for the usual half rotation; views are equally spaced from
    ``start_angle_rad`` over it (the last one excluded). ``center_detector`` is the 0-based,
    fractional detector on the ray through the isocentre (default: the middle).
    """

    n_views: int = 256
    n_detectors: int = 256
    detector_spacing_mm: float = 1.0
    center_detector: float | None = None
    start_angle_rad: float = 0.0
    angular_range_rad: float = math.pi
    n_slices: int = 1
    first_slice_z_mm: float = 0.0
    slice_spacing_mm: float = 5.0
    slice_thickness_mm: float = 5.0
    water_attenuation_per_mm: float = MU_WATER_PER_MM
    kvp: float = 120.0

    def __post_init__(self) -> None:
        if min(self.n_views, self.n_detectors, self.n_slices) < 1:
            raise ConfigError("n_views, n_detectors and n_slices must be >= 1")
        if self.detector_spacing_mm <= 0 or self.angular_range_rad <= 0:
            raise ConfigError("detector_spacing_mm and angular_range_rad must be > 0")

    @property
    def center(self) -> float:
        if self.center_detector is not None:
            return self.center_detector
        return (self.n_detectors - 1) / 2

    def view_angles(self) -> np.ndarray[Any, np.dtype[np.float64]]:
        step = self.angular_range_rad / self.n_views
        return np.asarray(self.start_angle_rad + np.arange(self.n_views) * step, np.float64)

    def detector_offsets(self) -> np.ndarray[Any, np.dtype[np.float64]]:
        s = (np.arange(self.n_detectors) - self.center) * self.detector_spacing_mm
        return np.asarray(s, np.float64)

    def slice_positions(self) -> np.ndarray[Any, np.dtype[np.float64]]:
        z = self.first_slice_z_mm + np.arange(self.n_slices) * self.slice_spacing_mm
        return np.asarray(z, np.float64)


def parallel_beam_sinogram(
    geometry: RefscanGeometry | None = None,
    *,
    radius_mm: float = 110.0,
    ellipsoids: Sequence[Sequence[float]] = HEAD_ELLIPSOIDS,
) -> np.ndarray[Any, np.dtype[np.float32]]:
    """Exact line integrals (attenuation per mm times mm): float32 (slice, view, detector).

    For an ellipse of value ``v`` with semi-axes ``a``, ``b`` turned by ``phi`` and centred at
    ``(x0, y0)``, the projection at angle ``theta`` and offset ``s`` is
    ``2 v a b sqrt(r2 - t^2) / r2`` for ``|t| < sqrt(r2)``, with
    ``r2 = (a cos(theta-phi))^2 + (b sin(theta-phi))^2`` and ``t = s - x0 cos(theta) - y0
    sin(theta)`` (Kak & Slaney eq. 3.45).
    """
    g = geometry or RefscanGeometry()
    theta = g.view_angles()[:, None]
    s = g.detector_offsets()[None, :]
    out = np.zeros((g.n_slices, g.n_views, g.n_detectors), np.float64)
    mu = g.water_attenuation_per_mm
    for k, z in enumerate(g.slice_positions()):
        for value, a, b, x0, y0, phi in _slice_ellipses(z / radius_mm, ellipsoids):
            a, b, x0, y0 = a * radius_mm, b * radius_mm, x0 * radius_mm, y0 * radius_mm
            r2 = (a * np.cos(theta - phi)) ** 2 + (b * np.sin(theta - phi)) ** 2
            t = s - x0 * np.cos(theta) - y0 * np.sin(theta)
            chord = 2 * a * b * np.sqrt(np.maximum(r2 - t * t, 0.0)) / r2
            out[k] += value * mu * chord
    return out.astype(np.float32)


def refscan_meta(**overrides: Any) -> dict[str, Any]:
    """Header values of a synthetic refscan file (a SYNTHETIC patient), with ``overrides``."""
    meta: dict[str, Any] = {
        "manufacturer": "Imagelake Reference",
        "model": "RefScan CT",
        "software_version": "R1.1",
        "device_serial": "RS-0001",
        "station_name": "REFSCAN01",
        "institution": "SYNTHETIC imagelake site",
        "acquired": "2024-03-05T09:30:00",
        "study_uid": "2.25.94017420987310212410419384771051034497",
        "series_uid": "2.25.94017420987310212410419384771051034498",
        "frame_of_reference_uid": "2.25.94017420987310212410419384771051034499",
        "protocol_name": "SYNTHETIC head axial",
        **REFSCAN_PATIENT,
    }
    meta.update(overrides)
    return meta


def _ascii(key: str, value: Any) -> str:
    text = "" if value is None else str(value)
    if any(c in text for c in "\r\n\x00") or not text.isascii():
        raise ConfigError(f"refscan header value {key}={text!r} must be one line of ASCII")
    return text


def _rev1_bytes(sino: np.ndarray[Any, Any], g: RefscanGeometry, meta: Mapping[str, Any]) -> bytes:
    header = bytearray(REV1_HEADER_BYTES)
    header[0:6] = REFSCAN_MAGIC
    struct.pack_into(
        "<HIIII10f",
        header,
        6,
        1,
        REV1_HEADER_BYTES,
        g.n_slices,
        g.n_views,
        g.n_detectors,
        g.detector_spacing_mm,
        g.center,
        g.start_angle_rad,
        g.angular_range_rad,
        g.water_attenuation_per_mm,
        g.first_slice_z_mm,
        g.slice_spacing_mm,
        g.slice_thickness_mm,
        g.kvp,
        0.0,
    )
    for key, (offset, size) in REV1_TEXT_FIELDS.items():
        text = _ascii(key, meta.get(key))
        if key == "acquired" and text:
            text = text.replace("-", "").replace(":", "").replace("T", "")
        raw = text.encode("ascii")
        if len(raw) > size:
            raise ConfigError(f"refscan revision 1 header field {key} holds {size} bytes at most")
        header[offset : offset + len(raw)] = raw
    return bytes(header) + np.ascontiguousarray(sino, "<f4").tobytes()


def _rev2_bytes(sino: np.ndarray[Any, Any], g: RefscanGeometry, meta: Mapping[str, Any]) -> bytes:
    lo, hi = float(sino.min()), float(sino.max())
    scale = max((hi - lo) / 65534.0, 1e-12)
    offset = (hi + lo) / 2.0
    q = np.clip(np.rint((sino - offset) / scale), -32767, 32767).astype(">i2")
    values: dict[str, Any] = {
        "format": "refscan",
        "revision": 2,
        **{k: _ascii(k, v) for k, v in meta.items() if v is not None},
        "slices": g.n_slices,
        "views": g.n_views,
        "detectors": g.n_detectors,
        "detector_spacing_mm": repr(g.detector_spacing_mm),
        "center_detector": repr(g.center),
        "start_angle_deg": repr(math.degrees(g.start_angle_rad)),
        "angular_range_deg": repr(math.degrees(g.angular_range_rad)),
        "mu_water_per_mm": repr(g.water_attenuation_per_mm),
        "first_slice_z_mm": repr(g.first_slice_z_mm),
        "slice_spacing_mm": repr(g.slice_spacing_mm),
        "slice_thickness_mm": repr(g.slice_thickness_mm),
        "kvp": repr(g.kvp),
        "payload_encoding": "int16-be",
        "payload_scale": repr(scale),
        "payload_offset": repr(offset),
        "payload_bytes": q.nbytes,
    }
    for key in values:
        if not key or "=" in key or not key.isascii():
            raise ConfigError(f"refscan revision 2 header key {key!r} is not a plain name")
    text = "".join(f"{k}={v}\n" for k, v in values.items()) + "end=header\n"
    raw = text.encode("ascii")
    head = REFSCAN_MAGIC + struct.pack("<HI", 2, len(raw))
    return head + raw + q.tobytes()


def write_refscan(
    path: str | os.PathLike[str],
    sinogram: np.ndarray[Any, Any],
    *,
    revision: int,
    meta: Mapping[str, Any] | None = None,
    geometry: RefscanGeometry | None = None,
) -> Path:
    """Write a refscan raw file of ``revision`` 1 or 2.

    Parameters
    ----------
    path
        The file to write (its folder is created).
    sinogram
        Line integrals (slice, view, detector), or (view, detector) for one slice.
    revision
        1: fixed binary header, float32 little-endian payload. 2: text header, int16
        big-endian payload quantized with a scale and an offset (see FORMAT.md).
    meta
        Header values (:func:`refscan_meta` by default): manufacturer, model,
        software_version, device_serial, station_name, institution, acquired (ISO),
        study_uid, series_uid, frame_of_reference_uid, patient_name, patient_id,
        patient_birth_date, patient_sex, protocol_name.
    geometry
        The scan; by default :class:`RefscanGeometry` sized like ``sinogram``.
    """
    sino = np.asarray(sinogram, dtype=np.float64)
    if sino.ndim == 2:
        sino = sino[None]
    if sino.ndim != 3:
        raise ConfigError(f"sinogram must be (slice, view, detector), got shape {sino.shape}")
    g = geometry or RefscanGeometry(
        n_slices=sino.shape[0], n_views=sino.shape[1], n_detectors=sino.shape[2]
    )
    if sino.shape != (g.n_slices, g.n_views, g.n_detectors):
        raise ConfigError(
            f"sinogram shape {sino.shape} does not match the geometry "
            f"(slices, views, detectors) = {(g.n_slices, g.n_views, g.n_detectors)}"
        )
    values = refscan_meta() if meta is None else dict(meta)
    if revision == 1:
        data = _rev1_bytes(sino, g, values)
    elif revision == 2:
        data = _rev2_bytes(sino, g, values)
    else:
        raise ConfigError(f"refscan revision {revision!r} is not 1 or 2")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    return out
