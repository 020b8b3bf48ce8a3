"""USTB Ultrasound File Format (UFF): ultrasound RF channel data in HDF5, read with h5py.

Why UFF: it is the only open, documented, HDF5-based container for ultrasound channel
data with a reader on PyPI (``pyuff-ustb``), and the format of the UltraSound ToolBox
(USTB) in MATLAB, so the files we archive stay readable by the field's own tools. It is
read here with plain h5py; ``pyuff-ustb`` is only a test dependency.

Layout (as USTB and ``pyuff-ustb`` write it): every object is an HDF5 group whose attr
``class`` names its type (``uff.channel_data``, ``uff.linear_array``, ``uff.wave``...);
numbers are datasets with ``class='single'`` (complex ones are groups with ``real`` and
``imag``), strings are ``class='char'`` uint16 character codes. A ``uff.channel_data``
group holds ``data`` stored in MATLAB order, i.e. on disk ``(frame, wave, channel,
time)`` (MATLAB drops trailing singleton dims, so fewer dims may be stored), plus
``sampling_frequency``, ``initial_time``, ``sound_speed``, ``modulation_frequency``,
``probe`` and ``sequence``.

Arrays
------
``rf``
    The first ``uff.channel_data`` group (``channel_data`` if present): float32 (or
    complex64 for IQ data stored complex), dims ``("frame", "wave", "channel", "time")``,
    coordinate ``time`` in seconds (``initial_time + n / sampling_frequency``), attrs
    ``sampling_frequency``, ``sound_speed``, ``initial_time``, ``modulation_frequency``,
    ``PRF``, the probe (``probe_class``, ``n_elements``, ``pitch``, ``element_width``,
    ``element_height``, ``element_x``/``_y``/``_z`` in metres) and the transmit
    ``waves`` (wavefront, source azimuth/elevation/distance, delay; a plane wave's infinite
    source distance is given as ``None``).
``rf_<name>``
    Further ``uff.channel_data`` groups, the same way.

UFF carries little scanner identity: ``name``, ``info``, ``version`` and ``reference``
strings of the channel data go to ``extra``; ``manufacturer``/``model`` are read from
root or channel-data attributes of those names when present, else ``None``.
"""

from __future__ import annotations

import contextlib
import math
import os
from typing import Any

import numpy as np

from imagelake._optional import import_optional
from imagelake.formats._base import (
    RawArray,
    RawContent,
    RawFormat,
    RawFormatError,
    RawMeta,
    read_head,
)
from imagelake.formats._hdf5 import open_hdf5

__all__ = ["UffFormat"]

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_FEATURE = "reading USTB UFF files"
_DIMS = ("frame", "wave", "channel", "time")
_WAVEFRONTS = {0: "plane", 1: "spherical", 2: "photoacoustic"}
_STRINGS = ("name", "info", "version", "reference", "author")


def _h5py() -> Any:
    return import_optional("h5py", extra="raw", feature=_FEATURE)


def _open_h5(path: str | os.PathLike[str]) -> contextlib.AbstractContextManager[Any]:
    return open_hdf5(path, feature=_FEATURE)


def _class(obj: Any) -> str:
    value = obj.attrs.get("class", "")
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if isinstance(value, np.ndarray):
        value = value.tolist()
        value = value[0] if isinstance(value, list) and value else value
    return str(value)


def _channel_groups(h5: Any) -> list[str]:
    """Root-level groups of class ``uff.channel_data`` (``channel_data`` first)."""
    h5py = _h5py()
    names = [
        str(n) for n in h5 if isinstance(h5[n], h5py.Group) and _class(h5[n]) == "uff.channel_data"
    ]
    return sorted(names, key=lambda n: (n != "channel_data", n))


def _read_value(obj: Any) -> Any:
    """A UFF number or string: numpy array (complex when stored real/imag) or str."""
    h5py = _h5py()
    cls = _class(obj)
    if isinstance(obj, h5py.Group):
        if "real" in obj and "imag" in obj:
            return np.asarray(obj["real"][...]) + 1j * np.asarray(obj["imag"][...])
        raise TypeError(f"group {obj.name} is not a number")
    data = obj[...]
    if cls == "char":
        return "".join(chr(int(c)) for c in np.ravel(data))
    return np.asarray(data)


def _scalar(group: Any, key: str) -> float | None:
    if key not in group:
        return None
    value = np.asarray(_read_value(group[key]))
    if value.size != 1:
        return None
    x = value.reshape(()).item()
    return float(x.real) if isinstance(x, complex) else float(x)


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def _text(group: Any, key: str) -> str | None:
    if key in group and _class(group[key]) == "char":
        return str(_read_value(group[key])).strip() or None
    value = group.attrs.get(key)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        return value.strip() or None
    return None


class UffFormat(RawFormat):
    """USTB UFF ultrasound channel data: HDF5 groups of class ``uff.channel_data``."""

    name = "ustb-uff"
    description = "Ultrasound RF channel data in USTB's Ultrasound File Format (HDF5)"
    modality = "US"
    patterns = ("*.uff", "*.h5")
    magic = ((0, HDF5_MAGIC),)
    extra = "raw"
    priority = 20

    def guess_can_open(self, path: str | os.PathLike[str], head: bytes | None = None) -> bool:
        if head is None:
            head = read_head(path)
        if not self.matches_magic(head):
            return False
        p = os.fspath(path)
        try:
            h5py = import_optional("h5py", extra="raw")
        except ImportError:
            return p.lower().endswith(".uff")
        try:
            with h5py.File(p, "r") as h5:
                return bool(_channel_groups(h5))
        except OSError:
            # truncated: claim .uff files by name so open() reports them as corrupt
            return p.lower().endswith(".uff")

    def open(self, path: str | os.PathLike[str]) -> RawContent:
        p = os.fspath(path)
        with _open_h5(p) as h5:
            groups = _channel_groups(h5)
            if not groups:
                raise RawFormatError(f"{p}: HDF5 file has no group of class 'uff.channel_data'")
            arrays: dict[str, RawArray] = {}
            for i, gname in enumerate(groups):
                name = "rf" if i == 0 else f"rf_{gname}"
                try:
                    arrays[name] = self._array(p, name, h5[gname])
                except RawFormatError:
                    raise
                except (KeyError, TypeError, ValueError, OSError) as exc:
                    raise RawFormatError(f"{p}: UFF group {gname!r} is malformed: {exc}") from exc
            first = h5[groups[0]]
            extra: dict[str, Any] = {"channel_data_groups": groups}
            for key in _STRINGS:
                value = _text(first, key)
                if value is not None:
                    extra[f"uff_{key}"] = value
            version = _text(h5, "version")
            if version:
                extra["uff_file_version"] = version
            meta = RawMeta(
                modality="US",
                manufacturer=_text(first, "manufacturer") or _text(h5, "manufacturer"),
                model=_text(first, "model") or _text(h5, "model"),
                software_version=_text(first, "software_version") or _text(h5, "software_version"),
                device_serial=_text(first, "device_serial") or _text(h5, "device_serial"),
                extra=extra,
            )
        return RawContent(format=self.name, meta=meta, arrays=arrays, members=(p,))

    def _array(self, path: str, name: str, group: Any) -> RawArray:
        h5py = _h5py()
        if "data" not in group:
            raise RawFormatError(f"{path}: UFF channel data {group.name!r} has no 'data'")
        node = group["data"]
        if isinstance(node, h5py.Group):
            if "real" not in node or "imag" not in node:
                raise RawFormatError(f"{path}: UFF complex data {node.name!r} lacks real/imag")
            stored = tuple(int(n) for n in node["real"].shape)
            dtype: np.dtype[Any] = np.dtype(np.complex64)
        else:
            stored = tuple(int(n) for n in node.shape)
            dtype = np.dtype(
                np.complex64 if np.iscomplexobj(np.empty(0, node.dtype)) else np.float32
            )
        if not 1 <= len(stored) <= 4:
            raise RawFormatError(
                f"{path}: UFF data {node.name!r} has {len(stored)} dims, expected 1-4"
            )
        shape = (1,) * (4 - len(stored)) + stored
        fs = _scalar(group, "sampling_frequency")
        t0 = _scalar(group, "initial_time") or 0.0
        attrs: dict[str, Any] = {
            "sampling_frequency": fs,
            "sound_speed": _scalar(group, "sound_speed"),
            "initial_time": t0,
            "modulation_frequency": _scalar(group, "modulation_frequency"),
            "PRF": _scalar(group, "PRF") if "PRF" in group else _scalar(group, "prf"),
            "layout": "UFF data stored (frame, wave, channel, time), MATLAB order",
        }
        if "probe" in group and isinstance(group["probe"], h5py.Group):
            attrs.update(_probe(group["probe"]))
        if "sequence" in group and isinstance(group["sequence"], h5py.Group):
            attrs["waves"] = _waves(group["sequence"])
        coords: dict[str, np.ndarray[Any, Any]] = {}
        if fs:
            coords["time"] = t0 + np.arange(shape[3], dtype=np.float64) / fs
        data_path = node.name

        def load() -> np.ndarray[Any, Any]:
            with _open_h5(path) as h5:
                try:
                    value = np.asarray(_read_value(h5[data_path]))
                except (KeyError, TypeError, OSError) as exc:
                    raise RawFormatError(
                        f"{path}: cannot read UFF data {data_path!r}: {exc}"
                    ) from exc
            return value.astype(dtype, copy=False).reshape(shape)

        return RawArray(
            name=name, dims=_DIMS, shape=shape, dtype=dtype, loader=load, attrs=attrs, coords=coords
        )


def _probe(probe: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"probe_class": _class(probe)}
    for key in ("pitch", "element_width", "element_height", "radius"):
        value = _scalar(probe, key)
        if value is not None:
            out[key] = value
    if "geometry" in probe:
        geometry = np.asarray(_read_value(probe["geometry"]), dtype=np.float64)
        if geometry.ndim == 2 and geometry.shape[0] != 7 and geometry.shape[1] == 7:
            geometry = geometry.T
        if geometry.ndim == 2 and geometry.shape[0] >= 3:
            out["n_elements"] = int(geometry.shape[1])
            out["element_x"] = geometry[0].tolist()
            out["element_y"] = geometry[1].tolist()
            out["element_z"] = geometry[2].tolist()
    if "n_elements" not in out:
        n = _scalar(probe, "N") or _scalar(probe, "N_elements")
        if n is not None:
            out["n_elements"] = int(n)
    return out


def _waves(sequence: Any) -> list[dict[str, Any]]:
    h5py = _h5py()
    items = [sequence[k] for k in sorted(sequence) if isinstance(sequence[k], h5py.Group)]
    if _class(sequence) == "uff.wave" and not items:
        items = [sequence]
    waves: list[dict[str, Any]] = []
    for wave in items:
        entry: dict[str, Any] = {}
        if "wavefront" in wave:
            code = int(np.ravel(_read_value(wave["wavefront"]))[0])
            entry["wavefront"] = _WAVEFRONTS.get(code, str(code))
        if "source" in wave and isinstance(wave["source"], h5py.Group):
            for key in ("azimuth", "elevation", "distance"):
                entry[f"source_{key}"] = _finite(_scalar(wave["source"], key))
        for key in ("delay", "sound_speed"):
            value = _scalar(wave, key)
            if value is not None:
                entry[key] = value
        waves.append(entry)
    return waves
