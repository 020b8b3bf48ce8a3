r"""Link rules: each compares one raw file with one DICOM series and returns evidence.

A rule is any object with ``name``, ``description`` and ``evaluate(raw, series, ctx)``
returning an :class:`Evidence` or ``None`` (nothing to say). Rules are pure: no I/O, no
state; what they need beyond the pair comes from the :class:`LinkContext`. Third parties
add rules under the entry-point group ``imagelake.link_rules``.

Weights are log-likelihood ratios in natural-log units: the engine adds them to a prior
(``-3.0``: a blocked candidate pair is true about 1 time in 20) and takes the logistic.
An *anchor* is evidence that identifies the link by itself (a shared UID, the same frame
of reference); without one, the engine never auto-accepts. A *veto* is a hard
contradiction: the pair is never auto-accepted, however high its score.

| rule                | condition                                      | weight    | flag   |
|---------------------|------------------------------------------------|-----------|--------|
| shared-series-uid   | the raw names the series' SeriesInstanceUID    | +9.0      | anchor |
| referenced-instance | the series holds instances the raw references  | -12.0     | veto   |
|                     | (its localizer: a reference, not a descendant) |           |        |
|                     | same study / FoR as that localizer             | +3.5      | anchor |
|                     | another study than every referenced localizer  | -4.0      |        |
| study-uid           | StudyInstanceUID equal                         | +3.0      |        |
|                     | both present, different                        | -8.0      |        |
| frame-of-reference  | FrameOfReferenceUID equal                      | +4.0      | anchor |
|                     | both present, different                        | -3.0      |        |
| device-time         | same device, Δ = series - raw in [-skew,       | +3.5 ..   |        |
|                     | window]: 1 + 2.5 up to 30 min, then            | +1.0      |        |
|                     | 1 + 2.5·exp(-(Δ - 30 min) / 30 min)            |           |        |
|                     | -2·skew ≤ Δ < -skew (clocks a little further   | 0         |        |
|                     | apart than assumed: no opinion)                |           |        |
|                     | Δ < -2·skew (a descendant cannot predate its   | -3.0      | veto   |
|                     | raw that far)                                  |           |        |
|                     | same device, after the window, same day        | -2.0      |        |
|                     | days apart (device same or unknown)            | -4.0      |        |
|                     | device unknown, outside the window             | -2.0      |        |
|                     | different device (serials; else manufacturer,  | -10.0     | veto   |
|                     | model or station differ)                       |           |        |
| patient             | patient ID keyed hashes equal                  | +3.0      |        |
|                     | patient ID keyed hashes differ                 | -8.0      | veto   |
|                     | (no IDs) name + birth date hashes equal        | +2.5      |        |
|                     | (no IDs) name + birth date hashes differ       | -6.0      | veto   |
| protocol            | protocol names equal (+ sequence names equal)  | +1 (+0.5) |        |
|                     | protocol names differ, neither a prefix of the | -2.0      | veto   |
|                     | other (a sibling scan of the exam)             |           |        |
| study-start         | the series' study began after raw + skew (its  | -4.0      | veto   |
|                     | earliest series): a later exam                 |           |        |
| modality            | both known, different                          | -10.0     | veto   |
| localizer           | the series is a localizer (scout, topogram)    | -2.0      | veto   |

The engine also treats positive ``device-time`` and ``patient`` evidence together as an
anchor (the same patient on the same scanner at the right time), see ``LinkEngine``.
Weights were set from what each fact implies, then checked against the failure
categories ``benchmarks/linking.py`` shows on simulated worlds (two changed that way:
patient ID +2.5 → +3.0, time decay 60 → 30 min), never tuned per case. Rules run in
registry order; each declares ``max_weight`` so the engine can stop early on pairs that
can no longer reach ``review``.

Evidence text names rules, UIDs' roles, deltas and device identifiers; it never carries
patient identity, keyed hashes or absolute dates.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Protocol, runtime_checkable

from imagelake._registry import Registry
from imagelake.linking._records import RawRecord, SeriesRecord

__all__ = [
    "Evidence",
    "LinkContext",
    "LinkRule",
    "link_rules",
]

PRIOR = -3.0

W_SERIES_UID = 9.0
W_REF_IS_LOCALIZER = -12.0
W_REF_SESSION = 3.5
W_REF_OTHER_STUDY = -4.0
W_STUDY_EQUAL = 3.0
W_STUDY_DIFFER = -8.0
W_FOR_EQUAL = 4.0
W_FOR_DIFFER = -3.0
W_TIME_BASE = 1.0
W_TIME_PEAK = 2.5
TIME_PLATEAU = timedelta(minutes=30)
TIME_DECAY = timedelta(minutes=30)
_PLATEAU_S = TIME_PLATEAU.total_seconds()
_DECAY_S = TIME_DECAY.total_seconds()
W_TIME_BEFORE = -3.0
W_TIME_LATE = -2.0
W_TIME_DAYS = -4.0
W_TIME_UNKNOWN_DEVICE = -2.0
W_DEVICE_DIFFER = -10.0
W_PATIENT_ID_EQUAL = 3.0
W_PATIENT_ID_DIFFER = -8.0
W_PATIENT_NAME_EQUAL = 2.5
W_PATIENT_NAME_DIFFER = -6.0
W_PROTOCOL_EQUAL = 1.0
W_SEQUENCE_EQUAL = 0.5
W_PROTOCOL_DIFFER = -2.0
W_MODALITY_DIFFER = -10.0
W_LOCALIZER = -2.0
W_LATER_EXAM = -4.0


@dataclass(frozen=True, slots=True)
class Evidence:
    """What one rule concluded about one pair.

    ``weight`` is a log-likelihood ratio: positive supports the link, negative contradicts
    it. ``anchor``: this evidence identifies the link by itself. ``veto``: a hard
    contradiction; the pair is never auto-accepted. ``detail`` is human-readable and
    free of patient identity.
    """

    rule: str
    weight: float
    detail: str
    veto: bool = False
    anchor: bool = False


@dataclass(frozen=True)
class LinkContext:
    """What rules may know beyond the pair: the engine's time tolerances and lookups.

    ``references`` maps a raw key to the series holding instances that raw references
    (its localizer), found by the engine once for all raws; ``study_start`` maps a
    StudyInstanceUID to the earliest series time seen in that study.
    """

    skew: timedelta = timedelta(minutes=10)
    window: timedelta = timedelta(hours=6)
    references: Mapping[str, tuple[SeriesRecord, ...]] = field(default_factory=dict)
    study_start: Mapping[str, datetime] = field(default_factory=dict)
    skew_s: float = field(init=False, repr=False)
    window_s: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "skew_s", self.skew.total_seconds())
        object.__setattr__(self, "window_s", self.window.total_seconds())

    def referenced(self, raw: RawRecord) -> tuple[SeriesRecord, ...]:
        return self.references.get(raw.key, ())


@runtime_checkable
class LinkRule(Protocol):
    """The shape of a link rule (structural: no base class needed).

    A rule may also declare ``max_weight``, the largest weight it can return: the engine
    then stops scoring a pair as soon as the rules left cannot lift it to ``review``.
    Without it the engine assumes no bound.
    """

    name: str
    description: str

    def evaluate(
        self, raw: RawRecord, series: SeriesRecord, ctx: LinkContext
    ) -> Evidence | None: ...


def _span(sec: float) -> str:
    sec = abs(sec)
    if sec >= 2 * 86400:
        return f"{sec / 86400:.0f} days"
    if sec >= 5400:
        return f"{sec / 3600:.1f} h"
    return f"{sec / 60:.0f} min"


# Rules run on every candidate pair (millions), so the evidence they return is built once per
# distinct outcome and cached; all built-in evidence objects are immutable and shareable.
_CACHE = 65536


# -- the built-in rules ---------------------------------------------------------------------


class SharedSeriesUid:
    name = "shared-series-uid"
    max_weight = W_SERIES_UID
    description = "the raw header names the series' SeriesInstanceUID"
    _yes = Evidence(name, W_SERIES_UID, "the raw names this SeriesInstanceUID", anchor=True)

    def evaluate(self, raw: RawRecord, series: SeriesRecord, ctx: LinkContext) -> Evidence | None:
        return self._yes if series.key in raw.series_uids else None


@lru_cache(maxsize=_CACHE)
def _ref_localizer(n: int) -> Evidence:
    return Evidence(
        "referenced-instance",
        W_REF_IS_LOCALIZER,
        f"the series holds {n} instance(s) the raw references (its localizer): "
        "a reference, not a descendant",
        veto=True,
    )


class ReferencedInstance:
    name = "referenced-instance"
    max_weight = W_REF_SESSION
    description = (
        "instances the raw references (its localizer): that series is a reference, not a "
        "descendant; series of the same study or frame of reference are the same session"
    )
    _study = Evidence(
        name, W_REF_SESSION, "same study as the localizer the raw references", anchor=True
    )
    _frame = Evidence(
        name,
        W_REF_SESSION,
        "same frame of reference as the localizer the raw references",
        anchor=True,
    )
    _other = Evidence(
        name,
        W_REF_OTHER_STUDY,
        "the series is in another study than the localizer the raw references",
    )

    def evaluate(self, raw: RawRecord, series: SeriesRecord, ctx: LinkContext) -> Evidence | None:
        if not raw.referenced_sop_uids:
            return None
        if not raw.referenced_sop_uids.isdisjoint(series.sop_uids):
            return _ref_localizer(len(raw.referenced_sop_uids & series.sop_uids))
        refs = ctx.referenced(raw)
        if not refs:
            return None
        if series.study_uid and any(r.study_uid == series.study_uid for r in refs):
            return self._study
        if series.frame_of_reference_uid and any(
            r.frame_of_reference_uid == series.frame_of_reference_uid for r in refs
        ):
            return self._frame
        if series.study_uid and all(r.study_uid for r in refs):
            return self._other
        return None


class StudyUid:
    name = "study-uid"
    max_weight = W_STUDY_EQUAL
    description = "StudyInstanceUID equal (supports) or different (contradicts)"
    _equal = Evidence(name, W_STUDY_EQUAL, "StudyInstanceUID equal")
    _differ = Evidence(name, W_STUDY_DIFFER, "StudyInstanceUIDs differ")

    def evaluate(self, raw: RawRecord, series: SeriesRecord, ctx: LinkContext) -> Evidence | None:
        a, b = raw.study_uid, series.study_uid
        if not a or not b:
            return None
        return self._equal if a == b else self._differ


class FrameOfReference:
    name = "frame-of-reference"
    max_weight = W_FOR_EQUAL
    description = "FrameOfReferenceUID equal (anchor) or different (contradicts)"
    _equal = Evidence(name, W_FOR_EQUAL, "FrameOfReferenceUID equal", anchor=True)
    _differ = Evidence(name, W_FOR_DIFFER, "FrameOfReferenceUIDs differ")

    def evaluate(self, raw: RawRecord, series: SeriesRecord, ctx: LinkContext) -> Evidence | None:
        a, b = raw.frame_of_reference_uid, series.frame_of_reference_uid
        if not a or not b:
            return None
        return self._equal if a == b else self._differ


def _models_match(a: str, b: str) -> bool:
    return a == b or a in b or b in a


def same_device(raw: RawRecord, series: SeriesRecord) -> tuple[bool | None, tuple[str, ...]]:
    """Whether raw and series come from one scanner: True, False or None (cannot tell).

    Serial numbers decide when both are present. Otherwise the manufacturer (first word),
    model (one containing the other: ``SKYRA`` / ``MAGNETOM SKYRA``) and station name must
    all be present and agree. The second item says how (for :func:`device_text`).
    """
    rs, ss = raw.device_serial, series.device_serial
    if rs and ss:
        if rs == ss:
            return True, ("serial", rs)
        return False, ("serials differ", rs, ss)
    rm, sm = raw.manufacturer, series.manufacturer
    ma = rm.split()[0] if rm else None
    mb = sm.split()[0] if sm else None
    if ma and mb and ma != mb:
        return False, ("manufacturers differ", rm or "", sm or "")
    if raw.model and series.model and not _models_match(raw.model, series.model):
        return False, ("models differ", raw.model, series.model)
    if not (ma and mb and raw.model and series.model and raw.station_name and series.station_name):
        return None, ("unknown",)
    if raw.station_name != series.station_name:
        return False, ("station names differ", raw.station_name, series.station_name)
    return True, ("station", rm or "", raw.model, raw.station_name)


def device_text(how: tuple[str, ...]) -> str:
    kind = how[0]
    if kind == "serial":
        return f"device serial {how[1]}"
    if kind == "station":
        return f"{how[1]} {how[2]} station {how[3]} (no serial)"
    if kind == "unknown":
        return "device not identifiable"
    return f"{kind} ({how[1]} vs {how[2]})"


@lru_cache(maxsize=_CACHE)
def _device_differ(how: tuple[str, ...]) -> Evidence:
    return Evidence("device-time", W_DEVICE_DIFFER, device_text(how), veto=True)


@lru_cache(maxsize=_CACHE)
def _time_inside(how: tuple[str, ...], minute: int, plateau: float, decay: float) -> Evidence:
    after = max(minute * 60.0 - plateau, 0.0)
    w = W_TIME_BASE + W_TIME_PEAK * math.exp(-after / decay)
    when = (
        f"{_span(minute * 60)} before (within skew)"
        if minute < 0
        else f"{_span(minute * 60)} after"
    )
    return Evidence(
        "device-time", round(w, 3), f"same device ({device_text(how)}); series {when} the raw"
    )


@lru_cache(maxsize=_CACHE)
def _time_near_miss(how: tuple[str, ...], span: str) -> Evidence:
    return Evidence(
        "device-time",
        0.0,
        f"same device ({device_text(how)}); the series is {span} before the raw, just beyond "
        "the skew: time neither supports nor contradicts",
    )


@lru_cache(maxsize=_CACHE)
def _time_outside(how: tuple[str, ...], case: str, span: str) -> Evidence:
    if how[0] == "unknown":
        w = W_TIME_DAYS if case == "days" else W_TIME_UNKNOWN_DEVICE
        if case == "before":
            return Evidence(
                "device-time",
                w,
                f"device unknown; the series is {span} before the raw (beyond the skew)",
                veto=True,
            )
        return Evidence(
            "device-time", w, f"device unknown; series and raw {span} apart, outside the window"
        )
    dev = device_text(how)
    if case == "days":
        return Evidence("device-time", W_TIME_DAYS, f"same device ({dev}) but {span} apart")
    if case == "before":
        return Evidence(
            "device-time",
            W_TIME_BEFORE,
            f"same device ({dev}) but the series is {span} before the raw (beyond the skew)",
            veto=True,
        )
    return Evidence(
        "device-time",
        W_TIME_LATE,
        f"same device ({dev}) but the series is {span} after the raw, beyond the window",
    )


class DeviceTime:
    name = "device-time"
    max_weight = W_TIME_BASE + W_TIME_PEAK
    description = (
        "same scanner (serial, or manufacturer + model + station) and the series acquired "
        "within [raw - skew, raw + window]"
    )

    def evaluate(self, raw: RawRecord, series: SeriesRecord, ctx: LinkContext) -> Evidence | None:
        same, how = same_device(raw, series)
        if same is False:
            return _device_differ(how)
        ra, sa = raw.acquired_at, series.acquired_at
        if ra is None or sa is None:
            return None
        sec = (sa - ra).total_seconds()
        if -ctx.skew_s <= sec <= ctx.window_s:
            if same is None:
                return None
            return _time_inside(how, math.floor(sec / 60), _PLATEAU_S, _DECAY_S)
        if -2 * ctx.skew_s <= sec < 0:
            # just beyond the skew: clocks may disagree a little more; no opinion either way
            return None if same is None else _time_near_miss(how, _span(60.0 * round(sec / 60)))
        if abs(sec) >= 86400:
            return _time_outside(how, "days", _span(round(sec / 86400) * 86400.0))
        return _time_outside(how, "before" if sec < 0 else "after", _span(60.0 * round(sec / 60)))


@lru_cache(maxsize=_CACHE)
def _later_exam(span: str) -> Evidence:
    return Evidence(
        "study-start",
        W_LATER_EXAM,
        f"the series' study began {span} after the raw (beyond the skew): a later exam",
        veto=True,
    )


class StudyStart:
    name = "study-start"
    max_weight = 0.0
    description = (
        "a descendant belongs to the exam the raw was acquired in, which began before it: a "
        "series whose study began after the raw (beyond the skew) is from a later exam"
    )

    def evaluate(self, raw: RawRecord, series: SeriesRecord, ctx: LinkContext) -> Evidence | None:
        ra = raw.acquired_at
        if ra is None or not series.study_uid:
            return None
        began = ctx.study_start.get(series.study_uid)
        if began is None:
            return None
        sec = (began - ra).total_seconds()
        if sec > ctx.skew_s:
            return _later_exam(_span(sec))
        return None


class Patient:
    name = "patient"
    max_weight = max(W_PATIENT_ID_EQUAL, W_PATIENT_NAME_EQUAL)
    description = "patient keyed hashes equal (supports) or different (veto)"
    _id_equal = Evidence(name, W_PATIENT_ID_EQUAL, "patient id keyed hashes equal")
    _id_differ = Evidence(name, W_PATIENT_ID_DIFFER, "patient id keyed hashes differ", veto=True)
    _nd_equal = Evidence(name, W_PATIENT_NAME_EQUAL, "patient name + birth date keyed hashes equal")
    _nd_differ = Evidence(
        name, W_PATIENT_NAME_DIFFER, "patient name + birth date keyed hashes differ", veto=True
    )

    def evaluate(self, raw: RawRecord, series: SeriesRecord, ctx: LinkContext) -> Evidence | None:
        a, b = raw.patient, series.patient
        if a is None or b is None:
            return None
        if a.id_key and b.id_key:
            return self._id_equal if a.id_key == b.id_key else self._id_differ
        if a.name_dob_key and b.name_dob_key:
            return self._nd_equal if a.name_dob_key == b.name_dob_key else self._nd_differ
        return None


@lru_cache(maxsize=_CACHE)
def _protocol(a: str | None, b: str | None, seq: bool) -> Evidence | None:
    if a and b:
        fa, fb = a.casefold(), b.casefold()
        if fa == fb:
            return Evidence(
                "protocol",
                W_PROTOCOL_EQUAL + (W_SEQUENCE_EQUAL if seq else 0.0),
                "protocol names equal" + (", sequence names equal" if seq else ""),
            )
        if fa.startswith(fb) or fb.startswith(fa):
            return None
        return Evidence(
            "protocol",
            W_PROTOCOL_DIFFER,
            f"protocol names differ ({a!r} vs {b!r}): a sibling scan, not a descendant",
            veto=True,
        )
    if seq:
        return Evidence("protocol", W_SEQUENCE_EQUAL, "sequence names equal")
    return None


class ProtocolMatch:
    name = "protocol"
    max_weight = W_PROTOCOL_EQUAL + W_SEQUENCE_EQUAL
    description = "protocol (and sequence) names equal; a different protocol is a sibling scan"

    def evaluate(self, raw: RawRecord, series: SeriesRecord, ctx: LinkContext) -> Evidence | None:
        ra, sb = raw.sequence_name, series.sequence_name
        seq = bool(ra and sb and ra.casefold() == sb.casefold())
        if not (raw.protocol_name and series.protocol_name) and not seq:
            return None
        return _protocol(raw.protocol_name, series.protocol_name, seq)


@lru_cache(maxsize=_CACHE)
def _modality_differ(a: str, b: str) -> Evidence:
    return Evidence(
        "modality", W_MODALITY_DIFFER, f"modality differs ({a} raw, {b} series)", veto=True
    )


class ModalityMatch:
    name = "modality"
    max_weight = 0.0
    description = "a raw file of one modality never yields a series of another"

    def evaluate(self, raw: RawRecord, series: SeriesRecord, ctx: LinkContext) -> Evidence | None:
        a, b = raw.modality, series.modality
        if a and b and a != b:
            return _modality_differ(a, b)
        return None


class LocalizerSeries:
    name = "localizer"
    max_weight = 0.0
    description = (
        "a localizer series (planning images) comes from its own, rarely archived raw scan: "
        "never linked automatically"
    )
    _yes = Evidence(
        name, W_LOCALIZER, "the series is a localizer (planning images); a human decides", veto=True
    )

    def evaluate(self, raw: RawRecord, series: SeriesRecord, ctx: LinkContext) -> Evidence | None:
        return self._yes if series.localizer else None


shared_series_uid = SharedSeriesUid()
referenced_instance = ReferencedInstance()
study_uid = StudyUid()
frame_of_reference = FrameOfReference()
device_time = DeviceTime()
patient = Patient()
protocol = ProtocolMatch()
modality = ModalityMatch()
localizer = LocalizerSeries()
study_start = StudyStart()

#: every link rule, by name: built-ins first, then entry points (``imagelake.link_rules``)
link_rules: Registry[LinkRule] = Registry(
    "link rule",
    "imagelake.link_rules",
    {
        name: f"imagelake.linking._rules:{attr}"
        for name, attr in (
            ("shared-series-uid", "shared_series_uid"),
            ("referenced-instance", "referenced_instance"),
            ("patient", "patient"),
            ("study-uid", "study_uid"),
            ("study-start", "study_start"),
            ("frame-of-reference", "frame_of_reference"),
            ("device-time", "device_time"),
            ("protocol", "protocol"),
            ("modality", "modality"),
            ("localizer", "localizer"),
        )
    },
)
