"""Shared fixtures and helpers for imagelake's tests.

Policy for outside dependencies (system tools, a PostgreSQL server): when one is missing, a test
*skips* on a developer's machine but *fails* under ``CI=true``, so CI can never go green by
skipping. ``make test`` installs the tools (``scripts/setup-system.sh``) and starts a throwaway
PostgreSQL server (``scripts/pg-test-server.sh``) whose URL it exports as
``IMAGELAKE_TEST_PG_URL``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from typing import NoReturn

import pytest

PG_URL_ENV = "IMAGELAKE_TEST_PG_URL"


def in_ci() -> bool:
    """Whether the tests run under CI (``CI=true``), where nothing may be skipped for lack of a tool."""
    return os.environ.get("CI") == "true"


def missing_dependency(reason: str) -> NoReturn:
    """Skip the current test because ``reason``; under ``CI=true`` fail it instead."""
    __tracebackhide__ = True  # report the calling test's line, not this one
    if in_ci():
        pytest.fail(f"{reason} (CI=true: a missing dependency fails the test)", pytrace=False)
    pytest.skip(reason)


def require_tool(name: str) -> str:
    """Return the path of the system tool ``name``, or skip (fail under ``CI=true``) without it."""
    __tracebackhide__ = True
    path = shutil.which(name)
    if path is None:
        missing_dependency(
            f"system tool {name!r} is not on PATH; install the project's Debian packages with "
            "`sudo bash scripts/setup-system.sh` (or run `make test`)"
        )
    return path


@pytest.fixture(name="require_tool", scope="session")
def _require_tool_fixture() -> Callable[[str], str]:
    """:func:`require_tool` as a fixture, for test modules anywhere under tests/.

    ``from conftest import require_tool`` is not reliable: with several conftest.py files in
    folders without ``__init__.py``, the module named ``conftest`` is whichever pytest loaded last.
    """
    return require_tool


@pytest.fixture(scope="session")
def pg_url() -> str:
    """SQLAlchemy URL of a throwaway PostgreSQL database, from ``IMAGELAKE_TEST_PG_URL``."""
    url = os.environ.get(PG_URL_ENV, "")
    if not url:
        missing_dependency(
            f"{PG_URL_ENV} is not set; run the tests through `make test`, or export the URL "
            "printed by `scripts/pg-test-server.sh start`"
        )
    return url
