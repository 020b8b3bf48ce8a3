"""The case generator and the scoring of proposals against its truth."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from imagelake.linking import LinkCases, LinkEngine, evaluate, simulate_cases


def test_deterministic_per_seed() -> None:
    a = simulate_cases(40, seed=7)
    b = simulate_cases(40, seed=7)
    c = simulate_cases(40, seed=8)
    assert a.raws == b.raws and a.series == b.series
    assert a.truth == b.truth and dict(a.levels) == dict(b.levels)
    assert a.raws != c.raws
    assert {r.key for r in a.raws}.isdisjoint({r.key for r in c.raws})


def test_world_has_the_decoys_it_promises() -> None:
    cases = simulate_cases(300, seed=2)
    assert "sessions=300" in repr(cases)
    raws_with_descendants = {r for r, _ in cases.truth}
    series_with_raw = {s for _, s in cases.truth}
    assert len(cases.raws) > len(raws_with_descendants)  # raws never reconstructed
    assert len(cases.series) > len(series_with_raw)  # series without raw
    assert any(s.localizer for s in cases.series)
    assert any(not r.study_uid and not r.frame_of_reference_uid for r in cases.raws)  # old software
    assert any(r.patient is None for r in cases.raws)
    assert any(r.referenced_sop_uids for r in cases.raws)
    assert any(r.series_uids for r in cases.raws)
    assert {s.modality for s in cases.series} == {"CT", "MR"}
    kinds = set(cases.kinds.values())
    assert kinds == {"primary", "derived", "resent"}
    assert cases.sufficient and cases.insufficient
    assert cases.sufficient | cases.insufficient == cases.truth
    # twin scanners: same model, different serials
    models = {(s.model, s.device_serial) for s in cases.series if s.device_serial}
    assert len({m for m, _ in models}) < len(models)
    # re-sent series are descendants with new UIDs in the same study
    resent = [p for p, k in cases.kinds.items() if k == "resent"]
    assert resent and all(p in cases.truth for p in resent)


def test_levels_follow_the_evidence() -> None:
    cases = simulate_cases(300, seed=5)
    raws = {r.key: r for r in cases.raws}
    for (rk, sk), level in cases.levels.items():
        r = raws[rk]
        if sk in r.series_uids:
            continue
        if level == "sufficient":
            # sufficient without a named UID needs identifying agreement
            assert (
                r.frame_of_reference_uid
                or r.referenced_sop_uids
                or (r.patient is not None and r.acquired_at is not None)
            )
        if r.patient is None and not (r.frame_of_reference_uid or r.referenced_sop_uids):
            assert level == "insufficient"  # device + time only


def test_engine_meets_the_targets_on_a_small_world() -> None:
    cases = simulate_cases(400, seed=21)
    t0 = time.perf_counter()
    props = LinkEngine().propose(cases.raws, cases.series)
    seconds = time.perf_counter() - t0
    scores = evaluate(props, cases)
    assert scores.precision >= 0.99, scores
    assert scores.recall >= 0.95, scores
    assert scores.insufficient_accepted == 0, scores
    assert scores.meets()
    assert scores.review == scores.review_true + scores.review_false
    assert scores.accepted_true + scores.review_true + scores.true_missed == len(cases.truth)
    assert seconds < 10


def test_evaluate_arithmetic() -> None:
    truth = frozenset({("r1", "s1"), ("r1", "s2"), ("r2", "s3")})
    cases = LinkCases(
        raws=(),
        series=(),
        truth=truth,
        levels={
            ("r1", "s1"): "sufficient",
            ("r1", "s2"): "insufficient",
            ("r2", "s3"): "sufficient",
        },
    )
    props = [
        SimpleNamespace(raw_key="r1", series_key="s1", decision="accept"),
        SimpleNamespace(raw_key="r1", series_key="s2", decision="accept"),
        SimpleNamespace(raw_key="r9", series_key="s1", decision="accept"),
        SimpleNamespace(raw_key="r2", series_key="s3", decision="review"),
        SimpleNamespace(raw_key="r2", series_key="s9", decision="review"),
    ]
    s = evaluate(props, cases)
    assert (s.accepted, s.accepted_true) == (3, 2)
    assert s.precision == pytest.approx(2 / 3)
    assert s.recall == pytest.approx(1 / 2)
    assert s.insufficient_accepted == 1 and not s.meets()
    assert (s.review, s.review_true, s.review_false, s.true_missed) == (2, 1, 1, 0)
    empty = evaluate([], cases)
    assert empty.precision == 1.0 and empty.recall == 0.0 and empty.true_missed == 3


def test_rates_are_checked() -> None:
    with pytest.raises(TypeError, match="unknown world rates: nonsense"):
        simulate_cases(5, seed=1, nonsense=0.5)
    with pytest.raises(ValueError, match="n_scanners"):
        simulate_cases(5, seed=1, n_scanners=0)
    old = simulate_cases(60, seed=1, modern=0.0)
    assert not any(r.frame_of_reference_uid or r.series_uids for r in old.raws)
