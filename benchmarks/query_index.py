"""Benchmark: imagelake.index.query versus DuckDB SQL and a pandas mask on the same Parquet.

Input (SYNTHETIC, generated here, seeded): a SQLite registry of ~2,000 series (CT 60 %,
MR 30 %, PT 10 %) holding 1,000,000 instances whose tags look like real headers (~75 CT or
~70 MR tags each: constant series-level tags, per-slice positions, tube current, window
values, multi-valued ImageType/PixelSpacing, a few private tags, a JSON sequence). The
registry is snapshotted with ``write_snapshot`` (timed, with its peak memory, in a child
process); the queries then run on ``index/*.parquet``.

Each query is checked first: imagelake, DuckDB and pandas must return the same series.
Then they are timed alternately after a warm-up (the order rotates every round), and the
script prints medians, min–max, the per-round ratio peer/imagelake, versions and machine.
imagelake runs three ways: as ``query()`` is used (one reader per lake: footer, series
table and filter columns cached), with a reader that caches no columns, and with a fresh
reader per query (nothing cached but the OS page cache — DuckDB's and pandas' situation).
All return pandas DataFrames of full series rows.

    python benchmarks/query_index.py                 # 1M instances, 2,000 series
    python benchmarks/query_index.py --full          # 5M instances, 10,000 series
    python benchmarks/query_index.py --lake /tmp/bl  # keep (and reuse) the lake there
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

import imagelake
from imagelake import model
from imagelake._fs import LakeFS
from imagelake.db import Database, ensure_project, ensure_study, ensure_subject
from imagelake.index import IndexReader, query, write_snapshot

T0 = pd.Timestamp("2026-01-01", tz="UTC").to_pydatetime()
MAKERS = [
    ("SIEMENS", ["SOMATOM Force", "SOMATOM Definition AS+"], ["Br40d", "B30f", "I26f"]),
    ("GE MEDICAL SYSTEMS", ["Revolution CT", "Discovery CT750 HD"], ["STANDARD", "BONE"]),
    ("Philips", ["iCT 256", "IQon - Spectral CT"], ["B", "C", "YA"]),
    ("TOSHIBA", ["Aquilion ONE"], ["FC03", "FC18"]),
]
THICKNESS = [0.5, 0.625, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0]


# -- synthetic registry --------------------------------------------------------------------
def _series_tags(rng: np.random.Generator, n: int, modality: str) -> tuple[dict[str, Any], dict]:
    maker, models, kernels = MAKERS[int(rng.integers(len(MAKERS)))]
    thick = float(rng.choice(THICKNESS))
    uid = f"1.2.826.0.1.3680043.10.999.{n}"
    tags: dict[str, Any] = {
        "SpecificCharacterSet": "ISO_IR 100",
        "ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"],
        "StudyDate": f"2024{int(rng.integers(1, 13)):02d}{int(rng.integers(1, 29)):02d}",
        "SeriesDate": "20240101",
        "AcquisitionDate": "20240101",
        "ContentDate": "20240101",
        "StudyTime": "101500",
        "SeriesTime": "101712",
        "AccessionNumber": f"ACC{n:07d}",
        "Modality": modality,
        "Manufacturer": maker,
        "InstitutionName": f"Hospital {n % 7}",
        "InstitutionAddress": "Street 1, Town",
        "ReferringPhysicianName": "Doe^Jane",
        "StationName": f"STATION{n % 13}",
        "StudyDescription": "Thorax" if n % 3 else "Abdomen",
        "SeriesDescription": ["Thorax 1.0 Br40", "Abd 3.0 B30f", "Head"][n % 3],
        "ManufacturerModelName": str(rng.choice(models)),
        "PatientName": f"Subject^{n // 3:05d}",
        "PatientID": f"SUBJ{n // 3:05d}",
        "PatientBirthDate": "19700101",
        "PatientSex": "F" if n % 2 else "M",
        "PatientAge": f"{40 + n % 40:03d}Y",
        "PatientWeight": float(60 + n % 40),
        "BodyPartExamined": ["CHEST", "ABDOMEN", "HEAD"][n % 3],
        "SliceThickness": thick,
        "DeviceSerialNumber": f"{10000 + n % 17}",
        "SoftwareVersions": ["syngo CT VA50A", "gmp_vct.42", "5.1.2"][n % 3],
        "ProtocolName": f"Protocol {n % 11}",
        "PatientPosition": "HFS",
        "StudyInstanceUID": f"{uid}.1",
        "SeriesInstanceUID": uid,
        "StudyID": str(n),
        "SeriesNumber": int(n % 20 + 1),
        "FrameOfReferenceUID": f"{uid}.2",
        "PositionReferenceIndicator": "",
        "SamplesPerPixel": 1,
        "PhotometricInterpretation": "MONOCHROME2",
        "Rows": 512,
        "Columns": 512,
        "PixelSpacing": [0.683, 0.683],
        "BitsAllocated": 16,
        "BitsStored": 12,
        "HighBit": 11,
        "PixelRepresentation": 0,
        "ImageOrientationPatient": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
        "00091001": "GEMS_IDEN_01",
        "0019100C": int(rng.integers(0, 1000)),
        "00291010": json.dumps([{"00291011": {"vr": "LO", "Value": ["x"]}}]),
    }
    params: dict[str, Any] = {"slice_thickness": thick, "rows": 512, "columns": 512}
    if modality == "CT":
        kernel = str(rng.choice(kernels))
        kvp = float(rng.choice([80.0, 100.0, 120.0, 140.0]))
        tags.update(
            SOPClassUID="1.2.840.10008.5.1.4.1.1.2",
            KVP=kvp,
            ConvolutionKernel=kernel,
            DataCollectionDiameter=500.0,
            ReconstructionDiameter=350.0,
            DistanceSourceToDetector=1085.6,
            DistanceSourceToPatient=595.0,
            GantryDetectorTilt=0.0,
            TableHeight=150.0,
            RotationDirection="CW",
            FilterType="FLAT",
            GeneratorPower=int(rng.integers(20, 100)),
            FocalSpots=[1.2, 1.2],
            RevolutionTime=0.5,
            SingleCollimationWidth=0.6,
            TotalCollimationWidth=38.4,
            SpiralPitchFactor=0.8,
            RescaleIntercept=-1024.0,
            RescaleSlope=1.0,
            RescaleType="HU",
        )
        params.update(convolution_kernel=kernel, kvp=kvp)
    else:
        tr, te = float(rng.choice([500.0, 2000.0, 4000.0])), float(rng.choice([10.0, 90.0]))
        tags.update(
            SOPClassUID="1.2.840.10008.5.1.4.1.1.4",
            ScanningSequence="SE",
            SequenceVariant=["SK", "SP"],
            ScanOptions="",
            MRAcquisitionType="2D",
            SequenceName="*tse2d1_15",
            RepetitionTime=tr,
            EchoTime=te,
            NumberOfAverages=1.0,
            ImagingFrequency=123.2,
            ImagedNucleus="1H",
            EchoNumbers=1,
            MagneticFieldStrength=3.0,
            EchoTrainLength=15,
            FlipAngle=150.0,
            SAR=1.2,
        )
        params.update(repetition_time=tr, echo_time=te, magnetic_field_strength=3.0)
    return tags, params


def _instance_tags(base: dict[str, Any], i: int, n: int, rng_val: np.ndarray) -> dict[str, Any]:
    t = dict(base)
    z = float(i) * base["SliceThickness"]
    t["SOPInstanceUID"] = f"{base['SeriesInstanceUID']}.{i + 1}"
    t["InstanceNumber"] = i + 1
    t["AcquisitionNumber"] = 1 + i // 200
    t["AcquisitionTime"] = f"{101712 + i // 10:06d}.{i % 10}00000"
    t["ContentTime"] = f"{101720 + i // 10:06d}"
    t["ImagePositionPatient"] = [-175.0, -175.0, round(-z, 3)]
    t["SliceLocation"] = round(-z, 3)
    t["WindowCenter"] = [40, 400] if (n + i) % 50 == 0 else 40
    t["WindowWidth"] = [400, 2000] if (n + i) % 50 == 0 else 400
    t["LargestImagePixelValue"] = int(rng_val[1])
    if base["Modality"] == "CT":
        t["XRayTubeCurrent"] = int(rng_val[0])
        t["Exposure"] = int(rng_val[0]) // 2
        t["CTDIvol"] = round(float(rng_val[0]) / 30.0, 4)
        t["00431027"] = float(rng_val[1]) / 7.0
    return t


def build_registry(root: Path, n_series: int, n_instances: int, seed: int = 7) -> Database:
    """A SQLite registry at ``root/registry.sqlite`` filled with synthetic series."""
    db = Database(f"sqlite:///{root / 'registry.sqlite'}")
    rng = np.random.default_rng(seed)
    sizes = rng.multinomial(n_instances - n_series, np.ones(n_series) / n_series) + 1
    modalities = rng.choice(["CT", "MR", "PT"], size=n_series, p=[0.6, 0.3, 0.1])
    rows: list[dict[str, Any]] = []
    with db.begin() as conn:
        project_id = ensure_project(conn, "bench")
        for n in range(n_series):
            base, params = _series_tags(rng, n, str(modalities[n]))
            subject_id = ensure_subject(conn, project_id, base["PatientID"])
            study_id = ensure_study(
                conn, subject_id, base["StudyInstanceUID"], study_date=base["StudyDate"]
            )
            series_id = conn.execute(
                sa.insert(model.series).values(
                    study_id=study_id,
                    series_instance_uid=base["SeriesInstanceUID"],
                    modality=base["Modality"],
                    series_description=base["SeriesDescription"],
                    series_date=base["SeriesDate"],
                    body_part=base["BodyPartExamined"],
                    manufacturer=base["Manufacturer"],
                    model=base["ManufacturerModelName"],
                    software_versions=base["SoftwareVersions"],
                    device_serial=base["DeviceSerialNumber"],
                    n_instances=int(sizes[n]),
                    created_at=T0,
                    updated_at=T0,
                )
            ).inserted_primary_key[0]
            conn.execute(sa.insert(model.image_parameters).values(series_id=series_id, **params))
            stack_id = conn.execute(
                sa.insert(model.stack).values(
                    series_id=series_id,
                    stack_key=base["SeriesInstanceUID"],
                    stack_number=1,
                    store_path=f"stores/dicom/{base['SeriesInstanceUID']}.zarr",
                    content_hash="0" * 64,
                    frame_dim="slice",
                    shape=[int(sizes[n]), 512, 512],
                    dtype="int16",
                    layout_version=1,
                    manifest_sha256="0" * 64,
                    stored_bytes=int(sizes[n]) * 180_000,
                    source_bytes=int(sizes[n]) * 530_000,
                    created_at=T0,
                )
            ).inserted_primary_key[0]
            values = rng.integers(80, 600, size=(int(sizes[n]), 2))
            for i in range(int(sizes[n])):
                t = _instance_tags(base, i, n, values[i])
                rows.append(
                    {
                        "series_id": series_id,
                        "stack_id": stack_id,
                        "sop_instance_uid": t["SOPInstanceUID"],
                        "sop_class_uid": t["SOPClassUID"],
                        "instance_number": i + 1,
                        "source_sha256": f"{n:032x}{i:032x}",
                        "source_size": 530_000,
                        "n_frames": 1,
                        "first_frame": i,
                        "acquisition_datetime": f"20240101{t['AcquisitionTime']}",
                        "tags": t,
                        "ingested_at": T0,
                    }
                )
            if len(rows) >= 20_000:
                conn.execute(sa.insert(model.instance), rows)
                rows.clear()
        if rows:
            conn.execute(sa.insert(model.instance), rows)
    return db


def _snapshot_child(root: str, workers: int, out: Any) -> None:
    db = Database(f"sqlite:///{root}/registry.sqlite", create=False)
    started = time.perf_counter()
    write_snapshot(db, LakeFS(root), workers=workers)
    seconds = time.perf_counter() - started
    out.put((seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))


def timed_snapshot(root: Path, workers: int) -> tuple[float, int]:
    """Seconds and peak RSS (KiB) of write_snapshot, run in a fresh process.

    The RSS is the snapshot process's own (with ``workers > 1`` each worker adds its own).
    """
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=_snapshot_child, args=(str(root), workers, out))
    proc.start()
    result = out.get()
    proc.join()
    return result


# -- the queries, three ways ---------------------------------------------------------------
QUERIES: dict[str, dict[str, Any]] = {
    "Q1 CT + thickness range + XRayTubeCurrent range": {
        "filters": {
            "Modality": "CT",
            "SliceThickness": (0.5, 1.5),
            "XRayTubeCurrent": (300, 400),
        },
        "sql": "lower(s.modality) = 'ct' AND s.slice_thickness BETWEEN 0.5 AND 1.5",
        "tag_sql": '"XRayTubeCurrent" BETWEEN 300 AND 400',
        "tag_columns": ["XRayTubeCurrent"],
        "pandas": lambda s: (
            (s["modality"].str.lower() == "ct") & s["slice_thickness"].between(0.5, 1.5)
        ),
        "pandas_tag": lambda i: i["XRayTubeCurrent"].between(300, 400),
    },
    "Q2 SIEM* + kernel list + WindowCenter wildcard": {
        "filters": {
            "Manufacturer": "SIEM*",
            "ConvolutionKernel": ["Br40d", "B30f"],
            "WindowCenter": "40\\*",
        },
        "sql": "s.manufacturer ILIKE 'SIEM%' AND s.convolution_kernel IN ('Br40d', 'B30f')",
        "tag_sql": "\"WindowCenter\" ILIKE '40\\%'",
        "tag_columns": ["WindowCenter"],
        "pandas": lambda s: (
            s["manufacturer"].str.upper().str.startswith("SIEM")
            & s["convolution_kernel"].isin(["Br40d", "B30f"])
        ),
        "pandas_tag": lambda i: i["WindowCenter"].str.startswith("40\\", na=False),
    },
}


def run_duckdb(con: Any, index: Path, q: dict[str, Any]) -> pd.DataFrame:
    # DuckDB's own conversion to pandas (its .df()); it warns about a pandas-3 deprecation
    sql = (
        f"SELECT s.* FROM read_parquet('{index}/series.parquet') s WHERE {q['sql']} "
        f"AND s.series_id IN (SELECT series_id FROM read_parquet('{index}/instances.parquet') "
        f"WHERE {q['tag_sql']}) ORDER BY s.series_id"
    )
    return con.execute(sql).df()


def run_pandas(index: Path, q: dict[str, Any]) -> pd.DataFrame:
    series = pd.read_parquet(index / "series.parquet")
    inst = pd.read_parquet(index / "instances.parquet", columns=["series_id", *q["tag_columns"]])
    hit = inst.loc[q["pandas_tag"](inst), "series_id"].unique()
    return series[q["pandas"](series) & series["series_id"].isin(hit)]


def bench(fns: dict[str, Callable[[], Any]], rounds: int) -> dict[str, list[float]]:
    for fn in fns.values():  # warm-up: caches, page cache, imports
        fn()
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for r in range(rounds):
        for k in names[r % len(names) :] + names[: r % len(names)]:
            t = time.perf_counter()
            fns[k]()
            times[k].append(time.perf_counter() - t)
    return times


def machine() -> str:
    mem = "?"
    try:
        with open("/proc/meminfo") as fh:
            kib = int(fh.readline().split()[1])
        mem = f"{kib / 2**20:.1f} GiB"
    except OSError:
        pass
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if "model name" in line)
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()} cores ({cpu}), {mem} RAM, {platform.platform()}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--full", action="store_true", help="5M instances, 10,000 series")
    p.add_argument("--instances", type=int, default=None)
    p.add_argument("--series", type=int, default=None)
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--lake", type=Path, default=None, help="keep the lake here (reused)")
    p.add_argument("--workers", type=int, default=1, help="write_snapshot worker processes")
    p.add_argument(
        "--reuse-index", action="store_true", help="keep an existing index/ (no write_snapshot)"
    )
    args = p.parse_args(argv)
    n_inst = args.instances or (5_000_000 if args.full else 1_000_000)
    n_series = args.series or (10_000 if args.full else 2_000)

    import duckdb
    import pyarrow
    import pyarrow.parquet as pq

    warnings.filterwarnings("ignore", message="The inplace keyword")

    tmp = None
    if args.lake is None:
        tmp = tempfile.TemporaryDirectory(prefix="imagelake-bench-")
        root = Path(tmp.name)
    else:
        root = args.lake
        root.mkdir(parents=True, exist_ok=True)
    print("imagelake.index.query vs DuckDB vs pandas — SYNTHETIC registry (seeded)")
    print(
        f"versions: imagelake {imagelake.__version__}, pyarrow {pyarrow.__version__}, "
        f"pandas {pd.__version__}, duckdb {duckdb.__version__}, numpy {np.__version__}, "
        f"python {sys.version.split()[0]}"
    )
    print(f"machine: {machine()}")
    stamp = root / f"built-{n_series}-{n_inst}"
    if not stamp.exists():
        for old in root.glob("registry.sqlite*"):
            old.unlink()
        t = time.perf_counter()
        build_registry(root, n_series, n_inst).dispose()
        stamp.touch()
        print(
            f"registry: built {n_series:,} series / {n_inst:,} instances in "
            f"{time.perf_counter() - t:.1f} s (SQLite, {os.path.getsize(root / 'registry.sqlite') / 1e6:.0f} MB)"
        )
    index = root / "index"
    if args.reuse_index and (index / "_snapshot.json").exists():
        info = json.loads((index / "_snapshot.json").read_text())
        print(
            f"write_snapshot: skipped (--reuse-index); the index was written in "
            f"{info['seconds']:.1f} s at {info['written_at']}"
        )
    else:
        seconds, rss = timed_snapshot(root, args.workers)
        rows = pq.ParquetFile(index / "instances.parquet").metadata.num_rows
        print(
            f"write_snapshot(workers={args.workers}): {seconds:.1f} s ({rows / seconds:,.0f} "
            f"instances/s), peak RSS of the snapshot process {rss / 1024:.0f} MiB"
        )
    meta = pq.ParquetFile(index / "instances.parquet").metadata
    sizes = {f.name: f.stat().st_size / 1e6 for f in sorted(index.glob("*.parquet"))}
    print(
        f"index: {meta.num_rows:,} instances, instances.parquet {sizes['instances.parquet']:.1f} MB "
        f"({meta.num_columns} columns, {meta.num_row_groups} row groups), "
        f"series.parquet {sizes['series.parquet']:.2f} MB"
    )

    lake = LakeFS(root)
    uncached = IndexReader(lake, cache_bytes=0)
    con = duckdb.connect()
    print(f"\ntiming: {args.rounds} alternating rounds after 2 warm-ups each; seconds → ms")
    for title, q in QUERIES.items():
        ours = query(lake, q["filters"])
        duck = run_duckdb(con, index, q)
        pand = run_pandas(index, q)
        uids = sorted(ours["series_instance_uid"])
        assert uids == sorted(duck["series_instance_uid"]), "imagelake != DuckDB"
        assert uids == sorted(pand["series_instance_uid"]), "imagelake != pandas"
        assert uids, "the query matches nothing: not a useful benchmark"
        times = bench(
            {
                "imagelake": lambda q=q: query(lake, q["filters"]),
                "imagelake (no column cache)": lambda q=q: uncached.query(q["filters"]),
                "imagelake (fresh reader)": lambda q=q: IndexReader(lake).query(q["filters"]),
                "duckdb": lambda q=q: run_duckdb(con, index, q),
                "pandas": lambda q=q: run_pandas(index, q),
            },
            args.rounds,
        )
        print(f"\n{title}: {q['filters']} → {len(uids)} series (all three agree)")
        base = times["imagelake"]
        for name, ts in times.items():
            ratio = statistics.median(b / a for a, b in zip(base, ts, strict=True))
            print(
                f"  {name:28s} median {statistics.median(ts) * 1e3:8.2f} ms "
                f"(min {min(ts) * 1e3:7.2f}, max {max(ts) * 1e3:8.2f})  "
                f"× imagelake: {ratio:5.2f}"
            )
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
