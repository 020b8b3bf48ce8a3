"""ISMRMRD raw MR data (HDF5): the XML header and the acquisitions, read with h5py.

An ISMRMRD file is HDF5 with a group (usually ``dataset``) holding a string dataset
``xml`` (the header, schema ``ismrmrd.xsd``) and a compound dataset ``data`` of
acquisitions ``{head, traj, data}``. The header is parsed with the PyPI ``ismrmrd``
package's ``ismrmrd.xsd``; the acquisitions are read directly with h5py on the compound
dataset, since ``ismrmrd.Dataset.read_acquisition`` costs about 17 ms per line.

Arrays
------
``kspace``
    complex64, dims ``(*leading, "coil", "ky", "kx")``. Leading dims appear only when
    the data has more than one index along them, in this order: ``"average"``,
    ``"contrast"``, ``"phase"``, ``"set"``, ``"repetition"``, ``"slice"``, ``"kz"``
    (``kspace_encode_step_2``). A 2-D single-slice file gives ``("coil", "ky", "kx")``.
    ``ky`` spans the encoded matrix's y (lines not acquired stay zero), ``kx`` the
    samples of a readout (with readout oversampling). When a line is acquired twice
    with the same indices, the last acquisition wins. Noise-measurement acquisitions
    (flag bit 19) are excluded.
``noise``
    complex64, dims ``("acquisition", "coil", "sample")``: the noise-measurement
    acquisitions, present only when the file has some.
``acquisitions`` and ``traj`` (non-Cartesian encodings only, instead of ``kspace``)
    the imaging acquisitions as recorded, ``("acquisition", "coil", "sample")``, and
    their k-space coordinates ``("acquisition", "sample", "traj_dim")`` when stored.

The file is always opened read-only (``ismrmrd.Dataset`` defaults to read/write).
"""

from __future__ import annotations

import contextlib
import os
import warnings
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
from imagelake.formats._hdf5 import open_hdf5

__all__ = ["ACQ_IS_NOISE_MEASUREMENT", "IsmrmrdFormat"]

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
#: flag value of a noise-measurement acquisition (ISMRMRD flag bit 19, 1-based)
ACQ_IS_NOISE_MEASUREMENT = 1 << 18

#: idx fields that become leading dims of ``kspace`` when they take several values
_LEADING = ("average", "contrast", "phase", "set", "repetition", "slice")
_FEATURE = "reading ISMRMRD files"


def _h5py() -> Any:
    return import_optional("h5py", extra="raw", feature=_FEATURE)


def _find_group(h5: Any) -> str | None:
    """Name of the first group holding datasets ``xml`` and ``data`` (``dataset`` first)."""
    h5py = _h5py()
    names = list(h5.keys())
    if "dataset" in names:
        names.remove("dataset")
        names.insert(0, "dataset")
    for name in names:
        group = h5.get(name)
        if isinstance(group, h5py.Group):
            xml, data = group.get("xml"), group.get("data")
            if isinstance(xml, h5py.Dataset) and isinstance(data, h5py.Dataset):
                return str(name)
    return None


def _open_h5(path: str | os.PathLike[str]) -> contextlib.AbstractContextManager[Any]:
    return open_hdf5(path, feature=_FEATURE)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value.value if hasattr(value, "value") else value).strip()
    return text or None


def _iso(date: Any, time: Any) -> str | None:
    """``YYYY-MM-DDTHH:MM:SS`` from an xsdata XmlDate and XmlTime (time optional)."""
    d = _text(date)
    if d is None:
        return None
    d = d[:10]
    t = _text(time)
    t = t[:8] if t and len(t) >= 8 else "00:00:00"
    return f"{d}T{t}"


def _xyz(v: Any) -> list[float] | list[int] | None:
    if v is None:
        return None
    return [v.x, v.y, v.z]


class IsmrmrdFormat(RawFormat):
    """ISMRMRD raw MR data: an HDF5 group with ``xml`` (header) and ``data`` (acquisitions)."""

    name = "ismrmrd"
    description = "ISMRMRD raw MR data (HDF5 with an XML header and acquisitions)"
    modality = "MR"
    patterns = ("*.h5", "*.hdf5", "*.mrd", "*.ismrmrd")
    magic = ((0, HDF5_MAGIC),)
    extra = "raw"
    priority = 20

    def guess_can_open(self, path: str | os.PathLike[str], head: bytes | None = None) -> bool:
        if head is None:
            head = read_head(path)
        if not self.matches_magic(head):
            return False
        try:
            h5py = import_optional("h5py", extra="raw")
        except ImportError:
            # without h5py we cannot look inside: claim ISMRMRD-named HDF5 files so that
            # open() raises MissingExtraError naming the extra
            return self.matches_name(path) and not os.fspath(path).lower().endswith(".uff")
        try:
            with h5py.File(os.fspath(path), "r") as h5:
                return _find_group(h5) is not None
        except OSError:
            # a truncated HDF5 file cannot be opened: claim it by name, so that open()
            # reports it as corrupt instead of it passing as an unknown file
            return self.matches_name(path)

    # -- reading --------------------------------------------------------------------------
    def open(self, path: str | os.PathLike[str]) -> RawContent:
        p = os.fspath(path)
        xsd = import_optional("ismrmrd.xsd", extra="raw", feature=_FEATURE)
        with _open_h5(p) as h5:
            group = _find_group(h5)
            if group is None:
                raise RawFormatError(f"{p}: HDF5 file has no ISMRMRD group with 'xml' and 'data'")
            try:
                raw_xml = h5[group]["xml"][0]
                head = h5[group]["data"].fields("head")[...]
            except (OSError, KeyError, ValueError, TypeError, IndexError) as exc:
                raise RawFormatError(f"{p}: cannot read the ISMRMRD acquisitions: {exc}") from exc
        xml = raw_xml.decode("utf-8", "replace") if isinstance(raw_xml, bytes) else str(raw_xml)
        try:
            # xsdata warns with the offending value quoted, and the header holds patient
            # data (subjectInformation): silence it, and name only the error class
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                header = xsd.CreateFromDocument(xml)
        except Exception as exc:  # noqa: BLE001 - xsdata raises several parser errors
            raise RawFormatError(
                f"{p}: the ISMRMRD XML header does not parse ({type(exc).__name__}; details "
                "withheld, the header may hold patient data)"
            ) from None
        if not header.encoding:
            raise RawFormatError(f"{p}: the ISMRMRD XML header has no <encoding>")
        meta = self._meta(header, head)
        arrays = self._arrays(p, group, header, head)
        return RawContent(format=self.name, meta=meta, arrays=arrays, members=(p,))

    def _meta(self, header: Any, head: np.ndarray[Any, Any]) -> RawMeta:
        sys_info = header.acquisitionSystemInformation
        meas = header.measurementInformation
        study = header.studyInformation
        subject = header.subjectInformation
        enc = header.encoding[0]

        acquired = None
        if meas is not None:
            acquired = _iso(meas.seriesDate, meas.seriesTime)
        if acquired is None and study is not None:
            acquired = _iso(study.studyDate, study.studyTime)

        software = None
        if header.userParameters is not None:
            for param in header.userParameters.userParameterString:
                pname = (param.name or "").lower()
                if "software" in pname or "version" in pname:
                    software = _text(param.value)
                    if software:
                        break

        refs: tuple[str, ...] = ()
        if meas is not None and meas.referencedImageSequence is not None:
            refs = tuple(
                u.strip()
                for u in meas.referencedImageSequence.referencedSOPInstanceUID
                if u.strip()
            )

        patient = PatientIdentity()
        if subject is not None:
            birth = _text(subject.patientBirthdate)
            patient = PatientIdentity(
                patient_id=_text(subject.patientID),
                name=_text(subject.patientName),
                birth_date=birth.replace("-", "")[:8] if birth else None,
            )

        noise = (head["flags"] & ACQ_IS_NOISE_MEASUREMENT) != 0
        extra: dict[str, Any] = {
            "ismrmrd_version": header.version,
            "trajectory": _text(enc.trajectory),
            "encoded_matrix": _xyz(enc.encodedSpace.matrixSize),
            "encoded_fov_mm": _xyz(enc.encodedSpace.fieldOfView_mm),
            "recon_matrix": _xyz(enc.reconSpace.matrixSize),
            "recon_fov_mm": _xyz(enc.reconSpace.fieldOfView_mm),
            "n_encodings": len(header.encoding),
            "n_acquisitions": int(head.shape[0]),
            "n_noise_acquisitions": int(noise.sum()),
        }
        if sys_info is not None:
            extra["receiver_channels"] = sys_info.receiverChannels
            extra["field_strength_t"] = sys_info.systemFieldStrength_T
        if meas is not None:
            extra["measurement_id"] = _text(meas.measurementID)
            extra["series_instance_uid_root"] = _text(meas.seriesInstanceUIDRoot)
        return RawMeta(
            modality="MR",
            manufacturer=_text(sys_info.systemVendor) if sys_info else None,
            model=_text(sys_info.systemModel) if sys_info else None,
            software_version=software,
            device_serial=_text(sys_info.deviceSerialNumber) if sys_info else None,
            station_name=_text(sys_info.stationName) if sys_info else None,
            institution=_text(sys_info.institutionName) if sys_info else None,
            acquired_at=acquired,
            study_instance_uid=_text(study.studyInstanceUID) if study else None,
            frame_of_reference_uid=_text(meas.frameOfReferenceUID) if meas else None,
            referenced_sop_instance_uids=refs,
            protocol_name=_text(meas.protocolName) if meas else None,
            sequence_name=_text(meas.sequenceName) if meas else None,
            patient=patient,
            extra=extra,
        )

    def _arrays(
        self, path: str, group: str, header: Any, head: np.ndarray[Any, Any]
    ) -> dict[str, RawArray]:
        arrays: dict[str, RawArray] = {}
        is_noise = (head["flags"] & ACQ_IS_NOISE_MEASUREMENT) != 0
        img = np.flatnonzero(~is_noise)
        enc = header.encoding[0]
        if img.size and (_text(enc.trajectory) or "cartesian") == "cartesian":
            arrays["kspace"] = self._kspace(path, group, enc, head, img)
        elif img.size:
            arrays.update(self._non_cartesian(path, group, enc, head, img))
        noise = np.flatnonzero(is_noise)
        if noise.size:
            arrays["noise"] = self._noise(path, group, head, noise)
        return arrays

    @staticmethod
    def _uniform(
        path: str, head: np.ndarray[Any, Any], rows: np.ndarray[Any, Any], what: str
    ) -> tuple[int, int]:
        coils = np.unique(head["active_channels"][rows])
        samples = np.unique(head["number_of_samples"][rows])
        if coils.size != 1 or samples.size != 1:
            raise RawFormatError(
                f"{path}: {what} acquisitions have varying coil counts {coils.tolist()} or "
                f"sample counts {samples.tolist()}; not supported"
            )
        return int(coils[0]), int(samples[0])

    def _kspace(
        self,
        path: str,
        group: str,
        enc: Any,
        head: np.ndarray[Any, Any],
        rows: np.ndarray[Any, Any],
    ) -> RawArray:
        nc, ns = self._uniform(path, head, rows, "imaging")
        idx = head["idx"][rows]
        e1 = idx["kspace_encode_step_1"].astype(np.int64)
        e2 = idx["kspace_encode_step_2"].astype(np.int64)
        ematrix = enc.encodedSpace.matrixSize
        ny = max(int(ematrix.y or 1), int(e1.max()) + 1)
        nz = max(int(ematrix.z or 1), int(e2.max()) + 1)
        dims: list[str] = []
        shape: list[int] = []
        index: list[np.ndarray[Any, Any]] = []
        for field_name in _LEADING:
            values = idx[field_name].astype(np.int64)
            size = int(values.max()) + 1
            if size > 1:
                dims.append(field_name)
                shape.append(size)
                index.append(values)
        if nz > 1:
            dims.append("kz")
            shape.append(nz)
            index.append(e2)
        dims += ["coil", "ky", "kx"]
        shape += [nc, ny, ns]
        rmatrix = enc.reconSpace.matrixSize
        attrs: dict[str, Any] = {
            "encoded_matrix": _xyz(ematrix),
            "recon_matrix": _xyz(rmatrix),
            "encoded_fov_mm": _xyz(enc.encodedSpace.fieldOfView_mm),
            "recon_fov_mm": _xyz(enc.reconSpace.fieldOfView_mm),
            "trajectory": _text(enc.trajectory),
            "readout_oversampling": (ematrix.x / rmatrix.x) if rmatrix.x else None,
            "center_sample": int(head["center_sample"][rows[0]]),
            "sample_time_us": float(head["sample_time_us"][rows[0]]),
        }
        lead = tuple(index)
        full_shape = tuple(shape)

        def load() -> np.ndarray[Any, Any]:
            out = np.zeros(full_shape, dtype=np.complex64)
            data = _read_data(path, group)
            for j, row in enumerate(rows):
                line = _line(path, data[row], nc, ns, int(row))
                key: tuple[Any, ...] = (*(int(v[j]) for v in lead), slice(None), int(e1[j]))
                out[key] = line
            return out

        return RawArray(
            name="kspace",
            dims=tuple(dims),
            shape=full_shape,
            dtype=np.dtype(np.complex64),
            loader=load,
            attrs=attrs,
        )

    def _non_cartesian(
        self,
        path: str,
        group: str,
        enc: Any,
        head: np.ndarray[Any, Any],
        rows: np.ndarray[Any, Any],
    ) -> dict[str, RawArray]:
        """Acquisitions as recorded, with their trajectory, for non-Cartesian encodings."""
        nc, ns = self._uniform(path, head, rows, "imaging")
        attrs = {
            "trajectory": _text(enc.trajectory),
            "encoded_matrix": _xyz(enc.encodedSpace.matrixSize),
            "recon_matrix": _xyz(enc.reconSpace.matrixSize),
            "encoded_fov_mm": _xyz(enc.encodedSpace.fieldOfView_mm),
            "recon_fov_mm": _xyz(enc.reconSpace.fieldOfView_mm),
        }

        def load() -> np.ndarray[Any, Any]:
            data = _read_data(path, group)
            return np.stack([_line(path, data[r], nc, ns, int(r)) for r in rows])

        out = {
            "acquisitions": RawArray(
                name="acquisitions",
                dims=("acquisition", "coil", "sample"),
                shape=(int(rows.size), nc, ns),
                dtype=np.dtype(np.complex64),
                loader=load,
                attrs=attrs,
            )
        }
        tdims = np.unique(head["trajectory_dimensions"][rows])
        if tdims.size == 1 and int(tdims[0]) > 0:
            nd = int(tdims[0])

            def load_traj() -> np.ndarray[Any, Any]:
                with _open_h5(path) as h5:
                    traj = h5[group]["data"].fields("traj")[...]
                lines = [np.asarray(traj[r], dtype=np.float32) for r in rows]
                if any(t.size != ns * nd for t in lines):
                    raise RawFormatError(f"{path}: ISMRMRD trajectory sizes do not match the data")
                return np.stack([t.reshape(ns, nd) for t in lines])

            out["traj"] = RawArray(
                name="traj",
                dims=("acquisition", "sample", "traj_dim"),
                shape=(int(rows.size), ns, nd),
                dtype=np.dtype(np.float32),
                loader=load_traj,
                attrs={"trajectory": _text(enc.trajectory)},
            )
        return out

    def _noise(
        self, path: str, group: str, head: np.ndarray[Any, Any], rows: np.ndarray[Any, Any]
    ) -> RawArray:
        nc, ns = self._uniform(path, head, rows, "noise")

        def load() -> np.ndarray[Any, Any]:
            data = _read_data(path, group)
            return np.stack([_line(path, data[r], nc, ns, int(r)) for r in rows])

        return RawArray(
            name="noise",
            dims=("acquisition", "coil", "sample"),
            shape=(int(rows.size), nc, ns),
            dtype=np.dtype(np.complex64),
            loader=load,
            attrs={"sample_time_us": float(head["sample_time_us"][rows[0]])},
        )


def _read_data(path: str, group: str) -> np.ndarray[Any, Any]:
    with _open_h5(path) as h5:
        try:
            return np.asarray(h5[group]["data"].fields("data")[...])
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise RawFormatError(
                f"{path}: cannot read the ISMRMRD acquisition data: {exc}"
            ) from exc


def _line(path: str, raw: np.ndarray[Any, Any], nc: int, ns: int, row: int) -> np.ndarray[Any, Any]:
    flat = np.asarray(raw, dtype=np.float32)
    if flat.size != 2 * nc * ns:
        raise RawFormatError(
            f"{path}: acquisition {row} holds {flat.size} floats, expected {2 * nc * ns} "
            f"({nc} coils x {ns} samples x re/im)"
        )
    return flat.view(np.complex64).reshape(nc, ns)
