"""The checks of :class:`FormatConformance`, as plain functions raising ``AssertionError``.

The messages never contain patient identity values: comparisons of identity are done
here, not by pytest's assertion rewriting (which would print both sides).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from imagelake.errors import ImagelakeError
from imagelake.formats import (
    PatientIdentity,
    RawContent,
    RawFormat,
    RawFormatError,
    RawMeta,
    formats,
    get_format,
    identify,
)

__all__ = [
    "FormatConformance",
    "check_arrays",
    "check_content",
    "check_corrupt",
    "check_declarations",
    "check_expected_meta",
    "check_identifies",
    "check_missing_file",
    "check_no_phi_leak",
    "check_registered",
    "check_rejects",
    "default_foreign_paths",
]

_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$")
_UID_FIELDS = ("study_instance_uid", "frame_of_reference_uid")
_UID_TUPLES = ("series_instance_uids", "referenced_sop_instance_uids")


def _fail(message: str) -> None:
    raise AssertionError(message)


# -- foreign files ------------------------------------------------------------------------------
def _suffix(fmt: RawFormat) -> str:
    """A file-name suffix the format's patterns accept (``.h5`` for ``*.h5``), or ``.bin``."""
    for pattern in fmt.patterns:
        if pattern.startswith("*.") and not any(c in pattern[2:] for c in "*?["):
            return pattern[1:]
    return ".bin"


def default_foreign_paths(
    folder: str | os.PathLike[str], fmt: RawFormat | None = None
) -> list[Path]:
    """Files no raw format should claim, written into ``folder``.

    A real DICOM file from pydicom's test files (when installed), random bytes, an empty
    file and a plain text file. The last three are named with a suffix the format's own
    patterns accept, so a format that decides by file name alone is caught.
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    suffix = _suffix(fmt) if fmt is not None else ".bin"
    paths: list[Path] = []
    try:
        import pydicom

        dicom = Path(pydicom.__file__).parent / "data" / "test_files" / "CT_small.dcm"
        if dicom.is_file():
            copy = out / "foreign_dicom.dcm"
            copy.write_bytes(dicom.read_bytes())
            paths.append(copy)
    except ImportError:
        pass
    rng = np.random.default_rng(12345)
    random_file = out / f"foreign_random{suffix}"
    random_file.write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    empty = out / f"foreign_empty{suffix}"
    empty.write_bytes(b"")
    text = out / f"foreign_text{suffix}"
    text.write_text("This is a plain text file, not raw scanner data.\n" * 20)
    paths += [random_file, empty, text]
    return paths


# -- checks -------------------------------------------------------------------------------------
def check_registered(name: str) -> RawFormat:
    """``name`` is in :data:`imagelake.formats.formats` and ``get_format`` returns it."""
    if name not in formats:
        _fail(f"format {name!r} is not registered in imagelake.formats.formats")
    fmt = get_format(name)
    if not isinstance(fmt, RawFormat):
        _fail(f"get_format({name!r}) returned {type(fmt).__name__}, not a RawFormat")
    if fmt.name != name:
        _fail(f"get_format({name!r}) returned a format named {fmt.name!r}")
    return fmt


def check_declarations(fmt: RawFormat) -> None:
    """The class declarations have the documented types."""
    if not isinstance(fmt.name, str) or not fmt.name:
        _fail(f"{fmt!r}: name must be a non-empty str")
    if not isinstance(fmt.description, str):
        _fail(f"{fmt!r}: description must be a str")
    if fmt.modality is not None and not isinstance(fmt.modality, str):
        _fail(f"{fmt!r}: modality must be a str or None")
    if not isinstance(fmt.patterns, tuple) or not all(isinstance(p, str) for p in fmt.patterns):
        _fail(f"{fmt!r}: patterns must be a tuple of str, got {fmt.patterns!r}")
    if not isinstance(fmt.magic, tuple):
        _fail(f"{fmt!r}: magic must be a tuple of (offset, bytes)")
    for entry in fmt.magic:
        ok = (
            isinstance(entry, tuple)
            and len(entry) == 2
            and isinstance(entry[0], int)
            and not isinstance(entry[0], bool)
            and entry[0] >= 0
            and isinstance(entry[1], bytes)
            and len(entry[1]) > 0
        )
        if not ok:
            _fail(f"{fmt!r}: magic entry {entry!r} is not (offset: int, bytes)")
    if not isinstance(fmt.priority, int) or isinstance(fmt.priority, bool):
        _fail(f"{fmt!r}: priority must be an int")
    if fmt.extra is not None and not isinstance(fmt.extra, str):
        _fail(f"{fmt!r}: extra must be a str or None")
    if not isinstance(fmt.readable, bool):
        _fail(f"{fmt!r}: readable must be a bool")


def check_identifies(fmt: RawFormat, sample: str | os.PathLike[str]) -> None:
    """``guess_can_open`` accepts the sample and ``identify`` picks this format for it."""
    if not fmt.guess_can_open(sample):
        _fail(f"{fmt!r}.guess_can_open({os.fspath(sample)!r}) is False on its own sample")
    found = identify(sample)
    if found is None or found.name != fmt.name:
        _fail(
            f"identify({os.fspath(sample)!r}) returned {found!r}, not {fmt!r} "
            "(another format with a lower priority claims the file?)"
        )


def check_rejects(fmt: RawFormat, paths: Iterable[str | os.PathLike[str]]) -> None:
    """``guess_can_open`` is False on every foreign file."""
    claimed = [os.fspath(p) for p in paths if fmt.guess_can_open(p)]
    if claimed:
        _fail(f"{fmt!r} claims foreign files: {claimed}")


def _json(value: Any, what: str) -> str:
    try:
        return json.dumps(value, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise AssertionError(f"{what} is not JSON-serialisable: {exc}") from None


def _identity_values(patient: PatientIdentity) -> list[str]:
    return [v for v in (patient.patient_id, patient.name, patient.birth_date) if v and len(v) >= 3]


def check_no_phi_leak(meta: RawMeta) -> None:
    """Neither ``meta.public()`` nor ``repr(meta)``/``repr(meta.patient)`` show identity values."""
    if not isinstance(meta.patient, PatientIdentity):
        _fail(f"meta.patient is a {type(meta.patient).__name__}, not a PatientIdentity")
    public = meta.public()
    if "patient" in public:
        _fail("meta.public() contains the patient identity")
    text = _json(public, "meta.public()")
    values = _identity_values(meta.patient)
    shown_in = {
        "meta.public()": text,
        "repr(meta)": repr(meta),
        "repr(meta.patient)": repr(meta.patient),
        "str(meta.patient)": str(meta.patient),
    }
    for where, shown in shown_in.items():
        if any(value in shown for value in values):
            _fail(f"{where} contains a patient identity value")


def check_content(
    fmt: RawFormat, content: RawContent, sample: str | os.PathLike[str] | None = None
) -> None:
    """``open`` returned a well-formed :class:`RawContent` (format, members, metadata)."""
    if not isinstance(content, RawContent):
        _fail(f"{fmt!r}.open returned {type(content).__name__}, not RawContent")
    if content.format != fmt.name:
        _fail(f"content.format is {content.format!r}, expected {fmt.name!r}")
    members = content.members
    if (
        not isinstance(members, tuple)
        or not members
        or not all(isinstance(m, str) for m in members)
    ):
        _fail(f"content.members must be a non-empty tuple of str, got {members!r}")
    if sample is not None:
        resolved = {os.path.realpath(m) for m in members}
        if os.path.realpath(os.fspath(sample)) not in resolved:
            _fail(f"content.members {members!r} does not include the opened file")
    meta = content.meta
    if not isinstance(meta, RawMeta):
        _fail(f"content.meta is a {type(meta).__name__}, not RawMeta")
    if meta.acquired_at is not None:
        if not isinstance(meta.acquired_at, str) or not _ISO.match(meta.acquired_at):
            _fail(f"meta.acquired_at {meta.acquired_at!r} is not 'YYYY-MM-DDTHH:MM:SS'")
        try:
            datetime.fromisoformat(meta.acquired_at)
        except ValueError:
            _fail(f"meta.acquired_at {meta.acquired_at!r} is not a valid date-time")
    from pydicom.uid import UID

    for name in _UID_FIELDS:
        uid = getattr(meta, name)
        if uid is not None and not UID(uid).is_valid:
            _fail(f"meta.{name} {uid!r} is not a valid DICOM UID")
    for name in _UID_TUPLES:
        uids = getattr(meta, name)
        if not isinstance(uids, tuple):
            _fail(f"meta.{name} must be a tuple, got {type(uids).__name__}")
        bad = [u for u in uids if not isinstance(u, str) or not UID(u).is_valid]
        if bad:
            _fail(f"meta.{name} holds invalid DICOM UIDs: {bad}")
    _json(dict(meta.extra), "meta.extra")
    check_no_phi_leak(meta)
    if not fmt.readable and content.arrays:
        _fail(f"{fmt!r} declares readable=False but returned arrays {list(content.arrays)}")


def check_arrays(content: RawContent) -> dict[str, np.ndarray[Any, Any]]:
    """Every array loads with its declared shape and dtype, twice identically; dims are sane."""
    loaded: dict[str, np.ndarray[Any, Any]] = {}
    for key, arr in content.arrays.items():
        if arr.name != key:
            _fail(f"array stored under {key!r} is named {arr.name!r}")
        dims = arr.dims
        if not all(isinstance(d, str) and d for d in dims):
            _fail(f"array {key!r}: dims {dims!r} must be non-empty strings")
        if len(set(dims)) != len(dims):
            _fail(f"array {key!r}: dims {dims!r} are not unique")
        if len(dims) != len(arr.shape):
            _fail(f"array {key!r}: dims {dims!r} do not match shape {arr.shape}")
        _json(dict(arr.attrs), f"array {key!r} attrs")
        for dim, coord in arr.coords.items():
            if dim not in dims:
                _fail(f"array {key!r}: coordinate {dim!r} is not one of its dims {dims}")
            if np.ndim(coord) != 1 or len(coord) != arr.shape[dims.index(dim)]:
                _fail(f"array {key!r}: coordinate {dim!r} has shape {np.shape(coord)}")
        first = np.asarray(arr.loader())
        if first.shape != tuple(arr.shape) or first.dtype != arr.dtype:
            _fail(
                f"array {key!r} loads as {first.dtype}{list(first.shape)} but declares "
                f"{arr.dtype}{list(arr.shape)}"
            )
        second = arr.load()
        if not np.array_equal(first, second, equal_nan=first.dtype.kind in "fc"):
            _fail(f"array {key!r}: loading twice gives different values")
        loaded[key] = first
    return loaded


def check_expected_meta(meta: RawMeta, expected: Mapping[str, Any]) -> None:
    """Each ``field: value`` of ``expected`` equals the metadata (``extra``: a subset)."""
    for name, want in expected.items():
        if name not in RawMeta.__dataclass_fields__:
            _fail(f"expected_meta names {name!r}, which is not a RawMeta field")
        got = getattr(meta, name)
        if name == "patient":
            if got != want:  # never show identity values
                _fail("meta.patient differs from the expected patient identity")
        elif name == "extra":
            for key, value in dict(want).items():
                if key not in got or got[key] != value:
                    _fail(f"meta.extra[{key!r}] is {got.get(key)!r}, expected {value!r}")
        else:
            if isinstance(want, list):
                want = tuple(want)
            if got != want:
                _fail(f"meta.{name} is {got!r}, expected {want!r}")


def check_corrupt(fmt: RawFormat, path: str | os.PathLike[str]) -> None:
    """Opening a corrupt file raises :class:`RawFormatError` (not a bare library error)."""
    try:
        fmt.open(path)
    except RawFormatError:
        return
    except Exception as exc:  # noqa: BLE001 - any other error is a conformance failure
        _fail(
            f"{fmt!r}.open on corrupt {os.fspath(path)!r} raised {type(exc).__name__}: {exc}, "
            "not RawFormatError"
        )
    _fail(f"{fmt!r}.open on corrupt {os.fspath(path)!r} raised nothing")


def check_missing_file(fmt: RawFormat, folder: str | os.PathLike[str]) -> None:
    """Opening a file that does not exist raises an ImagelakeError or FileNotFoundError."""
    missing = Path(folder) / f"does-not-exist{_suffix(fmt)}"
    try:
        fmt.open(missing)
    except (ImagelakeError, FileNotFoundError):
        return
    except Exception as exc:  # noqa: BLE001 - any other error is a conformance failure
        _fail(f"{fmt!r}.open on a missing file raised {type(exc).__name__}: {exc}")
    _fail(f"{fmt!r}.open on a missing file raised nothing")


# -- the pytest base class ---------------------------------------------------------------------
class FormatConformance:
    """Conformance tests for a raw format plugin: subclass it in a test module.

    Set ``format_name`` and provide a ``sample_path`` fixture (a real file of the format);
    optionally override ``foreign_paths`` (files it must not claim; defaults from
    :func:`default_foreign_paths`), ``corrupt_path`` (must raise ``RawFormatError``;
    the test is skipped when it returns ``None``) and ``expected_meta`` (RawMeta field →
    expected value)::

        class TestMyFormat(FormatConformance):
            format_name = "myvendor"

            @pytest.fixture
            def sample_path(self, tmp_path):
                return write_my_sample(tmp_path / "scan.myv")
    """

    format_name: ClassVar[str]

    @pytest.fixture
    def raw_format(self) -> RawFormat:
        return check_registered(self.format_name)

    @pytest.fixture
    def foreign_paths(self, tmp_path: Path, raw_format: RawFormat) -> Sequence[Path]:
        return default_foreign_paths(tmp_path / "foreign", raw_format)

    @pytest.fixture
    def corrupt_path(self) -> Path | None:
        return None

    @pytest.fixture
    def expected_meta(self) -> Mapping[str, Any]:
        return {}

    @pytest.fixture
    def opened(self, raw_format: RawFormat, sample_path: Path) -> RawContent:
        return raw_format.open(sample_path)

    def test_registered(self) -> None:
        check_registered(self.format_name)

    def test_declarations(self, raw_format: RawFormat) -> None:
        check_declarations(raw_format)

    def test_identifies_sample(self, raw_format: RawFormat, sample_path: Path) -> None:
        check_identifies(raw_format, sample_path)

    def test_rejects_foreign(self, raw_format: RawFormat, foreign_paths: Sequence[Path]) -> None:
        check_rejects(raw_format, foreign_paths)

    def test_content(self, raw_format: RawFormat, opened: RawContent, sample_path: Path) -> None:
        check_content(raw_format, opened, sample_path)

    def test_expected_meta(self, opened: RawContent, expected_meta: Mapping[str, Any]) -> None:
        check_expected_meta(opened.meta, expected_meta)

    def test_arrays(self, opened: RawContent) -> None:
        check_arrays(opened)

    def test_corrupt(self, raw_format: RawFormat, corrupt_path: Path | None) -> None:
        if corrupt_path is None:
            pytest.skip("no corrupt_path fixture given")
        check_corrupt(raw_format, corrupt_path)

    def test_missing_file(self, raw_format: RawFormat, tmp_path: Path) -> None:
        check_missing_file(raw_format, tmp_path)
