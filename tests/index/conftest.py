"""A real SQLite registry filled through the model tables, and its lake, for the index tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from index_factory import Indexed, RegistryFactory, indexed_lake

from imagelake._fs import LakeFS
from imagelake.db import Database


@pytest.fixture
def lake(tmp_path: Path) -> LakeFS:
    """An empty local lake folder."""
    root = tmp_path / "lake"
    root.mkdir()
    return LakeFS(root)


@pytest.fixture
def db(lake: LakeFS) -> Iterator[Database]:
    """A fresh SQLite registry inside the lake."""
    database = Database(f"sqlite:///{lake.path('registry.sqlite')}")
    yield database
    database.dispose()


@pytest.fixture
def factory(db: Database) -> RegistryFactory:
    return RegistryFactory(db)


@pytest.fixture
def pg_db(pg_schema_db: Database) -> Database:
    """An empty registry in a fresh schema of the PostgreSQL test server."""
    return pg_schema_db


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Indexed]:
    """Five series in a registry and the lake's index written from it (shared: read only)."""
    data = indexed_lake(tmp_path_factory.mktemp("lake"))
    yield data
    data.db.dispose()


@pytest.fixture
def fresh_indexed(tmp_path: Path) -> Iterator[Indexed]:
    """Like ``indexed``, for one test that may change it."""
    data = indexed_lake(tmp_path / "lake")
    yield data
    data.db.dispose()
