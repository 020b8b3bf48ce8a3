"""The libvirt side of the manager: connecting, domain states, locks, the progress port.

Kept apart from :mod:`._manager` so the manager reads as the job's story. libvirt itself is
imported lazily, through :func:`imagelake._optional.import_optional` (extra
``imagelake[emulators]``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from imagelake._optional import import_optional
from imagelake.errors import ImagelakeError

__all__ = [
    "SHUTOFF",
    "SHUTOFF_REASONS",
    "SHUTOFF_SHUTDOWN",
    "STATES",
    "EmulatorError",
    "ProgressCallback",
    "ProgressReader",
    "flock_nowait",
    "libvirt_module",
    "newest_host_kernel",
    "open_libvirt",
    "version_text",
]

#: ``on_progress(percent, text)``
ProgressCallback = Callable[[int, str], None]

# libvirt's virDomainState values and shut-off reasons, by number (kept here so this module
# imports without libvirt)
STATES = {
    0: "nostate", 1: "running", 2: "blocked", 3: "paused", 4: "shutdown", 5: "shutoff",
    6: "crashed", 7: "pmsuspended",
}  # fmt: skip
SHUTOFF = 5
SHUTOFF_REASONS = {
    0: "unknown", 1: "shutdown", 2: "destroyed", 3: "crashed", 4: "migrated", 5: "saved",
    6: "failed", 7: "from snapshot", 8: "daemon",
}  # fmt: skip
SHUTOFF_SHUTDOWN = 1


class EmulatorError(ImagelakeError, RuntimeError):
    """The hypervisor refused an operation, or an emulator run could not be set up."""


def libvirt_module() -> Any:
    """The ``libvirt`` module, or :class:`~imagelake.errors.MissingExtraError` naming the extra."""
    return import_optional("libvirt", "emulators", "the emulator manager")


def open_libvirt(uri: str) -> Any:
    libvirt = libvirt_module()
    # libvirt prints every error to stderr by default; ours carry the message instead
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as exc:
        hint = ""
        if uri.startswith("qemu:///system"):
            hint = " (is libvirtd running? as root: bash scripts/libvirtd.sh start)"
        raise EmulatorError(f"cannot connect to libvirt at {uri}: {exc}{hint}") from exc


def flock_nowait(path: Path) -> int | None:
    """Open and exclusively lock ``path`` without waiting; the fd, or None if held elsewhere."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def newest_host_kernel() -> Path | None:
    release = Path(f"/boot/vmlinuz-{os.uname().release}")
    if release.is_file():
        return release
    found = sorted(Path("/boot").glob("vmlinuz-*"))
    return found[-1] if found else None


def version_text(number: int) -> str:
    return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"


class ProgressReader:
    """Reads ``PROGRESS <0-100> <text>`` lines from the guest's virtio-serial socket."""

    def __init__(self, path: Path, callback: ProgressCallback) -> None:
        self.path = path
        self.callback = callback
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"progress {path}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        sock = None
        while not self._stop.is_set() and sock is None:
            try:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.connect(str(self.path))
            except OSError:
                sock.close() if sock else None
                sock = None
                self._stop.wait(0.2)
        if sock is None:
            return
        sock.settimeout(0.5)
        buf = b""
        with sock:
            while not self._stop.is_set():
                try:
                    chunk = sock.recv(4096)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not chunk:
                    return
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    parts = line.decode("utf-8", "replace").strip().split(" ", 2)
                    if len(parts) >= 2 and parts[0] == "PROGRESS" and parts[1].isdigit():
                        with contextlib.suppress(Exception):
                            self.callback(
                                min(100, int(parts[1])), parts[2] if len(parts) > 2 else ""
                            )
