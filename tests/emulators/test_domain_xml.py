"""The generated domain XML, parsed, and the overlay each job boots from."""

from __future__ import annotations

import json
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from imagelake.emulators import (
    PROGRESS_CHANNEL,
    EmulatorManifest,
    create_overlay,
    domain_xml,
    overlay_command,
)
from imagelake.emulators._domain import disk_format
from imagelake.errors import StoreError


def job_domain(manifest: EmulatorManifest, **kw: Any) -> ET.Element:
    args: dict[str, Any] = {
        "name": "imagelake-job-0123456789ab",
        "domain_type": "qemu",
        "overlay": "/work/run/overlay.qcow2",
        "console_log": "/jobs/1/console.log",
        "job_disk": "/jobs/1/job.img",
        "kernel": "/store/vmlinuz",
        "initrd": "/store/initrd.img",
        "run_as": "+0:+0",
        "description": "imagelake job; lock=/work/run/lock",
    }
    args.update(kw)
    return ET.fromstring(domain_xml(manifest, **args))


def test_job_domain_essentials(make_manifest: Callable[..., EmulatorManifest]) -> None:
    dom = job_domain(make_manifest())
    assert dom.get("type") == "qemu"
    assert dom.findtext("name") == "imagelake-job-0123456789ab"
    assert dom.find("features/acpi") is not None  # or power-off never ends the domain
    assert dom.findall(".//interface") == []  # no network, ever
    assert dom.findtext("on_poweroff") == "destroy"
    assert dom.findtext("on_reboot") == "destroy" and dom.findtext("on_crash") == "destroy"
    assert dom.find("memory").get("unit") == "MiB" and dom.findtext("memory") == "256"
    assert dom.findtext("vcpu") == "1"
    assert dom.find("cpu") is None  # TCG: QEMU's default CPU model
    assert dom.findtext("os/kernel") == "/store/vmlinuz"
    assert dom.findtext("os/initrd") == "/store/initrd.img"
    assert dom.findtext("os/cmdline") == "console=ttyS0 panic=-1 quiet"
    assert "lock=/work/run/lock" in dom.findtext("description")


def test_disks_overlay_then_job_disk_both_virtio(
    make_manifest: Callable[..., EmulatorManifest],
) -> None:
    disks = job_domain(make_manifest()).findall("devices/disk")
    got = [
        (
            d.find("driver").get("type"),
            d.find("source").get("file"),
            d.find("target").get("dev"),
            d.find("target").get("bus"),
        )
        for d in disks
    ]
    assert got == [
        ("qcow2", "/work/run/overlay.qcow2", "vda", "virtio"),
        ("raw", "/jobs/1/job.img", "vdb", "virtio"),
    ]


def test_console_to_a_file_kept_with_the_job(
    make_manifest: Callable[..., EmulatorManifest],
) -> None:
    serial = job_domain(make_manifest()).find("devices/serial")
    assert serial.get("type") == "file"
    assert serial.find("source").get("path") == "/jobs/1/console.log"


def test_no_extra_devices_and_dac_override(make_manifest: Callable[..., EmulatorManifest]) -> None:
    dom = job_domain(make_manifest())
    assert dom.find("devices/controller[@type='usb']").get("model") == "none"
    assert dom.find("devices/memballoon").get("model") == "none"
    assert dom.findall("devices/graphics") == [] and dom.findall("devices/channel") == []
    label = dom.find("seclabel")
    assert (label.get("type"), label.get("model"), label.get("relabel")) == ("static", "dac", "no")
    assert label.findtext("label") == "+0:+0"
    assert job_domain(make_manifest(), run_as=None).find("seclabel") is None


def test_kvm_domain(make_manifest: Callable[..., EmulatorManifest]) -> None:
    dom = job_domain(make_manifest(), domain_type="kvm")
    assert dom.get("type") == "kvm"
    assert dom.find("cpu").get("mode") == "host-passthrough"
    with pytest.raises(ValueError, match="'kvm' or 'qemu'"):
        job_domain(make_manifest(), domain_type="xen")


def test_progress_channel_only_when_the_manifest_asks(
    make_manifest: Callable[..., EmulatorManifest],
) -> None:
    job = {"transport": "disk-ext4", "timeout_s": 60, "progress": "virtio-serial"}
    channel = job_domain(make_manifest(job=job), progress_socket="/work/run/progress.sock").find(
        "devices/channel"
    )
    assert channel.get("type") == "unix"
    assert channel.find("source").attrib == {"mode": "bind", "path": "/work/run/progress.sock"}
    assert channel.find("target").attrib == {"type": "virtio", "name": PROGRESS_CHANNEL}
    plain = job_domain(make_manifest(), progress_socket="/work/run/progress.sock")
    assert plain.find("devices/channel") is None


def test_disk_boot_and_uefi(make_manifest: Callable[..., EmulatorManifest]) -> None:
    m = make_manifest(
        image={"boot": "disk", "files": {"disk": "vendor.qcow2"}},
        machine={"firmware": "uefi", "memory_mib": 2048, "vcpus": 2},
    )
    dom = job_domain(m, kernel=None, initrd=None)
    assert dom.find("os").get("firmware") == "efi"
    assert dom.find("os/type").get("machine") == "q35"
    assert dom.find("os/boot").get("dev") == "hd"
    assert dom.find("os/kernel") is None and dom.find("os/cmdline") is None
    assert dom.findtext("vcpu") == "2" and dom.findtext("memory") == "2048"


def test_interactive_console_on_a_pty_logged(
    make_manifest: Callable[..., EmulatorManifest],
) -> None:
    dom = job_domain(make_manifest(), interactive=True, job_disk=None, name="imagelake-vm-x")
    serial = dom.find("devices/serial")
    assert serial.get("type") == "pty"
    assert serial.find("log").get("file") == "/jobs/1/console.log"
    assert dom.findtext("on_reboot") == "restart"
    assert len(dom.findall("devices/disk")) == 1


def test_overlay_command_always_names_the_backing_format(tmp_path: Path) -> None:
    cmd = overlay_command(tmp_path / "base.qcow2", tmp_path / "ov.qcow2")
    assert cmd[cmd.index("-F") + 1] == "qcow2" and cmd[cmd.index("-f") + 1] == "qcow2"
    assert cmd[cmd.index("-b") + 1] == str((tmp_path / "base.qcow2").resolve())
    raw = overlay_command(tmp_path / "base.img", tmp_path / "ov.qcow2")
    assert raw[raw.index("-F") + 1] == "raw"
    assert disk_format("x.RAW") == "raw"
    with pytest.raises(StoreError, match=r"name it \*\.qcow2"):
        disk_format("x.vmdk")


def test_create_overlay_records_the_backing_format(
    tmp_path: Path, require_tool: Callable[[str], str]
) -> None:
    qemu_img = require_tool("qemu-img")
    base = tmp_path / "base.qcow2"
    subprocess.run([qemu_img, "create", "-q", "-f", "qcow2", str(base), "16M"], check=True)
    before = base.read_bytes()
    overlay = create_overlay(base, tmp_path / "ov.qcow2")
    info = json.loads(
        subprocess.run(
            [qemu_img, "info", "--output=json", str(overlay)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    assert info["format"] == "qcow2"
    assert info["backing-filename"] == str(base.resolve())
    assert info["backing-filename-format"] == "qcow2"
    assert base.read_bytes() == before
