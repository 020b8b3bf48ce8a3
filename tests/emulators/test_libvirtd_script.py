"""scripts/libvirtd.sh and the set-up pieces of the emulators (packages, make pytest)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "libvirtd.sh"


def _run(*args: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = ["bash", str(SCRIPT), *args]
    if user is not None:
        cmd = ["runuser", "-u", user, "--", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO)


def test_setup_system_installs_the_emulator_packages() -> None:
    listed = subprocess.run(
        ["bash", str(REPO / "scripts" / "setup-system.sh"), "--list"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for pkg in ("qemu-system-x86", "qemu-utils", "libvirt-daemon-system", "libvirt-clients",
                "libvirt-dev", "pkg-config", "gcc", "linux-image-amd64", "busybox-static", "mtools",
                "e2fsprogs"):  # fmt: skip
        assert pkg in listed


def test_make_pytest_starts_and_stops_libvirtd(require_tool: Callable[[str], str]) -> None:
    make = require_tool("make")
    out = subprocess.run(
        [make, "-n", "-o", ".venv/.imagelake-installed", "pytest"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={k: v for k, v in os.environ.items() if not k.startswith("MAKE")},
    ).stdout
    assert "scripts/libvirtd.sh start" in out and "scripts/libvirtd.sh stop" in out
    # stopped only when this run started it
    assert 'if [ "$virt" = started ]; then virt_started=1; fi' in out


def test_usage_without_a_command() -> None:
    done = _run()
    assert done.returncode == 2 and "libvirtd.sh start" in done.stderr


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("runuser") is None, reason="needs root to switch user"
)
def test_refuses_politely_when_not_root() -> None:
    done = _run("start", user="nobody")
    if "running" in done.stdout:
        pytest.skip("a libvirtd answers even to nobody here")
    assert done.returncode == 1
    assert "needs root; run: sudo bash scripts/libvirtd.sh start" in done.stderr


def test_status_and_start_are_idempotent(system_libvirt: str) -> None:
    """With libvirtd up (``make pytest`` started it), start says so and changes nothing."""
    assert _run("status").returncode == 0
    again = _run("start")
    assert again.returncode == 0 and again.stdout.strip() in ("running", "started")
