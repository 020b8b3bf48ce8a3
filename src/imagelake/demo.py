"""The main job on the embedded default (``make demo``): build, ingest, show, compute.

1. write a synthetic demo input folder (labelled SYNTHETIC) plus real files from
   pydicom's test data;
2. ingest it into a local lake (SQLite registry): DICOM, raw scanner files (ISMRMRD,
   Siemens TWIX, DICOM-CT-PD projections, an opaque vendor file), links proposed;
3. reconstruct the raw files a reference method exists for (ISMRMRD k-space, CT
   projections), ingest the DICOM series that gives and link it to its raw parent;
4. show the series, raw files, links, review queue and alerts;
5. run one Dask computation over the lake's Intake catalog on a LocalCluster (or the
   scheduler named by ``IMAGELAKE_SCHEDULER``), with a progress bar.
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
    lake: Lake, *, scheduler: str | None = None, echo: Echo = print
) -> pd.DataFrame:
    """Per-stack statistics of every CT and MR stack, read through the Intake catalog.

    The graph reads chunks lazily on the Dask workers; nothing is loaded whole.
    """
    import intake
    from distributed import Client, LocalCluster, progress

    cat = intake.from_yaml_file(lake.fs.url("catalog.yaml"))
    cluster = None
    if scheduler:
        client = Client(scheduler)
    else:
        cluster = LocalCluster(
            n_workers=min(2, os.cpu_count() or 1),
            threads_per_worker=1,
            dashboard_address=None,
            processes=True,
        )
        client = Client(cluster)
    try:
        rows: list[dict[str, Any]] = []
        lazy = []
        for key in cat.entries:
            entry = cat.entries[key]
            meta = getattr(entry, "metadata", {}) or {}
            if meta.get("modality") not in ("CT", "MR") or "series_instance_uid" not in meta:
                continue  # image stacks only (raw entries carry k-space, sinograms...)
            image = cat[key].read().image
            lazy.append((image.mean().data, image.std().data, image.min().data, image.max().data))
            rows.append(
                {"entry": key, "modality": meta.get("modality"), "shape": tuple(image.shape)}
            )
        echo(
            f"computing statistics of {len(rows)} stacks on {client.dashboard_link or scheduler or 'a LocalCluster'}"
        )
        futures = client.compute([x for group in lazy for x in group])
        progress(futures)
        values = client.gather(futures)
        for k, row in enumerate(rows):
            row["mean"], row["std"], row["min"], row["max"] = (
                float(v) for v in values[4 * k : 4 * k + 4]
            )
        return pd.DataFrame(rows)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


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
    echo(f"1/5 demo inputs in {data} (synthetic series are labelled SYNTHETIC)")
    build_demo_inputs(data, size=size)
    lake = open_lake(lake_root, create=True)
    echo(f"2/5 ingesting DICOM and raw files into {lake.url} (links proposed automatically)")
    report = lake.ingest([data], progress=progress)
    echo(str(report))
    echo("3/5 reference reconstructions: raw -> DICOM -> ingested, linked with provenance")
    reconstruct_demo_raw(lake, echo=echo)
    echo("4/5 what is in the lake")
    show_lake(lake, echo=echo)
    if compute:
        echo("\n5/5 a Dask computation over the catalog")
        stats = catalog_statistics(lake, scheduler=get_settings().scheduler, echo=echo)
        with pd.option_context("display.width", 160):
            echo(stats.to_string(index=False))
    return lake, report
