"""CT reference reconstruction: equiangular fan-beam filtered back-projection.

Kak & Slaney, *Principles of Computerized Tomographic Imaging*, §3.4.2 (equiangular rays):
weight each projection by ``D cos(gamma)``, convolve with the fan-beam ramp kernel
``g(n a) = 1/(8 a^2)`` (n = 0), ``-1/(2 pi^2 sin^2(n a))`` (n odd), 0 (n even), then
back-project with the ``1/L^2`` weight, ``L`` being the source-to-pixel distance. Each detector
row is reconstructed as its own axial fan (a multi-slice fan beam, no cone-beam correction).
Hounsfield units: ``1000 (mu - mu_water) / mu_water``.

Geometry conventions are those of :mod:`imagelake.formats.ctpd` (source at
``(-rho sin phi, rho cos phi)``, channels counter-clockwise); the image grid's array row is
+y and its column +x (DICOM's patient LPS x and y with the identity orientation).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from imagelake.formats import RawArray, RawContent
from imagelake.recon._base import ReconError, ReconResult, Reconstructor

__all__ = ["CtFanBeamFbp"]


def _geometry(arr: RawArray) -> dict[str, float]:
    attrs = arr.attrs
    needed = (
        "source_isocenter_mm",
        "source_detector_mm",
        "channel_spacing_rad",
        "central_channel",
        "water_attenuation_per_mm",
    )
    missing = [k for k in needed if attrs.get(k) is None]
    if missing:
        raise ReconError(f"ct-fbp: sinogram attrs lack {', '.join(missing)}")
    kind = str(attrs.get("projection_type", "AXIAL")).upper()
    shape = str(attrs.get("detector_shape", "CYLINDRICAL")).upper()
    if kind != "AXIAL":
        raise ReconError(f"ct-fbp: reconstructs AXIAL scans only, not {kind}")
    if shape != "CYLINDRICAL":
        raise ReconError(f"ct-fbp: needs an equiangular (CYLINDRICAL) detector, not {shape}")
    if str(attrs.get("flying_focal_spot", "FFSNONE")).upper() != "FFSNONE":
        raise ReconError("ct-fbp: flying focal spot data is not supported")
    return {k: float(attrs[k]) for k in needed}


def _filtered(
    sino: np.ndarray[Any, Any], fan: np.ndarray[Any, Any], rho: float, dgam: float
) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Pre-weighted, ramp-filtered projections (view, row, channel)."""
    nc = sino.shape[-1]
    n = np.arange(-(nc - 1), nc)
    kernel = np.zeros(n.size)
    kernel[n == 0] = 1.0 / (8.0 * dgam**2)
    odd = n % 2 == 1
    kernel[odd] = -1.0 / (2.0 * math.pi**2 * np.sin(n[odd] * dgam) ** 2)
    nfft = 1 << math.ceil(math.log2(3 * nc))
    weighted = sino * (rho * np.cos(fan))
    spectrum = np.fft.rfft(weighted, nfft, axis=-1) * np.fft.rfft(kernel, nfft)
    full = np.fft.irfft(spectrum, nfft, axis=-1)
    return full[..., nc - 1 : 2 * nc - 1] * dgam


class CtFanBeamFbp(Reconstructor):
    """Axial equiangular fan-beam FBP of a full-rotation sinogram, one slice per detector row.

    Parameters (``run(content, **params)``)
    ---------------------------------------
    matrix
        Image size (default 256).
    fov_mm
        Reconstructed field of view (diameter); ``None``: the scan field of view,
        ``2 rho sin(max fan angle)``.
    """

    name = "ct-fbp"
    version = "1"
    formats = ("dicom-ct-pd",)
    modality = "CT"
    description = "equiangular fan-beam filtered back-projection (Kak & Slaney 3.4.2), HU"
    default_params: ClassVar[Mapping[str, Any]] = {"matrix": 256, "fov_mm": None}

    def reconstruct(
        self, content: RawContent, params: Mapping[str, Any]
    ) -> tuple[ReconResult, list[RawArray]]:
        arr = self._array(content, "sinogram")
        if tuple(arr.dims) != ("view", "row", "channel"):
            raise ReconError(f"ct-fbp: sinogram dims {arr.dims} are not (view, row, channel)")
        g = _geometry(arr)
        n_views, n_rows, n_channels = arr.shape
        angles = np.asarray(arr.coords.get("view", []), np.float64)
        if angles.shape != (n_views,):
            raise ReconError("ct-fbp: the sinogram needs one view angle per view (coords 'view')")
        step = 2 * math.pi / n_views
        span = np.unwrap(angles)
        if n_views < 16 or not np.allclose(np.abs(np.diff(span)), step, rtol=1e-3, atol=1e-5):
            raise ReconError(
                f"ct-fbp: needs a full rotation of equally spaced views; got {n_views} views"
            )
        matrix = int(params["matrix"])
        if not 8 <= matrix <= 2048:
            raise ReconError(f"ct-fbp: matrix {matrix} out of range 8..2048")
        rho, dgam, centre = g["source_isocenter_mm"], g["channel_spacing_rad"], g["central_channel"]
        fan = (np.arange(n_channels) - centre) * dgam
        max_fan = float(np.abs(fan).max())
        fov = params["fov_mm"]
        fov = float(fov) if fov is not None else 2 * rho * math.sin(max_fan)
        pixel = fov / matrix
        sino = arr.load()
        # Filtered projections, with a zero channel either side (rays just off the detector
        # read 0), in float32 and in chunks of views: memory stays about twice the sinogram's.
        padded = np.zeros((n_views, n_rows, n_channels + 2), np.float32)
        for start in range(0, n_views, 64):
            chunk = sino[start : start + 64].astype(np.float64)
            padded[start : start + 64, :, 1:-1] = _filtered(chunk, fan, rho, dgam)

        xs = (np.arange(matrix) - (matrix - 1) / 2) * pixel
        gx, gy = np.meshgrid(xs, xs)  # array row = +y, column = +x
        # Only pixels inside the scan field of view were measured; outside is air.
        radius = rho * math.sin(max_fan)
        measured = (gx * gx + gy * gy <= radius * radius).ravel()
        x = gx.ravel()[measured].astype(np.float32)
        y = gy.ravel()[measured].astype(np.float32)
        mu = np.zeros((n_rows, x.size), np.float32)
        for v in range(n_views):
            sx, sy = -rho * math.sin(angles[v]), rho * math.cos(angles[v])
            vx, vy = x - np.float32(sx), y - np.float32(sy)
            central = math.atan2(-sy, -sx)
            gamma = np.arctan2(vy, vx) - np.float32(central)
            gamma = np.mod(gamma + np.float32(math.pi), np.float32(2 * math.pi)) - np.float32(
                math.pi
            )
            pos = np.clip(gamma / np.float32(dgam) + np.float32(centre + 1), 0, n_channels + 0.999)
            i0 = pos.astype(np.intp)  # floor: pos >= 0
            w = pos - i0
            proj = padded[v]  # (row, channel + 2)
            lo, hi = proj[:, i0], proj[:, i0 + 1]
            mu += (lo + (hi - lo) * w) / (vx * vx + vy * vy)
        mu *= np.float32(step)
        mu_water = g["water_attenuation_per_mm"]
        flat = np.full((n_rows, matrix * matrix), -1000.0, np.float32)
        flat[:, measured] = 1000.0 * (mu - mu_water) / mu_water
        hu = flat.reshape(n_rows, matrix, matrix)

        row_z = np.asarray(arr.coords.get("row", np.zeros(n_rows)), np.float64)
        row_spacing = float(arr.attrs.get("row_spacing_mm") or 0.0)
        source_detector = float(arr.attrs.get("source_detector_mm") or rho)
        thickness = row_spacing * rho / source_detector if row_spacing else 1.0
        result = ReconResult(
            volume=hu,
            pixel_spacing=(pixel, pixel),
            slice_thickness=thickness,
            modality="CT",
            origin=(float(xs[0]), float(xs[0]), float(row_z[0]) if row_z.size else 0.0),
            slice_positions=tuple(float(z) for z in row_z),
            description=f"imagelake {self.name} v{self.version}: fan-beam FBP, ramp kernel",
            units="HU",
        )
        return result, [arr]
