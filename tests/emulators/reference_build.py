"""Building the reference emulator's images in tests (shared by the image, manager and
reprocess tests): emulators/reference/build.sh into a session image store."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import NoReturn

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "emulators" / "reference" / "build.sh"
SBIN = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
# Debian packages: tool -> package
NEEDED = {
    "gcc": "gcc",
    "mke2fs": "e2fsprogs",
    "debugfs": "e2fsprogs",
    "qemu-img": "qemu-utils",
    "modprobe": "kmod",
    "mcopy": "mtools",
}
VERSIONS = ("1.0", "2.0")


def missing(reason: str) -> NoReturn:
    __tracebackhide__ = True
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: a missing dependency fails the test)", pytrace=False)
    pytest.skip(reason)


def need_build_tools() -> None:
    for tool, package in NEEDED.items():
        if shutil.which(tool, path=SBIN) is None:
            missing(f"{tool} is not installed (Debian package {package})")
    if not Path("/bin/busybox").is_file():
        missing("/bin/busybox is missing (Debian package busybox-static)")
    kernels = [k for k in Path("/boot").glob("vmlinuz-*-amd64") if os.access(k, os.R_OK)]
    if not any((Path("/lib/modules") / k.name.removeprefix("vmlinuz-")).is_dir() for k in kernels):
        missing(
            "no readable Debian kernel with modules: install the Debian package linux-image-amd64 "
            "(Debian makes /boot/vmlinuz-* readable by root only: build the images as root)"
        )


def build(version: str, store: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": SBIN}
    return subprocess.run(
        ["bash", str(BUILD), "--version", version, "--out", str(store), *extra],
        capture_output=True, text=True, env=env, check=False, timeout=300,
    )  # fmt: skip


def build_all(store: Path) -> Path:
    """Both versions into ``store`` (each must build in under a minute)."""
    need_build_tools()
    for version in VERSIONS:
        started = time.monotonic()
        proc = build(version, store)
        assert proc.returncode == 0, proc.stderr
        assert time.monotonic() - started < 60, "building an image must take under a minute"
    return store
