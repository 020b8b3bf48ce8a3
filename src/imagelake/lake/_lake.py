"""The :class:`Lake`: one object over a lake's stores, registry, index, catalog and audit.

>>> lake = open_lake("./lake", create=True)                       # doctest: +SKIP
>>> report = lake.ingest(["/data/incoming"])                       # doctest: +SKIP
>>> ct = lake.query(Modality="CT", SliceThickness=(0.5, 1.5))      # doctest: +SKIP
>>> ds = lake.open_series(ct.series_instance_uid[0])               # doctest: +SKIP
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import pandas as pd
import sqlalchemy as sa
import xarray as xr

from imagelake import model
from imagelake._fs import LakeFS
from imagelake._version import __version__
from imagelake.audit import AuditLog, AuditReport
from imagelake.catalog import (
    RawEntry,
    StackEntry,
    TableEntry,
    make_raw_key,
    make_stack_key,
    write_catalog,
)
from imagelake.config import Settings, get_settings
from imagelake.db import Database
from imagelake.errors import (
    ConfigError,
    LakeLockedError,
    LakeNotFoundError,
    MissingExtraError,
    QueryError,
)
from imagelake.export import ExportReport, export_stacks
from imagelake.index import query as index_query
from imagelake.index import write_snapshot
from imagelake.ingest import IngestReport, Progress, ingest_paths
from imagelake.knowledge import sync as sync_knowledge
from imagelake.lake._mine import MiningMixin
from imagelake.lake._raw import RawLinkMixin
from imagelake.lake._reprocess import ReprocessMixin
from imagelake.lake._share import AnonymizeReport, anonymize_lake
from imagelake.store import FixityProblem, StoreSettings, open_stack, verify_store

__all__ = ["LAKE_MARKER", "Lake", "open_lake"]

#: a file at the lake root that says "this folder is an imagelake lake"
LAKE_MARKER = "imagelake.json"

_TABLES = [
    TableEntry("series", "index/series.parquet", "one row per series: tags, parameters, stores"),
    TableEntry("instances", "index/instances.parquet", "one row per instance, one column per tag"),
    TableEntry("raw", "index/raw.parquet", "raw scanner files"),
    TableEntry("links", "index/links.parquet", "raw file to series links"),
    TableEntry("measures", "index/measures.parquet", "derived measures with provenance"),
]


class Lake(RawLinkMixin, MiningMixin, ReprocessMixin):
    """A lake at ``root`` (a local folder or an fsspec URL).

    Parameters
    ----------
    root
        Lake URL; defaults to the ``lake`` setting (``./lake``).
    db_url
        Registry URL; defaults to the ``db_url`` setting, else ``<lake>/registry.sqlite``.
    create
        Create the lake if it does not exist.
    settings
        Settings to use instead of :func:`imagelake.config.get_settings`.
    storage_options
        fsspec options for a remote lake (credentials, endpoint...).
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        *,
        db_url: str | None = None,
        create: bool = False,
        settings: Settings | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        lake_url = os.fspath(root or self.settings.lake)
        try:
            self.fs = LakeFS(lake_url, **dict(storage_options or {}))
        except ImportError as exc:  # fsspec knows the protocol, its package is missing
            raise MissingExtraError(
                f"cannot open the lake {lake_url!r}: {exc} (for s3:// pip install 'imagelake[s3]')"
            ) from exc
        except ValueError as exc:  # e.g. "Protocol not known"
            raise ConfigError(f"cannot open the lake {lake_url!r}: {exc}") from exc
        exists = self.fs.exists(LAKE_MARKER)
        if not exists and not create:
            raise LakeNotFoundError(
                f"no imagelake lake at {self.fs.url()}; create one with "
                f"open_lake({self.fs.url()!r}, create=True) or `imagelake init`"
            )
        url = db_url or self.settings.db_url
        if url is None:
            if not self.fs.is_local:
                raise LakeNotFoundError(
                    "a remote lake needs a registry URL (IMAGELAKE_DB_URL or db_url=...)"
                )
            self.fs.makedirs("")
            url = f"sqlite:///{self.fs.path('registry.sqlite')}"
        self.db = Database(url)
        self.audit = AuditLog.from_env(self.fs)
        self._lock_depth = 0
        if not exists:
            self._initialise()

    def __repr__(self) -> str:
        return f"Lake({self.fs.url()!r})"

    @property
    def url(self) -> str:
        return self.fs.url()

    def _initialise(self) -> None:
        for folder in ("stores/dicom", "stores/raw", "index", "audit", "quarantine"):
            self.fs.makedirs(folder)
        sync_knowledge(self.db)
        self.fs.write_atomic(
            LAKE_MARKER,
            json.dumps({"imagelake": __version__, "layout_version": 1}, indent=1),
        )
        self.audit.record("lake.create", user=self.settings.user, objects=[self.fs.url()])
        self.refresh()

    # -- writing ------------------------------------------------------------------------
    @contextmanager
    def writer_lock(self) -> Iterator[None]:
        """Hold the lake's single-writer lock (local lakes; remote lakes trust the caller).

        Re-entrant for this :class:`Lake` object: a method that takes the lock may be
        called while the caller already holds it.
        """
        if not self.fs.is_local or self._lock_depth:
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
            return
        with open(self.fs.path(".lock"), "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise LakeLockedError(
                    f"another process is writing to {self.fs.url()}; wait for it to finish"
                ) from None
            self._lock_depth = 1
            try:
                yield
            finally:
                self._lock_depth = 0
                fcntl.flock(fh, fcntl.LOCK_UN)

    def ingest(
        self,
        paths: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
        *,
        workers: int | None = None,
        progress: Progress | None = None,
        link: bool = True,
    ) -> IngestReport:
        """Ingest DICOM files, raw scanner files, folders, zip files and DICOMDIRs (idempotent).

        Raw files are recognised by the format registry (:mod:`imagelake.formats`) and
        archived byte-exact with their decoded arrays. Bad inputs are quarantined with
        their reason and the batch goes on; the report says what happened. The index,
        catalog and audit log are brought up to date. With ``link`` (the default), when
        the lake holds raw files and something new arrived, :meth:`link` runs.
        """
        if isinstance(paths, str | os.PathLike):
            paths = [paths]
        s = self.settings
        store_settings = StoreSettings(
            chunk_slices=s.chunk_slices,
            chunk_rows=s.chunk_rows,
            chunk_cols=s.chunk_cols,
            shard_slices=s.shard_slices,
            compression_level=s.compression_level,
        )
        n_workers = workers or s.workers  # None: ingest chooses
        with self.writer_lock():
            # a wrong link key must stop the ingest before it changes anything
            self._check_link_key()
            report = ingest_paths(
                self.fs,
                self.db,
                list(paths),
                settings=store_settings,
                workers=n_workers,
                user=s.user,
                progress=progress,
                patient_hasher=self._raw_patient_hasher(),
            )
            if report.raw_new or report.instances_new:
                self._set_link_pending(True)
            self.refresh()
            self.audit.record(
                "ingest",
                user=s.user,
                objects=[f"job:{report.job_id}"],
                details={
                    "files": report.files_seen,
                    "instances_new": report.instances_new,
                    "instances_skipped": report.instances_skipped,
                    "quarantined": len(report.quarantined),
                    "series_new": report.series_new,
                    "series_updated": report.series_updated,
                    "raw_new": len(report.raw_new),
                },
            )
            # linking runs under the same lock; a pass that did not finish (killed, key
            # problem) is remembered and redone by the next ingest or link
            if link and self._link_pending() and self._has_raw():
                report.links = str(self.link())
        return report

    def _has_raw(self) -> bool:
        with self.db.connect() as conn:
            return conn.execute(sa.select(model.raw_file.c.id).limit(1)).first() is not None

    def refresh(self) -> None:
        """Rewrite the Parquet index and the Intake catalog from the registry."""
        write_snapshot(self.db, self.fs)
        write_catalog(
            self.fs,
            self._stack_entries(),
            _TABLES,
            name="imagelake",
            consolidated=True,
            raws=self._raw_entries(),
        )

    def _raw_entries(self) -> list[RawEntry]:
        r = model.raw_file
        with self.db.connect() as conn:
            rows = conn.execute(
                sa.select(
                    r.c.sha256, r.c.format, r.c.store_path, r.c.manufacturer, r.c.model, r.c.meta
                )
                .where(r.c.store_path.is_not(None))
                .order_by(r.c.id)
            ).all()
        out = []
        for row in rows:
            meta = row.meta or {}
            arrays = meta.get("arrays") or {}
            if not arrays:
                continue  # nothing to open as data: listed in the raw table only
            out.append(
                RawEntry(
                    key=make_raw_key(row.sha256, row.format),
                    store_path=row.store_path,
                    description=" ".join(
                        str(v) for v in (row.format, meta.get("modality"), row.model) if v
                    ),
                    metadata={
                        "raw_sha256": row.sha256,
                        "format": row.format,
                        "modality": meta.get("modality"),
                        "manufacturer": row.manufacturer,
                        "model": row.model,
                        "arrays": {k: list(v) for k, v in arrays.items()},
                    },
                )
            )
        return out

    def _stack_entries(self) -> list[StackEntry]:
        st, se = model.stack, model.series
        with self.db.connect() as conn:
            rows = conn.execute(
                sa.select(
                    st.c.stack_number,
                    st.c.store_path,
                    st.c.shape,
                    st.c.frame_dim,
                    st.c.reason,
                    se.c.series_instance_uid,
                    se.c.modality,
                    se.c.manufacturer,
                    se.c.model,
                    se.c.series_description,
                )
                .join(se, se.c.id == st.c.series_id)
                .where(st.c.frame_dim != "none")
                .order_by(se.c.id, st.c.stack_number)
            ).all()
        return [
            StackEntry(
                key=make_stack_key(r.series_instance_uid, r.stack_number, r.modality),
                store_path=r.store_path,
                description=" ".join(
                    str(v) for v in (r.modality, r.series_description, r.reason) if v
                ),
                metadata={
                    "series_instance_uid": r.series_instance_uid,
                    "modality": r.modality,
                    "manufacturer": r.manufacturer,
                    "model": r.model,
                    "shape": list(r.shape),
                    "frame_dim": r.frame_dim,
                },
            )
            for r in rows
        ]

    # -- reading --------------------------------------------------------------------------
    def query(
        self,
        filters: Mapping[str, Any] | None = None,
        /,
        *,
        level: str = "series",
        columns: Sequence[str] | None = None,
        **conditions: Any,
    ) -> pd.DataFrame:
        """Series (or instances) matching every condition, with their store URLs.

        Conditions name any tag or image parameter: ``Modality="CT"``,
        ``SliceThickness=(0.5, 1.5)``, ``ConvolutionKernel="B*"``,
        ``StudyDate="20200101-20201231"``; see :func:`imagelake.index.query`.
        """
        merged = {**(filters or {}), **conditions}
        return index_query(self.fs, merged, level=level, columns=columns)  # type: ignore[arg-type]

    def series(self) -> pd.DataFrame:
        """Every series, one row each."""
        return self.query()

    def stacks(self, series_instance_uid: str | None = None) -> pd.DataFrame:
        """Stack rows (store path, shape, reason), optionally of one series."""
        st, se = model.stack, model.series
        sel = sa.select(
            se.c.series_instance_uid,
            st.c.stack_number,
            st.c.store_path,
            st.c.frame_dim,
            st.c.shape,
            st.c.dtype,
            st.c.reason,
            st.c.stored_bytes,
            st.c.source_bytes,
        ).join(se, se.c.id == st.c.series_id)
        if series_instance_uid:
            sel = sel.where(se.c.series_instance_uid == series_instance_uid)
        with self.db.connect() as conn:
            return pd.DataFrame(conn.execute(sel.order_by(st.c.id)).mappings().all())

    def open_stack(self, store_path: str, *, chunks: Any = None) -> xr.Dataset:
        """Open a stack store lazily in physical units (``chunks={}``: dask-backed)."""
        opts = None if self.fs.is_local else self.fs.storage_options
        return open_stack(self.fs.url(store_path), chunks=chunks, storage_options=opts)

    def open_series(
        self, series_instance_uid: str, stack: int = 0, *, chunks: Any = None
    ) -> xr.Dataset:
        """Open stack ``stack`` (0: the main one) of a series, lazily.

        ``chunks=None`` reads through xarray's lazy indexing; ``chunks={}`` gives dask
        arrays (one chunk per stored chunk) for parallel work.
        """
        rows = self.stacks(series_instance_uid)
        if rows.empty:
            raise QueryError(f"no series {series_instance_uid!r} in {self.url}")
        match = rows[rows.stack_number == stack]
        if match.empty:
            raise QueryError(
                f"series {series_instance_uid} has stacks {sorted(rows.stack_number)}, not {stack}"
            )
        return self.open_stack(str(match.store_path.iloc[0]), chunks=chunks)

    def _table(self, table: sa.Table, order: Any) -> pd.DataFrame:
        with self.db.connect() as conn:
            rows = conn.execute(sa.select(table).order_by(order)).mappings().all()
        return pd.DataFrame(rows, columns=[c.name for c in table.columns])

    def alerts(self, status: str | None = "open") -> pd.DataFrame:
        """Alerts (unknown scanners, software versions...), newest first."""
        df = self._table(model.alert, model.alert.c.last_seen.desc())
        if status and not df.empty:
            df = df[df.status == status].reset_index(drop=True)
        return df

    def quarantined(self) -> pd.DataFrame:
        """Inputs that could not be ingested, with their reasons."""
        return self._table(model.quarantine, model.quarantine.c.id)

    def jobs(self) -> pd.DataFrame:
        return self._table(model.job, model.job.c.id)

    # -- export, fixity, audit ---------------------------------------------------------
    def export(
        self,
        out_dir: str | os.PathLike[str],
        filters: Mapping[str, Any] | None = None,
        /,
        *,
        layout: str = "series",
        **conditions: Any,
    ) -> ExportReport:
        """Regenerate the DICOM files of the matching series under ``out_dir``."""
        selected = self.query(filters, **conditions)
        uids = set(selected.series_instance_uid) if not selected.empty else set()
        paths = [str(p) for uid, p in zip(*self._all_stack_paths(), strict=True) if uid in uids]
        report = export_stacks(self.fs, paths, out_dir, layout=layout)
        self.audit.record(
            "export",
            user=self.settings.user,
            objects=sorted(uids),
            details={"instances": report.instances, "out": os.fspath(out_dir)},
        )
        return report

    def anonymize(
        self,
        destination: str | os.PathLike[str],
        filters: Mapping[str, Any] | None = None,
        /,
        *,
        policy: str | os.PathLike[str] | Mapping[str, Any] | None = None,
        vault: Any = None,
        raw: bool = True,
        **conditions: Any,
    ) -> AnonymizeReport:
        """Write the matching series, de-identified, into the lake at ``destination``.

        The PS3.15 Basic Profile with keyed pseudonyms by default; ``policy`` is a YAML
        file, a YAML string or a mapping (:func:`imagelake.anonymize.load_policy`);
        ``vault`` an open :class:`imagelake.vault.Vault` to seal each pseudonym's
        identifiers in. This lake is only read; the share is audited here and there.
        """
        report = anonymize_lake(
            self,
            destination,
            {**(filters or {}), **conditions},
            policy=policy,
            vault=vault,
            secret_file=self.settings.deid_secret_file,
            raw=raw,
        )
        self.audit.record(
            "anonymize",
            user=self.settings.user,
            objects=[f"lake:{report.destination}"],
            details={
                "series": report.series,
                "instances": report.instances,
                "held_back": report.held_back,
                "subjects": report.subjects,
                "raw_files": report.raw_files,
                "raw_refused": report.raw_refused,
                "vault_records_new": report.vault_records_new,
            },
        )
        return report

    def push(
        self,
        dest_url: str,
        *,
        key: Any,
        storage_options: Mapping[str, Any] | None = None,
        progress: Progress | None = None,
    ) -> Any:
        """Copy this lake, encrypted client-side, to any fsspec URL (resumable, verified).

        ``key`` is an :class:`imagelake.replicate.MasterKey`. The writer lock is held, so
        the index, stores and registry snapshot pushed belong together. See
        :func:`imagelake.replicate.push`.
        """
        from imagelake.replicate import push

        if not self.fs.is_local:
            raise ConfigError("push copies a local lake; this one is at " + self.fs.url())
        with self.writer_lock():
            report = push(
                self.fs.path(""),
                dest_url,
                key=key,
                storage_options=dict(storage_options or {}),
                progress=progress,
            )
            self.audit.record(
                "push",
                user=self.settings.user,
                objects=[f"remote:{dest_url}"],
                details={
                    "key_id": key.key_id,
                    "objects": report.objects,
                    "uploaded": report.uploaded,
                    "verified": report.verified,
                },
            )
        return report

    def _all_stack_paths(self) -> tuple[list[str], list[str]]:
        st, se = model.stack, model.series
        with self.db.connect() as conn:
            rows = conn.execute(
                sa.select(se.c.series_instance_uid, st.c.store_path)
                .join(se, se.c.id == st.c.series_id)
                .order_by(st.c.id)
            ).all()
        return [r[0] for r in rows], [r[1] for r in rows]

    def verify(self) -> list[FixityProblem]:
        """Check every stored object against its manifest; an empty list means intact."""
        with self.db.connect() as conn:
            rows = conn.execute(
                sa.select(model.stack.c.store_path, model.stack.c.manifest_sha256)
            ).all()
        problems: list[FixityProblem] = []
        for path, digest in rows:
            problems.extend(verify_store(self.fs, path, digest))
        problems.extend(self.verify_raw())
        return problems

    def verify_audit(self) -> AuditReport:
        """Check the audit log's hash chain (raises AuditChainError when broken)."""
        return self.audit.verify()


def open_lake(
    root: str | os.PathLike[str] | None = None,
    *,
    create: bool = False,
    db_url: str | None = None,
    **storage_options: Any,
) -> Lake:
    """Open (or with ``create=True`` create) the lake at ``root``."""
    return Lake(root, db_url=db_url, create=create, storage_options=storage_options)
