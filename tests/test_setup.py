"""The set-up machinery itself: scripts/setup-system.sh, scripts/pg-test-server.sh, the Makefile's
test mechanics, and the skip-locally / fail-under-CI policy of tests/conftest.py.

These run the real scripts against the real system (dpkg, PostgreSQL's own binaries, make).
"""

from __future__ import annotations

import glob
import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[1]


def _load_shared_conftest() -> ModuleType:
    # Not `from conftest import ...`: that name belongs to whichever conftest.py pytest loaded last.
    spec = importlib.util.spec_from_file_location(
        "_imagelake_tests_conftest", Path(__file__).with_name("conftest.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_shared = _load_shared_conftest()
PG_URL_ENV: str = _shared.PG_URL_ENV
missing_dependency = _shared.missing_dependency
require_tool = _shared.require_tool
SETUP_SYSTEM = REPO / "scripts" / "setup-system.sh"
PG_SERVER = REPO / "scripts" / "pg-test-server.sh"
IS_ROOT = os.geteuid() == 0

# What the brief of the set-up issue asks scripts/setup-system.sh to install, and a command each
# package provides that the tests or benchmarks use.
REQUIRED_PACKAGES = [
    "dcmtk",
    "dicom3tools",
    "dcm2niix",
    "pigz",
    "postgresql",
    "hyperfine",
    "git",
    "make",
]
PEER_TOOLS = [
    "dcmdump",
    "storescu",
    "dciodvfy",
    "dcm2niix",
    "pigz",
    "hyperfine",
    "psql",
    "git",
    "make",
]


def _clean_env(**changes: str | None) -> dict[str, str]:
    """This process's environment without make's and pytest's own variables, with ``changes``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "PYTEST_ADDOPTS", "PYTEST_CURRENT_TEST"}
    }
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def _run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    kwargs.setdefault("timeout", 300)
    return subprocess.run(args, capture_output=True, text=True, check=False, **kwargs)


def _require_runuser() -> str:
    # runuser lives in /usr/sbin, which a non-login root shell's PATH may lack.
    found = shutil.which("runuser") or shutil.which("runuser", path="/usr/sbin:/sbin")
    return found or require_tool("runuser")


def _require_pg_binaries() -> None:
    if not glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        missing_dependency(
            "PostgreSQL server binaries are not in /usr/lib/postgresql/*/bin; install the Debian "
            "package postgresql (`sudo bash scripts/setup-system.sh`)"
        )
    if IS_ROOT:
        _require_runuser()


def _port_is_closed(url: str) -> bool:
    u = sa.make_url(url)
    try:
        with socket.create_connection((u.host or "127.0.0.1", u.port or 5432), timeout=2):
            return False
    except OSError:
        return True


def _select(url: str) -> tuple[int, str, str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            row = conn.execute(
                sa.text("SELECT 1, current_database(), current_setting('listen_addresses')")
            ).one()
    finally:
        engine.dispose()
    return int(row[0]), str(row[1]), str(row[2])


@pytest.fixture
def pg_state_dir() -> Iterator[Path]:
    """A private state folder for a second test server, reachable by the ``postgres`` user."""
    parent = Path(
        tempfile.mkdtemp(prefix="imagelake-pg-selftest-", dir="/tmp" if IS_ROOT else None)
    )
    parent.chmod(0o755)
    state = parent / "state"
    try:
        yield state
    finally:
        # Whatever the test did, leave no server running behind it.
        _run(["bash", str(PG_SERVER), "stop"], env=_clean_env(IMAGELAKE_PG_DIR=str(state)))
        shutil.rmtree(parent, ignore_errors=True)


# --- tests/conftest.py policy -------------------------------------------------------------------


def test_require_tool_returns_the_path(require_tool: Callable[[str], str]) -> None:
    path = require_tool("sh")
    assert Path(path).is_file()
    assert os.access(path, os.X_OK)
    assert path == shutil.which("sh")


@pytest.mark.parametrize("ci", ["true", None], ids=["CI=true", "local"])
def test_missing_tool_and_server_fail_in_ci_and_skip_locally(
    tmp_path: Path, ci: str | None
) -> None:
    shutil.copy(REPO / "tests" / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_probe.py").write_text(
        "def test_tool(require_tool):\n"
        "    require_tool('imagelake-surely-missing-tool-7f3c')\n"
        "\n"
        "def test_server(pg_url):\n"
        "    pass\n"
    )
    result = _run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rA",
            "-p",
            "no:cacheprovider",
            "-o",
            "addopts=",
            "--rootdir",
            str(tmp_path),
            str(tmp_path),
        ],
        cwd=tmp_path,
        env=_clean_env(CI=ci, **{PG_URL_ENV: None}),
    )
    out = result.stdout + result.stderr
    if ci == "true":
        assert result.returncode == 1, out
        assert re.search(r"\b1 failed, 1 error\b", out), out
        assert "imagelake-surely-missing-tool-7f3c" in out
        assert "CI=true: a missing dependency fails the test" in out
    else:
        assert result.returncode == 0, out
        assert re.search(r"\b2 skipped\b", out), out
    assert "scripts/setup-system.sh" in out
    assert PG_URL_ENV in out


# --- scripts/setup-system.sh --------------------------------------------------------------------


def test_setup_system_lists_the_required_packages() -> None:
    result = _run(["bash", str(SETUP_SYSTEM), "--list"])
    assert result.returncode == 0, result.stderr
    listed = result.stdout.split()
    assert set(REQUIRED_PACKAGES) <= set(listed), listed


def test_setup_system_is_satisfied_and_fast_when_everything_is_installed() -> None:
    if shutil.which("dpkg-query") is None:
        missing_dependency("dpkg-query is not on PATH: not a Debian-like system")
    check = _run(["bash", str(SETUP_SYSTEM), "--check"])
    if check.returncode != 0:
        missing_dependency(f"Debian packages are missing: {check.stderr.strip()}")
    # The install run must then touch nothing: no apt-get, well under a few seconds.
    start = time.monotonic()
    result = _run(["bash", str(SETUP_SYSTEM)])
    elapsed = time.monotonic() - start
    assert result.returncode == 0, result.stderr
    assert "Debian packages present" in result.stderr
    assert elapsed < 5, f"setup-system.sh took {elapsed:.1f} s with nothing to install"


def test_setup_system_without_root_reports_missing_packages_and_goes_on() -> None:
    if shutil.which("dpkg-query") is None:
        missing_dependency("dpkg-query is not on PATH: not a Debian-like system")
    fake = "imagelake-no-such-package-7f3c"
    cmd = ["bash", "-s"]
    if IS_ROOT:
        # Drop to an unprivileged user; the script comes on stdin, so its folder may be private.
        cmd = [_require_runuser(), "-u", "nobody", "--", *cmd]
    result = _run(
        cmd,
        input=SETUP_SYSTEM.read_text(),
        cwd="/",
        env=_clean_env(IMAGELAKE_APT_EXTRA=fake),
    )
    assert result.returncode == 0, result.stderr
    assert f"missing Debian packages: {fake}" in result.stderr
    assert "sudo bash scripts/setup-system.sh" in result.stderr
    assert "apt-get install -y --no-install-recommends" in result.stderr


@pytest.mark.parametrize("tool", PEER_TOOLS)
def test_system_tool_is_installed(tool: str) -> None:
    assert Path(require_tool(tool)).is_file()


# --- scripts/pg-test-server.sh and the server make test started ---------------------------------


@pytest.mark.postgres
def test_pg_url_answers_select_1(pg_url: str) -> None:
    one, database, _ = _select(pg_url)
    assert one == 1
    assert database == sa.make_url(pg_url).database


@pytest.mark.postgres
def test_pg_test_server_start_url_stop(pg_state_dir: Path) -> None:
    _require_pg_binaries()
    env = _clean_env(IMAGELAKE_PG_DIR=str(pg_state_dir))

    started = _run(["bash", str(PG_SERVER), "start"], env=env)
    assert started.returncode == 0, started.stderr
    url = started.stdout.strip()
    assert re.fullmatch(r"postgresql\+psycopg://postgres@127\.0\.0\.1:\d+/imagelake_test", url), url

    assert _select(url) == (1, "imagelake_test", "127.0.0.1")

    again = _run(["bash", str(PG_SERVER), "start"], env=env)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == url, "a second start must reuse the running server"
    shown = _run(["bash", str(PG_SERVER), "url"], env=env)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == url
    pid_file = pg_state_dir / "postgres.pid"
    assert pid_file.read_text().strip().isdigit()

    stopped = _run(["bash", str(PG_SERVER), "stop"], env=env)
    assert stopped.returncode == 0, stopped.stderr
    assert _port_is_closed(url)
    assert not pg_state_dir.exists()
    gone = _run(["bash", str(PG_SERVER), "url"], env=env)
    assert gone.returncode == 1
    assert "not running" in gone.stderr


# --- Makefile -----------------------------------------------------------------------------------


def test_make_dry_run_shows_the_whole_pipeline() -> None:
    make = require_tool("make")
    test = _run([make, "-n", "test"], cwd=REPO, env=_clean_env())
    assert test.returncode == 0, test.stderr
    for step in (
        "scripts/setup-system.sh",
        "ruff check",
        "mypy",
        "lint-imports",
        "-m pytest",
        "pg-test-server.sh start",
        "pg-test-server.sh stop",
    ):
        assert step in test.stdout, f"`make -n test` does not run {step!r}:\n{test.stdout}"
    demo = _run([make, "-n", "demo"], cwd=REPO, env=_clean_env())
    assert demo.returncode == 0, demo.stderr
    assert "imagelake demo --lake ./lake" in demo.stdout


@pytest.mark.postgres
@pytest.mark.slow
def test_make_pytest_stops_the_server_and_keeps_the_failure(
    tmp_path: Path, pg_state_dir: Path
) -> None:
    make = require_tool("make")
    _require_pg_binaries()
    if _run([make, "-q", "venv"], cwd=REPO, env=_clean_env()).returncode != 0:
        missing_dependency("the .venv stamp is out of date; run `make venv` first")
    seen = tmp_path / "seen-url"
    probe = tmp_path / "test_fails_on_purpose.py"
    probe.write_text(
        "import os, pathlib, sqlalchemy as sa\n"
        "\n"
        "def test_fails_on_purpose():\n"
        f"    url = os.environ[{PG_URL_ENV!r}]\n"
        f"    pathlib.Path({str(seen)!r}).write_text(url)\n"
        "    with sa.create_engine(url).connect() as conn:\n"
        "        assert conn.execute(sa.text('SELECT 1')).scalar() == 1\n"
        "    assert False, 'fails on purpose'\n"
    )
    result = _run(
        [make, "--no-print-directory", "pytest", f"PYTEST_ARGS=-p no:cacheprovider {probe}"],
        cwd=REPO,
        env=_clean_env(IMAGELAKE_PG_DIR=str(pg_state_dir), **{PG_URL_ENV: None}),
    )
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "1 failed" in out, out
    assert re.search(r"\[Makefile:\d+: pytest\] Error 1\b", out), out  # pytest's own exit code
    url = seen.read_text()
    assert url.startswith("postgresql+psycopg://postgres@127.0.0.1:")
    assert _port_is_closed(url), "make pytest left the PostgreSQL server running"
    assert not pg_state_dir.exists()
