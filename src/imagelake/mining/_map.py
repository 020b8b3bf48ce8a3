"""Map an analysis over a selection's stores on a Dask cluster, and reduce the results.

Each store is one task: the worker opens the store itself (from the lake URL and storage
options in the task, so nothing big travels in the graph), gets dask-backed arrays (one
dask chunk per stored chunk), calls the analysis, and evaluates the lazy values it
returned in one synchronous pass over the chunks. Memory per task is a few chunks, never
a whole series, and a task lost with its worker is simply run again by the scheduler.

>>> sel = select_stacks(lake.fs, lake.db, {"Modality": "CT"})           # doctest: +SKIP
>>> df = map_series(lambda ds: {"mean": ds.image.mean()}, sel, client=client)  # doctest: +SKIP
>>> hist = reduce_series(histogram, sel, combine=operator.add, client=client)  # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from imagelake._fs import LakeFS
from imagelake.errors import ImagelakeError
from imagelake.mining._analysis import Analysis, Measure, _jsonable, resolve_analysis
from imagelake.mining._client import client_for
from imagelake.mining._selection import Selection, Target
from imagelake.store import open_raw, open_stack

__all__ = [
    "MiningError",
    "Progress",
    "TargetResult",
    "compute_targets",
    "map_series",
    "open_target",
    "reduce_series",
]

#: ``progress(stage, done, total)`` as ingest calls it; or True for Dask's own progress bar
Progress = Callable[[str, int, int], None]


class MiningError(ImagelakeError, RuntimeError):
    """A mining run could not produce its results (not one series' failure: those are rows)."""


@dataclass(frozen=True)
class TargetResult:
    """What one task gave back: measures (name → (value, unit, payload)) or an error."""

    measures: Mapping[str, tuple[float | None, str, Any]]
    error: str | None
    seconds: float
    worker: str | None


@dataclass(frozen=True)
class _Task:
    """One store to analyse; small and picklable (the worker opens the store itself)."""

    lake_url: str
    storage_options: Mapping[str, Any]
    target: Target
    func: Callable[..., Any]
    params: Mapping[str, Any]


def open_target(
    lake_url: str, storage_options: Mapping[str, Any], target: Target, *, chunks: Any = None
) -> Any:
    """Open one target's store lazily as an :class:`xarray.Dataset` (``chunks={}``: dask).

    A stack is in physical units (CF scale/offset: HU for CT), with its coordinates and
    series attributes; a raw store holds its decoded arrays (``kspace``, ``sinogram``...).
    """
    opts = dict(storage_options)
    lakefs = LakeFS(lake_url, **opts)
    if target.kind == "raw":
        return open_raw(lakefs, target.store_path, chunks=chunks)
    return open_stack(lakefs.url(target.store_path), chunks=chunks, storage_options=opts or None)


def _worker_address() -> str | None:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return None


def _number(value: Any) -> float | None:
    if value is None:
        return None
    arr = np.asarray(getattr(value, "values", value))
    if arr.size != 1:
        raise ValueError(f"a measure's value must be one number, got shape {arr.shape}")
    number = float(arr.reshape(()).item())
    return None if math.isnan(number) else number


def _payload(value: Any) -> Any:
    if value is None:
        return None
    if hasattr(value, "dims") and hasattr(value, "values"):  # an xarray object
        value = value.values
    if isinstance(value, Mapping):
        return {str(k): _payload(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_payload(v) for v in value]
    return _jsonable(value)


def evaluate(out: Mapping[str, Any]) -> dict[str, tuple[float | None, str, Any]]:
    """An analysis' answer as plain values: lazy ones computed together, in one pass."""
    import dask

    if not isinstance(out, Mapping):
        raise TypeError(f"an analysis returns a mapping of measure name to value, not {type(out)}")
    names, units, lazy = [], [], []
    for name, item in out.items():
        m = item if isinstance(item, Measure) else Measure(item)
        names.append(str(name))
        units.append(m.unit or "")
        lazy.append((m.value, m.payload))
    (computed,) = dask.compute(lazy, scheduler="synchronous")
    return {
        name: (_number(value), unit, _payload(payload))
        for name, unit, (value, payload) in zip(names, units, computed, strict=True)
    }


def _run(task: _Task) -> TargetResult:
    """The task: open, analyse, evaluate. An analysis error is a result, not a crash."""
    import dask

    started = time.perf_counter()
    try:
        with dask.config.set(scheduler="synchronous"):
            ds = open_target(task.lake_url, task.storage_options, task.target, chunks={})
            measures = evaluate(task.func(ds, **task.params))
        error = None
    except Exception as exc:  # noqa: BLE001 - one bad series must not stop the run
        measures, error = {}, f"{type(exc).__name__}: {exc}"
    return TargetResult(measures, error, time.perf_counter() - started, _worker_address())


def _run_value(task: _Task) -> Any:
    """A reduction's map step: the function's answer with lazy parts computed."""
    import dask

    with dask.config.set(scheduler="synchronous"):
        ds = open_target(task.lake_url, task.storage_options, task.target, chunks={})
        (value,) = dask.compute(task.func(ds, **task.params), scheduler="synchronous")
    return value


def _tasks(
    selection: Selection, func: Callable[..., Any], params: Mapping[str, Any] | None
) -> list[_Task]:
    return [
        _Task(selection.lake_url, dict(selection.storage_options), t, func, dict(params or {}))
        for t in selection
    ]


def _keys(name: str, n: int) -> list[str]:
    # readable on the dashboard; unique per run so a re-run never reuses old results
    slug = "".join(c if c.isalnum() or c in "-_" else "-" for c in name)[-40:]
    run = uuid.uuid4().hex[:8]
    return [f"imagelake-{slug}-{run}-{i}" for i in range(n)]


def _gather(
    client: Any, futures: list[Any], progress: Progress | bool | None, stage: str
) -> list[Any]:
    """Results in submission order, reporting each as it completes."""
    from distributed import as_completed

    if progress is True:
        from distributed import progress as dask_progress

        dask_progress(futures)  # a widget in notebooks, a text bar in a terminal
    index = {f.key: i for i, f in enumerate(futures)}
    out: list[Any] = [None] * len(futures)
    total = len(futures)
    if callable(progress):
        progress(stage, 0, total)
    for done, future in enumerate(as_completed(futures), start=1):
        out[index[future.key]] = future.result()
        if callable(progress):
            progress(stage, done, total)
    return out


def compute_targets(
    analysis: Analysis,
    params: Mapping[str, Any],
    selection: Selection,
    *,
    client: Any,
    progress: Progress | bool | None = None,
) -> list[TargetResult]:
    """Run ``analysis`` on every target of ``selection`` on ``client``; results in order."""
    if not len(selection):
        return []
    tasks = _tasks(selection, analysis.func, params)
    futures = client.map(_run, tasks, key=_keys(analysis.name, len(tasks)), pure=False)
    try:
        return _gather(client, futures, progress, f"mining {analysis.name}")
    finally:
        client.cancel(futures)


def _wide(selection: Selection, results: Sequence[TargetResult]) -> pd.DataFrame:
    rows = []
    for target, res in zip(selection, results, strict=True):
        row: dict[str, Any] = {**target.key_columns(), "error": res.error}
        row.update({name: value for name, (value, _, _) in res.measures.items()})
        rows.append(row)
    return pd.DataFrame(rows)


_LONG_META = {
    "series_instance_uid": "object",
    "stack_number": "float64",
    "raw_sha256": "object",
    "modality": "object",
    "name": "object",
    "value": "float64",
    "unit": "object",
    "payload": "object",
    "error": "object",
}


def _long_rows(task: _Task) -> pd.DataFrame:
    res = _run(task)
    keys = task.target.key_columns()
    rows = [
        {**keys, "name": n, "value": v, "unit": u, "payload": p, "error": None}
        for n, (v, u, p) in res.measures.items()
    ]
    if res.error:
        rows.append(
            {**keys, "name": None, "value": None, "unit": None, "payload": None, "error": res.error}
        )
    return pd.DataFrame(rows, columns=list(_LONG_META)).astype(_LONG_META)


def map_series(
    func: str | Analysis | Callable[..., Mapping[str, Any]],
    selection: Selection,
    *,
    params: Mapping[str, Any] | None = None,
    client: Any = None,
    scheduler: str | None = None,
    progress: Progress | bool | None = None,
    lazy: bool = False,
) -> Any:
    """Apply ``func`` to every store of ``selection``, one Dask task per store.

    Nothing is written to the lake (that is :meth:`imagelake.lake.Lake.mine`).

    Parameters
    ----------
    func
        An analysis (name, ``"module:function"``, :class:`Analysis`) or any function
        ``func(ds, **params) -> {name: value}``; values may be lazy (dask/xarray).
    selection
        From :func:`select_stacks` or :func:`select_raw`.
    params
        Keyword arguments of ``func`` (an analysis' defaults fill in the rest).
    client, scheduler
        Where to run (see :func:`imagelake.mining.client_for`); default a LocalCluster.
    progress
        ``progress(stage, done, total)``, or True for Dask's progress bar.
    lazy
        Return a :class:`dask.dataframe.DataFrame` in long form (one row per measure:
        keys, ``name``, ``value``, ``unit``, ``payload``, ``error``), computed later on
        whatever client is current, instead of a pandas frame.

    Returns
    -------
    pandas.DataFrame
        One row per store: its keys (``series_instance_uid``, ``stack_number``,
        ``raw_sha256``, ``modality``), ``error`` (None when it worked), one column per
        measure.
    """
    found = resolve_analysis(func)
    bound = found.bind(params)
    if lazy:
        import dask
        import dask.dataframe as dd

        parts = [
            dask.delayed(_long_rows, pure=False)(t) for t in _tasks(selection, found.func, bound)
        ]
        meta = pd.DataFrame({k: pd.Series(dtype=v) for k, v in _LONG_META.items()})
        if not parts:
            return dd.from_pandas(meta, npartitions=1)
        return dd.from_delayed(parts, meta=meta, verify_meta=False)
    with client_for(scheduler, client=client) as active:
        results = compute_targets(found, bound, selection, client=active, progress=progress)
    return _wide(selection, results)


def reduce_series(
    func: Callable[..., Any],
    selection: Selection,
    combine: Callable[[Any, Any], Any],
    *,
    params: Mapping[str, Any] | None = None,
    client: Any = None,
    scheduler: str | None = None,
    split_every: int = 8,
) -> Any:
    """``func`` on every store, combined pairwise in a tree on the workers.

    ``func(ds, **params)`` returns anything (a histogram array, a dict of sums...), lazy
    parts computed; ``combine(a, b)`` merges two answers (``operator.add`` for arrays
    and numbers). Returns the single combined answer, or None for an empty selection.
    """
    if not len(selection):
        return None
    if split_every < 2:
        raise ValueError("split_every must be at least 2")
    with client_for(scheduler, client=client) as active:
        tasks = _tasks(selection, func, params)
        level = active.map(_run_value, tasks, key=_keys("reduce", len(tasks)), pure=False)
        while len(level) > 1:
            level = [
                active.submit(_combine_all, combine, level[i : i + split_every], pure=False)
                for i in range(0, len(level), split_every)
            ]
        return level[0].result()


def _combine_all(combine: Callable[[Any, Any], Any], values: Sequence[Any]) -> Any:
    out = values[0]
    for v in values[1:]:
        out = combine(out, v)
    return out
