"""Each built-in rule: supporting, contradicting and absent data."""

from __future__ import annotations

from datetime import timedelta

import pytest
from linking_factory import T0, keys, raw, series

from imagelake.linking import Evidence, LinkContext, link_rules

CTX = LinkContext()


def ev(rule: str, r: object, s: object, ctx: LinkContext = CTX) -> Evidence | None:
    return link_rules.get(rule).evaluate(r, s, ctx)  # type: ignore[arg-type]


def weight(rule: str, r: object, s: object, ctx: LinkContext = CTX) -> float:
    e = ev(rule, r, s, ctx)
    assert e is not None
    return e.weight


def test_registry_lists_builtins() -> None:
    names = link_rules.names()
    for name in (
        "shared-series-uid",
        "referenced-instance",
        "study-uid",
        "frame-of-reference",
        "device-time",
        "patient",
        "protocol",
        "modality",
        "localizer",
        "study-start",
    ):
        assert name in names
        rule = link_rules.get(name)
        assert rule.name == name and rule.description


def test_shared_series_uid() -> None:
    s = series()
    e = ev("shared-series-uid", raw(series_uids={s.key}), s)
    assert e is not None and e.anchor and e.weight > 5
    assert ev("shared-series-uid", raw(series_uids={"9.9"}), s) is None
    assert ev("shared-series-uid", raw(), s) is None


def test_referenced_instance_localizer_is_a_reference_not_a_descendant() -> None:
    loc = series("1.2.99", sop_uids={"1.2.99.1", "1.2.99.2"}, localizer=True)
    r = raw(referenced_sop_uids={"1.2.99.1", "1.2.99.3"}, study_uid=None)
    ctx = LinkContext(references={r.key: (loc,)})
    e = ev("referenced-instance", r, loc, ctx)
    assert e is not None and e.veto and e.weight < -5 and not e.anchor
    assert "1 instance(s)" in e.detail
    # a sibling series of the localizer's study: same session, an anchor
    sib = series("1.2.100")
    e2 = ev("referenced-instance", r, sib, ctx)
    assert e2 is not None and e2.anchor and e2.weight > 0 and "same study" in e2.detail
    # same frame of reference only
    other_study = series("1.2.101", study_uid="7.7")
    e3 = ev("referenced-instance", r, other_study, ctx)
    assert e3 is not None and "frame of reference" in e3.detail
    # another study and frame: contradicts
    e4 = ev(
        "referenced-instance",
        r,
        series("1.2.102", study_uid="7.7", frame_of_reference_uid="7.8"),
        ctx,
    )
    assert e4 is not None and e4.weight < 0 and not e4.anchor
    # no references, or referenced instances not in the lake: nothing to say
    assert ev("referenced-instance", raw(), sib, ctx) is None
    assert ev("referenced-instance", r, sib, LinkContext()) is None


def test_study_uid() -> None:
    eq = ev("study-uid", raw(), series())
    assert eq is not None and eq.weight > 0 and not eq.anchor
    ne = ev("study-uid", raw(study_uid="1.1"), series())
    assert ne is not None and ne.weight <= -5
    assert ev("study-uid", raw(study_uid=None), series()) is None
    assert ev("study-uid", raw(), series(study_uid="")) is None


def test_frame_of_reference() -> None:
    eq = ev("frame-of-reference", raw(), series())
    assert eq is not None and eq.anchor and eq.weight > 0
    ne = ev("frame-of-reference", raw(frame_of_reference_uid="1.1"), series())
    assert ne is not None and ne.weight < 0 and not ne.anchor
    assert ev("frame-of-reference", raw(frame_of_reference_uid=None), series()) is None


@pytest.mark.parametrize(
    ("minutes", "sign"),
    [
        (-8, 1),
        (0, 1),
        (2, 1),
        (45, 1),
        (300, 1),
        (-15, 0),  # just beyond the 10 min skew: no opinion
        (-25, -1),
        (7 * 60, -1),
        (3 * 24 * 60, -1),
    ],
)
def test_device_time_window(minutes: int, sign: int) -> None:
    e = ev("device-time", raw(), series(acquired_at=T0 + timedelta(minutes=minutes)))
    assert e is not None and "45385" in e.detail
    assert (e.weight > 0) - (e.weight < 0) == sign
    if minutes == -15:
        assert not e.veto and "just beyond the skew" in e.detail
    if minutes == -25:
        assert e.veto and "before the raw" in e.detail  # a descendant cannot predate its raw
    if minutes >= 3 * 24 * 60:
        assert "days" in e.detail


def test_device_time_decays_and_respects_tolerances() -> None:
    w = [
        weight("device-time", raw(), series(acquired_at=T0 + timedelta(minutes=m)))
        for m in (0, 30, 60, 120, 359)
    ]
    assert w[0] == w[1] > w[2] > w[3] > w[4] > 0
    tight = LinkContext(skew=timedelta(minutes=2), window=timedelta(hours=1))
    e = ev("device-time", raw(), series(acquired_at=T0 - timedelta(minutes=5)), tight)
    assert e is not None and e.weight < 0 and e.veto
    e = ev("device-time", raw(), series(acquired_at=T0 + timedelta(minutes=90)), tight)
    assert e is not None and e.weight < 0 and not e.veto


def test_device_identity() -> None:
    other = ev("device-time", raw(device_serial="99999"), series())
    assert (
        other is not None and other.veto and other.weight <= -5 and "serials differ" in other.detail
    )
    # no serial on one side: manufacturer (first word) + model (contained) + station decide
    same = ev("device-time", raw(device_serial=None), series())
    assert same is not None and same.weight > 0 and "no serial" in same.detail
    moved = ev("device-time", raw(device_serial=None, station_name="MRC00001"), series())
    assert moved is not None and moved.veto
    vendor = ev("device-time", raw(device_serial=None, manufacturer="GE"), series())
    assert vendor is not None and vendor.veto
    # not identifiable (no serial, no station): only time can speak
    assert ev("device-time", raw(device_serial=None, station_name=None), series()) is None
    far = ev(
        "device-time",
        raw(device_serial=None, station_name=None),
        series(acquired_at=T0 + timedelta(days=3)),
    )
    assert far is not None and far.weight < 0 and "device unknown" in far.detail
    assert ev("device-time", raw(acquired_at=None), series()) is None


def test_patient() -> None:
    eq = ev("patient", raw(), series())
    assert eq is not None and eq.weight > 0 and eq.detail == "patient id keyed hashes equal"
    ne = ev("patient", raw(patient=keys(pid="PAT-002")), series())
    assert ne is not None and ne.veto and ne.weight < 0
    # no IDs: name + birth date
    nd = ev("patient", raw(patient=keys(pid="")), series(patient=keys(pid="")))
    assert nd is not None and nd.weight > 0 and "name + birth date" in nd.detail
    nd2 = ev("patient", raw(patient=keys(pid="", dob="19700102")), series(patient=keys(pid="")))
    assert nd2 is not None and nd2.veto
    assert ev("patient", raw(patient=None), series()) is None
    assert ev("patient", raw(patient=keys(pid="")), series(patient=keys(pid="X", name=""))) is None


def test_protocol() -> None:
    eq = ev("protocol", raw(sequence_name="*tfl3d1"), series(sequence_name="*TFL3D1"))
    assert eq is not None and eq.weight == pytest.approx(1.5) and not eq.anchor
    assert weight("protocol", raw(protocol_name="T1_MPRAGE_SAG"), series()) == 1.0
    sib = ev("protocol", raw(protocol_name="t2_tse_tra"), series())
    assert sib is not None and sib.veto and sib.weight < 0 and "t2_tse_tra" in sib.detail
    assert ev("protocol", raw(protocol_name="t1_mprage"), series()) is None  # a prefix: no opinion
    assert ev("protocol", raw(protocol_name=None), series()) is None


def test_modality_and_localizer() -> None:
    e = ev("modality", raw(modality="CT"), series())
    assert e is not None and e.veto and "CT raw, MR series" in e.detail
    assert ev("modality", raw(), series()) is None
    assert ev("modality", raw(modality=None), series()) is None
    loc = ev("localizer", raw(), series(localizer=True))
    assert loc is not None and loc.veto
    assert ev("localizer", raw(), series()) is None


def test_study_start() -> None:
    s = series()
    assert s.study_uid is not None
    late = LinkContext(study_start={s.study_uid: T0 + timedelta(minutes=40)})
    e = ev("study-start", raw(), s, late)
    assert e is not None and e.veto and "later exam" in e.detail
    early = LinkContext(study_start={s.study_uid: T0 - timedelta(minutes=5)})
    assert ev("study-start", raw(), s, early) is None
    assert ev("study-start", raw(acquired_at=None), s, late) is None
    assert ev("study-start", raw(), s) is None


def test_evidence_never_carries_identity() -> None:
    r = raw(patient=keys(pid="SECRET-ID-77", name="Secret^Person", dob="19610203"))
    texts = []
    for s in (series(), series(patient=keys(pid="SECRET-ID-78", name="Secret^Person"))):
        for name in link_rules.names():
            e = ev(name, r, s)
            if e is not None:
                texts.append(repr(e))
    blob = "\n".join(texts).upper()
    assert texts
    assert r.patient is not None and r.patient.id_key is not None
    for secret in ("SECRET-ID-77", "SECRET-ID-78", "SECRET", "19610203", r.patient.id_key.upper()):
        assert secret not in blob
