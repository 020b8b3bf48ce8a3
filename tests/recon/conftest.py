"""Fixtures of the reconstruction tests: a SYNTHETIC DICOM-CT-PD scan, an ISMRMRD phantom."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from imagelake.formats import RawContent, get_format
from imagelake.recon import ReconResult, get_reconstructor
from imagelake.synthetic.sinogram import FanBeamGeometry, fan_beam_sinogram, write_ctpd


@dataclass
class CtScan:
    paths: list[Path]
    sinogram: np.ndarray[Any, Any]
    geometry: FanBeamGeometry
    content: RawContent
    result: ReconResult
    seconds: float


@pytest.fixture(scope="session")
def ct_scan(tmp_path_factory: pytest.TempPathFactory) -> CtScan:
    """The default synthetic head scan written as DICOM-CT-PD, read back and reconstructed."""
    geometry = FanBeamGeometry()
    sino = fan_beam_sinogram(geometry)
    paths = write_ctpd(tmp_path_factory.mktemp("ctpd"), sino, geometry)
    content = get_format("dicom-ct-pd").open_group(paths)
    start = time.perf_counter()
    result = get_reconstructor("ct-fbp").run(content)
    seconds = time.perf_counter() - start
    print(f"\nct-fbp: {result.volume.shape} in {seconds:.2f} s")
    return CtScan(paths, sino, geometry, content, result, seconds)


@pytest.fixture(scope="session")
def mr_phantom(
    tmp_path_factory: pytest.TempPathFactory, require_tool: Callable[[str], str]
) -> Path:
    """A 64x64, 4-coil ISMRMRD Shepp-Logan file made by Debian's generator (1 repetition)."""
    require_tool("ismrmrd_generate_cartesian_shepp_logan")
    from imagelake.synthetic.samples import ismrmrd_phantom

    return ismrmrd_phantom(tmp_path_factory.mktemp("mr") / "phantom.h5")
