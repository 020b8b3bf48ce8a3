"""Filter values: what each form means, evaluated on Arrow columns.

A value is

* a scalar — equality; a string matches case-insensitively, ``*`` and ``?`` are DICOM
  wildcards, and a multi-valued string (``ORIGINAL\\PRIMARY\\AXIAL``) matches when the whole
  or any one of its values does; a number compared with a text column compares the text's
  numeric value (``PatientID=7`` matches ``"007"``);
* a list or set — any of its items;
* a tuple ``(lo, hi)`` — an inclusive range, ``None`` for an open end; numbers compare as
  numbers, strings as text (dates ``YYYYMMDD``), where the upper bound includes every value
  it is a prefix of (``"20201231"`` includes ``"20201231235959"``);
* a string range: ``"0.5:1.5"`` (numbers, either end may be empty) or the DICOM date range
  ``"20200101-20201231"`` (``"20200101-"``, ``"-20201231"``);
* a callable — given the column as a :class:`pandas.Series`, it returns a boolean mask of the
  same length (evaluate element by element: other conditions may narrow the rows first).

Nulls never match (except through a callable).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from imagelake.errors import QueryError
from imagelake.index._layout import MULTI_VALUE_SEPARATOR

__all__ = ["Condition", "parse_filters", "parse_value"]

Array: TypeAlias = "pa.Array | pa.ChunkedArray"

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_NUMBER_RE = re.compile(rf"^\s*{_NUMBER}\s*$")
_NUMERIC_RANGE = re.compile(rf"^\s*({_NUMBER})?\s*:\s*({_NUMBER})?\s*$")
_DATE_RANGE = re.compile(r"^\s*(\d{8}[\d.]*)?\s*-\s*(\d{8}[\d.]*)?\s*$")
_REGEX_SPECIAL = set(".^$|?*+()[]{}\\")


@dataclass(frozen=True)
class Range:
    """An inclusive range; ``None`` is an open end."""

    lo: Any
    hi: Any


def parse_number(text: str) -> int | float:
    """``"12"`` → 12, ``"0.5"`` → 0.5; raises ValueError when ``text`` is not a number."""
    if not _NUMBER_RE.match(text):
        raise ValueError(text)
    stripped = text.strip()
    try:
        return int(stripped)
    except ValueError:
        return float(stripped)


def parse_value(text: str) -> Any:
    """A command-line value as :func:`query` understands it (see :func:`parse_filters`)."""
    m = _NUMERIC_RANGE.match(text)
    if m and (m.group(1) or m.group(2)):
        lo, hi = m.group(1), m.group(2)
        return (None if lo is None else parse_number(lo), None if hi is None else parse_number(hi))
    m = _DATE_RANGE.match(text)
    if m and (m.group(1) or m.group(2)):
        return (m.group(1), m.group(2))
    try:
        return parse_number(text)
    except ValueError:
        return text


def parse_filters(items: Iterable[str]) -> dict[str, Any]:
    """Filters from ``FIELD=VALUE`` strings, as given on the command line.

    Parameters
    ----------
    items
        e.g. ``["Modality=CT", "SliceThickness=0.5:1.5", "Manufacturer=SIEM*"]``.
        A value with commas is a list (any of); ``lo:hi`` is a numeric range and
        ``YYYYMMDD-YYYYMMDD`` a date range (either end may be empty); a number becomes an
        ``int`` or ``float``; anything else stays text (wildcards ``*`` ``?`` included).

    Returns
    -------
    dict
        Field → value, ready for :func:`imagelake.index.query`.

    Raises
    ------
    QueryError
        An item without ``=``, or a field given twice.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise QueryError(
                f"filter {item!r} is not FIELD=VALUE (e.g. Modality=CT, SliceThickness=0.5:1.5)"
            )
        if key in out:
            raise QueryError(
                f"field {key!r} is given twice; for any of several values write {key}=A,B"
            )
        parts = text.split(",")
        out[key] = parse_value(text) if len(parts) == 1 else [parse_value(p) for p in parts]
    return out


@dataclass(frozen=True)
class Condition:
    """One filter resolved to a column of an index file."""

    field: str
    column: str
    level: str
    value: Any

    def mask(self, column: Array) -> Array:
        """Boolean mask of the rows of ``column`` that satisfy the condition (no nulls)."""
        if not callable(self.value):
            # a row's answer depends on its value alone: decide once per distinct value
            if isinstance(column, pa.ChunkedArray) and pa.types.is_dictionary(column.type):
                chunks = [self.mask(chunk) for chunk in column.chunks]
                return pa.chunked_array(chunks, pa.bool_())
            if isinstance(column, pa.DictionaryArray):
                return pc.fill_null(pc.take(self.mask(column.dictionary), column.indices), False)
        try:
            out = _mask(column, self.value)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, TypeError) as exc:
            raise QueryError(
                f"cannot apply {self.field}={self.value!r} to column {self.column!r} "
                f"of type {column.type}: {exc}"
            ) from exc
        return pc.fill_null(out, False)

    def bounds(self, kind: pa.DataType) -> tuple[Any, Any] | None:
        """``(lo, hi)`` every matching value of a numeric column lies in (None: unbounded).

        Used to skip Parquet row groups by their statistics; None when the condition
        gives no such bound (text, callables, non-numeric values).
        """
        if not _is_numeric_type(kind):
            return None
        value = _shape(self.value)
        if isinstance(value, Range) and _all_numbers((value.lo, value.hi)):
            return (value.lo, value.hi)
        if _is_number(value):
            return (value, value)
        if isinstance(value, list) and value and _all_numbers(value, allow_none=False):
            return (min(value), max(value))
        return None


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float | np.number) and not isinstance(x, bool)


def _all_numbers(xs: Iterable[Any], *, allow_none: bool = True) -> bool:
    return all((x is None and allow_none) or _is_number(x) for x in xs)


def _shape(value: Any) -> Any:
    """The value's form: Range, list (any of), callable, or a scalar."""
    if callable(value):
        return value
    if isinstance(value, tuple):
        if len(value) != 2:
            raise QueryError(f"a range is a tuple (lo, hi), got {len(value)} items: {value!r}")
        return Range(*value)
    if isinstance(value, list | set | frozenset):
        return sorted(value, key=repr) if not isinstance(value, list) else value
    if isinstance(value, str):
        parsed = parse_value(value)
        if isinstance(parsed, tuple):
            return Range(*parsed)
    return value


def _mask(column: Array, value: Any) -> Array:
    value = _shape(value)
    if callable(value):
        return _call(column, value)
    if isinstance(value, list):
        if not value:
            return pa.array(np.zeros(len(column), dtype=bool))
        kind = column.type
        if _all_numbers(value, allow_none=False) and _is_numeric_type(kind):
            return pc.is_in(column, pa.array(value))
        result = _mask(column, value[0])
        for item in value[1:]:
            result = pc.or_(result, _mask(column, item))
        return result
    if isinstance(value, Range):
        return _range(column, value)
    return _equal(column, value)


def _is_numeric_type(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind)


def _is_text_type(kind: pa.DataType) -> bool:
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _call(column: Array, fn: Callable[[pd.Series], Any]) -> Array:
    result = fn(_plain(column).to_pandas())
    if isinstance(result, pa.ChunkedArray | pa.Array):
        return result
    series = pd.Series(result)
    if len(series) != len(column):
        raise QueryError(
            f"a filter function returned {len(series)} values for a column of {len(column)} rows"
        )
    return pa.array(series.fillna(False).astype(bool).to_numpy())


def _equal(column: Array, value: Any) -> Array:
    kind = column.type
    if isinstance(value, str) and _is_text_type(kind):
        return _match_text(column, value)
    if isinstance(value, str) and _is_numeric_type(kind):
        if "*" in value or "?" in value:
            return _match_text(pc.cast(column, pa.string()), value)
        try:
            value = parse_number(value)
        except ValueError:
            raise QueryError(f"{value!r} is not a number, and the column is numeric") from None
    if _is_number(value) and _is_text_type(kind):
        return pc.equal(_numeric_view(column), value)
    if pa.types.is_timestamp(kind):
        return pc.equal(column, _timestamp(value, kind))
    if isinstance(value, dt.date) and _is_text_type(kind):
        return _match_text(column, value.strftime("%Y%m%d"))
    return pc.equal(column, value)


def _range(column: Array, value: Range) -> Array:
    kind = column.type
    lo, hi = value.lo, value.hi
    if pa.types.is_timestamp(kind):
        lo = None if lo is None else _timestamp(lo, kind)
        hi = None if hi is None else _timestamp(hi, kind)
    else:
        lo, hi = (x.strftime("%Y%m%d") if isinstance(x, dt.date) else x for x in (lo, hi))
    numeric = _all_numbers((lo, hi)) and (lo is not None or hi is not None)
    if _is_numeric_type(kind):
        try:
            lo, hi = (parse_number(x) if isinstance(x, str) else x for x in (lo, hi))
        except ValueError:
            raise QueryError(f"range {value.lo!r}..{value.hi!r} is not numeric") from None
    elif numeric and _is_text_type(kind):
        column = _numeric_view(column)
    elif _is_text_type(kind):
        column = _plain(column)
    parts: list[Array] = []
    if lo is not None:
        parts.append(pc.greater_equal(column, lo))
    if hi is not None:
        if isinstance(hi, str):
            # the upper bound takes in everything it prefixes: "20201231" covers its times
            parts.append(pc.less_equal(pc.utf8_slice_codeunits(column, 0, len(hi)), hi))
        else:
            parts.append(pc.less_equal(column, hi))
    if not parts:
        return pc.is_valid(column)
    return parts[0] if len(parts) == 1 else pc.and_(parts[0], parts[1])


def _timestamp(value: Any, kind: pa.TimestampType) -> pa.Scalar:
    ts = pd.Timestamp(value)
    if kind.tz is not None and ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    return pa.scalar(ts, kind)


def _plain(column: Array) -> Array:
    """A dictionary-encoded text column decoded (kernels that need plain strings)."""
    if pa.types.is_dictionary(column.type):
        return pc.cast(column, column.type.value_type)
    return column


def _numeric_view(column: Array) -> Array:
    """Text as float64 where it reads as one number, else null (``"0.5"`` → 0.5)."""
    text = pc.utf8_trim_whitespace(_plain(column))
    ok = pc.match_substring_regex(text, rf"^{_NUMBER}$")
    return pc.cast(pc.if_else(ok, text, pa.scalar(None, pa.string())), pa.float64())


def _match_text(column: Array, pattern: str) -> Array:
    return pc.match_substring_regex(column, wildcard_regex(pattern), ignore_case=True)


def wildcard_regex(pattern: str) -> str:
    """An RE2 pattern for a DICOM wildcard value matched against a possibly multi-valued string.

    The whole value must match, or (for a pattern without ``\\``) any one of its
    backslash-separated values, where ``*`` then does not cross a ``\\``.
    """

    def translate(star: str, question: str) -> str:
        return "".join(
            star if c == "*" else question if c == "?" else ("\\" + c if c in _REGEX_SPECIAL else c)
            for c in pattern
        )

    whole = f"(?s)^(?:{translate('.*', '.')})$"
    if MULTI_VALUE_SEPARATOR in pattern:
        return whole
    one = translate(r"[^\\]*", r"[^\\]")
    return f"{whole}|(?:^|\\\\)(?:{one})(?:\\\\|$)"


def combine(masks: Sequence[Array]) -> Array | None:
    """All masks and-ed together (None for no masks)."""
    if not masks:
        return None
    out = masks[0]
    for m in masks[1:]:
        out = pc.and_(out, m)
    return out
