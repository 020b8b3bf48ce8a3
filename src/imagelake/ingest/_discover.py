"""Find input files: folders (recursively), zip archives, DICOMDIR indexes."""

from __future__ import annotations

import os
import warnings
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import pydicom
from pydicom.fileset import FileSet

from imagelake.dicom import Source
from imagelake.errors import InvalidInputError

__all__ = ["discover"]

_SKIP_NAMES = {"DICOMDIR", ".DS_Store", "Thumbs.db"}


def _from_dicomdir(path: Path) -> Iterator[Source]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fileset = FileSet(pydicom.dcmread(path))
    for instance in fileset:
        yield Source(os.fspath(instance.path))


def _from_zip(path: Path) -> Iterator[Source]:
    try:
        with zipfile.ZipFile(path) as zf:
            names = [i.filename for i in zf.infolist() if not i.is_dir()]
    except zipfile.BadZipFile as exc:
        raise InvalidInputError(f"{path} is not a readable zip file: {exc}") from exc
    for name in sorted(names):
        base = name.rsplit("/", 1)[-1]
        if base in _SKIP_NAMES or base.startswith(".") or name.startswith("__MACOSX/"):
            continue
        yield Source(os.fspath(path), name)


def _from_path(path: Path) -> Iterator[Source]:
    if path.is_dir():
        for folder, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if name.startswith(".") or name in _SKIP_NAMES:
                    continue
                yield from _from_path(Path(folder) / name)
    elif path.name.upper() == "DICOMDIR":
        yield from _from_dicomdir(path)
    elif zipfile.is_zipfile(path) and path.suffix.lower() in {".zip", ""}:
        yield from _from_zip(path)
    elif path.is_file():
        yield Source(os.fspath(path))
    else:
        raise InvalidInputError(f"no such file or folder: {path}")


def discover(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Source]:
    """Every input file below ``paths``, each once, in a stable order.

    A folder is walked recursively (hidden files skipped); a ``.zip`` file yields its
    members; a DICOMDIR yields the files it references (a folder holding a DICOMDIR is
    walked like any folder, the DICOMDIR itself is an index and is skipped).
    """
    seen: set[tuple[str, str | None]] = set()
    for p in paths:
        for source in _from_path(Path(p).absolute()):
            key = (os.path.realpath(source.path), source.member)
            if key not in seen:
                seen.add(key)
                yield source
