"""mr-cartesian against Debian's ismrmrd_recon_cartesian_2d and the generator's ground truth."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from recon_mr_helpers import debian_recon, own_kspace_content, phantom_truth

from imagelake.formats import RawContent, RawMeta, get_format
from imagelake.recon import ReconError, get_reconstructor


def _reader_content(path: Path) -> RawContent:
    try:
        import imagelake.formats.ismrmrd  # noqa: F401
    except ImportError:
        pytest.skip("imagelake.formats.ismrmrd is not there yet")
    return get_format("ismrmrd").open(path)


def _compare(ours: np.ndarray, ref: np.ndarray, label: str) -> float:
    corr = float(np.corrcoef(ours.ravel(), ref.ravel())[0, 1])
    scale = float(np.median(ref[ref > 0.1 * ref.max()] / ours[ref > 0.1 * ref.max()]))
    print(f"\n{label}: corr {corr:.7f} with ismrmrd_recon_cartesian_2d, scale ratio {scale:.6f}")
    return corr


def test_reader_recon_matches_debian_tool(
    mr_phantom: Path, tmp_path: Path, require_tool: Callable[[str], str]
) -> None:
    tool = require_tool("ismrmrd_recon_cartesian_2d")
    content = _reader_content(mr_phantom)
    start = time.perf_counter()
    result = get_reconstructor("mr-cartesian").run(content)
    print(f"\nmr-cartesian (64x128, 4 coils): {time.perf_counter() - start:.3f} s")
    ref = debian_recon(tool, mr_phantom, tmp_path)
    assert result.volume.shape == (1, *ref.shape) == (1, 64, 64)
    assert _compare(result.volume[0], ref, "reader") >= 0.9999
    # Same scale as FFTW's unnormalised transform, not just correlated.
    np.testing.assert_allclose(result.volume[0], ref, rtol=1e-3, atol=1e-3 * ref.max())
    assert result.modality == "MR"
    assert result.pixel_spacing[0] > 0 and result.provenance["inputs"]["kspace"] == [4, 64, 128]


def test_own_loader_recon_matches_debian_tool(
    mr_phantom: Path, tmp_path: Path, require_tool: Callable[[str], str]
) -> None:
    tool = require_tool("ismrmrd_recon_cartesian_2d")
    result = get_reconstructor("mr-cartesian").run(own_kspace_content(mr_phantom))
    ref = debian_recon(tool, mr_phantom, tmp_path)
    assert _compare(result.volume[0], ref, "own h5py loader") >= 0.9999


def test_recon_matches_ground_truth_phantom(mr_phantom: Path) -> None:
    result = get_reconstructor("mr-cartesian").run(own_kspace_content(mr_phantom))
    truth = phantom_truth(mr_phantom)
    corr = float(np.corrcoef(result.volume[0].ravel(), truth.ravel())[0, 1])
    print(f"\nmr-cartesian vs |phantom|: corr {corr:.4f}")
    assert corr > 0.95
    # a transposed image would not do
    assert float(np.corrcoef(result.volume[0].T.ravel(), truth.ravel())[0, 1]) < 0.9


def test_repetitions_choose_one(tmp_path: Path, require_tool: Callable[[str], str]) -> None:
    require_tool("ismrmrd_generate_cartesian_shepp_logan")
    from imagelake.synthetic.samples import ismrmrd_phantom

    path = ismrmrd_phantom(tmp_path / "rep.h5", matrix=32, coils=2, repetitions=2, noise=0.05)
    content = _reader_content(path)
    assert content.arrays["kspace"].dims[0] == "repetition"
    recon = get_reconstructor("mr-cartesian")
    first, second = recon.run(content).volume, recon.run(content, repetition=1).volume
    assert first.shape == second.shape == (1, 32, 32)
    assert not np.array_equal(first, second)  # different noise per repetition
    assert np.corrcoef(first.ravel(), second.ravel())[0, 1] > 0.8
    with pytest.raises(ReconError, match="repetition index 2"):
        recon.run(content, repetition=2)


def test_bad_input_is_a_recon_error(mr_phantom: Path) -> None:
    recon = get_reconstructor("mr-cartesian")
    with pytest.raises(ReconError, match="no array 'kspace'"):
        recon.run(RawContent(format="ismrmrd", meta=RawMeta()))
    with pytest.raises(ReconError, match="unknown parameter"):
        recon.run(own_kspace_content(mr_phantom), iterations=3)
    with pytest.raises(ReconError, match="no dimension"):
        recon.run(own_kspace_content(mr_phantom), select={"contrast": 1})
