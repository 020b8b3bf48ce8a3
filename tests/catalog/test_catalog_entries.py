"""imagelake.catalog's plain-data side: keys, paths, metadata, and the public API."""

from __future__ import annotations

import re
import types

import numpy as np
import pytest

import imagelake.catalog
from imagelake.catalog import (
    KEY_PATTERN,
    STACK_TEMPLATE_KEY,
    CatalogError,
    StackEntry,
    TableEntry,
    build_catalog,
    make_stack_key,
)
from imagelake.catalog._entries import check_key, check_relative_path, jsonable
from imagelake.errors import ImagelakeError

STORE = "stores/dicom/1.2.3.4-s0-ab12cd34.zarr"


def test_public_api_matches_all() -> None:
    public = {
        name
        for name, value in vars(imagelake.catalog).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public - {"annotations"} == set(imagelake.catalog.__all__)


@pytest.mark.parametrize(
    ("uid", "index", "modality", "key"),
    [
        ("1.2.840.10008.9", 0, "CT", "ct_1_2_840_10008_9_s0"),
        ("1.2.840.10008.9", 3, "MR", "mr_1_2_840_10008_9_s3"),
        ("1.2.840.10008.9", 1, None, "stack_1_2_840_10008_9_s1"),
        ("1.2.840.10008.9", 0, "", "stack_1_2_840_10008_9_s0"),
        ("2.25.1234", 0, "RTSTRUCT", "rtstruct_2_25_1234_s0"),
        ("1.2.3", 0, "  ct ", "ct_1_2_3_s0"),
    ],
)
def test_make_stack_key(uid: str, index: int, modality: str | None, key: str) -> None:
    assert make_stack_key(uid, index, modality) == key
    assert KEY_PATTERN.match(key)


def test_stack_keys_of_distinct_uids_differ() -> None:
    uids = ["1.2.3.45", "1.2.34.5", "1.23.4.5", "12.3.4.5", "1.2.3.4.5"]
    assert len({make_stack_key(u, 0, "CT") for u in uids}) == len(uids)


def test_make_stack_key_needs_a_uid() -> None:
    with pytest.raises(CatalogError, match="SeriesInstanceUID"):
        make_stack_key("", 0, "CT")


@pytest.mark.parametrize(
    "key", ["CT_1", "1_ct", "ct-1", "ct.1", "", "class", "data", "entries", "search", "stack"]
)
def test_check_key_rejects(key: str) -> None:
    reserved = frozenset({"data", "entries", "search", "stack"})
    with pytest.raises(CatalogError):
        check_key(key, reserved=reserved)


def test_catalog_error_is_a_value_error_and_an_imagelake_error() -> None:
    with pytest.raises(ValueError) as info:
        check_key("Bad")
    assert isinstance(info.value, ImagelakeError)
    assert "make_stack_key" in str(info.value)


@pytest.mark.parametrize(
    "path",
    [
        "",
        "/abs/store.zarr",
        "../outside.zarr",
        "stores/../../x.zarr",
        "stores//x.zarr",
        "stores/x.zarr/",
        "./stores/x.zarr",
        "stores/a b.zarr",
        "stores/{CATALOG_DIR}.zarr",
        "stores/x(1).zarr",
        "s3://bucket/x.zarr",
        "stores/*.zarr",
        "stores/x%20.zarr",
        "stores/x#1.zarr",
    ],
)
def test_check_relative_path_rejects(path: str) -> None:
    with pytest.raises(CatalogError, match="relative to the lake root"):
        check_relative_path(path)


@pytest.mark.parametrize(
    "path", [STORE, "index/series.parquet", "index/instances/modality=CT", "raw/ab+cd@1,2.zarr"]
)
def test_check_relative_path_accepts(path: str) -> None:
    assert check_relative_path(path) == path


def test_jsonable_turns_tuples_and_numpy_into_plain_values() -> None:
    meta = {
        "shape": (np.int64(3), 4, 5),
        "spacing": np.array([0.5, 0.5]),
        "kvp": np.float32(120.0),
        "tags": {"b", "a"},
        "nested": {"dims": ("slice", "y", "x")},
    }
    assert jsonable(meta, where="test") == {
        "shape": [3, 4, 5],
        "spacing": [0.5, 0.5],
        "kvp": 120.0,
        "tags": ["a", "b"],
        "nested": {"dims": ["slice", "y", "x"]},
    }


def test_jsonable_rejects_objects() -> None:
    with pytest.raises(CatalogError, match=r"stack 'x'.*JSON-able"):
        jsonable({"when": object()}, where="stack 'x'")


def test_jsonable_defuses_intake_data_references() -> None:
    # Intake would replace these by the data set they seem to name.
    out = jsonable({"a": "data(raw)", "b": "{data(x)}", "c": "my data(raw)"}, where="t")
    assert out == {"a": " data(raw)", "b": " {data(x)}", "c": "my data(raw)"}


def _stack(key: str, path: str = STORE, **meta: object) -> StackEntry:
    return StackEntry(key=key, store_path=path, description="", metadata=meta)


@pytest.mark.parametrize(
    ("stacks", "tables", "message"),
    [
        ([_stack("ct_a"), _stack("ct_a", "stores/b.zarr")], [], "used twice"),
        ([_stack("ct_a"), _stack("ct_b")], [], "listed twice"),
        ([_stack(STACK_TEMPLATE_KEY)], [], "reserved"),
        ([_stack("aliases")], [], "reserved"),
        ([_stack("Bad-Key")], [], "identifier"),
        ([_stack("ct_a", "../x.zarr")], [], "relative"),
        ([_stack("ct_a", when=object())], [], "JSON-able"),
        ([_stack("series")], [TableEntry("series", "index/series.parquet")], "used twice"),
        (
            [],
            [TableEntry("series", "index/s.parquet"), TableEntry("x", "index/s.parquet")],
            "twice",
        ),
        ([], [TableEntry("series", "stack_template")], "twice"),
    ],
)
def test_build_catalog_rejects_bad_input(
    stacks: list[StackEntry], tables: list[TableEntry], message: str
) -> None:
    with pytest.raises(CatalogError, match=re.compile(message, re.IGNORECASE)):
        build_catalog(stacks, tables, lake_url="/tmp/lake")
