"""Simulated linking worlds: scanners, days, patients, sessions, raw files, DICOM series.

``simulate_cases(n_sessions, seed=...)`` builds a world where the truth is known, with the
decoys a real site has: other patients on the same scanner the same day, twin scanners
(same model, other serial and station), series re-sent by PACS with new UIDs, raw files
from older software without UIDs, raw files without patient identity, clock skew between
raw and DICOM times (mostly within ±8 min, some far more), patients registered under a
temporary ID in the raw file, localizers, sessions whose raw data were not kept, raw files
never reconstructed.

Every true pair carries an *evidence level* decided from the world, not from the engine:

``sufficient``
    the data identify the raw without guessing: nothing contradicts the pair (patient,
    device, modality, protocol, localizer, a series older than its raw by more than twice
    the skew, a series whose study began after the raw) and either the raw names the series' UID (and
    no other raw does), or the raw has identifying agreement with the series (same frame
    of reference; same study or frame of reference as the localizer the raw references;
    or the same scanner, a time inside the window and the same patient key) while no
    other raw is a *competitor*: nothing contradicts it (time, with a near miss of the
    skew allowed, and study / frame of reference included) and it either has identifying
    agreement with the series or was
    acquired on the same scanner at most 30 min before it (the same exam, as far as
    anyone can tell);
``insufficient``
    anything else: only device and time, a contradiction, or several raws that fit
    (two raws of one session, the same patient scanned twice within the window...).

:func:`evaluate` scores proposals against a world.
"""

from __future__ import annotations

import bisect
import random
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any

from imagelake.linking._records import PatientKeys, RawRecord, SeriesRecord, patient_keys

__all__ = ["LinkCases", "LinkScores", "evaluate", "simulate_cases"]

#: the key simulated patients are hashed with (a test key: never use it for real data)
SIMULATION_KEY = b"imagelake-simulation-key-not-secret"

Pair = tuple[str, str]
#: how long after a raw another series of the same exam may start (for competitors)
SESSION = timedelta(minutes=30)


@dataclass(frozen=True)
class _Scanner:
    modality: str
    manufacturer: str  # as DICOM spells it
    raw_manufacturer: str  # as the raw header spells it
    model: str
    raw_model: str
    serial: str
    station: str
    raw_format: str


_SCANNERS = (
    _Scanner(
        "CT",
        "SIEMENS",
        "Siemens",
        "SOMATOM Force",
        "SOMATOM Force",
        "73512",
        "CTAWP73512",
        "dicom-ct-pd",
    ),
    _Scanner("MR", "SIEMENS", "Siemens", "Skyra", "Skyra", "45385", "MRC45385", "siemens-twix"),
    _Scanner(
        "CT",
        "GE MEDICAL SYSTEMS",
        "GE",
        "Revolution CT",
        "Revolution",
        "REV0418",
        "GECT01",
        "dicom-ct-pd",
    ),
    _Scanner(
        "MR",
        "GE MEDICAL SYSTEMS",
        "GE",
        "SIGNA Premier",
        "SIGNA Premier",
        "PREM31",
        "GEMR01",
        "ismrmrd",
    ),
    # a twin of the first CT: same vendor and model, another serial and station
    _Scanner(
        "CT",
        "SIEMENS",
        "Siemens",
        "SOMATOM Force",
        "SOMATOM Force",
        "73877",
        "CTAWP73877",
        "dicom-ct-pd",
    ),
    _Scanner(
        "MR",
        "Philips",
        "Philips Medical Systems",
        "Ingenia",
        "Ingenia",
        "42110",
        "PHMR01",
        "ismrmrd",
    ),
    _Scanner(
        "MR",
        "SIEMENS",
        "Siemens",
        "MAGNETOM Prisma",
        "Prisma",
        "167013",
        "MRC167013",
        "siemens-twix",
    ),
    _Scanner(
        "CT",
        "CANON_MEC",
        "CANON_MEC",
        "Aquilion ONE",
        "Aquilion ONE",
        "2CA1832",
        "CANONCT",
        "opaque",
    ),
)

_PROTOCOLS = {
    "CT": (
        "HEAD_ROUTINE",
        "THORAX_ROUTINE",
        "ABDOMEN_PORTAL",
        "CTA_AORTA",
        "SINUS",
        "CHEST_LOWDOSE",
        "SPINE_LUMBAR",
        "ANGIO_HEAD",
    ),
    "MR": (
        "t1_mprage_sag",
        "t2_tse_tra",
        "t2_flair_tra",
        "ep2d_diff_tra",
        "gre_field_map",
        "t2_space_sag",
        "swi_tra",
        "tof_fl3d_tra",
        "t1_vibe_dixon",
        "bold_rest",
    ),
}
_SEQUENCES = {"CT": ("", ""), "MR": ("*tfl3d1", "*tse2d1_15", "*epse2d1_128", "*fl3d1r")}
_KERNELS = ("Br40d", "Bv36d", "Qr40d", "STANDARD", "BONE", "FC08")
_THICKNESS = ("0.6", "1.0", "3.0", "5.0")


@dataclass(frozen=True)
class LinkCases:
    """A simulated world: records, the true links and their evidence levels."""

    raws: tuple[RawRecord, ...]
    series: tuple[SeriesRecord, ...]
    truth: frozenset[Pair]
    levels: Mapping[Pair, str]
    #: per true pair: "primary", "derived" or "resent"
    kinds: Mapping[Pair, str] = field(default_factory=dict)
    seed: int = 0
    n_sessions: int = 0

    @property
    def sufficient(self) -> frozenset[Pair]:
        return frozenset(p for p, lvl in self.levels.items() if lvl == "sufficient")

    @property
    def insufficient(self) -> frozenset[Pair]:
        return frozenset(p for p, lvl in self.levels.items() if lvl == "insufficient")

    def __repr__(self) -> str:
        return (
            f"LinkCases(seed={self.seed}, sessions={self.n_sessions}, raws={len(self.raws)}, "
            f"series={len(self.series)}, true={len(self.truth)}, "
            f"sufficient={len(self.sufficient)})"
        )


# -- the world ------------------------------------------------------------------------------


@dataclass
class _Patient:
    keys: PatientKeys
    temp_keys: PatientKeys


@dataclass
class _Raw:
    record: RawRecord
    scanner: int
    session: int
    patient: _Patient
    localizer_study: str | None  # study of the localizer it references, if any


@dataclass
class _Series:
    record: SeriesRecord
    scanner: int
    session: int
    raw: int | None  # index of its raw in the world, if any
    kind: str


class _World:
    def __init__(self, seed: int, key: bytes) -> None:
        self.rng = random.Random(seed)
        self.key = key
        self.raws: list[_Raw] = []
        self.series: list[_Series] = []
        self.patients: list[_Patient] = []
        self.session = 0

    def uid(self) -> str:
        return f"2.25.{self.rng.getrandbits(100)}"

    def sha(self) -> str:
        return f"{self.rng.getrandbits(256):064x}"

    def patient(self) -> _Patient:
        rng = self.rng
        if self.patients and rng.random() < 0.15:
            return rng.choice(self.patients)
        n = len(self.patients)
        dob = date(1930, 1, 1) + timedelta(days=rng.randrange(80 * 365))
        name = f"PATIENT{n:06d}^GIVEN{rng.randrange(1000):03d}"
        p = _Patient(
            keys=patient_keys(f"PID{n:07d}", name, dob, key=self.key),
            temp_keys=patient_keys(f"TRAUMA{n:05d}", None, None, key=self.key),
        )
        self.patients.append(p)
        return p


def _minutes(rng: random.Random, lo: float, hi: float) -> timedelta:
    return timedelta(minutes=rng.uniform(lo, hi))


def _session(
    w: _World,
    si: int,
    sc: _Scanner,
    start: datetime,
    patient: _Patient,
    n_raws: int,
    p: dict[str, float],
) -> None:
    """One exam: a localizer, 1-3 raw acquisitions (or none kept) and their series."""
    rng = w.rng
    sess = w.session
    w.session += 1
    study, frame = w.uid(), w.uid()
    protocols = rng.sample(_PROTOCOLS[sc.modality], 3)
    if sc.modality == "CT":
        protocols = [protocols[0]] * 3  # CT phases share the exam protocol
    # the localizer / topogram: no raw kept
    loc_uid = w.uid()
    loc_sops = frozenset(f"{loc_uid}.{k}" for k in (1, 2, 3))
    w.series.append(
        _Series(
            SeriesRecord(
                key=loc_uid,
                study_uid=study,
                frame_of_reference_uid=frame,
                modality=sc.modality,
                manufacturer=sc.manufacturer,
                model=sc.model,
                device_serial=sc.serial,
                station_name=sc.station,
                acquired_at=start,
                protocol_name="localizer" if sc.modality == "MR" else protocols[0],
                series_description="localizer" if sc.modality == "MR" else "Topogram",
                sop_uids=loc_sops,
                patient=patient.keys,
                localizer=True,
            ),
            si,
            sess,
            None,
            "localizer",
        )
    )
    t = start + _minutes(rng, 2, 5)
    kept = n_raws > 0
    # the raw computer's clock against the DICOM clock, for this exam
    if rng.random() < p["big_skew"]:
        skew = _minutes(rng, 10, 45) * rng.choice((-1, 1))
    else:
        skew = _minutes(rng, -8, 8)
    # a patient registered under a temporary ID at the scanner, corrected in PACS
    temp_id = rng.random() < p["temp_id"]
    for j in range(max(n_raws, rng.randint(1, 3) if not kept else 0)):
        protocol = protocols[j]
        seq = rng.choice(_SEQUENCES[sc.modality]) or None
        raw_index: int | None = None
        if kept:
            modern = rng.random() < p["modern"]
            no_patient = rng.random() < p["raw_no_patient"]
            refs: frozenset[str] = frozenset()
            loc_study = None
            if modern and sc.raw_format == "siemens-twix" and rng.random() < 0.8:
                refs = loc_sops
                loc_study = study
            raw = RawRecord(
                key=w.sha(),
                format=sc.raw_format,
                modality=sc.modality if rng.random() < 0.9 else None,
                manufacturer=sc.raw_manufacturer,
                model=sc.raw_model,
                device_serial=sc.serial if (modern or rng.random() < 0.5) else None,
                station_name=sc.station,
                acquired_at=t if rng.random() > p["raw_no_time"] else None,
                study_uid=study if modern and rng.random() < 0.9 else None,
                frame_of_reference_uid=frame if modern and rng.random() < 0.9 else None,
                referenced_sop_uids=refs,
                protocol_name=protocol if rng.random() < 0.95 else None,
                sequence_name=seq if sc.raw_format == "ismrmrd" and rng.random() < 0.5 else None,
                patient=None if no_patient else (patient.temp_keys if temp_id else patient.keys),
            )
            raw_index = len(w.raws)
            w.raws.append(_Raw(raw, si, sess, patient, loc_study))
            names_series = modern and rng.random() < p["raw_names_series"]
            reconstructed = rng.random() >= p["no_descendant"]
        else:
            names_series = False
            reconstructed = True
        made: list[str] = []
        if reconstructed:
            n_primary = rng.randint(1, 3)
            n_derived = rng.choice((0, 0, 1, 1, 2, 3))
            for k in range(n_primary + n_derived):
                derived = k >= n_primary
                uid = w.uid()
                at = t + skew + (_minutes(rng, 2, 40) if derived else _minutes(rng, 0, 1))
                if sc.modality == "CT":
                    desc = f"{protocol} {rng.choice(_THICKNESS)} {rng.choice(_KERNELS)}"
                else:
                    desc = protocol + ("_MPR" if derived else ("_PHA" if k == 1 else ""))
                rec = SeriesRecord(
                    key=uid,
                    study_uid=study,
                    frame_of_reference_uid=frame,
                    modality=sc.modality,
                    manufacturer=sc.manufacturer,
                    model=sc.model,
                    device_serial=sc.serial if rng.random() < 0.97 else None,
                    station_name=sc.station,
                    acquired_at=at,
                    protocol_name=protocol if rng.random() < 0.97 else None,
                    sequence_name=seq,
                    series_description=desc,
                    derived=derived,
                    sop_uids=frozenset(f"{uid}.{m}" for m in range(1, 5)),
                    patient=patient.keys,
                )
                w.series.append(
                    _Series(rec, si, sess, raw_index, "derived" if derived else "primary")
                )
                if not derived:
                    made.append(uid)
                if rng.random() < p["resend"]:
                    new = w.uid()
                    copy = SeriesRecord(
                        key=new,
                        study_uid=rec.study_uid,
                        frame_of_reference_uid=rec.frame_of_reference_uid,
                        modality=rec.modality,
                        manufacturer=rec.manufacturer,
                        model=rec.model,
                        device_serial=rec.device_serial,
                        station_name=rec.station_name,
                        acquired_at=rec.acquired_at,
                        protocol_name=rec.protocol_name,
                        sequence_name=rec.sequence_name,
                        series_description=rec.series_description,
                        derived=rec.derived,
                        sop_uids=frozenset(f"{new}.{m}" for m in range(1, 5)),
                        patient=rec.patient,
                    )
                    w.series.append(_Series(copy, si, sess, raw_index, "resent"))
        if raw_index is not None and names_series and made:
            entry = w.raws[raw_index]
            entry.record = replace(entry.record, series_uids=frozenset(made))
        t += _minutes(rng, 6, 15)


# -- evidence levels --------------------------------------------------------------------------


def _patient_relation(a: PatientKeys | None, b: PatientKeys | None) -> bool | None:
    if a is None or b is None:
        return None
    if a.id_key and b.id_key:
        return a.id_key == b.id_key
    if a.name_dob_key and b.name_dob_key:
        return a.name_dob_key == b.name_dob_key
    return None


def _protocols_differ(a: str | None, b: str | None) -> bool:
    if not a or not b:
        return False
    a, b = a.casefold(), b.casefold()
    return not (a.startswith(b) or b.startswith(a))


def _time_ok(r: RawRecord, s: SeriesRecord, skew: timedelta, window: timedelta) -> bool | None:
    if r.acquired_at is None or s.acquired_at is None:
        return None
    return -skew <= s.acquired_at - r.acquired_at <= window


class _Labeller:
    def __init__(self, w: _World, skew: timedelta, window: timedelta) -> None:
        self.w = w
        self.skew = skew
        self.window = window
        self.by_scanner: dict[int, list[tuple[datetime, int]]] = defaultdict(list)
        # raws without a time can only compete through UIDs or the patient: index those
        self.untimed: dict[tuple[str, ...], list[int]] = defaultdict(list)
        self.namers: dict[str, list[int]] = defaultdict(list)
        for i, r in enumerate(w.raws):
            if r.record.acquired_at is None:
                for k in self._untimed_keys(r.scanner, r.record, r.localizer_study):
                    self.untimed[k].append(i)
            else:
                self.by_scanner[r.scanner].append((r.record.acquired_at, i))
            for uid in r.record.series_uids:
                self.namers[uid].append(i)
        for items in self.by_scanner.values():
            items.sort()
        self.times = {k: [t for t, _ in v] for k, v in self.by_scanner.items()}
        self.study_start: dict[str, datetime] = {}
        for x in w.series:
            at, study = x.record.acquired_at, x.record.study_uid
            if (
                at is not None
                and study
                and (study not in self.study_start or at < self.study_start[study])
            ):
                self.study_start[study] = at

    def veto(self, ri: int, s: _Series) -> bool:
        """A hard contradiction (what any careful reader would refuse)."""
        raw = self.w.raws[ri]
        r, rec = raw.record, s.record
        if rec.localizer or (r.referenced_sop_uids & rec.sop_uids):
            return True
        if raw.scanner != s.scanner:
            return True  # every simulated raw names its scanner well enough
        if r.modality and rec.modality and r.modality != rec.modality:
            return True
        if _patient_relation(r.patient, rec.patient) is False:
            return True
        if r.acquired_at and rec.acquired_at and rec.acquired_at < r.acquired_at - 2 * self.skew:
            return True  # a descendant cannot predate its raw by more than twice the skew
        began = self.study_start.get(rec.study_uid or "")
        if r.acquired_at and began and began > r.acquired_at + self.skew:
            return True  # the series' exam began after the raw: a later exam
        return _protocols_differ(r.protocol_name, rec.protocol_name)

    def identifies(self, ri: int, s: _Series, *, strict: bool = True) -> bool:
        """Identifying agreement; ``strict=False`` lets an unknown time pass."""
        raw = self.w.raws[ri]
        r, rec = raw.record, s.record
        if r.frame_of_reference_uid and r.frame_of_reference_uid == rec.frame_of_reference_uid:
            return True
        if raw.localizer_study and raw.localizer_study == rec.study_uid:
            return True
        if strict:  # the time supports the pair
            fits = _time_ok(r, rec, self.skew, self.window)
        else:  # the time does not rule the pair out (a near miss of the skew included)
            fits = _time_ok(r, rec, 2 * self.skew, self.window) is not False
        return bool(raw.scanner == s.scanner and fits and _patient_relation(r.patient, rec.patient))

    def competitor(self, ri: int, s: _Series) -> bool:
        """Another raw that fits the series: no contradiction, and identifying agreement or
        the same scanner at session distance (the series at most 30 min after it)."""
        raw = self.w.raws[ri]
        r, rec = raw.record, s.record
        if self.veto(ri, s):
            return False
        if _time_ok(r, rec, 2 * self.skew, self.window) is False:
            return False
        if not self.identifies(ri, s, strict=False):
            near = _time_ok(r, rec, self.skew, SESSION)
            if not (near and raw.scanner == s.scanner):
                return False
        if r.study_uid and rec.study_uid and r.study_uid != rec.study_uid:
            return False
        if raw.localizer_study and rec.study_uid and raw.localizer_study != rec.study_uid:
            return False
        fa, fb = r.frame_of_reference_uid, rec.frame_of_reference_uid
        return not (fa and fb and fa != fb)

    @staticmethod
    def _untimed_keys(
        scanner: int, rec: RawRecord | SeriesRecord, study: str | None
    ) -> list[tuple[str, ...]]:
        keys: list[tuple[str, ...]] = []
        if rec.frame_of_reference_uid:
            keys.append(("for", rec.frame_of_reference_uid))
        if study:
            keys.append(("study", study))
        if rec.patient is not None:
            if rec.patient.id_key:
                keys.append(("pid", str(scanner), rec.patient.id_key))
            if rec.patient.name_dob_key:
                keys.append(("nd", str(scanner), rec.patient.name_dob_key))
        return keys

    def nearby(self, s: _Series) -> Iterable[int]:
        at = s.record.acquired_at
        seen: set[int] = set()
        for k in self._untimed_keys(s.scanner, s.record, s.record.study_uid):
            for i in self.untimed.get(k, ()):
                if i not in seen:
                    seen.add(i)
                    yield i
        if at is None:
            yield from (i for _, i in self.by_scanner.get(s.scanner, ()))
            return
        times = self.times.get(s.scanner, [])
        lo = bisect.bisect_left(times, at - self.window)
        hi = bisect.bisect_right(times, at + 2 * self.skew)
        yield from (i for _, i in self.by_scanner[s.scanner][lo:hi])

    def level(self, ri: int, s: _Series) -> str:
        if self.veto(ri, s):
            return "insufficient"
        namers = self.namers.get(s.record.key, [])
        if namers == [ri]:
            return "sufficient"
        if not self.identifies(ri, s):
            return "insufficient"
        for other in self.nearby(s):
            if other != ri and self.competitor(other, s):
                return "insufficient"
        return "sufficient"


# -- the generator ---------------------------------------------------------------------------

_DEFAULTS: dict[str, float] = {
    "modern": 0.65,  # raw software writes study / frame of reference UIDs (and references)
    "raw_names_series": 0.5,  # ... and the UIDs of the series it produces
    "raw_no_patient": 0.1,  # raw header without patient identity
    "temp_id": 0.01,  # exam registered under a temporary patient ID, corrected in PACS
    "raw_no_time": 0.03,
    "no_descendant": 0.06,  # raw never reconstructed (or its series never archived)
    "resend": 0.08,  # PACS re-export: a copy with a new SeriesInstanceUID
    "big_skew": 0.05,  # exams whose raw and DICOM clocks are 10-45 min apart
    "no_raw_session": 0.35,  # sessions whose raw data were not kept
    "same_patient_again": 0.03,  # the next exam on the scanner is the same patient
}


def simulate_cases(
    n_sessions: int,
    *,
    seed: int,
    n_scanners: int = 8,
    sessions_per_day: int = 12,
    start: date = date(2024, 1, 8),
    key: bytes = SIMULATION_KEY,
    skew: timedelta = timedelta(minutes=10),
    window: timedelta = timedelta(hours=6),
    **probabilities: float,
) -> LinkCases:
    """A seeded world with ``n_sessions`` exams that kept raw data (plus decoy exams).

    Parameters
    ----------
    n_sessions
        Exams with 1-3 raw files each; exams without kept raw data are added on top
        (``no_raw_session`` of all exams).
    seed
        Same seed, same world.
    n_scanners
        How many scanners (CT and MR, several vendors, one twin pair); at most 8.
    sessions_per_day
        Exams per scanner per day (07:00 onwards, back to back).
    skew, window
        The tolerances the evidence levels assume (the engine's defaults).
    probabilities
        Overrides of the world's rates: ``modern``, ``raw_names_series``,
        ``raw_no_patient``, ``temp_id``, ``raw_no_time``, ``no_descendant``, ``resend``,
        ``big_skew``, ``no_raw_session``, ``same_patient_again``.
    """
    unknown = set(probabilities) - set(_DEFAULTS)
    if unknown:
        raise TypeError(f"unknown world rates: {', '.join(sorted(unknown))}")
    if not 1 <= n_scanners <= len(_SCANNERS):
        raise ValueError(f"n_scanners must be 1..{len(_SCANNERS)}")
    p = {**_DEFAULTS, **probabilities}
    w = _World(seed, key)
    rng = w.rng
    kept = 0
    day = datetime(start.year, start.month, start.day, 7, 0)
    while kept < n_sessions:
        for si in range(n_scanners):
            sc = _SCANNERS[si]
            t = day + _minutes(rng, 0, 20)
            last: _Patient | None = None
            for _ in range(sessions_per_day):
                if kept >= n_sessions:
                    break
                if last is not None and rng.random() < p["same_patient_again"]:
                    patient = last
                else:
                    patient = w.patient()
                n_raws = 0 if rng.random() < p["no_raw_session"] else rng.choice((1, 1, 1, 2, 2, 3))
                _session(w, si, sc, t, patient, n_raws, p)
                kept += n_raws > 0
                last = patient
                length = 12 if sc.modality == "CT" else 35
                t += _minutes(rng, length, length * 1.6)
        day += timedelta(days=1 if day.weekday() < 4 else 3)

    labeller = _Labeller(w, skew, window)
    truth: set[Pair] = set()
    levels: dict[Pair, str] = {}
    kinds: dict[Pair, str] = {}
    for s in w.series:
        if s.raw is None:
            continue
        pair = (w.raws[s.raw].record.key, s.record.key)
        truth.add(pair)
        levels[pair] = labeller.level(s.raw, s)
        kinds[pair] = s.kind
    return LinkCases(
        raws=tuple(r.record for r in w.raws),
        series=tuple(s.record for s in w.series),
        truth=frozenset(truth),
        levels=levels,
        kinds=kinds,
        seed=seed,
        n_sessions=n_sessions,
    )


# -- scoring ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkScores:
    """How proposals compare with a world's truth."""

    accepted: int
    accepted_true: int
    precision: float  # of auto-accepted links (1.0 when none)
    recall: float  # auto-accepted sufficient pairs / sufficient pairs
    sufficient: int
    insufficient: int
    insufficient_accepted: int  # must be 0
    review: int  # review-queue size
    review_true: int
    review_false: int
    true_missed: int  # true pairs neither accepted nor in review

    def meets(self, precision: float = 0.99, recall: float = 0.95) -> bool:
        return (
            self.precision >= precision
            and self.recall >= recall
            and self.insufficient_accepted == 0
        )

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def evaluate(proposals: Iterable[Any], cases: LinkCases) -> LinkScores:
    """Score proposals (objects with ``raw_key``, ``series_key``, ``decision``)."""
    accepted: set[Pair] = set()
    review: set[Pair] = set()
    for prop in proposals:
        pair = (prop.raw_key, prop.series_key)
        (accepted if prop.decision == "accept" else review).add(pair)
    sufficient = cases.sufficient
    insufficient = cases.insufficient
    acc_true = len(accepted & cases.truth)
    return LinkScores(
        accepted=len(accepted),
        accepted_true=acc_true,
        precision=acc_true / len(accepted) if accepted else 1.0,
        recall=len(accepted & sufficient) / len(sufficient) if sufficient else 1.0,
        sufficient=len(sufficient),
        insufficient=len(insufficient),
        insufficient_accepted=len(accepted & insufficient),
        review=len(review),
        review_true=len(review & cases.truth),
        review_false=len(review - cases.truth),
        true_missed=len(cases.truth - accepted - review),
    )
