"""The reference emulator image: built from Debian packages, booted in plain qemu (TCG).

The images are built once per session (about 6 s a version). Four boots (about 20 s each
under TCG, run two at a time) check the job protocol end to end:

- v1.0 reconstructs a revision-1 file: DICOM that ``dciodvfy`` passes without errors, the
  raw header's patient, study and frame of reference, pixels equal to the host's numpy FBP
  (same algorithm) within rounding, and close to the phantom;
- v1.0 refuses a revision-2 file, v2.0 refuses a revision-1 file, with a clear message;
- v2.0 reconstructs a revision-2 file from a FAT job disk (the transport for guests that read
  no ext4).

libvirt is not used here: tests/emulators/test_manager*.py run the same images through the
emulator manager.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from reference_build import SBIN, build
from reference_build import missing as _missing

from imagelake.emulators import JobOutcome, JobRequest, build_job_disk, read_job_disk
from imagelake.formats import get_format
from imagelake.recon.parallel import fbp_parallel
from imagelake.synthetic.refscan import (
    RefscanGeometry,
    parallel_beam_sinogram,
    refscan_meta,
    write_refscan,
)
from imagelake.synthetic.sinogram import MU_WATER_PER_MM, rasterize_phantom

GEOMETRY = RefscanGeometry(n_slices=2, first_slice_z_mm=0.0, slice_spacing_mm=20.0)
RADIUS_MM = 110.0  # the phantom's size (synthetic.refscan's default)
MATRIX = 256  # the guest's default image size: 256 x 256 pixels of 1 mm
BOOT_TIMEOUT_S = 300


def digests_of(folder: Path) -> dict[str, str]:
    import hashlib

    names = {"disk": "rootfs.qcow2", "kernel": "vmlinuz", "initrd": "initrd.img"}
    return {r: hashlib.sha256((folder / n).read_bytes()).hexdigest() for r, n in names.items()}


@pytest.fixture(scope="session")
def image_store(reference_images: Path) -> Path:
    """Both versions, built once per session (the ``reference_images`` fixture)."""
    return reference_images


# -- the build -----------------------------------------------------------------------------------
def test_build_writes_verified_digests(image_store: Path) -> None:
    for version, revision in (("1.0", 1), ("2.0", 2)):
        folder = image_store / "reference-recon" / version
        recorded = json.loads((folder / "digests.json").read_text())  # ImageStore's layout
        assert {role: entry["sha256"] for role, entry in recorded.items()} == digests_of(folder)
        assert recorded["disk"]["file"] == "rootfs.qcow2"
        info = json.loads((folder / "build-info.json").read_text())
        assert info["refscan_revision"] == revision and "ext4.ko" in info["modules"]
        assert (folder / "initrd.img").read_bytes()[:2] == b"\x1f\x8b"  # gzip'd newc cpio
        assert (folder / "rootfs.qcow2").read_bytes()[:4] == b"QFI\xfb"
    one, two = (digests_of(image_store / "reference-recon" / v) for v in ("1.0", "2.0"))
    assert one["disk"] != two["disk"] and one["kernel"] == two["kernel"]


def test_build_is_idempotent_and_never_replaces_silently(image_store: Path, tmp_path: Path) -> None:
    folder = image_store / "reference-recon" / "1.0"
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    again = build("1.0", image_store)
    assert again.returncode == 0 and "up to date" in again.stdout
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before
    # a copy whose kernel changed is refused, then rebuilt with --force, to the same bytes
    other = tmp_path / "store"
    shutil.copytree(image_store / "reference-recon" / "1.0", other / "reference-recon" / "1.0")
    kernel = other / "reference-recon" / "1.0" / "vmlinuz"
    kernel.write_bytes(kernel.read_bytes() + b"tampered")
    refused = build("1.0", other)
    assert refused.returncode == 1 and "refusing" in refused.stderr
    assert kernel.read_bytes().endswith(b"tampered")
    forced = build("1.0", other, "--force")
    assert forced.returncode == 0, forced.stderr
    assert digests_of(other / "reference-recon" / "1.0") == digests_of(folder)  # reproducible
    bad = build("3.0", other)
    assert bad.returncode == 2 and "1.0 or 2.0" in bad.stderr


# -- boots ---------------------------------------------------------------------------------------
@dataclass
class Boot:
    outcome: JobOutcome
    console: str
    seconds: float


def _boot(image: Path, disk: Path, console: Path, work: Path) -> float:
    qemu = shutil.which("qemu-system-x86_64")
    qemu_img = shutil.which("qemu-img", path=SBIN)
    assert qemu and qemu_img
    overlay = work / "overlay.qcow2"
    subprocess.run(
        [qemu_img, "create", "-q", "-f", "qcow2", "-F", "qcow2",
         "-b", str(image / "rootfs.qcow2"), str(overlay)],
        check=True,
    )  # fmt: skip
    started = time.monotonic()
    with open(console, "wb") as log:
        proc = subprocess.run(
            [qemu, "-machine", "accel=tcg", "-m", "256", "-smp", "1", "-nographic",
             "-no-reboot", "-net", "none",
             "-kernel", str(image / "vmlinuz"), "-initrd", str(image / "initrd.img"),
             "-append", "console=ttyS0 root=/dev/vda rw panic=-1 quiet",
             "-drive", f"file={overlay},if=virtio,format=qcow2",
             "-drive", f"file={disk},if=virtio,format=raw"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            timeout=BOOT_TIMEOUT_S, check=False,
        )  # fmt: skip
    overlay.unlink()
    assert proc.returncode == 0, console.read_text(errors="replace")[-2000:]
    return time.monotonic() - started


@dataclass(frozen=True)
class Case:
    version: str
    revision: int
    fs: str


CASES = {
    "v1-rev1": Case("1.0", 1, "ext4"),
    "v1-rev2": Case("1.0", 2, "ext4"),
    "v2-rev1": Case("2.0", 1, "ext4"),
    "v2-rev2-fat": Case("2.0", 2, "fat"),
}


@pytest.fixture(scope="module")
def sinogram() -> np.ndarray[Any, np.dtype[np.float32]]:
    return parallel_beam_sinogram(GEOMETRY, radius_mm=RADIUS_MM)


@pytest.fixture(scope="module")
def boots(
    image_store: Path,
    sinogram: np.ndarray[Any, Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Boot]]:
    """Every case's job, booted two at a time (TCG uses one host core per guest)."""
    if shutil.which("qemu-system-x86_64") is None:
        _missing("qemu-system-x86_64 is not installed (Debian package qemu-system-x86)")
    root = tmp_path_factory.mktemp("boots")

    def run(name: str) -> Boot:
        case = CASES[name]
        work = root / name
        work.mkdir()
        software = "R1.1" if case.revision == 1 else "R2.0"
        raw = write_refscan(
            work / f"phantom-rev{case.revision}.rfs", sinogram, revision=case.revision,
            geometry=GEOMETRY, meta=refscan_meta(software_version=software),
        )  # fmt: skip
        request = JobRequest(f"test-{name}", f"reference-recon@{case.version}", {})
        disk = build_job_disk(request, [raw], work / "job.img", fs=case.fs)  # type: ignore[arg-type]
        image = image_store / "reference-recon" / case.version
        seconds = _boot(image, disk, work / "console.log", work)
        outcome = read_job_disk(disk, work / "out", fs=case.fs)  # type: ignore[arg-type]
        return Boot(outcome, (work / "console.log").read_text(errors="replace"), seconds)

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(CASES, pool.map(run, CASES), strict=True))
    yield results


def _hu(path: Path) -> tuple[Any, np.ndarray[Any, np.dtype[np.float64]]]:
    import pydicom

    ds = pydicom.dcmread(path)
    return ds, ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(
        ds.RescaleIntercept
    )


def _host_hu(sinogram: np.ndarray[Any, Any], k: int) -> np.ndarray[Any, np.dtype[np.float64]]:
    mu = fbp_parallel(sinogram[k], GEOMETRY.view_angles(), matrix=MATRIX)
    # the guest stores rounded HU + 1024 in unsigned 16 bits: below -1024 HU is clipped
    return np.maximum(np.rint(1000 * (mu - MU_WATER_PER_MM) / MU_WATER_PER_MM), -1024)


def _truth_hu(k: int) -> np.ndarray[Any, np.dtype[np.float64]]:
    z = float(GEOMETRY.slice_positions()[k])
    mu = rasterize_phantom(MATRIX, 1.0, z_mm=z, radius_mm=RADIUS_MM)
    return 1000 * (mu - MU_WATER_PER_MM) / MU_WATER_PER_MM


def _uniform(image: np.ndarray[Any, Any], margin: int = 2) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """Pixels whose neighbours within ``margin`` all have the same true value (no edges)."""
    keep = np.ones(image.shape, bool)
    padded = np.pad(image, margin, mode="edge")
    n = image.shape[0]
    for dy in range(-margin, margin + 1):
        for dx in range(-margin, margin + 1):
            shifted = padded[margin + dy : margin + dy + n, margin + dx : margin + dx + n]
            keep &= shifted == image
    return keep


def _dciodvfy_errors(path: Path) -> list[str]:
    tool = shutil.which("dciodvfy")
    if tool is None:
        _missing("dciodvfy is not installed (Debian package dicom3tools)")
    proc = subprocess.run([tool, str(path)], capture_output=True, text=True, check=False)
    return [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("Error")]


@pytest.mark.vm
@pytest.mark.slow
def test_v1_reconstructs_revision_1(boots: dict[str, Boot], sinogram: np.ndarray[Any, Any]) -> None:
    boot = boots["v1-rev1"]
    outcome = boot.outcome
    assert outcome.ok, (outcome.message, boot.console[-2000:])
    assert outcome.software_version == "1.0"
    assert "reference-emulator: powering off" in boot.console
    assert [p.name for p in outcome.outputs] == ["phantom-rev1-0001.dcm", "phantom-rev1-0002.dcm"]
    header = refscan_meta()
    series: set[str] = set()
    sops: set[str] = set()
    for k, path in enumerate(outcome.outputs):
        assert _dciodvfy_errors(path) == []
        ds, hu = _hu(path)
        assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
        assert list(ds.ImageType) == ["DERIVED", "PRIMARY", "AXIAL"]
        assert list(ds.SoftwareVersions) == ["reference-recon 1.0", "R1.1"]
        assert "reference-recon 1.0" in ds.SeriesDescription
        assert ds.StudyInstanceUID == header["study_uid"]
        assert ds.FrameOfReferenceUID == header["frame_of_reference_uid"]
        assert ds.SeriesInstanceUID.startswith("2.25.")
        assert ds.SeriesInstanceUID != header["series_uid"]
        assert ds.SOPInstanceUID.startswith("2.25.") and ds.SOPInstanceUID == (
            ds.file_meta.MediaStorageSOPInstanceUID
        )
        assert (ds.PatientID, str(ds.PatientName)) == (
            header["patient_id"], header["patient_name"],
        )  # fmt: skip
        assert (ds.Manufacturer, ds.ManufacturerModelName) == ("Imagelake Reference", "RefScan CT")
        assert float(ds.ImagePositionPatient[2]) == GEOMETRY.slice_positions()[k]
        assert (float(ds.RescaleSlope), float(ds.RescaleIntercept)) == (1.0, -1024.0)
        assert ds.Rows == ds.Columns == MATRIX
        series.add(ds.SeriesInstanceUID)
        sops.add(ds.SOPInstanceUID)

        # the same algorithm on the host, in double precision: equal up to rounding
        host = _host_hu(sinogram, k)
        diff = hu - host
        assert np.corrcoef(hu.ravel(), host.ravel())[0, 1] > 0.99999
        assert np.sqrt(np.mean(diff**2)) < 0.5  # HU
        assert np.abs(diff).max() <= 4  # HU (float32 payload and sums in the guest)

        # and the phantom: FBP blurs and rings at edges, so compare honestly in two ways
        truth = _truth_hu(k)
        assert np.corrcoef(hu.ravel(), truth.ravel())[0, 1] > 0.99
        assert np.sqrt(np.mean((hu - truth) ** 2)) < 70  # HU, all pixels (edges dominate)
        flat = _uniform(truth) & (truth > -500)  # inside the head, away from edges
        assert flat.sum() > 5000
        assert np.sqrt(np.mean((hu - truth)[flat] ** 2)) < 15  # HU
        water = flat & (np.abs(truth) < 1)
        assert abs(float(np.mean(hu[water]))) < 5  # brain (water): 0 HU
    assert len(series) == 1 and len(sops) == 2


@pytest.mark.vm
@pytest.mark.slow
def test_v1_refuses_revision_2(boots: dict[str, Boot]) -> None:
    outcome = boots["v1-rev2"].outcome
    assert (outcome.status, outcome.done, outcome.outputs) == ("error", True, ())
    assert "revision 2 is newer than this software (R1)" in outcome.message
    assert outcome.software_version == "1.0"


@pytest.mark.vm
@pytest.mark.slow
def test_v2_refuses_revision_1(boots: dict[str, Boot]) -> None:
    outcome = boots["v2-rev1"].outcome
    assert (outcome.status, outcome.done, outcome.outputs) == ("error", True, ())
    assert "revision 1 is no longer supported by this software (R2" in outcome.message
    assert "reference-recon 1.0" in outcome.message
    assert outcome.software_version == "2.0"


@pytest.mark.vm
@pytest.mark.slow
def test_v2_reconstructs_revision_2_from_a_fat_disk(
    boots: dict[str, Boot], sinogram: np.ndarray[Any, Any]
) -> None:
    boot = boots["v2-rev2-fat"]
    outcome = boot.outcome
    assert outcome.ok, (outcome.message, boot.console[-2000:])
    assert outcome.software_version == "2.0"
    assert len(outcome.outputs) == 2
    for k, path in enumerate(outcome.outputs):
        assert _dciodvfy_errors(path) == []
        ds, hu = _hu(path)
        assert list(ds.SoftwareVersions) == ["reference-recon 2.0", "R2.0"]
        assert "reference-recon 2.0" in ds.SeriesDescription
        # int16 quantization of the payload (about 1e-4 of a line integral) adds < 1 HU
        host = _host_hu(sinogram, k)
        assert np.sqrt(np.mean((hu - host) ** 2)) < 1.0
        assert np.abs(hu - host).max() <= 6


@pytest.mark.vm
@pytest.mark.slow
def test_boot_times_and_host_reader(boots: dict[str, Boot], image_store: Path) -> None:
    """Each job is one boot of well under the manifests' timeout; the host reads the header."""
    for name, boot in boots.items():
        assert boot.seconds < 240, f"{name}: {boot.seconds:.0f} s"
    v1 = boots["v1-rev1"].outcome.out_dir.parent / "phantom-rev1.rfs"
    meta = get_format("refscan").open(v1).meta
    assert meta.extra["refscan_revision"] == 1 and meta.software_version == "R1.1"
