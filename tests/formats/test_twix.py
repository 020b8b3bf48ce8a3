"""The Siemens TWIX format on the real example files of twixtools' sdist (gre.dat, epi.dat),
checked against twixtools' own k-space; truncated and corrupt copies must be refused."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import twixtools
from _rawformat_helpers import (
    garbled_copy,
    missing,
    multi_raid,
    patched_raid_length,
    truncated_copy,
)

from imagelake.errors import MissingExtraError
from imagelake.formats import RawFormatError, get_format, identify
from imagelake.formats.twix import twix_version
from imagelake.synthetic.samples import twix_samples
from imagelake.testing import FormatConformance

FOR_UID = "1.3.12.2.1107.5.2.19.45385.1.20210622151635693.0.0.0"


@pytest.fixture(scope="module")
def samples() -> dict[str, Path]:
    try:
        return twix_samples()
    except RuntimeError as exc:
        missing(f"twixtools example files unavailable: {exc}")


def twixtools_kspace(path: Path, kind: str = "image") -> tuple[np.ndarray, tuple[str, ...]]:
    """twixtools' own array for the last measurement, and its dims."""
    arr = twixtools.map_twix(twixtools.read_twix(str(path), verbose=False))[-1][kind]
    return arr[:], tuple(arr.dims)


class TestTwixConformance(FormatConformance):
    format_name = "siemens-twix"

    @pytest.fixture
    def sample_path(self, samples: Mapping[str, Path]) -> Path:
        return samples["gre.dat"]

    @pytest.fixture
    def corrupt_path(self, samples: Mapping[str, Path], tmp_path: Path) -> Path:
        return truncated_copy(samples["gre.dat"], tmp_path / "cut.dat", 0.9)

    @pytest.fixture
    def expected_meta(self) -> Mapping[str, Any]:
        return {
            "modality": "MR",
            "manufacturer": "SIEMENS",
            "model": "Skyra",
            "software_version": "syngo MR E11",
            "device_serial": "45385",  # a string, not twixtools' 45385.0
            "institution": "DZNE_Bonn-Venusberg",
            # date from ExamMemoryUID 6_0_66327775_20210622_151635_650, time from the
            # first imaging block's TimeStamp 22321167 x 2.5 ms = 15:30:02.9
            "acquired_at": "2021-06-22T15:30:02",
            "frame_of_reference_uid": FOR_UID,
            "protocol_name": "gre",
            "sequence_name": "gre",
            "study_instance_uid": None,  # TWIX has Siemens LOIDs, not a study UID
            "extra": {
                "twix_version": "VD",
                "n_measurements": 1,
                "baseline": "N4_VE11C_LATEST_20160120",
            },
        }


@pytest.mark.parametrize("name", ["gre.dat", "epi.dat"])
def test_kspace_equals_twixtools(samples: Mapping[str, Path], name: str) -> None:
    content = get_format("siemens-twix").open(samples[name])
    arr = content.arrays["kspace"]
    ref, ref_dims = twixtools_kspace(samples[name])
    assert ref_dims[-3:] == ("Lin", "Cha", "Col")
    assert arr.dims == ("coil", "ky", "kx")
    assert arr.attrs["twixtools_dims"] == ["Cha", "Lin", "Col"]
    got = arr.load()
    expected = np.moveaxis(ref.squeeze(), 1, 0)  # (Lin, Cha, Col) -> (Cha, Lin, Col)
    assert got.shape == expected.shape
    assert np.array_equal(got, expected)
    assert np.abs(got).max() > 0


def test_epi_extra_scan_kinds(samples: Mapping[str, Path]) -> None:
    content = get_format("siemens-twix").open(samples["epi.dat"])
    assert set(content.arrays) == {"kspace", "phasecorr", "rt_feedback"}
    assert content.arrays["kspace"].shape == (2, 80, 160)
    ref, _ = twixtools_kspace(samples["epi.dat"], "phasecorr")
    assert np.array_equal(content.arrays["phasecorr"].load(), np.moveaxis(ref.squeeze(), 1, 0))
    assert content.meta.protocol_name == "ep2d_bold"
    assert content.meta.sequence_name == "ep2d_bold"


def test_kspace_attrs(samples: Mapping[str, Path]) -> None:
    attrs = get_format("siemens-twix").open(samples["gre.dat"]).arrays["kspace"].attrs
    assert attrs["encoded_matrix"] == [320, 160, 1]
    assert attrs["recon_matrix"] == [160, 160, 1]
    assert attrs["readout_oversampling"] == 2.0
    assert attrs["trajectory"] == "cartesian"


def test_links_and_identity(samples: Mapping[str, Path]) -> None:
    meta = get_format("siemens-twix").open(samples["gre.dat"]).meta
    refs = meta.referenced_sop_instance_uids
    assert len(refs) == 3 and all(
        r.startswith("1.3.12.2.1107.5.2.19.45385.2021062215") for r in refs
    )
    assert not meta.patient.empty  # read (masked in this sample), never shown
    assert "hidden" in repr(meta.patient)


def test_version_detection(samples: Mapping[str, Path]) -> None:
    head = samples["gre.dat"].read_bytes()[:65536]
    assert twix_version(head) == "VD"
    # a VB file has no raid header: the measurement header starts at 0
    vb_like = head[10240:]
    assert twix_version(vb_like) == "VB"
    assert twix_version(b"\x00" * 64) is None


@pytest.mark.parametrize("fraction", [0.5, 0.9])
@pytest.mark.parametrize("name", ["gre.dat", "epi.dat"])
def test_truncated_is_refused(
    samples: Mapping[str, Path], tmp_path: Path, name: str, fraction: float
) -> None:
    cut = truncated_copy(samples[name], tmp_path / f"cut_{name}", fraction)
    assert identify(cut) is get_format("siemens-twix")  # still recognised, then refused
    with pytest.raises(RawFormatError, match=f"cut_{name}.*truncated"):
        get_format("siemens-twix").open(cut)


@pytest.mark.parametrize("fraction", [0.5, 0.999])
def test_truncated_with_consistent_raid_header_is_refused(
    samples: Mapping[str, Path], tmp_path: Path, fraction: float
) -> None:
    """The raid header agrees with the short file: only the block checks can tell."""
    cut = patched_raid_length(samples["gre.dat"], tmp_path / "patched.dat", fraction)
    with pytest.raises(RawFormatError, match=r"patched.dat.*(truncated|corrupt)"):
        get_format("siemens-twix").open(cut)


def test_garbage_header_is_refused(samples: Mapping[str, Path], tmp_path: Path) -> None:
    fmt = get_format("siemens-twix")
    # garbage over the raid header: not recognised as TWIX any more, and open says so
    bad = garbled_copy(samples["gre.dat"], tmp_path / "garbage0.dat", 0, 4000)
    assert not fmt.guess_can_open(bad)
    with pytest.raises(RawFormatError, match=r"garbage0.dat"):
        fmt.open(bad)
    # garbage over the measurement's text header (Config/Dicom/Meas buffers)
    bad = garbled_copy(samples["gre.dat"], tmp_path / "garbage1.dat", 10240 + 100, 40000)
    with pytest.raises(RawFormatError, match=r"garbage1.dat"):
        fmt.open(bad)


def test_garbage_in_data_is_refused(samples: Mapping[str, Path], tmp_path: Path) -> None:
    bad = garbled_copy(samples["gre.dat"], tmp_path / "garbage2.dat", 900_000, 5000)
    with pytest.raises(RawFormatError, match=r"garbage2.dat.*(truncated|corrupt)"):
        get_format("siemens-twix").open(bad)


def test_missing_extra_is_named(
    samples: Mapping[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "twixtools", None)
    fmt = get_format("siemens-twix")
    assert fmt.guess_can_open(samples["gre.dat"])  # identification needs no twixtools
    with pytest.raises(MissingExtraError, match=r"imagelake\[raw\]"):
        fmt.open(samples["gre.dat"])


def test_acquisition_time_after_midnight() -> None:
    from types import SimpleNamespace

    from imagelake.formats.twix import _acquired_at

    def block(seconds: float) -> SimpleNamespace:
        return SimpleNamespace(
            is_image_scan=lambda: True, mdh=SimpleNamespace(TimeStamp=int(seconds / 0.0025))
        )

    exam = "6_0_1_20240301_235500_100"
    assert _acquired_at(exam, None, [block(23 * 3600 + 58 * 60 + 1)]) == "2024-03-01T23:58:01"
    assert _acquired_at(exam, None, [block(10 * 60)]) == "2024-03-02T00:10:00"
    assert _acquired_at(None, "1.3.12.2.1107.5.2.19.1.1.20240301235500123.0.0.0", []) == (
        "2024-03-01T23:55:00"
    )
    assert _acquired_at("no-date", "1.2.3", []) is None


def test_multi_raid_earlier_measurements_are_extra_arrays(
    samples: Mapping[str, Path], tmp_path: Path
) -> None:
    path = multi_raid(samples["epi.dat"], samples["gre.dat"], tmp_path / "multi.dat")
    content = get_format("siemens-twix").open(path)
    assert set(content.arrays) == {"kspace", "meas0_image", "meas0_phasecorr", "meas0_rt_feedback"}
    assert content.meta.extra["measurements"] == ["ep2d_bold", "gre"]
    assert content.meta.protocol_name == "gre"  # metadata of the last (imaging) measurement
    mapped = twixtools.map_twix(twixtools.read_twix(str(path), verbose=False))
    first = np.moveaxis(mapped[0]["image"][:].squeeze(), 1, 0)
    assert np.array_equal(content.arrays["meas0_image"].load(), first)
    assert np.array_equal(
        content.arrays["kspace"].load(), np.moveaxis(mapped[1]["image"][:].squeeze(), 1, 0)
    )
    # cutting the second measurement short is caught from the raid header
    cut = truncated_copy(path, tmp_path / "multi_cut.dat", 0.95)
    with pytest.raises(RawFormatError, match=r"measurement 1 .*truncated|truncated.*measurement 1"):
        get_format("siemens-twix").open(cut)
