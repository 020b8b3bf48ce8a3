"""Benchmark: chunk shape, sharding and Blosc codec of a CT image array in Zarr v3.

Input (SYNTHETIC, cached under benchmarks/out/cache/): the first 64 slices (``--full``: all
300) of the 300 × 512 × 512 int16 CT of imagelake.synthetic.ct_series (phantom + spatially
correlated noise), in z order, held in memory as one int16 array.

For every layout the script writes a fresh Zarr v3 array on local disk (``zarr.create_array``
then one ``arr[:] = data``), reads it whole (``zarr.open_array(path)[:]``), reads a
64 × 64 × 64 region (all slices of the subset × rows 200:264 × cols 200:264; 100:164 in z with
``--full``), and measures the stored bytes and the number of stored objects. Layouts:

- codec, on imagelake's default layout (chunks 64×128×128 in shards of 64×512×512):
  Blosc zstd clevel 1/3/5 × bitshuffle/byte shuffle, zstd 3 without shuffle, lz4 (clevel 5)
  × bitshuffle/byte shuffle;
- chunk shape, with the default codec (Blosc zstd 3 bitshuffle): 64×128×128, 16×256×256,
  1×512×512, each sharded (shards of 64 slices × the whole plane) and not sharded.

A chunk of fewer slices than its shard is also written the way ingest writes it (batches of
``chunk[0]`` slices: ``_build_stack`` flushes every ``image.chunks[0]`` slices), since that
rewrites each shard several times. Every array is read back and compared with the input
before its timings count. Rounds rotate the order of the layouts; ratios are per round,
against the default layout.

    python benchmarks/codec_choice.py            # 64 slices, 7 rounds
    python benchmarks/codec_choice.py --full     # 300 slices, 5 rounds
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _common as bench
import numpy as np
import pydicom
import zarr
from zarr.codecs import BloscCodec, BloscShuffle

DEFAULT = "zstd 3 bitshuffle, 64×128×128 sharded (default)"


@dataclass(frozen=True)
class Layout:
    name: str
    cname: str
    clevel: int
    shuffle: str
    chunks: tuple[int, int, int]
    sharded: bool

    def codec(self) -> BloscCodec:
        return BloscCodec(cname=self.cname, clevel=self.clevel, shuffle=BloscShuffle(self.shuffle))

    def shards(self, shape: tuple[int, ...]) -> tuple[int, int, int] | None:
        if not self.sharded:
            return None
        z = max(self.chunks[0], (min(64, shape[0]) // self.chunks[0]) * self.chunks[0])
        return (z, shape[1], shape[2])

    def objects(self, shape: tuple[int, int, int]) -> int:
        """Stored objects of an array of ``shape``: chunk or shard files, plus zarr.json."""
        unit = self.shards(shape) or self.chunks
        return 1 + int(np.prod([-(-n // u) for n, u in zip(shape, unit, strict=True)]))

    @property
    def batched(self) -> bool:
        """Whether ingest writes this layout in batches smaller than a shard."""
        return self.sharded and self.chunks[0] < 64


def layouts() -> list[Layout]:
    out = [Layout(DEFAULT, "zstd", 3, "bitshuffle", (64, 128, 128), True)]
    for level in (1, 3, 5):
        for shuffle in ("bitshuffle", "shuffle"):
            if (level, shuffle) != (3, "bitshuffle"):
                out.append(
                    Layout(f"zstd {level} {shuffle}", "zstd", level, shuffle, (64, 128, 128), True)
                )
    out.append(Layout("zstd 3 noshuffle", "zstd", 3, "noshuffle", (64, 128, 128), True))
    for shuffle in ("bitshuffle", "shuffle"):
        out.append(Layout(f"lz4 5 {shuffle}", "lz4", 5, shuffle, (64, 128, 128), True))
    for chunks in ((64, 128, 128), (16, 256, 256), (1, 512, 512)):
        for sharded in (True, False):
            if chunks == (64, 128, 128) and sharded:
                continue
            label = "×".join(map(str, chunks)) + (" sharded" if sharded else " not sharded")
            out.append(Layout(label, "zstd", 3, "bitshuffle", chunks, sharded))
    return out


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--full", action="store_true", help="all 300 slices, 5 rounds")
    ap.add_argument("--slices", type=int, default=None, help="slices used (default 64)")
    ap.add_argument("--rounds", type=int, default=None, help="timed rounds (default 7)")
    ap.add_argument("--cache", type=Path, default=bench.DEFAULT_CACHE, help="input cache folder")
    ap.add_argument("--tmp", type=Path, default=None, help="where arrays are written")
    args = ap.parse_args()
    args.slices = args.slices or (300 if args.full else 64)
    args.rounds = args.rounds or (5 if args.full else 7)
    return args


def load_ct(cache: Path, n: int) -> np.ndarray:
    """The first ``n`` slices in ascending z (the lake's order) as int16."""
    files = bench.ct_files(cache, 300, 512, 512, "explicit")
    datasets = [pydicom.dcmread(f) for f in files]
    datasets.sort(key=lambda d: float(d.ImagePositionPatient[2]))
    return np.stack([d.pixel_array for d in datasets[:n]])


def write(layout: Layout, path: str, data: np.ndarray, batched: bool) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arr = zarr.create_array(
            store=path,
            shape=data.shape,
            dtype=data.dtype,
            chunks=layout.chunks,
            shards=layout.shards(data.shape),
            compressors=layout.codec(),
            fill_value=0,
            dimension_names=("slice", "y", "x"),
        )
        if batched:
            step = layout.chunks[0]
            for k in range(0, data.shape[0], step):
                arr[k : k + step] = data[k : k + step]
        else:
            arr[:] = data
    return arr


def main() -> None:
    args = parse_args()
    n = args.slices
    bench.print_header(
        "Zarr v3 layout and codec choice for CT image arrays",
        packages=["imagelake", "zarr", "numcodecs", "numpy"],
        notes=[
            f"{args.rounds} timed rounds after 1 checked warm-up round; order rotates",
            f"zarr config: threading.max_workers={zarr.config.get('threading.max_workers')}, "
            f"async.concurrency={zarr.config.get('async.concurrency')}",
        ],
    )
    try:
        import numcodecs.blosc

        print(f"  note: Blosc threads: {numcodecs.blosc.get_nthreads()}")
    except Exception:
        pass
    data = load_ct(args.cache, n)
    raw_bytes = data.nbytes
    z0 = 100 if n >= 164 else 0
    region = (slice(z0, z0 + 64), slice(200, 264), slice(200, 264))
    bench.print_inputs(
        [
            f"SYNTHETIC CT (imagelake.synthetic.ct_series, phantom + correlated noise): first "
            f"{n} of 300 slices, {data.shape} {data.dtype}, {raw_bytes / 1e6:.1f} MB in memory",
            f"region read: [{z0}:{z0 + 64}, 200:264, 200:264]",
            f"arrays written under {args.tmp or tempfile.gettempdir()} (local disk)",
        ]
    )
    all_layouts = layouts()
    tmp_root = Path(tempfile.mkdtemp(prefix="bench-codec-", dir=args.tmp))
    results: dict[str, dict[str, list[float]]] = {
        lay.name: {
            "write": [],
            "write_batched": [],
            "read": [],
            "region": [],
            "write_cpu": [],
            "read_cpu": [],
            "region_cpu": [],
        }
        for lay in all_layouts
    }
    stored: dict[str, tuple[int, int]] = {}
    counter = iter(range(10**9))

    def one(layout: Layout, rnd: int) -> None:
        rec = results[layout.name]
        modes = [False, True] if layout.batched else [False]
        for batched in modes:
            path = str(tmp_root / f"a{next(counter)}.zarr")
            c0, t0 = time.process_time(), time.perf_counter()
            write(layout, path, data, batched)
            t_write = time.perf_counter() - t0
            c_write = time.process_time() - c0
            c0, t0 = time.process_time(), time.perf_counter()
            back = zarr.open_array(path, mode="r")[:]
            t_read = time.perf_counter() - t0
            c_read = time.process_time() - c0
            c0, t0 = time.process_time(), time.perf_counter()
            part = zarr.open_array(path, mode="r")[region]
            t_region = time.perf_counter() - t0
            c_region = time.process_time() - c0
            if rnd < 0:
                if not np.array_equal(back, data) or not np.array_equal(part, data[region]):
                    raise SystemExit(f"CHECK FAILED: {layout.name} does not read back the input")
                if not batched:
                    stored[layout.name] = bench.tree_bytes(path)
            else:
                rec["write_batched" if batched else "write"].append(t_write)
                if not batched:
                    rec["write_cpu"].append(c_write)
                    rec["read"].append(t_read)
                    rec["read_cpu"].append(c_read)
                    rec["region"].append(t_region)
                    rec["region_cpu"].append(c_region)
            shutil.rmtree(path)
            tag = " (ingest's batches)" if batched else ""
            label = "warm-up" if rnd < 0 else f"round {rnd + 1:2d}"
            print(
                f"  {label} {layout.name + tag:52s} write {t_write:6.3f}  read {t_read:6.3f}  "
                f"region {t_region:6.4f} s",
                flush=True,
            )

    started = time.perf_counter()
    try:
        for lay in all_layouts:
            one(lay, -1)
        print("  (every layout read back equal to the input)")
        for r in range(args.rounds):
            k = r % len(all_layouts)
            for lay in all_layouts[k:] + all_layouts[:k]:
                one(lay, r)
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
    total = time.perf_counter() - started

    ref = results[DEFAULT]
    full_shape = (300, data.shape[1], data.shape[2])
    rows = []
    for lay in all_layouts:
        rec = results[lay.name]
        size, objects = stored[lay.name]
        if objects != lay.objects(data.shape):
            raise SystemExit(f"{lay.name}: {objects} objects, expected {lay.objects(data.shape)}")

        def mbps(ts: list[float]) -> str:
            return f"{raw_bytes / 1e6 / statistics.median(ts):.0f}"

        def rel(key: str, rec: dict[str, list[float]] = rec, lay: Layout = lay) -> str:
            if lay.name == DEFAULT:
                return "1"
            return bench.ratio_text(bench.ratios(rec[key], ref[key]))

        rows.append(
            [
                lay.name,
                f"{raw_bytes / size:.2f}",
                mbps(rec["write"]),
                rel("write"),
                rel("write_cpu"),
                mbps(rec["read"]),
                rel("read"),
                rel("read_cpu"),
                f"{1000 * statistics.median(rec['region']):.0f}",
                rel("region"),
                rel("region_cpu"),
                f"{objects} / {lay.objects(full_shape)}",
                mbps(rec["write_batched"]) if rec["write_batched"] else "",
            ]
        )
    print(
        "\n## results (medians; ÷ default: this layout's wall (or CPU) time ÷ the default's, "
        "per round: median (min–max))"
    )
    print(
        bench.markdown_table(
            [
                "layout",
                "ratio",
                "write MB/s",
                "write ÷ default",
                "write CPU ÷ default",
                "read MB/s",
                "read ÷ default",
                "read CPU ÷ default",
                "64³ region ms",
                "region ÷ default",
                "region CPU ÷ default",
                f"objects ({n} / 300 slices)",
                "write MB/s, ingest's batches",
            ],
            rows,
        )
    )
    print(
        f"\nMB/s are of raw int16 pixels ({raw_bytes / 1e6:.1f} MB). Objects: files of the array "
        "(chunks or shards, plus zarr.json), counted here and computed for a 300-slice series."
    )
    print("Default layout, median CPU seconds (all threads of this process):")
    for key in ("write_cpu", "read_cpu", "region_cpu"):
        print(f"  {key}: {bench.med_range(ref[key])}")
    print(f"timed part took {total:.0f} s")


if __name__ == "__main__":
    main()
