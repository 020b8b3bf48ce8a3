"""Anthropomorphic-ish phantoms and spatially correlated noise (all SYNTHETIC).

A phantom is a list of elliptic cylinders in patient coordinates (mm, LPS), each with a
profile along z that scales it (0 = absent): body, fat, organs, lungs whose size follows the
scan, vertebrae and ribs repeating along z, spherical lesions. The same description renders
any plane; the axial path paints only each shape's bounding box, so a 512×512 slice costs a
few milliseconds.

Noise is white noise low-pass filtered in the Fourier domain: neighbouring pixels correlate
like the noise of a real reconstruction, unlike independent per-pixel noise.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

__all__ = [
    "CTPhantom",
    "CorrelatedNoise",
    "MRPhantom",
    "correlated_noise",
    "kernel_noise",
]

Array = npt.NDArray[Any]
FloatImage = npt.NDArray[np.float32]
#: Scale of a shape as a function of (t, z): t is the position along the scan (0 = first,
#: superior end; 1 = last), z the patient coordinate in mm. 0 means absent.
Profile = Callable[[Array, Array], Array]


class CorrelatedNoise:
    """A source of Gaussian-like noise fields with a Gaussian noise power spectrum.

    Parameters
    ----------
    shape
        ``(rows, columns)`` of each field.
    cutoff
        Standard deviation of the Gaussian low-pass filter, in cycles per pixel (0 < cutoff);
        smaller is smoother. 0.12 gives a neighbour correlation of about 0.85.
    std
        Standard deviation of each field.
    rng
        The generator the fields are drawn from (deterministic for a seeded generator).

    Notes
    -----
    The spectrum is drawn directly (uniform real and imaginary parts, which the inverse FFT
    sums into Gaussian values) and shaped by the filter, so each field costs one inverse FFT.
    """

    def __init__(
        self, shape: tuple[int, int], *, cutoff: float, std: float, rng: np.random.Generator
    ) -> None:
        rows, cols = shape
        if rows < 2 or cols < 2 or cutoff <= 0:
            raise ValueError(f"need shape >= (2, 2) and cutoff > 0, got {shape}, {cutoff}")
        fy = np.fft.fftfreq(rows)[:, None]
        fx_half = np.fft.rfftfreq(cols)[None, :]
        fx_full = np.fft.fftfreq(cols)[None, :]
        self._filter = np.exp(-(fy**2 + fx_half**2) / (2 * cutoff**2)).astype(np.float32)
        # Variance of the inverse transform: each coefficient has E|X|^2 = 2/12 (two uniform
        # parts), and numpy's backward normalisation divides by N; sum over the full plane.
        power = np.exp(-(fy**2 + fx_full**2) / cutoff**2).sum()
        n = rows * cols
        self._scale = np.float32(std / (math.sqrt(2.0 / 12.0 * power) / n))
        self._shape = shape
        self._rng = rng

    def __call__(self) -> FloatImage:
        """Draw the next field, float32 of the configured shape."""
        rows, cols = self._shape
        half = self._rng.random((rows, cols // 2 + 1, 2), dtype=np.float32)
        half -= np.float32(0.5)
        spectrum = half.view(np.complex64)[..., 0]
        spectrum *= self._filter
        field = np.fft.irfft2(spectrum, s=self._shape)
        field *= self._scale
        return field.astype(np.float32, copy=False)


def correlated_noise(
    shape: tuple[int, int], *, std: float = 15.0, cutoff: float = 0.12, seed: int = 0
) -> FloatImage:
    """One spatially correlated noise field (see :class:`CorrelatedNoise`).

    Parameters
    ----------
    shape
        ``(rows, columns)``.
    std
        Standard deviation of the field.
    cutoff
        Low-pass filter width in cycles per pixel.
    seed
        Seed of the random generator.

    Returns
    -------
    numpy.ndarray
        float32 array of ``shape``.
    """
    return CorrelatedNoise(shape, cutoff=cutoff, std=std, rng=np.random.default_rng(seed))()


_NAMED_KERNELS = {"SOFT": 30, "STANDARD": 40, "DETAIL": 55, "CHEST": 60, "LUNG": 70, "BONE": 70}


def kernel_noise(kernel: str, slice_thickness: float) -> tuple[float, float]:
    """Noise of a reconstruction kernel: ``(std in HU, cutoff in cycles/pixel)``.

    Siemens-style names (``Br40``, ``Qr40``, ``Bv36``) are read by their number (higher is
    sharper: more, finer noise); GE names (``STANDARD``, ``BONE``...) by a table; anything
    else counts as a standard kernel. The standard deviation falls with the square root of
    the slice thickness, as it does for real reconstructions.
    """
    name = kernel.strip().upper()
    match = re.search(r"(\d{2})", name)
    sharpness = _NAMED_KERNELS.get(name, int(match.group(1)) if match else 40)
    if name.startswith("FC"):  # Canon numbers kernels by family, not sharpness
        sharpness = 40
    ratio = min(max(sharpness, 20), 80) / 40.0
    std = 15.0 * ratio**0.7 / math.sqrt(max(slice_thickness, 0.1))
    return std, 0.12 * math.sqrt(ratio)


# --------------------------------------------------------------------------- shapes


@dataclass(frozen=True)
class _Shape:
    """An elliptic cylinder along z: inside where ((x-cx)/a)^2 + ((y-cy)/b)^2 < profile^2."""

    value: float
    cx: float
    cy: float
    a: float
    b: float
    profile: Profile
    gradient_y: float = 0.0  # value change per mm of y (e.g. gravity-dependent lung density)
    mode: Literal["set", "add"] = "set"

    def r2(self, x: Array, y: Array) -> Array:
        return ((x - self.cx) / self.a) ** 2 + ((y - self.cy) / self.b) ** 2

    def paint(self, image: Array, x: Array, y: Array, scale: Array) -> Array:
        """Paint into ``image`` (broadcast coordinates); return the mask painted."""
        mask = np.asarray(self.r2(x, y) < scale * scale)
        self.fill(image, mask, y)
        return mask

    def fill(self, image: Array, mask: Array, y: Array) -> None:
        """Set (or add) this shape's value where ``mask`` holds."""
        value: Array | float = self.value
        if self.gradient_y:
            value = np.broadcast_to(self.value + self.gradient_y * y, image.shape)[mask]
        if self.mode == "add":
            image[mask] += value
        else:
            image[mask] = value


def _span(
    t0: float, t1: float, shape: Literal["flat", "dome"] = "flat", power: float = 0.5
) -> Profile:
    def profile(t: Array, z: Array) -> Array:
        u = (np.asarray(t) - t0) / (t1 - t0)
        inside = (u > 0) & (u < 1)
        if shape == "flat":
            return np.where(inside, 1.0, 0.0)
        return np.where(inside, np.abs(np.sin(np.pi * np.clip(u, 0, 1))) ** power, 0.0)

    return profile


def _periodic(period: float, duty: float, phase: float, t0: float, t1: float) -> Profile:
    def profile(t: Array, z: Array) -> Array:
        frac = np.mod(np.asarray(z) / period + phase, 1.0)
        t = np.asarray(t)
        return np.where((frac < duty) & (t >= t0) & (t <= t1), 1.0, 0.0)

    return profile


def _sphere(cz: float, radius: float) -> Profile:
    def profile(t: Array, z: Array) -> Array:
        return np.sqrt(np.clip(1.0 - ((np.asarray(z) - cz) / radius) ** 2, 0.0, None))

    return profile


def _grow(t0: float, t1: float, start: float, end: float) -> Profile:
    def profile(t: Array, z: Array) -> Array:
        u = np.clip((np.asarray(t) - t0) / (t1 - t0), 0.0, 1.0)
        return start + (end - start) * u

    return profile


def _bbox(shape: _Shape, scale: float, xs: Array, ys: Array) -> tuple[slice, slice]:
    """Row and column slices of the ascending axes ``ys``/``xs`` that can hold the shape."""
    ha, hb = shape.a * scale, shape.b * scale
    c0, c1 = np.searchsorted(xs, [shape.cx - ha, shape.cx + ha])
    r0, r1 = np.searchsorted(ys, [shape.cy - hb, shape.cy + hb])
    return slice(int(r0), int(r1)), slice(int(c0), int(c1))


# --------------------------------------------------------------------------- CT


class CTPhantom:
    """An anthropomorphic-ish chest/upper-abdomen CT phantom in Hounsfield units.

    Anatomy follows the position along the scan, ``t`` = 0 at ``z_top`` (superior) to 1 at
    ``z_bottom``, so any series length shows lung apices, heart, diaphragm and liver.

    Parameters
    ----------
    z_top, z_bottom
        Patient z (mm) of the first and last slice of the scan.
    seed
        Places the lesions and the lung vessels.

    Notes
    -----
    Air -1000, fat -100, soft tissue 40-60, lungs about -850 (denser posteriorly, changing
    size along z) with vessels, vertebrae 700 inside a 1150 cortex, ribs 900, a few lung
    nodules (30) and a hypodense liver lesion (15).
    """

    def __init__(self, z_top: float, z_bottom: float, seed: int = 0) -> None:
        self.z_top, self.z_bottom = z_top, z_bottom
        self.seed = seed
        rng = np.random.default_rng([seed, 0xC7])
        extent = abs(z_top - z_bottom)
        always = _span(-1.0, 2.0)
        lung_l, lung_r = _span(0.0, 0.78, "dome", 0.45), _span(0.0, 0.72, "dome", 0.45)
        shapes = [
            _Shape(-100.0, 0.0, 0.0, 170.0, 120.0, _grow(0.0, 1.0, 0.96, 1.06)),  # body: fat
            _Shape(45.0, 0.0, 2.0, 156.0, 106.0, _grow(0.0, 1.0, 0.96, 1.06)),  # muscle/organs
            _Shape(58.0, -62.0, 5.0, 88.0, 80.0, _span(0.55, 1.3, "dome", 0.3)),  # liver
            _Shape(48.0, 88.0, 35.0, 36.0, 46.0, _span(0.68, 1.3, "dome", 0.5)),  # spleen
            _Shape(32.0, 62.0, 62.0, 24.0, 34.0, _span(0.86, 1.3, "dome", 0.5)),  # kidneys
            _Shape(32.0, -62.0, 62.0, 24.0, 34.0, _span(0.88, 1.3, "dome", 0.5)),
            _Shape(-850.0, 76.0, -6.0, 58.0, 82.0, lung_l, gradient_y=0.35),  # left lung
            _Shape(-850.0, -76.0, -6.0, 62.0, 84.0, lung_r, gradient_y=0.35),  # right lung
            _Shape(42.0, 18.0, -22.0, 58.0, 46.0, _span(0.3, 0.72, "dome", 0.5)),  # heart
            _Shape(44.0, 30.0, 28.0, 13.0, 13.0, always),  # descending aorta
            _Shape(-1000.0, 0.0, -32.0, 9.0, 8.0, _span(-1.0, 0.28)),  # trachea
        ]
        self._lungs = (shapes[6], shapes[7])
        self._lung_ids = {id(shapes[6]), id(shapes[7])}
        for k, angle in enumerate((28, 55, 85, 118, 148, -28, -55, -85, -118, -148)):
            rad = math.radians(angle)  # ribs, cut obliquely as the z plane moves
            shapes.append(
                _Shape(
                    900.0,
                    150.0 * math.sin(rad),
                    -100.0 * math.cos(rad) + 8.0,
                    7.0,
                    5.0,
                    _periodic(26.0, 0.35, 0.13 * k, 0.02, 0.8),
                )
            )
        shapes += [
            _Shape(1150.0, 0.0, 58.0, 19.0, 17.0, always),  # vertebral cortex
            _Shape(700.0, 0.0, 58.0, 16.0, 14.0, always),  # cancellous bone
            _Shape(85.0, 0.0, 58.0, 19.5, 17.5, _periodic(28.0, 0.2, 0.0, -1.0, 2.0)),  # disc
            _Shape(900.0, 0.0, 96.0, 7.0, 13.0, _periodic(28.0, 0.55, 0.1, -1.0, 2.0)),  # arch
            _Shape(15.0, 0.0, 84.0, 8.0, 8.0, always),  # spinal canal
        ]
        for k in range(3):  # lung nodules, inside a lung at mid-scan
            lung = self._lungs[k % 2]
            t = float(rng.uniform(0.2, 0.55))
            radius = float(rng.uniform(4.0, 9.0))
            shapes.append(
                _Shape(
                    30.0,
                    lung.cx + float(rng.uniform(-0.45, 0.45)) * lung.a,
                    lung.cy + float(rng.uniform(-0.45, 0.45)) * lung.b,
                    radius,
                    radius,
                    _sphere(self.z_of(t), radius),
                )
            )
        radius = float(rng.uniform(10.0, 16.0))
        shapes.append(
            _Shape(
                15.0,
                -75.0 + float(rng.uniform(-15, 15)),
                10.0 + float(rng.uniform(-20, 20)),
                radius,
                radius,
                _sphere(self.z_of(0.85), min(radius, max(extent / 3, 1.0))),
            )
        )
        self._shapes = tuple(shapes)
        self._vessel_seed = int(rng.integers(2**31))

    def z_of(self, t: float) -> float:
        """Patient z (mm) at position ``t`` along the scan."""
        return self.z_top + t * (self.z_bottom - self.z_top)

    def t_of(self, z: Array | float) -> Array:
        """Position along the scan (0 at ``z_top``, 1 at ``z_bottom``) of patient z."""
        if self.z_top == self.z_bottom:
            return np.full(np.shape(z), 0.5)
        return (np.asarray(z, dtype=np.float64) - self.z_top) / (self.z_bottom - self.z_top)

    def plane(self, x: Array, y: Array, z: Array) -> FloatImage:
        """Render any plane from broadcastable patient coordinates (mm); HU, float32."""
        shape = np.broadcast_shapes(np.shape(x), np.shape(y), np.shape(z))
        image = np.full(shape, -1000.0, dtype=np.float32)
        t = self.t_of(z)
        for s in self._shapes:
            s.paint(image, x, y, s.profile(t, np.asarray(z)))
        return image

    def axial_renderer(self, xs: Array, ys: Array) -> Callable[[float], FloatImage]:
        """A fast renderer of axial slices on the grid of ascending ``xs`` × ``ys`` (mm).

        Returns a function of patient z giving the slice in HU (float32, rows × columns).
        """
        xs = np.asarray(xs, dtype=np.float32)
        ys = np.asarray(ys, dtype=np.float32)
        pixel = float(abs(xs[1] - xs[0])) if xs.size > 1 else 1.0
        # Lung vessels: the zero level set of a smooth field that turns slowly with z draws
        # thin branching tubes that continue from slice to slice.
        rng = np.random.default_rng(self._vessel_seed)
        cutoff = min(0.45, 0.035 * pixel)
        fields = CorrelatedNoise((ys.size, xs.size), cutoff=cutoff, std=1.0, rng=rng)
        v1, v2 = fields(), fields()

        # Precomputed maps: each shape's normalised squared radius over the largest box it
        # can fill; a slice then costs one comparison per shape.
        z_all = self.z_top + np.linspace(0.0, 1.0, 1025) * (self.z_bottom - self.z_top)
        maps = []
        for s in self._shapes:
            largest = max(1.0, float(np.max(s.profile(self.t_of(z_all), np.asarray(z_all)))))
            rows, cols = _bbox(s, largest, xs, ys)
            maps.append((rows.start, cols.start, s.r2(xs[None, cols], ys[rows, None])))

        def render(z: float) -> FloatImage:
            image = np.full((ys.size, xs.size), -1000.0, dtype=np.float32)
            t, zz = self.t_of(z), np.asarray(z)
            for s, (r0, c0, r2) in zip(self._shapes, maps, strict=True):
                scale = float(s.profile(t, zz))
                if scale <= 0:
                    continue
                rows, cols = _bbox(s, scale, xs, ys)
                window = image[rows, cols]
                if window.size == 0:
                    continue
                mask = r2[rows.start - r0 : rows.stop - r0, cols.start - c0 : cols.stop - c0]
                mask = mask < scale * scale
                s.fill(window, mask, ys[rows, None])
                if id(s) in self._lung_ids:
                    theta = 2 * math.pi * z / 45.0
                    vessel = np.abs(
                        math.cos(theta) * v1[rows, cols] + math.sin(theta) * v2[rows, cols]
                    )
                    window[mask & (vessel < 0.12)] = 40.0
            return image

        return render


# --------------------------------------------------------------------------- MR

#: Relative signal of the MR phantom's tissues per weighting.
_MR_SIGNAL = {
    "T1": {"fat": 950, "bone": 60, "csf": 180, "gm": 520, "wm": 760, "lesion": 380},
    "T2": {"fat": 620, "bone": 40, "csf": 1500, "gm": 820, "wm": 560, "lesion": 1250},
}


class MRPhantom:
    """A brain-like MR phantom: scalp, skull, CSF, grey and white matter, ventricles, a lesion.

    Ellipsoids centred at the origin of patient coordinates (mm); renders any plane.

    Parameters
    ----------
    weighting
        ``"T1"`` (white matter bright, CSF dark) or ``"T2"`` (CSF bright).
    seed
        Places the lesion.
    """

    def __init__(self, weighting: Literal["T1", "T2"] = "T1", seed: int = 0) -> None:
        if weighting not in _MR_SIGNAL:
            raise ValueError(f"weighting must be one of {sorted(_MR_SIGNAL)}, got {weighting!r}")
        sig = _MR_SIGNAL[weighting]
        rng = np.random.default_rng([seed, 0x3A])
        lesion = (
            float(rng.uniform(-35, 35)),
            float(rng.uniform(-40, 30)),
            float(rng.uniform(5, 35)),
        )
        # (value, centre, semi-axes, folding amplitude), painted in order
        self._ellipsoids: tuple[
            tuple[float, tuple[float, float, float], tuple[float, float, float], float], ...
        ] = (
            (sig["fat"], (0, 0, 0), (76, 96, 104), 0.0),
            (sig["bone"], (0, 0, 0), (71, 91, 99), 0.0),
            (sig["csf"], (0, 0, 2), (67, 87, 94), 0.0),
            (sig["gm"], (0, 0, 2), (64, 84, 90), 0.035),  # sulci cut into the cortex
            (sig["wm"], (0, 0, 4), (55, 74, 78), 0.10),  # gyri: white matter fingers
            (sig["csf"], (-10, -4, 10), (7, 26, 13), 0.0),  # lateral ventricles
            (sig["csf"], (10, -4, 10), (7, 26, 13), 0.0),
            (sig["lesion"], lesion, (7, 7, 7), 0.0),
        )
        # Cortical folding: a smooth 3-D field of a few plane waves of ~20 mm wavelength.
        directions = rng.normal(size=(8, 3))
        self._waves = (
            directions / np.linalg.norm(directions, axis=1, keepdims=True) * (2 * np.pi / 20.0)
        )
        self._phases = rng.uniform(0, 2 * np.pi, size=8)

    def _folding(self, x: Array, y: Array, z: Array) -> Array:
        total: Array = np.zeros(np.broadcast_shapes(np.shape(x), np.shape(y), np.shape(z)))
        for (kx, ky, kz), phase in zip(self._waves, self._phases, strict=True):
            total = total + np.sin(kx * x + ky * y + kz * z + phase)
        return total / np.sqrt(len(self._phases) / 2)

    def plane(self, x: Array, y: Array, z: Array) -> FloatImage:
        """Render noise-free signal on broadcastable patient coordinates (mm), float32."""
        shape = np.broadcast_shapes(np.shape(x), np.shape(y), np.shape(z))
        image = np.zeros(shape, dtype=np.float32)
        folding = self._folding(x, y, z)
        for value, (cx, cy, cz), (a, b, c), amplitude in self._ellipsoids:
            r2 = ((x - cx) / a) ** 2 + ((y - cy) / b) ** 2 + ((z - cz) / c) ** 2
            inside = r2 < (1.0 + amplitude * folding) ** 2 if amplitude else r2 < 1.0
            image[np.broadcast_to(inside, shape)] = value
        # Receive-coil shading: brighter towards the back of the head.
        image *= (1.0 + 0.0018 * np.broadcast_to(y, shape)).astype(np.float32)
        return image
