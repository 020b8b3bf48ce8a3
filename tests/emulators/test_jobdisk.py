"""Job disks: build (ext4, FAT) without mounting, a simulated guest's answer, reading it back."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from imagelake.emulators import (
    JOB_PROTOCOL,
    JobDiskError,
    JobRequest,
    MissingToolError,
    _jobdisk,
    build_job_disk,
    read_job_disk,
)

REQUEST = JobRequest("job-0001", "reference-recon@1.0", {"matrix": 128, "fov_mm": 200.0})
TOOLS = {"ext4": ("mke2fs", "debugfs"), "fat": ("mformat", "mmd", "mcopy", "mdir")}


@pytest.fixture
def inputs(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "raw"
    folder.mkdir()
    a = folder / "scan-rev1.rfs"
    a.write_bytes(b"RFSCN\x00\x01\x00" + bytes(range(256)) * 40)
    b = folder / "second_file.RFS"
    b.write_bytes(b"RFSCN\x00\x02\x00" + b"payload" * 100)
    return [a, b]


def _tools(require_tool: Callable[[str], str], fs: str) -> dict[str, str]:
    return {name: require_tool(name) for name in TOOLS[fs]}


def guest_answers(
    disk: Path,
    fs: str,
    tools: Mapping[str, str],
    *,
    result: object | None,
    outputs: Mapping[str, bytes] = {},
    done: bool = True,
    scratch: Path,
) -> None:
    """Write what a guest would (output files, result.json, DONE) into ``disk``."""
    scratch.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    for name, data in outputs.items():
        local = scratch / name.replace("/", "_")
        local.write_bytes(data)
        files[name] = local
    if result is not None:
        files["result.json"] = scratch / "result.json"
        files["result.json"].write_text(json.dumps(result))
    if done:
        files["DONE"] = scratch / "DONE"
        files["DONE"].write_bytes(b"")
    if fs == "ext4":
        lines = []
        for name, local in files.items():
            folder, _, base = name.rpartition("/")
            lines += [f"cd /{folder}", f"write {local} {base}"]
        script = scratch / "debugfs.cmd"
        script.write_text("\n".join(lines) + "\n")
        subprocess.run([tools["debugfs"], "-w", "-f", str(script), str(disk)], check=True,
                       capture_output=True)  # fmt: skip
    else:
        for name, local in files.items():
            subprocess.run([tools["mcopy"], "-i", str(disk), str(local), f"::/{name}"],
                           check=True, capture_output=True)  # fmt: skip


def list_ext4(debugfs: str, disk: Path, folder: str) -> str:
    proc = subprocess.run([debugfs, "-R", f"ls -p {folder}", str(disk)], capture_output=True,
                          text=True, check=True)  # fmt: skip
    return proc.stdout


@pytest.mark.parametrize("fs", ["ext4", "fat"])
def test_round_trip(
    tmp_path: Path, inputs: list[Path], fs: str, require_tool: Callable[[str], str]
) -> None:
    tools = _tools(require_tool, fs)
    disk = build_job_disk(REQUEST, inputs, tmp_path / "job.img", fs=fs)  # type: ignore[arg-type]
    assert disk.is_file() and disk.stat().st_size >= 64 * 1024 * 1024
    # what the guest sees: job.json, input/<names>, an empty output/
    check = tmp_path / "check"
    check.mkdir()
    if fs == "ext4":
        subprocess.run([tools["debugfs"], "-R", f"rdump / {check}", str(disk)], check=True,
                       capture_output=True)  # fmt: skip
    else:
        subprocess.run([tools["mcopy"], "-s", "-n", "-i", str(disk), "::/", str(check)],
                       check=True, capture_output=True)  # fmt: skip
    job = json.loads((check / "job.json").read_text())
    assert job == {
        "job_id": "job-0001",
        "emulator": "reference-recon@1.0",
        "params": {"matrix": 128, "fov_mm": 200.0},
        "inputs": ["input/scan-rev1.rfs", "input/second_file.RFS"],
        "protocol": JOB_PROTOCOL,
    }
    for path in inputs:
        assert (check / "input" / path.name).read_bytes() == path.read_bytes()
    assert (check / "output").is_dir() and not any((check / "output").iterdir())

    dicom = b"\x00" * 128 + b"DICM" + b"fake"
    guest_answers(
        disk, fs, tools, scratch=tmp_path / "guest",
        outputs={"output/img-0001.dcm": dicom, "output/img-0002.dcm": dicom + b"2"},
        result={"status": "ok", "software_version": "1.0", "message": "reconstructed",
                "log": "two images", "outputs": ["output/img-0001.dcm", "output/img-0002.dcm"]},
    )  # fmt: skip
    outcome = read_job_disk(disk, tmp_path / "out", fs=fs)  # type: ignore[arg-type]
    assert outcome.ok, outcome.message
    assert (outcome.status, outcome.done, outcome.message) == ("ok", True, "reconstructed")
    assert outcome.software_version == "1.0" and outcome.log == "two images"
    out = (tmp_path / "out").resolve()
    assert outcome.outputs == (out / "output/img-0001.dcm", out / "output/img-0002.dcm")
    assert outcome.outputs[1].read_bytes() == dicom + b"2"
    assert not (out / "input").exists()  # inputs are not copied back
    # reading again replaces the previous extraction
    again = read_job_disk(disk, tmp_path / "out", fs=fs)  # type: ignore[arg-type]
    assert again.outputs == outcome.outputs


@pytest.mark.parametrize("fs", ["ext4", "fat"])
def test_missing_done_is_a_failed_job(
    tmp_path: Path, inputs: list[Path], fs: str, require_tool: Callable[[str], str]
) -> None:
    tools = _tools(require_tool, fs)
    disk = build_job_disk(REQUEST, inputs[:1], tmp_path / "job.img", fs=fs)  # type: ignore[arg-type]
    empty = read_job_disk(disk, tmp_path / "empty", fs=fs)  # type: ignore[arg-type]
    assert (empty.status, empty.done) == ("failed", False)
    assert empty.message == "guest stopped without DONE"
    guest_answers(
        disk, fs, tools, scratch=tmp_path / "guest", done=False,
        outputs={"output/a.dcm": b"x"},
        result={"status": "ok", "message": "reconstructed", "outputs": ["output/a.dcm"]},
    )  # fmt: skip
    outcome = read_job_disk(disk, tmp_path / "out", fs=fs)  # type: ignore[arg-type]
    assert (outcome.status, outcome.done, outcome.ok) == ("failed", False, False)
    assert outcome.message.startswith("guest stopped without DONE")
    assert outcome.outputs == ()


def test_guest_error_and_bad_result(
    tmp_path: Path, inputs: list[Path], require_tool: Callable[[str], str]
) -> None:
    tools = _tools(require_tool, "ext4")
    disk = build_job_disk(REQUEST, inputs[:1], tmp_path / "job.img")
    message = "input/scan-rev1.rfs: refscan revision 2 is newer than this software (R1)"
    guest_answers(disk, "ext4", tools, scratch=tmp_path / "g1",
                  result={"status": "error", "message": message, "outputs": []})  # fmt: skip
    outcome = read_job_disk(disk, tmp_path / "out")
    assert (outcome.status, outcome.done, outcome.message) == ("error", True, message)
    # DONE but result.json garbage
    disk2 = build_job_disk(REQUEST, inputs[:1], tmp_path / "job2.img")
    guest_answers(disk2, "ext4", tools, scratch=tmp_path / "g2", result=["not", "an object"])
    bad = read_job_disk(disk2, tmp_path / "out2")
    assert bad.status == "failed" and "not a JSON object" in bad.message
    disk3 = build_job_disk(REQUEST, inputs[:1], tmp_path / "job3.img")
    guest_answers(disk3, "ext4", tools, scratch=tmp_path / "g3", result={"status": "maybe"})
    assert "status 'maybe'" in read_job_disk(disk3, tmp_path / "out3").message


@pytest.mark.parametrize(
    "listed",
    ["../job.json", "output/../job.json", "/etc/passwd", "input/scan-rev1.rfs", "output",
     "output/missing.dcm", 42],
)  # fmt: skip
def test_outputs_outside_output_are_refused(
    tmp_path: Path, inputs: list[Path], listed: object, require_tool: Callable[[str], str]
) -> None:
    tools = _tools(require_tool, "ext4")
    disk = build_job_disk(REQUEST, inputs[:1], tmp_path / "job.img")
    guest_answers(disk, "ext4", tools, scratch=tmp_path / "g", outputs={"output/a.dcm": b"x"},
                  result={"status": "ok", "outputs": ["output/a.dcm", listed]})  # fmt: skip
    outcome = read_job_disk(disk, tmp_path / "out")
    assert outcome.status == "failed"
    assert outcome.outputs == ()
    assert "output" in outcome.message
    assert not (tmp_path / "etc").exists()


def test_symlinked_output_is_refused(
    tmp_path: Path, inputs: list[Path], require_tool: Callable[[str], str]
) -> None:
    tools = _tools(require_tool, "ext4")
    disk = build_job_disk(REQUEST, inputs[:1], tmp_path / "job.img")
    script = tmp_path / "link.cmd"
    script.write_text("cd /output\nsymlink evil.dcm /etc/hostname\n")
    subprocess.run([tools["debugfs"], "-w", "-f", str(script), str(disk)], check=True,
                   capture_output=True)  # fmt: skip
    assert "evil.dcm" in list_ext4(tools["debugfs"], disk, "/output")
    guest_answers(disk, "ext4", tools, scratch=tmp_path / "g",
                  result={"status": "ok", "outputs": ["output/evil.dcm"]})  # fmt: skip
    outcome = read_job_disk(disk, tmp_path / "out")
    assert outcome.status == "failed" and "link" in outcome.message


def test_bad_requests(tmp_path: Path, inputs: list[Path]) -> None:
    with pytest.raises(JobDiskError, match="id@version"):
        JobRequest("j", "reference-recon")
    with pytest.raises(JobDiskError, match="job_id"):
        JobRequest("../j", "reference-recon@1.0")
    with pytest.raises(JobDiskError, match="JSON"):
        JobRequest("j", "reference-recon@1.0", {"x": object()})
    with pytest.raises(JobDiskError, match="plain file name"):
        build_job_disk(REQUEST, {"sub/dir.rfs": inputs[0]}, tmp_path / "x.img")
    with pytest.raises(JobDiskError, match="differ ignoring case"):
        build_job_disk(REQUEST, {"a.rfs": inputs[0], "A.RFS": inputs[1]}, tmp_path / "x.img")
    with pytest.raises(JobDiskError, match="at least one input"):
        build_job_disk(REQUEST, [], tmp_path / "x.img")
    with pytest.raises(JobDiskError, match="not one of"):
        build_job_disk(REQUEST, inputs, tmp_path / "x.img", fs="ntfs")  # type: ignore[arg-type]
    with pytest.raises(JobDiskError, match="too small"):
        build_job_disk(REQUEST, inputs, tmp_path / "x.img", size=1024)
    with pytest.raises(JobDiskError, match="does not exist"):
        read_job_disk(tmp_path / "nothing.img", tmp_path / "out")
    assert not (tmp_path / "x.img").exists()


@pytest.mark.parametrize(("fs", "package"), [("ext4", "e2fsprogs"), ("fat", "mtools")])
def test_missing_tools_name_the_package(
    tmp_path: Path, inputs: list[Path], fs: str, package: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "no-tools"
    empty.mkdir()
    monkeypatch.setattr(_jobdisk, "_search_path", lambda: str(empty))
    with pytest.raises(MissingToolError, match=f"Debian package {package}"):
        build_job_disk(REQUEST, inputs, tmp_path / "x.img", fs=fs)  # type: ignore[arg-type]
    (tmp_path / "y.img").write_bytes(b"")
    with pytest.raises(MissingToolError, match=f"Debian package {package}"):
        read_job_disk(tmp_path / "y.img", tmp_path / "out", fs=fs)  # type: ignore[arg-type]
