"""The main job on the embedded default (``make demo``): build, ingest, show, compute.

1. write a synthetic demo input folder (labelled SYNTHETIC) plus real files from
   pydicom's test data;
2. ingest it into a local lake (SQLite registry);
3. show the series table and the alerts;
4. run one Dask computation over the lake's Intake catalog on a LocalCluster (or the
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
from imagelake.ingest import IngestReport
from imagelake.lake import Lake, open_lake
from imagelake.synthetic import DemoManifest, build_demo_dataset

__all__ = ["build_demo_inputs", "catalog_statistics", "run_demo"]

Echo = Callable[[str], None]


def build_demo_inputs(data_dir: Path, *, size: str = "full", seed: int = 0) -> DemoManifest | None:
    """Write the demo inputs once (an existing complete folder is reused)."""
    done = data_dir / ".complete"
    if done.exists():
        return None
    if data_dir.exists():
        shutil.rmtree(data_dir)  # a partial folder from an interrupted run
    manifest = build_demo_dataset(data_dir / "synthetic", size=size, seed=seed)  # type: ignore[arg-type]
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
            if meta.get("modality") not in ("CT", "MR"):
                continue
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
    echo(f"1/4 demo inputs in {data} (synthetic series are labelled SYNTHETIC)")
    build_demo_inputs(data, size=size)
    lake = open_lake(lake_root, create=True)
    echo(f"2/4 ingesting into {lake.url}")
    report = lake.ingest([data], progress=progress)
    echo(str(report))
    echo("3/4 what is in the lake")
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
        alerts = lake.alerts()
        echo(f"\nalerts ({len(alerts)} open):")
        if not alerts.empty:
            echo(alerts[["kind", "message", "count"]].to_string(index=False))
    if compute:
        echo("\n4/4 a Dask computation over the catalog")
        stats = catalog_statistics(lake, scheduler=get_settings().scheduler, echo=echo)
        with pd.option_context("display.width", 160):
            echo(stats.to_string(index=False))
    return lake, report
