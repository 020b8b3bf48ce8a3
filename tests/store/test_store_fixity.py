"""Fixity: ``Lake.verify`` finds a changed chunk, a deleted object, an extra object."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from imagelake.lake import Lake, open_lake
from imagelake.store import verify_store


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lake with one SYNTHETIC CT stack, never modified (tests work on copies)."""
    from imagelake import synthetic

    base = tmp_path_factory.mktemp("fixity")
    synthetic.write_series(synthetic.ct_series(8, 32, 32), base / "in")
    lake = open_lake(base / "lake", create=True)
    lake.ingest(base / "in", workers=1)
    return base / "lake"


@pytest.fixture
def lake_copy(pristine: Path, tmp_path: Path) -> tuple[Lake, Path]:
    """A fresh copy of the pristine lake, and its only store's folder."""
    root = tmp_path / "lake"
    shutil.copytree(pristine, root)
    lake = open_lake(root)
    (store,) = lake.stacks().store_path
    return lake, root / store


def only_problem(lake: Lake) -> tuple[str, str]:
    problems = lake.verify()
    assert len(problems) == 1, [str(p) for p in problems]
    return problems[0].object, problems[0].problem


def test_intact_lake_has_no_problem(lake_copy: tuple[Lake, Path]) -> None:
    lake, store = lake_copy
    assert lake.verify() == []
    assert json.loads((store / "manifest.json").read_text())["objects"]  # something to check


def test_changed_chunk_is_found(lake_copy: tuple[Lake, Path]) -> None:
    lake, store = lake_copy
    chunk = store / "image" / "c" / "0" / "0" / "0"
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit
    chunk.write_bytes(bytes(data))
    assert only_problem(lake) == ("image/c/0/0/0", "changed")


def test_deleted_object_is_found(lake_copy: tuple[Lake, Path]) -> None:
    lake, store = lake_copy
    (store / "headers" / "dicom" / "c" / "0").unlink()
    assert only_problem(lake) == ("headers/dicom/c/0", "missing")


def test_extra_object_is_found(lake_copy: tuple[Lake, Path]) -> None:
    lake, store = lake_copy
    (store / "image" / "c" / "9").mkdir()
    (store / "image" / "c" / "9" / "0").write_bytes(b"planted")
    assert only_problem(lake) == ("image/c/9/0", "unexpected")


def test_edited_manifest_is_found(lake_copy: tuple[Lake, Path]) -> None:
    lake, store = lake_copy
    manifest = store / "manifest.json"
    body = json.loads(manifest.read_text())
    body["objects"]["image/c/0/0/0"]["sha256"] = "0" * 64  # hide a change
    manifest.write_text(json.dumps(body))
    problems = {(p.object, p.problem) for p in lake.verify()}
    assert ("manifest.json", "manifest changed") in problems


def test_missing_manifest_is_found(lake_copy: tuple[Lake, Path]) -> None:
    lake, store = lake_copy
    (store / "manifest.json").unlink()
    assert only_problem(lake) == ("manifest.json", "manifest missing")


def test_verify_store_checks_one_store(lake_copy: tuple[Lake, Path]) -> None:
    lake, store = lake_copy
    rel = store.relative_to(lake.fs.root).as_posix()
    assert verify_store(lake.fs, rel) == []
    (store / "z" / "c" / "0").write_bytes(b"\x00" * 8)
    assert [(p.object, p.problem) for p in verify_store(lake.fs, rel)] == [("z/c/0", "changed")]
