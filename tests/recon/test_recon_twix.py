"""mr-cartesian on the real TWIX samples: geometry from the protocol; EPI refused, not ghosted."""

from __future__ import annotations

import numpy as np
import pytest

from imagelake.formats import get_format
from imagelake.recon import ReconError, get_reconstructor
from imagelake.synthetic.samples import twix_samples


def test_gre_reconstructs_with_the_protocol_geometry() -> None:
    content = get_format("siemens-twix").open(twix_samples()["gre.dat"])
    result = get_reconstructor("mr-cartesian").run(content)
    # the protocol: 200 x 200 mm field of view, base resolution 160, 4 mm slices
    assert result.volume.shape == (1, 160, 160)
    assert result.pixel_spacing == pytest.approx((1.25, 1.25))
    assert result.slice_thickness == pytest.approx(4.0)
    image = result.volume[0]
    # an object in the middle, noise at the edges of the field of view
    centre = image[60:100, 60:100].mean()
    edge = np.concatenate([image[:10].ravel(), image[-10:].ravel()]).mean()
    assert centre > 3 * edge


def test_echo_planar_data_is_refused_with_a_reason() -> None:
    content = get_format("siemens-twix").open(twix_samples()["epi.dat"])
    with pytest.raises(ReconError, match="echo-planar"):
        get_reconstructor("mr-cartesian").run(content)
    # the same rule, judged from the arrays a raw store lists (Lake.viability), without reading
    recon = get_reconstructor("mr-cartesian")
    why = recon.refusal(list(content.arrays))
    assert why is not None and "echo-planar" in why
    gre = get_format("siemens-twix").open(twix_samples()["gre.dat"])
    assert recon.refusal(list(gre.arrays)) is None
