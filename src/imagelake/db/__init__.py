"""The registry database: engine, schema, and the small set of write helpers ingest uses.

SQLite (``<lake>/registry.sqlite``) by default; any SQLAlchemy URL (PostgreSQL for a
site) through ``IMAGELAKE_DB_URL`` or the ``db_url`` argument.
"""

from imagelake.db._database import Database, utcnow
from imagelake.db._ops import (
    AlertUpsert,
    ensure_project,
    ensure_study,
    ensure_subject,
    upsert_alert,
)

__all__ = [
    "AlertUpsert",
    "Database",
    "ensure_project",
    "ensure_study",
    "ensure_subject",
    "upsert_alert",
    "utcnow",
]
