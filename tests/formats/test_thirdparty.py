"""A third party's view: register a tiny toy format and run the conformance base on it; and
show the base's checks catch broken plugins."""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from imagelake.formats import (
    PatientIdentity,
    RawArray,
    RawContent,
    RawFormat,
    RawFormatError,
    RawMeta,
    formats,
)
from imagelake.testing import (
    FormatConformance,
    check_arrays,
    check_content,
    check_corrupt,
    check_declarations,
    check_rejects,
    default_foreign_paths,
)

MAGIC = b"TOYRAW01"
HEADER = struct.Struct("<8sII")


def write_toy(path: Path, data: np.ndarray) -> Path:
    rows, cols = data.shape
    path.write_bytes(HEADER.pack(MAGIC, rows, cols) + data.astype("<i2").tobytes())
    return path


class ToyFormat(RawFormat):
    """A third-party plugin: magic, header with the shape, int16 pixels."""

    name = "toy"
    description = "Toy raw format for the conformance tests"
    modality = "OT"
    patterns = ("*.toy",)
    magic: ClassVar[tuple[tuple[int, bytes], ...]] = ((0, MAGIC),)
    priority = 10
    declared_extra_cols = 0  # the broken variant declares a wrong shape

    def open(self, path: str | os.PathLike[str]) -> RawContent:
        p = os.fspath(path)
        with open(p, "rb") as fh:
            head = fh.read(HEADER.size)
        if len(head) < HEADER.size or head[:8] != MAGIC:
            raise RawFormatError(f"{p}: not a toy file (bad magic or short header)")
        _, rows, cols = HEADER.unpack(head)
        if os.path.getsize(p) != HEADER.size + 2 * rows * cols:
            raise RawFormatError(f"{p}: toy file is truncated")

        def load() -> np.ndarray[Any, Any]:
            raw = np.fromfile(p, dtype="<i2", offset=HEADER.size)
            return raw.reshape(rows, cols).astype(np.int16)

        arr = RawArray(
            name="pixels",
            dims=("row", "col"),
            shape=(rows, cols + self.declared_extra_cols),
            dtype=np.dtype(np.int16),
            loader=load,
        )
        meta = RawMeta(
            modality="OT",
            manufacturer="ToyCorp",
            acquired_at="2024-01-02T03:04:05",
            patient=PatientIdentity(patient_id="TOY-PATIENT-9", name="TOY^PERSON"),
        )
        return RawContent(format=self.name, meta=meta, arrays={"pixels": arr}, members=(p,))


class BrokenShapeToy(ToyFormat):
    name = "toy-broken"
    declared_extra_cols = 1


class GreedyToy(ToyFormat):
    """Claims every file by name, ignoring its content."""

    name = "toy-greedy"
    magic = ()


@pytest.fixture
def toy_registered() -> Iterator[None]:
    formats.register("toy", ToyFormat)
    try:
        yield
    finally:
        formats.unregister("toy")


class TestToyConformance(FormatConformance):
    format_name = "toy"

    @pytest.fixture(autouse=True)
    def _register(self, toy_registered: None) -> None:
        return None

    @pytest.fixture
    def sample_path(self, tmp_path: Path) -> Path:
        return write_toy(tmp_path / "a.toy", np.arange(12, dtype=np.int16).reshape(3, 4))

    @pytest.fixture
    def corrupt_path(self, sample_path: Path, tmp_path: Path) -> Path:
        cut = tmp_path / "cut.toy"
        cut.write_bytes(sample_path.read_bytes()[:-3])
        return cut

    @pytest.fixture
    def expected_meta(self) -> dict[str, Any]:
        return {"manufacturer": "ToyCorp", "acquired_at": "2024-01-02T03:04:05"}


def test_base_catches_declared_shape_mismatch(tmp_path: Path) -> None:
    path = write_toy(tmp_path / "b.toy", np.ones((2, 5), np.int16))
    content = BrokenShapeToy().open(path)
    with pytest.raises(
        AssertionError, match=r"'pixels' loads as int16\[2, 5\] but declares int16\[2, 6\]"
    ):
        check_arrays(content)
    check_arrays(ToyFormat().open(path))  # the correct plugin passes the same check


def test_base_catches_a_format_claiming_by_name_only(tmp_path: Path) -> None:
    greedy = GreedyToy()
    foreign = default_foreign_paths(tmp_path, greedy)
    with pytest.raises(AssertionError, match=r"claims foreign files.*foreign_random.toy"):
        check_rejects(greedy, foreign)
    check_rejects(ToyFormat(), foreign)


def test_base_catches_phi_in_public_metadata(tmp_path: Path) -> None:
    path = write_toy(tmp_path / "c.toy", np.ones((2, 2), np.int16))
    good = ToyFormat().open(path)
    check_content(ToyFormat(), good, path)
    leaky_meta = RawMeta(
        patient=good.meta.patient,
        extra={"patient": "TOY^PERSON"},
        acquired_at=good.meta.acquired_at,
    )
    leaky = RawContent(format="toy", meta=leaky_meta, arrays=good.arrays, members=good.members)
    with pytest.raises(AssertionError, match="patient identity value") as info:
        check_content(ToyFormat(), leaky, path)
    assert "TOY^PERSON" not in str(info.value)


def test_base_catches_bad_declarations_and_bare_errors(tmp_path: Path) -> None:
    class BadDecl(ToyFormat):
        name = "toy-bad"
        patterns = ["*.toy"]  # type: ignore[assignment]  # noqa: RUF012 - a list, on purpose

    with pytest.raises(AssertionError, match="patterns must be a tuple"):
        check_declarations(BadDecl())

    class BareError(ToyFormat):
        name = "toy-bare"

        def open(self, path: str | os.PathLike[str]) -> RawContent:
            raise struct.error("unpack requires a buffer of 16 bytes")

    cut = tmp_path / "x.toy"
    cut.write_bytes(MAGIC)
    check_corrupt(ToyFormat(), cut)
    with pytest.raises(AssertionError, match=r"raised error.*not RawFormatError"):
        check_corrupt(BareError(), cut)
