"""Benchmark: per-series statistics over N series, imagelake mining versus plain loops.

Input (SYNTHETIC, made once and cached under benchmarks/out/cache/): N CT series
(imagelake.synthetic.ct_series, int16, a different seed each) as uncompressed DICOM files,
ingested once into a lake with the default store settings.

The analysis: mean, standard deviation, minimum and maximum of every series in HU (the
built-in ``series-stats``). Cases, all on the same series:

  imagelake 2 workers   ``lake.mine("series-stats", force=True)`` on a LocalCluster of 2
                        worker processes (one thread each): one task per series reading its
                        chunks lazily, then the measures written to the registry and index
  imagelake 1 worker    the same on a LocalCluster of 1 worker (scaling 1 → 2)
  dask over files       plain Dask: one ``dask.delayed`` task per series that reads its DICOM
                        files with pydicom, on the same 2-worker cluster
  pydicom loop          one process: ``dcmread`` every file, rescale, accumulate the sums
  imagelake skip        ``lake.mine("series-stats")`` when nothing changed: the provenance
                        check alone (registry lookup, no cluster started)

The clusters are started before timing (a notebook or a site keeps its cluster); their start
is printed. Every case's statistics are compared with the pydicom loop's before timing.

    python benchmarks/mining.py                 # 8 series of 64 × 256 × 256, 3 rounds
    python benchmarks/mining.py --full          # 16 series of 128 × 512 × 512, 5 rounds
"""

from __future__ import annotations

import argparse
import math
import shutil
import time
from pathlib import Path
from typing import Any

import _common as bench
import numpy as np
import pydicom
from _common import Case

from imagelake import synthetic
from imagelake.lake import open_lake

Stats = dict[str, tuple[float, float, float, float]]


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--full", action="store_true", help="16 series of 128×512×512, 5 rounds")
    ap.add_argument("--series", type=int, default=None, help="number of series (default 8)")
    ap.add_argument("--slices", type=int, default=None, help="slices per series (default 64)")
    ap.add_argument("--size", type=int, default=None, help="rows = columns (default 256)")
    ap.add_argument("--rounds", type=int, default=None, help="timed rounds (default 3)")
    ap.add_argument("--cache", type=Path, default=bench.DEFAULT_CACHE, help="input cache folder")
    args = ap.parse_args()
    args.series = args.series or (16 if args.full else 8)
    args.slices = args.slices or (128 if args.full else 64)
    args.size = args.size or (512 if args.full else 256)
    args.rounds = args.rounds or (5 if args.full else 3)
    return args


def inputs(cache: Path, n: int, slices: int, size: int) -> tuple[Path, Path]:
    """(folder of the DICOM series, lake), made once."""
    base = cache / f"mining-{n}x{slices}x{size}x{size}-int16"
    files, lake_root = base / "dicom", base / "lake"
    version = bench.package_versions(["imagelake"])["imagelake"]
    marker = base / ".complete"
    if marker.exists() and marker.read_text().strip() == version:
        return files, lake_root
    shutil.rmtree(base, ignore_errors=True)
    t0 = time.perf_counter()
    for k in range(n):
        synthetic.write_series(
            synthetic.ct_series(
                slices, size, size, dtype="int16", seed=100 + k, series_number=k + 1
            ),
            files / f"s{k:03d}",
        )
    lake = open_lake(lake_root, create=True)
    lake.ingest([files], workers=2)
    marker.write_text(version + "\n")
    print(f"  (made and ingested {base} in {time.perf_counter() - t0:.1f} s; cached)", flush=True)
    return files, lake_root


def series_files(folder: Path) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        paths = sorted(sub.glob("*.dcm"))
        uid = str(pydicom.dcmread(paths[0], stop_before_pixels=True).SeriesInstanceUID)
        out[uid] = paths
    return out


def stats_of_files(paths: list[Path]) -> tuple[float, float, float, float]:
    """The plain loop over one series: read, rescale, accumulate (float64)."""
    n = 0
    s1 = s2 = 0.0
    lo, hi = math.inf, -math.inf
    for path in paths:
        ds = pydicom.dcmread(path)
        hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        n += hu.size
        s1 += float(hu.sum())
        s2 += float(np.square(hu).sum())
        lo, hi = min(lo, float(hu.min())), max(hi, float(hu.max()))
    mean = s1 / n
    return mean, math.sqrt(max(s2 / n - mean * mean, 0.0)), lo, hi


def pydicom_loop(files: dict[str, list[Path]]) -> Stats:
    return {uid: stats_of_files(paths) for uid, paths in files.items()}


def dask_over_files(client: Any, files: dict[str, list[Path]]) -> Stats:
    import dask

    tasks = [dask.delayed(stats_of_files, pure=False)(p) for p in files.values()]
    results = client.compute(tasks, sync=True)
    return dict(zip(files, results, strict=True))


def lake_stats(report: Any) -> Stats:
    f = report.frame
    return {
        r.series_instance_uid: (r.mean, r.std, r.min, r.max)
        for r in f.itertuples()
        if r.stack_number == 0
    }


def check(name: str, got: Stats, expected: Stats) -> None:
    if set(got) != set(expected):
        raise SystemExit(f"CHECK FAILED: {name} gave {len(got)} series, expected {len(expected)}")
    for uid, want in expected.items():
        if not np.allclose(got[uid], want, rtol=1e-9, atol=1e-9):
            raise SystemExit(f"CHECK FAILED: {name} {uid}: {got[uid]} != {want}")
    print(f"    check: {name} equal to the pydicom loop on {len(got)} series", flush=True)


def main() -> None:
    args = parse_args()
    bench.print_header(
        "per-series statistics: imagelake mining vs plain pydicom / plain Dask over files",
        packages=[
            "imagelake",
            "dask",
            "distributed",
            "xarray",
            "zarr",
            "numcodecs",
            "numpy",
            "pydicom",
        ],
        notes=[
            f"{args.rounds} timed rounds after 1 checked warm-up round; ratios per round",
            "clusters started before timing; 'imagelake' includes writing the measures",
        ],
    )
    folder, lake_root = inputs(args.cache, args.series, args.slices, args.size)
    files = series_files(folder)
    total_bytes = sum(p.stat().st_size for ps in files.values() for p in ps)
    stored, _ = bench.tree_bytes(lake_root / "stores")
    bench.print_inputs(
        [
            f"SYNTHETIC CT: {args.series} series of {args.slices} × {args.size} × {args.size} "
            f"int16 (imagelake.synthetic.ct_series, seeds 100…), "
            f"{sum(len(p) for p in files.values())} uncompressed DICOM files, "
            f"{bench.mb(total_bytes)}; lake stores {bench.mb(stored)}",
        ]
    )
    lake = open_lake(lake_root)
    from imagelake.mining import get_client

    t0 = time.perf_counter()
    two = get_client(n_workers=2)
    t_two = time.perf_counter() - t0
    t0 = time.perf_counter()
    one = get_client(n_workers=1)
    t_one = time.perf_counter() - t0
    print(f"  LocalCluster start: 2 workers {t_two:.1f} s, 1 worker {t_one:.1f} s", flush=True)
    try:
        expected = pydicom_loop(files)
        cases = [
            Case(
                "imagelake 2 workers",
                lambda _: lake_stats(lake.mine("series-stats", client=two, force=True)),
            ),
            Case(
                "imagelake 1 worker",
                lambda _: lake_stats(lake.mine("series-stats", client=one, force=True)),
            ),
            Case("dask over files", lambda _: dask_over_files(two, files)),
            Case("pydicom loop", lambda _: pydicom_loop(files)),
            Case("imagelake skip", lambda _: lake_stats(lake.mine("series-stats"))),
        ]

        def on_result(case: Case, rnd: int, sec: float, res: Any) -> None:
            if rnd < 0:
                check(case.name, res, expected)

        times = bench.alternate(cases, rounds=args.rounds, warmup=1, on_result=on_result)
        print()
        print(
            bench.summary_table(
                times,
                reference="imagelake 2 workers",
                ratio_label="time ÷ `imagelake 2 workers` (per round)",
            )
        )
        print()
        for peer in ("pydicom loop", "dask over files", "imagelake 1 worker"):
            r = bench.ratios(times[peer], times["imagelake 2 workers"])
            print(f"  {peer} ÷ imagelake 2 workers: {bench.ratio_text(r)}")
        skip = bench.ratios(times["imagelake 2 workers"], times["imagelake skip"])
        print(
            f"  imagelake 2 workers ÷ imagelake skip (re-run of unchanged inputs): "
            f"{bench.ratio_text(skip)}"
        )
        voxels = args.series * args.slices * args.size * args.size
        med = sorted(times["imagelake 2 workers"])[len(times["imagelake 2 workers"]) // 2]
        print(f"  imagelake 2 workers: {voxels / med / 1e6:.0f} Mvoxel/s")
    finally:
        one.close()
        two.close()


if __name__ == "__main__":
    main()
