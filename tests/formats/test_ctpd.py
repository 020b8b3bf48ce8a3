"""DICOM-CT-PD reader: round trip with the SYNTHETIC writer, identification, corrupt groups."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest

from imagelake.formats import RawFormatError, get_format, identify
from imagelake.formats.ctpd import GEOMETRY_ATTRS
from imagelake.synthetic.sinogram import (
    CT_PD_PATIENT,
    FanBeamGeometry,
    fan_beam_sinogram,
    write_ctpd,
)
from imagelake.testing import FormatConformance

GEOMETRY = FanBeamGeometry(n_views=72, n_channels=96, channel_spacing_rad=0.009, n_rows=3)
PYDICOM_FILES = sorted((Path(pydicom.__file__).parent / "data" / "test_files").glob("*.dcm"))


@pytest.fixture(scope="module")
def scan(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], np.ndarray]:
    sino = fan_beam_sinogram(GEOMETRY, photons=1e5, seed=3)
    return write_ctpd(tmp_path_factory.mktemp("ctpd"), sino, GEOMETRY), sino


def _fmt() -> Any:
    return get_format("dicom-ct-pd")


def test_round_trip(scan: tuple[list[Path], np.ndarray]) -> None:
    paths, sino = scan
    content = _fmt().open_group(paths[::-1])  # order comes from the files, not the caller
    assert content.members == tuple(str(p) for p in paths)
    arr = content.arrays["sinogram"]
    assert arr.dims == ("view", "row", "channel") and arr.shape == sino.shape
    data = arr.load()
    slope = float(pydicom.dcmread(paths[0], stop_before_pixels=True).RescaleSlope)
    err = float(np.abs(data - sino).max())
    print(f"\nround trip: max error {err:.2e} (slope {slope:.2e})")
    assert err <= slope / 2 + 1e-6
    np.testing.assert_allclose(arr.coords["view"], GEOMETRY.view_angles(), atol=1e-6)
    np.testing.assert_allclose(arr.coords["row"], GEOMETRY.row_positions(), atol=1e-4)
    a = arr.attrs
    assert set(GEOMETRY_ATTRS) <= set(a)
    expected = {
        "source_isocenter_mm": GEOMETRY.source_isocenter_mm,
        "source_detector_mm": GEOMETRY.source_detector_mm,
        "channel_spacing_rad": GEOMETRY.channel_spacing_rad,
        "row_spacing_mm": GEOMETRY.row_spacing_mm,
        "central_channel": GEOMETRY.channel_center,
        "central_row": GEOMETRY.row_center,
        "water_attenuation_per_mm": GEOMETRY.water_attenuation_per_mm,
        "focal_center_axial_mm": GEOMETRY.table_position_mm,
    }
    for key, value in expected.items():
        assert a[key] == pytest.approx(value, rel=1e-6), key
    assert (a["projection_type"], a["detector_shape"], a["views_per_rotation"]) == (
        "AXIAL", "CYLINDRICAL", 72,
    )  # fmt: skip


def test_meta(scan: tuple[list[Path], np.ndarray]) -> None:
    paths, _ = scan
    meta = _fmt().open_group(paths).meta
    ds = pydicom.dcmread(paths[0], stop_before_pixels=True)
    assert (meta.manufacturer, meta.model, meta.software_version, meta.device_serial) == (
        "SIEMENS", "SOMATOM Force", "syngo CT VA50A", "SYN-75001",
    )  # fmt: skip
    assert meta.study_instance_uid == ds.StudyInstanceUID
    assert meta.frame_of_reference_uid == ds.FrameOfReferenceUID
    assert meta.series_instance_uids == (ds.SeriesInstanceUID,)
    assert meta.acquired_at == "2024-03-05T09:30:00" and meta.modality == "CT"
    assert meta.patient.patient_id == CT_PD_PATIENT.id  # compared, never printed
    assert meta.patient.name == CT_PD_PATIENT.name and meta.patient.birth_date == "19610615"
    assert "SYNTHETIC^CTPD" not in repr(meta)


def test_single_view_file(scan: tuple[list[Path], np.ndarray]) -> None:
    paths, sino = scan
    arr = _fmt().open(paths[5]).arrays["sinogram"]
    assert arr.shape == (1, 3, 96)
    np.testing.assert_allclose(arr.load()[0], sino[5], atol=2e-4)
    assert arr.coords["view"][0] == pytest.approx(GEOMETRY.view_angles()[5])


def test_identification(scan: tuple[list[Path], np.ndarray]) -> None:
    paths, _ = scan
    fmt = _fmt()
    assert fmt.guess_can_open(paths[0])
    assert identify(paths[0]) is fmt
    assert len(PYDICOM_FILES) > 50
    heads = [p.read_bytes()[:65536] for p in PYDICOM_FILES]
    start = time.perf_counter()
    claimed = [
        p.name for p, h in zip(PYDICOM_FILES, heads, strict=True) if fmt.guess_can_open(p, h)
    ]
    per_file = (time.perf_counter() - start) / len(heads)
    print(f"\nguess_can_open on ordinary DICOM: {per_file * 1e6:.1f} us per file")
    assert claimed == []
    assert per_file < 1e-3  # byte search only, no parse


def test_group_key(scan: tuple[list[Path], np.ndarray], tmp_path: Path) -> None:
    paths, sino = scan
    keys = {_fmt().group_key(p) for p in paths}
    assert len(keys) == 1
    other = write_ctpd(tmp_path / "other", sino, GEOMETRY, seed=9)
    assert _fmt().group_key(other[0]) not in keys


def test_corrupt_groups(scan: tuple[list[Path], np.ndarray], tmp_path: Path) -> None:
    paths = scan[0]
    fmt = _fmt()
    with pytest.raises(RawFormatError, match="missing in the middle"):
        fmt.open_group(paths[:10] + paths[11:])
    with pytest.raises(RawFormatError, match="duplicated InstanceNumber"):
        fmt.open_group([*paths, paths[3]])
    # the same scan's UIDs with another detector: geometry differs within one group
    g2 = FanBeamGeometry(n_views=72, n_channels=96, channel_spacing_rad=0.008, n_rows=3)
    odd = write_ctpd(tmp_path / "odd", fan_beam_sinogram(g2), g2)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    ds = pydicom.dcmread(odd[7])
    ref = pydicom.dcmread(paths[0], stop_before_pixels=True)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = ref.StudyInstanceUID, ref.SeriesInstanceUID
    ds.InstanceNumber = 73
    ds.save_as(mixed / "x.dcm")
    with pytest.raises(RawFormatError, match="channel_spacing"):
        fmt.open_group([*paths, mixed / "x.dcm"])
    with pytest.raises(RawFormatError, match="SeriesInstanceUID differs"):
        fmt.open_group([paths[0], odd[1]])
    # truncated and non-DICOM files
    short = tmp_path / "short.dcm"
    short.write_bytes(paths[0].read_bytes()[:400])
    with pytest.raises(RawFormatError):
        fmt.open_group([short])
    text = tmp_path / "text.dcm"
    text.write_text("not dicom")
    with pytest.raises(RawFormatError, match=r"text\.dcm"):
        fmt.open(text)
    # an ordinary CT image is not DICOM-CT-PD
    plain = tmp_path / "CT_small.dcm"
    shutil.copyfile(Path(pydicom.__file__).parent / "data" / "test_files" / "CT_small.dcm", plain)
    with pytest.raises(RawFormatError, match="missing"):
        fmt.open(plain)


def test_pixel_data_truncated(scan: tuple[list[Path], np.ndarray], tmp_path: Path) -> None:
    paths, _ = scan
    data = paths[0].read_bytes()
    bad = tmp_path / "cut.dcm"
    bad.write_bytes(data[: len(data) - 100])  # header intact, pixels short
    arr = _fmt().open(bad).arrays["sinogram"]
    with pytest.raises(RawFormatError, match=r"cut\.dcm"):
        arr.load()


class TestCtpdConformance(FormatConformance):
    format_name = "dicom-ct-pd"

    @pytest.fixture
    def sample_path(self, scan: tuple[list[Path], np.ndarray]) -> Path:
        return scan[0][0]  # one view file of the multi-file object

    @pytest.fixture
    def corrupt_path(self, scan: tuple[list[Path], np.ndarray], tmp_path: Path) -> Path:
        bad = tmp_path / "corrupt.dcm"
        bad.write_bytes(scan[0][0].read_bytes()[:1000])
        return bad

    @pytest.fixture
    def expected_meta(self) -> dict[str, Any]:
        return {"manufacturer": "SIEMENS", "model": "SOMATOM Force", "modality": "CT"}
