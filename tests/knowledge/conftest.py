"""Fixtures for the knowledge-base tests: a registry on SQLite and, when available, PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from imagelake.db import Database


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """An empty registry: a SQLite file in tmp_path, or a fresh schema on the test server."""
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path}/r.sqlite")
        yield database
        database.dispose()
        return
    # a fresh schema on the test server (skips, or fails under CI=true, without one)
    yield request.getfixturevalue("pg_schema_db")
