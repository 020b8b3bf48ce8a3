"""Benchmark: DICOM de-identification throughput, imagelake vs dicognito, on real files.

Input: REAL DICOM files with identifiers: deid-data's dicom-cookies and the pydicom test files
CT_small, MR_small, rtplan, rtdose, JPEG2000 (pydicom 3 and deid-data packages). Every file
is read into memory once; each case then de-identifies copies of every dataset.

Cases:
- ``copy only``: ``copy.deepcopy`` of every dataset (the floor both others pay);
- ``dicognito``: ``Anonymizer().anonymize(copy)``, its documented API;
- ``imagelake``: ``Deidentifier(policy).deidentify(copy, inplace=True)`` with the Basic
  Profile plus Retain Longitudinal Modified Dates (dicognito shifts dates too).

Before timing, the script checks that both outputs carry no PatientName and PatientID of
the input. Goal (issue 4): imagelake >= 10x dicognito.

    python benchmarks/anonymize_vs_dicognito.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import _common as bench
import pydicom


def _files() -> list[Path]:
    import deid_data

    tests = Path(pydicom.__file__).parent / "data" / "test_files"
    cookies = sorted((Path(deid_data.__file__).parent / "data" / "dicom-cookies").glob("*.dcm"))
    names = ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "rtdose.dcm", "JPEG2000.dcm")
    return cookies + [tests / n for n in names]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    try:
        from dicognito.anonymizer import Anonymizer
    except ImportError:
        print("needs dicognito (pip install -e '.[dev]')", file=sys.stderr)
        return 2
    from imagelake.anonymize import Deidentifier, load_policy

    bench.print_header(
        "De-identification throughput: imagelake vs dicognito",
        packages=["pydicom", "dicognito", "deid-data"],
    )
    files = _files()
    datasets = [pydicom.dcmread(f) for f in files]
    for ds in datasets:
        for _ in ds.iterall():  # parse every element once, for both
            pass
    bench.print_inputs([f"{len(files)} real files: {', '.join(f.name for f in files)}"])
    deid = Deidentifier(
        load_policy({"options": ["retain_long_modified_dates"]}),
        secret=b"benchmark-secret-0123456789ab",
    )

    def ours(_: Any) -> list[Any]:
        return [
            deid.deidentify(
                copy.deepcopy(d), subject_key=str(d.get("PatientID", "")), inplace=True
            ).dataset
            for d in datasets
        ]

    def theirs(_: Any) -> list[Any]:
        anonymizer = Anonymizer()
        out = []
        for d in datasets:
            c = copy.deepcopy(d)
            anonymizer.anonymize(c)
            out.append(c)
        return out

    def copies(_: Any) -> list[Any]:
        return [copy.deepcopy(d) for d in datasets]

    for name, fn in (("imagelake", ours), ("dicognito", theirs)):
        for before, after in zip(datasets, fn(None), strict=True):
            for kw in ("PatientName", "PatientID"):
                old = str(before.get(kw, ""))
                if len(old) > 3:
                    assert str(after.get(kw, "")) != old, f"{name} kept {kw}"
    print("## check: neither output keeps an input PatientName or PatientID")
    cases = [
        bench.Case("copy only", copies),
        bench.Case("dicognito", theirs),
        bench.Case("imagelake", ours),
    ]
    times = bench.alternate(cases, rounds=args.rounds)
    per = {k: [len(datasets) / t for t in v] for k, v in times.items()}
    print(bench.summary_table(times, reference="imagelake"))
    for k, v in per.items():
        print(f"  {k}: {bench.med_range(v, lambda x: f'{x:.0f}')} datasets/s")
    ratio = bench.ratios(times["dicognito"], times["imagelake"])
    print(f"## imagelake vs dicognito: {bench.ratio_text(ratio)} (goal >= 10x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
