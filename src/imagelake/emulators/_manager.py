"""The emulator manager: runs emulator jobs in libvirt domains, and cleans up after them.

One job = one domain ``imagelake-job-<hex>`` defined from :func:`domain_xml`, booting a
fresh qcow2 overlay on the verified read-only base image with the job disk attached, no
network. The guest powers off when done (power-off = completion); a hard timeout destroys
it. Whatever happens (success, guest error, timeout, exception, Ctrl-C) the domain is
destroyed and undefined and the overlay deleted; the console log stays in the job folder.

A killed manager cannot clean up, so:

* domains are started with libvirt's auto-destroy flag: when the manager's connection
  closes (the process dies), libvirtd destroys them;
* each run holds an ``flock`` on a lock file in its run folder, whose path the domain's
  ``<description>`` records; a new manager sweeps every ``imagelake-job-*`` domain and run
  folder whose lock nobody holds (the run of a live manager, in this process or another,
  is left alone).

libvirt is imported lazily (extra ``imagelake[emulators]``); tests inject ``connect`` and
use libvirt's ``test:///default`` driver, which runs the real API without a guest.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from imagelake.config import get_settings
from imagelake.emulators._domain import (
    DOMAIN_PREFIX,
    INTERACTIVE_PREFIX,
    create_overlay,
    domain_xml,
)
from imagelake.emulators._libvirt import (
    SHUTOFF,
    SHUTOFF_REASONS,
    SHUTOFF_SHUTDOWN,
    STATES,
    EmulatorError,
    ProgressCallback,
    ProgressReader,
    flock_nowait,
    libvirt_module,
    newest_host_kernel,
    open_libvirt,
    version_text,
)
from imagelake.emulators._manifest import EmulatorManifest
from imagelake.emulators._store import ImageStore

__all__ = [
    "EmulatorError",
    "EmulatorManager",
    "InteractiveVM",
    "ProgressCallback",
    "VMInfo",
    "VMRun",
    "default_work_dir",
]

_PROBE_MARKERS = ("Kernel panic", "VFS: Unable to mount root")
_ACCEL_FILE = "accel.json"


def default_work_dir() -> Path:
    """``Settings.emulator_work_dir``, else ``~/.cache/imagelake/emulator-work``."""
    configured = get_settings().emulator_work_dir
    return Path(configured or "~/.cache/imagelake/emulator-work").expanduser()


@dataclass(frozen=True)
class VMRun:
    """How one emulator job's VM ended.

    Attributes
    ----------
    status
        ``"poweroff"`` (the guest powered off: read the job disk for its result and DONE),
        ``"timeout"`` (destroyed at the hard timeout) or ``"error"`` (it never ran, or it
        stopped otherwise: crash, reboot, QEMU failure; see ``message``).
    domain_type
        ``"kvm"`` or ``"qemu"`` (TCG).
    duration_s
        From the domain's start to its end.
    console_log
        The guest's serial console, in the job folder.
    image_digests
        Role -> sha256 of the verified image files booted (provenance).
    """

    name: str
    emulator: str
    status: str
    domain_type: str
    duration_s: float
    console_log: Path
    message: str = ""
    image_digests: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether the guest powered off by itself (not whether the job succeeded)."""
        return self.status == "poweroff"


@dataclass(frozen=True)
class InteractiveVM:
    """An admin's VM started with :meth:`EmulatorManager.start_interactive`."""

    name: str
    emulator: str
    domain_type: str
    console_log: Path
    uri: str

    @property
    def attach(self) -> str:
        """The command that attaches to its serial console."""
        return f"virsh -c {self.uri} console {self.name}"


@dataclass(frozen=True)
class VMInfo:
    """One imagelake domain libvirt knows about."""

    name: str
    kind: str  # "job" | "interactive"
    state: str
    active: bool


class EmulatorManager:
    """Runs emulator jobs as libvirt domains, a few at a time.

    Parameters
    ----------
    uri
        libvirt URI; ``None`` means ``Settings.emulator_uri`` (``qemu:///system``).
    images
        Where the emulator images are; ``None`` means the default :class:`ImageStore`.
    work_dir
        Local folder for run folders (overlays, locks), the acceleration probe's cached
        result and interactive VMs; ``None`` means :func:`default_work_dir`.
    max_parallel
        Jobs running at once; further :meth:`run_job` calls wait.
    connect
        ``connect(uri) -> virConnect``; injected by tests (default: ``libvirt.open``).
    domain_type
        Force ``"kvm"`` or ``"qemu"`` instead of probing.
    run_as
        DAC label QEMU runs as (see :func:`domain_xml`); ``"auto"`` means ``"+0:+0"`` for
        ``qemu:///system`` as root, else libvirt's default.
    probe_kernel
        Kernel the KVM probe boots; ``None`` means the host's ``/boot/vmlinuz-*``.
    poll_s
        How often a running domain's state is polled.
    sweep
        Sweep stale ``imagelake-job-*`` domains and run folders now.
    """

    def __init__(
        self,
        uri: str | None = None,
        *,
        images: ImageStore | None = None,
        work_dir: str | os.PathLike[str] | None = None,
        max_parallel: int = 1,
        connect: Callable[[str], Any] | None = None,
        domain_type: str | None = None,
        run_as: str | None = "auto",
        probe_kernel: str | os.PathLike[str] | None = None,
        probe_timeout_s: float = 20.0,
        poll_s: float = 0.2,
        qemu_img: str = "qemu-img",
        sweep: bool = True,
    ) -> None:
        if max_parallel < 1:
            raise ValueError(f"max_parallel must be at least 1, got {max_parallel}")
        if domain_type not in (None, "kvm", "qemu"):
            raise ValueError(f"domain_type must be 'kvm', 'qemu' or None, got {domain_type!r}")
        self.uri = uri or get_settings().emulator_uri
        self.images = images if images is not None else ImageStore()
        self.work_dir = Path(work_dir).expanduser() if work_dir else default_work_dir()
        self.runs_dir = self.work_dir / "runs"
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.max_parallel = max_parallel
        if run_as == "auto":
            run_as = (
                "+0:+0" if self.uri.startswith("qemu:///system") and os.geteuid() == 0 else None
            )
        self.run_as = run_as
        self.probe_kernel = Path(probe_kernel) if probe_kernel else None
        self.probe_timeout_s = probe_timeout_s
        self.poll_s = poll_s
        self.qemu_img = qemu_img
        self._forced_type = domain_type
        self._accel: tuple[str, str] | None = None
        self._slots = threading.BoundedSemaphore(max_parallel)
        self._accel_lock = threading.Lock()
        self._conn = (connect or open_libvirt)(self.uri)
        self.swept: list[str] = self.sweep() if sweep else []

    # -- lifecycle ---------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the libvirt connection (auto-destroying any domain still running)."""
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    def __enter__(self) -> EmulatorManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def conn(self) -> Any:
        if self._conn is None:
            raise EmulatorError("the emulator manager is closed")
        return self._conn

    def _error_type(self) -> type[BaseException]:
        libvirt = libvirt_module()
        return libvirt.libvirtError  # type: ignore[no-any-return]

    # -- domains ------------------------------------------------------------------------------------
    def _lookup(self, name: str) -> Any | None:
        try:
            return self.conn.lookupByName(name)
        except self._error_type():
            return None

    def _remove_domain(self, name: str) -> None:
        """Destroy (if running) and undefine ``name``; fine if it is already gone."""
        dom = self._lookup(name)
        if dom is None:
            return
        with contextlib.suppress(self._error_type()):
            if dom.isActive():
                dom.destroy()
        with contextlib.suppress(self._error_type()):
            dom.undefine()

    def _start(self, dom: Any, *, autodestroy: bool) -> None:
        libvirt = libvirt_module()
        if autodestroy:
            try:
                dom.createWithFlags(libvirt.VIR_DOMAIN_START_AUTODESTROY)
                return
            except libvirt.libvirtError as exc:
                # drivers without auto-destroy (the test driver) still get the lock + sweep
                if exc.get_error_code() not in (
                    libvirt.VIR_ERR_INVALID_ARG,
                    libvirt.VIR_ERR_NO_SUPPORT,
                    libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED,
                ):
                    raise
        dom.create()

    def list_domains(self) -> list[VMInfo]:
        """imagelake's domains (jobs and interactive VMs), sorted by name."""
        out = []
        for dom in self.conn.listAllDomains():
            name = dom.name()
            if name.startswith(DOMAIN_PREFIX):
                kind = "job"
            elif name.startswith(INTERACTIVE_PREFIX):
                kind = "interactive"
            else:
                continue
            state = STATES.get(dom.state()[0], "unknown")
            out.append(VMInfo(name, kind, state, bool(dom.isActive())))
        return sorted(out, key=lambda v: v.name)

    def sweep(self) -> list[str]:
        """Remove stale job domains and run folders (their manager died); return their names.

        A job is stale when the lock file its domain's description names (or its run
        folder holds) is missing or locked by nobody.
        """
        swept = []
        for dom in self.conn.listAllDomains():
            name = dom.name()
            if not name.startswith(DOMAIN_PREFIX):
                continue
            lock = self._lock_path_of(dom)
            fd = flock_nowait(lock) if lock is not None and lock.exists() else -1
            if fd is None:
                continue  # a live manager holds it
            if fd >= 0:
                os.close(fd)
            self._remove_domain(name)
            swept.append(name)
        for run in sorted(self.runs_dir.glob(f"{DOMAIN_PREFIX}*")):
            lock = run / "lock"
            fd = flock_nowait(lock) if lock.exists() else -1
            if fd is None:
                continue
            if fd >= 0:
                os.close(fd)
            self._remove_domain(run.name)
            shutil.rmtree(run, ignore_errors=True)
            if run.name not in swept:
                swept.append(run.name)
        for new in self.runs_dir.glob(f".new-{DOMAIN_PREFIX}*"):  # killed while being made
            fd = flock_nowait(new / "lock") if (new / "lock").exists() else -1
            if fd is not None:
                if fd >= 0:
                    os.close(fd)
                shutil.rmtree(new, ignore_errors=True)
        return swept

    def _lock_path_of(self, dom: Any) -> Path | None:
        try:
            desc = ET.fromstring(dom.XMLDesc(0)).findtext("description") or ""
        except (ET.ParseError, self._error_type()):
            return None
        found = re.search(r"lock=(\S+)", desc)
        return Path(found.group(1)) if found else None

    # -- acceleration -------------------------------------------------------------------------------
    def probe_accel(self, *, refresh: bool = False) -> tuple[str, str]:
        """``("kvm" | "qemu", reason)``: whether KVM really boots a guest here.

        KVM is used only when a probe proves it: a ``kvm`` domain boots a kernel with no
        root file system and must reach its ``Kernel panic`` line on the console within
        ``probe_timeout_s`` (about a second under working KVM). Otherwise TCG (``qemu``).
        The answer is cached per host, kernel and URI in ``<work_dir>/accel.json``.
        """
        if self._forced_type:
            return self._forced_type, "set by the caller"
        with self._accel_lock:
            if self._accel is not None and not refresh:
                return self._accel
            key = {"uri": self.uri, "host": os.uname().nodename, "kernel": os.uname().release}
            cache = self.work_dir / _ACCEL_FILE
            if not refresh and cache.is_file():
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    data = json.loads(cache.read_text())
                    if data["key"] == key:
                        self._accel = (data["domain_type"], data["reason"] + " (cached)")
                        return self._accel
            self._accel = self._probe()
            body = {"key": key, "domain_type": self._accel[0], "reason": self._accel[1],
                    "probed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}  # fmt: skip
            tmp = cache.with_name(f".{_ACCEL_FILE}.{uuid.uuid4().hex}")
            tmp.write_text(json.dumps(body, indent=2) + "\n")
            os.replace(tmp, cache)
            return self._accel

    def _probe(self) -> tuple[str, str]:
        caps = self.conn.getCapabilities()
        if "type='kvm'" not in caps and 'type="kvm"' not in caps:
            return "qemu", f"libvirt at {self.uri} offers no KVM domains (no /dev/kvm?): using TCG"
        kernel = self.probe_kernel or newest_host_kernel()
        if kernel is None or not kernel.is_file():
            return "qemu", "no kernel to probe KVM with (/boot/vmlinuz-*): using TCG"
        from imagelake.emulators._manifest import manifest_from_mapping

        probe = manifest_from_mapping(
            {"id": "kvm-probe", "version": "1", "vendor": "imagelake", "description": "KVM probe",
             "scanners": [{"manufacturer": "-", "model": "-", "software_versions": ["-"]}],
             "raw_formats": ["-"], "image": {"boot": "direct-kernel", "files": {"kernel": "k"}},
             "machine": {"memory_mib": 128}, "licence": "-"},
            "<kvm probe>",
        )  # fmt: skip
        with self._run_dir() as (name, run, lock):
            log = run / "probe-console.log"
            xml = domain_xml(
                probe, name=name, domain_type="kvm", overlay=None, console_log=log,
                kernel=kernel, cmdline="console=ttyS0 panic=-1", run_as=self.run_as,
                description=f"imagelake KVM probe; lock={lock}",
            )  # fmt: skip
            started = time.monotonic()
            try:
                dom = self.conn.defineXML(xml)
                self._start(dom, autodestroy=True)
                while time.monotonic() - started < self.probe_timeout_s:
                    text = log.read_text(errors="replace") if log.exists() else ""
                    if any(m in text for m in _PROBE_MARKERS):
                        took = time.monotonic() - started
                        return "kvm", f"KVM probe booted a kernel to its panic in {took:.1f} s"
                    if not dom.isActive():
                        break
                    time.sleep(self.poll_s)
            except self._error_type() as exc:
                first = str(exc).strip().splitlines()[-1][:200]
                return "qemu", f"KVM probe domain failed to start ({first}): using TCG"
            finally:
                self._remove_domain(name)
            return "qemu", (
                f"KVM probe did not reach a kernel panic within {self.probe_timeout_s:g} s "
                "(/dev/kvm present but not usable, e.g. nested or paravirtual KVM): using TCG"
            )

    @property
    def domain_type(self) -> str:
        """``"kvm"`` or ``"qemu"``, probing on first use (see :meth:`probe_accel`)."""
        return self.probe_accel()[0]

    # -- jobs ---------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _run_dir(self) -> Iterator[tuple[str, Path, Path]]:
        """A locked run folder named like its domain; removed with the domain afterwards."""
        name = f"{DOMAIN_PREFIX}{uuid.uuid4().hex[:12]}"
        # made under a temporary name and renamed once its lock is held, so a sweep starting
        # meanwhile never sees an unlocked run folder of a live job
        tmp = self.runs_dir / f".new-{name}"
        tmp.mkdir(parents=True)
        fd = flock_nowait(tmp / "lock")
        assert fd is not None  # a folder we just made
        run = self.runs_dir / name
        os.rename(tmp, run)
        lock = run / "lock"
        try:
            yield name, run, lock
        finally:
            try:
                self._remove_domain(name)
            finally:
                shutil.rmtree(run, ignore_errors=True)
                os.close(fd)

    def run_job(
        self,
        manifest: EmulatorManifest,
        job_disk: str | os.PathLike[str],
        *,
        job_dir: str | os.PathLike[str],
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> VMRun:
        """Boot ``manifest``'s image with ``job_disk`` attached; wait for power-off or timeout.

        Waits for a free slot when ``max_parallel`` jobs run already. Image files are
        verified (sha256) before anything is defined. The domain is always destroyed and
        undefined and the overlay deleted; ``<job_dir>/console.log`` is kept.

        Parameters
        ----------
        manifest
            The emulator.
        job_disk
            The raw job disk image (see the job-disk protocol in docs/EMULATORS.md).
        job_dir
            The job's folder: the console log is written here.
        timeout
            Hard limit in seconds from the domain's start (default: the manifest's
            ``job.timeout_s``); then the domain is destroyed and the status is ``timeout``.
        on_progress
            Called with ``(percent, text)`` for each ``PROGRESS`` line the guest writes to
            its ``org.imagelake.progress`` port (manifests with ``job.progress:
            virtio-serial``).
        """
        job_dir = Path(job_dir)
        job_dir.mkdir(parents=True, exist_ok=True)
        console = job_dir / "console.log"
        limit = float(timeout if timeout is not None else manifest.job.timeout_s)
        with self._slots:
            paths = self.images.verify(manifest)
            digests = self.images.expected_digests(manifest)
            domain_type = self.domain_type
            with self._run_dir() as (name, run, lock):

                def result(status: str, duration: float, message: str = "") -> VMRun:
                    return VMRun(name, manifest.ref, status, domain_type, round(duration, 3),
                                 console, message, digests)  # fmt: skip

                overlay = None
                if "disk" in paths:
                    overlay = create_overlay(
                        paths["disk"], run / "overlay.qcow2", qemu_img=self.qemu_img
                    )
                progress_sock = (
                    run / "progress.sock" if manifest.job.progress == "virtio-serial" else None
                )
                xml = domain_xml(
                    manifest, name=name, domain_type=domain_type, overlay=overlay,
                    console_log=console, job_disk=Path(job_disk).resolve(),
                    kernel=paths.get("kernel"), initrd=paths.get("initrd"),
                    progress_socket=progress_sock, run_as=self.run_as,
                    description=f"imagelake job of {manifest.ref}; lock={lock}",
                )  # fmt: skip
                (run / "domain.xml").write_text(xml)
                started = time.monotonic()
                try:
                    dom = self.conn.defineXML(xml)
                    self._start(dom, autodestroy=True)
                except self._error_type() as exc:
                    return result(
                        "error", time.monotonic() - started, f"libvirt refused the domain: {exc}"
                    )
                reader = None
                if progress_sock is not None and on_progress is not None:
                    reader = ProgressReader(progress_sock, on_progress)
                    reader.start()
                try:
                    return self._wait(dom, started, limit, result)
                finally:
                    if reader is not None:
                        reader.stop()

    def _wait(self, dom: Any, started: float, limit: float, result: Callable[..., VMRun]) -> VMRun:
        while True:
            try:
                state, reason = dom.state()
            except self._error_type() as exc:
                return result("error", time.monotonic() - started, f"domain vanished: {exc}")
            elapsed = time.monotonic() - started
            if state == SHUTOFF:
                if reason == SHUTOFF_SHUTDOWN:
                    return result("poweroff", elapsed)
                why = SHUTOFF_REASONS.get(reason, str(reason))
                return result("error", elapsed, f"the guest stopped without powering off ({why})")
            if elapsed >= limit:
                with contextlib.suppress(self._error_type()):
                    dom.destroy()
                return result("timeout", elapsed, f"no power-off within {limit:g} s: destroyed")
            time.sleep(self.poll_s)

    # -- interactive (admin) ------------------------------------------------------------------------
    def start_interactive(
        self, manifest: EmulatorManifest, *, job_disk: str | os.PathLike[str] | None = None
    ) -> InteractiveVM:
        """Start ``manifest``'s image on a fresh overlay for an admin, console on a pty.

        The domain outlives this process (no auto-destroy; the sweep leaves
        ``imagelake-vm-*`` alone); stop it with :meth:`stop`. Attach with
        ``virsh console NAME`` (:attr:`InteractiveVM.attach`).
        """
        paths = self.images.verify(manifest)
        slug = re.sub(r"[^a-z0-9]+", "-", f"{manifest.id}-{manifest.version}".lower()).strip("-")
        name = f"{INTERACTIVE_PREFIX}{slug}-{uuid.uuid4().hex[:6]}"
        folder = self.work_dir / "interactive" / name
        folder.mkdir(parents=True)
        try:
            overlay = None
            if "disk" in paths:
                overlay = create_overlay(
                    paths["disk"], folder / "overlay.qcow2", qemu_img=self.qemu_img
                )
            xml = domain_xml(
                manifest, name=name, domain_type=self.domain_type, overlay=overlay,
                console_log=folder / "console.log",
                job_disk=Path(job_disk).resolve() if job_disk else None,
                kernel=paths.get("kernel"), initrd=paths.get("initrd"), run_as=self.run_as,
                interactive=True, description=f"imagelake interactive VM of {manifest.ref}",
            )  # fmt: skip
            dom = self.conn.defineXML(xml)
            self._start(dom, autodestroy=False)
        except BaseException:
            self._remove_domain(name)
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return InteractiveVM(name, manifest.ref, self.domain_type, folder / "console.log", self.uri)

    def stop(self, name: str) -> None:
        """Destroy and undefine an imagelake domain and delete its overlay."""
        if not name.startswith((DOMAIN_PREFIX, INTERACTIVE_PREFIX)):
            raise EmulatorError(
                f"{name!r} is not an imagelake domain (names start with {DOMAIN_PREFIX} or "
                f"{INTERACTIVE_PREFIX}); see: imagelake vm status"
            )
        if self._lookup(name) is None:
            raise EmulatorError(f"no domain {name!r} at {self.uri}; see: imagelake vm status")
        self._remove_domain(name)
        shutil.rmtree(self.work_dir / "interactive" / name, ignore_errors=True)
        shutil.rmtree(self.runs_dir / name, ignore_errors=True)

    def status(self) -> dict[str, Any]:
        """The hypervisor, the acceleration (as last probed), the limits and imagelake's domains."""
        conn = self.conn
        cached = None
        cache = self.work_dir / _ACCEL_FILE
        if self._forced_type or self._accel:
            cached = self.probe_accel()
        elif cache.is_file():
            with contextlib.suppress(ValueError, KeyError):
                data = json.loads(cache.read_text())
                cached = (data["domain_type"], data["reason"])
        return {
            "uri": self.uri,
            "hypervisor": conn.getType(),
            "libvirt_version": version_text(conn.getLibVersion()),
            "hypervisor_version": version_text(conn.getVersion()),
            "domain_type": cached[0] if cached else None,
            "accel_reason": cached[1] if cached else "not probed yet (runs with the first job)",
            "max_parallel": self.max_parallel,
            "work_dir": str(self.work_dir),
            "images": repr(self.images),
            "domains": [asdict(d) for d in self.list_domains()],
        }
