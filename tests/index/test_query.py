"""Queries over a real index: every filter form, both levels, errors, the reader's cache."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
from index_factory import Indexed, ct_tags

import imagelake.index
from imagelake._fs import LakeFS
from imagelake.errors import QueryError
from imagelake.index import IndexReader, parse_filters, query, write_snapshot

ALL = ["S1", "S2", "S3", "S4", "S5"]


def names(data: Indexed, filters: dict[str, Any]) -> list[str]:
    return data.names(query(data.lake, filters))


def test_no_filter_returns_every_series(indexed: Indexed) -> None:
    assert names(indexed, {}) == ["S1", "S2", "S3", "S4", "S5"]
    assert names(indexed, None) == names(indexed, {})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"Modality": "CT"}, ["S1", "S2", "S4"]),
        ({"modality": "ct"}, ["S1", "S2", "S4"]),  # column name; values case-insensitive
        ({"Manufacturer": "SIEM*"}, ["S1", "S4", "S5"]),
        ({"Manufacturer": "s?emens"}, ["S1", "S4"]),
        ({"Manufacturer": "*MEDICAL*"}, ["S2"]),
        ({"ManufacturerModelName": "SOMATOM Force"}, ["S1"]),
        ({"ConvolutionKernel": "br40*"}, ["S1"]),
        ({"Modality": ["MR", "SR"]}, ["S3", "S5"]),
        ({"Modality": {"MR", "SR"}}, ["S3", "S5"]),
        ({"Manufacturer": ["GE*", "philips"]}, ["S2", "S3"]),
        ({"SliceThickness": 1.0}, ["S1"]),
        ({"SliceThickness": [0.5, 5]}, ["S2", "S4"]),
        ({"SliceThickness": (0.5, 1.5)}, ["S1", "S4"]),
        ({"SliceThickness": (None, 1.0)}, ["S1", "S4"]),
        ({"SliceThickness": (3, None)}, ["S2", "S3"]),
        ({"SliceThickness": "0.5:1.5"}, ["S1", "S4"]),
        ({"SliceThickness": ":0.75"}, ["S4"]),
        ({"SliceThickness": "2:"}, ["S2", "S3"]),
        ({"SliceThickness": "1.0"}, ["S1"]),  # a numeric string on a numeric column
        ({"KVP": 120}, ["S1"]),
        ({"EchoTime": (50, 100), "RepetitionTime": 4000}, ["S3"]),
        ({"StudyDate": "20230101-20231231"}, ["S2"]),
        ({"StudyDate": "20240101-"}, ["S1", "S4"]),
        ({"StudyDate": "-20221231"}, ["S3", "S5"]),
        ({"StudyDate": ("20230101", "20240101")}, ["S1", "S2"]),
        ({"StudyDate": (dt.date(2024, 1, 1), None)}, ["S1", "S4"]),
        ({"StudyDate": dt.date(2022, 12, 1)}, ["S3"]),
        ({"PatientID": "P1"}, ["S1", "S4"]),
        ({"PatientID": 7}, ["S2"]),  # a number against text compares the number: "007"
        ({"Modality": "CT", "Manufacturer": "SIEMENS", "SliceThickness": (0, 0.6)}, ["S4"]),
        ({"Modality": lambda s: s.isin(["MR", "SR"])}, ["S3", "S5"]),
        ({"manufacturer": lambda s: s.str.startswith("GE")}, ["S2"]),
        ({"n_instances": 0}, ["S5"]),
        ({"n_stacks": (2, None)}, ["S1"]),
        ({"created_at": (dt.datetime(2026, 1, 1, tzinfo=dt.UTC), None)}, ALL),
        ({"created_at": ("2026-01-03", None)}, []),
    ],
)
def test_series_level_filters(indexed: Indexed, filters: dict, expected: list[str]) -> None:
    assert names(indexed, filters) == expected


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        # a tag only instances carry: series with at least one matching instance
        ({"XRayTubeCurrent": (305, 355)}, ["S1", "S2"]),
        ({"XRayTubeCurrent": "305:355"}, ["S1", "S2"]),
        ({"XRayTubeCurrent": [100, 500]}, ["S1", "S4"]),
        ({"Modality": "CT", "SliceThickness": (0.5, 1.5), "XRayTubeCurrent": (450, None)}, ["S4"]),
        # several instance filters must hold for the same instance
        ({"XRayTubeCurrent": (450, None), "SliceLocation": 0.0}, []),
        ({"XRayTubeCurrent": (450, None), "SliceLocation": 0.5}, ["S4"]),
        # multi-valued text: whole value, or any one of its values
        ({"ImageType": "LOCALIZER"}, ["S3"]),
        ({"ImageType": "original\\primary\\axial"}, ["S1", "S2", "S4"]),
        ({"ImageType": "DERIVED"}, ["S1"]),
        ({"ImageType": "*LOCAL*"}, ["S3"]),
        ({"WindowCenter": "400"}, ["S2"]),
        ({"WindowCenter": 40}, ["S2"]),  # numeric on the text column: "40" but not "40\400"
        ({"EchoNumbers": 2}, ["S3"]),
        # SequenceName is the series' sequence_name (unset here); instances.* picks the tag
        ({"SequenceName": "*tse2d1_15"}, []),
        ({"instances.SequenceName": "*tse2d1_15"}, ["S3"]),
        ({"instances.SequenceName": "\\*tse*"}, []),  # with a backslash: whole value only
        # private tags, in any spelling
        ({"0019100C": 42}, ["S1", "S2", "S4"]),
        ({"(0019,100c)": 42}, ["S1", "S2", "S4"]),
        # DICOM date-time range: the upper date includes that day's times
        ({"AcquisitionDateTime": "20240101-20240101"}, ["S1", "S2", "S4"]),
        ({"AcquisitionDateTime": "-20231231"}, []),
        # explicit level: the tag rather than the series column
        ({"instances.SliceThickness": 5}, ["S2"]),
        ({"series.slice_thickness": 5}, ["S2"]),
        ({"sliceThickness": 5}, ["S2"]),  # case-insensitive field name
        ({"XRayTubeCurrent": lambda s: s % 2 == 1}, []),
        ({"XRayTubeCurrent": lambda s: s == 310}, ["S1"]),
    ],
)
def test_instance_level_filters(indexed: Indexed, filters: dict, expected: list[str]) -> None:
    assert names(indexed, filters) == expected


def test_series_rows_carry_store_paths_and_urls(indexed: Indexed) -> None:
    frame = query(indexed.lake, {"SeriesInstanceUID": indexed.uids["S1"]})
    assert len(frame) == 1
    row = frame.iloc[0]
    uid = indexed.uids["S1"]
    assert row["stores"] == [f"stores/dicom/{uid}-1.zarr", f"stores/dicom/{uid}-2.zarr"]
    assert row["store_urls"] == [indexed.lake.url(p) for p in row["stores"]]
    assert row["store_urls"][0].startswith(indexed.lake.root)
    assert row["n_instances"] == 4
    assert row["slice_thickness"] == 1.0
    assert list(frame.columns)[-1] == "store_urls"


def test_series_columns_accept_keywords(indexed: Indexed) -> None:
    frame = query(
        indexed.lake, {"Modality": "MR"}, columns=["SeriesInstanceUID", "EchoTime", "store_urls"]
    )
    assert list(frame.columns) == ["series_instance_uid", "echo_time", "store_urls"]
    assert frame["echo_time"].tolist() == [90.0]


def test_instance_level_rows(indexed: Indexed) -> None:
    frame = query(
        indexed.lake,
        {"Modality": "CT", "XRayTubeCurrent": (300, 355)},
        level="instances",
        columns=["sop_instance_uid", "series_instance_uid", "XRayTubeCurrent", "stack_path"],
    )
    assert frame["XRayTubeCurrent"].tolist() == [300, 310, 320, 350]
    assert list(frame.columns) == [
        "sop_instance_uid",
        "series_instance_uid",
        "XRayTubeCurrent",
        "stack_path",
        "stack_url",
    ]
    assert all(
        u == indexed.lake.url(p) for u, p in zip(frame.stack_url, frame.stack_path, strict=True)
    )
    everything = query(indexed.lake, level="instances")
    assert len(everything) == 4 + 2 + 2 + 2
    assert "Modality" in everything.columns and "instance_id" in everything.columns
    none = query(indexed.lake, {"Modality": "XX"}, level="instances")
    assert len(none) == 0 and "XRayTubeCurrent" in none.columns


def test_instance_level_with_only_series_filters(indexed: Indexed) -> None:
    frame = query(indexed.lake, {"Modality": "MR"}, level="instances", columns=["EchoNumbers"])
    assert frame["EchoNumbers"].tolist() == [1, 2]


def test_unknown_field_names_it_and_suggests(indexed: Indexed) -> None:
    with pytest.raises(QueryError) as err:
        query(indexed.lake, {"SliceThikness": 1})
    message = str(err.value)
    assert "'SliceThikness'" in message
    assert "did you mean" in message and "SliceThickness" in message
    assert "modality" in message and "Modality" in message  # valid examples
    with pytest.raises(QueryError, match="XRayTubeCurent"):
        query(indexed.lake, {"XRayTubeCurent": 1})
    with pytest.raises(QueryError, match="unknown series field 'XRayTubeCurrent'"):
        query(indexed.lake, {"series.XRayTubeCurrent": 1})
    with pytest.raises(QueryError, match="nonsense"):
        query(indexed.lake, columns=["nonsense"])


@pytest.mark.parametrize(
    ("filters", "match"),
    [
        ({"SliceThickness": (1, 2, 3)}, "range is a tuple"),
        ({"SliceThickness": "thick"}, "not a number"),
        ({"SliceThickness": ("a", "b")}, "not numeric"),
        ({"Modality": lambda s: [True]}, "returned 1 values"),
    ],
)
def test_malformed_values(indexed: Indexed, filters: dict, match: str) -> None:
    with pytest.raises(QueryError, match=match):
        query(indexed.lake, filters)


def test_bad_level(indexed: Indexed) -> None:
    with pytest.raises(QueryError, match="level must be one of series, instances"):
        query(indexed.lake, level="study")  # type: ignore[arg-type]


def test_a_lake_without_index(tmp_path: Path) -> None:
    lake = LakeFS(tmp_path)
    with pytest.raises(QueryError, match=r"no index.*write_snapshot"):
        query(lake, {"Modality": "CT"})


def test_reader_sees_a_new_snapshot(fresh_indexed: Indexed) -> None:
    indexed = fresh_indexed
    reader = IndexReader(indexed.lake)
    assert len(reader.query({"Modality": "CT"})) == 3
    f = indexed.factory
    study, _ = f.study("P9", study_date="20250101")
    sid, _, stacks = f.series(study, modality="CT", params={"slice_thickness": 2.0})
    f.instances(sid, stacks[0], [ct_tags(0, thickness=2.0, current=999)])
    write_snapshot(indexed.db, indexed.lake)
    assert len(reader.query({"Modality": "CT"})) == 4
    assert len(reader.query({"XRayTubeCurrent": 999})) == 1
    assert len(query(indexed.lake, {"XRayTubeCurrent": 999})) == 1


def test_parse_filters() -> None:
    assert parse_filters(
        [
            "Modality=CT",
            "SliceThickness=0.5:1.5",
            "Manufacturer=SIEM*",
            "KVP=120",
            "EchoTime=2.5",
            "StudyDate=20200101-20201231",
            "SeriesDate=20200101-",
            "XRayTubeCurrent=:300",
            "ImageType=ORIGINAL,LOCALIZER",
            "SeriesDescription= T1 axial",
        ]
    ) == {
        "Modality": "CT",
        "SliceThickness": (0.5, 1.5),
        "Manufacturer": "SIEM*",
        "KVP": 120,
        "EchoTime": 2.5,
        "StudyDate": ("20200101", "20201231"),
        "SeriesDate": ("20200101", None),
        "XRayTubeCurrent": (None, 300),
        "ImageType": ["ORIGINAL", "LOCALIZER"],
        "SeriesDescription": " T1 axial",
    }
    with pytest.raises(QueryError, match="'Modality' is not FIELD=VALUE"):
        parse_filters(["Modality"])
    with pytest.raises(QueryError, match="given twice"):
        parse_filters(["Modality=CT", "Modality=MR"])


def test_parsed_filters_query_like_python_values(indexed: Indexed) -> None:
    parsed = parse_filters(["Modality=CT", "SliceThickness=0.5:1.5", "Manufacturer=SIEM*"])
    assert names(indexed, parsed) == ["S1", "S4"]


def test_public_api_matches_all() -> None:
    public = {n for n in dir(imagelake.index) if not n.startswith("_")}
    assert public == set(imagelake.index.__all__)


LEVELS = ("series", "instances")
PRUNING_CASES: list[dict[str, Any]] = [
    {},
    {"Modality": "CT"},
    {"XRayTubeCurrent": (305, 355)},
    {"XRayTubeCurrent": [100, 500]},
    {"XRayTubeCurrent": 200},
    {"Modality": "CT", "SliceThickness": (0.5, 1.5), "XRayTubeCurrent": (450, None)},
    {"XRayTubeCurrent": (450, None), "SliceLocation": 0.5},
    {"EchoNumbers": 2},
    {"ImageType": "LOCALIZER"},
    {"Manufacturer": "SIEM*", "ImageType": "*AXIAL*"},
    {"WindowCenter": 40},
    {"PatientID": "P1", "XRayTubeCurrent": (None, 310)},
]


def test_row_groups_pruning_and_cache_change_no_answer(fresh_indexed: Indexed) -> None:
    """Many small row groups (pruned by statistics), with and without the column cache,
    answer exactly as one row group read whole."""
    data = fresh_indexed
    whole = [query(data.lake, f, level=level) for f in PRUNING_CASES for level in LEVELS]
    write_snapshot(data.db, data.lake, row_group_rows=2, batch_rows=3)
    assert pq.ParquetFile(data.lake.path("index/instances.parquet")).num_row_groups == 5
    uncached, cached = IndexReader(data.lake, cache_bytes=0), IndexReader(data.lake)
    # the cached reader answers the second round from its cache
    for reader in (uncached, cached, cached):
        got = [reader.query(f, level=level) for f in PRUNING_CASES for level in LEVELS]
        for expected, answer in zip(whole, got, strict=True):
            pd.testing.assert_frame_equal(answer, expected)
