"""write_snapshot against a real SQLite registry filled through the model tables."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from index_factory import Indexed, RegistryFactory, ct_tags

from imagelake import model
from imagelake._fs import LakeFS
from imagelake.db import Database
from imagelake.errors import ConfigError
from imagelake.index import INDEX_SCHEMA_VERSION, query, write_snapshot
from imagelake.index._columns import INSTANCE_COLUMNS

FILES = ["series", "instances", "raw", "links", "measures"]


def read(lake: LakeFS, name: str) -> pa.Table:
    return pq.read_table(lake.path(f"index/{name}.parquet"))


def test_writes_every_file_and_the_snapshot_record(indexed: Indexed) -> None:
    lake = indexed.lake
    info = json.loads(Path(lake.path("index/_snapshot.json")).read_text())
    assert info["schema_version"] == INDEX_SCHEMA_VERSION
    assert info["registry_schema_version"] == model.SCHEMA_VERSION
    assert info["rows"] == {"series": 5, "instances": 10, "raw": 0, "links": 0, "measures": 0}
    assert info["written_at"].endswith("+00:00")
    for name in FILES:
        assert read(lake, name).num_rows == info["rows"][name]
    # no temporary file is left behind, in index/ or in the lake's scratch folder
    assert sorted(os.listdir(lake.path("index"))) == sorted(
        [f"{n}.parquet" for n in FILES] + ["_snapshot.json"]
    )
    assert os.listdir(lake.path(".tmp")) == []


def test_returns_urls(lake: LakeFS, db: Database) -> None:
    written = write_snapshot(db, lake)
    assert written["series"] == lake.url("index/series.parquet")
    assert written["snapshot"] == lake.url("index/_snapshot.json")
    assert set(written) == {*FILES, "snapshot"}


def test_series_rows(indexed: Indexed) -> None:
    table = read(indexed.lake, "series")
    rows = {r["series_instance_uid"]: r for r in table.to_pylist()}
    s1 = rows[indexed.uids["S1"]]
    assert s1["modality"] == "CT" and s1["manufacturer"] == "SIEMENS"
    assert s1["patient_id"] == "P1" and s1["project"] == "demo"
    assert s1["study_date"] == "20240101"
    assert s1["slice_thickness"] == 1.0 and s1["convolution_kernel"] == "Br40d"
    assert s1["n_instances"] == 4 and s1["n_frames"] == 4
    assert s1["n_stacks"] == 2 and s1["stored_bytes"] == 3000 and s1["source_bytes"] == 9000
    uid = indexed.uids["S1"]
    assert s1["stores"] == [f"stores/dicom/{uid}-1.zarr", f"stores/dicom/{uid}-2.zarr"]
    assert (s1["first_acquisition"], s1["last_acquisition"]) == ("20240101120000", "20240101120002")
    s5 = rows[indexed.uids["S5"]]
    assert s5["n_instances"] == 0 and s5["first_acquisition"] is None
    assert table.column("series_id").to_pylist() == sorted(table.column("series_id").to_pylist())
    types = table.schema
    assert types.field("slice_thickness").type == pa.float64()
    assert types.field("created_at").type == pa.timestamp("us", tz="UTC")
    assert types.field("stores").type == pa.list_(pa.string())


def test_instance_columns_fixed_then_tags_typed(indexed: Indexed) -> None:
    table = read(indexed.lake, "instances")
    schema = table.schema
    fixed = [name for name, _ in INSTANCE_COLUMNS]
    assert schema.names[: len(fixed)] == fixed
    tags = schema.names[len(fixed) :]
    # keywords sorted, then numeric tags: a stable order
    assert tags == [*sorted(tags[:-1]), "0019100C"]
    assert schema.field("XRayTubeCurrent").type == pa.int64()
    assert schema.field("SliceLocation").type == pa.float64()
    assert schema.field("SliceThickness").type == pa.float64()
    assert schema.field("0019100C").type == pa.int64()
    assert schema.field("EchoNumbers").type == pa.int64()
    # multi-valued, or numbers in some rows and lists in others: text joined with "\"
    assert schema.field("ImageType").type == pa.string()
    assert schema.field("WindowCenter").type == pa.string()
    assert schema.field("ImagePositionPatient").type == pa.string()
    rows = table.to_pylist()
    s2 = [r for r in rows if r["series_instance_uid"] == indexed.uids["S2"]]
    assert [r["WindowCenter"] for r in s2] == ["40\\400", "40"]
    assert s2[0]["ImagePositionPatient"] == "-100\\-120.5\\0"
    assert s2[0]["ImageOrientationPatient"] == "1\\0\\0\\0\\1\\0"
    s1 = [r for r in rows if r["series_instance_uid"] == indexed.uids["S1"]]
    assert [r["frame_offset"] for r in s1] == [0, 1, 2, 0]
    assert [r["stack_number"] for r in s1] == [1, 1, 1, 2]
    assert s1[3]["stack_path"].endswith("-2.zarr")
    assert [r["ImageType"] for r in s1] == ["ORIGINAL\\PRIMARY\\AXIAL"] * 3 + ["DERIVED"]
    mr = [r for r in rows if r["Modality"] == "MR"]
    assert all(r["XRayTubeCurrent"] is None for r in mr)


@pytest.mark.slow  # starts two worker processes
def test_batches_and_workers_do_not_change_the_result(
    lake: LakeFS, db: Database, factory: RegistryFactory, tmp_path: Path
) -> None:
    study, _ = factory.study()
    sid, _, stacks = factory.series(study, modality="CT")
    # the type of "Odd" differs from batch to batch: int, float, text, list, missing
    odd = [7, 8, 2.5, 3.0, "x", "y", [1, 2], None, 9, 10]
    factory.instances(
        sid,
        stacks[0],
        [
            ct_tags(i, thickness=1.0, current=i, Odd=v, **({"Late": 1.5} if i > 7 else {}))
            for i, v in enumerate(odd)
        ],
    )
    write_snapshot(db, lake)
    whole = read(lake, "instances")
    write_snapshot(db, lake, batch_rows=2)
    assert read(lake, "instances").equals(whole)
    assert whole.column("Odd").to_pylist() == [
        "7", "8", "2.5", "3", "x", "y", "1\\2", None, "9", "10",
    ]  # fmt: skip
    assert whole.schema.field("Late").type == pa.float64()
    write_snapshot(db, lake, batch_rows=3, workers=2)
    assert read(lake, "instances").equals(whole)


def test_empty_registry_gives_empty_files_with_their_columns(lake: LakeFS, db: Database) -> None:
    write_snapshot(db, lake)
    for name in FILES:
        assert read(lake, name).num_rows == 0
    series = read(lake, "series").schema.names
    assert series[:3] == ["series_id", "study_id", "subject_id"]
    for column in ("modality", "slice_thickness", "n_instances", "stores", "patient_id"):
        assert column in series
    assert read(lake, "instances").schema.names == [n for n, _ in INSTANCE_COLUMNS]
    assert read(lake, "raw").schema.names[:3] == ["raw_id", "sha256", "format"]
    assert "raw_sha256" in read(lake, "links").schema.names
    assert "provenance_key" in read(lake, "measures").schema.names
    assert len(query(lake, {"Modality": "CT"})) == 0
    assert len(query(lake, level="instances")) == 0


def test_raw_links_measures(lake: LakeFS, db: Database, factory: RegistryFactory) -> None:
    study, _ = factory.study()
    sid, uid, _ = factory.series(study, modality="MR")
    raw_id = factory.raw_file(manufacturer="Siemens", software_version="XA30")
    factory.link(raw_id, sid)
    factory.measure(sid, "snr", 31.5)
    write_snapshot(db, lake)
    raw = read(lake, "raw").to_pylist()
    assert raw[0]["raw_id"] == raw_id and json.loads(raw[0]["meta"]) == {"k": 1}
    link = read(lake, "links").to_pylist()[0]
    assert (link["series_instance_uid"], link["raw_sha256"]) == (uid, "ab" * 32)
    assert json.loads(link["evidence"]) == ["same StudyInstanceUID"]
    measure = read(lake, "measures").to_pylist()[0]
    assert (measure["name"], measure["value"], measure["series_instance_uid"]) == (
        "snr",
        31.5,
        uid,
    )
    assert measure["raw_sha256"] is None


def test_rewrite_is_atomic_for_readers(fresh_indexed: Indexed) -> None:
    data = fresh_indexed
    path = data.lake.path("index/instances.parquet")
    before = os.stat(path)
    old = read(data.lake, "instances")
    with open(path, "rb") as reader:  # a reader that opened the file before the rewrite
        study, _ = data.factory.study("P9")
        sid, _, stacks = data.factory.series(study, modality="CT")
        data.factory.instances(sid, stacks[0], [ct_tags(0, thickness=1.0, current=1)])
        write_snapshot(data.db, data.lake)
        # the file was replaced by a rename, not rewritten in place: the open handle still
        # reads the complete old file
        assert os.stat(path).st_ino != before.st_ino
        assert pq.read_table(pa.BufferReader(reader.read())).equals(old)
    assert read(data.lake, "instances").num_rows == old.num_rows + 1
    leftovers = [n for n in os.listdir(data.lake.path("index")) if n.startswith(".")]
    assert leftovers == []


def sql_series(db: Database, where: sa.ColumnElement[bool]) -> set[str]:
    s, ip = model.series, model.image_parameters
    with db.connect() as conn:
        rows = conn.execute(
            sa.select(s.c.series_instance_uid)
            .select_from(s.outerjoin(ip, ip.c.series_id == s.c.id))
            .where(where)
        )
        return {r[0] for r in rows}


def test_round_trip_equals_sql(indexed: Indexed) -> None:
    s, ip, i = model.series, model.image_parameters, model.instance
    ours = query(indexed.lake, {"Modality": "CT", "SliceThickness": (0.5, 1.5)})
    assert set(ours["series_instance_uid"]) == sql_series(
        indexed.db, (s.c.modality == "CT") & ip.c.slice_thickness.between(0.5, 1.5)
    )
    # instance level: SQLite's JSON functions over the registry's tags
    current = sa.func.json_extract(i.c.tags, "$.XRayTubeCurrent")
    having = sa.select(i.c.series_id).where(current.between(305, 355))
    ours = query(indexed.lake, {"XRayTubeCurrent": (305, 355)})
    expected = sql_series(indexed.db, s.c.id.in_(having))
    assert expected and set(ours["series_instance_uid"]) == expected
    frame = query(indexed.lake, level="instances", columns=["sop_instance_uid", "Modality"])
    with indexed.db.connect() as conn:
        rows = conn.execute(
            sa.select(i.c.sop_instance_uid, sa.func.json_extract(i.c.tags, "$.Modality"))
        ).all()
    assert sorted(map(tuple, frame.itertuples(index=False))) == sorted(map(tuple, rows))


def test_duckdb_reads_the_index(indexed: Indexed) -> None:
    duckdb = pytest.importorskip("duckdb")
    folder = indexed.lake.path("index")
    got = duckdb.sql(
        f"SELECT series_instance_uid FROM '{folder}/series.parquet' WHERE modality = 'CT' "
        f"AND series_id IN (SELECT series_id FROM '{folder}/instances.parquet' "
        "WHERE XRayTubeCurrent >= 450)"
    ).fetchall()
    assert {r[0] for r in got} == {indexed.uids["S4"]}


def test_object_store_lake(db: Database, factory: RegistryFactory) -> None:
    """A lake on a non-local fsspec file system (memory://) is written and queried alike."""
    study, _ = factory.study()
    sid, uid, stacks = factory.series(study, modality="CT", params={"slice_thickness": 1.0})
    factory.instances(sid, stacks[0], [ct_tags(i, thickness=1.0, current=300) for i in range(3)])
    remote = LakeFS("memory://imagelake-test-lake")
    try:
        written = write_snapshot(db, remote, batch_rows=2)
        assert written["instances"] == "memory:///imagelake-test-lake/index/instances.parquet"
        frame = query(remote, {"Modality": "CT", "XRayTubeCurrent": 300})
        assert frame["series_instance_uid"].tolist() == [uid]
        assert frame["store_urls"][0] == [
            f"memory:///imagelake-test-lake/stores/dicom/{uid}-1.zarr"
        ]
        assert len(query(remote, level="instances")) == 3
    finally:
        remote.rm_tree("")


def test_bad_arguments(lake: LakeFS, db: Database) -> None:
    with pytest.raises(ConfigError, match="at least 1"):
        write_snapshot(db, lake, workers=0)


@pytest.mark.postgres
def test_postgres_registry_gives_the_same_index(
    pg_db: Database, indexed: Indexed, tmp_path: Path
) -> None:
    """The same registry content on PostgreSQL (JSON decoded by the driver, aware datetimes,
    REPEATABLE READ) snapshots to the same files as on SQLite."""
    lake = LakeFS(tmp_path / "pg-lake")
    factory = RegistryFactory(pg_db)
    Indexed(lake, pg_db, factory)
    write_snapshot(pg_db, lake, batch_rows=3)
    for name in FILES:
        assert read(lake, name).equals(read(indexed.lake, name)), name
