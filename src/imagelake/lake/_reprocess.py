"""Reprocessing legacy raw files in emulator VMs, and each raw file's path to pixels.

``Lake.reprocess(sha)``: knowledge base → emulator version → job in a VM
(:func:`imagelake.emulators.run_emulator_job`) → DICOM outputs ingested → linked to the raw
parent with method ``emulator`` and full provenance → job row and audit entry.
``Lake.viability()``: for every raw file, how it becomes pixels: a reader and a reference
reconstruction in this library, an emulator, or nothing (a ``raw_not_viable`` alert).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import sqlalchemy as sa

from imagelake import model
from imagelake._version import __version__
from imagelake.db import upsert_alert, utcnow
from imagelake.errors import ConfigError, ImagelakeError, PluginNotFoundError

if TYPE_CHECKING:
    from imagelake.emulators import EmulatorManager, EmulatorManifest, EmulatorRegistry

__all__ = ["ReprocessMixin", "ReprocessReport"]

#: lake folder of finished jobs' records (console log, result.json); no PHI by design
JOBS_DIR = "jobs"


@dataclass
class ReprocessReport:
    """What :meth:`Lake.reprocess` did."""

    raw_sha256: str
    emulator: str
    job_id: str
    status: str = "ok"
    series_instance_uids: list[str] = field(default_factory=list)
    link_ids: list[int] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def __str__(self) -> str:
        n = len(self.series_instance_uids)
        vm = self.provenance.get("domain_type", "?")
        return (
            f"raw {self.raw_sha256[:12]} reprocessed by {self.emulator} (job {self.job_id}, "
            f"{'KVM' if vm == 'kvm' else 'TCG emulation' if vm == 'qemu' else vm}, "
            f"{self.provenance.get('duration_s', 0):.1f} s in the VM): {n} series ingested and "
            f"linked (method emulator) in {self.seconds:.1f} s"
        )


class ReprocessMixin:
    """Emulator reprocessing for :class:`~imagelake.lake.Lake` (see the module docstring)."""

    # provided by Lake
    db: Any
    fs: Any
    settings: Any
    audit: Any

    def emulator_registry(self) -> EmulatorRegistry:
        """The emulator manifests this lake's settings point at."""
        from imagelake.emulators import EmulatorRegistry

        return EmulatorRegistry(self.settings.emulator_manifests)

    def _emulator_for(
        self, row: Any, spec: str, registry: EmulatorRegistry
    ) -> tuple[EmulatorManifest, str]:
        """The manifest to run ``row`` with, and how it was chosen.

        ``auto``: the knowledge base's emulator for the raw file's scanner and software
        version, when its manifest reads the file's format revision; else the manifests
        that accept the file (newest version).
        """
        from imagelake.knowledge import check

        if spec != "auto":
            return registry.get(spec), "named"
        revision = _revision(row.meta or {}, str(row.format))
        found = check(self.db, row.manufacturer, row.model, row.software_version)
        if found.emulator:
            manifest = registry.get(found.emulator)
            if _reads(manifest, str(row.format), revision):
                how = f"knowledge base ({found.model} software {found.matched_version})"
                return manifest, how
        try:
            manifest = registry.resolve(
                "auto",
                manufacturer=row.manufacturer,
                model=row.model,
                software_version=row.software_version,
                raw_format=row.format,
                revision=revision,
            )
            return manifest, "emulator manifests"
        except PluginNotFoundError:
            # the file's own format revision names its reader, whatever its software says
            fmt = str(row.format)
            readers = [
                m
                for m in registry
                if revision is not None and fmt in m.format_revisions and _reads(m, fmt, revision)
            ]
            if len({m.id for m in readers}) != 1:
                raise
            newest = max(readers, key=lambda m: _version_key(m.version))
            return newest, f"format revision ({row.format} revision {revision})"

    def reprocess(
        self,
        sha256: str,
        *,
        emulator: str = "auto",
        params: dict[str, Any] | None = None,
        timeout: float | None = None,
        manager: EmulatorManager | None = None,
        on_progress: Any = None,
    ) -> ReprocessReport:
        """Reconstruct a raw file in the emulator VM of its scanner's software version.

        Parameters
        ----------
        sha256
            The raw file (or a unique prefix of its sha256).
        emulator
            ``"auto"`` (the knowledge base's emulator for the raw file's scanner and software
            version, else the manifests that accept it) or ``"id@version"``.
        params
            Parameters for the emulator's program (``job.json``).
        timeout
            Hard limit for the VM in seconds (default: the manifest's).
        manager
            An :class:`~imagelake.emulators.EmulatorManager` to run the VM with (default: one
            on ``Settings.emulator_uri`` and ``Settings.emulator_images``).

        Raises
        ------
        PluginNotFoundError
            No emulator reconstructs this raw file (a ``raw_not_viable`` alert is raised).
        EmulatorJobError
            The guest refused the file or failed (the job is recorded as failed).
        """
        import pydicom

        from imagelake.emulators import (
            EmulatorJobError,
            EmulatorManager,
            ImageStore,
            run_emulator_job,
        )
        from imagelake.linking._db import record_link

        started = time.perf_counter()
        row = self._raw_row(sha256)  # type: ignore[attr-defined]
        registry = self.emulator_registry()
        try:
            manifest, chosen_by = self._emulator_for(row, emulator, registry)
        except PluginNotFoundError as exc:
            if emulator == "auto":  # nothing reads it (a misspelt id@version is no alert)
                self._not_viable_alert(row, str(exc))
            raise
        own_manager = manager is None
        if manager is None:
            images = ImageStore(self.settings.emulator_images)
            manager = EmulatorManager(
                self.settings.emulator_uri,
                images=images,
                work_dir=self.settings.emulator_work_dir,
            )
        job_id = _job_id()
        db_job = self._start_reprocess_job(row.sha256, manifest.ref, job_id, params or {})
        try:
            with tempfile.TemporaryDirectory(prefix="imagelake-reprocess-") as tmp:
                restored = self._restore_members(row, Path(tmp) / "raw")
                try:
                    result = run_emulator_job(
                        manifest,
                        restored,
                        manager=manager,
                        job_dir=Path(tmp) / "job",
                        params=params,
                        timeout=timeout,
                        job_id=job_id,
                        on_progress=on_progress,
                    )
                except EmulatorJobError as exc:
                    self._keep_job_record(job_id, exc.result)
                    self._finish_reprocess_job(db_job, "failed", {"error": str(exc)})
                    with self.writer_lock():  # type: ignore[attr-defined]
                        self.audit.record(
                            "reprocess",
                            user=self.settings.user,
                            objects=[f"raw:{row.sha256}"],
                            details={"emulator": manifest.ref, "job": job_id, "status": "failed"},
                        )
                    raise
                self._keep_job_record(job_id, result)
                provenance = result.provenance()  # while the console log is still there
                out_dir = Path(tmp) / "dicom"
                out_dir.mkdir()
                for path in result.outputs:
                    os.replace(path, out_dir / path.name)
                self.ingest([out_dir], link=False)  # type: ignore[attr-defined]
                uids = sorted(
                    {
                        str(pydicom.dcmread(p, stop_before_pixels=True).SeriesInstanceUID)
                        for p in out_dir.iterdir()
                    }
                )
        except BaseException as exc:
            if not isinstance(exc, EmulatorJobError):
                self._finish_reprocess_job(db_job, "failed", {"error": type(exc).__name__})
            raise
        finally:
            if own_manager:
                manager.close()
        provenance.update(
            {
                "raw_sha256": row.sha256,
                "chosen_by": chosen_by,
                "job_record": f"{JOBS_DIR}/{job_id}",
                "imagelake": __version__,
            }
        )
        report = ReprocessReport(row.sha256, manifest.ref, job_id, provenance=provenance)
        with self.writer_lock():  # type: ignore[attr-defined]
            with self.db.begin() as conn:
                for uid in uids:
                    report.link_ids.append(
                        record_link(
                            conn,
                            row.sha256,
                            uid,
                            method="emulator",
                            user=self.settings.user,
                            evidence=[{"rule": "emulator", "provenance": provenance}],
                        )
                    )
            report.series_instance_uids = uids
            self.refresh()  # type: ignore[attr-defined]
            self.audit.record(
                "reprocess",
                user=self.settings.user,
                objects=[f"raw:{row.sha256}", *(f"series:{u}" for u in uids)],
                details={
                    "emulator": manifest.ref,
                    "job": job_id,
                    "image_sha256": provenance["image_sha256"],
                    "status": "ok",
                },
            )
        report.seconds = time.perf_counter() - started
        self._finish_reprocess_job(
            db_job,
            "done",
            {"series": uids, "duration_s": provenance["duration_s"], "emulator": manifest.ref},
        )
        return report

    # -- viability ---------------------------------------------------------------------------
    def viability(self, *, alert: bool = True) -> pd.DataFrame:
        """Every raw file with its path to pixels.

        Columns: ``sha256, format, manufacturer, model, software_version, path, via,
        detail``. ``path`` is ``reader`` (this library decodes the file and has a reference
        reconstruction for it), ``emulator`` (a registered emulator version reconstructs
        it; ``detail`` says whether its image is in the image store), ``arrays`` (decoded,
        but no reconstruction to pixels here) or ``none``. With ``alert``, each ``none``
        raises (or refreshes) a ``raw_not_viable`` alert.
        """
        from imagelake.emulators import ImageStore
        from imagelake.recon import reconstructors_for

        raw = model.raw_file
        with self.db.connect() as conn:
            rows = conn.execute(sa.select(raw).order_by(raw.c.id)).all()
        try:
            registry: EmulatorRegistry | None = self.emulator_registry()
        except ConfigError:
            registry = None
        images = ImageStore(self.settings.emulator_images)
        out = []
        for row in rows:
            meta = row.meta or {}
            decoded = bool(meta.get("arrays")) and not meta.get("decode_error")
            arrays = list(meta.get("arrays") or {})
            refused = ""
            methods = []
            for method in reconstructors_for(str(row.format)) if decoded else []:
                why_not = method.refusal(arrays)
                if why_not:
                    refused = refused or why_not
                else:
                    methods.append(method)
            entry = {
                "sha256": row.sha256,
                "format": row.format,
                "manufacturer": row.manufacturer,
                "model": row.model,
                "software_version": row.software_version,
            }
            if methods:
                out.append({**entry, "path": "reader", "via": methods[0].name, "detail": ""})
                continue
            manifest = None
            scanner = " ".join(
                str(v) for v in (row.manufacturer, row.model, row.software_version) if v
            )
            why = f"no emulator reads {row.format} from {scanner or 'an unnamed scanner'}"
            if registry is not None:
                try:
                    manifest, _ = self._emulator_for(row, "auto", registry)
                except ConfigError as exc:
                    why = str(exc)  # several emulators claim it: the admin must choose
                except ImagelakeError:
                    pass
            if manifest is not None:
                present = _image_present(images, manifest)
                out.append(
                    {
                        **entry,
                        "path": "emulator",
                        "via": manifest.ref,
                        "detail": "image ready" if present else "image not in the store",
                    }
                )
                continue
            if decoded:
                out.append({**entry, "path": "arrays", "via": row.format, "detail": refused or why})
                continue
            out.append({**entry, "path": "none", "via": "", "detail": why})
            if alert:
                self._not_viable_alert(row, why)
        columns = ["sha256", "format", "manufacturer", "model", "software_version", "path",
                   "via", "detail"]  # fmt: skip
        return pd.DataFrame(out, columns=columns)

    # -- helpers -----------------------------------------------------------------------------
    def _restore_members(self, row: Any, folder: Path) -> dict[str, Path]:
        """The raw file's original files under neutral names (``<sha12>-<n><ext>``): file
        names can carry identity, and they reach the guest and its logs."""
        from imagelake.store import restore_original

        paths = restore_original(self.fs, row.store_path, folder)
        named: dict[str, Path] = {}
        for n, path in enumerate(sorted(paths, key=lambda p: p.name)):
            ext = "".join(Path(path).suffixes[-1:])[:16]
            named[f"{row.sha256[:12]}-{n:04d}{ext}"] = Path(path)
        return named

    def _not_viable_alert(self, row: Any, why: str) -> None:
        key = f"{row.manufacturer or '?'}|{row.model or '?'}|{row.software_version or '?'}|{row.format}"
        message = (
            f"Raw file sha256:{row.sha256[:12]} ({row.format}, {row.manufacturer or '?'} "
            f"{row.model or '?'} software {row.software_version or 'not stated'}) has no path "
            f"to pixels: {why}"
        )
        with self.db.begin() as conn:
            upsert_alert(
                conn,
                "raw_not_viable",
                key,
                message,
                details={"raw_sha256": row.sha256, "format": row.format},
            )

    def _start_reprocess_job(
        self, sha256: str, emulator: str, job_id: str, params: dict[str, Any]
    ) -> int:
        with self.db.begin() as conn:
            res = conn.execute(
                sa.insert(model.job).values(
                    kind="reprocess",
                    status="running",
                    user=self.settings.user,
                    params={
                        "raw_sha256": sha256,
                        "emulator": emulator,
                        "job_id": job_id,
                        "params": params,
                    },
                    summary={},
                    started_at=utcnow(),
                )
            )
            return int(res.inserted_primary_key[0])  # type: ignore[index]

    def _finish_reprocess_job(self, db_job: int, status: str, summary: dict[str, Any]) -> None:
        with self.db.begin() as conn:
            conn.execute(
                sa.update(model.job)
                .where(model.job.c.id == db_job)
                .values(status=status, summary=summary, finished_at=utcnow())
            )

    def _keep_job_record(self, job_id: str, result: Any) -> None:
        """``jobs/<job id>/``: console.log, result.json and provenance.json, in the lake."""
        folder = f"{JOBS_DIR}/{job_id}"
        try:
            console = result.run.console_log.read_bytes()
        except OSError:
            console = b""
        self.fs.write_atomic(f"{folder}/console.log", console)
        outcome = result.outcome
        if outcome is not None:
            self.fs.write_atomic(
                f"{folder}/result.json", json.dumps(dict(outcome.result), indent=2).encode()
            )
        prov = result.provenance()
        prov.pop("console_log_tail", None)
        prov["status"] = "ok" if result.ok else "failed"
        prov["message"] = result.message
        self.fs.write_atomic(f"{folder}/provenance.json", json.dumps(prov, indent=2).encode())


def _revision(meta: dict[str, Any], fmt: str) -> int | None:
    """The raw format revision a reader recorded (``revision`` or ``<format>_revision``)."""
    for where in (meta, meta.get("extra") or {}):
        for key in ("revision", f"{fmt}_revision"):
            value = where.get(key) if isinstance(where, dict) else None
            if isinstance(value, int) and not isinstance(value, bool):
                return value
    return None


def _reads(manifest: Any, fmt: str, revision: int | None) -> bool:
    """Whether ``manifest`` reads this format and revision (scanner lists aside)."""
    if fmt not in manifest.raw_formats:
        return False
    revisions = manifest.format_revisions.get(fmt)
    return revision is None or revisions is None or revision in revisions


def _version_key(version: str) -> tuple[tuple[int, Any], ...]:
    from imagelake.emulators._manifest import _version_key as key

    return key(version)


def _job_id() -> str:
    from imagelake.emulators import new_job_id

    return new_job_id()


def _image_present(images: Any, manifest: Any) -> bool:
    try:
        images.verify(manifest)
    except Exception:  # noqa: BLE001 - missing, corrupt or unreachable: not ready either way
        return False
    return True
