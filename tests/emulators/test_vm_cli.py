"""``imagelake vm``: list | register | verify | start | stop | status, on libvirt's test driver."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from imagelake.cli import cli

MD = Callable[..., dict[str, Any]]


@pytest.fixture
def setup(
    tmp_path: Path,
    manifest_data: MD,
    require_tool: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, Path]:
    qemu_img = require_tool("qemu-img")
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "test-recon@1.0.yaml").write_text(yaml.safe_dump(manifest_data()))
    built = tmp_path / "built"
    built.mkdir()
    subprocess.run(
        [qemu_img, "create", "-q", "-f", "qcow2", str(built / "rootfs.qcow2"), "16M"], check=True
    )
    (built / "vmlinuz").write_bytes(b"kernel")
    (built / "initrd.img").write_bytes(b"initrd")
    monkeypatch.setenv("IMAGELAKE_EMULATOR_MANIFESTS", str(manifests))
    monkeypatch.setenv("IMAGELAKE_EMULATOR_IMAGES", str(tmp_path / "store"))
    monkeypatch.setenv("IMAGELAKE_EMULATOR_WORK_DIR", str(tmp_path / "work"))
    monkeypatch.setenv("IMAGELAKE_EMULATOR_URI", "test:///default")
    return {
        "manifest": manifests / "test-recon@1.0.yaml",
        "built": built,
        "store": tmp_path / "store",
    }


def run(*args: str) -> Any:
    return CliRunner().invoke(cli, ["vm", *args], catch_exceptions=False)


def test_register_list_verify(setup: dict[str, Path]) -> None:
    assert "test-recon@1.0               missing" in run("list").output
    out = run("register", str(setup["manifest"]), "--image-dir", str(setup["built"]))
    assert out.exit_code == 0 and "registered test-recon@1.0" in out.output
    assert (setup["store"] / "test-recon" / "1.0" / "digests.json").is_file()
    listed = json.loads(run("list", "--format", "json").output)
    assert listed == [
        {
            "emulator": "test-recon@1.0",
            "vendor": "imagelake tests",
            "scanners": "Imagelake Reference RefScan CT (R1.0, R1.1)",
            "raw_formats": "refscan",
            "image": "registered",
        }
    ]
    out = run("verify", "test-recon@1.0")
    assert out.exit_code == 0 and "all 3 image files verified" in out.output


def test_start_status_stop(setup: dict[str, Path], libvirt_module: Any) -> None:
    run("register", str(setup["manifest"]), "--image-dir", str(setup["built"]))
    # test:///default keeps its domains only while some connection to it is open
    keep = libvirt_module.open("test:///default")
    out = run("start", "test-recon@1.0")
    assert out.exit_code == 0, out.output
    assert "acceleration: qemu" in out.output
    name = next(w for w in out.output.split() if w.startswith("imagelake-vm-"))
    assert f"virsh -c test:///default console {name}" in out.output
    status = json.loads(run("status", "--format", "json").output)
    assert status["hypervisor"] == "TEST"
    assert [d["name"] for d in status["domains"]] == [name]
    out = run("stop", name)
    assert out.exit_code == 0 and f"stopped {name}" in out.output
    assert "domains      (none)" in run("status").output
    keep.close()


def test_errors_are_one_line(setup: dict[str, Path], imagelake_exe: str) -> None:
    done = subprocess.run(
        [imagelake_exe, "vm", "verify", "test-recon@9"], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "error: unknown emulator 'test-recon@9'; known: test-recon@1.0"
