"""Job disks: how a job reaches an emulator's guest and how its results come back.

The host never mounts anything. It builds a small disk image from a folder (ext4 with
``mke2fs -d``, or FAT with mtools) holding::

    /job.json      {"job_id", "emulator": "id@version", "params", "inputs": ["input/<name>"],
                    "protocol": 1}
    /input/<name>  the raw files
    /output/       empty; the guest fills it

The guest (any OS) reconstructs, writes ``/output/*``, ``/result.json`` and, last, after a
sync, an empty ``/DONE``, then powers off. The host extracts ``result.json``, ``DONE`` and
``output/`` with ``debugfs`` (ext4) or ``mcopy`` (FAT) and judges the job:

- no ``DONE``: ``failed`` ("guest stopped without DONE"), whatever result.json says;
- ``DONE`` but no readable result.json, or an output outside ``output/``: ``failed``;
- otherwise the guest's own ``ok`` or ``error`` with its message.

A misbehaving guest gives a ``failed`` :class:`JobOutcome`, never an exception; errors are
raised only for the host's own problems (a missing tool, a bad argument, an unreadable disk).

Errors::

    ImagelakeError
    └── JobDiskError (RuntimeError)       the disk cannot be built or read
        └── MissingToolError              mke2fs/debugfs/mtools not installed (names the package)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from imagelake.errors import ImagelakeError

__all__ = [
    "JOB_DISK_LABEL",
    "JOB_PROTOCOL",
    "JobDiskError",
    "JobOutcome",
    "JobRequest",
    "MissingToolError",
    "build_job_disk",
    "read_job_disk",
]

#: version of the job-disk protocol written into job.json
JOB_PROTOCOL = 1
#: file-system label of job disks
JOB_DISK_LABEL = "IMGLJOB"

FileSystem = Literal["ext4", "fat"]
_FILESYSTEMS = ("ext4", "fat")
_TOOL_PACKAGES = {
    "mke2fs": "e2fsprogs",
    "debugfs": "e2fsprogs",
    "mformat": "mtools",
    "mmd": "mtools",
    "mcopy": "mtools",
    "mdir": "mtools",
}
_MIB = 1024 * 1024
_INPUT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
_EMULATOR_REF = re.compile(r"^[a-z0-9-]+@[^@\s]+$")


class JobDiskError(ImagelakeError, RuntimeError):
    """A job disk cannot be built or read."""


class MissingToolError(JobDiskError):
    """A system tool job disks need is not installed; the message names the Debian package."""


@dataclass(frozen=True)
class JobRequest:
    """What one emulator job asks for: written as ``job.json`` on the job disk.

    (``JobSpec`` in :mod:`imagelake.emulators` is the manifest's ``job:`` section, the
    transport and time limit, not a job.)

    Attributes
    ----------
    job_id
        The host's name of the job (letters, digits, ``._-``).
    emulator
        ``id@version`` of the emulator that runs it.
    params
        JSON-able parameters for the guest program (the reference emulator reads
        ``matrix``, ``fov_mm`` and ``series_number``).
    """

    job_id: str
    emulator: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,128}", self.job_id):
            raise JobDiskError(f"job_id {self.job_id!r} must be 1-128 letters, digits or ._-")
        if not _EMULATOR_REF.match(self.emulator):
            raise JobDiskError(f"emulator {self.emulator!r} must look like id@version")
        try:
            json.dumps(dict(self.params), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise JobDiskError(f"job params are not JSON-able: {exc}") from None

    def job_json(self, inputs: Sequence[str]) -> dict[str, Any]:
        """The ``job.json`` document for input names ``inputs``."""
        return {
            "job_id": self.job_id,
            "emulator": self.emulator,
            "params": dict(self.params),
            "inputs": [f"input/{name}" for name in inputs],
            "protocol": JOB_PROTOCOL,
        }


@dataclass(frozen=True)
class JobOutcome:
    """What a job disk says after the guest ran.

    Attributes
    ----------
    status
        ``"ok"`` or ``"error"`` as the guest reported it, or ``"failed"`` when the guest
        broke the protocol (no DONE, no result.json, outputs outside ``output/``...).
    done
        Whether the guest wrote ``DONE``.
    message
        The guest's message, or why the job failed.
    outputs
        The extracted output files (absolute paths under ``out_dir/output``), in the order
        result.json lists them.
    result
        result.json as the guest wrote it (``{}`` when absent or unreadable).
    out_dir
        Where the job disk was extracted.
    """

    status: str
    done: bool
    message: str
    outputs: tuple[Path, ...]
    result: Mapping[str, Any]
    out_dir: Path

    @property
    def ok(self) -> bool:
        return self.status == "ok" and self.done

    @property
    def log(self) -> str:
        value = self.result.get("log", "")
        return value if isinstance(value, str) else ""

    @property
    def software_version(self) -> str | None:
        value = self.result.get("software_version")
        return value if isinstance(value, str) else None


# -- tools ---------------------------------------------------------------------------------------
def _search_path() -> str:
    # sbin is not on a normal user's PATH, but mke2fs and debugfs live there
    return os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


def _tool(name: str) -> str:
    found = shutil.which(name, path=_search_path())
    if found is None:
        package = _TOOL_PACKAGES.get(name, name)
        raise MissingToolError(
            f"job disks need {name!r}, which is not installed: install the Debian package "
            f"{package} (apt-get install {package})"
        )
    return found


def _run(args: list[str], what: str, env: Mapping[str, str] | None = None) -> str:
    merged = {**os.environ, "LC_ALL": "C", **(env or {})}
    proc = subprocess.run(args, capture_output=True, text=True, env=merged, check=False)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise JobDiskError(f"{what} failed ({Path(args[0]).name} exit {proc.returncode}): "
                           + " / ".join(detail))  # fmt: skip
    return proc.stdout


_MTOOLS_ENV = {"MTOOLS_SKIP_CHECK": "1", "MTOOLS_NO_VFAT": "0"}


def _check_fs(fs: str) -> None:
    if fs not in _FILESYSTEMS:
        raise JobDiskError(f"job disk file system {fs!r} is not one of {', '.join(_FILESYSTEMS)}")


# -- building ------------------------------------------------------------------------------------
def _named_inputs(
    inputs: Sequence[str | os.PathLike[str]] | Mapping[str, str | os.PathLike[str]],
) -> dict[str, Path]:
    pairs = (
        [(name, Path(p)) for name, p in inputs.items()]
        if isinstance(inputs, Mapping)
        else [(Path(p).name, Path(p)) for p in inputs]
    )
    named: dict[str, Path] = {}
    for name, path in pairs:
        if not _INPUT_NAME.match(name) or name in (".", ".."):
            raise JobDiskError(
                f"input name {name!r} must be a plain file name (letters, digits, ._+-; "
                "no folders), so every guest OS can read it"
            )
        if name.lower() in {n.lower() for n in named}:
            raise JobDiskError(f"two inputs are named {name!r} (names must differ ignoring case)")
        if not path.is_file():
            raise JobDiskError(f"input {os.fspath(path)!r} is not a file")
        named[name] = path
    if not named:
        raise JobDiskError("a job needs at least one input file")
    return named


def build_job_disk(
    spec: JobRequest,
    inputs: Sequence[str | os.PathLike[str]] | Mapping[str, str | os.PathLike[str]],
    dest: str | os.PathLike[str],
    *,
    fs: FileSystem = "ext4",
    size: int | None = None,
) -> Path:
    """Write a job disk image (raw) at ``dest``, without mounting anything.

    Parameters
    ----------
    spec
        The job: written as ``/job.json``.
    inputs
        Raw files, copied to ``/input/<file name>``; or a mapping ``name -> path``.
    dest
        The image file to create (an existing file is replaced).
    fs
        ``"ext4"`` (``mke2fs -d``, e2fsprogs) or ``"fat"`` (mtools; for guests such as
        Windows that read no ext4).
    size
        Image size in bytes; default 64 MiB plus four times the inputs, rounded up to a MiB,
        which leaves room for the outputs. The file is sparse where the file system allows.

    Returns
    -------
    pathlib.Path
        ``dest``.
    """
    _check_fs(fs)
    named = _named_inputs(inputs)
    tools = ["mke2fs"] if fs == "ext4" else ["mformat", "mmd", "mcopy"]
    paths = {t: _tool(t) for t in tools}
    total = sum(p.stat().st_size for p in named.values())
    if size is None:
        size = 64 * _MIB + 4 * total
    size = -(-int(size) // _MIB) * _MIB
    if size < 8 * _MIB or size < total + 4 * _MIB:
        raise JobDiskError(f"job disk size {size} bytes is too small for {total} bytes of inputs")
    out = Path(dest)
    out.parent.mkdir(parents=True, exist_ok=True)
    document = json.dumps(spec.job_json(list(named)), indent=2) + "\n"
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.unlink(missing_ok=True)
    with open(tmp, "wb") as fh:
        fh.truncate(size)
    try:
        if fs == "ext4":
            with tempfile.TemporaryDirectory(prefix="imagelake-jobdisk-") as stage_dir:
                stage = Path(stage_dir)
                (stage / "input").mkdir()
                (stage / "output").mkdir()
                (stage / "job.json").write_text(document)
                for name, path in named.items():
                    shutil.copyfile(path, stage / "input" / name)
                _run(
                    [paths["mke2fs"], "-q", "-F", "-t", "ext4", "-L", JOB_DISK_LABEL,
                     "-E", "root_owner=0:0", "-d", str(stage), str(tmp)],
                    "mke2fs (building the ext4 job disk)",
                )  # fmt: skip
        else:
            image = str(tmp)
            _run([paths["mformat"], "-i", image, "-v", JOB_DISK_LABEL, "::"], "mformat",
                 _MTOOLS_ENV)  # fmt: skip
            _run([paths["mmd"], "-i", image, "::/input", "::/output"], "mmd", _MTOOLS_ENV)
            with tempfile.TemporaryDirectory(prefix="imagelake-jobdisk-") as stage_dir:
                job_json = Path(stage_dir) / "job.json"
                job_json.write_text(document)
                _run([paths["mcopy"], "-i", image, str(job_json), "::/job.json"], "mcopy",
                     _MTOOLS_ENV)  # fmt: skip
            for name, path in named.items():
                _run([paths["mcopy"], "-i", image, str(path), f"::/input/{name}"], "mcopy",
                     _MTOOLS_ENV)  # fmt: skip
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


# -- reading -------------------------------------------------------------------------------------
def _extract_ext4(disk: Path, into: Path) -> None:
    debugfs = _tool("debugfs")
    # one debugfs session, read-only (the default); missing files only print a warning
    commands = into / ".debugfs-commands"
    commands.write_text(
        f'dump /result.json "{into}/result.json"\n'
        f'dump /DONE "{into}/DONE"\n'
        f'rdump /output "{into}"\n'
    )
    try:
        _run([debugfs, "-f", str(commands), str(disk)], "debugfs (reading the ext4 job disk)")
    finally:
        commands.unlink(missing_ok=True)


def _extract_fat(disk: Path, into: Path) -> None:
    mdir, mcopy = _tool("mdir"), _tool("mcopy")
    listing = _run([mdir, "-b", "-i", str(disk), "::/"], "mdir (reading the FAT job disk)",
                   _MTOOLS_ENV)  # fmt: skip
    present = {PurePosixPath(line.strip()).name.lower() for line in listing.splitlines()}
    for name in ("result.json", "DONE", "output"):
        if name.lower() not in present:
            continue
        args = [mcopy, "-n", "-i", str(disk)]
        if name == "output":
            args.append("-s")
        _run([*args, f"::/{name}", str(into)], f"mcopy of {name}", _MTOOLS_ENV)
    # FAT has no case: accept what the guest wrote as "done" or "Result.JSON" too
    for entry in list(into.iterdir()):
        for wanted in ("result.json", "DONE", "output"):
            if entry.name != wanted and entry.name.lower() == wanted.lower():
                entry.rename(into / wanted)


def _safe_output(name: Any, out_dir: Path) -> Path | str:
    """The extracted file an ``outputs`` entry names, or why it is refused."""
    if not isinstance(name, str) or not name:
        return f"result.json lists an output that is not a file name: {name!r}"
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or len(pure.parts) < 2 or pure.parts[0] != "output":
        return f"result.json lists an output outside output/: {name!r}"
    path = out_dir.joinpath(*pure.parts)
    root = (out_dir / "output").resolve()
    if path.is_symlink() or not path.resolve().is_relative_to(root):
        return f"output {name!r} is a link or leads outside output/"
    if not path.is_file():
        return f"result.json lists output {name!r}, which the job disk does not hold"
    return path


def read_job_disk(
    disk: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    fs: FileSystem = "ext4",
) -> JobOutcome:
    """Extract a job disk's result into ``out_dir`` and judge the job.

    ``out_dir`` receives ``result.json``, ``DONE`` (when the guest wrote them) and
    ``output/``; the inputs are not copied back. See the module docstring for the rules.
    """
    _check_fs(fs)
    image = Path(disk)
    if not image.is_file():
        raise JobDiskError(f"job disk {os.fspath(image)!r} does not exist")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("result.json", "DONE"):
        (out / stale).unlink(missing_ok=True)
    if (out / "output").exists():
        shutil.rmtree(out / "output")
    if fs == "ext4":
        _extract_ext4(image, out)
    else:
        _extract_fat(image, out)
    out = out.resolve()
    done = (out / "DONE").is_file()
    result: dict[str, Any] = {}
    problem = ""
    result_path = out / "result.json"
    if result_path.is_file() and not result_path.is_symlink():
        try:
            loaded = json.loads(result_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            problem = f"result.json is not JSON: {exc}"
        else:
            if isinstance(loaded, dict):
                result = loaded
            else:
                problem = "result.json is not a JSON object"
    else:
        problem = "the guest wrote no result.json"

    def outcome(status: str, message: str, outputs: Sequence[Path] = ()) -> JobOutcome:
        return JobOutcome(status, done, message, tuple(outputs), result, out)

    guest_message = str(result.get("message", "")) if result else ""
    if not done:
        why = "guest stopped without DONE"
        return outcome("failed", f"{why}: {guest_message}" if guest_message else why)
    if problem:
        return outcome("failed", problem)
    status = result.get("status")
    if status not in ("ok", "error"):
        return outcome("failed", f"result.json status {status!r} is not 'ok' or 'error'")
    listed = result.get("outputs", [])
    if not isinstance(listed, list):
        return outcome("failed", "result.json outputs is not a list")
    outputs: list[Path] = []
    for name in listed:
        checked = _safe_output(name, out)
        if isinstance(checked, str):
            return outcome("failed", checked)
        outputs.append(checked)
    return outcome(str(status), guest_message or str(status), outputs)
