"""MR Cartesian reference reconstruction: inverse FFT, readout crop, root-sum-of-squares.

The same recipe as Debian's ``ismrmrd_recon_cartesian_2d`` (ismrmrd-tools 1.8): centred
inverse 2-D FFT over (ky, kx) per coil, crop the readout oversampling to the recon matrix,
combine the coils by root sum of squares. numpy's ``ifft2`` divides by the number of
samples and FFTW does not, so the image is multiplied by it: the values equal the tool's.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from imagelake.formats import RawArray, RawContent
from imagelake.recon._base import ReconError, ReconResult, Reconstructor

__all__ = ["MrCartesian"]

_FOV_KEYS = ("recon_fov_mm", "recon_fov", "reconSpace_fov_mm", "field_of_view_mm")


def _xyz(attrs: Mapping[str, Any], key: str) -> tuple[int, int, int] | None:
    value = attrs.get(key)
    if value is None:
        return None
    try:
        x, y, z = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ReconError(f"mr-cartesian: kspace attr {key} = {value!r} is not [x, y, z]") from None
    return x, y, z


def _centre_crop(img: np.ndarray[Any, Any], axis: int, size: int) -> np.ndarray[Any, Any]:
    n = img.shape[axis]
    if size >= n:
        return img
    start = (n - size) // 2
    return np.take(img, np.arange(start, start + size), axis=axis)


class MrCartesian(Reconstructor):
    """Fully sampled Cartesian MR: centred inverse FFT, readout crop, RSS coil combine.

    Parameters (``run(content, **params)``)
    ---------------------------------------
    repetition
        Index along a ``repetition`` dimension, if the k-space has one (default 0).
    select
        ``{dim: index}`` for any other leading dimension (contrast, phase, set...);
        unnamed ones take index 0. A ``slice`` dimension gives the output slices and a
        ``kz`` dimension is Fourier transformed (3-D encoding).

    Echo-planar data (a raw file with ``phasecorr`` navigator scans) needs the odd/even
    line correction this method does not do: it is refused rather than reconstructed
    with ghosts.
    """

    name = "mr-cartesian"
    version = "1"
    formats = ("ismrmrd", "siemens-twix")
    modality = "MR"
    description = "Cartesian inverse FFT, readout crop, root-sum-of-squares coil combination"
    default_params: ClassVar[Mapping[str, Any]] = {"repetition": 0, "select": {}}

    def refusal(self, arrays: Collection[str]) -> str | None:
        if "phasecorr" in arrays:
            return (
                "mr-cartesian: echo-planar data (phase-correction scans present) needs "
                "odd/even line correction, which this reference method does not do"
            )
        return None

    def reconstruct(
        self, content: RawContent, params: Mapping[str, Any]
    ) -> tuple[ReconResult, list[RawArray]]:
        arr = self._array(content, "kspace")
        refused = self.refusal(content.arrays)
        if refused:
            raise ReconError(refused)
        dims = tuple(arr.dims)
        if dims[-3:] != ("coil", "ky", "kx"):
            raise ReconError(f"mr-cartesian: kspace dims {dims} do not end in (coil, ky, kx)")
        select: dict[str, int] = dict(params.get("select") or {})
        if "repetition" in dims:
            select.setdefault("repetition", int(params["repetition"]))
        k = arr.load()
        # Reduce the leading dimensions to (slice?, kz?) by indexing.
        keep: list[str] = []
        index: list[Any] = []
        for axis, dim in enumerate(dims[:-3]):
            if dim in ("slice", "kz"):
                keep.append(dim)
                index.append(slice(None))
                continue
            i = int(select.get(dim, 0))
            if not 0 <= i < arr.shape[axis]:
                raise ReconError(
                    f"mr-cartesian: {dim} index {i} out of range 0..{arr.shape[axis] - 1}"
                )
            index.append(i)
        unknown = sorted(set(select) - set(dims))
        if unknown:
            raise ReconError(f"mr-cartesian: kspace has no dimension(s) {unknown}; dims {dims}")
        k = k[tuple(index)]
        if "kz" in keep and "slice" in keep and keep.index("kz") < keep.index("slice"):
            k = np.swapaxes(k, 0, 1)
            keep = ["slice", "kz"]
        if "slice" not in keep:
            k = k[None]
        if "kz" not in keep:
            k = k[:, None]
        # k: (slice, kz, coil, ky, kx)
        fft_axes: Sequence[int] = (1, 3, 4) if "kz" in keep else (3, 4)
        n_samples = int(np.prod([k.shape[a] for a in fft_axes]))
        img = np.fft.fftshift(
            np.fft.ifftn(np.fft.ifftshift(k, axes=fft_axes), axes=fft_axes), axes=fft_axes
        )
        recon = _xyz(arr.attrs, "recon_matrix")
        if recon is not None:
            img = _centre_crop(img, 4, recon[0])
            img = _centre_crop(img, 3, recon[1])
        rss = np.sqrt((np.abs(img) ** 2).sum(axis=2)) * n_samples  # (slice, kz, y, x)
        volume = rss.reshape(-1, rss.shape[2], rss.shape[3]).astype(np.float32)
        ny, nx = volume.shape[1:]
        fov = next((arr.attrs[key] for key in _FOV_KEYS if arr.attrs.get(key)), None)
        if fov is not None:
            fx, fy, fz = (float(v) for v in fov)
            spacing = (fy / ny, fx / nx)
            nz = recon[2] if recon else 1
            thickness = fz / max(nz, 1)
            note = ""
        else:
            spacing, thickness, note = (1.0, 1.0), 1.0, " (field of view unknown: 1 mm pixels)"
        origin = (-(nx - 1) / 2 * spacing[1], -(ny - 1) / 2 * spacing[0], 0.0)
        result = ReconResult(
            volume=volume,
            pixel_spacing=spacing,
            slice_thickness=thickness,
            modality="MR",
            origin=origin,
            slice_positions=tuple(float(i * thickness) for i in range(volume.shape[0])),
            description=f"imagelake {self.name} v{self.version}: RSS magnitude{note}",
            units="magnitude (FFTW-unnormalised scale)",
        )
        return result, [arr]
