"""The reconstructor registry, and the SYNTHETIC sinogram's own checks."""

from __future__ import annotations

import numpy as np
import pytest

from imagelake.errors import ConfigError, PluginNotFoundError
from imagelake.recon import Reconstructor, get_reconstructor, reconstructors, reconstructors_for
from imagelake.synthetic.sinogram import FanBeamGeometry, fan_beam_sinogram, write_ctpd


def test_builtins_by_format() -> None:
    assert [r.name for r in reconstructors_for("ismrmrd")] == ["mr-cartesian"]
    assert [r.name for r in reconstructors_for("dicom-ct-pd")] == ["ct-fbp"]
    assert reconstructors_for("opaque") == []
    for name in reconstructors:
        recon = get_reconstructor(name)
        assert isinstance(recon, Reconstructor) and recon.name == name and recon.version
        assert recon.params() == dict(recon.default_params)


def test_unknown_reconstructor_lists_the_known() -> None:
    with pytest.raises(PluginNotFoundError, match="ct-fbp"):
        get_reconstructor("iterative-magic")


def test_sinogram_is_exact_for_a_water_cylinder() -> None:
    """A centred water disc of radius r: every ray at distance p from the centre crosses
    2 sqrt(r^2 - p^2) mm of water, whatever the view."""
    g = FanBeamGeometry(n_views=8, n_channels=64, channel_spacing_rad=0.01, n_rows=1)
    disc = ((1.0, 0.5, 0.5, 10.0, 0.0, 0.0, 0.0, 0.0),)  # radius 0.5 R, very long in z
    sino = fan_beam_sinogram(g, radius_mm=200.0, ellipsoids=disc)
    p = g.source_isocenter_mm * np.abs(np.sin(g.fan_angles()))
    expected = 2 * np.sqrt(np.maximum(100.0**2 - p**2, 0)) * g.water_attenuation_per_mm
    for view in sino[:, 0, :]:
        np.testing.assert_allclose(view, expected, rtol=1e-5, atol=1e-5)


def test_write_ctpd_checks_the_shape(tmp_path) -> None:  # type: ignore[no-untyped-def]
    g = FanBeamGeometry(n_views=8, n_channels=16, n_rows=1)
    with pytest.raises(ConfigError, match="does not match"):
        write_ctpd(tmp_path, np.zeros((8, 2, 16)), g)
