"""The USTB UFF format against the real peer, pyuff-ustb: it reads our synthetic files, and we
read the files it writes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import pyuff_ustb as pu
from _rawformat_helpers import plain_hdf5, truncated_copy

from imagelake.formats import RawFormatError, get_format, identify
from imagelake.synthetic.ultrasound import SYNTHETIC_INFO, uff_channel_data
from imagelake.testing import FormatConformance, default_foreign_paths


def pyuff_write(path: Path, data: np.ndarray, *, fs: float = 20e6, n_waves: int = 1) -> Path:
    """A UFF file written by pyuff-ustb; ``data`` is [time, channel, wave, frame]."""
    n_el = data.shape[1]
    probe = pu.LinearArray(
        N=n_el, pitch=0.3e-3, element_width=0.27e-3, element_height=5e-3,
        origin=pu.Point(distance=0.0, azimuth=0.0, elevation=0.0),
    )  # fmt: skip
    waves = [
        pu.Wave(
            wavefront=pu.Wavefront.plane,
            source=pu.Point(distance=np.inf, azimuth=np.deg2rad(a), elevation=0.0),
            origin=pu.Point(distance=0.0, azimuth=0.0, elevation=0.0),
            apodization=pu.Apodization(),
            sound_speed=1540.0,
            delay=0.0,
        )
        for a in np.linspace(-5, 5, n_waves)
    ]
    cd = pu.ChannelData(
        sampling_frequency=fs, initial_time=1e-6, sound_speed=1540.0, modulation_frequency=0.0,
        sequence=waves, probe=probe, data=data, PRF=1000.0,
    )  # fmt: skip
    cd.write(str(path), "channel_data", ignore_missing_compulsory_fields=True)
    return path


@pytest.fixture(scope="module")
def synthetic_uff(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return uff_channel_data(tmp_path_factory.mktemp("uff") / "rf.uff", n_elements=32, n_samples=512)


class TestUffConformance(FormatConformance):
    format_name = "ustb-uff"

    @pytest.fixture
    def sample_path(self, synthetic_uff: Path) -> Path:
        return synthetic_uff

    @pytest.fixture
    def foreign_paths(self, tmp_path: Path) -> Sequence[Path]:
        paths = default_foreign_paths(tmp_path / "foreign", get_format("ustb-uff"))
        paths.append(plain_hdf5(tmp_path / "other.h5"))
        fake_mrd = tmp_path / "mrd.h5"  # ISMRMRD's layout (xml + data), not UFF
        with h5py.File(fake_mrd, "w") as h5:
            group = h5.create_group("dataset")
            group.create_dataset("xml", data=[b"<ismrmrdHeader/>"])
            group.create_dataset("data", data=np.zeros(4))
        paths.append(fake_mrd)
        return paths

    @pytest.fixture
    def corrupt_path(self, synthetic_uff: Path, tmp_path: Path) -> Path:
        return truncated_copy(synthetic_uff, tmp_path / "cut.uff", 0.6)

    @pytest.fixture
    def expected_meta(self) -> Mapping[str, Any]:
        return {
            "modality": "US",
            "manufacturer": None,
            "acquired_at": None,
            "extra": {"uff_info": SYNTHETIC_INFO, "channel_data_groups": ["channel_data"]},
        }


def test_pyuff_reads_our_synthetic_file(synthetic_uff: Path) -> None:
    ours = get_format("ustb-uff").open(synthetic_uff).arrays["rf"]
    theirs = pu.Uff(str(synthetic_uff)).read("channel_data")
    assert theirs.data.shape == (512, 32, 1, 1)  # [time, channel, wave, frame]
    assert np.array_equal(theirs.data.T, ours.load())
    assert theirs.sampling_frequency == ours.attrs["sampling_frequency"] == 20e6
    assert theirs.sound_speed == 1540.0
    assert theirs.probe.N_elements == 32
    assert np.allclose(theirs.probe.x, ours.attrs["element_x"])
    assert np.isclose(theirs.probe.pitch, 0.3e-3)
    # the data is a simulated echo, not noise: the strongest sample is well above the noise
    assert np.abs(theirs.data).max() > 0.5


def test_we_read_pyuff_written_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    data = rng.standard_normal((300, 16, 3, 2)).astype(np.float32)  # time, channel, wave, frame
    path = pyuff_write(tmp_path / "peer.uff", data)
    assert identify(path) is get_format("ustb-uff")
    arr = get_format("ustb-uff").open(path).arrays["rf"]
    assert arr.dims == ("frame", "wave", "channel", "time")
    assert arr.shape == (2, 3, 16, 300)
    assert arr.dtype == np.float32
    assert np.array_equal(arr.load(), data.T)
    assert arr.attrs["sampling_frequency"] == 20e6
    assert arr.attrs["initial_time"] == 1e-6
    assert arr.attrs["n_elements"] == 16
    assert arr.attrs["probe_class"] == "uff.linear_array"
    with h5py.File(path, "r") as h5:  # pyuff-ustb 3.0 writes only the first wave of a list
        n_waves = len(h5["channel_data/sequence"])
    assert len(arr.attrs["waves"]) == n_waves >= 1
    assert arr.attrs["waves"][0]["wavefront"] == "plane"
    assert arr.attrs["waves"][0]["source_distance"] is None  # infinite: a plane wave
    assert np.isclose(arr.attrs["waves"][0]["source_azimuth"], np.deg2rad(-5))
    assert np.allclose(arr.coords["time"][:2], [1e-6, 1e-6 + 1 / 20e6])


def test_we_read_pyuff_complex_iq(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    iq = (rng.standard_normal((50, 4, 1, 1)) + 1j * rng.standard_normal((50, 4, 1, 1))).astype(
        np.complex64
    )
    path = pyuff_write(tmp_path / "iq.uff", iq)
    arr = get_format("ustb-uff").open(path).arrays["rf"]
    assert arr.dtype == np.complex64
    assert np.array_equal(arr.load(), iq.T)


def test_not_claimed_by_ismrmrd_and_vice_versa(synthetic_uff: Path, tmp_path: Path) -> None:
    h5_named = uff_channel_data(tmp_path / "rf.h5", n_elements=8, n_samples=64)
    assert identify(h5_named) is get_format("ustb-uff")
    assert not get_format("ismrmrd").guess_can_open(synthetic_uff)


def test_missing_data_is_a_raw_format_error(tmp_path: Path) -> None:
    path = uff_channel_data(tmp_path / "nodata.uff", n_elements=8, n_samples=64)
    with h5py.File(path, "r+") as h5:
        del h5["channel_data/data"]
    with pytest.raises(RawFormatError, match=r"nodata.uff.*data"):
        get_format("ustb-uff").open(path)


def test_synthetic_is_deterministic(tmp_path: Path) -> None:
    a = uff_channel_data(tmp_path / "a.uff", n_elements=8, n_samples=128, seed=1)
    b = uff_channel_data(tmp_path / "b.uff", n_elements=8, n_samples=128, seed=1)
    c = uff_channel_data(tmp_path / "c.uff", n_elements=8, n_samples=128, seed=2)
    fmt = get_format("ustb-uff")
    ra, rb, rc = (fmt.open(p).arrays["rf"].load() for p in (a, b, c))
    assert np.array_equal(ra, rb) and not np.array_equal(ra, rc)
