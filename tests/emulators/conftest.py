"""Fixtures for the emulator tests: manifests, image stores, libvirt connections, test guests.

Same policy as tests/conftest.py: a missing tool, library or daemon skips a test on a
developer's machine and fails it under ``CI=true``.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml

from imagelake.emulators import (
    DOMAIN_PREFIX,
    EmulatorManifest,
    ImageStore,
    load_manifest,
    manifest_from_mapping,
)

TESTDRIVER_URI = "test:///default"
SYSTEM_URI = "qemu:///system"


def _missing(reason: str) -> NoReturn:
    __tracebackhide__ = True
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: a missing dependency fails the test)", pytrace=False)
    pytest.skip(reason)


def manifest_data(**changes: Any) -> dict[str, Any]:
    """A valid manifest as parsed YAML; ``changes`` replace top-level fields."""
    data: dict[str, Any] = {
        "id": "test-recon",
        "version": "1.0",
        "vendor": "imagelake tests",
        "description": "a test guest",
        "scanners": [
            {
                "manufacturer": "Imagelake Reference",
                "model": "RefScan CT",
                "software_versions": ["R1.0", "R1.1"],
            }
        ],
        "raw_formats": ["refscan"],
        "format_revisions": {"refscan": [1]},
        "image": {
            "boot": "direct-kernel",
            "files": {"disk": "rootfs.qcow2", "kernel": "vmlinuz", "initrd": "initrd.img"},
        },
        "machine": {
            "arch": "x86_64",
            "memory_mib": 256,
            "vcpus": 1,
            "firmware": "bios",
            "cmdline": "console=ttyS0 panic=-1 quiet",
        },
        "job": {"transport": "disk-fat", "timeout_s": 60, "progress": "none"},
        "licence": "GPL-2.0 (Linux, BusyBox)",
    }
    data.update(changes)
    return data


@pytest.fixture(name="manifest_data", scope="session")
def _manifest_data_fixture() -> Callable[..., dict[str, Any]]:
    """:func:`manifest_data` as a fixture (``from conftest import`` is not reliable)."""
    return manifest_data


@pytest.fixture
def make_manifest() -> Callable[..., EmulatorManifest]:
    """``make_manifest(**top_level_changes)`` -> a validated :class:`EmulatorManifest`."""

    def make(**changes: Any) -> EmulatorManifest:
        return manifest_from_mapping(manifest_data(**changes), "<test manifest>")

    return make


@pytest.fixture
def fake_image_store(
    tmp_path: Path, make_manifest: Callable[..., EmulatorManifest]
) -> tuple[EmulatorManifest, ImageStore]:
    """A manifest and a local image store with small stand-in image files, registered.

    Good for the libvirt test driver, which never opens them; the disk is a real qcow2 so
    overlays can be made on it.
    """
    qemu_img = shutil.which("qemu-img")
    if qemu_img is None:
        _missing("qemu-img is not installed (Debian package qemu-utils; scripts/setup-system.sh)")
    src = tmp_path / "image-src"
    src.mkdir()
    subprocess.run(
        [qemu_img, "create", "-q", "-f", "qcow2", str(src / "rootfs.qcow2"), "16M"], check=True
    )
    (src / "vmlinuz").write_bytes(b"not a kernel")
    (src / "initrd.img").write_bytes(b"not an initrd")
    manifest = make_manifest()
    store = ImageStore(tmp_path / "image-store")
    store.register(manifest, src)
    return manifest, store


@pytest.fixture(scope="session")
def libvirt_module() -> Any:
    """The libvirt Python module (extra ``imagelake[emulators]``)."""
    try:
        import libvirt
    except ImportError:
        _missing(
            "libvirt-python is not installed: pip install -e '.[emulators]' (needs libvirt-dev)"
        )
    return libvirt


def leftovers(uri: str, work_dir: Path) -> tuple[list[str], list[str]]:
    """``imagelake-job-*`` domains defined at ``uri``, and run folders/overlays under ``work_dir``."""
    import libvirt

    conn = libvirt.open(uri)
    try:
        names = sorted(
            d.name() for d in conn.listAllDomains() if d.name().startswith(DOMAIN_PREFIX)
        )
    finally:
        conn.close()
    files = sorted(
        str(p)
        for p in work_dir.rglob("*")
        if p.name.endswith(".qcow2") or p.name.startswith(DOMAIN_PREFIX)
    )
    return names, files


@pytest.fixture(name="leftovers", scope="session")
def _leftovers_fixture() -> Callable[[str, Path], tuple[list[str], list[str]]]:
    """:func:`leftovers` as a fixture."""
    return leftovers


# -- real guests under qemu:///system ------------------------------------------------------------


@pytest.fixture(scope="session")
def system_libvirt(libvirt_module: Any) -> str:
    """``qemu:///system`` when it answers (``make pytest`` starts libvirtd: scripts/libvirtd.sh)."""
    for tool in ("qemu-system-x86_64", "qemu-img", "busybox"):
        if shutil.which(tool) is None:
            _missing(f"{tool} is not installed; run: sudo bash scripts/setup-system.sh")
    try:
        conn = libvirt_module.open(SYSTEM_URI)
    except libvirt_module.libvirtError as exc:
        _missing(
            f"libvirt at {SYSTEM_URI} does not answer ({exc}); start it: sudo bash scripts/libvirtd.sh start"
        )
    conn.close()
    return SYSTEM_URI


def _host_kernel() -> Path:
    release = Path(f"/boot/vmlinuz-{os.uname().release}")
    if release.is_file() and os.access(release, os.R_OK):
        return release
    found = sorted(p for p in Path("/boot").glob("vmlinuz-*") if os.access(p, os.R_OK))
    if not found:
        _missing("no readable Debian kernel in /boot (package linux-image-amd64)")
    return found[-1]


def _cpio_newc(entries: list[tuple[str, int, bytes]]) -> bytes:
    """A newc cpio archive of ``(path, mode, data)`` entries (folders have empty data)."""
    out = io.BytesIO()

    def pad() -> None:
        out.write(b"\0" * (-out.tell() % 4))

    for ino, (name, mode, data) in enumerate([*entries, ("TRAILER!!!", 0, b"")], start=1):
        encoded = name.encode() + b"\0"
        fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0]
        out.write(b"070701" + b"".join(b"%08X" % f for f in fields) + encoded)
        pad()
        out.write(data)
        pad()
    return out.getvalue()


_GUEST_INIT = {
    # powers off without touching the job disk: "guest stopped without DONE"
    "nodone": "echo IMAGELAKE-TEST-GUEST nodone\n",
    # never powers off: the manager's timeout must destroy it
    "hang": "echo IMAGELAKE-TEST-GUEST hang\nwhile :; do sleep 3600; done\n",
    # follows the job-disk protocol (FAT job disk): result.json, then DONE, sync, power-off
    "done": (
        "echo IMAGELAKE-TEST-GUEST done\n"
        "for m in /m/*.ko; do insmod $m; done\n"
        "i=0; while [ ! -b /dev/vdb ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done\n"
        "mkdir -p /job && mount -t vfat /dev/vdb /job\n"
        "cat /job/job.json\n"
        'echo \'{"status": "ok", "log": "test guest", "outputs": []}\' > /job/result.json\n'
        "sync; touch /job/DONE; sync; umount /job\n"
    ),
}

# load order of the modules the "done" guest needs to mount a FAT job disk on virtio
_DONE_MODULES = (
    "kernel/drivers/virtio/virtio_ring.ko",
    "kernel/drivers/virtio/virtio.ko",
    "kernel/drivers/virtio/virtio_pci_legacy_dev.ko",
    "kernel/drivers/virtio/virtio_pci_modern_dev.ko",
    "kernel/drivers/virtio/virtio_pci.ko",
    "kernel/drivers/block/virtio_blk.ko",
    "kernel/fs/fat/fat.ko",
    "kernel/fs/fat/vfat.ko",
    "kernel/fs/nls/nls_cp437.ko",
    "kernel/fs/nls/nls_utf8.ko",
    "kernel/fs/nls/nls_ascii.ko",
)


@pytest.fixture(scope="session")
def test_guests(
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[[str], tuple[EmulatorManifest, ImageStore]]:
    """``test_guests(kind)`` -> (manifest, image store) of a tiny guest: Debian's kernel plus a
    busybox-static initramfs whose /init does ``kind`` (``nodone``, ``hang``, ``done``).

    Each kind is its own emulator version (``test-guest@<kind>``) in one session image store,
    registered like a real image (sha256 into digests.json). The store is under /tmp so
    nothing depends on QEMU's user reaching a home folder.
    """
    busybox = shutil.which("busybox")
    qemu_img = shutil.which("qemu-img")
    if busybox is None or qemu_img is None:
        _missing(
            "busybox-static / qemu-utils are not installed; run: sudo bash scripts/setup-system.sh"
        )
    kernel = _host_kernel()
    root = tmp_path_factory.mktemp("test-guests")
    store = ImageStore(root / "store")
    made: dict[str, tuple[EmulatorManifest, ImageStore]] = {}

    def build(kind: str) -> tuple[EmulatorManifest, ImageStore]:
        if kind in made:
            return made[kind]
        src = root / f"src-{kind}"
        src.mkdir()
        init = (
            "#!/bin/busybox sh\n/bin/busybox --install -s /bin\nexport PATH=/bin\n"
            "mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev\n"
            + _GUEST_INIT[kind]
            + "poweroff -f\n"
        )
        entries: list[tuple[str, int, bytes]] = [
            (d, stat.S_IFDIR | 0o755, b"") for d in ("bin", "dev", "proc", "sys", "m")
        ]
        entries.append(("bin/busybox", stat.S_IFREG | 0o755, Path(busybox).read_bytes()))
        entries.append(("init", stat.S_IFREG | 0o755, init.encode()))
        if kind == "done":
            modules = Path("/lib/modules") / kernel.name.removeprefix("vmlinuz-")
            for i, rel in enumerate(_DONE_MODULES):
                ko = modules / rel
                if not ko.is_file():
                    _missing(f"kernel module {ko} is missing (package linux-image-amd64)")
                entries.append((f"m/{i:02d}-{ko.name}", stat.S_IFREG | 0o644, ko.read_bytes()))
        (src / "initrd.img").write_bytes(gzip.compress(_cpio_newc(entries), compresslevel=1))
        shutil.copyfile(kernel, src / "vmlinuz")
        subprocess.run(
            [qemu_img, "create", "-q", "-f", "qcow2", str(src / "rootfs.qcow2"), "16M"], check=True
        )
        # not quiet: the console shows the kernel booting even when a loaded machine is slow
        data = manifest_data(
            id="test-guest",
            version=kind,
            machine={"memory_mib": 256, "cmdline": "console=ttyS0 panic=-1"},
        )
        # a manifest file too (<root>/manifests/test-guest@<kind>.yaml), for subprocesses
        (root / "manifests").mkdir(exist_ok=True)
        path = root / "manifests" / f"test-guest@{kind}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        manifest = load_manifest(path)
        store.register(manifest, src)
        made[kind] = (manifest, store)
        return made[kind]

    return build


def fat_job_disk(folder: Path, job: dict[str, Any]) -> Path:
    """A FAT job disk (mtools, never mounted) holding /job.json and an empty /output/."""
    import json

    for tool in ("mformat", "mcopy", "mmd"):
        if shutil.which(tool) is None:
            _missing("mtools is not installed; run: sudo bash scripts/setup-system.sh")
    folder.mkdir(parents=True, exist_ok=True)
    disk = folder / "job.img"
    with open(disk, "wb") as fh:
        fh.truncate(8 << 20)
    (folder / "job.json").write_text(json.dumps(job))
    subprocess.run(["mformat", "-i", str(disk), "-v", "IMGLJOB", "::"], check=True)
    subprocess.run(["mcopy", "-i", str(disk), str(folder / "job.json"), "::/job.json"], check=True)
    subprocess.run(["mmd", "-i", str(disk), "::/output"], check=True)
    return disk


def fat_has(disk: Path, name: str) -> bool:
    """Whether the FAT image ``disk`` holds ``/name`` (read with mtools, not mounted)."""
    return (
        subprocess.run(
            ["mdir", "-b", "-i", str(disk), f"::/{name}"], capture_output=True
        ).returncode
        == 0
    )


@pytest.fixture(name="fat_job_disk", scope="session")
def _fat_job_disk_fixture() -> Callable[[Path, dict[str, Any]], Path]:
    """:func:`fat_job_disk` as a fixture."""
    return fat_job_disk


@pytest.fixture(name="fat_has", scope="session")
def _fat_has_fixture() -> Callable[[Path, str], bool]:
    """:func:`fat_has` as a fixture."""
    return fat_has


@pytest.fixture
def emulator_work_dir(tmp_path: Path) -> Iterator[Path]:
    """A manager work folder (under /tmp, which QEMU can reach whoever it runs as)."""
    folder = tmp_path / "emulator-work"
    folder.mkdir()
    yield folder


@pytest.fixture(scope="session")
def reference_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An image store with both reference emulator versions, built once per session by
    emulators/reference/build.sh (about 6 s a version)."""
    from reference_build import build_all

    return build_all(tmp_path_factory.mktemp("reference-images"))
