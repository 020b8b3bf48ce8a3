"""The engine: decision policy, blocking against brute force, determinism, plugins."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from linking_factory import FRAME, T0, keys, raw, series

from imagelake.errors import ConfigError
from imagelake.linking import (
    Evidence,
    LinkContext,
    LinkEngine,
    Proposal,
    RawRecord,
    SeriesRecord,
    link_rules,
    simulate_cases,
)


def by_pair(props: list[Proposal]) -> dict[tuple[str, str], Proposal]:
    return {(p.raw_key, p.series_key): p for p in props}


def test_one_raw_many_series_accepted() -> None:
    r = raw()
    outs = [
        series("1.2.10"),
        series("1.2.11", series_description="t1_mprage_sag_PHA"),
        series("1.2.12", derived=True, acquired_at=T0 + timedelta(minutes=25)),
    ]
    props = LinkEngine().propose([r], outs)
    assert [p.series_key for p in props] == ["1.2.10", "1.2.11", "1.2.12"]
    for p in props:
        assert p.decision == "accept" and p.conflict is None and p.confidence >= 0.95
        assert "frame-of-reference" in p.reason
        assert any(e.anchor for e in p.evidence)


def test_veto_sends_a_strong_pair_to_review() -> None:
    # everything agrees but the protocol: a sibling scan of the same exam
    props = LinkEngine().propose([raw(protocol_name="t2_tse_tra")], [series()])
    assert len(props) == 1
    p = props[0]
    assert p.confidence >= 0.95 and p.decision == "review"
    assert p.conflict is not None and p.conflict.startswith("veto by protocol")
    # a patient mismatch (temporary ID in the raw) too
    props = LinkEngine().propose([raw(patient=keys(pid="TRAUMA-1"))], [series()])
    assert props[0].decision == "review" and "veto by patient" in (props[0].conflict or "")


def test_ambiguity_is_never_guessed() -> None:
    a = raw("a" * 64)
    b = raw("b" * 64, acquired_at=T0 + timedelta(minutes=1))
    s = series()
    props = LinkEngine().propose([a, b], [s])
    assert len(props) == 2
    for p in props:
        assert p.decision == "review" and p.conflict == "several raw candidates (2) for this series"
    # ... but one raw naming the series' UID claims it
    a2 = raw("a" * 64, series_uids={s.key})
    pairs = by_pair(LinkEngine().propose([a2, b], [s]))
    assert pairs["a" * 64, s.key].decision == "accept"
    assert pairs["b" * 64, s.key].decision == "review"
    assert "named by another raw" in (pairs["b" * 64, s.key].conflict or "")
    # two raws naming it: nobody gets it
    b2 = raw("b" * 64, series_uids={s.key}, acquired_at=T0 + timedelta(minutes=1))
    for p in LinkEngine().propose([a2, b2], [s]):
        assert p.decision == "review" and "2 raws name" in (p.conflict or "")


def test_claim_holds_even_when_the_claimer_is_vetoed() -> None:
    s = series()
    claimer = raw("c" * 64, series_uids={s.key}, patient=keys(pid="TRAUMA-9"))
    sibling = raw("d" * 64)
    pairs = by_pair(LinkEngine().propose([claimer, sibling], [s]))
    assert pairs["d" * 64, s.key].decision == "review"


def test_no_anchor_is_not_accepted() -> None:
    # old software: no UIDs, no patient; device + time + protocol only
    r = raw(study_uid=None, frame_of_reference_uid=None, patient=None)
    props = LinkEngine().propose([r], [series()])
    assert len(props) == 1 and props[0].decision == "review"
    assert props[0].reason.startswith("no anchor evidence")
    # with the patient: device + time + patient corroborate each other -> accepted
    r2 = raw(study_uid=None, frame_of_reference_uid=None)
    p2 = LinkEngine().propose([r2], [series()])[0]
    assert p2.decision == "accept" and "device-time + patient" in p2.reason
    # ... unless that corroboration is switched off
    p3 = LinkEngine(corroborating=()).propose([r2], [series()])[0]
    assert p3.decision == "review"


def test_below_review_is_dropped() -> None:
    far = series(acquired_at=T0 + timedelta(days=2), study_uid="9.9", frame_of_reference_uid="9.8")
    other_device = series("1.2.20", device_serial="11111", station_name="X")
    other_patient = series(
        "1.2.21", patient=keys(pid="PAT-999"), study_uid="9.7", frame_of_reference_uid="9.6"
    )
    assert LinkEngine().propose([raw()], [far, other_device, other_patient]) == []
    # thresholds move the line
    r = raw(study_uid=None, frame_of_reference_uid=None, patient=None, protocol_name=None)
    s = series(acquired_at=T0 + timedelta(minutes=50), study_uid=None)
    assert LinkEngine().propose([r], [s]) == []
    assert len(LinkEngine(review=0.3).propose([r], [s])) == 1


def test_localizer_references() -> None:
    loc = series(
        "1.2.99", sop_uids={"1.2.99.1", "1.2.99.2"}, localizer=True, protocol_name="localizer"
    )
    r = raw(study_uid=None, frame_of_reference_uid=None, referenced_sop_uids={"1.2.99.1"})
    s = series("1.2.30")
    pairs = by_pair(LinkEngine().propose([r], [loc, s]))
    assert (r.key, loc.key) not in pairs  # a reference, not a descendant
    assert pairs[r.key, s.key].decision == "accept"
    assert "referenced-instance" in pairs[r.key, s.key].reason


def test_output_is_deterministic_and_sorted() -> None:
    cases = simulate_cases(30, seed=11)
    engine = LinkEngine()
    first = engine.propose(cases.raws, cases.series)
    raws, ser = list(cases.raws), list(cases.series)
    rng = random.Random(3)
    rng.shuffle(raws)
    rng.shuffle(ser)
    assert engine.propose(raws, ser) == first
    assert first == sorted(first, key=lambda p: (p.raw_key, p.series_key))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_blocking_loses_nothing(seed: int) -> None:
    cases = simulate_cases(40, seed=seed, modern=0.4, raw_no_time=0.1, raw_no_patient=0.2)
    engine = LinkEngine()
    blocked = engine.propose(cases.raws, cases.series)
    brute = engine.propose(cases.raws, cases.series, exhaustive=True)
    assert blocked == brute
    assert len(blocked) > 50


def test_blocking_edge_cases_match_brute_force() -> None:
    base = series()
    raws = [
        raw("1" * 64, acquired_at=None),  # no time: patient blocking only
        raw("2" * 64, device_serial=None, study_uid=None, frame_of_reference_uid=None),
        raw(
            "3" * 64,
            device_serial=None,
            station_name=None,
            study_uid=None,
            frame_of_reference_uid=None,
            acquired_at=None,
        ),
        raw("4" * 64, patient=keys(pid=""), study_uid=None, frame_of_reference_uid=None),
        raw(
            "5" * 64, referenced_sop_uids={"1.2.99.1"}, study_uid=None, frame_of_reference_uid=None
        ),
    ]
    ser = [
        base,
        series("1.2.40", acquired_at=None),
        series("1.2.41", device_serial=None, patient=keys(pid="")),
        series("1.2.42", acquired_at=T0 + timedelta(hours=7)),
        series("1.2.99", sop_uids={"1.2.99.1"}, localizer=True),
        series("1.2.43", frame_of_reference_uid=FRAME, study_uid=None, patient=None),
    ]
    for engine in (LinkEngine(), LinkEngine(review=0.3), LinkEngine(review=0.2)):
        assert engine.propose(raws, ser) == engine.propose(raws, ser, exhaustive=True)


def test_early_stop_agrees_with_full_score() -> None:
    cases = simulate_cases(15, seed=4)
    engine = LinkEngine()
    ctx = engine.context(list(cases.raws), list(cases.series))
    floor = 0.0  # logit of review = 0.5
    for r in cases.raws[:20]:
        for s in cases.series:
            total, evidence = engine.score(r, s, ctx)
            quick = engine._score_above(r, s, ctx, floor)
            if total >= floor:
                assert quick == (total, evidence)
            else:
                assert quick is None


class AlwaysNo:
    name = "site-blacklist"
    description = "a site rule: this raw is a phantom scan, never linked"

    def evaluate(self, raw: RawRecord, series: SeriesRecord, ctx: LinkContext) -> Evidence | None:
        if raw.key.startswith("f"):
            return Evidence(self.name, -20.0, "phantom scan", veto=True)
        return None


def test_plugin_rules() -> None:
    s = series()
    phantom = raw("f" * 64)
    assert LinkEngine().propose([phantom], [s])[0].decision == "accept"
    link_rules.register("site-blacklist", AlwaysNo())
    try:
        assert LinkEngine().propose([phantom], [s]) == []
        assert LinkEngine().propose([raw("e" * 64)], [s])[0].decision == "accept"
    finally:
        link_rules.unregister("site-blacklist")
    only = LinkEngine(rules=["frame-of-reference", AlwaysNo()])
    assert [r.name for r in only.rules] == ["frame-of-reference", "site-blacklist"]
    assert "site-blacklist" in repr(only)


def test_low_review_threshold_warns() -> None:
    with pytest.warns(UserWarning, match="not searched"):
        LinkEngine(review=0.1)


def test_bad_configuration() -> None:
    with pytest.raises(ConfigError):
        LinkEngine(accept=0.4, review=0.5)
    with pytest.raises(ConfigError):
        LinkEngine(window=timedelta(0))
    with pytest.raises(ValueError, match="duplicate raw keys"):
        LinkEngine().propose([raw(), raw()], [series()])


def test_proposals_carry_no_identity() -> None:
    r = raw(patient=keys(pid="SECRET-77", name="Hidden^Person", dob="19550505"))
    s = series(patient=keys(pid="SECRET-77", name="Hidden^Person", dob="19550505"))
    s2 = series("1.2.50", patient=keys(pid="SECRET-78"))
    text = repr(LinkEngine().propose([r], [s, s2])).upper()
    assert r.patient is not None and r.patient.id_key is not None
    for secret in ("SECRET-77", "SECRET-78", "HIDDEN", "19550505", r.patient.id_key.upper()):
        assert secret not in text
    assert "PATIENT ID KEYED HASHES EQUAL" in text
