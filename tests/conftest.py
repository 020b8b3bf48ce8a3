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
from typing import NoReturn

import pytest

PG_URL_ENV = "IMAGELAKE_TEST_PG_URL"


def in_ci() -> bool:
    """Whether the tests run under CI (``CI=true``), where nothing may be skipped for lack of a tool."""
    return os.environ.get("CI") == "true"


def missing_dependency(reason: str) -> NoReturn:
    """Skip the current test because ``reason``; under ``CI=true`` fail it instead."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: a missing dependency fails the test)", pytrace=False)
    pytest.skip(reason)


def require_tool(name: str) -> str:
    """Return the path of the system tool ``name``, or skip (fail under ``CI=true``) without it."""
    path = shutil.which(name)
    if path is None:
        missing_dependency(
            f"system tool {name!r} is not on PATH; install the project's Debian packages with "
            "`sudo bash scripts/setup-system.sh` (or run `make test`)"
        )
    return path


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
