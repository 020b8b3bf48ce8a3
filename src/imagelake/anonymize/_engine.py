"""The de-identification engine: Table E.1-1 applied to a pydicom dataset.

How each action is carried out:

* ``X`` remove; ``Z`` zero length (a sequence becomes empty); ``D`` a dummy value of the VR (a
  sequence keeps its items and codes, each item de-identified in turn, with every name and free
  text inside (PN, LT, ST, UT, UC) replaced by a dummy); ``U`` keyed-hash UID (``2.25.<int>``);
  ``K`` keep (a sequence is still walked).
* ``X`` on an attribute that is Type 1 (2) in the dataset's IOD becomes ``D`` (``Z``), so the
  output stays a valid instance of its IOD.
* Compound actions depend on the attribute's Type in the IOD of the dataset's SOP class (packaged
  in ``data/iod_attribute_types.json``): ``X/Z`` → ``Z`` for Type 1/2 (and their C forms), else
  ``X``; ``Z/D`` → ``D`` for Type 1, else ``Z``; ``X/D`` → ``D`` for Type 1/2, else ``X``;
  ``X/Z/D`` → ``D``/``Z``/``X`` for Type 1/2/3; ``X/Z/U*`` → walk the sequence and replace its
  UIDs for Type 1/2, else ``X``. For an unknown SOP class, the choice that keeps any IOD valid.
* ``C`` (clean): dates under the Modified Dates option are shifted by the subject's keyed shift
  (DA, and the date part of DT; TM is unchanged by a whole-day shift); sequences are walked. Free
  text cannot be cleaned reliably, so there the Basic Profile action is applied instead.
* Attributes not in the table are kept, except UIDs (VR UI) that are not DICOM's own
  (``1.2.840.10008.*``), which are remapped too so no UID of the input survives, and dates (DA,
  DT), which are shifted with the others under Modified Dates, kept under Full Dates, and
  otherwise replaced by a dummy (the table's older editions miss e.g. InstanceCreationDate).
* Private attributes are removed unless the Retain Safe Private option is chosen and the policy
  lists them (private creator + group + element byte); unused private creators go too.
* Overlays (60xx) and curves (50xx) are removed as whole groups unless kept (Clean Graphics cannot
  be carried out on their bits here, so it removes them too); no half overlay is left behind.
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import pydicom
from pydicom import config
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.sr.codedict import codes
from pydicom.tag import BaseTag
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, UID_dictionary

from imagelake.anonymize._keyed import date_shift, pseudonym, shift_da, shift_dt, uid_remap
from imagelake.anonymize._policy import Policy
from imagelake.anonymize._table import ConfidentialityTable, Option, confidentiality_table
from imagelake.errors import InvalidInputError

__all__ = ["DeidResult", "Deidentifier", "burned_in_risk", "method_codes"]

_PATIENT_NAME = 0x00100010
_PATIENT_ID = 0x00100020
_SOP_INSTANCE_UID = 0x00080018
_SOP_CLASS_UID = 0x00080016
_BURNED_IN_ANNOTATION = 0x00280301
_MODALITY = 0x00080060
_IMAGE_TYPE = 0x00080008
_SERIES_DESCRIPTION = 0x0008103E
_PATIENT_IDENTITY_REMOVED = 0x00120062
_DEID_METHOD = 0x00120063
_DEID_METHOD_CODES = 0x00120064
_LONG_TEMPORAL_MODIFIED = 0x00280303
_IMPLEMENTATION_CLASS_UID = 0x00020012
_IMPLEMENTATION_VERSION_NAME = 0x00020013
_MEDIA_SOP_INSTANCE_UID = 0x00020003
_CODE_VALUE = 0x00080100
_CODING_SCHEME = 0x00080102
_CODE_MEANING = 0x00080104
_MAX_CACHE = 1 << 18  # entries of a per-Deidentifier memo before it is emptied


def _element(ds: Dataset, key: BaseTag) -> DataElement:
    """``ds[key]`` for a key of ``ds``: the element, converted from its raw form if need be.

    The same element ``ds[key]`` gives (raw elements go through ``Dataset.__getitem__``, which
    converts them and corrects ambiguous VRs), without its tag conversion for decoded ones.
    """
    elem = ds._dict[key]
    if isinstance(elem, RawDataElement):
        return ds[key]
    return elem


def _get(ds: Dataset, tag: int, default: Any) -> Any:
    """``ds.get(keyword, default)`` for the keyword of ``tag`` (the element's value)."""
    key = BaseTag(tag)
    if key not in ds._dict:
        return default
    return _element(ds, key).value


def _put(ds: Dataset, tag: int, value: Any, *, constant: bool = False) -> None:
    """``ds.<keyword> = value`` for the keyword of ``tag`` (``Dataset.__setattr__``'s steps).

    ``constant``: ``value`` is one of the engine's fixed values, whose conversion is memoized.
    """
    key = BaseTag(tag)
    if key not in ds._dict:
        vr = _VRS.get(tag) or _VRS.setdefault(tag, dictionary_VR(key))
        converted = (
            _CONVERTED.get((vr, value, config.datetime_conversion), _MISSING)
            if constant
            else _MISSING
        )
        if converted is not _MISSING:
            elem = DataElement(key, vr, converted, already_converted=True)
        else:
            elem = DataElement(key, vr, value)
            if constant:
                _memo_converted(elem, value)
    else:
        elem = _element(ds, key)
        if constant:
            _set_constant(elem, value)
        else:
            elem.value = value
    ds[key] = elem


_VRS: dict[int, str] = {}
_MISSING = object()
# (VR, value, datetime_conversion) -> the value as DataElement's setter converts (and validates)
# it, for the engine's fixed values whose conversion is immutable (str, bytes, int, float)
_CONVERTED: dict[tuple[str, Any, bool], Any] = {}
_IMMUTABLE = frozenset({str, bytes, int, float})


def _memo_converted(elem: DataElement, value: Any) -> None:
    converted = elem.value
    if type(converted) in _IMMUTABLE and len(_CONVERTED) < 1024:
        _CONVERTED[(elem.VR, value, config.datetime_conversion)] = converted


def _set_constant(elem: DataElement, value: Any) -> None:
    """``elem.value = value`` for a fixed, valid value of the engine, converted once per VR."""
    converted = _CONVERTED.get((elem.VR, value, config.datetime_conversion), _MISSING)
    if converted is _MISSING:
        elem.value = value
        _memo_converted(elem, value)
    else:
        elem._value = converted  # what the setter stores for it (a valid, immutable value)


def _set_uid(elem: DataElement, uid: str) -> None:
    """``elem.value = uid`` for a single UID the engine made (``2.25.<int>``, always valid)."""
    if uid.startswith("2.25.") and "\\" not in uid:
        elem._value = UID(uid, config.IGNORE)  # the setter's conversion; validation cannot fail
    else:
        elem.value = uid


_DUMMY: dict[str, Any] = {
    "AE": "ANONYMIZED",
    "AS": "000D",
    "CS": "ANONYMIZED",
    "DA": "19000101",
    "DT": "19000101000000",
    "TM": "000000",
    "DS": "0",
    "IS": "0",
    "LO": "ANONYMIZED",
    "LT": "ANONYMIZED",
    "SH": "ANONYMIZED",
    "ST": "ANONYMIZED",
    "UT": "ANONYMIZED",
    "UC": "ANONYMIZED",
    "PN": "ANONYMIZED",
    "UR": "urn:anonymized",
    "AT": 0,
    "FL": 0.0,
    "FD": 0.0,
    "SL": 0,
    "SS": 0,
    "SV": 0,
    "UL": 0,
    "US": 0,
    "UV": 0,
}
_BINARY_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "UN"}
_FREE_TEXT_VRS = {"PN", "LT", "ST", "UT", "UC"}
# Compound actions resolved by the attribute's Type in the IOD (PS3.15 E.1.1: "X unless Z is
# required to maintain IOD conformance (Type 3 versus Type 2)"...). Unknown IOD or attribute
# (the top-level SOP class is not in the packaged data): the choice that keeps any IOD valid.
_REQUIRED = {"1", "1C"}
_TYPE2 = {"2", "2C"}
_UNKNOWN_IOD = {"X/Z": "Z", "Z/D": "D", "X/D": "D", "X/Z/D": "D", "X/Z/U*": "U*"}


def _resolve(action: str, attribute_type: str | None) -> str:
    """The simple action a compound ``action`` takes for an attribute of ``attribute_type``.

    ``attribute_type`` is ``"1"``, ``"1C"``, ``"2"``, ``"2C"``, ``"3"``, ``"absent"`` (known IOD
    without the attribute) or ``None`` (IOD unknown).
    """
    if action == "X":
        # Deviation kept on purpose: removing a Type 1/2 attribute breaks the IOD (later
        # editions turned several such rows, e.g. Treatment Machine Name, into X/Z), so a
        # required attribute gets a dummy and a Type 2 one is emptied instead.
        if attribute_type in _REQUIRED:
            return "D"
        return "Z" if attribute_type in _TYPE2 else "X"
    if action not in _UNKNOWN_IOD:
        return action
    if attribute_type is None:
        return _UNKNOWN_IOD[action]
    if action == "X/Z":
        return "Z" if attribute_type in _REQUIRED | _TYPE2 else "X"
    if action == "X/D":
        return "D" if attribute_type in _REQUIRED | _TYPE2 else "X"
    if action == "Z/D":
        return "D" if attribute_type in _REQUIRED else "Z"
    if action == "X/Z/D":
        if attribute_type in _REQUIRED:
            return "D"
        return "Z" if attribute_type in _TYPE2 else "X"
    return "U*" if attribute_type in _REQUIRED | _TYPE2 else "X"  # X/Z/U*


@cache
def _iod_types() -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """(SOP class UID -> CIOD id, CIOD id -> {tag path: Type}) from the packaged data."""
    text = resources.files("imagelake.anonymize").joinpath("data/iod_attribute_types.json")
    data = json.loads(text.read_text("utf-8"))
    return data["sop_classes"], data["types"]


# File meta attributes that name the sending/receiving application or carry private data.
_META_DROP = (0x00020016, 0x00020017, 0x00020018, 0x00020100, 0x00020102)

# CID 7050 "De-identification Method" codes, by option (code values verified in pydicom's DCM
# concept dictionary, CID 7050).
_OPTION_CODES: dict[Option, str] = {
    Option.CLEAN_GRAPHICS: "CleanGraphicsOption",
    Option.CLEAN_STRUCTURED_CONTENT: "CleanStructuredContentOption",
    Option.CLEAN_DESCRIPTORS: "CleanDescriptorsOption",
    Option.RETAIN_LONG_FULL_DATES: "RetainLongitudinalTemporalInformationFullDatesOption",
    Option.RETAIN_LONG_MODIFIED_DATES: "RetainLongitudinalTemporalInformationModifiedDatesOption",
    Option.RETAIN_PATIENT_CHARACTERISTICS: "RetainPatientCharacteristicsOption",
    Option.RETAIN_DEVICE_IDENTITY: "RetainDeviceIdentityOption",
    Option.RETAIN_UIDS: "RetainUidsOption",
    Option.RETAIN_SAFE_PRIVATE: "RetainSafePrivateOption",
    Option.RETAIN_INSTITUTION_IDENTITY: "RetainInstitutionIdentityOption",
}

# Burned-in annotation: modalities and SOP classes whose pixels often carry text.
_RISKY_MODALITIES = frozenset({"US", "SC", "OT", "XA", "ES"})
_SECONDARY_CAPTURE = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture Image Storage
        "1.2.840.10008.5.1.4.1.1.7.1",  # Multi-frame Single Bit SC
        "1.2.840.10008.5.1.4.1.1.7.2",  # Multi-frame Grayscale Byte SC
        "1.2.840.10008.5.1.4.1.1.7.3",  # Multi-frame Grayscale Word SC
        "1.2.840.10008.5.1.4.1.1.7.4",  # Multi-frame True Color SC
        "1.2.840.10008.5.1.4.1.1.104.1",  # Encapsulated PDF
    }
)
# ImageType values and series descriptions that vendors give screen captures of dose reports,
# protocols and screenshots (GE "SCREEN SAVE", Siemens "Patient Protocol"/"Dose Report").
_RISKY_IMAGE_TYPES = frozenset({"SCREEN SAVE", "SCREENSHOT", "DOSE INFO", "DOSE REPORT"})
_RISKY_DESCRIPTIONS = ("DOSE REPORT", "PATIENT PROTOCOL", "SCREEN SAVE", "SCREENSHOT", "DOSE INFO")


def method_codes(options: frozenset[Option], *, clean_pixels: bool = False) -> list[Dataset]:
    """Items of DeidentificationMethodCodeSequence (CID 7050) for the Basic Profile + options."""
    names = ["BasicApplicationConfidentialityProfile"]
    if clean_pixels:
        names.append("CleanPixelDataOption")
    names += [_OPTION_CODES[o] for o in Option if o in options]
    items = []
    for name in names:
        code = getattr(codes.DCM, name)
        item = Dataset()
        item.CodeValue = code.value
        item.CodingSchemeDesignator = code.scheme_designator
        item.CodeMeaning = code.meaning
        items.append(item)
    return items


_OVERLAY_REASON = "overlay data present"


def burned_in_risk(ds: Dataset) -> str | None:
    """Why the pixels of ``ds`` may show burned-in identifying text, or ``None``.

    The reasons are fixed strings (never a value of the dataset), so they can be logged.
    """
    return "; ".join(_risk_reasons(ds)) or None


def _risk_reasons(ds: Dataset) -> list[str]:
    reasons = []
    if str(_get(ds, _BURNED_IN_ANNOTATION, "")).upper() == "YES":
        reasons.append("BurnedInAnnotation is YES")
    modality = str(_get(ds, _MODALITY, "")).upper()
    if modality in _RISKY_MODALITIES:
        reasons.append(f"modality {modality}")
    if str(_get(ds, _SOP_CLASS_UID, "")) in _SECONDARY_CAPTURE:
        reasons.append("secondary capture or document SOP class")
    image_type = {str(v).upper() for v in (_get(ds, _IMAGE_TYPE, None) or [])}
    if image_type & _RISKY_IMAGE_TYPES:
        reasons.append("screen-capture image type")
    description = str(_get(ds, _SERIES_DESCRIPTION, "")).upper()
    if any(d in description for d in _RISKY_DESCRIPTIONS):
        reasons.append("dose or protocol screen series")
    if _has_overlay(ds):
        reasons.append(_OVERLAY_REASON)
    return reasons


def _has_overlay(ds: Dataset) -> bool:
    return any(tag & 0xFF00FFFF == 0x60003000 for tag in ds._dict)  # (60xx,3000)


@dataclass(frozen=True)
class DeidResult:
    """The outcome of :meth:`Deidentifier.deidentify`.

    Attributes
    ----------
    dataset
        The de-identified copy (the input is not changed).
    actions
        How many attributes got each action (``"X"``, ``"Z"``, ``"D"``, ``"U"``, ``"K"``,
        ``"shift"``, ``"pseudonym"``, ``"private X"``...): counts only, no values.
    burned_in_risk
        Why the pixels may show identifying text (hold the image back until reviewed), or None.
    pseudonym
        The subject's pseudonym.
    date_shift_days
        The shift applied to dates, or ``None`` when dates were not shifted.
    """

    dataset: Dataset = field(repr=False)
    actions: Mapping[str, int]
    burned_in_risk: str | None
    pseudonym: str = field(repr=False)
    date_shift_days: int | None = field(default=None, repr=False)


# What the walk does with a tag, decided once per Deidentifier (see Deidentifier._step).
_DROP = 0  # group length, or file meta inside the dataset: removed
_KEEP_POLICY = 1
_REMOVE_POLICY = 2
_PRIVATE = 3
_UNLISTED = 4  # not in the table
_LISTED = 5  # in the table: apply its action
_LISTED_GRAPHICS = 6  # in the table, in an overlay/curve group, action not K
# Actions whose simple form depends on the attribute's Type in the IOD (see _resolve).
_TYPED = frozenset({"X", *_UNKNOWN_IOD})


class _Run:
    """State of one :meth:`Deidentifier.deidentify` call."""

    def __init__(self, shift: int | None, types: dict[str, str] | None, ciod: str | None) -> None:
        self.shift = shift
        self.types = types  # Types of the compound-action attributes in this IOD, or None
        self.ciod = ciod if types is not None else None  # names ``types`` in memo keys
        self.path: list[str] = []  # tags of the enclosing sequences
        self.prefix = ""  # ``path`` joined, as memo key
        self.counts: Counter[str] = Counter()

    def attribute_type(self, tag: int) -> str | None:
        if self.types is None:
            return None
        return self.types.get(":".join([*self.path, f"{tag:08X}"]), "absent")


class Deidentifier:
    """De-identify DICOM datasets under a :class:`Policy` with a project ``secret``.

    Parameters
    ----------
    policy
        What to keep, remove, and how.
    secret
        At least 16 bytes; keys the UID remap, the pseudonyms and the date shifts. Keep it
        outside the data (the same secret gives the same pseudonyms and UIDs in every run).
    table
        Table E.1-1 to apply (default: the packaged one).
    """

    def __init__(
        self, policy: Policy, *, secret: bytes, table: ConfidentialityTable | None = None
    ) -> None:
        uid_remap("1.2", secret)  # validates the secret now rather than on the first file
        self.policy = policy
        self._secret = bytes(secret)
        self.options = policy.effective_options()
        self.table = table or confidentiality_table()
        self._safe_private = {(s.creator, s.group, s.element) for s in policy.safe_private}
        self._uid_cache: dict[str, str] = {}
        self._uids: dict[str, str] = {}
        self._prepare()

    def _prepare(self) -> None:
        """Derive from ``policy``, ``options`` and ``table`` what every call would recompute.

        The memos hold tags, actions, UIDs and subject keys' pseudonyms and shifts (derived
        under the secret, never shown). They are rebuilt if one of the three is replaced.
        """
        self._prepared = (self.policy, self.options, self.table)
        self._steps: dict[int, tuple[int, str]] = {}
        self._resolved: dict[tuple[str | None, str, int, str], str] = {}
        self._subjects: dict[str, tuple[str, int | None]] = {}
        self._codes = [
            (str(i.CodeValue), str(i.CodingSchemeDesignator), str(i.CodeMeaning))
            for i in method_codes(self.options)
        ]
        self._method = f"imagelake PS3.15 E.1 policy {self.policy.name}"[:64]
        self._retain_uids = Option.RETAIN_UIDS in self.options
        self._full_dates = Option.RETAIN_LONG_FULL_DATES in self.options

    def __repr__(self) -> str:  # never show the secret
        return f"Deidentifier(policy={self.policy.name!r}, options={sorted(self.options)})"

    # -- public -------------------------------------------------------------------------------
    def uid(self, value: str) -> str:
        """The replacement of one UID (cached; DICOM's own UIDs are kept)."""
        if isinstance(value, str):
            new = self._uids.get(value)
            if new is not None:
                return new
        text = str(value).strip().rstrip("\x00")
        if not text or text.startswith("1.2.840.10008.") or text in UID_dictionary:
            new = text
        else:
            new = self._uid_cache.get(text)
            if new is None:
                new = self._uid_cache[text] = uid_remap(text, self._secret)
        if isinstance(value, str):
            if len(self._uids) >= _MAX_CACHE:
                self._uids.clear()
            self._uids[value] = new
        return new

    def deidentify(self, ds: Dataset, *, subject_key: str, inplace: bool = False) -> DeidResult:
        """Return a de-identified copy of ``ds`` for the subject ``subject_key``.

        ``subject_key`` is the subject's identity as the site knows it (e.g. the original
        Patient ID with its issuer); it picks the pseudonym and the date shift. With
        ``inplace``, ``ds`` itself is de-identified (and returned in the result): half the
        time, for callers that do not need the original any more.
        """
        if not isinstance(ds, Dataset):
            raise InvalidInputError(f"expected a pydicom Dataset, not {type(ds).__name__}")
        if not subject_key or not isinstance(subject_key, str):
            raise InvalidInputError("deidentify needs a non-empty string subject_key")
        prepared = self._prepared
        if (
            prepared[0] is not self.policy
            or prepared[1] is not self.options
            or prepared[2] is not self.table
        ):
            self._prepare()
        # judged on the input (the output loses SeriesDescription...), except overlays, which
        # count only if they are still in the output
        reasons = [r for r in _risk_reasons(ds) if r != _OVERLAY_REASON]
        name, shift = self._subject(subject_key)
        sop_classes, types = _iod_types()
        ciod = sop_classes.get(str(_get(ds, _SOP_CLASS_UID, "")))
        run = _Run(shift, types.get(ciod) if ciod else None, ciod)
        out = ds if inplace else copy.deepcopy(ds)
        self._walk(out, run)
        if self.policy.pseudonymize:
            _put(out, _PATIENT_NAME, name)
            _put(out, _PATIENT_ID, name)
            run.counts["pseudonym"] += 2
        self._mark(out, shift)
        self._file_meta(out, run)
        if _has_overlay(out):
            reasons.append(_OVERLAY_REASON)
        return DeidResult(out, dict(run.counts), "; ".join(reasons) or None, name, shift)

    def _subject(self, subject_key: str) -> tuple[str, int | None]:
        """The subject's pseudonym and date shift (``None``: dates are not shifted), memoized."""
        known = self._subjects.get(subject_key)
        if known is not None:
            return known
        shift = None
        if Option.RETAIN_LONG_MODIFIED_DATES in self.options and not self._full_dates:
            shift = date_shift(subject_key, self._secret, self.policy.date_shift_days)
        name = pseudonym(
            subject_key, self._secret, self.policy.pseudonym_prefix, self.policy.pseudonym_length
        )
        if len(self._subjects) >= _MAX_CACHE:
            self._subjects.clear()
        self._subjects[subject_key] = (name, shift)
        return name, shift

    # -- walking ------------------------------------------------------------------------------
    def _step(self, tag: int) -> tuple[int, str]:
        """What the walk does with ``tag``: (kind, table action or ""), the same at any depth."""
        step = self._steps.get(tag)
        if step is not None:
            return step
        group, elem = tag >> 16, tag & 0xFFFF
        action: str | None = None
        if elem == 0 or group == 0x0002:  # group lengths; meta stays in file_meta
            kind = _DROP
        elif tag in self.policy.keep:
            kind = _KEEP_POLICY
        elif tag in self.policy.remove:
            kind = _REMOVE_POLICY
        elif group & 1:
            kind = _PRIVATE
        else:
            row = self.table.lookup(tag)
            action = row.action(self.options) if row is not None else None
            if action is None:
                kind = _UNLISTED
            elif group & 0xFF00 in (0x5000, 0x6000) and action != "K":
                kind = _LISTED_GRAPHICS
            else:
                kind = _LISTED
        step = self._steps[tag] = (kind, action or "")
        return step

    def _simple(self, action: str, tag: int, run: _Run) -> str:
        """``_resolve(action, run.attribute_type(tag))``, memoized by IOD and sequence path."""
        if action not in _TYPED:
            return action
        key = (run.ciod, run.prefix, tag, action)
        simple = self._resolved.get(key)
        if simple is None:
            if len(self._resolved) >= _MAX_CACHE:
                self._resolved.clear()
            simple = self._resolved[key] = _resolve(action, run.attribute_type(tag))
        return simple

    def _walk(self, ds: Dataset, run: _Run, dummy: bool = False) -> None:
        private_kept: set[tuple[int, int]] = set()  # (group, block) of retained private data
        creators: list[BaseTag] = []
        drop_groups: set[int] = set()
        counts = run.counts
        steps = self._steps
        for key in list(ds._dict):
            tag = int(key)
            step = steps.get(tag) or self._step(tag)
            kind = step[0]
            if kind == _LISTED:
                self._apply(ds, key, self._simple(step[1], tag, run), run, dummy)
            elif kind == _UNLISTED:
                self._unlisted(ds, key, run, dummy)
            elif kind == _DROP:
                del ds[key]
            elif kind == _PRIVATE:
                elem = tag & 0xFFFF
                if 0x0010 <= elem <= 0x00FF:
                    creators.append(key)
                elif self._private_safe(ds, tag >> 16, elem):
                    private_kept.add((tag >> 16, elem >> 8))
                    counts["private K"] += 1
                else:
                    del ds[key]
                    counts["private X"] += 1
            elif kind == _KEEP_POLICY:
                counts["K policy"] += 1
            elif kind == _REMOVE_POLICY:
                del ds[key]
                counts["X policy"] += 1
            else:  # _LISTED_GRAPHICS
                # graphics cannot be cleaned here: remove the whole overlay/curve group
                drop_groups.add(tag >> 16)
                self._apply(ds, key, self._simple(step[1], tag, run), run, dummy)
        for key in creators:
            if (key >> 16, key & 0xFF) not in private_kept:
                del ds[key]
                counts["private X"] += 1
        if drop_groups:
            for key in [t for t in ds._dict if t >> 16 in drop_groups]:
                del ds[key]
                counts["X"] += 1

    def _private_safe(self, ds: Dataset, group: int, elem: int) -> bool:
        if Option.RETAIN_SAFE_PRIVATE not in self.options or not self._safe_private:
            return False
        creator_tag = (group << 16) | (elem >> 8)
        if creator_tag not in ds:
            return False
        creator = str(ds[creator_tag].value).strip()
        return (creator, group, elem & 0xFF) in self._safe_private

    def _unlisted(self, ds: Dataset, key: BaseTag, run: _Run, dummy: bool) -> None:
        elem = _element(ds, key)
        vr = elem.VR
        if vr == "SQ":
            self._walk_sequence(elem, run, dummy)
        elif dummy and vr in _FREE_TEXT_VRS:
            self._dummy(elem)
            run.counts["D content"] += 1
        elif vr == "UI" and not self._retain_uids:
            self._remap(elem, run)
        elif vr in ("DA", "DT") and not self._full_dates:
            # dates the table does not list (InstanceCreationDate in older editions) still date
            # the patient's visit: shift them with the others, or replace them by a dummy
            if run.shift is not None:
                run.counts[self._shift(elem, run.shift) + " unlisted"] += 1
            else:
                self._dummy(elem)
                run.counts["D unlisted date"] += 1

    def _walk_sequence(self, elem: DataElement, run: _Run, dummy: bool = False) -> None:
        items = elem.value
        if not items:
            return
        prefix = run.prefix
        run.path.append(f"{int(elem.tag):08X}")
        run.prefix = ":".join(run.path)
        try:
            for item in items:
                self._walk(item, run, dummy)
        finally:
            run.path.pop()
            run.prefix = prefix

    def _remap(self, elem: DataElement, run: _Run) -> None:
        if elem.VR != "UI" or elem.value in (None, ""):
            return
        values = elem.value if elem.VM > 1 else [elem.value]
        new = [self.uid(v) for v in values]
        if elem.VM > 1:
            elem.value = new
        else:
            _set_uid(elem, new[0])
        run.counts["U"] += 1

    def _apply(
        self, ds: Dataset, key: BaseTag, action: str, run: _Run, dummy: bool = False
    ) -> None:
        if action == "X":
            del ds[key]
            run.counts["X"] += 1
            return
        elem = _element(ds, key)
        vr = elem.VR
        if action == "Z":
            elem.value = Sequence() if vr == "SQ" else (b"" if vr in _BINARY_VRS else None)
        elif action in ("D", "K", "U*") or (action == "C" and vr == "SQ"):
            if vr == "SQ":
                # a dummy (or cleaned) sequence keeps its structure and codes, but every free
                # text, name, date and UID inside it is replaced
                self._walk_sequence(elem, run, dummy or action in ("D", "C"))
            elif action == "D":
                self._dummy(elem)
            elif vr == "UI" and action == "U*":
                self._remap(elem, run)
        elif action == "U":
            if vr == "SQ":
                self._walk_sequence(elem, run, dummy)
            else:
                self._remap(elem, run)
                return
        elif action == "C":
            action = self._clean(ds, key, run)
        else:  # pragma: no cover - the table parser rejects other codes
            raise InvalidInputError(f"unsupported de-identification action {action!r}")
        run.counts[action] += 1

    def _dummy(self, elem: DataElement) -> None:
        if elem.value in (None, "", b"") or (isinstance(elem.value, list) and not elem.value):
            # an empty Type 2 value is already free of identity; keep it empty
            return
        if elem.VR == "UI":
            values = elem.value if elem.VM > 1 else [elem.value]
            if elem.VM > 1:
                elem.value = [self.uid(v) for v in values]
            else:
                _set_uid(elem, self.uid(values[0]))
        elif elem.VR in _BINARY_VRS:
            _set_constant(elem, b"\x00\x00")
        else:
            _set_constant(elem, _DUMMY.get(elem.VR, "ANONYMIZED"))

    def _clean(self, ds: Dataset, key: BaseTag, run: _Run) -> str:
        elem = _element(ds, key)
        if elem.VR in ("DA", "DT", "TM") and run.shift is not None:
            return self._shift(elem, run.shift)
        # Free text cannot be cleaned reliably: fall back to the Basic Profile action.
        tag = int(key)
        row = self.table.lookup(tag)
        basic = self._simple(row.basic, tag, run) if row is not None else "X"
        self._apply(ds, key, basic, run)
        return "C as basic"

    @staticmethod
    def _shift(elem: DataElement, days: int) -> str:
        """Shift a DA or DT element by ``days`` (TM is unchanged by a whole-day shift)."""
        if elem.VR == "TM" or elem.value in (None, ""):
            return "shift"
        shift_one = shift_da if elem.VR == "DA" else shift_dt
        values = list(elem.value) if elem.VM > 1 else [elem.value]
        try:
            new = [shift_one(str(v), days) for v in values if str(v).strip()]
        except InvalidInputError:
            elem.value = None  # an unparsable date cannot be shifted: empty it
            return "Z unparsable date"
        elem.value = new if elem.VM > 1 else (new[0] if new else None)
        return "shift"

    # -- marking ------------------------------------------------------------------------------
    def _mark(self, ds: Dataset, shift: int | None) -> None:
        _put(ds, _PATIENT_IDENTITY_REMOVED, "YES", constant=True)
        _put(ds, _DEID_METHOD, self._method, constant=True)
        items = []
        for value, scheme, meaning in self._codes:  # method_codes(self.options), prebuilt
            item = Dataset()
            _put(item, _CODE_VALUE, value, constant=True)
            _put(item, _CODING_SCHEME, scheme, constant=True)
            _put(item, _CODE_MEANING, meaning, constant=True)
            items.append(item)
        _put(ds, _DEID_METHOD_CODES, Sequence(items))
        if self._full_dates:
            _put(ds, _LONG_TEMPORAL_MODIFIED, "UNMODIFIED", constant=True)
        elif shift is not None:
            _put(ds, _LONG_TEMPORAL_MODIFIED, "MODIFIED", constant=True)
        else:
            _put(ds, _LONG_TEMPORAL_MODIFIED, "REMOVED", constant=True)

    def _file_meta(self, ds: Dataset, run: _Run) -> None:
        meta = getattr(ds, "file_meta", None)
        if meta is None:
            return
        if not isinstance(meta, FileMetaDataset):
            meta = ds.file_meta = FileMetaDataset(meta)
        for tag in _META_DROP:
            key = BaseTag(tag)
            if key in meta._dict:
                del meta[key]
                run.counts["meta X"] += 1
        # the output is written by this software, not by the original implementation
        _put(meta, _IMPLEMENTATION_CLASS_UID, PYDICOM_IMPLEMENTATION_UID)
        _put(meta, _IMPLEMENTATION_VERSION_NAME, _IMPLEMENTATION_VERSION, constant=True)
        if BaseTag(_SOP_INSTANCE_UID) in ds._dict:
            _put(meta, _MEDIA_SOP_INSTANCE_UID, _get(ds, _SOP_INSTANCE_UID, None))
        elif not self._retain_uids and BaseTag(_MEDIA_SOP_INSTANCE_UID) in meta._dict:
            old = str(_get(meta, _MEDIA_SOP_INSTANCE_UID, None))
            _put(meta, _MEDIA_SOP_INSTANCE_UID, UID(self.uid(old)))


_IMPLEMENTATION_VERSION = f"PYDICOM {pydicom.__version__}"[:16]
