"""The DICOM ingest pipeline (ARCHITECTURE.md §5 "ingest").

discover → inspect headers (parallel) → quarantine bad inputs → drop what the lake
already holds (SOPInstanceUID + sha256) → group into series and stacks (with the
instances a series already has) → write stores under temporary names (parallel over
stacks) → one registry transaction per series → remove stores no longer referenced.

Crash safety: a store becomes visible only by a rename once complete, and is referenced
only by a committed transaction; anything a crash leaves behind (``.tmp/``, a published
but unreferenced store) is swept by :func:`sweep_orphans` at the start of the next run,
which then redoes exactly the series that were not committed.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from imagelake import model
from imagelake._fs import LakeFS, sha256_file
from imagelake.db import Database, utcnow
from imagelake.dicom import (
    InstanceInfo,
    Source,
    StackPlan,
    StoredInstance,
    inspect_bytes,
    inspect_source,
    plan_stacks,
)
from imagelake.errors import ImagelakeError, InvalidInputError
from imagelake.ingest._discover import discover
from imagelake.ingest._quarantine import QuarantineEntry, quarantine
from imagelake.ingest._raw import PatientHasher, collect_raw, ingest_raw_objects
from imagelake.ingest._register import register_series
from imagelake.knowledge import ScannerIndex, record_sighting
from imagelake.store import (
    StackDraft,
    StackReader,
    StackResult,
    StoreSettings,
    begin_stack,
    build_stack,
    finish_stack,
    frame_ranges,
    stack_store_path,
    write_frames,
)

__all__ = ["IngestReport", "Progress", "ingest_paths", "sweep_orphans"]

#: progress callback: (stage, done, total)
Progress = Callable[[str, int, int], None]

_INSPECT_BATCH = 32
#: with ``workers=None``, smaller batches run in this process: starting the worker pool
#: (a fork server importing pydicom, zarr...) costs about as much as 2 cores save on them
#: (measured on 2 cores: docs/BENCHMARKS.md)
AUTO_POOL_MIN_FILES = 500
_MAX_REPLANS = 3


@dataclass
class IngestReport:
    """What an ingest did. ``str(report)`` is a short human summary."""

    job_id: int | None = None
    files_seen: int = 0
    instances_new: int = 0
    instances_skipped: int = 0
    raw_new: list[str] = field(default_factory=list)  # sha256 of raw objects added
    raw_skipped: int = 0
    already_quarantined: int = 0
    series_new: int = 0
    series_updated: int = 0
    stacks_written: int = 0
    bytes_in: int = 0
    bytes_stored: int = 0
    quarantined: list[QuarantineEntry] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: what the linking pass that followed the ingest did (set by the lake)
    links: str = ""

    def __str__(self) -> str:
        ratio = self.bytes_in / self.bytes_stored if self.bytes_stored else 0.0
        lines = [
            f"{self.files_seen} files: {self.instances_new} new instances, "
            f"{self.instances_skipped} already in the lake, {len(self.quarantined)} quarantined"
            + (
                f" ({self.already_quarantined} quarantined before)"
                if self.already_quarantined
                else ""
            ),
            f"{self.series_new} new series, {self.series_updated} updated, "
            f"{self.stacks_written} stacks written "
            f"({self.bytes_in / 1e6:.1f} MB in, {self.bytes_stored / 1e6:.1f} MB stored, "
            f"{ratio:.2f}:1) in {self.seconds:.1f} s",
        ]
        if self.raw_new or self.raw_skipped:
            lines.insert(
                1,
                f"{len(self.raw_new)} new raw files, {self.raw_skipped} already in the lake",
            )
        for q in self.quarantined[:20]:
            lines.append(f"  quarantined {q.source}: {q.reason}")
        if len(self.quarantined) > 20:
            lines.append(f"  ... and {len(self.quarantined) - 20} more (imagelake quarantine)")
        for alert in self.alerts:
            lines.append(f"  alert: {alert}")
        if self.links:
            lines.append(f"links: {self.links}")
        return "\n".join(lines)


@dataclass
class _Rejected:
    source: Source
    error: str
    reason: str


def _inspect_batch(sources: Sequence[Source]) -> list[InstanceInfo | _Rejected]:
    out: list[InstanceInfo | _Rejected] = []
    for source in sources:
        try:
            out.append(inspect_source(source))
        except ImagelakeError as exc:
            out.append(_Rejected(source, type(exc).__name__, str(exc)))
        except Exception as exc:  # noqa: BLE001 - an unexpected failure is still a bad input
            out.append(_Rejected(source, type(exc).__name__, f"unexpected error: {exc}"))
    return out


def _batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


#: what worker processes need, imported once by the fork server rather than per worker
_WORKER_MODULES = ["imagelake.dicom", "imagelake.store", "imagelake.ingest._run"]


def _executor(workers: int) -> Executor | None:
    if workers <= 1:
        return None
    # Not plain fork: zarr and fsspec run event-loop threads a fork would copy mid-flight.
    # A fork server imports the worker modules once (and the caller's main module, which
    # every spawned child would otherwise re-run); workers fork from it in milliseconds.
    ctx = multiprocessing.get_context("forkserver")
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    preload = list(_WORKER_MODULES)
    if main_file and os.path.exists(main_file):
        preload.insert(0, "__main__")
    ctx.set_forkserver_preload(preload)
    return ProcessPoolExecutor(workers, mp_context=ctx)


def sweep_orphans(lakefs: LakeFS, db: Database) -> list[str]:
    """Remove what an interrupted run left: temporary trees and unreferenced stores.

    Must run under the lake's writer lock (no other ingest may be publishing).
    """
    removed = []
    for name in lakefs.ls(".tmp"):
        lakefs.rm_tree(f".tmp/{name}")
        removed.append(f".tmp/{name}")
    with db.connect() as conn:
        referenced = {r[0] for r in conn.execute(sa.select(model.stack.c.store_path))}
        referenced |= {r[0] for r in conn.execute(sa.select(model.raw_file.c.store_path)) if r[0]}
    for store in lakefs.ls("stores/raw"):
        rel = f"stores/raw/{store}"
        if rel not in referenced:
            lakefs.rm_tree(rel)
            removed.append(rel)
    for series_dir in lakefs.ls("stores/dicom"):
        for store in lakefs.ls(f"stores/dicom/{series_dir}"):
            rel = f"stores/dicom/{series_dir}/{store}"
            if rel not in referenced:
                lakefs.rm_tree(rel)
                removed.append(rel)
        if not lakefs.ls(f"stores/dicom/{series_dir}"):
            lakefs.rm_tree(f"stores/dicom/{series_dir}")
    return removed


class _Ingest:
    def __init__(
        self,
        lakefs: LakeFS,
        db: Database,
        *,
        settings: StoreSettings,
        workers: int | None,
        user: str,
        progress: Progress | None,
        patient_hasher: PatientHasher | None = None,
    ) -> None:
        self.patient_hasher = patient_hasher
        self.lakefs = lakefs
        self.db = db
        self.settings = settings
        # None: choose (one per core, but a pool only for batches that repay starting it)
        self.auto = workers is None
        self.workers = workers or os.cpu_count() or 1
        self.user = user
        self.progress = progress or (lambda stage, done, total: None)
        self.report = IngestReport()
        self.pool: Executor | None = None

    # -- stages ---------------------------------------------------------------------
    def _run_tasks(
        self, tasks: Sequence[tuple[Callable[..., Any], tuple[Any, ...]]], stage: str
    ) -> list[Any]:
        """Run ``fn(*args)`` tasks in the pool (or here), results in order, with progress."""
        self.progress(stage, 0, len(tasks))
        if self.pool is None or len(tasks) <= 1:
            out = []
            for k, (fn, args) in enumerate(tasks):
                out.append(fn(*args))
                self.progress(stage, k + 1, len(tasks))
            return out
        futures = [self.pool.submit(fn, *args) for fn, args in tasks]
        results = []
        for k, fut in enumerate(futures):
            results.append(fut.result())
            self.progress(stage, k + 1, len(tasks))
        return results

    def _want_pool(self, n_files: int) -> bool:
        if self.workers <= 1 or n_files <= _INSPECT_BATCH:
            return False
        return not self.auto or n_files >= AUTO_POOL_MIN_FILES

    def inspect(self, sources: Sequence[Source]) -> list[InstanceInfo]:
        tasks = [(_inspect_batch, (batch,)) for batch in _batches(sources, _INSPECT_BATCH)]
        infos: list[InstanceInfo] = []
        for batch in self._run_tasks(tasks, "reading headers"):
            for item in batch:
                if isinstance(item, _Rejected):
                    self.reject(item.source, item.error, item.reason)
                else:
                    infos.append(item)
        return infos

    def reject(self, source: Source | StoredInstance, error: str, reason: str) -> None:
        if not isinstance(source, Source):
            raise ImagelakeError(f"an instance already in the lake failed: {reason}")
        if error == "NotDicomError" and source.member is None:
            reason += (
                "; no raw format recognises it either (to archive it as an opaque raw file, "
                f"describe it in a sidecar {source.name}.imagelake.yaml)"
            )
        data: bytes | None = None
        path: str | None = None
        if source.member is None and os.path.isfile(source.path):
            path = source.path  # streamed: a failed raw file can be gigabytes
            sha = sha256_file(path)
        else:
            try:
                data = source.read_bytes()
            except OSError:
                data = b""
            sha = hashlib.sha256(data).hexdigest()
        with self.db.begin() as conn:
            # the same bytes for the same reason: quarantined by an earlier run already
            known = conn.execute(
                sa.select(model.quarantine.c.id).where(
                    model.quarantine.c.sha256 == sha, model.quarantine.c.reason == reason
                )
            ).first()
            entry = quarantine(
                self.lakefs,
                conn,
                data=data,
                path=path,
                source=source.locator,
                name=source.name,
                error=error,
                reason=reason,
                job_id=self.report.job_id,
            )
        if known is None:
            self.report.quarantined.append(entry)
        else:
            self.report.already_quarantined += 1

    def select_new(self, infos: list[InstanceInfo]) -> list[InstanceInfo]:
        """Drop instances the lake (or this batch) already holds; quarantine conflicts."""
        by_uid: dict[str, InstanceInfo] = {}
        for info in infos:
            seen = by_uid.get(info.sop_instance_uid)
            if seen is None:
                by_uid[info.sop_instance_uid] = info
            elif seen.sha256 == info.sha256:
                self.report.instances_skipped += 1
            else:
                self.reject(
                    info.source,  # type: ignore[arg-type]
                    "DuplicateInstanceError",
                    f"SOPInstanceUID {info.sop_instance_uid} appears twice in this batch with "
                    "different content",
                )
        existing: dict[str, str] = {}
        with self.db.connect() as conn:
            held = {r[0] for r in conn.execute(sa.select(model.quarantine.c.sha256))}
            for uid in [u for u, i in by_uid.items() if i.sha256 in held]:
                del by_uid[uid]  # quarantined by an earlier run: already kept, with its reason
                self.report.already_quarantined += 1
            uids = list(by_uid)
            for chunk in _batches(uids, 500):
                rows = conn.execute(
                    sa.select(
                        model.instance.c.sop_instance_uid, model.instance.c.source_sha256
                    ).where(model.instance.c.sop_instance_uid.in_(list(chunk)))
                )
                existing.update({r[0]: r[1] for r in rows})
        new = []
        for uid, info in by_uid.items():
            if uid not in existing:
                new.append(info)
            elif existing[uid] == info.sha256:
                self.report.instances_skipped += 1
            else:
                self.reject(
                    info.source,  # type: ignore[arg-type]
                    "DuplicateInstanceError",
                    f"SOPInstanceUID {uid} is already in the lake with different content "
                    "(sha256 differs); the stored instance is kept",
                )
        return new

    def existing_instances(self, series_uid: str) -> list[InstanceInfo]:
        """Instances a series already has, read back from its stores' headers."""
        with self.db.connect() as conn:
            rows = conn.execute(
                sa.select(
                    model.instance.c.stack_index,
                    model.instance.c.source_sha256,
                    model.instance.c.source_size,
                    model.stack.c.store_path,
                )
                .join(model.stack, model.stack.c.id == model.instance.c.stack_id)
                .join(model.series, model.series.c.id == model.instance.c.series_id)
                .where(model.series.c.series_instance_uid == series_uid)
            ).all()
        out = []
        readers: dict[str, StackReader] = {}
        for row in rows:
            reader = readers.setdefault(row.store_path, StackReader(self.lakefs, row.store_path))
            header = reader.header(row.stack_index)
            info = inspect_bytes(
                header,
                StoredInstance(row.store_path, row.stack_index),
                sha256=row.source_sha256,
                check_pixels=False,
            )
            info.size = int(row.source_size or 0)
            out.append(info)
        return out

    def build(self, plans_by_series: dict[str, list[StackPlan]]) -> dict[str, list[StackResult]]:
        """Write every stack that changed; reuse the stores of unchanged stacks."""
        cols = model.stack.c
        with self.db.connect() as conn:
            known = {
                r.store_path: r
                for r in conn.execute(
                    sa.select(
                        cols.store_path,
                        cols.manifest_sha256,
                        cols.stored_bytes,
                        cols.source_bytes,
                        cols.shape,
                        cols.dtype,
                        cols.frame_dim,
                    )
                )
            }
        results: dict[str, list[StackResult | None]] = {}
        tasks: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        whole: list[tuple[str, int, int]] = []  # (series, plan index, task index)
        split: list[tuple[str, int, StackDraft, list[int]]] = []
        root, opts = self.lakefs.url(), self.lakefs.storage_options
        for uid, plans in plans_by_series.items():
            results[uid] = [None] * len(plans)
            for k, plan in enumerate(plans):
                path = stack_store_path(plan)
                row = known.get(path)
                if row is not None:  # unchanged stack: keep its store
                    results[uid][k] = StackResult(
                        uid,
                        plan.number,
                        plan.content_hash,
                        store_path=path,
                        manifest_sha256=row.manifest_sha256,
                        source_bytes=row.source_bytes,
                        shape=tuple(row.shape),
                        dtype=row.dtype,
                        frame_dim=row.frame_dim,
                    )
                    continue
                if self.pool is not None and self._worth_splitting(plan):
                    draft = begin_stack(root, opts, plan, self.settings)
                    if isinstance(draft, StackResult):  # the first instance failed
                        results[uid][k] = draft
                        continue
                    ranges = frame_ranges(plan, draft, self.workers)
                    first = len(tasks)
                    tasks.extend((write_frames, (root, opts, draft, plan, a, b)) for a, b in ranges)
                    split.append((uid, k, draft, list(range(first, len(tasks)))))
                else:
                    whole.append((uid, k, len(tasks)))
                    tasks.append((build_stack, (root, opts, plan, self.settings)))
        done = self._run_tasks(tasks, "writing stacks")
        for uid, k, index in whole:
            results[uid][k] = done[index]
        for uid, k, draft, indices in split:
            plan = plans_by_series[uid][k]
            results[uid][k] = finish_stack(root, opts, draft, plan, [done[i] for i in indices])
        return {uid: [r for r in rs if r is not None] for uid, rs in results.items()}

    def _worth_splitting(self, plan: StackPlan) -> bool:
        """A big single-frame stack is written by several workers, one shard range each."""
        return (
            plan.frame_dim != "none"
            and len(plan.instances) == plan.n_frames
            and plan.n_frames >= 2 * self.settings.shard_slices
        )

    def commit(
        self,
        uid: str,
        plans: list[StackPlan],
        results: list[StackResult],
        new: set[str],
        index: ScannerIndex,
    ) -> None:
        with self.db.begin() as conn:
            existed = conn.execute(
                sa.select(model.series.c.id).where(model.series.c.series_instance_uid == uid)
            ).first()
            _, stale = register_series(conn, plans=plans, results=results, new_uids=new)
            info = plans[0].first
            tags = info.tags
            check = index.check(
                tags.get("Manufacturer"),
                tags.get("ManufacturerModelName"),
                tags.get("SoftwareVersions"),
            )
            n_new = sum(1 for p in plans for i in p.instances if i.sop_instance_uid in new)
            alert = record_sighting(
                conn,
                check,
                count=max(1, n_new),
                modality=tags.get("Modality"),
                context={"series_instance_uid": uid},
            )
            if alert is not None and alert.created:
                self.report.alerts.append(_alert_line(check))
            _bump_generation(conn)
        if existed:
            self.report.series_updated += 1
        else:
            self.report.series_new += 1
        self.report.stacks_written += sum(1 for r in results if r.stored_bytes)
        self.report.bytes_stored += sum(r.stored_bytes for r in results)
        for path in stale:
            self.lakefs.rm_tree(path)

    # -- the whole run ------------------------------------------------------------------
    def run(self, paths: Iterable[str | os.PathLike[str]]) -> IngestReport:
        started = time.perf_counter()
        self.report.job_id = _start_job(self.db, self.user, [os.fspath(p) for p in paths])
        status = "failed"
        try:
            sweep_orphans(self.lakefs, self.db)
            sources = list(discover(paths))
            self.report.files_seen = len(sources)
            raw_objects, sources = collect_raw(sources)
            if raw_objects:
                self._ingest_raw(raw_objects)
            if self._want_pool(len(sources)):
                self.pool = _executor(self.workers)
            infos = self.select_new(self.inspect(sources))
            self.report.instances_new = len(infos)
            self.report.bytes_in += sum(i.size for i in infos)
            by_series: dict[str, list[InstanceInfo]] = defaultdict(list)
            for info in infos:
                by_series[info.series_instance_uid].append(info)
            if (
                self.pool is None
                and self._want_pool(len(infos))
                and len(by_series) + len(infos) > 2
            ):
                self.pool = _executor(self.workers)
            index = ScannerIndex.from_db(self.db)
            self._ingest_series(by_series, index)
            status = "done"
        finally:
            if self.pool is not None:
                self.pool.shutdown(cancel_futures=True)
            self.report.seconds = time.perf_counter() - started
            _finish_job(self.db, self.report, status)
        return self.report

    def _ingest_raw(self, objects: Sequence[Any]) -> None:
        outcome = ingest_raw_objects(
            self.lakefs,
            self.db,
            objects,
            index=ScannerIndex.from_db(self.db),
            job_id=self.report.job_id,
            patient_hasher=self.patient_hasher,
            progress=lambda done, total: self.progress("raw files", done, total),
        )
        self.report.raw_new.extend(outcome.new)
        self.report.raw_skipped += outcome.skipped
        self.report.bytes_in += outcome.bytes_in
        self.report.bytes_stored += outcome.bytes_stored
        self.report.alerts.extend(outcome.alerts)
        for obj, error, reason in outcome.failed:
            for path in obj.paths:
                self.reject(Source(path), error, reason)

    def _ingest_series(self, by_series: dict[str, list[InstanceInfo]], index: ScannerIndex) -> None:
        pending = dict(by_series)
        for _attempt in range(_MAX_REPLANS):
            if not pending:
                return
            plans = {
                uid: plan_stacks(self.existing_instances(uid) + new) for uid, new in pending.items()
            }
            results = self.build(plans)
            retry: dict[str, list[InstanceInfo]] = {}
            for uid, new in pending.items():
                failed = {f[0]: f for r in results[uid] for f in r.failures}
                if failed:
                    for info in new:
                        if info.sop_instance_uid in failed:
                            _, error, reason = failed[info.sop_instance_uid]
                            self.reject(info.source, error, reason)
                            self.report.instances_new -= 1
                            self.report.bytes_in -= info.size
                    kept = [i for i in new if i.sop_instance_uid not in failed]
                    if kept:
                        retry[uid] = kept
                    continue
                new_uids = {i.sop_instance_uid for i in new}
                self.commit(uid, plans[uid], results[uid], new_uids, index)
            pending = retry
        if pending:
            raise InvalidInputError(
                f"{len(pending)} series still failing after {_MAX_REPLANS} tries"
            )


def _alert_line(check: Any, what: str = "") -> str:
    """One line for the ingest report: the alert kind and the scanner it is about."""
    who = " ".join(v for v in (check.manufacturer, check.model) if v) or "no Manufacturer/Model"
    return f"{check.status}: {who}{what}"


def _bump_generation(conn: sa.engine.Connection) -> None:
    table = model.schema_info
    row = conn.execute(sa.select(table.c.value).where(table.c.key == "generation")).first()
    if row is None:
        conn.execute(sa.insert(table).values(key="generation", value="1"))
    else:
        conn.execute(
            sa.update(table).where(table.c.key == "generation").values(value=str(int(row[0]) + 1))
        )


def _start_job(db: Database, user: str, paths: list[str]) -> int:
    with db.begin() as conn:
        # the caller holds the writer lock: an ingest job still "running" was killed
        conn.execute(
            sa.update(model.job)
            .where(model.job.c.kind == "ingest", model.job.c.status == "running")
            .values(status="interrupted", finished_at=utcnow())
        )
        res = conn.execute(
            sa.insert(model.job).values(
                kind="ingest",
                status="running",
                user=user,
                params={"paths": paths},
                summary={},
                started_at=utcnow(),
            )
        )
        return int(res.inserted_primary_key[0])  # type: ignore[index]


def _finish_job(db: Database, report: IngestReport, status: str) -> None:
    summary = {
        "files_seen": report.files_seen,
        "instances_new": report.instances_new,
        "instances_skipped": report.instances_skipped,
        "raw_new": len(report.raw_new),
        "raw_skipped": report.raw_skipped,
        "series_new": report.series_new,
        "series_updated": report.series_updated,
        "stacks_written": report.stacks_written,
        "quarantined": len(report.quarantined),
        "bytes_in": report.bytes_in,
        "bytes_stored": report.bytes_stored,
        "seconds": round(report.seconds, 3),
    }
    with db.begin() as conn:
        conn.execute(
            sa.update(model.job)
            .where(model.job.c.id == report.job_id)
            .values(status=status, summary=summary, finished_at=utcnow())
        )


def ingest_paths(
    lakefs: LakeFS,
    db: Database,
    paths: Iterable[str | os.PathLike[str]],
    *,
    settings: StoreSettings | None = None,
    workers: int | None = None,
    user: str = "unknown",
    progress: Progress | None = None,
    patient_hasher: PatientHasher | None = None,
) -> IngestReport:
    """Ingest DICOM files, folders, zip files and DICOMDIRs into a lake.

    The caller holds the lake's writer lock. See the module docstring for the flow.
    """
    job = _Ingest(
        lakefs,
        db,
        settings=settings or StoreSettings(),
        workers=workers,
        user=user,
        progress=progress,
        patient_hasher=patient_hasher,
    )
    return job.run(list(paths))
