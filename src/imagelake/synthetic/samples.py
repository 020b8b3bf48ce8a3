"""Real raw sample files: made by the field's own tools, or fetched from the packages that ship them.

- :func:`ismrmrd_phantom` runs Debian's ``ismrmrd_generate_cartesian_shepp_logan``
  (package ``ismrmrd-tools``) and can stamp scanner and study metadata into the XML header,
  so the file looks like it came from a scanner session (for linking demos and tests).
- :func:`twix_samples` fetches the Siemens TWIX examples (``gre.dat``, ``epi.dat``) shipped
  in twixtools' source distribution, with ``pip download`` into a cache folder.

These are real files written by real tools; only the phantom's metadata is SYNTHETIC.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from imagelake.errors import ConfigError

__all__ = ["TWIXTOOLS_SDIST_VERSION", "default_cache_dir", "ismrmrd_phantom", "twix_samples"]

#: the twixtools release whose sdist carries the example files we test against
TWIXTOOLS_SDIST_VERSION = "0.24"

_GENERATOR = "ismrmrd_generate_cartesian_shepp_logan"


def default_cache_dir() -> Path:
    """Where fetched samples are kept: ``$IMAGELAKE_CACHE`` or ``~/.cache/imagelake``."""
    root = os.environ.get("IMAGELAKE_CACHE") or Path.home() / ".cache" / "imagelake"
    return Path(root)


def ismrmrd_phantom(
    dest: str | os.PathLike[str],
    *,
    matrix: int = 64,
    coils: int = 4,
    oversampling: int = 2,
    repetitions: int = 1,
    noise: float = 0.05,
    metadata: Mapping[str, Mapping[str, Any]] | None = None,
) -> Path:
    """Write a Cartesian Shepp-Logan ISMRMRD file with Debian's ismrmrd-tools.

    ``metadata`` sets XML header sections, e.g.
    ``{"acquisitionSystemInformation": {"systemVendor": "SIEMENS", "systemModel": "Skyra",
    "deviceSerialNumber": "45123"}, "measurementInformation": {"frameOfReferenceUID": ...},
    "studyInformation": {"studyInstanceUID": ...}}`` (field names of ``ismrmrd.xsd``); it
    needs the ``raw`` extra (PyPI ``ismrmrd``).
    """
    tool = shutil.which(_GENERATOR)
    if tool is None:
        raise ConfigError(
            f"{_GENERATOR} is not installed; install the Debian package ismrmrd-tools "
            "(`sudo bash scripts/setup-system.sh`)"
        )
    out = Path(dest)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    cmd = [
        tool, "-o", os.fspath(tmp), "-m", str(matrix), "-c", str(coils),
        "-O", str(oversampling), "-r", str(repetitions), "-n", str(noise),
    ]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if run.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"{_GENERATOR} failed ({run.returncode}): {run.stderr.strip()[-500:]}")
    if metadata:
        _stamp_header(tmp, metadata)
    os.replace(tmp, out)
    return out


def _stamp_header(path: Path, metadata: Mapping[str, Mapping[str, Any]]) -> None:
    from imagelake._optional import import_optional

    ismrmrd = import_optional("ismrmrd", extra="raw")
    xsd = import_optional("ismrmrd.xsd", extra="raw")
    ds = ismrmrd.Dataset(os.fspath(path), "dataset", create_if_needed=False)
    try:
        header = xsd.CreateFromDocument(ds.read_xml_header())
        for section, values in metadata.items():
            current = getattr(header, section)
            if current is None:
                hint = typing.get_type_hints(type(header)).get(section)
                classes = [
                    a for a in typing.get_args(hint) if isinstance(a, type) and a is not type(None)
                ]
                if not classes:
                    raise ConfigError(f"cannot create ISMRMRD header section {section!r}")
                setattr(header, section, classes[0](**values))
                continue
            for key, value in values.items():
                setattr(current, key, value)
        ds.write_xml_header(xsd.ToXML(header))
    finally:
        ds.close()


def twix_samples(cache_dir: str | os.PathLike[str] | None = None) -> dict[str, Path]:
    """The TWIX example files of twixtools' sdist (``{"gre.dat": path, "epi.dat": path}``).

    Downloaded once with ``pip download --no-binary twixtools`` (PyPI must be reachable the
    first time) and unpacked into ``cache_dir``.
    """
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    folder = root / f"twixtools-{TWIXTOOLS_SDIST_VERSION}-example_data"
    names = ("gre.dat", "epi.dat")
    if all((folder / n).is_file() for n in names):
        return {n: folder / n for n in names}
    download = root / "downloads"
    download.mkdir(parents=True, exist_ok=True)
    sdist = download / f"twixtools-{TWIXTOOLS_SDIST_VERSION}.tar.gz"
    if not sdist.is_file():
        cmd = [
            sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary",
            "twixtools", f"twixtools=={TWIXTOOLS_SDIST_VERSION}", "-d", os.fspath(download),
        ]  # fmt: skip
        run = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if run.returncode != 0 or not sdist.is_file():
            raise RuntimeError(
                f"could not download the twixtools {TWIXTOOLS_SDIST_VERSION} sdist: "
                f"{run.stderr.strip()[-500:]}"
            )
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with tarfile.open(sdist) as tar:
        for member in tar.getmembers():
            base = member.name.rsplit("/", 1)[-1]
            if base in names and "/example_data/" in member.name and member.isfile():
                fh = tar.extractfile(member)
                assert fh is not None
                (tmp / base).write_bytes(fh.read())
    missing = [n for n in names if not (tmp / n).is_file()]
    if missing:
        raise RuntimeError(f"twixtools sdist has no example_data/{missing}")
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return {n: folder / n for n in names}
