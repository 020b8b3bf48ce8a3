"""The main job on the embedded default (``make demo``): build, ingest, show, compute.

1. write a synthetic demo input folder (labelled SYNTHETIC) plus real files from
   pydicom's test data;
2. ingest it into a local lake (SQLite registry): DICOM, raw scanner files (ISMRMRD,
   Siemens TWIX, DICOM-CT-PD projections, an opaque vendor file), links proposed;
3. reconstruct the raw files a reference method exists for (ISMRMRD k-space, CT
   projections), ingest the DICOM series that gives and link it to its raw parent;
4. reprocess the legacy raw file no reader decodes (refscan revision 1) in the reference
   emulator's VM (libvirt + QEMU), ingest its DICOM and link it (method ``emulator``);
5. show the series, raw files, links, review queue and alerts;
6. mine per-stack statistics with Dask (:meth:`Lake.mine`, built-in ``series-stats``) on a
   LocalCluster (or the scheduler named by ``IMAGELAKE_SCHEDULER``), with a progress bar;
   the measures are stored with provenance, and a re-run skips unchanged stacks.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from imagelake.config import get_settings
from imagelake.errors import ConfigError, ImagelakeError
from imagelake.ingest import IngestReport
from imagelake.lake import Lake, open_lake
from imagelake.synthetic import DemoManifest, build_demo_dataset
from imagelake.synthetic.demo_raw import build_demo_raw

__all__ = ["build_demo_inputs", "catalog_statistics", "run_demo"]

Echo = Callable[[str], None]


def build_demo_inputs(data_dir: Path, *, size: str = "full", seed: int = 0) -> DemoManifest | None:
    """Write the demo inputs once (an existing complete folder is reused)."""
    done = data_dir / ".complete"
    mine = data_dir / ".imagelake-demo"
    if done.exists():
        return None
    if data_dir.exists() and any(data_dir.iterdir()):
        if not mine.exists():
            raise ConfigError(
                f"{data_dir} exists and is not an imagelake demo folder; give --data a new "
                "or empty folder (the demo writes its inputs there)"
            )
        shutil.rmtree(data_dir)  # a partial folder from an interrupted run
    data_dir.mkdir(parents=True, exist_ok=True)
    mine.write_text("written by imagelake demo; safe to delete\n")
    manifest = build_demo_dataset(data_dir / "synthetic", size=size, seed=seed)  # type: ignore[arg-type]
    build_demo_raw(data_dir / "raw", manifest)
    real = data_dir / "pydicom-test-files"
    real.mkdir(parents=True)
    import pydicom

    tests = Path(pydicom.__file__).parent / "data" / "test_files"
    for name in ("CT_small.dcm", "MR_small.dcm", "dicomdirtests"):
        src = tests / name
        if src.is_dir():
            shutil.copytree(src, real / name)
        elif src.exists():
            shutil.copy2(src, real / name)
    done.write_text("ok\n")
    return manifest


def catalog_statistics(
    lake: Lake,
    *,
    scheduler: str | None = None,
    echo: Echo = print,
    progress: Any = None,
) -> pd.DataFrame:
    """Per-stack statistics of every CT and MR stack, mined on Dask and stored as measures.

    :meth:`Lake.mine` with the built-in ``series-stats`` analysis: each stack is one task
    that reads its chunks lazily on a worker (a LocalCluster, or the scheduler named by
    ``scheduler`` / ``IMAGELAKE_SCHEDULER``); the measures go into the registry and
    ``index/measures.parquet`` with provenance, so a second run skips unchanged stacks.
    """
    echo(
        "mining per-stack statistics of the CT and MR series on "
        f"{scheduler or 'a LocalCluster'} (lake.mine('series-stats'))"
    )
    report = lake.mine(
        "series-stats", {"Modality": ["CT", "MR"]}, scheduler=scheduler, progress=progress
    )
    echo(str(report))
    frame = report.frame
    columns = [
        c
        for c in (
            "series_instance_uid",
            "stack_number",
            "modality",
            "status",
            "mean",
            "std",
            "min",
            "max",
            "n_voxels",
        )
        if c in frame.columns
    ]
    return frame[columns]


def reconstruct_demo_raw(lake: Lake, *, echo: Echo = print) -> list[Any]:
    """Reconstruct every raw file a reference method exists for (idempotent)."""
    from imagelake.recon import reconstructors_for

    done = []
    raw = lake.raw_files()
    for row in raw.itertuples():
        if not reconstructors_for(str(row.format)) or row.decode_error:
            continue
        try:
            report = lake.reconstruct(str(row.sha256))
        except ImagelakeError as exc:  # one raw file that cannot be reconstructed is reported
            echo(f"  {row.format} {str(row.sha256)[:16]}: not reconstructed: {exc}")
            continue
        echo(f"  {report}")
        done.append(report)
    return done


def reprocess_demo_raw(lake: Lake, *, echo: Echo = print) -> list[Any]:
    """Reconstruct each legacy raw file in its emulator VM (idempotent).

    Builds the reference emulator's image on first use (root: Debian keeps the kernel
    readable by root only) and needs libvirtd (``scripts/libvirtd.sh start``, run by
    ``make demo`` as root); without them the step says why and the demo goes on.
    """
    done: list[Any] = []
    plan = lake.viability(alert=False)
    todo = plan[plan["path"] == "emulator"]
    if todo.empty:
        echo("  no raw file needs an emulator")
        return done
    links = lake.links()
    emulated = set(links.loc[links["method"] == "emulator", "raw_sha256"]) if len(links) else set()
    try:
        from imagelake.emulators import EmulatorManager, ImageStore, build_image

        registry = lake.emulator_registry()
        images = ImageStore(lake.settings.emulator_images)
        for ref in sorted(set(todo["via"])):
            build_image(registry.get(ref), images)
        manager = EmulatorManager(
            lake.settings.emulator_uri, images=images, work_dir=lake.settings.emulator_work_dir
        )
    except (ImagelakeError, OSError) as exc:
        echo(f"  skipped: {exc}")
        return done
    with manager:
        kind, why = manager.probe_accel()
        echo(f"  VMs run as domain type {kind!r} ({why})")
        for row in todo.itertuples():
            if row.sha256 in emulated:
                echo(f"  {row.sha256[:12]} already reprocessed by an emulator")
                continue
            try:
                report = lake.reprocess(str(row.sha256), manager=manager)
            except ImagelakeError as exc:
                echo(f"  {row.sha256[:12]}: {exc}")
                continue
            echo(f"  {report}")
            done.append(report)
    return done


def show_lake(lake: Lake, *, echo: Echo = print) -> None:
    """Print the series, the raw files, the links, the review queue and the alerts."""
    series = lake.series()
    cols = [
        c
        for c in (
            "modality",
            "manufacturer",
            "model",
            "series_description",
            "n_instances",
            "slice_thickness",
            "convolution_kernel",
        )
        if c in series.columns
    ]
    with pd.option_context(
        "display.width", 160, "display.max_columns", 12, "display.max_colwidth", 28
    ):
        echo(series[cols].to_string(index=False))
        raw = lake.raw_files()
        echo(f"\nraw files ({len(raw)}):")
        if not raw.empty:
            table = raw[["sha256", "format", "manufacturer", "model", "arrays"]].copy()
            table["sha256"] = table["sha256"].str[:12]
            table["descendants"] = raw["series_instance_uid"].map(len)
            echo(table.to_string(index=False))
        plan = lake.viability(alert=False)
        echo("\npath to pixels of each raw file (imagelake viability):")
        if not plan.empty:
            plan = plan.assign(sha256=plan["sha256"].str[:12])
            echo(plan[["sha256", "format", "software_version", "path", "via", "detail"]]
                 .to_string(index=False))  # fmt: skip
        links = lake.links()
        echo(f"\nlinks ({len(links)}):")
        if not links.empty:
            table = links[
                [
                    "link_id",
                    "raw_sha256",
                    "format",
                    "modality",
                    "series_description",
                    "method",
                    "confidence",
                    "status",
                ]
            ].copy()
            table["raw_sha256"] = table["raw_sha256"].str[:12]
            table["confidence"] = table["confidence"].round(3)
            echo(table.to_string(index=False))
        queue = lake.review_queue()
        echo(f"\nreview queue ({len(queue)}): imagelake link review --evidence")
        ct = lake.query_with_raw(Modality="CT", raw={"format": "dicom-ct-pd"})
        echo(
            f"\nCT series with a projection-data parent ({len(ct)}): "
            "lake.query_with_raw(Modality='CT', raw={'format': 'dicom-ct-pd'})"
        )
        for row in ct.itertuples():
            echo(f"  {row.series_description}  <-  raw {', '.join(s[:12] for s in row.raw_sha256)}")
        thin = lake.query_raw(descendants={"SliceThickness": (0.5, 1.5)})
        echo(
            f"raw files with a descendant of 0.5-1.5 mm slices ({len(thin)}): "
            "lake.query_raw(descendants={'SliceThickness': (0.5, 1.5)})"
        )
        for row in thin.itertuples():
            echo(f"  {row.sha256[:12]} {row.format} {row.model}")
        alerts = lake.alerts()
        echo(f"\nalerts ({len(alerts)} open):")
        if not alerts.empty:
            echo(alerts[["kind", "message", "count"]].to_string(index=False))


def run_demo(
    lake_root: str | os.PathLike[str] = "./lake",
    *,
    data_dir: str | os.PathLike[str] = "./demo-data",
    size: str = "full",
    compute: bool = True,
    echo: Echo = print,
    progress: Any = None,
) -> tuple[Lake, IngestReport]:
    """Build the demo lake and show what is in it (the ``make demo`` job)."""
    data = Path(data_dir)
    echo(f"1/6 demo inputs in {data} (synthetic series are labelled SYNTHETIC)")
    build_demo_inputs(data, size=size)
    lake = open_lake(lake_root, create=True)
    echo(f"2/6 ingesting DICOM and raw files into {lake.url} (links proposed automatically)")
    report = lake.ingest([data], progress=progress)
    echo(str(report))
    echo("3/6 reference reconstructions: raw -> DICOM -> ingested, linked with provenance")
    reconstruct_demo_raw(lake, echo=echo)
    echo("4/6 legacy raw files no reader decodes: reprocessed in their emulator VM (libvirt)")
    reprocess_demo_raw(lake, echo=echo)
    echo("5/6 what is in the lake")
    show_lake(lake, echo=echo)
    if compute:
        echo("\n6/6 Dask mining: per-stack statistics, stored as measures")
        stats = catalog_statistics(
            lake, scheduler=get_settings().scheduler, echo=echo, progress=progress
        )
        with pd.option_context("display.width", 160):
            echo(stats.to_string(index=False))
    return lake, report
