"""ct-fbp on SYNTHETIC DICOM-CT-PD projections against the rasterised phantom."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from imagelake.formats import RawArray, RawContent, RawMeta
from imagelake.recon import ReconError, get_reconstructor
from imagelake.synthetic.sinogram import (
    MU_WATER_PER_MM,
    FanBeamGeometry,
    fan_beam_sinogram,
    rasterize_phantom,
)

RADIUS = 180.0  # the phantom's default radius (mm)


def _grid(n: int, pixel: float) -> tuple[np.ndarray, np.ndarray]:
    c = (np.arange(n) - (n - 1) / 2) * pixel
    return np.meshgrid(c, c)  # x (columns), y (rows)


def _content(sino: np.ndarray, geometry: FanBeamGeometry, **attrs: object) -> RawContent:
    base = {
        "projection_type": "AXIAL",
        "detector_shape": "CYLINDRICAL",
        "source_isocenter_mm": geometry.source_isocenter_mm,
        "source_detector_mm": geometry.source_detector_mm,
        "channel_spacing_rad": geometry.channel_spacing_rad,
        "central_channel": geometry.channel_center,
        "row_spacing_mm": geometry.row_spacing_mm,
        "water_attenuation_per_mm": geometry.water_attenuation_per_mm,
    }
    base.update(attrs)
    arr = RawArray(
        "sinogram", ("view", "row", "channel"), sino.shape, sino.dtype, lambda: sino,
        attrs=base, coords={"view": geometry.view_angles(), "row": geometry.row_positions()},
    )  # fmt: skip
    return RawContent("dicom-ct-pd", RawMeta(modality="CT"), {"sinogram": arr})


def test_fbp_matches_rasterised_phantom(ct_scan: Any) -> None:
    result = ct_scan.result
    n = result.volume.shape[1]
    assert result.volume.shape == (ct_scan.geometry.n_rows, 256, 256)
    assert result.modality == "CT" and result.units == "HU"
    pixel = result.pixel_spacing[0]
    x, y = _grid(n, pixel)
    fov = np.hypot(x, y) < 1.1 * RADIUS
    water = np.hypot(x - 0.35 * RADIUS, y - 0.45 * RADIUS) < 10.0
    for k, z in enumerate(result.slice_positions):
        truth = rasterize_phantom(n, pixel, z_mm=z)
        truth_hu = 1000 * (truth - MU_WATER_PER_MM) / MU_WATER_PER_MM
        corr = float(np.corrcoef(result.volume[k][fov], truth_hu[fov])[0, 1])
        hu = float(result.volume[k][water].mean())
        print(f"\nslice z={z:+.2f} mm: corr {corr:.4f} vs truth, water {hu:+.1f} HU")
        assert corr >= 0.95
        assert np.ptp(truth_hu[water]) == 0 and abs(truth_hu[water][0]) < 1e-6  # region is water
        assert abs(hu) <= 20
        # skull (+800 HU): the scale is right, not just the shape
        skull = truth_hu > 700
        assert 600 < float(np.median(result.volume[k][skull])) < 1000
    print(f"ct-fbp time: {ct_scan.seconds:.2f} s for {result.volume.shape}")


def test_fbp_orientation_and_geometry(ct_scan: Any) -> None:
    result = ct_scan.result
    # Array row = +y, column = +x: a flipped image matches the truth's interior much worse
    # (the +100 HU blobs sit at y = -0.6 R, the left and right ventricles differ in size).
    n, pixel = result.volume.shape[1], result.pixel_spacing[0]
    z = result.slice_positions[1]
    truth = rasterize_phantom(n, pixel, z_mm=z)
    x, y = _grid(n, pixel)
    inner = np.hypot(x, y) < 0.6 * RADIUS
    img = result.volume[1]

    def corr(a: np.ndarray) -> float:
        return float(np.corrcoef(a[inner], truth[inner])[0, 1])

    right, up_down, left_right = corr(img), corr(img[::-1]), corr(img[:, ::-1])
    print(
        f"\ninterior corr {right:.3f}; flipped rows {up_down:.3f}, flipped columns {left_right:.3f}"
    )
    assert right > 0.95 and max(up_down, left_right) < right - 0.2
    assert result.origin[0] == pytest.approx(-(n - 1) / 2 * pixel)
    np.testing.assert_allclose(result.slice_positions, ct_scan.geometry.row_positions(), atol=1e-4)
    prov = result.provenance
    assert prov["method"] == "ct-fbp" and prov["inputs"] == {"sinogram": [360, 4, 368]}
    assert prov["params"] == {"matrix": 256, "fov_mm": None}


def test_noisy_sinogram_still_reconstructs() -> None:
    g = FanBeamGeometry(n_rows=1, n_views=180)
    sino = fan_beam_sinogram(g, photons=2e5, seed=1)
    result = get_reconstructor("ct-fbp").run(_content(sino, g), matrix=128)
    truth = rasterize_phantom(128, result.pixel_spacing[0], z_mm=result.slice_positions[0])
    x, y = _grid(128, result.pixel_spacing[0])
    fov = np.hypot(x, y) < 1.1 * RADIUS
    assert np.corrcoef(result.volume[0][fov], truth[fov])[0, 1] > 0.9


def test_fbp_refuses_what_it_cannot_do() -> None:
    g = FanBeamGeometry(n_rows=1, n_views=36, n_channels=64, channel_spacing_rad=0.01)
    sino = fan_beam_sinogram(g)
    recon = get_reconstructor("ct-fbp")
    with pytest.raises(ReconError, match="AXIAL"):
        recon.run(_content(sino, g, projection_type="HELICAL"))
    with pytest.raises(ReconError, match="full rotation"):
        half = dataclasses.replace(g, n_views=72)  # angles of 72 views, 36 given: half a turn
        content = _content(sino, g)
        arr = content.arrays["sinogram"]
        bad = dataclasses.replace(arr, coords={"view": half.view_angles()[:36]})
        recon.run(RawContent("dicom-ct-pd", RawMeta(), {"sinogram": bad}))
    with pytest.raises(ReconError, match="lack water_attenuation_per_mm"):
        recon.run(_content(sino, g, water_attenuation_per_mm=None))
    with pytest.raises(ReconError, match="no array 'sinogram'"):
        recon.run(RawContent("dicom-ct-pd", RawMeta(), {}))
