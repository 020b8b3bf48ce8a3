"""Ingest is idempotent, and a series that grows is rebuilt into one stack with no orphans."""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom

from imagelake.lake import open_lake


def read(path: Path) -> pydicom.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path)


def test_ingesting_the_same_folder_twice_adds_nothing(
    tmp_path: Path, write_ct: Callable[..., list[Path]], lake_disk
) -> None:
    write_ct("in/a", n_slices=6, seed=1)
    write_ct("in/b", n_slices=5, seed=2, series_number=7)
    lake = open_lake(tmp_path / "lake", create=True)
    first = lake.ingest(tmp_path / "in", workers=1)
    assert (first.instances_new, first.series_new, first.stacks_written) == (11, 2, 2)
    counts = {t: lake_disk.count(lake, t) for t in ("instance", "series", "stack")}
    stores = lake_disk.store_dirs(Path(lake.fs.root))
    manifests = {p: (Path(lake.fs.root) / p / "manifest.json").read_bytes() for p in stores}

    again = lake.ingest(tmp_path / "in", workers=1)
    assert again.files_seen == 11
    assert again.instances_new == 0
    assert again.instances_skipped == 11
    assert (again.series_new, again.series_updated, again.stacks_written) == (0, 0, 0)
    assert again.quarantined == []
    assert {t: lake_disk.count(lake, t) for t in ("instance", "series", "stack")} == counts
    assert counts == {"instance": 11, "series": 2, "stack": 2}
    assert lake_disk.store_dirs(Path(lake.fs.root)) == stores
    assert {p: (Path(lake.fs.root) / p / "manifest.json").read_bytes() for p in stores} == manifests
    assert len(lake.series()) == 2
    assert lake.verify() == []


def test_a_series_ingested_in_two_halves_becomes_one_stack(
    tmp_path: Path, write_ct: Callable[..., list[Path]], lake_disk
) -> None:
    files = write_ct("all", n_slices=10)
    halves = [files[::2], files[1::2]]  # interleaved, so the second half lands in between
    for k, half in enumerate(halves):
        for path in half:
            (tmp_path / f"half{k}").mkdir(exist_ok=True)
            shutil.copy(path, tmp_path / f"half{k}" / path.name)
    lake = open_lake(tmp_path / "lake", create=True)
    root = Path(lake.fs.root)

    lake.ingest(tmp_path / "half0", workers=1)
    (old_store,) = lake_disk.referenced(lake)
    assert lake.stacks()["shape"].iloc[0][0] == 5

    report = lake.ingest(tmp_path / "half1", workers=1)
    assert (report.instances_new, report.series_new, report.series_updated) == (5, 0, 1)
    assert len(lake.series()) == 1
    stacks = lake.stacks()
    assert len(stacks) == 1
    assert stacks["shape"].iloc[0][0] == 10
    (new_store,) = lake_disk.referenced(lake)
    assert new_store != old_store
    assert not (root / old_store).exists()
    assert lake_disk.store_dirs(root) == {new_store}
    assert lake_disk.tmp_leftovers(root) == []
    assert lake_disk.count(lake, "instance") == 10
    assert lake.verify() == []

    # the rebuilt stack holds all ten slices in z order, pixel for pixel
    ds = lake.open_series(stacks.series_instance_uid.iloc[0])
    originals = sorted((read(p) for p in files), key=lambda d: float(d.ImagePositionPatient[2]))
    assert list(ds.sop_instance_uid.values) == [str(d.SOPInstanceUID) for d in originals]
    assert np.all(np.diff(ds.z.values) > 0)
    raw = lake.open_stack(new_store, chunks={}).image
    slope, intercept = float(originals[0].RescaleSlope), float(originals[0].RescaleIntercept)
    np.testing.assert_allclose(
        raw.values, np.stack([d.pixel_array for d in originals]) * slope + intercept
    )

    # and the first half, rebuilt from the lake's own copy, still exports header-equal
    out = lake.export(tmp_path / "out", layout="flat")
    assert out.instances == 10
    for path in halves[0]:
        original = read(path)
        exported = read(tmp_path / "out" / f"{original.SOPInstanceUID}.dcm")
        for elem in original:
            if elem.tag.element != 0 and elem.tag != 0x7FE00010:
                assert exported[elem.tag].value == elem.value, elem.keyword
        np.testing.assert_array_equal(exported.pixel_array, original.pixel_array)
