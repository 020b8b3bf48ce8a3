"""Parallel-beam filtered back-projection in numpy: the host's check of the reference emulator.

Kak & Slaney, *Principles of Computerized Tomographic Imaging*, §3.3.3: each projection is
convolved with the band-limited ramp (Ram-Lak) kernel sampled at the detector spacing ``d``,
``h(0) = 1/(4 d^2)``, ``h(n odd) = -1/(n pi d)^2``, ``h(n even) = 0``, times ``d``, then
back-projected with linear interpolation and scaled by the angle step. It is the same
algorithm as the reference emulator's guest program (``emulators/reference/recon.c``), in
double precision, so the emulator's images can be compared with it pixel by pixel.

It is a plain function, not a registered reconstructor: the host cannot decode refscan
payloads (by design), only tests and benchmarks hand it a sinogram they made.

Geometry: the ray of angle ``theta`` at detector offset ``s`` is the line
``x cos(theta) + y sin(theta) = s``; detector ``j`` sits at ``s = (j - center) * d``; image
array row ``i`` is ``y = (i - (n-1)/2) * pixel_mm`` and column ``j`` is ``x``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from imagelake.recon._base import ReconError

__all__ = ["fbp_parallel", "ramp_kernel"]


def ramp_kernel(n_detectors: int, spacing_mm: float) -> np.ndarray[Any, np.dtype[np.float64]]:
    """The spatial ramp kernel ``h(n)`` for ``n = -(N-1) .. N-1`` (length ``2N - 1``)."""
    n = np.arange(-(n_detectors - 1), n_detectors)
    h = np.zeros(n.size)
    h[n == 0] = 1.0 / (4.0 * spacing_mm**2)
    odd = n % 2 == 1
    h[odd] = -1.0 / (n[odd].astype(np.float64) * math.pi * spacing_mm) ** 2
    return h


def fbp_parallel(
    sinogram: np.ndarray[Any, Any],
    angles: np.ndarray[Any, Any],
    *,
    detector_spacing_mm: float = 1.0,
    center: float | None = None,
    matrix: int = 256,
    pixel_mm: float | None = None,
    angular_range_rad: float | None = None,
) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Reconstruct one slice from parallel-beam line integrals.

    Parameters
    ----------
    sinogram
        Line integrals (view, detector).
    angles
        View angles (rad), equally spaced.
    detector_spacing_mm
        Detector sampling ``d``.
    center
        0-based (fractional) detector on the ray through the isocentre; default the middle.
    matrix, pixel_mm
        Image size in pixels and pixel size (default: the detector extent over ``matrix``).
    angular_range_rad
        Range the views cover (default ``pi``: a half rotation); the back-projection is
        scaled by ``range / views``.

    Returns
    -------
    numpy.ndarray
        ``matrix`` x ``matrix`` float64, in the sinogram's unit per mm (attenuation per mm
        for line integrals of attenuation).
    """
    sino = np.asarray(sinogram, dtype=np.float64)
    theta = np.asarray(angles, dtype=np.float64)
    if sino.ndim != 2 or theta.shape != (sino.shape[0],):
        raise ReconError(
            f"fbp_parallel: need a (view, detector) sinogram and one angle per view, "
            f"got {sino.shape} and {theta.shape}"
        )
    n_views, n_det = sino.shape
    d = float(detector_spacing_mm)
    c = (n_det - 1) / 2 if center is None else float(center)
    px = n_det * d / matrix if pixel_mm is None else float(pixel_mm)
    span = math.pi if angular_range_rad is None else float(angular_range_rad)
    h = ramp_kernel(n_det, d)
    # full convolution, then keep the N outputs aligned with the detectors
    filtered = np.stack([np.convolve(p, h)[n_det - 1 : 2 * n_det - 1] for p in sino]) * d
    coords = (np.arange(matrix) - (matrix - 1) / 2) * px
    x, y = coords[None, :], coords[:, None]
    image = np.zeros((matrix, matrix))
    detectors = np.arange(n_det)
    for q, t in zip(filtered, theta, strict=True):
        u = (x * math.cos(t) + y * math.sin(t)) / d + c
        inside = (u >= 0) & (u <= n_det - 1)
        image += np.where(inside, np.interp(u, detectors, q), 0.0)
    return image * (span / n_views)
