"""The linking engine: candidate blocking, scoring, and a decision policy that never guesses.

``LinkEngine.propose(raws, series)`` returns a :class:`Proposal` for every (raw, series)
pair whose confidence reaches ``review``; each is either ``"accept"`` or ``"review"``.

Blocking
    Pairs are only scored when they share a key: a SeriesInstanceUID the raw names, a
    referenced SOP instance (and the study / frame of reference of the series holding it),
    the study, the frame of reference, the device (serial, or manufacturer + station) with
    the series time inside ``[raw - 2·skew, raw + window]``, or a patient keyed hash with a
    compatible time. With the built-in rules and weights this loses nothing while
    ``review > 0.38``: a pair sharing no key has at most +1.5 (equal protocol and sequence
    names), and patient evidence outside the time window comes with at least -2 of time
    evidence, so such pairs stay at or below ``sigmoid(-3 + 3 + 1.5 - 2) = 0.38``. Below
    that, patient blocking ignores time (exact down to ``sigmoid(-3 + 1.5) = 0.18``); below
    0.18 the engine warns that pairs with nothing but equal protocol names are not
    searched. (Tests compare with an all-pairs run.)

Decision policy
    ``confidence = sigmoid(prior + sum of weights)``. A pair is accepted only when
    confidence ≥ ``accept``, it has an anchor (anchor evidence, or positive evidence from
    every rule of a *corroborating* set: by default ``device-time`` and ``patient``), no
    veto, and no conflict. Conflicts:

    - a veto (named with the rule and its detail);
    - several raw candidates: a series with two or more unvetoed raw candidates at or
      above ``review`` (one raw yielding many series is normal; which of several raws made
      a series is not guessed, whatever their scores);
    - a series whose SeriesInstanceUID a raw names is claimed by that raw (whatever that
      pair's own score): other raws' candidates for it go to review, and so do all
      candidates when several raws name it. A pair anchored by an *exclusive* rule
      (``shared-series-uid``) is not made ambiguous by other candidates.

    Output is sorted by (raw key, series key).
"""

from __future__ import annotations

import bisect
import math
import warnings
from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from imagelake.errors import ConfigError
from imagelake.linking._records import RawRecord, SeriesRecord
from imagelake.linking._rules import (
    PRIOR,
    W_PATIENT_ID_EQUAL,
    W_PATIENT_NAME_EQUAL,
    W_PROTOCOL_EQUAL,
    W_SEQUENCE_EQUAL,
    W_TIME_LATE,
    Evidence,
    LinkContext,
    LinkRule,
    link_rules,
)

__all__ = ["LinkEngine", "Proposal"]

Decision = Literal["accept", "review"]

DEFAULT_CORROBORATING: tuple[frozenset[str], ...] = (frozenset({"device-time", "patient"}),)
DEFAULT_EXCLUSIVE: frozenset[str] = frozenset({"shared-series-uid"})

# the best log-odds of a pair blocking does not find (built-in weights, see "Blocking")
_NO_KEY = PRIOR + W_PROTOCOL_EQUAL + W_SEQUENCE_EQUAL
_PATIENT_OUTSIDE_WINDOW = _NO_KEY + max(W_PATIENT_ID_EQUAL, W_PATIENT_NAME_EQUAL) + W_TIME_LATE


@dataclass(frozen=True, slots=True)
class Proposal:
    """A proposed link from a raw file to a DICOM series, with its evidence."""

    raw_key: str
    series_key: str
    confidence: float
    evidence: tuple[Evidence, ...]
    decision: Decision
    reason: str
    conflict: str | None = None


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


_EPOCH = datetime(1970, 1, 1)


def _ts(at: datetime) -> float:
    return (at - _EPOCH).total_seconds()


class _TimedIndex:
    """Series positions per key, sorted by time; untimed series kept apart."""

    def __init__(self) -> None:
        self._items: dict[object, list[tuple[float, int]]] = defaultdict(list)
        self._untimed: dict[object, list[int]] = defaultdict(list)
        self._times: dict[object, list[float]] = {}
        self._idx: dict[object, list[int]] = {}

    def add(self, key: object, at: datetime | None, i: int) -> None:
        if at is None:
            self._untimed[key].append(i)
        else:
            self._items[key].append((_ts(at), i))

    def freeze(self) -> None:
        for key, items in self._items.items():
            items.sort()
            self._times[key] = [t for t, _ in items]
            self._idx[key] = [i for _, i in items]
        self._items.clear()

    def query(
        self, key: object, lo: float | None, hi: float | None, *, untimed: bool
    ) -> Iterable[int]:
        times = self._times.get(key)
        if times is not None:
            idx = self._idx[key]
            if lo is None or hi is None:
                yield from idx
            else:
                yield from idx[bisect.bisect_left(times, lo) : bisect.bisect_right(times, hi)]
        if untimed:
            yield from self._untimed.get(key, ())


def _device_keys(rec: RawRecord | SeriesRecord) -> list[tuple[str, ...]]:
    keys: list[tuple[str, ...]] = []
    if rec.device_serial:
        keys.append(("sn", rec.device_serial))
    if rec.manufacturer and rec.station_name:
        keys.append(("st", rec.manufacturer.split()[0], rec.station_name))
    return keys


def _patient_keys(rec: RawRecord | SeriesRecord) -> list[tuple[str, str]]:
    p = rec.patient
    if p is None:
        return []
    keys = []
    if p.id_key:
        keys.append(("id", p.id_key))
    if p.name_dob_key:
        keys.append(("nd", p.name_dob_key))
    return keys


class LinkEngine:
    """Propose raw → series links with evidence; accept only what needs no guessing.

    Parameters
    ----------
    rules
        Rule objects or registered names; ``None`` means every rule in ``link_rules``.
    accept, review
        Confidence thresholds: at or above ``accept`` (and anchored, no veto, no conflict)
        a link is accepted; at or above ``review`` it goes to the review queue; below it
        is not returned.
    skew
        Clock difference tolerated between raw and DICOM times (series before the raw).
    window
        How long after the raw a descendant series may be made.
    prior
        Log-odds of a blocked candidate pair before any evidence.
    corroborating
        Sets of rule names whose positive evidence together counts as an anchor.
    exclusive
        Rules whose anchor names one specific series (the raw claims it).
    """

    def __init__(
        self,
        rules: Iterable[LinkRule | str] | None = None,
        *,
        accept: float = 0.95,
        review: float = 0.5,
        skew: timedelta = timedelta(minutes=10),
        window: timedelta = timedelta(hours=6),
        prior: float = PRIOR,
        corroborating: Sequence[Collection[str]] = DEFAULT_CORROBORATING,
        exclusive: Collection[str] = DEFAULT_EXCLUSIVE,
    ) -> None:
        if not 0.0 < review <= accept < 1.0:
            raise ConfigError(
                f"need 0 < review <= accept < 1, got review={review}, accept={accept}"
            )
        if skew < timedelta(0) or window <= timedelta(0):
            raise ConfigError("skew must be >= 0 and window > 0")
        if rules is None:
            self.rules: tuple[LinkRule, ...] = tuple(link_rules.available().values())
        else:
            self.rules = tuple(link_rules.get(r) if isinstance(r, str) else r for r in rules)
        self.accept = accept
        self.review = review
        self.skew = skew
        self.window = window
        self.prior = prior
        self.corroborating = tuple(frozenset(c) for c in corroborating)
        self.exclusive = frozenset(exclusive)
        self._review_logit = _logit(review)
        # see "Blocking" above: when patient blocking must ignore time, and when even that
        # cannot find every pair the thresholds ask for
        self._patient_any_time = self._review_logit <= _PATIENT_OUTSIDE_WINDOW
        if self._review_logit <= _NO_KEY:
            warnings.warn(
                f"review={review} is below {_sigmoid(_NO_KEY):.2f}: pairs sharing no blocking "
                "key (only protocol names) are not searched",
                stacklevel=2,
            )
        self._evaluators = tuple(r.evaluate for r in self.rules)
        #: counts of the last :meth:`propose` call (raws, series, candidate pairs scored,
        #: proposals returned, accepted)
        self.last_stats: dict[str, int] = {}
        # the most the rules from position i onwards can still add (for early stopping)
        bounds = [float(getattr(r, "max_weight", math.inf)) for r in self.rules]
        self._headroom = tuple(sum(bounds[i:]) for i in range(len(bounds) + 1))

    def __repr__(self) -> str:
        names = ", ".join(r.name for r in self.rules)
        return (
            f"LinkEngine(rules=[{names}], accept={self.accept}, review={self.review}, "
            f"skew={self.skew}, window={self.window})"
        )

    # -- scoring -----------------------------------------------------------------------

    def score(
        self, raw: RawRecord, series: SeriesRecord, ctx: LinkContext
    ) -> tuple[float, tuple[Evidence, ...]]:
        """Summed log-odds (prior included) and the evidence of one pair."""
        evidence = []
        total = self.prior
        for evaluate in self._evaluators:
            e = evaluate(raw, series, ctx)
            if e is not None:
                evidence.append(e)
                total += e.weight
        return total, tuple(evidence)

    def _score_above(
        self, raw: RawRecord, series: SeriesRecord, ctx: LinkContext, floor: float
    ) -> tuple[float, tuple[Evidence, ...]] | None:
        """Like :meth:`score`, or ``None`` as soon as the pair cannot reach ``floor``."""
        evidence = []
        total = self.prior
        headroom = self._headroom
        for i, evaluate in enumerate(self._evaluators):
            if total + headroom[i] < floor:
                return None
            e = evaluate(raw, series, ctx)
            if e is not None:
                evidence.append(e)
                total += e.weight
        if total < floor:
            return None
        return total, tuple(evidence)

    def context(self, raws: Sequence[RawRecord], series: Sequence[SeriesRecord]) -> LinkContext:
        """The rule context: tolerances, and the series holding each raw's references."""
        wanted: set[str] = set()
        for r in raws:
            wanted |= r.referenced_sop_uids
        holders: dict[str, list[SeriesRecord]] = defaultdict(list)
        if wanted:
            for s in series:
                if s.sop_uids and not wanted.isdisjoint(s.sop_uids):
                    for uid in s.sop_uids & wanted:
                        holders[uid].append(s)
        references: dict[str, tuple[SeriesRecord, ...]] = {}
        for r in raws:
            if r.referenced_sop_uids:
                found = {s.key: s for uid in r.referenced_sop_uids for s in holders.get(uid, ())}
                if found:
                    references[r.key] = tuple(found[k] for k in sorted(found))
        study_start: dict[str, datetime] = {}
        for s in series:
            at, study = s.acquired_at, s.study_uid
            if at is not None and study and (study not in study_start or at < study_start[study]):
                study_start[study] = at
        return LinkContext(
            skew=self.skew, window=self.window, references=references, study_start=study_start
        )

    def _anchored(self, evidence: tuple[Evidence, ...]) -> list[str]:
        anchors = [e.rule for e in evidence if e.anchor and e.weight > 0]
        positive = {e.rule for e in evidence if e.weight > 0}
        for group in self.corroborating:
            if group <= positive:
                anchors.append(" + ".join(sorted(group)))
        return anchors

    # -- blocking ----------------------------------------------------------------------

    def _candidates(
        self, raws: Sequence[RawRecord], series: Sequence[SeriesRecord], ctx: LinkContext
    ) -> Iterable[tuple[int, list[int]]]:
        by_key = {s.key: i for i, s in enumerate(series)}
        by_study: dict[str, list[int]] = defaultdict(list)
        by_for: dict[str, list[int]] = defaultdict(list)
        device = _TimedIndex()
        person = _TimedIndex()
        for i, s in enumerate(series):
            if s.study_uid:
                by_study[s.study_uid].append(i)
            if s.frame_of_reference_uid:
                by_for[s.frame_of_reference_uid].append(i)
            if s.acquired_at is not None:
                for k in _device_keys(s):
                    device.add(k, s.acquired_at, i)
            for k in _patient_keys(s):
                person.add(k, s.acquired_at, i)
        device.freeze()
        person.freeze()
        skew = self.skew.total_seconds()
        window = self.window.total_seconds()
        for ri, r in enumerate(raws):
            found: set[int] = set()
            for uid in r.series_uids:
                named = by_key.get(uid)
                if named is not None:
                    found.add(named)
            studies = {r.study_uid} if r.study_uid else set()
            fors = {r.frame_of_reference_uid} if r.frame_of_reference_uid else set()
            for ref in ctx.referenced(r):
                found.add(by_key[ref.key])
                if ref.study_uid:
                    studies.add(ref.study_uid)
                if ref.frame_of_reference_uid:
                    fors.add(ref.frame_of_reference_uid)
            for st in studies:
                found.update(by_study.get(st, ()))
            for f in fors:
                found.update(by_for.get(f, ()))
            lo = hi = None
            if r.acquired_at is not None:
                t = _ts(r.acquired_at)
                lo, hi = t - 2 * skew, t + window  # a near miss of the skew is not ruled out
                for k in _device_keys(r):
                    found.update(device.query(k, lo, hi, untimed=False))
            if self._patient_any_time:
                lo = hi = None
            for k in _patient_keys(r):
                found.update(person.query(k, lo, hi, untimed=True))
            yield ri, sorted(found)

    # -- proposing ---------------------------------------------------------------------

    def propose(
        self,
        raws: Iterable[RawRecord],
        series: Iterable[SeriesRecord],
        *,
        exhaustive: bool = False,
    ) -> list[Proposal]:
        """Proposals for every pair at or above ``review``, sorted by (raw, series) key.

        ``exhaustive=True`` scores every pair instead of blocking (slow; for checks).
        """
        raws = list(raws)
        series = list(series)
        for what, records in (("raw", raws), ("series", series)):
            keys = {r.key for r in records}
            if len(keys) != len(records):
                raise ValueError(f"duplicate {what} keys: each record needs a unique key")
        ctx = self.context(raws, series)
        if exhaustive:
            every = list(range(len(series)))
            candidates: Iterable[tuple[int, list[int]]] = ((ri, every) for ri in range(len(raws)))
        else:
            candidates = self._candidates(raws, series, ctx)

        floor = self._review_logit
        # (raw index, series index, logit, evidence, anchors, veto) for pairs >= review
        kept: list[tuple[int, int, float, tuple[Evidence, ...], list[str], Evidence | None]] = []
        n_candidates = 0
        for ri, found in candidates:
            r = raws[ri]
            n_candidates += len(found)
            for si in found:
                scored = self._score_above(r, series[si], ctx, floor)
                if scored is None:
                    continue
                total, evidence = scored
                veto = next((e for e in evidence if e.veto), None)
                kept.append((ri, si, total, evidence, self._anchored(evidence), veto))

        # conflicts between raws competing for one series
        per_series: dict[int, list[int]] = defaultdict(list)
        for n, (_, si, _, _, _, veto) in enumerate(kept):
            if veto is None:
                per_series[si].append(n)
        conflicts: dict[int, str] = {}
        named_by: dict[str, list[str]] = defaultdict(list)
        for r in raws:
            for uid in r.series_uids:
                named_by[uid].append(r.key)
        for n, (ri, si, *_rest) in enumerate(kept):
            namers = named_by.get(series[si].key)
            if namers and namers != [raws[ri].key]:
                conflicts[n] = (
                    f"{len(namers)} raws name this SeriesInstanceUID"
                    if raws[ri].key in namers
                    else f"series is named by another raw ({namers[0][:12]}) by UID"
                )
        for _si, ns in per_series.items():
            if len(ns) < 2:
                continue
            claimers = [n for n in ns if any(e.rule in self.exclusive for e in kept[n][3])]
            if len(claimers) == 1:
                owner = raws[kept[claimers[0]][0]].key
                for n in ns:
                    if n != claimers[0]:
                        conflicts.setdefault(
                            n, f"series is named by another raw ({owner[:12]}) by UID"
                        )
            else:
                others = len(ns)
                what = (
                    f"{len(claimers)} raws name this SeriesInstanceUID"
                    if claimers
                    else f"several raw candidates ({others}) for this series"
                )
                for n in ns:
                    conflicts.setdefault(n, what)

        out: list[Proposal] = []
        for n, (ri, si, total, evidence, anchors, veto) in enumerate(kept):
            conf = _sigmoid(total)
            conflict = conflicts.get(n)
            if veto is not None:
                conflict = f"veto by {veto.rule}: {veto.detail}" + (
                    f"; {conflict}" if conflict else ""
                )
            if conflict is not None:
                decision: Decision = "review"
                reason = f"conflict: {conflict}"
            elif not anchors:
                decision = "review"
                reason = f"no anchor evidence (confidence {conf:.3f})"
            elif conf < self.accept:
                decision = "review"
                reason = f"confidence {conf:.3f} below accept {self.accept}"
            else:
                decision = "accept"
                reason = f"confidence {conf:.3f} >= {self.accept}; anchors: {', '.join(anchors)}"
            out.append(
                Proposal(
                    raw_key=raws[ri].key,
                    series_key=series[si].key,
                    confidence=conf,
                    evidence=evidence,
                    decision=decision,
                    reason=reason,
                    conflict=conflict,
                )
            )
        out.sort(key=lambda p: (p.raw_key, p.series_key))
        self.last_stats = {
            "raws": len(raws),
            "series": len(series),
            "candidates": n_candidates,
            "proposals": len(out),
            "accepted": sum(p.decision == "accept" for p in out),
        }
        return out
