"""Engine creation and schema management."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from imagelake import model
from imagelake.errors import RegistryError

__all__ = ["Database", "utcnow"]


def utcnow() -> dt.datetime:
    """Timezone-aware now, in UTC (the registry's only clock)."""
    return dt.datetime.now(dt.UTC)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets readers (notebooks, the index writer) run while ingest writes; a busy
    # timeout turns short lock waits into waits rather than errors.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


class Database:
    """A registry database.

    Parameters
    ----------
    url
        SQLAlchemy URL, e.g. ``sqlite:////data/lake/registry.sqlite`` or
        ``postgresql+psycopg://user@host/db``.
    create
        Create missing tables (and record the schema version).
    """

    def __init__(self, url: str, *, create: bool = True, echo: bool = False) -> None:
        self.url = sa.engine.make_url(url)
        kwargs: dict[str, Any] = {"echo": echo, "future": True}
        if self.url.get_backend_name() == "sqlite":
            kwargs["connect_args"] = {"timeout": 30}
        elif self.url.get_backend_name() == "postgresql" and self.url.drivername == "postgresql":
            # a bare postgresql:// URL means psycopg 3 (the [postgres] extra), not psycopg2
            self.url = self.url.set(drivername="postgresql+psycopg")
        try:
            self.engine: Engine = sa.create_engine(self.url, **kwargs)
        except ModuleNotFoundError as exc:
            raise RegistryError(
                f"the database driver for {self.url.drivername!r} is not installed ({exc.name}); "
                "for PostgreSQL install: pip install 'imagelake[postgres]'"
            ) from exc
        if self.is_sqlite:
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        if create:
            self.create_schema()

    @property
    def is_sqlite(self) -> bool:
        return self.url.get_backend_name() == "sqlite"

    def __repr__(self) -> str:
        return f"Database({self.url.render_as_string(hide_password=True)!r})"

    def create_schema(self) -> None:
        """Create missing tables; refuse a registry written by a newer schema."""
        try:
            model.metadata.create_all(self.engine)
        except sa.exc.OperationalError as exc:
            raise RegistryError(f"cannot open the registry at {self!r}: {exc.orig}") from exc
        with self.engine.begin() as conn:
            row = conn.execute(
                sa.select(model.schema_info.c.value).where(model.schema_info.c.key == "schema")
            ).first()
            if row is None:
                conn.execute(
                    sa.insert(model.schema_info).values(
                        key="schema", value=str(model.SCHEMA_VERSION)
                    )
                )
            elif int(row[0]) > model.SCHEMA_VERSION:
                raise RegistryError(
                    f"the registry uses schema version {row[0]}, newer than this imagelake "
                    f"({model.SCHEMA_VERSION}); upgrade imagelake"
                )

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A transaction: committed on success, rolled back on any error."""
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A read connection."""
        with self.engine.connect() as conn:
            yield conn

    def dispose(self) -> None:
        self.engine.dispose()
