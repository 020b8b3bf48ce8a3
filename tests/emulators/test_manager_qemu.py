"""Real guests under ``qemu:///system`` (TCG unless the probe proves KVM works).

Tiny guests built in a session fixture (Debian's kernel + a busybox-static initramfs, see
conftest.py): one that powers off without writing DONE, one that hangs, one that follows
the job-disk protocol; and a manager killed with SIGKILL while its guest boots. Boots: the
acceleration probe (on the CI-like machine QEMU aborts at once on its /dev/kvm), three to
power-off or timeout, one cut short by the kill. After each test nothing
``imagelake-job-*`` is defined and no overlay or run folder is left.
``make pytest`` starts libvirtd (scripts/libvirtd.sh); without it these tests skip, and
fail under CI=true.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from imagelake.emulators import EmulatorManager, EmulatorManifest, ImageStore

pytestmark = pytest.mark.slow

SYSTEM_URI = "qemu:///system"

Guests = Callable[[str], tuple[EmulatorManifest, ImageStore]]
Leftovers = Callable[[str, Path], tuple[list[str], list[str]]]

# what each boot took, printed at the end of the module (pytest -s shows it)
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def qemu_manager(
    system_libvirt: str, test_guests: Guests, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EmulatorManager]:
    _, store = test_guests("nodone")
    work = tmp_path_factory.mktemp("emulator-work")
    mgr = EmulatorManager(system_libvirt, images=store, work_dir=work, max_parallel=2)
    started = time.monotonic()
    domain_type, reason = mgr.probe_accel()
    TIMINGS["probe"] = time.monotonic() - started
    print(f"\nacceleration: {domain_type} ({reason}); probe took {TIMINGS['probe']:.1f} s")
    yield mgr
    mgr.close()
    print("timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in TIMINGS.items()))


@pytest.fixture(autouse=True)
def _nothing_left(qemu_manager: EmulatorManager, leftovers: Leftovers) -> Iterator[None]:
    yield
    assert leftovers(SYSTEM_URI, qemu_manager.work_dir) == ([], [])


def job(
    tmp_path: Path, fat_job_disk: Callable[[Path, dict[str, Any]], Path], emulator: str
) -> Path:
    return fat_job_disk(
        tmp_path / "job",
        {"job_id": tmp_path.name, "emulator": emulator, "params": {}, "inputs": [], "protocol": 1},
    )


def test_probe_result_is_reported_and_cached(qemu_manager: EmulatorManager) -> None:
    domain_type, reason = qemu_manager.probe_accel()
    assert domain_type in ("kvm", "qemu") and reason.endswith("(cached)") is False
    cached = json.loads((qemu_manager.work_dir / "accel.json").read_text())
    assert cached["domain_type"] == domain_type
    assert TIMINGS["probe"] < 60


def test_guest_without_done_is_a_failed_job(
    qemu_manager: EmulatorManager, test_guests: Guests, tmp_path: Path,
    fat_job_disk: Callable[[Path, dict[str, Any]], Path], fat_has: Callable[[Path, str], bool],
) -> None:  # fmt: skip
    manifest, _ = test_guests("nodone")
    disk = job(tmp_path, fat_job_disk, manifest.ref)
    started = time.monotonic()
    run = qemu_manager.run_job(manifest, disk, job_dir=tmp_path / "job", timeout=90)
    TIMINGS["nodone job"] = time.monotonic() - started
    assert run.status == "poweroff", (run.message, run.console_log.read_text()[-2000:])
    assert run.domain_type == qemu_manager.domain_type
    assert "IMAGELAKE-TEST-GUEST nodone" in run.console_log.read_text()
    assert not fat_has(disk, "DONE")  # powered off without DONE: the job failed


def test_hanging_guest_is_destroyed_at_the_timeout(
    qemu_manager: EmulatorManager, test_guests: Guests, tmp_path: Path,
    fat_job_disk: Callable[[Path, dict[str, Any]], Path],
) -> None:  # fmt: skip
    manifest, _ = test_guests("hang")
    disk = job(tmp_path, fat_job_disk, manifest.ref)
    started = time.monotonic()
    run = qemu_manager.run_job(manifest, disk, job_dir=tmp_path / "job", timeout=20)
    TIMINGS["hang job (timeout 20 s)"] = time.monotonic() - started
    assert run.status == "timeout", run.message
    assert 20 <= run.duration_s < 30
    # the console log is kept, and shows the guest ran (its kernel booting, at least)
    assert "Linux version" in run.console_log.read_text()


def test_guest_following_the_protocol(
    qemu_manager: EmulatorManager, test_guests: Guests, tmp_path: Path,
    fat_job_disk: Callable[[Path, dict[str, Any]], Path], fat_has: Callable[[Path, str], bool],
) -> None:  # fmt: skip
    manifest, _ = test_guests("done")
    disk = job(tmp_path, fat_job_disk, manifest.ref)
    started = time.monotonic()
    run = qemu_manager.run_job(manifest, disk, job_dir=tmp_path / "job", timeout=90)
    TIMINGS["done job"] = time.monotonic() - started
    assert run.status == "poweroff", (run.message, run.console_log.read_text()[-2000:])
    assert fat_has(disk, "DONE")
    result = subprocess.run(
        ["mtype", "-i", str(disk), "::/result.json"], check=True, capture_output=True, text=True
    )
    assert json.loads(result.stdout)["status"] == "ok"


_KILLED_MANAGER = """
import sys
from imagelake.emulators import EmulatorManager, ImageStore, load_manifest
manifest_file, store, work, disk, job_dir, domain_type = sys.argv[1:]
mgr = EmulatorManager("qemu:///system", images=ImageStore(store), work_dir=work, domain_type=domain_type)
mgr.run_job(load_manifest(manifest_file), disk, job_dir=job_dir, timeout=300)
"""


def test_killed_manager_leaves_nothing_after_the_next_start(
    qemu_manager: EmulatorManager, test_guests: Guests, tmp_path: Path, libvirt_module: Any,
    fat_job_disk: Callable[[Path, dict[str, Any]], Path], leftovers: Leftovers,
) -> None:  # fmt: skip
    """SIGKILL: no ``finally`` runs. libvirtd auto-destroys the domain when the dead manager's
    connection closes; the next manager's sweep undefines it and deletes the run folder."""
    import signal
    import sys

    manifest, store = test_guests("hang")
    disk = job(tmp_path, fat_job_disk, manifest.ref)
    work = tmp_path / "killed-work"
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_MANAGER, str(manifest.source), store.fs.root, str(work),
         str(disk), str(tmp_path / "job"), qemu_manager.domain_type],
    )  # fmt: skip
    conn = libvirt_module.open(SYSTEM_URI)
    started = time.monotonic()
    try:
        name = None
        while name is None and time.monotonic() - started < 60 and proc.poll() is None:
            for dom in conn.listAllDomains():
                if dom.name().startswith("imagelake-job-") and str(work) in dom.XMLDesc(0):
                    name = dom.name() if dom.isActive() else None
            time.sleep(0.1)
        assert name is not None, "the job domain never started"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed = time.monotonic()
        while conn.lookupByName(name).isActive() and time.monotonic() - killed < 30:
            time.sleep(0.1)
        TIMINGS["auto-destroy after SIGKILL"] = time.monotonic() - killed
        assert not conn.lookupByName(name).isActive(), "libvirtd did not auto-destroy the domain"
        assert (work / "runs" / name / "overlay.qcow2").exists()  # what the next start sweeps
        sweeper = EmulatorManager(SYSTEM_URI, images=store, work_dir=work)
        sweeper.close()
        assert name in sweeper.swept
        assert leftovers(SYSTEM_URI, work) == ([], [])
    finally:
        if proc.poll() is None:
            proc.kill()
        conn.close()
