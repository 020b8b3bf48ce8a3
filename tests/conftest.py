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
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
import sqlalchemy as sa

from imagelake.db import Database

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


@pytest.fixture
def pg_schema_db(pg_url: str) -> Iterator[Database]:
    """An empty registry in a fresh schema of the PostgreSQL test server, dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(pg_url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    scoped = sa.engine.make_url(pg_url).update_query_dict({"options": f"-csearch_path={schema}"})
    database = Database(scoped.render_as_string(hide_password=False))
    try:
        yield database
    finally:
        database.dispose()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


# -- fixtures for the ingest, store, export, lake and CLI tests ---------------------------------
# (tests/ingest, tests/store, tests/export, tests/dicom, tests/test_lake.py, tests/test_cli.py)


class LakeDisk:
    """What a local lake holds on disk, next to what its registry says it holds."""

    @staticmethod
    def store_dirs(root: Path) -> set[str]:
        """Every ``stores/dicom/<series>/<stack>.zarr`` folder on disk, relative to ``root``."""
        return {p.relative_to(root).as_posix() for p in root.glob("stores/dicom/*/*.zarr")}

    @staticmethod
    def referenced(lake: Any) -> set[str]:
        """Store paths the registry of ``lake`` references."""
        df = lake.stacks()
        return set() if df.empty else set(df.store_path)

    @staticmethod
    def tmp_leftovers(root: Path) -> list[str]:
        """Anything left under ``.tmp/`` (temporary trees of unfinished stores)."""
        tmp = root / ".tmp"
        return sorted(p.name for p in tmp.iterdir()) if tmp.exists() else []

    @staticmethod
    def count(lake: Any, table: str) -> int:
        """Rows of a registry table (``instance``, ``series``, ``stack``, ``quarantine``...)."""
        import sqlalchemy as sa

        from imagelake import model

        with lake.db.connect() as conn:
            return int(
                conn.execute(sa.select(sa.func.count()).select_from(getattr(model, table))).scalar()
            )


@pytest.fixture(name="lake_disk", scope="session")
def _lake_disk_fixture() -> type[LakeDisk]:
    """:class:`LakeDisk` (disk and registry views of a local lake), as a fixture."""
    return LakeDisk


@pytest.fixture(scope="session")
def real_dicom_dirs() -> tuple[Path, Path]:
    """The REAL test files: pydicom's ``test_files`` and pydicom-data's ``data`` folders.

    Found by path, never through ``pydicom.data.get_testdata_files`` (which may try to
    download files).
    """
    import pydicom

    try:
        import data_store  # the pydicom-data package
    except ImportError:
        missing_dependency("pydicom-data is not installed (pip install -e '.[test]')")
    folders = (
        Path(pydicom.__file__).parent / "data" / "test_files",
        Path(data_store.__file__).parent / "data",
    )
    for folder in folders:
        if not folder.is_dir():
            missing_dependency(f"real DICOM test folder {folder} is missing")
    return folders


@pytest.fixture(scope="session")
def imagelake_exe() -> str:
    """The ``imagelake`` console script of the environment running the tests."""
    exe = shutil.which("imagelake", path=str(Path(sys.executable).parent))
    if exe is None:
        missing_dependency("the imagelake console script is not installed (pip install -e .)")
    return exe


@pytest.fixture
def write_ct(tmp_path: Path) -> Callable[..., list[Path]]:
    """Write a small SYNTHETIC CT series into a folder under ``tmp_path``; return its files.

    Keyword arguments go to :func:`imagelake.synthetic.ct_series` (defaults: 8 slices of
    32 x 32); ``folder`` names the folder (default ``ct``).
    """
    from imagelake import synthetic

    def write(folder: str = "ct", **kwargs: Any) -> list[Path]:
        args: dict[str, Any] = {"n_slices": 8, "rows": 32, "cols": 32, **kwargs}
        return synthetic.write_series(synthetic.ct_series(**args), tmp_path / folder)

    return write


@pytest.fixture(autouse=True, scope="session")
def _keys_outside_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keyed patient hashes and anonymized shares use keys made for this test session,
    never the ones in ~/.config."""
    folder = tmp_path_factory.mktemp("site-keys")
    wanted = {
        "IMAGELAKE_LINK_KEY_FILE": str(folder / "link.key"),
        "IMAGELAKE_DEID_SECRET_FILE": str(folder / "deid.key"),
    }
    old = {k: os.environ.get(k) for k in wanted}
    os.environ.update(wanted)
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
