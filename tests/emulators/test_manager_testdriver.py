"""The manager against libvirt's test driver (``test:///default``): the real libvirt API,
define/start/destroy/undefine, without a guest. A "guest" here is a thread that shuts the
job's domain down (as a guest's power-off would) or leaves it running.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from imagelake.emulators import (
    DOMAIN_PREFIX,
    EmulatorError,
    EmulatorManager,
    EmulatorManifest,
    ImageStore,
)
from imagelake.errors import FixityError

TESTDRIVER_URI = "test:///default"
Leftovers = Callable[[str, Path], tuple[list[str], list[str]]]


@pytest.fixture
def manager(
    libvirt_module: Any,
    fake_image_store: tuple[EmulatorManifest, ImageStore],
    emulator_work_dir: Path,
    leftovers: Leftovers,
) -> Iterator[EmulatorManager]:
    _, store = fake_image_store
    mgr = EmulatorManager(
        TESTDRIVER_URI, images=store, work_dir=emulator_work_dir, max_parallel=2, poll_s=0.02
    )
    yield mgr
    mgr.close()
    # after every test: nothing imagelake-job-* defined, no overlay or run folder left
    assert leftovers(TESTDRIVER_URI, emulator_work_dir) == ([], [])


class Guest(threading.Thread):
    """Shuts down each job domain it sees after ``after_s`` (None: never), and counts how
    many job domains ran at once."""

    def __init__(self, libvirt: Any, after_s: float | None = 0.1, action: str = "shutdown") -> None:
        super().__init__(daemon=True)
        self.conn = libvirt.open(TESTDRIVER_URI)
        self.after_s, self.action = after_s, action
        self.first_seen: dict[str, float] = {}
        self.max_active = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            active = []
            for d in self.conn.listAllDomains():
                try:
                    if d.name().startswith(DOMAIN_PREFIX) and d.isActive():
                        active.append(d)
                except Exception:
                    pass  # undefined by the manager between the listing and the question
            self.max_active = max(self.max_active, len(active))
            for dom in active:
                seen = self.first_seen.setdefault(dom.name(), time.monotonic())
                if self.after_s is not None and time.monotonic() - seen >= self.after_s:
                    try:
                        getattr(dom, self.action)()
                    except Exception:
                        pass  # the manager may have removed it meanwhile
            time.sleep(0.01)

    def __enter__(self) -> Guest:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.join()
        self.conn.close()


def test_probe_without_kvm_reports_tcg(manager: EmulatorManager, emulator_work_dir: Path) -> None:
    domain_type, reason = manager.probe_accel()
    assert domain_type == "qemu"
    assert "offers no KVM" in reason
    assert (emulator_work_dir / "accel.json").is_file()
    again = EmulatorManager(TESTDRIVER_URI, images=manager.images, work_dir=emulator_work_dir)
    assert again.probe_accel() == ("qemu", reason + " (cached)")
    again.close()


def test_job_powers_off(
    manager: EmulatorManager,
    fake_image_store: tuple[EmulatorManifest, ImageStore],
    tmp_path: Path,
    libvirt_module: Any,
) -> None:
    manifest, _ = fake_image_store
    job_disk = tmp_path / "job.img"
    job_disk.write_bytes(b"\0" * 1024)
    with Guest(libvirt_module, after_s=0.1):
        run = manager.run_job(manifest, job_disk, job_dir=tmp_path / "job", timeout=10)
    assert run.status == "poweroff" and run.ok, run.message
    assert run.domain_type == "qemu" and run.emulator == "test-recon@1.0"
    assert run.name.startswith(DOMAIN_PREFIX)
    assert run.console_log == tmp_path / "job" / "console.log"
    assert set(run.image_digests) == {"disk", "kernel", "initrd"}
    assert 0.05 < run.duration_s < 5


def test_timeout_destroys_and_undefines(
    manager: EmulatorManager,
    fake_image_store: tuple[EmulatorManifest, ImageStore],
    tmp_path: Path,
    libvirt_module: Any,
) -> None:
    manifest, _ = fake_image_store
    with Guest(libvirt_module, after_s=None) as guest:
        run = manager.run_job(manifest, tmp_path / "job.img", job_dir=tmp_path / "job", timeout=0.3)
    assert run.status == "timeout" and "no power-off within 0.3 s" in run.message
    assert 0.3 <= run.duration_s < 3
    assert guest.max_active == 1


def test_guest_stopping_otherwise_is_an_error(
    manager: EmulatorManager,
    fake_image_store: tuple[EmulatorManifest, ImageStore],
    tmp_path: Path,
    libvirt_module: Any,
) -> None:
    manifest, _ = fake_image_store
    with Guest(libvirt_module, after_s=0.05, action="destroy"):
        run = manager.run_job(manifest, tmp_path / "job.img", job_dir=tmp_path / "job", timeout=10)
    assert run.status == "error" and "without powering off (destroyed)" in run.message


class ExplodingConn:
    """A libvirt connection whose job domains raise ``exc`` when their state is asked, or
    whose start fails: an error in the middle of a job."""

    def __init__(self, conn: Any, exc: BaseException, where: str) -> None:
        self._conn, self._exc, self._where = conn, exc, where

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def defineXML(self, xml: str) -> Any:
        dom = self._conn.defineXML(xml)
        outer = self

        class Dom:
            def __getattr__(self, name: str) -> Any:
                return getattr(dom, name)

            def state(self) -> Any:
                if outer._where == "state":
                    raise outer._exc
                return dom.state()

            def createWithFlags(self, flags: int) -> Any:
                if outer._where == "start":
                    raise outer._exc
                return dom.createWithFlags(flags)

            def create(self) -> Any:
                if outer._where == "start":
                    raise outer._exc
                return dom.create()

        return Dom()


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
def test_cleanup_after_an_exception_mid_job(
    libvirt_module: Any,
    fake_image_store: tuple[EmulatorManifest, ImageStore],
    emulator_work_dir: Path,
    tmp_path: Path,
    leftovers: Leftovers,
    exc: BaseException,
) -> None:
    manifest, store = fake_image_store
    mgr = EmulatorManager(
        TESTDRIVER_URI, images=store, work_dir=emulator_work_dir, poll_s=0.02,
        connect=lambda uri: ExplodingConn(libvirt_module.open(uri), exc, "state"),
    )  # fmt: skip
    with pytest.raises(type(exc)):
        mgr.run_job(manifest, tmp_path / "job.img", job_dir=tmp_path / "job", timeout=10)
    assert leftovers(TESTDRIVER_URI, emulator_work_dir) == ([], [])
    mgr.close()


def test_libvirt_refusing_to_start_is_an_error_result(
    libvirt_module: Any,
    fake_image_store: tuple[EmulatorManifest, ImageStore],
    emulator_work_dir: Path,
    tmp_path: Path,
    leftovers: Leftovers,
) -> None:
    manifest, store = fake_image_store
    refusal = libvirt_module.libvirtError("internal error: qemu unexpectedly closed the monitor")
    mgr = EmulatorManager(
        TESTDRIVER_URI, images=store, work_dir=emulator_work_dir,
        connect=lambda uri: ExplodingConn(libvirt_module.open(uri), refusal, "start"),
    )  # fmt: skip
    run = mgr.run_job(manifest, tmp_path / "job.img", job_dir=tmp_path / "job", timeout=10)
    assert run.status == "error" and "libvirt refused the domain" in run.message
    assert leftovers(TESTDRIVER_URI, emulator_work_dir) == ([], [])
    mgr.close()


def test_corrupted_image_defines_nothing(
    manager: EmulatorManager, fake_image_store: tuple[EmulatorManifest, ImageStore], tmp_path: Path
) -> None:
    manifest, store = fake_image_store
    kernel = Path(store.fs.path("test-recon/1.0/vmlinuz"))
    kernel.chmod(0o644)
    kernel.write_bytes(b"a replaced kernel")
    with pytest.raises(FixityError, match="corrupted"):
        manager.run_job(manifest, tmp_path / "job.img", job_dir=tmp_path / "job")


def test_parallel_limit_is_honoured(
    manager: EmulatorManager,
    fake_image_store: tuple[EmulatorManifest, ImageStore],
    tmp_path: Path,
    libvirt_module: Any,
) -> None:
    manifest, _ = fake_image_store
    results: list[Any] = []

    def job(i: int) -> None:
        results.append(
            manager.run_job(
                manifest, tmp_path / f"job{i}.img", job_dir=tmp_path / f"job{i}", timeout=10
            )
        )

    with Guest(libvirt_module, after_s=0.3) as guest:
        threads = [threading.Thread(target=job, args=(i,)) for i in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert [r.status for r in results] == ["poweroff"] * 5
    assert guest.max_active == manager.max_parallel == 2
    assert len({r.name for r in results}) == 5


def test_stale_jobs_are_swept_live_ones_left_alone(
    libvirt_module: Any,
    fake_image_store: tuple[EmulatorManifest, ImageStore],
    emulator_work_dir: Path,
    leftovers: Leftovers,
) -> None:
    _, store = fake_image_store
    conn = libvirt_module.open(TESTDRIVER_URI)
    runs = emulator_work_dir / "runs"

    def define(name: str, lock: Path) -> None:
        xml = (
            f"<domain type='qemu'><name>{name}</name><description>imagelake job; lock={lock}</description>"
            "<memory unit='MiB'>64</memory><os><type arch='x86_64'>hvm</type></os></domain>"
        )
        conn.defineXML(xml).create()

    # a killed manager's job: domain still running, run folder with overlay, lock free
    (runs / f"{DOMAIN_PREFIX}dead00000000").mkdir(parents=True)
    (runs / f"{DOMAIN_PREFIX}dead00000000" / "overlay.qcow2").write_bytes(b"x")
    (runs / f"{DOMAIN_PREFIX}dead00000000" / "lock").touch()
    define(f"{DOMAIN_PREFIX}dead00000000", runs / f"{DOMAIN_PREFIX}dead00000000" / "lock")
    # a domain whose run folder is gone entirely, and a leftover folder without a domain
    define(f"{DOMAIN_PREFIX}gone00000000", runs / "nowhere" / "lock")
    (runs / f"{DOMAIN_PREFIX}file00000000").mkdir()
    half = runs / f".new-{DOMAIN_PREFIX}half00000000"  # killed while making its run folder
    half.mkdir()
    (half / "lock").touch()
    # a live job of another manager: its lock is held
    live = runs / f"{DOMAIN_PREFIX}live00000000"
    live.mkdir()
    fd = os.open(live / "lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    define(live.name, live / "lock")
    try:
        mgr = EmulatorManager(TESTDRIVER_URI, images=store, work_dir=emulator_work_dir)
        assert sorted(mgr.swept) == [
            f"{DOMAIN_PREFIX}dead00000000",
            f"{DOMAIN_PREFIX}file00000000",
            f"{DOMAIN_PREFIX}gone00000000",
        ]
        assert [v.name for v in mgr.list_domains() if v.kind == "job"] == [live.name]
        assert not half.exists()
        mgr.close()
    finally:
        os.close(fd)  # the live manager "dies": the next start sweeps its job too
    mgr = EmulatorManager(TESTDRIVER_URI, images=store, work_dir=emulator_work_dir)
    assert mgr.swept == [live.name]
    mgr.close()
    conn.close()
    assert leftovers(TESTDRIVER_URI, emulator_work_dir) == ([], [])


def test_interactive_start_status_stop(
    manager: EmulatorManager, fake_image_store: tuple[EmulatorManifest, ImageStore]
) -> None:
    manifest, _ = fake_image_store
    vm = manager.start_interactive(manifest)
    assert vm.name.startswith("imagelake-vm-test-recon-1-0-")
    assert vm.attach == f"virsh -c {TESTDRIVER_URI} console {vm.name}"
    assert (manager.work_dir / "interactive" / vm.name / "overlay.qcow2").is_file()
    # the sweep of a new manager leaves interactive VMs alone
    other = EmulatorManager(TESTDRIVER_URI, images=manager.images, work_dir=manager.work_dir)
    assert vm.name not in other.swept
    other.close()
    status = manager.status()
    assert status["hypervisor"] == "TEST" and status["max_parallel"] == 2
    assert {"name": vm.name, "kind": "interactive", "state": "running", "active": True} in status[
        "domains"
    ]
    manager.stop(vm.name)
    assert vm.name not in [v.name for v in manager.list_domains()]
    assert not (manager.work_dir / "interactive" / vm.name).exists()
    with pytest.raises(EmulatorError, match="no domain"):
        manager.stop(vm.name)
    with pytest.raises(EmulatorError, match="not an imagelake domain"):
        manager.stop("test")


def test_unreachable_libvirt_names_the_way_out(
    fake_image_store: tuple[EmulatorManifest, ImageStore],
    emulator_work_dir: Path,
    libvirt_module: Any,
) -> None:
    _, store = fake_image_store
    with pytest.raises(
        EmulatorError, match=r"cannot connect to libvirt at test:///nonexistent/file\.xml"
    ):
        EmulatorManager("test:///nonexistent/file.xml", images=store, work_dir=emulator_work_dir)


def test_without_libvirt_the_error_names_the_extra(
    fake_image_store: tuple[EmulatorManifest, ImageStore],
    emulator_work_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import subprocess
    import sys

    from imagelake.errors import MissingExtraError

    # the package itself never needs libvirt: manifests, stores and XML work without it
    code = "import sys; sys.modules['libvirt'] = None; import imagelake.emulators, imagelake.cli"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
    _, store = fake_image_store
    monkeypatch.setitem(sys.modules, "libvirt", None)  # as if libvirt-python were not installed
    with pytest.raises(MissingExtraError, match=r"pip install 'imagelake\[emulators\]'"):
        EmulatorManager("qemu:///system", images=store, work_dir=emulator_work_dir)


def test_progress_lines_reach_the_callback(tmp_path: Path) -> None:
    """The reader connects to the virtio-serial port's unix socket (QEMU listens on it) and
    hands each ``PROGRESS <0-100> <text>`` line to the callback; other lines are ignored."""
    import socket

    from imagelake.emulators._libvirt import ProgressReader

    path = tmp_path / "progress.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    seen: list[tuple[int, str]] = []
    reader = ProgressReader(path, lambda pct, text: seen.append((pct, text)))
    reader.start()
    conn, _ = server.accept()
    conn.sendall(b"PROGRESS 5 reading input\nnoise\nPROGRESS 250 clamped\nPROGRESS 100")
    conn.sendall(b" done\n")
    deadline = time.monotonic() + 5
    while len(seen) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    conn.close()
    reader.stop()
    server.close()
    assert seen == [(5, "reading input"), (100, "clamped"), (100, "done")]
