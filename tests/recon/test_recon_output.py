"""write_recon_series: valid CT/MR Image Storage (dciodvfy), reproducible UIDs, exact pixels."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from recon_mr_helpers import own_kspace_content

from imagelake.errors import ConfigError
from imagelake.formats import RawMeta
from imagelake.recon import get_reconstructor, write_recon_series
from imagelake.recon.output import recon_series_uid

SHA = hashlib.sha256(b"raw projection data").hexdigest()


def dciodvfy_errors(tool: str, path: Path) -> list[str]:
    proc = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    return [
        ln.strip()
        for ln in (proc.stdout + proc.stderr).splitlines()
        if ln.strip().startswith("Error")
    ]


def _read_back(paths: list[Path]) -> tuple[list[Any], np.ndarray]:
    sets = [pydicom.dcmread(p) for p in paths]
    values = np.stack(
        [ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept) for ds in sets]
    )
    return sets, values


def test_ct_series_is_valid_reproducible_and_exact(
    ct_scan: Any, tmp_path: Path, require_tool: Callable[[str], str]
) -> None:
    tool = require_tool("dciodvfy")
    result, meta = ct_scan.result, ct_scan.content.meta
    first = write_recon_series(result, meta, tmp_path / "a", raw_sha256=SHA)
    again = write_recon_series(result, meta, tmp_path / "b", raw_sha256=SHA)
    assert len(first) == result.volume.shape[0] == 4
    assert dciodvfy_errors(tool, first[0]) == []
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in again]

    sets, values = _read_back(first)
    ds = sets[0]
    assert ds.SOPClassUID == pydicom.uid.CTImageStorage and ds.PixelRepresentation == 1
    slope = float(ds.RescaleSlope)
    assert np.abs(values - result.volume).max() <= slope / 2 + 1e-3
    assert list(ds.ImageType) == ["DERIVED", "PRIMARY", "AXIAL"]
    # the scanner and the scan's UIDs come from the raw header
    assert ds.StudyInstanceUID == meta.study_instance_uid
    assert ds.FrameOfReferenceUID == meta.frame_of_reference_uid
    assert ds.SeriesInstanceUID not in meta.series_instance_uids
    assert (ds.Manufacturer, ds.ManufacturerModelName, ds.DeviceSerialNumber) == (
        meta.manufacturer, meta.model, meta.device_serial,
    )  # fmt: skip
    assert ds.SoftwareVersions == meta.software_version and ds.StationName == meta.station_name
    assert ds.PatientName == meta.patient.name and ds.PatientID == meta.patient.patient_id
    assert ds.AcquisitionDate + ds.AcquisitionTime == "20240305093000"
    assert SHA in ds.DerivationDescription and "ct-fbp" in ds.DerivationDescription
    assert ds.ContributingEquipmentSequence[0].Manufacturer == "imagelake"
    # geometry
    assert [float(v) for v in ds.PixelSpacing] == pytest.approx(result.pixel_spacing, rel=1e-9)
    for k, s in enumerate(sets):
        assert float(s.ImagePositionPatient[2]) == pytest.approx(result.slice_positions[k])
        assert float(s.SliceLocation) == pytest.approx(result.slice_positions[k])
        assert float(s.ImagePositionPatient[0]) == pytest.approx(result.origin[0])
    assert len({s.SOPInstanceUID for s in sets}) == 4


def test_other_params_give_another_series(ct_scan: Any) -> None:
    other = get_reconstructor("ct-fbp").run(ct_scan.content, matrix=32)
    assert recon_series_uid(other, SHA) != recon_series_uid(ct_scan.result, SHA)
    assert recon_series_uid(ct_scan.result, SHA) != recon_series_uid(ct_scan.result, "0" * 64)
    assert recon_series_uid(ct_scan.result, SHA) == recon_series_uid(ct_scan.result, SHA)


def test_mr_series_without_header_uids(
    mr_phantom: Path, tmp_path: Path, require_tool: Callable[[str], str]
) -> None:
    tool = require_tool("dciodvfy")
    result = get_reconstructor("mr-cartesian").run(own_kspace_content(mr_phantom))
    meta = RawMeta(
        modality="MR", manufacturer="SIEMENS", model="Skyra", acquired_at="2021-06-22T15:16:35"
    )
    paths = write_recon_series(result, meta, tmp_path / "mr", raw_sha256=SHA, series_number=7)
    assert dciodvfy_errors(tool, paths[0]) == []
    sets, values = _read_back(paths)
    ds = sets[0]
    assert ds.SOPClassUID == pydicom.uid.MRImageStorage and ds.PixelRepresentation == 0
    assert np.abs(values - result.volume).max() <= float(ds.RescaleSlope) / 2 * 1.0001
    assert ds.PatientName == "SYNTHETIC^RECON" and ds.SeriesNumber == 7
    assert (ds.StudyDate, ds.StudyTime) == ("20210622", "151635")
    again = write_recon_series(result, RawMeta(), tmp_path / "mr2", raw_sha256=SHA)
    ds2 = pydicom.dcmread(again[0])
    # derived from the raw sha256 alone: same study and frame of reference, however described
    assert (ds2.StudyInstanceUID, ds2.FrameOfReferenceUID, ds2.SOPInstanceUID) == (
        ds.StudyInstanceUID, ds.FrameOfReferenceUID, ds.SOPInstanceUID,
    )  # fmt: skip


def test_bad_arguments(ct_scan: Any, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="64 hex digits"):
        write_recon_series(ct_scan.result, RawMeta(), tmp_path, raw_sha256="abc")
