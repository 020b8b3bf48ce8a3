"""Benchmark: reading a CT series from the lake versus plain pydicom loops over DICOM files.

Input (SYNTHETIC, made once and cached under benchmarks/out/cache/): a 300 × 512 × 512
int16 CT (imagelake.synthetic.ct_series: phantom + spatially correlated noise), as
uncompressed DICOM files, as the same instances in JPEG-LS Lossless and in JPEG 2000
Lossless (imagelake.synthetic.compress: pyjpegls / pylibjpeg-openjpeg), and ingested once
into a lake with imagelake's default store settings.

1. Whole series → one float64 numpy array in Hounsfield units, slices in the lake's order
   (ascending z):
     lake      ``lake.open_series(uid).image.values``  (lazy xarray, no dask by default; CF scale/offset)
     zarr      ``zarr.open_array(store/image)[:] * slope + intercept``
     pydicom   ``dcmread`` every file, sort by z, ``np.stack(pixel_array * slope + intercept)``
               over the uncompressed, the JPEG-LS and the JPEG 2000 files.
2. A 64³ region (slices 100:164, rows 200:264, cols 200:264):
     lake      ``lake.open_series(uid).image[100:164, 200:264, 200:264].values`` (open included)
     lake, open dataset   the same on a dataset opened beforehand
     zarr      ``zarr.open_array(...)[100:164, 200:264, 200:264]`` then rescale
     pydicom   read the 64 uncompressed files holding those slices (the list is given to it
               for free: no header scan), crop, rescale, stack.

Each case's output is compared (``np.array_equal``) with the expected HU array before any
timing; that first run is the warm-up, traced by tracemalloc for its peak memory. Then rounds
alternate with a rotating order; ratios are pydicom / lake per round.

    python benchmarks/read_vs_pydicom.py              # 300 slices, 3 rounds
    python benchmarks/read_vs_pydicom.py --full       # 5 rounds, 600 slices
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import _common as bench
import numpy as np
import pydicom
import zarr
from _common import Case

from imagelake.lake import open_lake

REGION = (slice(100, 164), slice(200, 264), slice(200, 264))
SYNTAXES = {"explicit": "uncompressed", "jpeg-ls": "JPEG-LS", "jpeg2000": "JPEG 2000"}


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--full", action="store_true", help="600 slices, 5 rounds")
    ap.add_argument("--slices", type=int, default=None, help="number of slices (default 300)")
    ap.add_argument("--rounds", type=int, default=None, help="timed rounds (default 3)")
    ap.add_argument("--cache", type=Path, default=bench.DEFAULT_CACHE, help="input cache folder")
    args = ap.parse_args()
    args.slices = args.slices or (600 if args.full else 300)
    args.rounds = args.rounds or (5 if args.full else 3)
    if args.slices < 164:
        ap.error("--slices must be ≥ 164 for the 64³ region at slices 100:164")
    return args


def cached_lake(cache: Path, n: int, files: list[Path]) -> str:
    """A lake holding the uncompressed series, ingested once with the default settings."""
    folder = bench.ct_folder(cache, n, 512, 512, "lake")
    version = bench.package_versions(["imagelake"])["imagelake"]
    marker = folder / ".complete"
    if marker.exists() and marker.read_text().strip() == version:
        return str(folder)
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
    t0 = time.perf_counter()
    lake = open_lake(folder, create=True)
    lake.ingest([str(files[0].parent)], workers=2)
    marker.write_text(version + "\n")
    print(f"  (ingested {folder} in {time.perf_counter() - t0:.1f} s; cached)", flush=True)
    return str(folder)


def pydicom_series(files: Sequence[Path]) -> np.ndarray:
    """The plain loop: read every file, sort by z, rescale to HU, stack."""
    datasets = [pydicom.dcmread(f) for f in files]
    datasets.sort(key=lambda d: float(d.ImagePositionPatient[2]))
    return np.stack(
        [d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept) for d in datasets]
    )


def pydicom_region(files: Sequence[Path], rows: slice, cols: slice) -> np.ndarray:
    out = []
    for f in files:
        d = pydicom.dcmread(f)
        out.append(d.pixel_array[rows, cols] * float(d.RescaleSlope) + float(d.RescaleIntercept))
    return np.stack(out)


def evict(paths: Sequence[str | Path]) -> None:
    """Drop these files' pages from the OS page cache (only theirs: other users are unaffected)."""
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def files_under(root: str | Path) -> list[Path]:
    return [p for p in Path(root).rglob("*") if p.is_file()]


def mib(v: float) -> str:
    return f"{v:.0f}"


def run_block(
    title: str,
    cases: list[Case],
    expected: np.ndarray,
    rounds: int,
    peers: Sequence[str],
    reference: str,
) -> dict[str, list[float]]:
    def on_result(case: Case, rnd: int, sec: float, res: Any) -> None:
        if rnd >= 0:
            return
        arr = res
        if arr.shape != expected.shape or arr.dtype != expected.dtype:
            raise SystemExit(
                f"CHECK FAILED: {case.name} gave {arr.shape} {arr.dtype}, "
                f"expected {expected.shape} {expected.dtype}"
            )
        if not np.array_equal(arr, expected):
            raise SystemExit(f"CHECK FAILED: {case.name} values differ from the source HU")
        print(f"    check: {case.name} equal to the source HU {arr.shape} {arr.dtype}", flush=True)

    print(f"## {title}", flush=True)
    times = bench.alternate(cases, rounds=rounds, warmup=1, trace_warmup=True, on_result=on_result)
    extra = {c.name: {"peak traced MiB (warm-up)": mib(c.notes["traced_mib"][0])} for c in cases}
    print()
    print(
        bench.summary_table(
            times,
            reference=reference,
            extra=extra,
            ratio_label=f"time ÷ `{reference}` (per round)",
            cpu={c.name: c.notes.get("cpu", []) for c in cases},
        )
    )
    print()
    for peer in peers:
        r = bench.ratios(times[peer], times[reference])
        print(f"  {peer} ÷ {reference}: {bench.ratio_text(r)}")
    return times


def goal(label: str, ratio: float, target: float) -> str:
    if ratio >= target:
        return f"{label}: {ratio:.2f}× ≥ {target:g}× — MET"
    return (
        f"{label}: {ratio:.2f}× < {target:g}× — MISSED by {target / ratio:.1f}× "
        f"(reached {100 * ratio / target:.0f} % of the goal)"
    )


def main() -> None:
    args = parse_args()
    n = args.slices
    bench.print_header(
        "whole-series and region reads: imagelake lake vs pydicom loops",
        packages=[
            "imagelake",
            "zarr",
            "numcodecs",
            "xarray",
            "dask",
            "numpy",
            "pydicom",
            "pyjpegls",
            "pylibjpeg",
            "pylibjpeg-openjpeg",
        ],
        notes=[
            f"{args.rounds} timed rounds after 1 checked warm-up round; ratios per round",
            "lake opened once with open_lake(); open_series() is inside the timing",
        ],
    )
    files = {s: bench.ct_files(args.cache, n, 512, 512, s) for s in SYNTAXES}
    lake_root = cached_lake(args.cache, n, files["explicit"])
    sizes = {s: sum(f.stat().st_size for f in fs) for s, fs in files.items()}
    lake = open_lake(lake_root)
    uid = str(lake.series().series_instance_uid.iloc[0])
    stack = lake.stacks(uid).iloc[0]
    image_path = f"{lake_root}/{stack.store_path}/image"
    image_bytes, image_objects = bench.tree_bytes(image_path)
    bench.print_inputs(
        [
            bench.describe_ct(files["explicit"], n, 512, 512),
            *(
                f"{SYNTAXES[s]}: {sizes[s] / 1e6:.1f} MB "
                f"({sizes['explicit'] / sizes[s]:.2f}:1 vs uncompressed files), {files[s][0].parent}"
                for s in ("jpeg-ls", "jpeg2000")
            ),
            f"lake: {lake_root}: image {image_bytes / 1e6:.1f} MB in {image_objects} objects "
            f"({sizes['explicit'] / image_bytes:.2f}:1), store {stack.stored_bytes / 1e6:.1f} MB",
            f"zarr encoding: {zarr.open_array(image_path, mode='r').metadata.to_dict()['codecs']}",
        ]
    )

    # expected HU, in the lake's order (ascending z), from the uncompressed files
    print("## expected values (from the uncompressed files)", flush=True)
    by_uid = {}
    for f in files["explicit"]:
        d = pydicom.dcmread(f, stop_before_pixels=True)
        by_uid[str(d.SOPInstanceUID)] = (f, float(d.ImagePositionPatient[2]))
    ds0 = lake.open_series(uid)
    order = [str(u) for u in ds0.sop_instance_uid.values]
    zs = [by_uid[u][1] for u in order]
    if zs != sorted(zs):
        raise SystemExit("CHECK FAILED: the lake's slices are not in ascending z")
    slope = float(ds0.image.encoding.get("scale_factor", 1.0))
    inter = float(ds0.image.encoding.get("add_offset", 0.0))
    raw = np.stack([pydicom.dcmread(by_uid[u][0]).pixel_array for u in order])
    expected = raw * slope + inter
    del raw
    for s in ("jpeg-ls", "jpeg2000"):
        if [f.name for f in files[s]] != [f.name for f in files["explicit"]]:
            raise SystemExit(f"CHECK FAILED: {s} files do not match the uncompressed ones")
        ts = str(pydicom.dcmread(files[s][0], stop_before_pixels=True).file_meta.TransferSyntaxUID)
        print(f"  {SYNTAXES[s]} files: transfer syntax {ts}")
    region_files = [by_uid[u][0] for u in order[REGION[0]]]

    # -- 1. whole series ---------------------------------------------------------------------
    whole = [
        Case("lake open_series().image.values", lambda _: lake.open_series(uid).image.values),
        Case(
            "zarr open_array()[:] → HU",
            lambda _: zarr.open_array(image_path, mode="r")[:] * slope + inter,
        ),
    ] + [
        Case(f"pydicom {SYNTAXES[s]}", (lambda _, fs=files[s]: pydicom_series(fs)))
        for s in SYNTAXES
    ]
    started = time.perf_counter()
    t_whole = run_block(
        "1. whole series",
        whole,
        expected,
        args.rounds,
        [f"pydicom {SYNTAXES[s]}" for s in SYNTAXES],
        whole[0].name,
    )
    mb_pixels = n * 512 * 512 * 2 / 1e6
    print()
    for name, ts in t_whole.items():
        print(f"  {name}: {mb_pixels / statistics.median(ts):.0f} MB/s of stored pixels")

    # -- 2. region ---------------------------------------------------------------------------
    expected_region = expected[REGION].copy()
    del expected
    opened = lake.open_series(uid)
    region = [
        Case(
            "lake open_series().image[region].values",
            lambda _: lake.open_series(uid).image[REGION].values,
        ),
        Case("lake image[region].values (opened before)", lambda _: opened.image[REGION].values),
        Case(
            "zarr open_array()[region] → HU",
            lambda _: zarr.open_array(image_path, mode="r")[REGION] * slope + inter,
        ),
        Case(
            "pydicom 64 uncompressed files",
            lambda _: pydicom_region(region_files, REGION[1], REGION[2]),
        ),
    ]
    t_region = run_block(
        "2. region 64³: slices 100:164, rows 200:264, cols 200:264",
        region,
        expected_region,
        max(args.rounds, 5),
        ["pydicom 64 uncompressed files"],
        region[0].name,
    )

    # -- 3. region, cold page cache ------------------------------------------------------------
    store_files = [
        *files_under(f"{lake_root}/{stack.store_path}"),
        Path(lake_root, "registry.sqlite"),
    ]
    cold = [
        Case(
            "lake open_series().image[region].values, cold",
            lambda _: lake.open_series(uid).image[REGION].values,
            setup=lambda: evict(store_files),
        ),
        Case(
            "pydicom 64 uncompressed files, cold",
            lambda _: pydicom_region(region_files, REGION[1], REGION[2]),
            setup=lambda: evict(region_files),
        ),
    ]
    t_cold = run_block(
        "3. region 64³, cold page cache (the files read are evicted with posix_fadvise "
        "DONTNEED before each run, outside the timing)",
        cold,
        expected_region,
        max(args.rounds, 5),
        ["pydicom 64 uncompressed files, cold"],
        cold[0].name,
    )
    total = time.perf_counter() - started

    print("\n## goals (ratio pydicom ÷ lake, median of the per-round ratios)")
    ref = whole[0].name

    def med(peer: str, times: dict[str, list[float]], reference: str) -> float:
        return statistics.median(bench.ratios(times[peer], times[reference]))

    print(
        goal(
            "whole series vs pydicom uncompressed ≥ 1.2×",
            med("pydicom uncompressed", t_whole, ref),
            1.2,
        )
    )
    print(goal("whole series vs pydicom JPEG-LS ≥ 10×", med("pydicom JPEG-LS", t_whole, ref), 10))
    print(
        goal("whole series vs pydicom JPEG 2000 ≥ 10×", med("pydicom JPEG 2000", t_whole, ref), 10)
    )
    print(
        goal(
            "region 64³ vs pydicom 64 files ≥ 50× (open_series included)",
            med("pydicom 64 uncompressed files", t_region, region[0].name),
            50,
        )
    )
    print(
        goal(
            "region 64³ vs pydicom 64 files ≥ 50× (dataset opened before)",
            med("pydicom 64 uncompressed files", t_region, region[1].name),
            50,
        )
    )
    print(
        goal(
            "region 64³ vs pydicom 64 files ≥ 50× (cold page cache, open_series included)",
            med("pydicom 64 uncompressed files, cold", t_cold, cold[0].name),
            50,
        )
    )
    print(f"timed part took {total:.0f} s")


if __name__ == "__main__":
    main()
