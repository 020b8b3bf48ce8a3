"""Turn instances' tag dicts into typed Arrow columns, one batch at a time.

A tag's column type is decided in two steps, so that a million instances never sit in
memory as Python objects at once:

1. per batch (:func:`tag_columns`), each tag becomes ``int64``, ``float64`` or ``string``
   (or all-null) — Arrow infers this from the Python values in C, which is the fast path;
2. across batches (:func:`unify_type`, :func:`conform`), the widest type wins: a tag that is
   an integer everywhere stays ``int64``, numbers everywhere become ``float64``, anything
   else becomes ``string``.

Numbers that end up as text are formatted by Arrow in both steps (``1.0`` → ``"1"``,
``1e-07`` → ``"1e-7"``), so a value reads the same whatever batch it came from. Multi-valued
tags are joined with DICOM's ``\\``; an empty list is null; a missing value inside a list is
an empty component (``[1, None, 3]`` → ``"1\\\\3"``); nested structures are JSON text.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from imagelake.index._layout import MULTI_VALUE_SEPARATOR

__all__ = ["conform", "tag_columns", "unify_type"]

_SCALARS = (pa.types.is_string, pa.types.is_int64, pa.types.is_float64, pa.types.is_null)


def tag_columns(tags: Sequence[Mapping[str, Any]]) -> dict[str, pa.Array]:
    """One Arrow array per tag present in any of ``tags`` (rows missing it are null)."""
    keys: set[str] = set()
    for t in tags:
        keys.update(t)
    return {key: column([t.get(key) for t in tags]) for key in keys}


def column(values: list[Any]) -> pa.Array:
    """An ``int64``/``float64``/``string``/null array holding ``values`` (see module doc)."""
    try:
        arr = pa.array(values, from_pandas=False)
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        return _text(values)
    kind = arr.type
    if any(test(kind) for test in _SCALARS):
        return arr
    if (
        pa.types.is_list(kind)
        and any(test(kind.value_type) for test in _SCALARS)
        and arr.values.null_count == 0
    ):
        joined = pc.binary_join(pc.cast(arr, pa.list_(pa.string())), MULTI_VALUE_SEPARATOR)
        empty = pc.equal(pc.list_value_length(arr), 0)
        if pc.any(empty).as_py():
            joined = pc.if_else(empty, pa.scalar(None, pa.string()), joined)
        return joined
    return _text(values)


def _text(values: list[Any]) -> pa.Array:
    """The slow path: every value as text, numbers formatted by Arrow like the fast path."""
    floats: list[float] = []
    for v in values:
        if isinstance(v, float):
            floats.append(v)
        elif isinstance(v, list):
            floats.extend(x for x in v if isinstance(x, float))
    formatted = iter(pc.cast(pa.array(floats, pa.float64()), pa.string()).to_pylist())

    def one(x: Any) -> str:
        if isinstance(x, str):
            return x
        if x is None:
            return ""
        if isinstance(x, float):
            return str(next(formatted))
        if isinstance(x, bool):
            return "1" if x else "0"
        if isinstance(x, int):
            return str(x)
        return json.dumps(x)

    out: list[str | None] = []
    for v in values:
        if v is None:
            out.append(None)
        elif isinstance(v, list):
            out.append(MULTI_VALUE_SEPARATOR.join(one(x) for x in v) if v else None)
        else:
            out.append(one(v))
    return pa.array(out, pa.string())


def unify_type(types: Iterable[pa.DataType]) -> pa.DataType:
    """The type a tag column gets in the index, given its type in each batch."""
    seen = set(types)
    if pa.string() in seen or not seen - {pa.null()}:
        return pa.string()
    if pa.float64() in seen:
        return pa.float64()
    return pa.int64()


def conform(arr: pa.Array | pa.ChunkedArray, target: pa.DataType) -> pa.Array | pa.ChunkedArray:
    """``arr`` cast to the unified ``target`` type (int64 → float64 may round above 2**53)."""
    if arr.type == target:
        return arr
    return pc.cast(arr, target, safe=False)
