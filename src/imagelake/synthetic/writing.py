"""Write synthetic series to files, uncompressed or in a lossless compressed transfer syntax."""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Literal

import pydicom
from pydicom.dataset import Dataset
from pydicom.pixels.encoders import (
    JPEG2000LosslessEncoder,
    JPEGLSLosslessEncoder,
    RLELosslessEncoder,
)
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

from imagelake.errors import ConfigError

__all__ = ["LOSSLESS_TRANSFER_SYNTAXES", "compress", "transfer_syntax_uid", "write_series"]

#: Transfer syntaxes a synthetic series can be written in, by short name.
LOSSLESS_TRANSFER_SYNTAXES: Mapping[str, UID] = MappingProxyType(
    {
        "explicit": ExplicitVRLittleEndian,
        "jpeg-ls": JPEGLSLossless,
        "jpeg2000": JPEG2000Lossless,
        "rle": RLELossless,
    }
)

# The plugin the brief benchmarks for each syntax; any other available plugin is a fallback.
_PREFERRED_PLUGIN = {
    JPEGLSLossless: (JPEGLSLosslessEncoder, "pyjpegls"),
    JPEG2000Lossless: (JPEG2000LosslessEncoder, "pylibjpeg"),
    RLELossless: (RLELosslessEncoder, "pylibjpeg"),
}


def transfer_syntax_uid(transfer_syntax: str) -> UID:
    """The UID of a short name (``"jpeg-ls"``, ``"jpeg2000"``, ``"rle"``, ``"explicit"``) or UID.

    Raises
    ------
    imagelake.errors.ConfigError
        If it names none of :data:`LOSSLESS_TRANSFER_SYNTAXES`.
    """
    if transfer_syntax in LOSSLESS_TRANSFER_SYNTAXES:
        return LOSSLESS_TRANSFER_SYNTAXES[transfer_syntax]
    if transfer_syntax in LOSSLESS_TRANSFER_SYNTAXES.values():
        return UID(transfer_syntax)
    choices = ", ".join(f"{k!r} ({v})" for k, v in LOSSLESS_TRANSFER_SYNTAXES.items())
    raise ConfigError(f"unsupported transfer syntax {transfer_syntax!r}; choose one of {choices}")


def compress(ds: Dataset, transfer_syntax: str) -> Dataset:
    """A copy of ``ds`` with its pixel data in a lossless transfer syntax.

    Parameters
    ----------
    ds
        An uncompressed image dataset (e.g. from :func:`~imagelake.synthetic.ct_series`).
    transfer_syntax
        A short name or UID from :data:`LOSSLESS_TRANSFER_SYNTAXES`: JPEG-LS Lossless
        (pyjpegls), JPEG 2000 Lossless (pylibjpeg-openjpeg) or RLE Lossless (pylibjpeg-rle).

    Returns
    -------
    pydicom.Dataset
        The copy; ``ds`` is left as it was. SOPInstanceUID is kept: lossless compression
        yields the same instance, so a benchmark can pair the two files.
    """
    uid = transfer_syntax_uid(transfer_syntax)
    out = copy.deepcopy(ds)
    if uid == ExplicitVRLittleEndian:
        if out.file_meta.TransferSyntaxUID.is_compressed:
            out.decompress(generate_instance_uid=False)
        return out
    encoder, plugin = _PREFERRED_PLUGIN[uid]
    chosen = plugin if plugin in encoder.available_plugins else ""
    out.compress(uid, encoding_plugin=chosen, generate_instance_uid=False)
    return out


def write_series(
    datasets: Iterable[Dataset],
    out_dir: str | os.PathLike[str],
    *,
    naming: Literal["uid", "number"] = "uid",
    transfer_syntax: str | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Write datasets as DICOM files (PS3.10 format, ``enforce_file_format=True``).

    Parameters
    ----------
    datasets
        Instances to write, consumed lazily (a generator from :func:`ct_series` is fine).
    out_dir
        Folder to write into; created if missing.
    naming
        ``"uid"``: ``<SOPInstanceUID>.dcm``; ``"number"``: ``<SeriesNumber:03>_<InstanceNumber:05>.dcm``.
    transfer_syntax
        Compress each instance first (see :func:`compress`); ``None`` writes them as they are.
    overwrite
        Replace existing files; by default an existing file is an error, which also catches
        two instances mapped to one numbered name.

    Returns
    -------
    list of pathlib.Path
        The files written, in input order.

    Raises
    ------
    FileExistsError
        If a file exists and ``overwrite`` is false.
    imagelake.errors.ConfigError
        If ``naming`` or ``transfer_syntax`` is unknown.
    """
    if naming not in ("uid", "number"):
        raise ConfigError(f"naming must be 'uid' or 'number', got {naming!r}")
    if transfer_syntax is not None:
        transfer_syntax_uid(transfer_syntax)  # fail before writing anything
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for ds in datasets:
        if transfer_syntax is not None:
            ds = compress(ds, transfer_syntax)
        if naming == "uid":
            name = f"{ds.SOPInstanceUID}.dcm"
        else:
            name = f"{int(ds.SeriesNumber or 0):03d}_{int(ds.InstanceNumber or 0):05d}.dcm"
        path = folder / name
        try:
            with open(path, "wb" if overwrite else "xb") as fh:
                pydicom.dcmwrite(fh, ds, enforce_file_format=True)
        except FileExistsError:
            raise FileExistsError(
                f"{path} exists; pass overwrite=True to replace it, or write to an empty folder"
            ) from None
        paths.append(path)
    return paths
