"""De-identification of raw scanner files (issue 4, item 2): one anonymizer per raw format.

Each anonymizer writes a de-identified copy of a raw file (or of a group of files) with the
same keyed pseudonym, UID remap and date shift that :class:`~imagelake.anonymize.Deidentifier`
gives the DICOM of the same subject (same secret, same ``subject_key``):

* ``ismrmrd``: the XML header is rewritten (subject, study and measurement identity, dates,
  institution and device per the policy's options); the HDF5 file is rebuilt so no byte of the
  old header survives in free space; acquisitions are copied unchanged.
* ``siemens-twix``: identifying values of the header buffers (XProtocol, MeasYaps) and the
  patient/protocol name fields of the multi-raid header are overwritten **in place, with the same
  byte length**, so every offset stays valid and the k-space is byte-identical.
* ``dicom-ct-pd``: every view through the DICOM engine, the projection-geometry private groups
  (7029-7041) kept as safe private attributes for this call.
* ``ustb-uff``: free-text datasets (name, info, version, reference, author) are blanked; the
  file is rebuilt; data are copied unchanged.
* ``refscan``: revision 1's fixed-width header fields are overwritten in place (same width,
  NUL-padded, reserved bytes zeroed); revision 2's ``key=value`` header is rewritten (unknown
  keys kept only when plain numbers) with its length updated; the payload is copied byte for
  byte and the output is checked with the host's refscan reader.
* ``opaque``: refused with :class:`OpaqueRawError`; no policy can override that.

Third parties add an anonymizer per format to :data:`raw_anonymizers` (entry-point group
``imagelake.raw_anonymizers``): a callable ``(paths, deid, out_path, subject_key) ->
RawDeidResult``.

No identifying value is ever logged, printed or put into an exception message.
"""

from __future__ import annotations

import dataclasses
import os
import re
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from imagelake._optional import import_optional
from imagelake._registry import Registry
from imagelake.anonymize._engine import Deidentifier
from imagelake.anonymize._keyed import date_shift, pseudonym
from imagelake.anonymize._policy import SafePrivate
from imagelake.anonymize._table import Option
from imagelake.errors import InvalidInputError

__all__ = [
    "OpaqueRawError",
    "RawAnonymizer",
    "RawDeidError",
    "RawDeidResult",
    "anonymize_raw",
    "raw_anonymizers",
]


class RawDeidError(InvalidInputError):
    """A raw file cannot be de-identified (unreadable header, unknown layout...)."""


class OpaqueRawError(RawDeidError):
    """An opaque vendor file: nothing knows where its identity is, so it cannot be shared."""


@dataclass(frozen=True)
class RawDeidResult:
    """The outcome of :func:`anonymize_raw`.

    Attributes
    ----------
    out_paths
        The de-identified files written.
    pseudonym
        The subject's pseudonym (as in the subject's de-identified DICOM).
    actions
        How many values got each action (counts only, never values).
    warnings
        Fixed-text notes (never a value of the input).
    """

    out_paths: tuple[Path, ...]
    pseudonym: str = field(repr=False)
    actions: dict[str, int] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


class RawAnonymizer(Protocol):
    """Write a de-identified copy of ``paths`` at ``out_path``."""

    def __call__(
        self, paths: Sequence[Path], deid: Deidentifier, out_path: Path, subject_key: str | None
    ) -> RawDeidResult: ...


def _subject_name(deid: Deidentifier, subject_key: str) -> str:
    p = deid.policy
    return pseudonym(subject_key, deid._secret, p.pseudonym_prefix, p.pseudonym_length)


def _shift_days(deid: Deidentifier, subject_key: str) -> int | None:
    """The subject's date shift, or None (full dates kept) — as the DICOM engine decides."""
    if Option.RETAIN_LONG_FULL_DATES in deid.options:
        return None
    if Option.RETAIN_LONG_MODIFIED_DATES in deid.options:
        return date_shift(subject_key, deid._secret, deid.policy.date_shift_days)
    return None


def _keeps_dates(deid: Deidentifier) -> bool:
    return bool({Option.RETAIN_LONG_FULL_DATES, Option.RETAIN_LONG_MODIFIED_DATES} & deid.options)


def _table_action(deid: Deidentifier, tag: int) -> str:
    """``"K"`` keep, ``"C"`` clean (dates: shift) or ``"X"`` remove, for a raw header field
    holding what DICOM attribute ``tag`` holds, as Table E.1-1 and the policy decide."""
    if tag in deid.policy.keep:
        return "K"
    if tag in deid.policy.remove:
        return "X"
    row = deid.table.lookup(tag)
    if row is None:
        return "K"  # attributes the table does not list are kept by the DICOM engine too
    action = row.action(deid.options)
    return action if action in ("K", "C") else "X"


def _need_key(subject_key: str | None, found: str | None, fmt: str) -> str:
    key = subject_key or found
    if not key:
        raise RawDeidError(
            f"the {fmt} file names no patient; pass subject_key to pick the pseudonym"
        )
    return key


# ---------------------------------------------------------------------------------------------
# ISMRMRD
# ---------------------------------------------------------------------------------------------
def _h5py() -> Any:
    return import_optional("h5py", extra="raw", feature="anonymizing raw HDF5 files")


def _copy_h5(
    src: Any,
    dst: Any,
    skip: Callable[[str, Any], bool],
    h5py: Any,
    prefix: str = "",
    attr_ok: Callable[[str, str, Any], bool] | None = None,
) -> int:
    """Copy ``src``'s members into ``dst`` (a new file), leaving out those ``skip`` selects
    and the attributes ``attr_ok(path, key, value)`` rejects; return how many were left out."""
    dropped = 0

    def attrs(path: str, source: Any, target: Any) -> None:
        nonlocal dropped
        for key, value in source.attrs.items():
            if attr_ok is None or attr_ok(path, key, value):
                target.attrs[key] = value
            else:
                dropped += 1

    attrs(prefix or "/", src, dst)
    for name in src:
        obj = src.get(name, getlink=False)
        path = f"{prefix}/{name}"
        if skip(path, obj):
            continue
        if isinstance(obj, h5py.Group):
            dropped += _copy_h5(obj, dst.create_group(name), skip, h5py, path, attr_ok)
        else:
            src.copy(obj, dst, name=name, without_attrs=True)
            attrs(path, obj, dst[name])
    return dropped


def _shift_xml_date(value: Any, days: int | None, xsd_date: Any) -> Any:
    if value is None or days is None:
        return None
    import datetime as _dt

    try:
        d = _dt.date(value.year, value.month, value.day) + _dt.timedelta(days=days)
    except (AttributeError, TypeError, ValueError):
        return None
    return xsd_date(d.year, d.month, d.day)


def _anonymize_ismrmrd(
    paths: Sequence[Path], deid: Deidentifier, out_path: Path, subject_key: str | None
) -> RawDeidResult:
    from imagelake.formats.ismrmrd import _find_group

    h5py = _h5py()
    xsd = import_optional("ismrmrd.xsd", extra="raw", feature="anonymizing ISMRMRD files")
    from xsdata.models.datatype import XmlDate

    src_path = paths[0]
    counts: Counter[str] = Counter()
    notes: list[str] = []
    try:
        src = h5py.File(src_path, "r")
    except OSError:
        raise RawDeidError(f"{src_path}: not a readable HDF5 file") from None
    with src:
        group = _find_group(src)
        if group is None:
            raise RawDeidError(f"{src_path}: no ISMRMRD group with 'xml' and 'data'")
        raw_xml = src[group]["xml"][0]
        xml = raw_xml.decode("utf-8", "replace") if isinstance(raw_xml, bytes) else str(raw_xml)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # xsdata quotes values in its warnings
                header = xsd.CreateFromDocument(xml)
        except Exception:  # noqa: BLE001 - xsdata raises several parser errors
            raise RawDeidError(
                f"{src_path}: the ISMRMRD XML header does not parse (details withheld)"
            ) from None
        subject = header.subjectInformation
        found = None
        if subject is not None:
            found = (subject.patientID or subject.patientName or "").strip() or None
        key = _need_key(subject_key, found, "ISMRMRD")
        name = _subject_name(deid, key)
        shift = _shift_days(deid, key)
        retain_uids = Option.RETAIN_UIDS in deid.options

        def uid(value: Any) -> Any:
            if value is None or retain_uids:
                return value
            counts["U"] += 1
            return deid.uid(str(value))

        def field_(section: Any, attr: str, tag: int, is_date: bool = False) -> None:
            """Apply to one header field what Table E.1-1 does to its DICOM attribute."""
            value = getattr(section, attr, None)
            if value is None or value == []:
                return
            action = _table_action(deid, tag)
            if action == "K":
                counts["K"] += 1
                return
            if action == "C" and is_date and shift is not None:
                setattr(section, attr, _shift_xml_date(value, shift, XmlDate))
                counts["date shift"] += 1
                return
            setattr(section, attr, [] if isinstance(value, list) else None)
            counts["X"] += 1

        subject = header.subjectInformation
        if subject is not None:
            field_(subject, "patientBirthdate", 0x00100030, is_date=True)
            field_(subject, "patientWeight_kg", 0x00101030)
            field_(subject, "patientHeight_m", 0x00101020)
            field_(subject, "patientGender", 0x00100040)
            pseudo = name if deid.policy.pseudonymize else None
            subject.patientName = subject.patientID = pseudo
            counts["pseudonym"] += 2 if pseudo else 0
        study = header.studyInformation
        if study is not None:
            field_(study, "studyDate", 0x00080020, is_date=True)
            if study.studyDate is None:
                field_(study, "studyTime", 0x00080030)
            study.studyInstanceUID = uid(study.studyInstanceUID)
            field_(study, "accessionNumber", 0x00080050)
            field_(study, "referringPhysicianName", 0x00080090)
            field_(study, "studyID", 0x00200010)
            field_(study, "studyDescription", 0x00081030)
            field_(study, "bodyPartExamined", 0x00180015)
        meas = header.measurementInformation
        if meas is not None:
            field_(meas, "seriesDate", 0x00080021, is_date=True)
            if meas.seriesDate is None:
                field_(meas, "seriesTime", 0x00080031)
            meas.frameOfReferenceUID = uid(meas.frameOfReferenceUID)
            meas.seriesInstanceUIDRoot = uid(meas.seriesInstanceUIDRoot)
            if meas.referencedImageSequence is not None:
                seq = meas.referencedImageSequence
                seq.referencedSOPInstanceUID = [
                    uid(u.strip()) for u in seq.referencedSOPInstanceUID
                ]
            field_(meas, "seriesDescription", 0x0008103E)
            field_(meas, "protocolName", 0x00181030)
            # measurement ids (Siemens: serial_patient_study_meas) and dependencies name the
            # device and the patient's other measurements: removed unless device identity kept
            field_(meas, "measurementID", 0x00181000)
            field_(meas, "measurementDependency", 0x00181000)
        sys_info = header.acquisitionSystemInformation
        if sys_info is not None:
            field_(sys_info, "deviceSerialNumber", 0x00181000)
            field_(sys_info, "stationName", 0x00081010)
            field_(sys_info, "deviceID", 0x00181002)
            field_(sys_info, "institutionName", 0x00080080)
        # free-form user parameters may hold anything: keep numbers, drop strings
        user = header.userParameters
        if user is not None:
            for attr in ("userParameterString", "userParameterBase64"):
                values = getattr(user, attr, None)
                if values:
                    counts["user string X"] += len(values)
                    setattr(user, attr, [])
                    notes.append("free-text user parameters removed")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            new_xml = xsd.ToXML(header)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = out_path.with_name(out_path.name + ".partial")
        # per-image meta strings (``<image series>/attributes``): free text goes, numbers stay
        image_meta = {
            f"/{group}/{name}/attributes"
            for name, member in src[group].items()
            if isinstance(member, h5py.Group) and {"header", "data", "attributes"} <= set(member)
        }
        with h5py.File(tmp, "w") as dst:
            xml_path = f"/{group}/xml"
            _copy_h5(src, dst, lambda p, _o: p == xml_path or p in image_meta, h5py)
            old = src[group]["xml"]
            ds = dst[group].create_dataset(
                "xml", shape=old.shape, dtype=h5py.string_dtype(encoding="utf-8")
            )
            ds[0] = new_xml
            for path in sorted(image_meta):
                before = src[path]
                after = dst.create_dataset(
                    path, shape=before.shape, dtype=h5py.string_dtype(encoding="utf-8")
                )
                for i, text in enumerate(before[()].reshape(-1)):
                    cleaned, dropped = _clean_image_meta(text)
                    after[np.unravel_index(i, before.shape)] = cleaned
                    if dropped:
                        counts["image meta X"] += dropped
                        notes.append("free-text per-image meta removed")
    os.replace(tmp, out_path)
    return RawDeidResult((out_path,), name, dict(counts), tuple(dict.fromkeys(notes)))


# image meta names whose string values come from a closed vocabulary (never free text)
_IMAGE_META_SAFE = frozenset(
    {"GADGETRON_DataRole", "DataRole", "GADGETRON_ImageProcessingHistory", "ImageProcessingHistory"}
)


# names that identify whatever their value looks like (a numeric patient id, a YYYYMMDD date)
_IMAGE_META_DENY = re.compile(
    r"(?i)patient|name|birth|date|time|uid|id$|serial|station|institution|physician|operator"
    r"|accession|comment|description|address"
)


def _clean_image_meta(text: Any) -> tuple[str, int]:
    """An ISMRMRD image meta XML string with only numeric and closed-vocabulary entries kept;
    returns it and how many entries were removed. An unparsable string is removed whole."""
    import xml.etree.ElementTree as ET

    raw = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    if not raw.strip():
        return raw, 0
    try:
        root = ET.fromstring(raw)
    except ET.ParseError:
        return "", 1
    dropped = 0
    for meta in list(root):
        name = (meta.findtext("name") or "").strip()
        values = [(v.text or "").strip() for v in meta.findall("value")]
        safe = name in _IMAGE_META_SAFE or (
            not _IMAGE_META_DENY.search(name) and all(map(_is_number, values))
        )
        if meta.tag == "meta" and safe:
            continue
        root.remove(meta)
        dropped += 1
    return ET.tostring(root, encoding="unicode"), dropped


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# Siemens TWIX
# ---------------------------------------------------------------------------------------------
# header keys by what happens to their value; matched as XProtocol ``<ParamX."key">`` and as
# MeasYaps ``key = value``
_TWIX_PSEUDONYM = ("PatientName", "tPatientName", "PatientID", "PatientsName")
_TWIX_PATIENT = ("PatientBirthDay", "PatientBirthDate", "PatientAddress", "PatientComments",
                 "ReferringPhysician", "ReferringPhysiciansName", "PerformingPhysician",
                 "PerfPhysiciansName", "OperatorsName", "OperatorName", "AccessionNumber",
                 "RequestingPhysician", "StudyComments", "tStudyComments", "PatientComment",
                 "tPatientComment", "OtherPatientIDs", "MedicalAlerts", "Allergies")  # fmt: skip
_TWIX_CHARACTERISTICS = ("PatientSex", "lPatientSex", "PatientAge", "flPatientAge",
                         "PatientWeight", "flUsedPatientWeight", "flPatientWeight",
                         "PatientHeight", "flPatientHeight", "PatientSize",
                         "PatientsSex", "PatientsAge", "PatientsWeight", "PatientsSize")  # fmt: skip
_TWIX_INSTITUTION = ("InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName")
_TWIX_DEVICE = ("DeviceSerialNumber", "StationName", "SerialNumber", "ulSerialNumber",
                "DeviceID")  # fmt: skip
_TWIX_UIDS = ("FrameOfReference", "tFrameOfReference", "ExamMemoryUID", "StudyInstanceUID",
              "SeriesInstanceUID", "SOPInstanceUID", "StudyLOID", "SeriesLOID", "PatientLOID",
              "InstanceLOID", "ReferencedImageSequence", "MeasUID")  # fmt: skip
_TWIX_UID_PATTERN = r"tReferenceImage\d+"
# any other key naming a unique id (e.g. ...ZZMatrixVectorUUID, a device-specific hash)
_ANY_UID = re.compile(r"(?i)(uuid|uid|loid)$")
# one XProtocol parameter: <ParamString."key"> { [<Tag> value]... "value" } or a number
_XP = re.compile(
    rb'<Param(?:String|Long|Double|Bool|Array)\."(?P<key>[A-Za-z_][\w]*)">\s*\{'
    rb"(?P<body>(?:[^{}])*?)\}"
)
_XP_VALUE = re.compile(rb'(?:<\w+>\s*(?:"[^"]*"|\S+)\s*)*(?P<v>"[^"]*"|[-+0-9.eE]+)')
_YAPS = re.compile(rb"^(?P<key>[A-Za-z_][\w.\[\]]*)\s*=\s*(?P<v>\"[^\"\n]*\"|[-+0-9.eExX]+)", re.M)
_QUOTED = re.compile(rb'"([^"\n]*)"')
# DICOM-style UIDs and Siemens LOIDs ("6.0.12345678"): digits with at least two dots
_ASCCONV_LEAD = re.compile(rb"\s*[A-Za-z_][\w.\[\]]*\s*=\s*")
_UID_LIKE = re.compile(rb"[0-9]+(?:\.[0-9]+){2,}")
_RAID_ENTRY = np.dtype(
    [("measId_", "<u4"), ("fileId_", "<u4"), ("off_", "<u8"), ("len_", "<u8"),
     ("patName_", "S64"), ("protName_", "S64")]
)  # fmt: skip


def _twix_action(key: str, deid: Deidentifier) -> str | None:
    opts = deid.options
    base = key.rsplit(".", 1)[-1]
    if base in _TWIX_PSEUDONYM:
        return "pseudonym"
    if base in _TWIX_PATIENT:
        return "blank"
    if base in _TWIX_CHARACTERISTICS:
        return None if Option.RETAIN_PATIENT_CHARACTERISTICS in opts else "zero"
    if base in _TWIX_INSTITUTION:
        return None if Option.RETAIN_INSTITUTION_IDENTITY in opts else "blank"
    if base in _TWIX_DEVICE:
        return None if Option.RETAIN_DEVICE_IDENTITY in opts else "blank"
    if base in _TWIX_UIDS or re.fullmatch(_TWIX_UID_PATTERN, base) or _ANY_UID.search(base):
        return None if Option.RETAIN_UIDS in opts else "uid"
    return None


def _fit(new: str, length: int, pad: str = " ") -> bytes | None:
    """``new`` padded to ``length`` bytes, or None when it does not fit."""
    raw = new.encode("ascii", "replace")
    if len(raw) > length:
        return None
    return raw + pad.encode() * (length - len(raw))


def _replacement(action: str, value: bytes, deid: Deidentifier, name: str) -> tuple[bytes, str]:
    """Same-length replacement of a value (without its quotes) and the action counted."""
    n = len(value)
    if action == "zero":
        return re.sub(rb"[1-9]", b"0", value), "zero"
    if action == "pseudonym":
        fitted = _fit(name, n)
        return (fitted, "pseudonym") if fitted is not None else (b"x" * n, "blank")
    if action == "uid":
        text = value.decode("ascii", "replace").strip()
        if not text or set(text) <= {"x", " "}:
            return value, "K"
        fitted = _fit(deid.uid(text), n)
        return (fitted, "U") if fitted is not None else (b" " * n, "blank")
    return b" " * n, "blank"


# Siemens ExamMemoryUID: <n>_<n>_<study LOID>_<YYYYMMDD>_<HHMMSS>_<ms>; the exam's start
_EXAM_UID = re.compile(rb"(\d+_\d+_)(\d+)_(\d{8})_(\d{6}_\d+)")


def _shifted_exam_uid(value: bytes, m: re.Match[bytes], days: int) -> bytes:
    """Same-length ExamMemoryUID with its LOID zeroed and its date shifted by ``days``."""
    import datetime as _dt

    try:
        day = _dt.datetime.strptime(m.group(3).decode(), "%Y%m%d") + _dt.timedelta(days=days)
    except ValueError:
        return b" " * len(value)
    new = b"0_0_" + b"0" * len(m.group(2)) + b"_" + day.strftime("%Y%m%d").encode()
    new += b"_" + m.group(4)
    return new[: len(value)].ljust(len(value), b" ")


def _twix_regions(data: bytes | bytearray) -> list[tuple[int, int]]:
    """``(start, end)`` of every measurement header; raises RawDeidError if not TWIX."""
    from imagelake.formats.twix import twix_version

    version = twix_version(bytes(data[:65536]))
    if version is None:
        raise RawDeidError("not a Siemens TWIX file (no VB or VD/VE header)")
    if version == "VB":
        hdr_len = int(np.frombuffer(data[:4], dtype="<u4")[0])
        return [(0, hdr_len)]
    count = int(np.frombuffer(data[4:8], dtype="<u4")[0])
    entries = np.frombuffer(data[8 : 8 + count * _RAID_ENTRY.itemsize], dtype=_RAID_ENTRY)
    regions = []
    for e in entries:
        off = int(e["off_"])
        if off + 4 > len(data):
            raise RawDeidError("TWIX file is truncated (measurement header beyond the end)")
        hdr_len = int(np.frombuffer(data[off : off + 4], dtype="<u4")[0])
        regions.append((off, min(off + hdr_len, len(data))))
    return regions


def _anonymize_twix(
    paths: Sequence[Path], deid: Deidentifier, out_path: Path, subject_key: str | None
) -> RawDeidResult:
    src_path = paths[0]
    data = bytearray(Path(src_path).read_bytes())
    try:
        regions = _twix_regions(data)
    except RawDeidError as exc:
        raise RawDeidError(f"{src_path}: {exc}") from None
    from imagelake.formats.twix import _raw_param

    head_text = b"".join(bytes(data[a:b]) for a, b in regions).decode("latin-1")
    found = _raw_param(head_text, "PatientID") or _raw_param(head_text, "PatientName")
    if found and set(found) <= {"x"}:
        found = None  # twixtools' examples: anonymized by the vendor tool with x's
    key = _need_key(subject_key, found, "TWIX")
    name = _subject_name(deid, key)
    shift = _shift_days(deid, key)
    counts: Counter[str] = Counter()
    notes: list[str] = []
    identifying: set[bytes] = set()  # string values seen, to find them elsewhere too
    produced: set[bytes] = set()  # replacement values already written (not to remap again)

    def rewrite(
        start: int, value_span: tuple[int, int], action: str, ascconv: bool = False
    ) -> None:
        a, b = value_span
        a, b = start + a, start + b
        value = bytes(data[a:b])
        quoted = value.startswith(b'"') and value.endswith(b'"') and len(value) >= 2
        inner = value[1:-1] if quoted else value
        if not inner.strip() or set(inner.strip()) <= {ord("x")}:
            return
        if action in ("zero",) and quoted:
            action = "blank"
        exam = _EXAM_UID.fullmatch(inner.strip()) if action == "uid" else None
        if exam is not None and shift is not None:
            new, done = _shifted_exam_uid(inner, exam, shift), "date shift"
        else:
            new, done = _replacement(action, inner, deid, name)
        if done == "K":
            return
        produced.add(new.strip())
        if action != "zero" and len(inner.strip()) >= 4:
            identifying.add(inner.strip())
        if quoted and ascconv:
            # ASCCONV values end at the first blank: pad before the opening quote instead
            trimmed = new.rstrip(b" ")
            data[a:b] = b" " * (len(new) - len(trimmed)) + b'"' + trimmed + b'"'
        elif quoted:
            data[a + 1 : b - 1] = new
        else:
            data[a:b] = new
        counts[done] += 1

    for start, end in regions:
        chunk = bytes(data[start:end])
        for m in _XP.finditer(chunk):
            action = _twix_action(m.group("key").decode("ascii"), deid)
            if action is None:
                continue
            body_start = m.start("body")
            vm = _XP_VALUE.match(m.group("body").lstrip())
            if vm is None:
                continue
            lead = len(m.group("body")) - len(m.group("body").lstrip())
            span = (body_start + lead + vm.start("v"), body_start + lead + vm.end("v"))
            rewrite(start, span, action)
        for m in _YAPS.finditer(chunk):
            action = _twix_action(m.group("key").decode("ascii"), deid)
            if action is not None:
                rewrite(start, m.span("v"), action, ascconv=True)
    # then every quoted string of the headers: UID-like values (Siemens UIDs, LOIDs) are
    # remapped, and any identifying value seen above (in other buffers, under other keys,
    # embedded in longer strings) is overwritten with x's of the same length
    values = sorted(identifying, key=len, reverse=True)
    retain_uids = Option.RETAIN_UIDS in deid.options
    for start, end in regions:
        for m in _QUOTED.finditer(bytes(data[start:end])):
            a, b = start + m.start(1), start + m.end(1)
            text = bytes(data[a:b])
            if (
                not retain_uids
                and _UID_LIKE.fullmatch(text.strip())
                and text.strip() not in produced
            ):
                new, done = _replacement("uid", text, deid, name)
                if done != "K":
                    line_start = data.rfind(b"\n", start, a - 1) + 1
                    if _ASCCONV_LEAD.fullmatch(bytes(data[line_start : a - 1])):
                        trimmed = new.rstrip(b" ")
                        pad = b" " * (len(new) - len(trimmed))
                        data[a - 1 : b + 1] = pad + b'"' + trimmed + b'"'
                    else:
                        data[a:b] = new
                    produced.add(new.strip())
                    counts[f"{done} value"] += 1
                    continue
            changed = text
            for value in values:
                if value in changed:
                    changed = changed.replace(value, b"x" * len(value))
            if changed != text:
                data[a:b] = changed
                counts["X elsewhere"] += 1
    # the multi-raid header: patient and protocol name per measurement
    if regions[0][0] != 0:  # VD/VE: the multi-raid header precedes the measurements
        count = int(np.frombuffer(data[4:8], dtype="<u4")[0])
        size = _RAID_ENTRY.itemsize
        for k in range(count):
            base = 8 + k * size + 24
            field_ = bytes(data[base : base + 64])
            if field_.strip(b"\x00").strip() and not set(field_.strip(b"\x00")) <= {ord("x")}:
                data[base : base + 64] = (name.encode("ascii")[:63]).ljust(64, b"\x00")
                counts["pseudonym"] += 1
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".partial")
    tmp.write_bytes(bytes(data))
    os.replace(tmp, out_path)
    if _keeps_dates(deid) and shift is None:
        notes.append("TWIX dates live inside UIDs and were replaced with them, not kept")
    return RawDeidResult((out_path,), name, dict(counts), tuple(notes))


# ---------------------------------------------------------------------------------------------
# DICOM-CT-PD
# ---------------------------------------------------------------------------------------------
def _ctpd_safe_private() -> frozenset[SafePrivate]:
    from imagelake.formats.ctpd import CTPD_TAGS

    return frozenset(
        SafePrivate(creator, group, elem) for group, elem, _vr, creator in CTPD_TAGS.values()
    )


_CTPD_GROUPS = range(0x7029, 0x7042, 2)  # DICOM-CT-PD projection-geometry private groups


def _geometry_blocks(ds: Any) -> frozenset[SafePrivate]:
    """Every element of the CT-PD geometry blocks of ``ds``, named by the file's own creators."""
    creators: dict[tuple[int, int], str] = {}
    out: set[SafePrivate] = set()
    for tag in ds.keys():  # noqa: SIM118 - Dataset iterates elements
        group, elem = tag >> 16, tag & 0xFFFF
        if group in _CTPD_GROUPS and 0x10 <= elem <= 0xFF:
            creators[(group, elem)] = str(ds[tag].value).strip()
    for tag in ds.keys():  # noqa: SIM118
        group, elem = tag >> 16, tag & 0xFFFF
        creator = creators.get((group, elem >> 8))
        if group in _CTPD_GROUPS and elem > 0xFF and creator:
            out.add(SafePrivate(creator, group, elem & 0xFF))
    return frozenset(out)


def _anonymize_ctpd(
    paths: Sequence[Path], deid: Deidentifier, out_path: Path, subject_key: str | None
) -> RawDeidResult:
    import pydicom
    from pydicom.errors import InvalidDicomError

    policy = deid.policy
    runs: dict[frozenset[SafePrivate], Deidentifier] = {}
    out_path.mkdir(parents=True, exist_ok=True)
    counts: Counter[str] = Counter()
    outs: list[Path] = []
    name = ""
    for p in paths:
        try:
            ds = pydicom.dcmread(p)
        except (InvalidDicomError, OSError, ValueError):
            raise RawDeidError(f"{p}: not a readable DICOM-CT-PD view") from None
        key = _need_key(subject_key, str(ds.get("PatientID", "")).strip() or None, "DICOM-CT-PD")
        # the projection-geometry blocks are data: kept under whatever creator the file uses
        safe = _ctpd_safe_private() | _geometry_blocks(ds)
        run = runs.get(safe)
        if run is None:
            run_policy = dataclasses.replace(
                policy,
                options=policy.options | {Option.RETAIN_SAFE_PRIVATE},
                safe_private=policy.safe_private | safe,
            )
            run = runs[safe] = Deidentifier(run_policy, secret=deid._secret, table=deid.table)
        result = run.deidentify(ds, subject_key=key, inplace=True)
        name = result.pseudonym
        counts.update(result.actions)
        dest = out_path / Path(p).name
        result.dataset.save_as(dest, enforce_file_format=False)
        outs.append(dest)
    return RawDeidResult(tuple(outs), name, dict(counts))


# ---------------------------------------------------------------------------------------------
# USTB UFF
# ---------------------------------------------------------------------------------------------
_UFF_TEXT = ("name", "info", "version", "reference", "author")


def _is_text(value: Any) -> bool:
    return isinstance(value, (str, bytes)) or (
        isinstance(value, np.ndarray) and value.dtype.kind in "SUO"
    )


def _as_text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _anonymize_uff(
    paths: Sequence[Path], deid: Deidentifier, out_path: Path, subject_key: str | None
) -> RawDeidResult:
    h5py = _h5py()
    src_path = paths[0]
    counts: Counter[str] = Counter()
    name = _subject_name(deid, subject_key) if subject_key else ""
    blanked: list[tuple[str, Any, tuple[int, ...], dict[str, Any]]] = []

    def skip(path: str, obj: Any) -> bool:
        base = path.rsplit("/", 1)[-1]
        if isinstance(obj, h5py.Dataset) and base in _UFF_TEXT:
            blanked.append((path, obj.dtype, obj.shape, dict(obj.attrs)))
            return True
        return False

    try:
        src = h5py.File(src_path, "r")
    except OSError:
        raise RawDeidError(f"{src_path}: not a readable HDF5 file") from None
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".partial")

    def attr_ok(path: str, key: str, value: Any) -> bool:
        if key == "class" or not _is_text(value):
            return True
        # UFF's structural name is the member's own name; any other text may be identity
        return key == "name" and _as_text(value) == path.rsplit("/", 1)[-1]

    with src, h5py.File(tmp, "w") as dst:
        counts["attribute X"] += _copy_h5(src, dst, skip, h5py, attr_ok=attr_ok)
        for path, dtype, shape, attrs in blanked:
            parent, _, base = path.rpartition("/")
            empty = (0, *shape[1:]) if len(shape) > 1 else (0,)
            ds = dst[parent or "/"].create_dataset(base, shape=empty, dtype=dtype)
            for k, v in attrs.items():
                if attr_ok(path, k, v):
                    ds.attrs[k] = v
            counts["text X"] += 1
    os.replace(tmp, out_path)
    return RawDeidResult((out_path,), name, dict(counts))


# ---------------------------------------------------------------------------------------------
# refscan (the reference emulator's proprietary-style CT raw format, revisions 1 and 2)
# ---------------------------------------------------------------------------------------------
# header text field -> (how it is handled, the DICOM attribute holding the same value; the
# reference emulator writes each into that attribute)
_REFSCAN_FIELDS: dict[str, tuple[str, int]] = {
    "manufacturer": ("table", 0x00080070),
    "model": ("table", 0x00081090),
    "software_version": ("table", 0x00181020),
    "device_serial": ("table", 0x00181000),
    "station_name": ("table", 0x00081010),
    "institution": ("table", 0x00080080),
    "acquired": ("datetime", 0x00080020),  # the emulator's Study/Series/Acquisition Date, Time
    "study_uid": ("uid", 0x0020000D),
    "series_uid": ("uid", 0x0020000E),
    "frame_of_reference_uid": ("uid", 0x00200052),
    "patient_name": ("pseudonym", 0x00100010),
    "patient_id": ("pseudonym", 0x00100020),
    "patient_birth_date": ("date", 0x00100030),
    "patient_sex": ("table", 0x00100040),
    "protocol_name": ("table", 0x00181030),
}
# revision 2 keys that are no identity: numbers, and values from a closed vocabulary
_REFSCAN_NUMBERS = frozenset(
    {"slices", "views", "detectors", "detector_spacing_mm", "center_detector",
     "start_angle_deg", "angular_range_deg", "mu_water_per_mm", "first_slice_z_mm",
     "slice_spacing_mm", "slice_thickness_mm", "kvp", "payload_scale", "payload_offset",
     "payload_bytes"}
)  # fmt: skip
_REFSCAN_VOCABULARY = {"format": "refscan", "revision": "2", "payload_encoding": "int16-be"}
_REFSCAN_KEY = re.compile(r"[a-z_]+")
_REFSCAN_REV1_ZERO = ((60, 64), (732, 1024))  # the reserved float and the zero tail
_REFSCAN_REV2_MAX_TEXT = 65536
_REFSCAN_ISO = re.compile(r"(\d{4})-(\d{2})-(\d{2})(T\d{2}:\d{2}:\d{2})")
_REFSCAN_COMPACT = re.compile(r"(\d{8})(\d{6})")


def _anonymize_refscan(
    paths: Sequence[Path], deid: Deidentifier, out_path: Path, subject_key: str | None
) -> RawDeidResult:
    """De-identify a refscan file: revision 1's fixed-width fields are overwritten in place
    (same width, NUL-padded), revision 2's text header is rewritten with its length updated;
    the payload is copied byte for byte, and the output is checked with the host's reader."""
    import struct

    from imagelake.anonymize._keyed import shift_da
    from imagelake.formats._base import RawFormatError
    from imagelake.formats.refscan import REFSCAN_MAGIC, REV1_TEXT_FIELDS, read_refscan_header

    src_path = paths[0]
    try:
        fields = read_refscan_header(src_path)
    except RawFormatError as exc:  # the reader's messages name keys and sizes, never values
        raise RawDeidError(f"not a readable refscan file: {exc}") from None
    revision = int(fields["revision"])
    width = 4 if revision == 1 else 2
    payload_start = int(fields["payload_offset_bytes"])
    payload_len = width * int(fields["slices"]) * int(fields["views"]) * int(fields["detectors"])
    found = (str(fields.get("patient_id") or "").strip()
             or str(fields.get("patient_name") or "").strip() or None)  # fmt: skip
    key = _need_key(subject_key, found, "refscan")
    name = _subject_name(deid, key)
    shift = _shift_days(deid, key)
    retain_uids = Option.RETAIN_UIDS in deid.options
    counts: Counter[str] = Counter()
    notes: list[str] = []

    def shifted(value: str, kind: str, days: int) -> str | None:
        """``value`` (``YYYYMMDD``, ``YYYYMMDDHHMMSS`` or ISO) moved by ``days``; the time of
        day is kept, as the DICOM engine keeps TM values."""
        try:
            if kind == "date":
                return shift_da(value, days)
            iso = _REFSCAN_ISO.fullmatch(value)
            if iso is not None:
                day = shift_da("".join(iso.group(1, 2, 3)), days)
                return f"{day[:4]}-{day[4:6]}-{day[6:]}{iso.group(4)}"
            compact = _REFSCAN_COMPACT.fullmatch(value)
            if compact is not None:
                return shift_da(compact.group(1), days) + compact.group(2)
        except InvalidInputError:
            pass
        return None

    def new_value(field_name: str, value: str, size: int | None = None) -> str:
        """The de-identified value of one header text field (``""``: removed); ``size``: the
        field's width in revision 1."""
        spec = _REFSCAN_FIELDS.get(field_name)
        if spec is None:  # a field this anonymizer does not know: it may hold anything
            counts["unknown X"] += 1
            return ""
        kind, tag = spec
        if kind == "pseudonym":  # as in the DICOM: the pseudonym, even for an empty field
            if not deid.policy.pseudonymize:
                counts["X"] += 1
                return ""
            if size is not None and len(name) > size:
                # an empty field rather than a cut pseudonym that matches nothing
                counts["X"] += 1
                notes.append("a pseudonym longer than its header field was left out")
                return ""
            counts["pseudonym"] += 1
            return name
        if not value.strip():
            return ""
        if kind == "uid":
            if tag in deid.policy.keep or (retain_uids and tag not in deid.policy.remove):
                counts["K"] += 1
                return value
            if tag in deid.policy.remove:
                counts["X"] += 1
                return ""
            counts["U"] += 1
            return deid.uid(value.strip())
        action = _table_action(deid, tag)
        if action == "K":
            counts["K"] += 1
            return value
        if action == "C" and kind in ("date", "datetime") and shift is not None:
            moved = shifted(value.strip(), kind, shift)
            counts["date shift" if moved is not None else "Z unparsable date"] += 1
            return moved or ""
        # "C" of free text falls back to removal, as the DICOM engine's basic action does
        counts["X"] += 1
        return ""

    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".partial")
    with open(src_path, "rb") as src:
        if revision == 1:
            header = bytearray(src.read(payload_start))
            for field_name, (offset, size) in REV1_TEXT_FIELDS.items():
                raw = bytes(header[offset : offset + size])
                value = raw.split(b"\x00", 1)[0].decode("ascii")  # the reader checked ASCII
                new = new_value(field_name, value, size).encode("ascii", "replace")[:size]
                # the whole field is rewritten: nothing after a terminating NUL survives
                header[offset : offset + size] = new.ljust(size, b"\x00")
            for a, b in _REFSCAN_REV1_ZERO:
                if any(header[a:b]):
                    counts["reserved X"] += 1
                    notes.append("non-zero reserved header bytes zeroed")
                header[a:b] = bytes(b - a)
            new_header = bytes(header)
        else:
            src.seek(12)
            text = src.read(payload_start - 12).decode("ascii")  # the reader checked ASCII
            lines: list[str] = []
            for line in text.split("\n"):
                if not line:
                    continue
                field_name, _, value = line.partition("=")
                if field_name in _REFSCAN_FIELDS:
                    lines.append(f"{field_name}={new_value(field_name, value)}")
                elif field_name == "end":
                    continue  # written last, once
                elif field_name in _REFSCAN_VOCABULARY:
                    if value == _REFSCAN_VOCABULARY[field_name]:
                        lines.append(line)
                    else:
                        counts["X"] += 1
                elif field_name in _REFSCAN_NUMBERS:
                    if _is_number(value):
                        lines.append(line)
                    else:
                        counts["X"] += 1
                        notes.append("a non-numeric value of a numeric header key removed")
                elif (
                    _REFSCAN_KEY.fullmatch(field_name)
                    and not _IMAGE_META_DENY.search(field_name)
                    and _is_number(value)
                ):
                    lines.append(line)  # another vendor number: kept, like ISMRMRD's
                    counts["K"] += 1
                else:
                    counts["unknown X"] += 1
                    notes.append("unknown header keys removed (only plain numbers are kept)")
            block = ("".join(f"{line}\n" for line in lines) + "end=header\n").encode("ascii")
            if len(block) > _REFSCAN_REV2_MAX_TEXT:
                raise RawDeidError(
                    f"{src_path}: the de-identified refscan text header would exceed "
                    f"{_REFSCAN_REV2_MAX_TEXT} bytes"
                )
            new_header = REFSCAN_MAGIC + struct.pack("<HI", 2, len(block)) + block
        src.seek(payload_start)
        try:
            with open(tmp, "wb") as dst:
                dst.write(new_header)
                left = payload_len
                while left:
                    chunk = src.read(min(left, 1 << 22))
                    if not chunk:
                        raise RawDeidError(f"{src_path}: refscan payload ended early")
                    dst.write(chunk)
                    left -= len(chunk)
            if src.read(1):
                counts["trailing X"] += 1
                notes.append("bytes after the payload were left out")
            # the output must stay a refscan file its readers accept
            check = read_refscan_header(tmp)
            if int(check["payload_offset_bytes"]) != len(new_header):
                raise RawDeidError(f"{src_path}: the de-identified header is inconsistent")
        except RawFormatError:
            tmp.unlink(missing_ok=True)
            raise RawDeidError(
                f"{src_path}: the de-identified refscan header does not parse"
            ) from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    os.replace(tmp, out_path)
    return RawDeidResult(
        (out_path,), name, {k: v for k, v in counts.items() if v}, tuple(dict.fromkeys(notes))
    )


# ---------------------------------------------------------------------------------------------
# opaque
# ---------------------------------------------------------------------------------------------
_OPAQUE_MESSAGE = (
    "an opaque vendor file cannot be shared anonymized (no reader knows where its identity is); "
    "route it to an emulator or leave it out"
)


def _refuse_opaque(
    paths: Sequence[Path], deid: Deidentifier, out_path: Path, subject_key: str | None
) -> RawDeidResult:
    raise OpaqueRawError(_OPAQUE_MESSAGE)


raw_anonymizers: Registry[RawAnonymizer] = Registry(
    "raw anonymizer",
    group="imagelake.raw_anonymizers",
    builtins={
        "ismrmrd": "imagelake.anonymize.raw:_anonymize_ismrmrd",
        "siemens-twix": "imagelake.anonymize.raw:_anonymize_twix",
        "dicom-ct-pd": "imagelake.anonymize.raw:_anonymize_ctpd",
        "ustb-uff": "imagelake.anonymize.raw:_anonymize_uff",
        "refscan": "imagelake.anonymize.raw:_anonymize_refscan",
        "opaque": "imagelake.anonymize.raw:_refuse_opaque",
    },
)


def anonymize_raw(
    path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    format_name: str,
    deid: Deidentifier,
    out_path: str | os.PathLike[str],
    *,
    subject_key: str | None = None,
) -> RawDeidResult:
    """Write a de-identified copy of a raw file (or a group of files) of ``format_name``.

    Parameters
    ----------
    path
        The raw file, or for DICOM-CT-PD the view files of one scan (or their folder).
    format_name
        A name of :data:`raw_anonymizers` (``"ismrmrd"``, ``"siemens-twix"``...).
    deid
        The project's DICOM de-identifier: its policy, pseudonyms, UID remap and date shifts
        are used, so a subject's raw files match the subject's DICOM.
    out_path
        The output file (DICOM-CT-PD: the output folder). Never the input.
    subject_key
        The subject's key as given to :meth:`Deidentifier.deidentify` (default: the Patient ID
        the file holds; required when the file names no patient).

    Raises
    ------
    OpaqueRawError
        For an opaque vendor file, whatever the policy.
    RawDeidError
        When the file cannot be read or de-identified.
    """
    anonymizer = raw_anonymizers.get(format_name)
    if format_name == "opaque":  # no policy or plugin can make an opaque file shareable
        raise OpaqueRawError(_OPAQUE_MESSAGE)
    if isinstance(path, (str, os.PathLike)):
        p = Path(path)
        paths = sorted(q for q in p.iterdir() if q.is_file()) if p.is_dir() else [p]
    else:
        paths = [Path(q) for q in path]
    if not paths:
        raise RawDeidError("no input file to anonymize")
    out = Path(out_path)
    for p in paths:
        if not p.exists():
            raise FileNotFoundError(f"{p}: no such file")
        if out.exists() and (out.resolve() == p.resolve() or out.resolve() == p.parent.resolve()):
            raise RawDeidError("the output must not overwrite the input")
    if not isinstance(deid, Deidentifier):
        raise InvalidInputError(f"expected a Deidentifier, not {type(deid).__name__}")
    return anonymizer(paths, deid, out, subject_key)
