"""Benchmark: linking raw scanner files to their DICOM series (imagelake.linking).

Input (SYNTHETIC, seeded): worlds from ``imagelake.linking.simulate_cases`` — 8 scanners
(CT and MR, four vendors, one twin pair), 12 exams per scanner per day, exams with 1-3 raw
files each (plus 35 % exams whose raw data were not kept), and the decoys a site has:
other patients on the same scanner, raw files from older software without UIDs or patient
identity, clock skew, PACS re-sends with new UIDs, localizers, temporary patient IDs. Each
true pair is labelled *sufficient* (the data identify the raw) or *insufficient*.

For every size the script builds the world (timed apart), checks at the smallest size that
blocking finds exactly what an all-pairs run finds, then times ``LinkEngine().propose``
(``--rounds`` runs, median) and scores the proposals:

- precision of auto-accepted links, recall of auto-accept over sufficient true pairs,
  insufficient true pairs auto-accepted (must be 0), review-queue size (true / false pairs);
- two naive linkers on the same world, as the peer a site would script by hand: *UID join*
  (accept every pair sharing a study or frame-of-reference UID) and *nearest raw* (each
  series to the latest raw of the same scanner serial within [-10 min, +6 h]).

Exit status 1 when the engine misses a target at any size (precision < 0.99, recall < 0.95,
or any insufficient pair auto-accepted).

    python benchmarks/linking.py                  # 200 and 2,000 exams
    python benchmarks/linking.py --full           # ... and 20,000 (about 1-2 min here)
"""

from __future__ import annotations

import argparse
import bisect
import resource
import statistics
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import _common as bench

from imagelake.linking import LinkCases, LinkEngine, LinkScores, Proposal, evaluate, simulate_cases

TARGET_PRECISION = 0.99
TARGET_RECALL = 0.95


@dataclass(frozen=True)
class _Link:
    raw_key: str
    series_key: str
    decision: str = "accept"


def uid_join(cases: LinkCases) -> list[_Link]:
    """Accept every pair sharing a StudyInstanceUID or FrameOfReferenceUID."""
    by_uid: dict[str, list[str]] = defaultdict(list)
    for s in cases.series:
        for uid in {s.study_uid, s.frame_of_reference_uid} - {None}:
            by_uid[uid].append(s.key)  # type: ignore[index]
    out = set()
    for r in cases.raws:
        for uid in {r.study_uid, r.frame_of_reference_uid} - {None}:
            for sk in by_uid.get(uid, ()):  # type: ignore[arg-type]
                out.add(_Link(r.key, sk))
    return sorted(out, key=lambda x: (x.raw_key, x.series_key))


def nearest_raw(cases: LinkCases) -> list[_Link]:
    """Each series to the latest raw of its scanner serial in [series - 6 h, series + 10 min]."""
    by_serial: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for r in cases.raws:
        if r.device_serial and r.acquired_at:
            by_serial[r.device_serial].append((r.acquired_at.timestamp(), r.key))
    for v in by_serial.values():
        v.sort()
    times = {k: [t for t, _ in v] for k, v in by_serial.items()}
    out = []
    for s in cases.series:
        if not (s.device_serial and s.acquired_at) or s.device_serial not in by_serial:
            continue
        t = s.acquired_at.timestamp()
        i = bisect.bisect_right(times[s.device_serial], t + 600) - 1
        if i >= 0 and by_serial[s.device_serial][i][0] >= t - 6 * 3600:
            out.append(_Link(by_serial[s.device_serial][i][1], s.key))
    return out


def review_reasons(props: Iterable[Proposal], cases: LinkCases) -> Counter[tuple[str, bool]]:
    """Review-queue entries by reason (first words) and whether the pair is true."""
    out: Counter[tuple[str, bool]] = Counter()
    for p in props:
        if p.decision != "review":
            continue
        text = p.conflict or p.reason
        if text.startswith("veto"):
            head = text.split(":")[0]
        elif text.startswith("confidence"):
            head = "confidence below accept"
        else:
            head = text.split("(")[0]
        out[head.strip(), (p.raw_key, p.series_key) in cases.truth] += 1
    return out


def fmt_scores(s: LinkScores) -> list[str]:
    return [
        f"{s.precision:.4f}",
        f"{s.recall:.4f}",
        str(s.insufficient_accepted),
        f"{s.accepted:,}",
        f"{s.review:,} ({s.review_true:,} / {s.review_false:,})",
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="200,2000", help="exams with raw data, comma-separated")
    p.add_argument("--full", action="store_true", help="add 20,000 exams")
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--rounds", type=int, default=3, help="timed propose runs per size (max)")
    args = p.parse_args(argv)
    sizes = [int(x) for x in args.sizes.split(",") if x]
    if args.full and 20_000 not in sizes:
        sizes.append(20_000)

    bench.print_header(
        "Raw file → DICOM series linking (imagelake.linking)",
        packages=["imagelake"],
        notes=[
            "pure Python, one process; no peer library exists: the peers are two naive "
            "linkers a site would script (UID join, nearest raw)",
            f"targets: precision ≥ {TARGET_PRECISION}, recall ≥ {TARGET_RECALL}, "
            "0 insufficient pairs auto-accepted",
            f"engine timed {args.rounds} runs per size (1 at ≥ 20,000 exams), median",
        ],
    )
    bench.print_inputs(
        [
            f"SYNTHETIC worlds: simulate_cases(n, seed={args.seed}) for n in {sizes}",
            "8 scanners, 12 exams/scanner/day, 35 % exams without kept raw data",
        ]
    )

    rows, base_rows, failures = [], [], []
    reasons_last: Counter[tuple[str, bool]] = Counter()
    for k, n in enumerate(sizes):
        t0 = time.perf_counter()
        cases = simulate_cases(n, seed=args.seed)
        gen_s = time.perf_counter() - t0
        engine = LinkEngine()
        if k == 0:  # outputs right before timing: blocking == all pairs
            blocked = engine.propose(cases.raws, cases.series)
            t0 = time.perf_counter()
            brute = engine.propose(cases.raws, cases.series, exhaustive=True)
            brute_s = time.perf_counter() - t0
            ok = blocked == brute
            print(
                f"  check n={n}: blocked == all pairs: {ok} "
                f"({len(cases.raws) * len(cases.series):,} pairs scored in {brute_s:.2f} s)"
            )
            if not ok:
                failures.append(f"n={n}: blocking lost proposals")
        runs = 1 if n >= 20_000 else args.rounds
        times, cpu = [], []
        props: list[Proposal] = []
        for _ in range(runs):
            c0, t0 = time.process_time(), time.perf_counter()
            props = engine.propose(cases.raws, cases.series)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        sec = statistics.median(times)
        stats = engine.last_stats
        scores = evaluate(props, cases)
        print(f"  n={n}: generate {gen_s:.2f} s, propose {bench.med_range(times)} s", flush=True)
        rows.append(
            [
                f"{n:,}",
                f"{len(cases.raws):,}",
                f"{len(cases.series):,}",
                f"{len(cases.truth):,} ({len(cases.sufficient):,})",
                *fmt_scores(scores),
                bench.fmt_s(sec),
                bench.fmt_s(statistics.median(cpu)),
                f"{stats['candidates']:,}",
                f"{stats['candidates'] / sec:,.0f}",
                f"{len(cases.raws) / sec:,.0f}",
            ]
        )
        if not scores.meets(TARGET_PRECISION, TARGET_RECALL):
            failures.append(f"n={n}: {scores}")
        for name, links in (("UID join", uid_join(cases)), ("nearest raw", nearest_raw(cases))):
            base_rows.append([f"{n:,}", name, *fmt_scores(evaluate(links, cases))])
        base_rows.append([f"{n:,}", "LinkEngine", *fmt_scores(scores)])
        reasons_last = review_reasons(props, cases)

    print("\n## LinkEngine (default thresholds: accept 0.95, review 0.5)\n")
    print(
        bench.markdown_table(
            [
                "exams",
                "raws",
                "series",
                "true pairs (sufficient)",
                "precision",
                "recall",
                "insufficient accepted",
                "accepted",
                "review (true / false)",
                "propose s",
                "CPU s",
                "candidate pairs",
                "pairs/s",
                "raws/s",
            ],
            rows,
        )
    )
    print("\n## Against naive linkers (auto-accept everything they find)\n")
    print(
        bench.markdown_table(
            [
                "exams",
                "linker",
                "precision",
                "recall",
                "insufficient accepted",
                "accepted",
                "review (true / false)",
            ],
            base_rows,
        )
    )
    print(f"\n## Review queue at {sizes[-1]:,} exams, by reason\n")
    table: defaultdict[str, list[int]] = defaultdict(lambda: [0, 0])
    for (reason, true), count in reasons_last.items():
        table[reason][0 if true else 1] += count
    print(
        bench.markdown_table(
            ["reason", "true pairs", "false pairs"],
            [
                [r, f"{t:,}", f"{f:,}"]
                for r, (t, f) in sorted(table.items(), key=lambda x: -sum(x[1]))
            ],
        )
    )
    print(f"\npeak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    if failures:
        print("\nTARGETS MISSED:")
        for f in failures:
            print(f"  {f}")
        return 1
    print("\nall targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
