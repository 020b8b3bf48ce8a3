"""Plain records the linking engine compares: one raw file, one DICOM series, patient keys.

The engine never sees patient identity, only :class:`PatientKeys`: HMAC-SHA256 digests of
normalised values under a site key that lives outside every lake (:func:`load_or_create_key`).
Two records of the same patient give equal digests; a digest reveals nothing without the key.

Identity fields used for comparison (modality, manufacturer, model, device serial, station
name) are stored stripped and upper-cased, empty strings becoming ``None``; UID collections
become frozensets. Times are naive scanner local time (DICOM DA/TM carry no zone).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Protocol

from imagelake.errors import ConfigError

__all__ = [
    "PatientKeys",
    "RawRecord",
    "SeriesRecord",
    "dicom_datetime",
    "is_derived",
    "is_localizer",
    "load_or_create_key",
    "patient_keys",
]

KEY_BYTES = 32
_MIN_KEY_BYTES = 16
_UPPER_FIELDS = ("modality", "manufacturer", "model", "device_serial", "station_name")
_SPACES = re.compile(r"\s+")


# -- patient keys ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PatientKeys:
    """Keyed hashes of a patient's identity (hex HMAC-SHA256), ``None`` where unknown.

    ``id_key`` hashes the patient ID; ``name_dob_key`` hashes name and birth date together
    (a name alone is too common to identify anyone). The repr shows which keys are set,
    never their values.
    """

    id_key: str | None = None
    name_dob_key: str | None = None

    def __repr__(self) -> str:
        present = [k for k in ("id_key", "name_dob_key") if getattr(self, k)]
        return f"PatientKeys(<set: {', '.join(present) or 'none'}>)"

    __str__ = __repr__

    @property
    def empty(self) -> bool:
        return self.id_key is None and self.name_dob_key is None


def _norm_id(value: str | None) -> str | None:
    if value is None:
        return None
    text = _SPACES.sub(" ", str(value)).strip().upper()
    return text or None


def _norm_name(value: str | None) -> str | None:
    """DICOM PN: first (alphabetic) group, '^' components stripped, trailing empties cut."""
    if value is None:
        return None
    alphabetic = str(value).split("=", 1)[0]
    parts = [_SPACES.sub(" ", p).strip().upper() for p in alphabetic.split("^")]
    while parts and not parts[-1]:
        parts.pop()
    text = "^".join(parts)
    return text if text.strip("^") else None


def _norm_birth_date(value: str | date | None) -> str | None:
    """``YYYYMMDD`` from DA, ISO or ACR-NEMA (``YYYY.MM.DD``) dates; ``None`` if unusable."""
    if value is None:
        return None
    if isinstance(value, date):
        return value.strftime("%Y%m%d")
    digits = re.sub(r"[\s.\-/]", "", str(value))
    if not re.fullmatch(r"\d{8}", digits):
        return None
    try:
        datetime.strptime(digits, "%Y%m%d")
    except ValueError:
        return None
    return digits


def _digest(key: bytes, domain: bytes, *values: str) -> str:
    msg = domain + b"\x00" + b"\x1f".join(v.encode("utf-8") for v in values)
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


def patient_keys(
    patient_id: str | None,
    name: str | None,
    birth_date: str | date | None,
    *,
    key: bytes,
) -> PatientKeys:
    """Keyed hashes of a patient's identity, comparable across raw files and DICOM.

    Parameters
    ----------
    patient_id
        Patient ID; whitespace collapsed, stripped, upper-cased.
    name
        Patient name as DICOM PN (``Doe^John``); components stripped and upper-cased,
        trailing empty components removed (``"doe^john^^"`` equals ``"DOE^JOHN"``).
    birth_date
        ``YYYYMMDD``, ``YYYY-MM-DD``, ``YYYY.MM.DD`` or a :class:`~datetime.date`; an
        unparseable date counts as absent.
    key
        The site key (at least 16 bytes, see :func:`load_or_create_key`).

    Returns
    -------
    PatientKeys
        ``id_key`` is ``None`` without an ID; ``name_dob_key`` is ``None`` unless both name
        and birth date are usable.
    """
    if not isinstance(key, bytes | bytearray) or len(key) < _MIN_KEY_BYTES:
        raise ConfigError(f"the patient key must be at least {_MIN_KEY_BYTES} bytes")
    key = bytes(key)
    pid = _norm_id(patient_id)
    pname = _norm_name(name)
    dob = _norm_birth_date(birth_date)
    return PatientKeys(
        id_key=_digest(key, b"imagelake/patient-id/v1", pid) if pid else None,
        name_dob_key=(
            _digest(key, b"imagelake/patient-name-dob/v1", pname, dob) if pname and dob else None
        ),
    )


def _inside_lake(path: Path) -> Path | None:
    # a lake folder holds imagelake.json (and registry.sqlite unless the registry is a
    # PostgreSQL database)
    for parent in path.parents:
        if (parent / "imagelake.json").exists() or (parent / "registry.sqlite").exists():
            return parent
    return None


def load_or_create_key(path: str | os.PathLike[str]) -> bytes:
    """Read the site's patient key, creating it (32 random bytes, mode 0600) if absent.

    Creation is atomic and race-free: the key is written to a private temporary file and
    hard-linked into place, so two processes starting together end up with the same key.
    Keys never live inside a lake (a folder holding ``registry.sqlite``).

    Raises
    ------
    ConfigError
        The path is inside a lake, or the file cannot be read or created, or it does not
        hold a key of at least 16 bytes.
    """
    p = Path(path).expanduser().absolute()
    lake = _inside_lake(p)
    if lake is not None:
        raise ConfigError(
            f"refusing to keep the patient key {p} inside the lake at {lake}; "
            "keep keys outside every lake"
        )
    if not p.exists():
        try:
            p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = p.with_name(f".{p.name}.{secrets.token_hex(8)}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(secrets.token_bytes(KEY_BYTES))
                    fh.flush()
                    os.fsync(fh.fileno())
                try:
                    os.link(tmp, p)
                except FileExistsError:
                    pass  # another process won the race: use its key
            finally:
                tmp.unlink(missing_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create the patient key file {p}: {exc.strerror}") from None
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the patient key file {p}: {exc.strerror}") from None
    if len(data) < _MIN_KEY_BYTES:
        raise ConfigError(
            f"the patient key file {p} holds {len(data)} bytes; at least {_MIN_KEY_BYTES} needed"
        )
    return data


# -- DICOM helpers -------------------------------------------------------------------------


def dicom_datetime(
    dt: str | None = None, da: str | None = None, tm: str | None = None
) -> datetime | None:
    """A naive datetime from a DICOM DT, or from DA + TM; ``None`` when unusable.

    A DT's zone offset is dropped (scanner local time is what raw headers carry).
    """
    text: str | None = None
    if dt:
        text = re.split(r"[+\-]", str(dt).strip(), maxsplit=1)[0]
    elif da:
        text = str(da).strip() + (str(tm).strip() if tm else "")
    if not text:
        return None
    m = re.fullmatch(r"(\d{8})(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,6}))?", text)
    if not m:
        return None
    day, hh, mm, ss, frac = m.groups()
    try:
        return datetime(
            int(day[:4]),
            int(day[4:6]),
            int(day[6:]),
            int(hh or 0),
            int(mm or 0),
            min(int(ss or 0), 59),
            int((frac or "0").ljust(6, "0")),
        )
    except ValueError:
        return None


def _image_type(image_type: str | Iterable[str] | None) -> set[str]:
    if image_type is None:
        return set()
    values = image_type.split("\\") if isinstance(image_type, str) else list(image_type)
    return {str(v).strip().upper() for v in values}


def is_derived(image_type: str | Iterable[str] | None) -> bool:
    """Whether an ImageType value says DERIVED or SECONDARY."""
    return bool(_image_type(image_type) & {"DERIVED", "SECONDARY"})


def is_localizer(image_type: str | Iterable[str] | None) -> bool:
    """Whether an ImageType value says LOCALIZER (a scout or topogram)."""
    return "LOCALIZER" in _image_type(image_type)


# -- records -------------------------------------------------------------------------------


class TagSource(Protocol):
    """Anything with ``get(keyword)``: a dict of tags, a pydicom Dataset."""

    def get(self, key: str, default: Any = ..., /) -> Any: ...


def _normalise(record: Any, uid_fields: tuple[str, ...]) -> None:
    for name in _UPPER_FIELDS:
        value = getattr(record, name)
        if value is not None:
            text = str(value).strip().upper()
            object.__setattr__(record, name, text or None)
    for name in ("study_uid", "frame_of_reference_uid", "protocol_name", "sequence_name"):
        value = getattr(record, name)
        if value is not None:
            text = str(value).strip()
            object.__setattr__(record, name, text or None)
    for name in uid_fields:
        value = getattr(record, name)
        if not isinstance(value, frozenset):
            object.__setattr__(record, name, frozenset(str(v).strip() for v in value if v))
    at = record.acquired_at
    if at is not None:
        if not isinstance(at, datetime):
            raise TypeError(f"acquired_at must be a datetime, not {type(at).__name__}")
        if at.tzinfo is not None:
            raise ValueError("acquired_at must be naive scanner local time (no zone)")
    if record.patient is not None and record.patient.empty:
        object.__setattr__(record, "patient", None)


@dataclass(frozen=True, slots=True)
class RawRecord:
    """What a raw file says about itself, for linking.

    ``key`` is the raw file's sha256. ``series_uids`` are series the raw header names
    (its own or those it will produce); ``referenced_sop_uids`` the instances it references
    (the localizer images it was planned on).
    """

    key: str
    format: str | None = None
    modality: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    device_serial: str | None = None
    station_name: str | None = None
    acquired_at: datetime | None = None
    study_uid: str | None = None
    frame_of_reference_uid: str | None = None
    series_uids: frozenset[str] = field(default_factory=frozenset)
    referenced_sop_uids: frozenset[str] = field(default_factory=frozenset)
    protocol_name: str | None = None
    sequence_name: str | None = None
    patient: PatientKeys | None = None

    def __post_init__(self) -> None:
        _normalise(self, ("series_uids", "referenced_sop_uids"))

    @classmethod
    def from_meta(
        cls, key: str, format: str, meta: Any, *, patient_key: bytes | None = None
    ) -> RawRecord:
        """Build from a :class:`imagelake.formats.RawMeta` (``patient_key`` hashes identity)."""
        at = None
        if meta.acquired_at:
            try:
                at = datetime.fromisoformat(str(meta.acquired_at)).replace(tzinfo=None)
            except ValueError:
                at = None
        patient = None
        ident = getattr(meta, "patient", None)
        if patient_key is not None and ident is not None and not ident.empty:
            patient = patient_keys(ident.patient_id, ident.name, ident.birth_date, key=patient_key)
        return cls(
            key=key,
            format=format,
            modality=meta.modality,
            manufacturer=meta.manufacturer,
            model=meta.model,
            device_serial=meta.device_serial,
            station_name=meta.station_name,
            acquired_at=at,
            study_uid=meta.study_instance_uid,
            frame_of_reference_uid=meta.frame_of_reference_uid,
            series_uids=frozenset(meta.series_instance_uids),
            referenced_sop_uids=frozenset(meta.referenced_sop_instance_uids),
            protocol_name=meta.protocol_name,
            sequence_name=meta.sequence_name,
            patient=patient,
        )


@dataclass(frozen=True, slots=True)
class SeriesRecord:
    """What a DICOM series says about itself, for linking. ``key`` is its SeriesInstanceUID.

    ``acquired_at`` is AcquisitionDateTime, else SeriesDate + SeriesTime, else StudyDate +
    StudyTime (see :meth:`from_tags`). ``derived`` is true for ImageType DERIVED/SECONDARY
    or a series made by a reconstruction; ``localizer`` for ImageType LOCALIZER (scouts,
    topograms: planning images).
    """

    key: str
    study_uid: str | None = None
    frame_of_reference_uid: str | None = None
    modality: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    device_serial: str | None = None
    station_name: str | None = None
    acquired_at: datetime | None = None
    protocol_name: str | None = None
    sequence_name: str | None = None
    series_description: str | None = None
    derived: bool = False
    sop_uids: frozenset[str] = field(default_factory=frozenset)
    patient: PatientKeys | None = None
    localizer: bool = False

    def __post_init__(self) -> None:
        _normalise(self, ("sop_uids",))

    @classmethod
    def from_tags(
        cls,
        tags: TagSource | Mapping[str, Any],
        *,
        sop_uids: Iterable[str] = (),
        patient_key: bytes | None = None,
        derived: bool | None = None,
    ) -> SeriesRecord:
        """Build from one instance's tags by keyword (a dict or a pydicom Dataset).

        ``derived`` overrides the ImageType test (a series made by a reconstruction).
        """

        def get(name: str) -> Any:
            value = tags.get(name)
            return None if value in ("", None) else value

        at = (
            dicom_datetime(get("AcquisitionDateTime"))
            or dicom_datetime(da=get("SeriesDate"), tm=get("SeriesTime"))
            or dicom_datetime(da=get("StudyDate"), tm=get("StudyTime"))
        )
        patient = None
        if patient_key is not None:
            name = get("PatientName")
            patient = patient_keys(
                get("PatientID"),
                None if name is None else str(name),
                get("PatientBirthDate"),
                key=patient_key,
            )
        key = get("SeriesInstanceUID")
        if key is None:
            raise ValueError("a series record needs a SeriesInstanceUID")
        return cls(
            key=str(key),
            study_uid=get("StudyInstanceUID"),
            frame_of_reference_uid=get("FrameOfReferenceUID"),
            modality=get("Modality"),
            manufacturer=get("Manufacturer"),
            model=get("ManufacturerModelName"),
            device_serial=get("DeviceSerialNumber"),
            station_name=get("StationName"),
            acquired_at=at,
            protocol_name=get("ProtocolName"),
            sequence_name=get("SequenceName"),
            series_description=get("SeriesDescription"),
            derived=is_derived(get("ImageType")) if derived is None else derived,
            sop_uids=frozenset(sop_uids),
            patient=patient,
            localizer=is_localizer(get("ImageType")),
        )
