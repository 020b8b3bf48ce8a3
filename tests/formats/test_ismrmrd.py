"""The ISMRMRD format on real files written by Debian's ismrmrd-tools, checked against the
PyPI ``ismrmrd`` package's own reader."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import ismrmrd
import ismrmrd.xsd as xsd
import numpy as np
import pytest
from _rawformat_helpers import plain_hdf5, truncated_copy
from xsdata.models.datatype import XmlDate, XmlTime

from imagelake.errors import MissingExtraError
from imagelake.formats import PatientIdentity, RawFormatError, get_format, identify
from imagelake.synthetic.samples import ismrmrd_phantom
from imagelake.synthetic.ultrasound import uff_channel_data
from imagelake.testing import FormatConformance, default_foreign_paths

TOOL = "ismrmrd_generate_cartesian_shepp_logan"

UIDS = {
    "for": "1.2.826.0.1.3680043.8.498.101",
    "root": "1.2.826.0.1.3680043.8.498.102",
    "ref1": "1.2.826.0.1.3680043.8.498.103",
    "ref2": "1.2.826.0.1.3680043.8.498.104",
    "study": "1.2.826.0.1.3680043.8.498.105",
}
# SYNTHETIC identity stamped into the phantom's header
PATIENT = PatientIdentity(patient_id="SYN-RAW-001", name="SYNTHETIC^RAW", birth_date="19700102")


def stamped_metadata() -> dict[str, dict[str, Any]]:
    return {
        "acquisitionSystemInformation": {
            "systemVendor": "SIEMENS",
            "systemModel": "Prisma",
            "deviceSerialNumber": "166001",
            "stationName": "MRC1",
            "institutionName": "Example Hospital",
        },
        "measurementInformation": {
            "patientPosition": xsd.patientPositionType.HFS,
            "seriesDate": XmlDate(2024, 3, 1),
            "seriesTime": XmlTime(10, 22, 5),
            "protocolName": "t1_gre",
            "sequenceName": "gre2d",
            "measurementID": "166001_1_1_7",
            "frameOfReferenceUID": UIDS["for"],
            "seriesInstanceUIDRoot": UIDS["root"],
            "referencedImageSequence": xsd.referencedImageSequenceType(
                referencedSOPInstanceUID=[UIDS["ref1"], UIDS["ref2"]]
            ),
        },
        "studyInformation": {
            "studyInstanceUID": UIDS["study"],
            "studyDate": XmlDate(2024, 3, 1),
            "studyTime": XmlTime(10, 0, 0),
        },
        "subjectInformation": {
            "patientName": PATIENT.name,
            "patientID": PATIENT.patient_id,
            "patientBirthdate": XmlDate(1970, 1, 2),
        },
        "userParameters": {
            "userParameterString": [
                xsd.userParameterStringType(name="SoftwareVersions", value="syngo MR XA30")
            ]
        },
    }


@pytest.fixture(scope="module")
def phantoms(
    tmp_path_factory: pytest.TempPathFactory, require_tool: Callable[[str], str]
) -> dict[str, Path]:
    """Small real ISMRMRD files: stamped metadata, 2 repetitions, and noise scans (-C)."""
    tool = require_tool(TOOL)
    folder = tmp_path_factory.mktemp("ismrmrd")
    out = {
        "stamped": ismrmrd_phantom(
            folder / "stamped.h5", matrix=32, coils=2, metadata=stamped_metadata()
        ),
        "reps": ismrmrd_phantom(folder / "reps.h5", matrix=32, coils=3, repetitions=2),
        "plain": ismrmrd_phantom(folder / "plain.mrd", matrix=64, coils=4),
    }
    # noise calibration and a non-default group name: options ismrmrd_phantom does not expose
    noise = folder / "noise.h5"
    cmd = [tool, "-o", str(noise), "-m", "32", "-c", "2", "-r", "2", "-C", "-d", "scan"]
    subprocess.run(cmd, check=True, capture_output=True)
    out["noise"] = noise
    return out


def reference_kspace(path: Path, group: str = "dataset") -> tuple[np.ndarray, np.ndarray]:
    """(kspace [repetition, coil, ky, kx], noise [acq, coil, sample]) via ismrmrd.Dataset."""
    ds = ismrmrd.Dataset(str(path), group, create_if_needed=False, mode="r")
    try:
        acqs = [ds.read_acquisition(i) for i in range(ds.number_of_acquisitions())]
    finally:
        ds.close()
    imaging = [a for a in acqs if not a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)]
    noise = [a.data for a in acqs if a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)]
    n_rep = max(a.idx.repetition for a in imaging) + 1
    n_ky = max(a.idx.kspace_encode_step_1 for a in imaging) + 1
    nc, ns = imaging[0].data.shape
    k = np.zeros((n_rep, nc, n_ky, ns), np.complex64)
    for a in imaging:
        k[a.idx.repetition, :, a.idx.kspace_encode_step_1, :] = a.data
    return k, np.stack(noise) if noise else np.zeros((0,))


class TestIsmrmrdConformance(FormatConformance):
    format_name = "ismrmrd"

    @pytest.fixture
    def sample_path(self, phantoms: Mapping[str, Path]) -> Path:
        return phantoms["stamped"]

    @pytest.fixture
    def foreign_paths(self, tmp_path: Path) -> Sequence[Path]:
        fmt = get_format("ismrmrd")
        paths = default_foreign_paths(tmp_path / "foreign", fmt)
        paths.append(uff_channel_data(tmp_path / "rf.h5", n_elements=8, n_samples=64))
        paths.append(plain_hdf5(tmp_path / "other.h5"))
        only_xml = tmp_path / "only_xml.h5"
        with h5py.File(only_xml, "w") as h5:
            h5.create_group("dataset").create_dataset("xml", data=[b"<ismrmrdHeader/>"])
        paths.append(only_xml)
        return paths

    @pytest.fixture
    def corrupt_path(self, phantoms: Mapping[str, Path], tmp_path: Path) -> Path:
        return truncated_copy(phantoms["stamped"], tmp_path / "cut.h5", 0.5)

    @pytest.fixture
    def expected_meta(self) -> Mapping[str, Any]:
        return {
            "modality": "MR",
            "manufacturer": "SIEMENS",
            "model": "Prisma",
            "software_version": "syngo MR XA30",
            "device_serial": "166001",
            "station_name": "MRC1",
            "institution": "Example Hospital",
            "acquired_at": "2024-03-01T10:22:05",
            "study_instance_uid": UIDS["study"],
            "frame_of_reference_uid": UIDS["for"],
            "referenced_sop_instance_uids": (UIDS["ref1"], UIDS["ref2"]),
            "protocol_name": "t1_gre",
            "sequence_name": "gre2d",
            "patient": PATIENT,
            "extra": {
                "trajectory": "cartesian",
                "encoded_matrix": [64, 32, 1],
                "recon_matrix": [32, 32, 1],
                "n_acquisitions": 32,
                "series_instance_uid_root": UIDS["root"],
                "measurement_id": "166001_1_1_7",
            },
        }


def test_kspace_equals_ismrmrd_package(phantoms: Mapping[str, Path]) -> None:
    content = get_format("ismrmrd").open(phantoms["reps"])
    arr = content.arrays["kspace"]
    assert arr.dims == ("repetition", "coil", "ky", "kx")
    assert arr.attrs["encoded_matrix"] == [64, 32, 1]
    assert arr.attrs["recon_matrix"] == [32, 32, 1]
    assert arr.attrs["readout_oversampling"] == 2.0
    ref, _ = reference_kspace(phantoms["reps"])
    got = arr.load()
    assert ref.shape == got.shape == (2, 3, 32, 64)
    assert np.array_equal(got, ref)
    assert np.abs(got).max() > 0  # a real phantom, not zeros
    assert "noise" not in content.arrays


def test_2d_single_repetition_dims(phantoms: Mapping[str, Path]) -> None:
    arr = get_format("ismrmrd").open(phantoms["plain"]).arrays["kspace"]
    assert arr.dims == ("coil", "ky", "kx")
    assert arr.shape == (4, 64, 128)
    ref, _ = reference_kspace(phantoms["plain"])
    assert np.array_equal(arr.load(), ref[0])


def test_noise_scans_are_a_separate_array(phantoms: Mapping[str, Path]) -> None:
    path = phantoms["noise"]
    fmt = get_format("ismrmrd")
    assert fmt.guess_can_open(path)  # group "scan", not "dataset"
    content = fmt.open(path)
    ref_k, ref_noise = reference_kspace(path, group="scan")
    assert content.meta.extra["n_noise_acquisitions"] == len(ref_noise) == 1
    assert np.array_equal(content.arrays["kspace"].load(), ref_k)
    noise = content.arrays["noise"]
    assert noise.dims == ("acquisition", "coil", "sample")
    assert np.array_equal(noise.load(), ref_noise)


def test_metadata_absent_when_header_lacks_it(phantoms: Mapping[str, Path]) -> None:
    meta = get_format("ismrmrd").open(phantoms["plain"]).meta
    assert meta.institution == "ISMRM Synthetic Imaging Lab"  # what the tool writes
    assert meta.manufacturer is meta.model is meta.acquired_at is meta.software_version is None
    assert meta.frame_of_reference_uid is None and meta.referenced_sop_instance_uids == ()
    assert meta.patient.empty


def test_patient_identity_is_read_but_hidden(phantoms: Mapping[str, Path]) -> None:
    meta = get_format("ismrmrd").open(phantoms["stamped"]).meta
    same = meta.patient == PATIENT
    assert same, "patient identity not read from subjectInformation"
    assert "SYNTHETIC^RAW" not in repr(meta) and "SYN-RAW-001" not in str(meta.public())


@pytest.mark.parametrize("fraction", [0.5, 0.99, 0.001])
def test_truncated_file_is_a_raw_format_error(
    phantoms: Mapping[str, Path], tmp_path: Path, fraction: float
) -> None:
    cut = truncated_copy(phantoms["stamped"], tmp_path / "cut.h5", fraction)
    assert identify(cut) is get_format("ismrmrd")  # claimed by name, so it gets reported
    with pytest.raises(RawFormatError, match=r"cut.h5.*truncated"):
        get_format("ismrmrd").open(cut)


def test_bad_xml_header_is_a_raw_format_error(phantoms: Mapping[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "badxml.h5"
    bad.write_bytes(phantoms["plain"].read_bytes())
    with h5py.File(bad, "r+") as h5:
        del h5["dataset/xml"]
        h5["dataset"].create_dataset("xml", data=[b"<ismrmrdHeader><encoding>oops"])
    with pytest.raises(RawFormatError, match=r"badxml.h5.*XML"):
        get_format("ismrmrd").open(bad)


def test_opened_read_only(phantoms: Mapping[str, Path], tmp_path: Path) -> None:
    copy = tmp_path / "ro.h5"
    copy.write_bytes(phantoms["plain"].read_bytes())
    os.chmod(copy, stat.S_IRUSR)
    before = copy.read_bytes()
    content = get_format("ismrmrd").open(copy)
    content.arrays["kspace"].load()
    assert copy.read_bytes() == before


def test_fast_enough(phantoms: Mapping[str, Path]) -> None:
    """h5py on the compound dataset, not ismrmrd's 17 ms per acquisition."""
    start = time.perf_counter()
    content = get_format("ismrmrd").open(phantoms["plain"])
    content.arrays["kspace"].load()
    elapsed = time.perf_counter() - start
    assert elapsed < 0.5, f"open+load of 64 acquisitions took {elapsed:.3f} s"


def test_missing_extra_is_named(
    phantoms: Mapping[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without h5py, the file is still claimed by magic + name and open names the extra."""
    monkeypatch.setitem(sys.modules, "h5py", None)  # makes `import h5py` raise ImportError
    fmt = get_format("ismrmrd")
    assert fmt.guess_can_open(phantoms["plain"])
    with pytest.raises(MissingExtraError, match=r"imagelake\[raw\]"):
        fmt.open(phantoms["plain"])


def test_non_cartesian_gives_acquisitions_and_trajectory(
    tmp_path: Path, require_tool: Callable[[str], str]
) -> None:
    """A real file with stored k-coordinates (-k), its header changed to a radial encoding."""
    path = tmp_path / "radial.h5"
    cmd = [require_tool(TOOL), "-o", str(path), "-m", "16", "-c", "2", "-k"]
    subprocess.run(cmd, check=True, capture_output=True)
    ds = ismrmrd.Dataset(str(path), "dataset", create_if_needed=False)
    try:
        header = xsd.CreateFromDocument(ds.read_xml_header())
        header.encoding[0].trajectory = xsd.trajectoryType.RADIAL
        ds.write_xml_header(xsd.ToXML(header))
        acqs = [ds.read_acquisition(i) for i in range(ds.number_of_acquisitions())]
    finally:
        ds.close()
    content = get_format("ismrmrd").open(path)
    assert set(content.arrays) == {"acquisitions", "traj"}
    assert content.meta.extra["trajectory"] == "radial"
    data = content.arrays["acquisitions"].load()
    traj = content.arrays["traj"].load()
    assert np.array_equal(data, np.stack([a.data for a in acqs]))
    assert traj.shape == (16, 32, 2)
    assert np.array_equal(traj, np.stack([a.traj for a in acqs]))
    assert np.ptp(traj) > 0
