"""Tests of audit entries: canonical JSON and parsing a log line."""

from __future__ import annotations

import datetime as dt

import pytest

from imagelake.audit import GENESIS, AuditEntry, canonical_json


def test_canonical_json_sorts_keys_without_spaces_and_keeps_unicode() -> None:
    assert canonical_json({"b": 1, "a": ["é", 2], "c": {"z": None, "y": True}}) == (
        '{"a":["é",2],"b":1,"c":{"y":true,"z":null}}'
    )


def test_canonical_json_refuses_nan_and_non_json_values() -> None:
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})
    with pytest.raises(TypeError):
        canonical_json({"x": object()})


def test_entry_from_json_parses_time_and_objects() -> None:
    entry = AuditEntry.from_json(
        {
            "seq": 7,
            "time": "2026-11-03T09:12:44.123456Z",
            "user": "alice",
            "action": "ingest",
            "objects": ["series/1"],
            "details": {"n": 1},
            "prev": GENESIS,
            "hash": "ab" * 32,
        }
    )
    assert entry.seq == 7
    assert entry.time == dt.datetime(2026, 11, 3, 9, 12, 44, 123456, tzinfo=dt.UTC)
    assert entry.objects == ("series/1",)
    assert entry.details == {"n": 1}
