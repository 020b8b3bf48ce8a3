"""Benchmark: `imagelake ingest` (CLI) versus `dcm2niix -z y` / `-z n` on one CT series.

Input (SYNTHETIC, made once and cached under benchmarks/out/cache/): a 300 × 512 × 512
int16 CT (imagelake.synthetic.ct_series: phantom + spatially correlated noise) as 300
uncompressed DICOM files (Explicit VR Little Endian).

Both sides are timed as whole commands, process start included (CLI against CLI), each
run into a fresh, empty output folder (made and removed outside the timing):

    imagelake ingest SRC --lake FRESH [--workers N] --no-progress   (default, then N = 2 and 1)
    dcm2niix -z y -o FRESH SRC       (gzip'd NIfTI: dcm2niix pipes through pigz if found)
    dcm2niix -z n -o FRESH SRC       (plain NIfTI)

The warm-up round is also the check: every lake must hold exactly the source pixels (raw
stored integers by SOPInstanceUID, and the HU image = pixels × slope + intercept), and every
NIfTI must have shape 512 × 512 × 300 and the same histogram of values as the source.
Then rounds alternate (the order rotates); the script prints medians, min–max, the per-round
ratio dcm2niix / imagelake, compression ratios and peak memory of every command.

    python benchmarks/ingest_vs_dcm2niix.py               # 300 slices, 3 rounds
    python benchmarks/ingest_vs_dcm2niix.py --full        # 600 slices, 5 rounds, more workers
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import shutil
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as bench
import numpy as np
import pydicom
import zarr
from _common import Case, CommandRun

IMAGELAKE_CLI = str(Path(sys.executable).with_name("imagelake"))


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--full", action="store_true", help="600 slices, 5 rounds, workers 1/2/all")
    ap.add_argument("--slices", type=int, default=None, help="number of slices (default 300)")
    ap.add_argument("--rounds", type=int, default=None, help="timed rounds (default 3)")
    ap.add_argument(
        "--workers", default=None, help="comma-separated imagelake worker counts (default 2,1)"
    )
    ap.add_argument("--cache", type=Path, default=bench.DEFAULT_CACHE, help="input cache folder")
    ap.add_argument("--tmp", type=Path, default=None, help="where output folders are made")
    args = ap.parse_args()
    args.slices = args.slices or (600 if args.full else 300)
    args.rounds = args.rounds or (5 if args.full else 3)
    if args.workers:
        args.workers = [int(w) for w in args.workers.split(",")]
    elif args.full:
        args.workers = sorted({2, 1, os.cpu_count() or 1}, key=lambda w: (w != 2, w))
    else:
        args.workers = [2, 1]
    return args


# -- checks ---------------------------------------------------------------------------------


def source_pixels(files: list[Path]) -> tuple[dict[str, np.ndarray], float, float]:
    """Stored pixel values of every file by SOPInstanceUID, and the (constant) rescale."""
    out = {}
    rescale = set()
    for f in files:
        ds = pydicom.dcmread(f)
        out[str(ds.SOPInstanceUID)] = ds.pixel_array
        rescale.add((float(ds.RescaleSlope), float(ds.RescaleIntercept)))
    if len(rescale) != 1:
        raise SystemExit(f"expected one rescale for the series, got {rescale}")
    slope, inter = rescale.pop()
    return out, slope, inter


def check_lake(root: str, pixels: dict[str, np.ndarray], slope: float, inter: float) -> str:
    from imagelake.lake import open_lake

    lake = open_lake(root)
    series = lake.series()
    if len(series) != 1:
        raise SystemExit(f"CHECK FAILED: {root} holds {len(series)} series, expected 1")
    uid = str(series.series_instance_uid.iloc[0])
    stacks = lake.stacks(uid)
    if len(stacks) != 1:
        raise SystemExit(f"CHECK FAILED: {len(stacks)} stacks, expected 1")
    raw = zarr.open_array(f"{root}/{stacks.store_path.iloc[0]}/image", mode="r")[:]
    ds = lake.open_series(uid)
    uids = [str(u) for u in ds.sop_instance_uid.values]
    if sorted(uids) != sorted(pixels) or raw.shape != (
        len(pixels),
        *next(iter(pixels.values())).shape,
    ):
        raise SystemExit(f"CHECK FAILED: lake holds {raw.shape} / {len(uids)} instances")
    expected = np.stack([pixels[u] for u in uids])
    if raw.dtype != expected.dtype or not np.array_equal(raw, expected):
        raise SystemExit("CHECK FAILED: stored pixels differ from the source")
    hu = ds.image.values
    if not np.array_equal(hu, expected * slope + inter):
        raise SystemExit("CHECK FAILED: the HU image differs from pixels × slope + intercept")
    return f"lake OK: {raw.shape} {raw.dtype} equal to the source pixels, HU equal"


def _nifti_header(raw: bytes) -> dict[str, Any]:
    (sizeof,) = struct.unpack_from("<i", raw, 0)
    if sizeof != 348:
        raise SystemExit(f"CHECK FAILED: not a little-endian NIfTI-1 header ({sizeof})")
    dim = struct.unpack_from("<8h", raw, 40)
    datatype, bitpix = struct.unpack_from("<hh", raw, 70)
    (vox_offset,) = struct.unpack_from("<f", raw, 108)
    slope, inter = struct.unpack_from("<ff", raw, 112)
    return {
        "shape": tuple(dim[1 : 1 + dim[0]]),
        "datatype": datatype,
        "bitpix": bitpix,
        "offset": int(vox_offset),
        "scl": (slope, inter),
    }


_NIFTI_DTYPES = {4: np.int16, 512: np.uint16, 8: np.int32, 16: np.float32}


def check_nifti(out_dir: str, source_hist: np.ndarray, n_slices: int, rows: int, cols: int) -> str:
    found = sorted(Path(out_dir).glob("*.nii*"))
    if len(found) != 1:
        raise SystemExit(f"CHECK FAILED: dcm2niix wrote {[f.name for f in found]}")
    path = found[0]
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    hdr = _nifti_header(data)
    shape = hdr["shape"]
    if shape[:3] != (cols, rows, n_slices) or any(d != 1 for d in shape[3:]):
        raise SystemExit(f"CHECK FAILED: NIfTI shape {shape}, expected {(cols, rows, n_slices)}")
    dtype = _NIFTI_DTYPES.get(hdr["datatype"])
    if dtype is None:
        raise SystemExit(f"CHECK FAILED: unexpected NIfTI datatype {hdr['datatype']}")
    vox = np.frombuffer(data, dtype=dtype, offset=hdr["offset"], count=int(np.prod(shape)))
    hist = np.bincount(vox.astype(np.int64).ravel() + 32768, minlength=65536)
    same = np.array_equal(hist, source_hist)
    if not same:
        raise SystemExit("CHECK FAILED: the NIfTI values are not the source values")
    return (
        f"{path.name} OK: shape {shape}, {np.dtype(dtype).name}, scl_slope/inter "
        f"{hdr['scl']}, same value histogram as the source"
    )


# -- runs -----------------------------------------------------------------------------------


def clean_env() -> dict[str, str]:
    """The environment without IMAGELAKE_* settings: imagelake runs with its defaults."""
    return {k: v for k, v in os.environ.items() if not k.startswith("IMAGELAKE_")}


def main() -> None:
    args = parse_args()
    n, rows, cols = args.slices, 512, 512
    bench.print_header(
        "imagelake ingest vs dcm2niix (whole commands, process start included)",
        packages=["imagelake", "pydicom", "zarr", "numcodecs", "numpy", "sqlalchemy"],
        tools={
            "dcm2niix": bench.tool_version(["dcm2niix", "-v"], r"v\d+\.\d+\.\d+\S*(\s+\([^)]*\))?"),
            "pigz": bench.tool_version(["pigz", "--version"]),
        },
        notes=[
            f"imagelake CLI: {IMAGELAKE_CLI} ingest SRC --lake NEW --workers N --no-progress "
            "(IMAGELAKE_* unset: default chunks 64×128×128, shards 64 slices, Blosc zstd 3 "
            "bitshuffle)",
            "dcm2niix: dcm2niix -z y|n -o NEW SRC (defaults otherwise: BIDS sidecar written)",
            f"{args.rounds} timed rounds after 1 warm-up round (the warm-up outputs are checked)",
        ],
    )
    if shutil.which("dcm2niix") is None:
        raise SystemExit("dcm2niix not found: apt-get install -y dcm2niix pigz")
    files = bench.ct_files(args.cache, n, rows, cols, "explicit")
    src = str(files[0].parent)
    source_bytes = sum(f.stat().st_size for f in files)
    bench.print_inputs([bench.describe_ct(files, n, rows, cols), f"folder: {src}"])

    print("## reading the source pixels for the checks", flush=True)
    pixels, slope, inter = source_pixels(files)
    source_hist = np.zeros(65536, dtype=np.int64)
    for a in pixels.values():
        source_hist += np.bincount(a.astype(np.int64).ravel() + 32768, minlength=65536)

    tmp_root = Path(tempfile.mkdtemp(prefix="bench-ingest-", dir=args.tmp))
    env = clean_env()
    counter = iter(range(10**9))

    def fresh() -> str:
        path = tmp_root / f"out-{next(counter)}"
        return str(path)  # imagelake creates the lake; dcm2niix needs the folder

    def fresh_dir() -> str:
        path = fresh()
        os.makedirs(path)
        return path

    def remove(path: str) -> None:
        shutil.rmtree(path, ignore_errors=True)

    cases: list[Case] = []
    # the default command first (it is the reference): workers chosen by imagelake
    for w in [None, *args.workers]:
        flags = [] if w is None else ["--workers", str(w)]
        cases.append(
            Case(
                "imagelake ingest" + (f" --workers {w}" if w is not None else " (default)"),
                lambda out, flags=flags: (
                    out,
                    bench.run_command(
                        [IMAGELAKE_CLI, "ingest", src, "--lake", out, *flags, "--no-progress"],
                        env=env,
                    ),
                ),
                setup=fresh,
                teardown=remove,
            )
        )
    for z in ("y", "n"):
        cases.append(
            Case(
                f"dcm2niix -z {z}",
                lambda out, z=z: (out, bench.run_command(["dcm2niix", "-z", z, "-o", out, src])),
                setup=fresh_dir,
                teardown=remove,
            )
        )
    reference = cases[0].name

    info: dict[str, dict[str, Any]] = {
        c.name: {"max_rss": [], "tree_rss": [], "inner": [], "cpu": []} for c in cases
    }

    def on_result(case: Case, rnd: int, sec: float, res: Any) -> None:
        out, run = res
        assert isinstance(run, CommandRun)
        if run.returncode != 0:
            raise SystemExit(
                f"{case.name} failed ({run.returncode}):\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}"
            )
        rec = info[case.name]
        if rnd >= 0:
            rec["cpu"].append(run.cpu_seconds)
        rec["max_rss"].append(run.max_rss_mib)
        rec["tree_rss"].append(run.tree_rss_mib)
        if case.name.startswith("imagelake"):
            m = re.search(r"in ([\d.]+) s", run.stdout)
            if m:
                rec["inner"].append(float(m.group(1)))
        if rnd >= 0:
            return
        # warm-up: check the output, measure what was stored
        if case.name.startswith("imagelake"):
            print(f"    check: {check_lake(out, pixels, slope, inter)}", flush=True)
            from imagelake.lake import open_lake

            lake = open_lake(out)
            st = lake.stacks()
            store = Path(out) / str(st.store_path.iloc[0])
            image_bytes, image_objects = bench.tree_bytes(store / "image")
            rec["stored"] = {
                "store": int(st.stored_bytes.iloc[0]),
                "image": image_bytes,
                "image_objects": image_objects,
                "store_objects": bench.tree_bytes(store)[1],
                "lake": bench.tree_bytes(out)[0],
            }
            rec["report"] = run.stdout.strip().splitlines()[-1]
        else:
            print(f"    check: {check_nifti(out, source_hist, n, rows, cols)}", flush=True)
            nii = sorted(Path(out).glob("*.nii*"))[0]
            rec["stored"] = {"nifti": nii.stat().st_size, "all": bench.tree_bytes(out)[0]}
            rec["pigz"] = "pigz" in run.stdout
            lines = [ln for ln in run.stdout.splitlines() if "Compress" in ln or "required" in ln]
            rec["log"] = lines

    print("## runs", flush=True)
    started = time.perf_counter()
    try:
        times = bench.alternate(cases, rounds=args.rounds, warmup=1, on_result=on_result)
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
    total = time.perf_counter() - started

    print("\n## results")
    extra = {}
    for c in cases:
        rec = info[c.name]
        stored = rec["stored"]
        if c.name.startswith("imagelake"):
            ratio = f"{source_bytes / stored['store']:.2f}:1 (store), {source_bytes / stored['lake']:.2f}:1 (lake)"
        else:
            ratio = f"{source_bytes / stored['nifti']:.2f}:1"
        extra[c.name] = {
            "source / stored": ratio,
            "peak RSS, largest process MiB": bench.med_range(rec["max_rss"], lambda v: f"{v:.0f}"),
            "peak RSS, process tree MiB": bench.med_range(rec["tree_rss"], lambda v: f"{v:.0f}"),
        }
    print(
        bench.summary_table(
            times,
            reference=reference,
            extra=extra,
            ratio_label=f"time ÷ `{reference}` (per round)",
            cpu={c.name: info[c.name]["cpu"] for c in cases},
        )
    )
    print()
    print("Time inside the library (IngestReport.seconds: discover → commit, without process")
    print("start, imports, index snapshot, catalog and audit), median (min–max) s:")
    for c in cases:
        if info[c.name]["inner"]:
            print(f"  {c.name}: {bench.med_range(info[c.name]['inner'])}")
    print()
    for c in cases:
        rec = info[c.name]
        s = rec["stored"]
        if c.name.startswith("imagelake"):
            print(
                f"{c.name}: store {bench.mb(s['store'])} in {s['store_objects']} objects "
                f"(image array {bench.mb(s['image'])} in {s['image_objects']} objects, "
                f"pixel-only ratio {n * rows * cols * 2 / s['image']:.2f}:1); whole lake "
                f"folder {bench.mb(s['lake'])} (registry, index, catalog, audit)"
            )
            print(f"  warm-up run's report: {rec['report']}")
        else:
            print(
                f"{c.name}: NIfTI {bench.mb(s['nifti'])}, folder {bench.mb(s['all'])}; "
                f"pigz used: {rec['pigz']}"
            )
            for ln in rec["log"]:
                print(f"  dcm2niix: {ln.strip()}")
    print()
    gz = "dcm2niix -z y"
    ratio = statistics.median(bench.ratios(times[gz], times[reference]))
    verdict = (
        "MET" if ratio >= 5 else f"MISSED (imagelake would need to be {5 / ratio:.1f}× faster)"
    )
    print(f"Goal 1: {gz} ÷ `{reference}` ≥ 5×: {ratio:.2f}× — {verdict}")
    for c in cases[1:]:
        if c.name.startswith("imagelake"):
            r = bench.ratio_text(bench.ratios(times[gz], times[c.name]))
            print(f"        {gz} ÷ `{c.name}`: {r}")
    ours = source_bytes / info[reference]["stored"]["store"]
    theirs = source_bytes / info[gz]["stored"]["nifti"]
    print(
        f"Goal 2: imagelake's ratio better than dcm2niix -z y's: {ours:.2f}:1 vs {theirs:.2f}:1 — "
        + ("MET" if ours > theirs else "MISSED")
    )
    print(f"source: {bench.mb(source_bytes)} in {len(files)} files; benchmark took {total:.0f} s")


if __name__ == "__main__":
    main()
