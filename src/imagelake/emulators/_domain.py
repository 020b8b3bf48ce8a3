"""libvirt domain XML for an emulator job, and the qcow2 overlay each job boots from.

:func:`domain_xml` is a pure function of the manifest, the paths and the domain type, so
tests can parse what it makes. What every job domain has, and why:

* ``<features><acpi/></features>``: without ACPI the guest's power-off never ends the domain;
* ``<on_poweroff>/<on_reboot>/<on_crash>destroy``: power-off is completion, a reboot or a
  crash ends the job too (the kernel's ``panic=-1`` turns a panic into a reboot);
* disk 1 = a fresh qcow2 overlay on the read-only base image (``vda``), disk 2 = the job disk
  (raw, ``vdb``), both virtio;
* no ``<interface>``: emulators never reach a network; no USB, no balloon, no graphics;
* the serial console goes to a file kept with the job (to a pty for interactive VMs, logged
  too, so ``virsh console`` works);
* ``<seclabel type='static' model='dac' relabel='no'>`` with ``+0:+0`` under
  ``qemu:///system`` as root: QEMU runs as root and libvirt does not chown the (shared,
  read-only) base image, so images and jobs may live anywhere, /root included. Without it
  QEMU runs as ``libvirt-qemu`` and cannot enter /root (mode 0700).
"""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

from imagelake.emulators._manifest import EmulatorManifest
from imagelake.errors import StoreError

__all__ = [
    "DOMAIN_PREFIX",
    "INTERACTIVE_PREFIX",
    "PROGRESS_CHANNEL",
    "create_overlay",
    "disk_format",
    "domain_xml",
    "overlay_command",
]

#: Name prefix of job domains; stale ones (their manager was killed) are swept on start.
DOMAIN_PREFIX = "imagelake-job-"
#: Name prefix of interactive (admin) domains; left alone by the sweep, stopped by name.
INTERACTIVE_PREFIX = "imagelake-vm-"
#: Name of the virtio-serial port a guest writes ``PROGRESS <0-100> <text>`` lines to.
PROGRESS_CHANNEL = "org.imagelake.progress"

_FORMATS = {".qcow2": "qcow2", ".raw": "raw", ".img": "raw"}


def disk_format(path: str | Path) -> str:
    """Format of a base disk image by its file name (``.qcow2`` -> qcow2, ``.raw``/``.img`` -> raw).

    Named, never probed: probing a guest-writable image's format is how a guest could make
    QEMU open host files.
    """
    suffix = Path(path).suffix.lower()
    try:
        return _FORMATS[suffix]
    except KeyError:
        raise StoreError(
            f"cannot tell the format of disk image {path}; name it *.qcow2, *.raw or *.img"
        ) from None


def overlay_command(
    base: str | Path, overlay: str | Path, *, qemu_img: str = "qemu-img"
) -> list[str]:
    """``qemu-img create`` of a qcow2 overlay on ``base``, the backing format always given."""
    return [
        qemu_img, "create", "-q", "-f", "qcow2",
        "-b", str(Path(base).resolve()), "-F", disk_format(base),
        str(overlay),
    ]  # fmt: skip


def create_overlay(base: str | Path, overlay: str | Path, *, qemu_img: str = "qemu-img") -> Path:
    """Make a fresh qcow2 overlay on the read-only ``base``; the base is never written."""
    cmd = overlay_command(base, overlay, qemu_img=qemu_img)
    try:
        subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=60)
    except FileNotFoundError as exc:
        raise StoreError(
            f"{qemu_img} not found; install the Debian package qemu-utils "
            "(sudo bash scripts/setup-system.sh)"
        ) from exc
    except subprocess.CalledProcessError as exc:
        raise StoreError(
            f"cannot create overlay {overlay} on {base}: {exc.stderr.strip()}"
        ) from exc
    return Path(overlay)


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, attrs)
    if text is not None:
        el.text = text
    return el


def _disk(devices: ET.Element, path: Path, fmt: str, target: str) -> None:
    # default cache mode: cache="none" needs O_DIRECT, which tmpfs job folders lack; the
    # guest's sync before DONE is a flush QEMU honours either way
    disk = _sub(devices, "disk", type="file", device="disk")
    _sub(disk, "driver", name="qemu", type=fmt)
    _sub(disk, "source", file=str(path))
    _sub(disk, "target", dev=target, bus="virtio")


def domain_xml(
    manifest: EmulatorManifest,
    *,
    name: str,
    domain_type: str,
    overlay: str | Path | None,
    console_log: str | Path,
    job_disk: str | Path | None = None,
    kernel: str | Path | None = None,
    initrd: str | Path | None = None,
    cmdline: str | None = None,
    progress_socket: str | Path | None = None,
    run_as: str | None = None,
    interactive: bool = False,
    description: str | None = None,
) -> str:
    """The libvirt domain XML of one emulator run.

    Parameters
    ----------
    manifest
        The emulator: machine size, boot mode, kernel command line, progress channel.
    name
        Domain name (``imagelake-job-...`` for jobs, see :data:`DOMAIN_PREFIX`).
    domain_type
        ``"kvm"`` or ``"qemu"`` (TCG), as :meth:`EmulatorManager.probe_accel` found.
    overlay
        The job's fresh qcow2 overlay (``vda``); ``None`` for no system disk (a guest that
        lives in its initramfs, or the acceleration probe).
    console_log
        File the serial console is written to (kept with the job).
    job_disk
        The raw job disk (``vdb``); ``None`` for an interactive VM without a job.
    kernel, initrd, cmdline
        For ``boot: direct-kernel`` (``cmdline`` defaults to the manifest's).
    progress_socket
        Unix socket of the ``org.imagelake.progress`` virtio-serial port, when the manifest's
        ``job.progress`` is ``virtio-serial``.
    run_as
        DAC ``user:group`` label QEMU runs as, without relabelling files (``"+0:+0"`` under
        ``qemu:///system`` as root); ``None`` keeps libvirt's default.
    interactive
        Console on a pty (``virsh console NAME``), logged to ``console_log``; reboots restart.
    description
        Free text stored in the domain (the manager keeps its lock file's path there).
    """
    if domain_type not in ("kvm", "qemu"):
        raise ValueError(f"domain_type must be 'kvm' or 'qemu', got {domain_type!r}")
    machine = manifest.machine
    dom = ET.Element("domain", type=domain_type)
    _sub(dom, "name", name)
    if description:
        _sub(dom, "description", description)
    _sub(dom, "memory", str(machine.memory_mib), unit="MiB")
    _sub(dom, "vcpu", str(machine.vcpus))
    os_el = _sub(dom, "os", **({"firmware": "efi"} if machine.firmware == "uefi" else {}))
    _sub(
        os_el,
        "type",
        "hvm",
        arch=machine.arch,
        machine="pc" if machine.firmware == "bios" else "q35",
    )
    if manifest.image.boot == "direct-kernel":
        if kernel is None:
            raise ValueError(f"{manifest.ref} boots direct-kernel: a kernel path is needed")
        _sub(os_el, "kernel", str(kernel))
        if initrd is not None:
            _sub(os_el, "initrd", str(initrd))
        line = cmdline if cmdline is not None else machine.cmdline
        if line:
            _sub(os_el, "cmdline", line)
    else:
        _sub(os_el, "boot", dev="hd")
    features = _sub(dom, "features")
    _sub(features, "acpi")
    if domain_type == "kvm":
        _sub(dom, "cpu", mode="host-passthrough")
    _sub(dom, "clock", offset="utc")
    _sub(dom, "on_poweroff", "destroy")
    _sub(dom, "on_reboot", "restart" if interactive else "destroy")
    _sub(dom, "on_crash", "destroy")

    devices = _sub(dom, "devices")
    if overlay is not None:
        _disk(devices, Path(overlay), "qcow2", "vda")
    if job_disk is not None:
        _disk(devices, Path(job_disk), "raw", "vdb" if overlay is not None else "vda")
    serial = _sub(devices, "serial", type="pty" if interactive else "file")
    if interactive:
        _sub(serial, "log", file=str(console_log), append="on")
    else:
        _sub(serial, "source", path=str(console_log), append="off")
    _sub(serial, "target", port="0")
    if progress_socket is not None and manifest.job.progress == "virtio-serial":
        channel = _sub(devices, "channel", type="unix")
        _sub(channel, "source", mode="bind", path=str(progress_socket))
        _sub(channel, "target", type="virtio", name=PROGRESS_CHANNEL)
    _sub(devices, "controller", type="usb", model="none")
    _sub(devices, "memballoon", model="none")
    if run_as is not None:
        seclabel = _sub(dom, "seclabel", type="static", model="dac", relabel="no")
        _sub(seclabel, "label", run_as)
    ET.indent(dom)
    return ET.tostring(dom, encoding="unicode")
