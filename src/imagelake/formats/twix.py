"""Siemens TWIX raw MR data (``meas_*.dat``), VB and VD/VE, read with twixtools.

Layout: a VD/VE file starts with a multi-raid header (``u32 hdSize_`` < 10000, ``u32
count_`` ≤ 64 measurements, then 64 entries ``{measId_, fileId_, off_, len_, patName_,
protName_}``); each measurement is a text header (``Config``, ``Dicom``, ``Meas``,
``MeasYaps``, ``Phoenix``, ``Spice`` buffers) followed by measurement data blocks (MDBs)
ending in an ``ACQEND`` block. A VB file is a single measurement without the raid header.

twixtools does not notice a truncated or corrupt file (it prints a warning and returns
garbage blocks), so :meth:`TwixFormat.open` checks the raid header against the file size,
that every measurement ends with ``ACQEND``, that no block was parsed twice, and that
twixtools printed no warning; anything wrong raises :class:`RawFormatError`.

Arrays
------
Read with ``twixtools.map_twix(twixtools.read_twix(path, keep_acqend=True))`` and
``twix_array[:]`` with twixtools' default flags (no oversampling removal, segments and
averages averaged, reflected EPI lines flipped by twixtools): the values are exactly
twixtools' own. Of the last measurement (the imaging scan):

``kspace``
    ``map_twix(...)[-1]["image"]``, complex64. twixtools' dims ``Ide .. Col`` are renamed
    (``Col``→``kx``, ``Lin``→``ky``, ``Cha``→``coil``, ``Par``→``kz``, ``Sli``→``slice``,
    ``Rep``→``repetition``, ``Eco``→``echo``, ``Phs``→``phase``, ``Set``→``set``,
    ``Ave``→``average``, ``Seg``→``segment``, ``Ida``..``Ide``→``ida``..``ide``),
    singleton dims other than coil/ky/kx are dropped, and ``coil`` is moved before
    ``ky`` so the dims end in ``("coil", "ky", "kx")`` like ISMRMRD's. Attribute
    ``twixtools_dims`` names the source dims in the array's order.
other scan kinds
    ``phasecorr``, ``refscan``, ``noise``, ``rt_feedback``... of the last measurement
    become arrays of the same name with the same renaming.
earlier measurements
    A multi-raid file's earlier measurements (noise adjust scans...) become arrays named
    ``meas<i>_<kind>`` (``meas0_noise``), and their protocol names are listed in
    ``extra["measurements"]``.

Metadata comes from the ``Dicom`` and ``Meas`` buffers. Identifiers are read from the
raw header text, because twixtools turns numeric-looking strings into floats (the
device serial ``"45385"`` becomes ``45385.0``). The acquisition date is the one embedded
in ``ExamMemoryUID`` (``6_0_66327775_20210622_151635_650``) or the frame of reference
UID, the time that of the first imaging block's ``TimeStamp`` (2.5 ms ticks since
midnight), else the exam's time.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import warnings
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from imagelake._optional import import_optional
from imagelake.formats._base import (
    PatientIdentity,
    RawArray,
    RawContent,
    RawFormat,
    RawFormatError,
    RawMeta,
    read_head,
)

__all__ = ["TwixFormat", "twix_version"]

_FEATURE = "reading Siemens TWIX files"

#: twixtools dim -> our dim name
DIM_NAMES = {
    "Ide": "ide", "Idd": "idd", "Idc": "idc", "Idb": "idb", "Ida": "ida",
    "Seg": "segment", "Set": "set", "Rep": "repetition", "Phs": "phase", "Eco": "echo",
    "Par": "kz", "Sli": "slice", "Ave": "average", "Lin": "ky", "Cha": "coil", "Col": "kx",
}  # fmt: skip
_KEEP = ("Cha", "Lin", "Col")

#: one raid entry: measId_, fileId_, off_, len_, patName_, protName_ (152 bytes)
_RAID_ENTRY = np.dtype(
    [("measId_", "<u4"), ("fileId_", "<u4"), ("off_", "<u8"), ("len_", "<u8"),
     ("patName_", "S64"), ("protName_", "S64")]
)  # fmt: skip
_RAID_MAX = 64
#: MeasYaps sKSpace.ucTrajectory values
_TRAJECTORIES = {1: "cartesian", 2: "radial", 4: "spiral", 8: "propeller"}
_TICK_S = 0.0025


def twix_version(head: bytes) -> str | None:
    """``"VD"`` (VD/VE multi-raid), ``"VB"`` or ``None`` when ``head`` is not TWIX."""
    if len(head) < 16:
        return None
    first, second = np.frombuffer(head[:8], dtype="<u4")
    if first < 10000 and 1 <= second <= _RAID_MAX:
        entries = np.frombuffer(head[8 : 8 + _RAID_ENTRY.itemsize], dtype=_RAID_ENTRY)
        if entries.size:
            off = int(entries[0]["off_"])
            if off + 15 <= len(head):
                return "VD" if head[off + 8 : off + 15] == b"Config\x00" else None
            return "VD"  # measurement header beyond the head: trust the raid header
        return None
    if head[8:15] == b"Config\x00":
        return "VB"
    return None


def _first_offset(head: bytes) -> int:
    entries = np.frombuffer(head[8 : 8 + _RAID_ENTRY.itemsize], dtype=_RAID_ENTRY)
    return int(entries[0]["off_"]) if entries.size else 0


def _raw_param(text: str, key: str) -> str | None:
    """The first ``<ParamString."key"> { "value" }`` (or ParamLong...) value in raw header text."""
    pattern = r'<Param\w+\."' + re.escape(key) + r'">\s*\{\s*(?:<\w+>\s*"[^"]*"\s*)*"([^"]*)"'
    m = re.search(pattern, text)
    if m is None:
        return None
    return m.group(1).strip() or None


def _str(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


class TwixFormat(RawFormat):
    """Siemens TWIX raw MR data (``.dat``), VB and VD/VE, through twixtools."""

    name = "siemens-twix"
    description = "Siemens TWIX raw MR data (meas_*.dat, VB and VD/VE)"
    modality = "MR"
    patterns = ("*.dat",)
    extra = "raw"
    priority = 30

    def guess_can_open(self, path: str | os.PathLike[str], head: bytes | None = None) -> bool:
        # TWIX files are always named *.dat; the name check first keeps ordinary files (a
        # DICOM file whose first bytes happen to look like a raid header) out for free
        if not self.matches_name(path):
            return False
        if head is None:
            head = read_head(path)
        if head[128:132] == b"DICM":
            return False
        version = twix_version(head)
        if version == "VD" and _first_offset(head) + 15 > len(head):
            # the first measurement header lies beyond the head: look at it in the file
            off = _first_offset(head)
            if os.path.getsize(path) < off + 15:
                return True  # a raid header pointing past the end: a truncated TWIX file
            with open(path, "rb") as fh:
                fh.seek(off + 8)
                return fh.read(7) == b"Config\x00"
        return version is not None

    # -- reading --------------------------------------------------------------------------
    def open(self, path: str | os.PathLike[str]) -> RawContent:
        p = os.fspath(path)
        if not os.path.exists(p):
            raise FileNotFoundError(f"{p}: no such file")
        version = self._check_layout(p)
        twixtools = import_optional("twixtools", extra="raw", feature=_FEATURE)
        scans = _read(p, twixtools)
        self._check_scans(p, scans)
        mapped = _map(p, twixtools, scans)
        last = scans[-1]
        meta = self._meta(p, version, scans)
        arrays: dict[str, RawArray] = {}
        for i, measurement in enumerate(mapped):
            prefix = "" if i == len(mapped) - 1 else f"meas{i}_"
            for kind, arr in measurement.items():
                if hasattr(arr, "dims") and hasattr(arr, "shape"):
                    name = "kspace" if kind == "image" and not prefix else f"{prefix}{kind}"
                    arrays[name] = _array(p, name, i, kind, arr, last)
        return RawContent(format=self.name, meta=meta, arrays=arrays, members=(p,))

    @staticmethod
    def _check_layout(path: str) -> str:
        size = os.path.getsize(path)
        head = read_head(path)
        version = twix_version(head)
        if version is None:
            raise RawFormatError(f"{path}: not a Siemens TWIX file (no VB or VD/VE header)")
        if version == "VD":
            count = int(np.frombuffer(head[4:8], dtype="<u4")[0])
            end = 8 + count * _RAID_ENTRY.itemsize
            if len(head) < end:
                raise RawFormatError(f"{path}: TWIX multi-raid header is truncated")
            entries = np.frombuffer(head[8:end], dtype=_RAID_ENTRY)
            for k, entry in enumerate(entries):
                off, length = int(entry["off_"]), int(entry["len_"])
                if length == 0 or off + length > size:
                    raise RawFormatError(
                        f"{path}: TWIX file is truncated: measurement {k} spans bytes "
                        f"{off}..{off + length} but the file has {size} bytes"
                    )
        else:
            hdr_len = int(np.frombuffer(head[:4], dtype="<u4")[0])
            if hdr_len >= size:
                raise RawFormatError(
                    f"{path}: TWIX (VB) file is truncated: header of {hdr_len} bytes, file of {size}"
                )
        return version

    @staticmethod
    def _check_scans(path: str, scans: list[dict[str, Any]]) -> None:
        for k, scan in enumerate(scans):
            for buffer in ("Dicom", "Meas", "Config"):
                if buffer not in scan.get("hdr", {}):
                    raise RawFormatError(f"{path}: TWIX measurement {k} has no {buffer} header")
            mdbs = scan.get("mdb") or []
            if not mdbs:
                raise RawFormatError(f"{path}: TWIX measurement {k} holds no data blocks")
            if "ACQEND" not in mdbs[-1].get_active_flags():
                raise RawFormatError(
                    f"{path}: TWIX file is truncated or corrupt: measurement {k} does not end "
                    "with an ACQEND block"
                )
            if len({int(m.mem_pos) for m in mdbs}) != len(mdbs):
                raise RawFormatError(
                    f"{path}: TWIX file is corrupt: measurement {k} has overlapping data blocks"
                )

    def _meta(self, path: str, version: str, scans: list[dict[str, Any]]) -> RawMeta:
        last = scans[-1]
        hdr = last["hdr"]
        dicom, meas, config = hdr["Dicom"], hdr["Meas"], hdr["Config"]
        yaps = hdr.get("MeasYaps", {})
        raw = "\n".join(str(hdr.get(k, "")) for k in ("Dicom_raw", "Meas_raw", "Config_raw"))

        def pick(key: str, *sources: Any) -> str | None:
            value = _raw_param(raw, key)
            if value is not None:
                return value
            for src in sources:
                if key in src:
                    return _str(src[key])
            return None

        frame = pick("FrameOfReference", meas, config) or _str(meas.get("tFrameOfReference"))
        exam = _raw_param(raw, "ExamMemoryUID")
        refs = tuple(u for u in (_str(yaps.get(f"tReferenceImage{i}")) for i in range(3)) if u)
        sequence = _str(yaps.get("tSequenceFileName"))
        ksp = yaps.get("sKSpace", {}) if isinstance(yaps.get("sKSpace"), dict) else {}
        extra: dict[str, Any] = {
            "twix_version": version,
            "n_measurements": len(scans),
            "measurements": [
                _str(s["hdr"].get("MeasYaps", {}).get("tProtocolName")) for s in scans
            ],
            "baseline": _str(meas.get("tBaselineString")) or _raw_param(raw, "tBaselineString"),
            "n_mdb": len(last["mdb"]),
            "base_resolution": ksp.get("lBaseResolution"),
            "phase_encoding_lines": ksp.get("lPhaseEncodingLines"),
            "partitions": ksp.get("lPartitions"),
            "readout_oversampling": dicom.get("flReadoutOSFactor"),
            "field_strength_t": dicom.get("flMagneticFieldStrength"),
            "meas_uid": _str(meas.get("MeasUID")),
        }
        patient = PatientIdentity(
            patient_id=pick("PatientID", config, meas),
            name=pick("PatientName", config, meas),
            birth_date=pick("PatientBirthDay", config, meas),
        )
        return RawMeta(
            modality="MR",
            manufacturer=pick("Manufacturer", dicom),
            model=pick("ManufacturersModelName", dicom, meas),
            software_version=pick("SoftwareVersions", dicom),
            device_serial=pick("DeviceSerialNumber", dicom, meas),
            station_name=pick("StationName", dicom, meas),
            institution=pick("InstitutionName", dicom),
            acquired_at=_acquired_at(exam, frame, last["mdb"]),
            frame_of_reference_uid=frame,
            referenced_sop_instance_uids=refs,
            protocol_name=_str(yaps.get("tProtocolName")) or pick("tProtocolName", dicom),
            sequence_name=sequence.replace("\\", "/").rsplit("/", 1)[-1] if sequence else None,
            patient=patient,
            extra=extra,
        )


def _acquired_at(exam: str | None, frame: str | None, mdbs: list[Any]) -> str | None:
    """Date from ExamMemoryUID / the FoR UID, time from the first imaging block's TimeStamp.

    The exam UIDs carry the exam's start; a scan whose time of day is earlier than that
    ran after midnight, on the next day.
    """
    m = re.search(r"_((?:19|20)\d{6})_(\d{6})", exam or "") or re.search(
        r"\.((?:19|20)\d{6})(\d{6})", frame or ""
    )
    if m is None:
        return None
    try:
        start = datetime.strptime(m.group(1) + m.group(2), "%Y%m%d%H%M%S")
    except ValueError:
        return None
    when = start
    for mdb in mdbs:
        if mdb.is_image_scan():
            seconds = int(int(mdb.mdh.TimeStamp) * _TICK_S)
            if 0 <= seconds < 86400:
                day = datetime.combine(start.date(), datetime.min.time())
                when = day + timedelta(seconds=seconds)
                if when < start - timedelta(hours=1):  # past midnight
                    when += timedelta(days=1)
            break
    return when.isoformat(timespec="seconds")


def _read(path: str, twixtools: Any) -> list[dict[str, Any]]:
    """``twixtools.read_twix`` with its printed warnings turned into :class:`RawFormatError`."""
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")  # numpy overflows on garbage block headers
            scans = twixtools.read_twix(path, verbose=False, keep_acqend=True)
    except Exception as exc:  # twixtools raises KeyError/ValueError/... on bad files
        raise RawFormatError(f"{path}: twixtools cannot read the TWIX file: {exc!r}") from exc
    printed = out.getvalue()
    if "WARNING" in printed or "rror" in printed:
        first = printed.strip().splitlines()[0][:200]
        raise RawFormatError(f"{path}: TWIX file is truncated or corrupt (twixtools: {first})")
    if not isinstance(scans, list) or not scans:
        raise RawFormatError(f"{path}: twixtools found no measurement in the TWIX file")
    return list(scans)


def _map(path: str, twixtools: Any, scans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            mapped = twixtools.map_twix(scans)
    except Exception as exc:
        raise RawFormatError(f"{path}: twixtools cannot map the TWIX data: {exc!r}") from exc
    return list(mapped) if isinstance(mapped, list) else [mapped]


def _layout(dims: tuple[str, ...], shape: tuple[int, ...]) -> tuple[list[int], list[int]]:
    """Axes kept (in output order) and axes squeezed, for twixtools dims and shape."""
    kept = [i for i, d in enumerate(dims) if shape[i] > 1 or d in _KEEP]
    cha, lin = dims.index("Cha"), dims.index("Lin")
    order = [i for i in kept if i not in (cha, lin)]
    order.insert(len(order) - 1, cha)  # ... coil, ky, kx
    order.insert(len(order) - 1, lin)
    squeezed = [i for i in range(len(dims)) if i not in kept]
    return order, squeezed


def _slice_fov(yaps: Any) -> list[float] | None:
    """Readout and phase field of view and slice thickness (mm) of the first slice."""
    try:
        first = yaps["sSliceArray"]["asSlice"][0]
        fov = [float(first["dReadoutFOV"]), float(first["dPhaseFOV"]), float(first["dThickness"])]
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    return fov if all(v > 0 for v in fov) else None


def _array(path: str, name: str, meas: int, kind: str, tarr: Any, last: dict[str, Any]) -> RawArray:
    dims = tuple(str(d) for d in tarr.dims)
    shape = tuple(int(n) for n in tarr.shape)
    if dims[-3:] != ("Lin", "Cha", "Col") or any(d not in DIM_NAMES for d in dims):
        raise RawFormatError(f"{path}: unexpected twixtools dims {dims} for {kind!r}")
    order, squeezed = _layout(dims, shape)
    out_shape = tuple(shape[i] for i in order)

    def loader() -> np.ndarray[Any, Any]:
        twixtools = import_optional("twixtools", extra="raw", feature=_FEATURE)
        scans = _read(path, twixtools)
        data = np.asarray(_map(path, twixtools, scans)[meas][kind][:])
        data = np.squeeze(data, axis=tuple(squeezed)) if squeezed else data
        kept_sorted = sorted(order)
        perm = [kept_sorted.index(i) for i in order]
        return np.ascontiguousarray(np.transpose(data, perm)).astype(np.complex64, copy=False)

    attrs: dict[str, Any] = {
        "twixtools_dims": [dims[i] for i in order],
        "twixtools_kind": kind,
        "measurement": meas,
        "source": "twixtools.map_twix(twixtools.read_twix(path, keep_acqend=True))"
        f"[{meas}][{kind!r}][:]",
    }
    if name == "kspace":
        yaps = last["hdr"].get("MeasYaps", {})
        ksp = yaps.get("sKSpace", {}) if isinstance(yaps.get("sKSpace"), dict) else {}
        n_col = shape[dims.index("Col")]
        n_lin = shape[dims.index("Lin")]
        n_par = shape[dims.index("Par")]
        os_factor = last["hdr"]["Dicom"].get("flReadoutOSFactor") or 1.0
        base = ksp.get("lBaseResolution")
        attrs.update(
            {
                "encoded_matrix": [n_col, n_lin, n_par],
                "recon_matrix": [
                    round(n_col / float(os_factor)),
                    int(ksp.get("lPhaseEncodingLines") or n_lin),
                    int(n_par),
                ],
                "base_resolution": base,
                "trajectory": _TRAJECTORIES.get(int(ksp.get("ucTrajectory") or 1), "unknown"),
                "readout_oversampling": float(os_factor),
            }
        )
        fov = _slice_fov(yaps)
        if fov is not None:
            attrs["recon_fov_mm"] = fov
    return RawArray(
        name=name,
        dims=tuple(DIM_NAMES[dims[i]] for i in order),
        shape=out_shape,
        dtype=np.dtype(np.complex64),
        loader=loader,
        attrs=attrs,
    )
