"""A persistent mining run: select → skip what is known → compute on Dask → store measures.

:func:`run_analysis` is what :meth:`imagelake.lake.Lake.mine` calls. The registry and the
index are written on the client, after the results are gathered, inside ``lock`` (the
lake's writer lock); workers only read stores. A ``job`` row (kind ``mine``) records the
run: analysis, version, parameters, counts and seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from imagelake._fs import LakeFS
from imagelake.db import Database
from imagelake.index import write_measures_index
from imagelake.mining._analysis import Analysis, resolve_analysis
from imagelake.mining._client import client_for
from imagelake.mining._map import Progress, TargetResult, compute_targets
from imagelake.mining._provenance import (
    existing_keys,
    finish_job,
    provenance_key,
    start_job,
    stored_measures,
    write_measures,
)
from imagelake.mining._selection import Selection, Target

__all__ = ["MiningReport", "run_analysis"]


@dataclass
class MiningReport:
    """What a mining run did. ``str(report)`` is a short summary; ``frame`` the results.

    Attributes
    ----------
    frame
        One row per target: ``series_instance_uid``, ``stack_number``, ``raw_sha256``,
        ``modality``, ``status`` (``computed``, ``skipped`` — unchanged since an earlier
        run —, ``failed``), ``error``, then one column per measure.
    """

    analysis: str
    version: str
    params: dict[str, Any]
    job_id: int | None = None
    computed: int = 0
    skipped: int = 0
    failed: int = 0
    rows_written: int = 0
    rows_superseded: int = 0
    seconds: float = 0.0
    workers: list[str] = field(default_factory=list)
    frame: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def errors(self) -> pd.DataFrame:
        if self.frame.empty:
            return self.frame
        return self.frame[self.frame["status"] == "failed"]

    def summary(self) -> dict[str, Any]:
        return {
            "analysis": self.analysis,
            "version": self.version,
            "computed": self.computed,
            "skipped": self.skipped,
            "failed": self.failed,
            "rows_written": self.rows_written,
            "rows_superseded": self.rows_superseded,
            "workers": len(self.workers),
            "seconds": round(self.seconds, 3),
        }

    def __str__(self) -> str:
        text = (
            f"{self.analysis} {self.version}: computed {self.computed}, "
            f"skipped {self.skipped} (unchanged), failed {self.failed}; "
            f"{self.rows_written} measures written, {self.rows_superseded} superseded "
            f"in {self.seconds:.1f} s"
        )
        if self.workers:
            text += f" on {len(self.workers)} worker(s)"
        for row in self.errors.itertuples():
            text += f"\n  failed: {row.series_instance_uid or row.raw_sha256}: {row.error}"
        return text


def _frame(
    targets: list[Target],
    status: list[str],
    errors: list[str | None],
    values: Sequence[Mapping[str, Any]],
) -> pd.DataFrame:
    rows = []
    for target, st, err, measured in zip(targets, status, errors, values, strict=True):
        rows.append({**target.key_columns(), "status": st, "error": err, **measured})
    columns = ["series_instance_uid", "stack_number", "raw_sha256", "modality", "status", "error"]
    df = pd.DataFrame(rows)
    return df if not df.empty else pd.DataFrame(columns=columns)


def run_analysis(
    lakefs: LakeFS,
    db: Database,
    analysis: str | Analysis | Callable[..., Mapping[str, Any]],
    selection: Selection,
    *,
    params: Mapping[str, Any] | None = None,
    user: str = "unknown",
    client: Any = None,
    scheduler: str | None = None,
    force: bool = False,
    progress: Progress | bool | None = None,
    lock: Callable[[], AbstractContextManager[Any]] | None = None,
    after_write: Callable[[MiningReport], None] | None = None,
) -> MiningReport:
    """Run ``analysis`` over ``selection`` and store its measures with provenance.

    Parameters
    ----------
    lakefs, db
        The lake (index written here) and its registry.
    analysis
        Registry name, ``"module:function"``, :class:`Analysis` or function.
    selection
        Targets to analyse (:func:`select_stacks` / :func:`select_raw`); targets of
        another kind than the analysis takes, or of a modality it does not apply to, are
        left out.
    params
        Parameters (the analysis' defaults fill in the rest); part of the provenance.
    user
        Recorded on the job and every measure.
    client, scheduler
        Where to compute (:func:`imagelake.mining.client_for`). No cluster is started when
        every target is unchanged.
    force
        Recompute even unchanged targets.
    progress
        ``progress(stage, done, total)`` or True for Dask's progress bar.
    lock
        A context manager factory held while writing (the lake's writer lock).
    after_write
        Called with the report inside the lock, after the registry and index are written
        (the lake records its audit entry there).
    """
    started = time.perf_counter()
    found = resolve_analysis(analysis)
    bound = found.bind(params)
    targets = [t for t in selection if t.kind == found.takes and found.applies_to(t.modality)]
    keys = [provenance_key(found, bound, t) for t in targets]
    known = set() if force else existing_keys(db, keys)
    todo = [i for i, k in enumerate(keys) if k not in known]
    report = MiningReport(found.name, found.tool_version, bound)
    report.job_id = start_job(
        db,
        user,
        {
            "analysis": found.name,
            "function": found.function,
            "version": found.tool_version,
            "params": bound,
            "lake": selection.lake_url,
            "targets": len(targets),
            "force": force,
        },
    )
    try:
        results: dict[int, TargetResult] = {}
        if todo:
            sub = selection.subset([targets[i] for i in todo])
            with client_for(scheduler, client=client) as active:
                out = compute_targets(found, bound, sub, client=active, progress=progress)
            results = dict(zip(todo, out, strict=True))
        report.workers = sorted({r.worker for r in results.values() if r.worker})
        with lock() if lock else nullcontext():
            with db.begin() as conn:
                for i, res in results.items():
                    if res.error:
                        continue
                    written, superseded = write_measures(
                        conn,
                        found,
                        bound,
                        targets[i],
                        keys[i],
                        res.measures,
                        user=user,
                        job_id=report.job_id,
                    )
                    report.rows_written += written
                    report.rows_superseded += superseded
            if report.rows_written or report.rows_superseded:
                write_measures_index(db, lakefs)
            report.computed = sum(1 for r in results.values() if not r.error)
            report.failed = sum(1 for r in results.values() if r.error)
            report.skipped = len(targets) - len(todo)
            report.seconds = time.perf_counter() - started
            stored = stored_measures(db, [keys[i] for i in range(len(targets)) if i not in results])
            status: list[str] = []
            errors: list[str | None] = []
            values: list[Mapping[str, Any]] = []
            for i in range(len(targets)):
                if i in results:
                    res = results[i]
                    status.append("failed" if res.error else "computed")
                    errors.append(res.error)
                    values.append({n: v for n, (v, _, _) in res.measures.items()})
                else:
                    status.append("skipped")
                    errors.append(None)
                    values.append({n: row[0] for n, row in stored.get(keys[i], {}).items()})
            report.frame = _frame(targets, status, errors, values)
            finish_job(db, report.job_id, "done", report.summary())
            if after_write:
                after_write(report)
    except BaseException:
        finish_job(db, report.job_id, "failed", report.summary())
        raise
    return report
