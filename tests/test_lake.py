"""The Lake facade end to end on SYNTHETIC data: query, open, export, locks, Intake, PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
import sqlalchemy as sa

from imagelake import synthetic
from imagelake.catalog import make_stack_key
from imagelake.errors import LakeLockedError, LakeNotFoundError, QueryError
from imagelake.lake import Lake, open_lake

N_CT, N_MR = 6, 5


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SYNTHETIC CT series and a SYNTHETIC MR series."""
    base = tmp_path_factory.mktemp("lake-inputs")
    synthetic.write_series(synthetic.ct_series(N_CT, 32, 32), base / "ct")
    synthetic.write_series(synthetic.mr_series(N_MR, 32, 32), base / "mr")
    return base


@pytest.fixture(scope="module")
def lake(inputs: Path, tmp_path_factory: pytest.TempPathFactory) -> Lake:
    lake = open_lake(tmp_path_factory.mktemp("lake") / "lake", create=True)
    lake.ingest(inputs, workers=1)
    return lake


def uids_by_modality(inputs: Path) -> dict[str, str]:
    out = {}
    for folder in ("ct", "mr"):
        path = next((inputs / folder).iterdir())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        out[str(ds.Modality)] = str(ds.SeriesInstanceUID)
    return out


def test_opening_a_missing_lake_says_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(LakeNotFoundError, match="create=True"):
        open_lake(tmp_path / "nowhere")
    assert not (tmp_path / "nowhere").exists()


def test_query_finds_series_by_tag(lake: Lake, inputs: Path) -> None:
    uids = uids_by_modality(inputs)
    assert sorted(lake.series().series_instance_uid) == sorted(uids.values())
    ct = lake.query(Modality="CT")
    assert list(ct.series_instance_uid) == [uids["CT"]]
    assert list(lake.query(Modality="MR").series_instance_uid) == [uids["MR"]]
    assert lake.query(Modality="US").empty
    instances = lake.query(Modality="CT", level="instances")
    assert len(instances) == N_CT
    assert set(instances.series_instance_uid) == {uids["CT"]}


def test_open_series_of_an_unknown_uid_is_a_query_error(lake: Lake) -> None:
    with pytest.raises(QueryError, match="no series"):
        lake.open_series("1.2.3.4.5")


def test_export_with_a_filter_writes_only_matching_series(
    lake: Lake, inputs: Path, tmp_path: Path
) -> None:
    uids = uids_by_modality(inputs)
    report = lake.export(tmp_path / "out", Modality="MR")
    assert report.instances == N_MR
    folders = {p.parent.name for p in report.files}
    assert folders == {uids["MR"]}
    assert all(p.exists() and p.suffix == ".dcm" for p in report.files)
    exports = list(lake.audit.entries(action="export"))
    assert exports and uids["MR"] in exports[-1].objects


def test_a_second_writer_is_refused(lake: Lake, inputs: Path) -> None:
    other = open_lake(lake.url)
    with lake.writer_lock(), pytest.raises(LakeLockedError, match="another process"):
        other.ingest(inputs, workers=1)


def test_ingest_is_audited(lake: Lake) -> None:
    entries = list(lake.audit.entries(action="ingest"))
    assert entries
    assert entries[0].details["instances_new"] == N_CT + N_MR
    assert lake.verify_audit().ok


# -- Intake alone ----------------------------------------------------------------------------
INTAKE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import dask.array
    import intake

    cat = intake.from_yaml_file(sys.argv[1])
    ds = cat[sys.argv[2]].read()
    lazy = isinstance(ds.image.data, dask.array.Array)
    series = cat["series"].read()
    out = {
        "lazy": lazy,
        "dims": list(ds.image.dims),
        "shape": list(ds.image.shape),
        "sum": float(ds.image.sum().compute()),
        "z": [float(v) for v in ds.z.values],
        "series": sorted(series["series_instance_uid"]),
        "imagelake_imported": "imagelake" in sys.modules
        or any(m.startswith("imagelake.") for m in sys.modules),
    }
    print(json.dumps(out))
    """
)


def test_intake_alone_reads_a_stack_lazily_and_the_series_table(
    lake: Lake, inputs: Path, tmp_path: Path
) -> None:
    uid = uids_by_modality(inputs)["CT"]
    key = make_stack_key(uid, 0, "CT")
    script = tmp_path / "read_with_intake.py"
    script.write_text(INTAKE_SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script), str(Path(lake.fs.root) / "catalog.yaml"), key],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,  # not the repository: nothing importable by accident
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["imagelake_imported"] is False
    assert out["lazy"] is True
    ds = lake.open_series(uid)
    assert out["dims"] == list(ds.image.dims)
    assert out["shape"] == list(ds.image.shape)
    assert out["sum"] == pytest.approx(float(ds.image.sum()))
    np.testing.assert_allclose(out["z"], ds.z.values)
    assert out["series"] == sorted(lake.series().series_instance_uid)


# -- PostgreSQL registry ---------------------------------------------------------------------
@pytest.fixture
def pg_database(pg_url: str) -> Iterator[str]:
    """A fresh, empty database on the test server (dropped afterwards): its URL."""
    name = f"imagelake_lake_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(pg_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.mark.postgres
def test_postgres_registry_gives_the_same_series_as_sqlite(
    lake: Lake, inputs: Path, tmp_path: Path, pg_database: str
) -> None:
    pg_lake = open_lake(tmp_path / "pg-lake", create=True, db_url=pg_database)
    assert pg_lake.db.engine.dialect.name == "postgresql"
    assert not (tmp_path / "pg-lake" / "registry.sqlite").exists()
    report = pg_lake.ingest(inputs, workers=1)
    assert (report.instances_new, report.series_new) == (N_CT + N_MR, 2)

    columns = ["series_instance_uid", "modality", "n_instances"]
    want = lake.query()[columns].sort_values("series_instance_uid").reset_index(drop=True)
    got = pg_lake.query()[columns].sort_values("series_instance_uid").reset_index(drop=True)
    assert got.to_dict("records") == want.to_dict("records")
    assert list(pg_lake.query(Modality="MR").series_instance_uid) == list(
        lake.query(Modality="MR").series_instance_uid
    )
    # the lake reopens from its registry URL, and a second ingest adds nothing
    again = open_lake(tmp_path / "pg-lake", db_url=pg_database).ingest(inputs, workers=1)
    assert again.instances_new == 0
    pg_lake.db.engine.dispose()
