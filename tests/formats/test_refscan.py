"""The refscan format: header-only reading of both revisions, truncation, conformance."""

from __future__ import annotations

import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from imagelake.formats import RawFormatError, get_format, identify
from imagelake.formats.refscan import read_refscan_header
from imagelake.synthetic.refscan import (
    REFSCAN_PATIENT,
    RefscanGeometry,
    parallel_beam_sinogram,
    refscan_meta,
    write_refscan,
)
from imagelake.testing import FormatConformance

GEOMETRY = RefscanGeometry(n_views=32, n_detectors=48, n_slices=2, slice_spacing_mm=10.0)


def sample(path: Path, revision: int, **meta: Any) -> Path:
    sino = parallel_beam_sinogram(GEOMETRY)
    return write_refscan(
        path, sino, revision=revision, meta=refscan_meta(**meta), geometry=GEOMETRY
    )


EXPECTED = {
    "modality": "CT",
    "manufacturer": "Imagelake Reference",
    "model": "RefScan CT",
    "device_serial": "RS-0001",
    "station_name": "REFSCAN01",
    "institution": "SYNTHETIC imagelake site",
    "acquired_at": "2024-03-05T09:30:00",
    "study_instance_uid": "2.25.94017420987310212410419384771051034497",
    "frame_of_reference_uid": "2.25.94017420987310212410419384771051034499",
    "series_instance_uids": ("2.25.94017420987310212410419384771051034498",),
    "protocol_name": "SYNTHETIC head axial",
}


class TestRefscanRevision1Conformance(FormatConformance):
    format_name = "refscan"
    revision = 1

    @pytest.fixture
    def sample_path(self, tmp_path: Path) -> Path:
        return sample(tmp_path / "scan.rfs", self.revision)

    @pytest.fixture
    def corrupt_path(self, sample_path: Path) -> Path:
        data = sample_path.read_bytes()
        cut = sample_path.with_name("cut.rfs")
        cut.write_bytes(data[: len(data) - 100])
        return cut

    @pytest.fixture
    def expected_meta(self) -> Mapping[str, Any]:
        return {
            **EXPECTED,
            "software_version": "R1.1",
            "extra": {
                "refscan_revision": self.revision,
                "slices": 2,
                "views": 32,
                "detectors": 48,
                "payload_encoding": "float32-le" if self.revision == 1 else "int16-be",
                "payload_decodable_by_host": False,
            },
        }


class TestRefscanRevision2Conformance(TestRefscanRevision1Conformance):
    revision = 2


@pytest.mark.parametrize("revision", [1, 2])
def test_patient_identity_and_no_arrays(tmp_path: Path, revision: int) -> None:
    content = get_format("refscan").open(sample(tmp_path / "s.rfs", revision))
    patient = content.meta.patient
    assert patient.patient_id == REFSCAN_PATIENT["patient_id"]
    assert patient.name == REFSCAN_PATIENT["patient_name"]
    assert patient.birth_date == REFSCAN_PATIENT["patient_birth_date"]
    assert content.arrays == {}
    assert get_format("refscan").readable is False


@pytest.mark.parametrize("revision", [1, 2])
@pytest.mark.parametrize("keep", [5, 7, 100, 1030, -1])
def test_truncation_is_a_format_error(tmp_path: Path, revision: int, keep: int) -> None:
    path = sample(tmp_path / "s.rfs", revision)
    data = path.read_bytes()
    path.write_bytes(data[:keep])
    fmt = get_format("refscan")
    if 0 <= keep < 6:
        assert not fmt.guess_can_open(path)  # not even the magic: not claimed
        return
    with pytest.raises(RawFormatError, match=r"truncated|not a refscan"):
        fmt.open(path)


def test_revision_layouts_differ(tmp_path: Path) -> None:
    """Revision 1 is binary LE float32; revision 2 a text header and big-endian int16."""
    one = sample(tmp_path / "r1.rfs", 1).read_bytes()
    two = sample(tmp_path / "r2.rfs", 2).read_bytes()
    assert one[:8] == b"RFSCN\x00\x01\x00" and two[:8] == b"RFSCN\x00\x02\x00"
    n = 2 * 32 * 48
    assert len(one) == 1024 + 4 * n
    (text_len,) = struct.unpack_from("<I", two, 8)
    text = two[12 : 12 + text_len].decode("ascii")
    assert "payload_encoding=int16-be" in text and text.endswith("end=header\n")
    assert len(two) == 12 + text_len + 2 * n
    # the rev-2 payload decodes with its scale and offset to the rev-1 values (quantization)
    header = dict(line.split("=", 1) for line in text.splitlines())
    q = np.frombuffer(two[12 + text_len :], ">i2").astype(np.float64)
    values = q * float(header["payload_scale"]) + float(header["payload_offset"])
    exact = np.frombuffer(one[1024:], "<f4").astype(np.float64)
    assert np.max(np.abs(values - exact)) <= float(header["payload_scale"])


def test_unknown_revision_and_bad_header(tmp_path: Path) -> None:
    path = sample(tmp_path / "s.rfs", 1)
    data = bytearray(path.read_bytes())
    data[6:8] = struct.pack("<H", 3)
    path.write_bytes(bytes(data))
    assert identify(path) is get_format("refscan")
    with pytest.raises(RawFormatError, match="revision 3 is unknown"):
        get_format("refscan").open(path)
    two = sample(tmp_path / "t.rfs", 2)
    raw = two.read_bytes().replace(b"views=32\n", b"views=3x\n")
    two.write_bytes(raw)
    with pytest.raises(RawFormatError, match="views"):
        read_refscan_header(two)


def test_invalid_uids_and_dates_are_dropped(tmp_path: Path) -> None:
    path = sample(
        tmp_path / "s.rfs", 2, study_uid="not.a.uid", acquired="yesterday", patient_birth_date="x"
    )
    meta = get_format("refscan").open(path).meta
    assert meta.study_instance_uid is None
    assert meta.acquired_at is None
    assert meta.patient.birth_date is None
    assert meta.frame_of_reference_uid == EXPECTED["frame_of_reference_uid"]
