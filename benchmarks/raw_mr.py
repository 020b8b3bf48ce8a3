"""Benchmark: MR raw data (ISMRMRD) — reading k-space and reconstructing, against the field's tools.

Input: a REAL ISMRMRD file written by Debian's ``ismrmrd_generate_cartesian_shepp_logan``
(default size: 256 x 256 image, readout oversampling 2, 8 coils; 21.6 MB), made once per
run in ``benchmarks/out/raw``.

Cases (each checked for equal results before timing):

- k-space: ``ismrmrd`` package loop (``Dataset.read_acquisition`` per line, the documented
  API) vs imagelake's ISMRMRD reader (h5py on the compound dataset) vs the same k-space
  read back from the lake's raw store (Zarr, ``lake.open_raw(sha).kspace``);
- reconstruction: Debian's C++ ``ismrmrd_recon_cartesian_2d`` (a process, on a copy, as it
  writes into its input) vs imagelake's ``mr-cartesian`` from a file (read + recon).

    python benchmarks/raw_mr.py [--rounds 5] [--matrix 256] [--coils 8]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import _common as bench
import numpy as np

OUT = Path(__file__).parent / "out" / "raw"


def _ismrmrd_loop(path: Path) -> np.ndarray[Any, Any]:
    import ismrmrd

    ds = ismrmrd.Dataset(str(path), "dataset", mode="r")
    try:
        n = ds.number_of_acquisitions()
        first = ds.read_acquisition(0)
        lines = {}
        for i in range(n):
            acq = ds.read_acquisition(i)
            if acq.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT):
                continue
            lines[acq.idx.kspace_encode_step_1] = acq.data
        nc, ns = first.data.shape
        out = np.zeros((nc, max(lines) + 1, ns), np.complex64)
        for k, data in lines.items():
            out[:, k, :] = data
        return out
    finally:
        ds.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--matrix", type=int, default=256)
    p.add_argument("--coils", type=int, default=8)
    args = p.parse_args()

    tool = shutil.which("ismrmrd_recon_cartesian_2d")
    if tool is None or shutil.which("ismrmrd_generate_cartesian_shepp_logan") is None:
        print("needs Debian's ismrmrd-tools (sudo bash scripts/setup-system.sh)", file=sys.stderr)
        return 2
    from imagelake.formats import get_format
    from imagelake.lake import open_lake
    from imagelake.recon import get_reconstructor
    from imagelake.synthetic.samples import ismrmrd_phantom

    bench.print_header(
        "MR raw: k-space read and reconstruction vs ismrmrd and ismrmrd-tools",
        packages=["numpy", "h5py", "ismrmrd", "zarr", "xarray"],
        tools={
            "ismrmrd-tools": bench.tool_version(
                ["dpkg-query", "-W", "-f=${Version}", "ismrmrd-tools"]
            )
        },
    )
    OUT.mkdir(parents=True, exist_ok=True)
    src = ismrmrd_phantom(
        OUT / f"phantom_{args.matrix}_{args.coils}.h5", matrix=args.matrix, coils=args.coils
    )
    bench.print_inputs(
        [
            f"{src.name}: {src.stat().st_size / 1e6:.1f} MB, matrix {args.matrix}, {args.coils} coils, oversampling 2"
        ]
    )
    fmt = get_format("ismrmrd")
    ours = fmt.open(src).arrays["kspace"].load()
    reference = _ismrmrd_loop(src)
    assert np.array_equal(ours, reference), "readers disagree"

    with tempfile.TemporaryDirectory(dir=OUT) as tmp:
        lake = open_lake(Path(tmp) / "lake", create=True)
        report = lake.ingest([src], link=False)
        (sha,) = report.raw_new
        assert np.array_equal(lake.open_raw(sha).kspace.values, reference)
        recon = get_reconstructor("mr-cartesian")

        def cpp(_: Any) -> np.ndarray[Any, Any]:
            copy = Path(tmp) / "copy.h5"
            shutil.copyfile(src, copy)
            subprocess.run([tool, str(copy)], check=True, capture_output=True)
            import h5py

            with h5py.File(copy, "r") as f:
                return np.asarray(f["/dataset/cpp/data"][0, 0, 0])

        def ours_recon(_: Any) -> np.ndarray[Any, Any]:
            return recon.run(fmt.open(src)).volume[0]

        a, b = cpp(None), ours_recon(None)
        corr = float(np.corrcoef(a.ravel(), b.ravel())[0, 1])
        print(f"## check: correlation with ismrmrd_recon_cartesian_2d {corr:.7f}")
        assert corr >= 0.9999

        print("## k-space read")
        cases = [
            bench.Case("ismrmrd read_acquisition loop", lambda _: _ismrmrd_loop(src)),
            bench.Case("imagelake reader (h5py)", lambda _: fmt.open(src).arrays["kspace"].load()),
            bench.Case("lake raw store (zarr)", lambda _: lake.open_raw(sha).kspace.values),
        ]
        times = bench.alternate(cases, rounds=args.rounds)
        print(bench.summary_table(times, reference="imagelake reader (h5py)"))
        print("## reconstruction (file in, image out)")
        cases = [
            bench.Case("ismrmrd_recon_cartesian_2d (C++)", cpp),
            bench.Case("imagelake mr-cartesian", ours_recon),
        ]
        times = bench.alternate(cases, rounds=args.rounds)
        print(bench.summary_table(times, reference="imagelake mr-cartesian"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
