"""One emulator job from start to end: job disk → VM → outcome.

Glue between :mod:`._jobdisk` (the protocol) and :class:`EmulatorManager` (the VM); what to do
with the outputs (ingest, link, audit) is the lake's business
(:meth:`imagelake.lake.Lake.reprocess`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imagelake.emulators._jobdisk import (
    FileSystem,
    JobOutcome,
    JobRequest,
    build_job_disk,
    read_job_disk,
)
from imagelake.errors import ImagelakeError

if TYPE_CHECKING:
    from imagelake.emulators._manager import EmulatorManager, ProgressCallback, VMRun
    from imagelake.emulators._manifest import EmulatorManifest

__all__ = [
    "EmulatorJobError",
    "EmulatorJobResult",
    "build_image",
    "new_job_id",
    "run_emulator_job",
]

#: the tail of the console log kept in provenance (the whole log stays with the job)
CONSOLE_TAIL = 4096


class EmulatorJobError(ImagelakeError, RuntimeError):
    """An emulator job did not give a result: refused, failed, timed out or never ran.

    ``result`` (an :class:`EmulatorJobResult`) holds the VM's end and the guest's answer.
    """

    def __init__(self, message: str, result: EmulatorJobResult) -> None:
        super().__init__(message)
        self.result = result


@dataclass
class EmulatorJobResult:
    """What one job gave: the VM's end, the guest's answer and where the files are."""

    job_id: str
    emulator: str
    job_dir: Path
    run: VMRun
    outcome: JobOutcome | None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.run.ok and self.outcome is not None and self.outcome.ok

    @property
    def outputs(self) -> tuple[Path, ...]:
        return self.outcome.outputs if self.outcome is not None else ()

    @property
    def message(self) -> str:
        if self.outcome is not None and self.run.ok:
            return self.outcome.message
        return self.run.message

    def console_tail(self, limit: int = CONSOLE_TAIL) -> str:
        try:
            data = self.run.console_log.read_bytes()
        except OSError:
            return ""
        return data[-limit:].decode("utf-8", "replace")

    def console_sha256(self) -> str | None:
        try:
            return hashlib.sha256(self.run.console_log.read_bytes()).hexdigest()
        except OSError:
            return None

    def provenance(self) -> dict[str, Any]:
        """Everything a link to the outputs should carry (JSON-able)."""
        outcome = self.outcome
        return {
            "job_id": self.job_id,
            "emulator": self.emulator,
            "image_sha256": dict(self.run.image_digests),
            "domain_type": self.run.domain_type,
            "params": dict(self.params),
            "duration_s": self.run.duration_s,
            "software_version": outcome.software_version if outcome else None,
            "guest_log": (outcome.log[-CONSOLE_TAIL:] if outcome else ""),
            "console_log_sha256": self.console_sha256(),
            "console_log_tail": self.console_tail(),
        }


def new_job_id() -> str:
    """A fresh job id (``job-`` and 12 hex digits)."""
    return f"job-{uuid.uuid4().hex[:12]}"


def run_emulator_job(
    manifest: EmulatorManifest,
    inputs: Mapping[str, str | os.PathLike[str]],
    *,
    manager: EmulatorManager,
    job_dir: str | os.PathLike[str],
    params: Mapping[str, Any] | None = None,
    timeout: float | None = None,
    job_id: str | None = None,
    on_progress: ProgressCallback | None = None,
) -> EmulatorJobResult:
    """Run one job: build the job disk, boot the emulator on it, read the result back.

    Parameters
    ----------
    manifest
        The emulator version.
    inputs
        ``name -> path`` of the raw files, as the guest will see them under ``input/``
        (give neutral names: they reach the guest and its logs).
    manager
        Runs the VM.
    job_dir
        The job's folder: ``console.log``, ``result/`` (result.json, DONE, ``output/``).
        The job disk itself is deleted at the end.
    params
        Parameters for the guest program (``job.json``).
    timeout
        Hard limit in seconds (default: the manifest's).

    Raises
    ------
    EmulatorJobError
        The guest refused the input, broke the protocol, or the VM timed out or failed.
    """
    folder = Path(job_dir)
    folder.mkdir(parents=True, exist_ok=True)
    job_id = job_id or new_job_id()
    request = JobRequest(job_id=job_id, emulator=manifest.ref, params=dict(params or {}))
    fs: FileSystem = "fat" if manifest.job.transport == "disk-fat" else "ext4"
    disk = folder / "job.img"
    try:
        build_job_disk(request, dict(inputs), disk, fs=fs)
        run = manager.run_job(
            manifest, disk, job_dir=folder, timeout=timeout, on_progress=on_progress
        )
        outcome = None
        if run.ok:
            outcome = read_job_disk(disk, folder / "result", fs=fs)
    finally:
        disk.unlink(missing_ok=True)
    result = EmulatorJobResult(job_id, manifest.ref, folder, run, outcome, dict(params or {}))
    if not run.ok:
        raise EmulatorJobError(f"{manifest.ref} job {job_id}: {run.status}: {run.message}", result)
    assert outcome is not None
    if not outcome.ok:
        raise EmulatorJobError(
            f"{manifest.ref} job {job_id} {outcome.status}: {outcome.message or 'no message'}",
            result,
        )
    return result


def clear_job(result: EmulatorJobResult) -> None:
    """Delete a job's folder (after its outputs were ingested and its log recorded)."""
    shutil.rmtree(result.job_dir, ignore_errors=True)


def build_image(manifest: EmulatorManifest, images: Any, *, timeout: float = 600) -> dict[str, str]:
    """Build an emulator image the project builds itself (``image.build`` in its manifest)
    and register it in ``images`` (an :class:`ImageStore`); return role -> sha256.

    Nothing happens when the store holds the image already. The build script runs from the
    repository checkout the manifests came from; images of vendors (no ``build``) are
    registered by an admin with ``imagelake vm register`` instead.
    """
    import subprocess
    import tempfile

    from imagelake.emulators._manifest import default_manifest_dir

    if images.registered(manifest):
        return dict(images.expected_digests(manifest))
    if not manifest.image.build:
        raise ImagelakeError(
            f"{manifest.ref} is not built by imagelake: register its image files with "
            f"`imagelake vm register` (manifest {manifest.ref})"
        )
    script = (default_manifest_dir().parent / manifest.image.build).resolve()
    if not script.is_file():
        raise ImagelakeError(
            f"{manifest.ref}: build script {manifest.image.build} not found next to the "
            f"manifests ({script}); build from a checkout of the imagelake repository"
        )
    with tempfile.TemporaryDirectory(prefix="imagelake-image-build-") as tmp:
        proc = subprocess.run(
            ["bash", str(script), "--version", manifest.version, "--out", tmp],
            capture_output=True, text=True, check=False, timeout=timeout,
        )  # fmt: skip
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise ImagelakeError(f"building {manifest.ref} failed: {' | '.join(tail)}")
        return dict(images.register(manifest, Path(tmp) / images.folder(manifest)))
