"""Fixtures for the knowledge-base tests: a registry on SQLite and, when available, PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from imagelake.db import Database


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """An empty registry: a SQLite file in tmp_path, or a fresh schema on the test server."""
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path}/r.sqlite")
        yield database
        database.dispose()
        return
    url = request.getfixturevalue("pg_url")  # skips (fails under CI=true) without a server
    schema = f"kb_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    scoped = sa.engine.make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
    database = Database(scoped.render_as_string(hide_password=False))
    try:
        yield database
    finally:
        database.dispose()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
