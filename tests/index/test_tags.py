"""Tag values → typed Arrow columns, per batch and across batches."""

from __future__ import annotations

import pyarrow as pa
import pytest

from imagelake.index._tags import column, conform, tag_columns, unify_type


@pytest.mark.parametrize(
    ("values", "kind", "expected"),
    [
        ([1, 2, None], pa.int64(), [1, 2, None]),
        ([1, 2.5, None], pa.float64(), [1.0, 2.5, None]),
        (["CT", None], pa.string(), ["CT", None]),
        ([None, None], pa.null(), [None, None]),
        # multi-valued: DICOM's backslash, numbers formatted by Arrow (1.0 → "1")
        ([[1.0, 0.5], ["A", "B"]], pa.string(), ["1\\0.5", "A\\B"]),
        ([[-100.0, 2.25, 1e-7]], pa.string(), ["-100\\2.25\\1e-7"]),
        # an empty list has no value; a missing item is an empty component
        ([[], [1, None, 3]], pa.string(), [None, "1\\\\3"]),
        # mixed kinds fall back to text, formatted exactly like the fast path
        ([40, [40, 400], 40.5, "n/a", 1.0], pa.string(), ["40", "40\\400", "40.5", "n/a", "1"]),
        ([2**70, 1], pa.string(), [str(2**70), "1"]),
        ([True, 0.5], pa.string(), ["1", "0.5"]),
        ([{"a": 1}, [[1, 2]]], pa.string(), ['{"a": 1}', "[1, 2]"]),
    ],
)
def test_column_types_and_text(values: list, kind: pa.DataType, expected: list) -> None:
    arr = column(values)
    assert arr.type == kind
    assert arr.to_pylist() == expected


def test_tag_columns_fill_missing_tags_with_null() -> None:
    cols = tag_columns([{"Modality": "CT", "KVP": 120}, {"Modality": "MR", "EchoTime": 2.5}])
    assert sorted(cols) == ["EchoTime", "KVP", "Modality"]
    assert cols["KVP"].to_pylist() == [120, None]
    assert cols["EchoTime"].to_pylist() == [None, 2.5]


@pytest.mark.parametrize(
    ("types", "expected"),
    [
        ([pa.int64(), pa.null()], pa.int64()),
        ([pa.int64(), pa.float64()], pa.float64()),
        ([pa.float64(), pa.string()], pa.string()),
        ([pa.null()], pa.string()),
    ],
)
def test_unify_type(types: list[pa.DataType], expected: pa.DataType) -> None:
    assert unify_type(types) == expected


def test_a_number_reads_the_same_whichever_batch_it_came_from() -> None:
    # batch 1 was all numbers, batch 2 had text: the unified column is text, and batch 1's
    # numbers must read as the text path would have written them
    numeric = column([1.0, 0.5, 1e-7, 12])
    text = column([1.0, 0.5, 1e-7, 12, "x"])
    assert conform(numeric, pa.string()).to_pylist() == text.to_pylist()[:4]
