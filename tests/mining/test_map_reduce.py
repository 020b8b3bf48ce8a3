"""map_series / reduce_series over a selection, ROI and patch sampling, and raw arrays."""

from __future__ import annotations

import operator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mining_testkit import MiningInputs

from imagelake import synthetic
from imagelake.lake import open_lake
from imagelake.mining import (
    grid_patches,
    map_series,
    open_target,
    reduce_series,
    roi,
    sample_patches,
    select_stacks,
)

EDGES = np.arange(-1100.0, 3000.0, 50.0)


def _histogram(ds: Any) -> Any:
    import dask.array as da

    counts, _ = da.histogram(ds.image.data, bins=EDGES)
    return counts


def test_map_series_with_a_plain_function(
    mining_lake: Any, mining_inputs: MiningInputs, local_client: Any
) -> None:
    sel = select_stacks(mining_lake.fs, mining_lake.db, {"Modality": "CT"})
    assert len(sel) == 3 and {t.modality for t in sel} == {"CT"}
    df = map_series(
        lambda ds, k=1.0: {"p": (ds.image > 0).mean() * k, "n": ds.image.shape[0]},
        sel,
        params={"k": 2.0},
        client=local_client,
    )
    assert list(df.columns[:5]) == [
        "series_instance_uid",
        "stack_number",
        "raw_sha256",
        "modality",
        "error",
    ]
    for row in df.itertuples():
        vol = mining_inputs.volume(row.series_instance_uid)
        assert row.error is None
        assert row.p == pytest.approx(2.0 * (vol > 0).mean())
        assert row.n == vol.shape[0]
    # nothing was written to the lake
    assert mining_lake.measures().empty


def test_map_series_lazy_dask_dataframe(
    mining_lake: Any, mining_inputs: MiningInputs, local_client: Any
) -> None:
    sel = select_stacks(mining_lake.fs, mining_lake.db, {"Modality": "MR"})
    ddf = map_series("series-stats", sel, lazy=True)
    assert list(ddf.columns)[:5] == [
        "series_instance_uid",
        "stack_number",
        "raw_sha256",
        "modality",
        "name",
    ]
    long = ddf.compute()  # on the current (local) client
    (uid,) = [u for u, m in mining_inputs.modality.items() if m == "MR"]
    vol = mining_inputs.volume(uid)
    means = long[long.name == "mean"]
    assert len(means) == 1 and means.value.iloc[0] == pytest.approx(vol.mean())


def test_reduce_series_pools_histograms(
    mining_lake: Any, mining_inputs: MiningInputs, local_client: Any
) -> None:
    sel = select_stacks(mining_lake.fs, mining_lake.db, {"Modality": "CT"})
    pooled = reduce_series(_histogram, sel, operator.add, client=local_client, split_every=2)
    expected = sum(
        np.histogram(mining_inputs.volume(u), bins=EDGES)[0]
        for u, m in mining_inputs.modality.items()
        if m == "CT"
    )
    assert np.array_equal(pooled, expected)
    empty = sel.subset([])
    assert reduce_series(_histogram, empty, operator.add, client=local_client) is None


def test_roi_and_patches_read_the_right_voxels(
    mining_lake: Any, mining_inputs: MiningInputs
) -> None:
    sel = select_stacks(mining_lake.fs, mining_lake.db, {"Modality": "CT"}, stacks="main")
    target = sel.targets[0]
    ds = open_target(sel.lake_url, sel.storage_options, target, chunks={})
    vol = mining_inputs.volume(str(target.series_instance_uid))
    box = roi(ds, center=(3, 10, 12), size=(4, 8, 8))
    assert np.array_equal(box.values, vol[1:5, 6:14, 8:16])
    edge = roi(ds, center=(0, 0, 1000), size=(4, 8, 8))  # moved inside at the edges
    assert np.array_equal(edge.values, vol[0:4, 0:8, -8:])
    patches = sample_patches(ds, size=(2, 6, 6), n=5, seed=3)
    assert patches.shape == (5, 2, 6, 6) and hasattr(patches, "dask")
    again = sample_patches(ds, size=(2, 6, 6), n=5, seed=3).compute()
    got = patches.compute()
    assert np.array_equal(got, again)
    # every patch is a block of the source volume somewhere
    from imagelake.mining import patch_origins

    origins = patch_origins(vol.shape, (2, 6, 6), 5, seed=3)
    for patch, (z, y, x) in zip(got, origins, strict=True):
        assert np.array_equal(patch, vol[z : z + 2, y : y + 6, x : x + 6])
    # a mask restricts the patch centres
    mask = vol > 0
    inside = sample_patches(ds, size=(1, 3, 3), n=20, seed=1, mask=mask).compute()
    assert (inside[:, 0, 1, 1] > 0).all()
    cover = list(grid_patches(vol.shape, (4, 16, 16)))
    assert sum(np.prod([s.stop - s.start for s in c]) for c in cover) == vol.size


def test_raw_arrays_are_mined_the_same_way(tmp_path: Path, local_client: Any) -> None:
    from imagelake.synthetic.sinogram import FanBeamGeometry, fan_beam_sinogram, write_ctpd

    geometry = FanBeamGeometry(n_views=24, n_channels=48, channel_spacing_rad=0.015, n_rows=2)
    sino = fan_beam_sinogram(geometry, seed=2)
    write_ctpd(tmp_path / "in" / "pd", sino, geometry)
    synthetic.write_series(synthetic.ct_series(4, 16, 16), tmp_path / "in" / "ct")
    lake = open_lake(tmp_path / "lake", create=True)
    lake.ingest(tmp_path / "in", workers=1, link=False)
    report = lake.mine("raw-stats", format="dicom-ct-pd", client=local_client)
    assert (report.computed, report.failed) == (1, 0), report
    row = report.frame.iloc[0]
    assert row.raw_sha256 == lake.raw_files().sha256.iloc[0]
    # the stored projections are the line integrals quantised by the DICOM-CT-PD writer
    assert row.sinogram_samples == sino.size
    assert row.sinogram_abs_mean == pytest.approx(np.abs(sino).mean(), rel=1e-3)
    assert row.sinogram_abs_max == pytest.approx(np.abs(sino).max(), rel=1e-3)
    assert row.sinogram_energy == pytest.approx((sino.astype(float) ** 2).sum(), rel=1e-3)
    m = lake.measures("raw-stats")
    assert set(m.raw_sha256) == {row.raw_sha256} and m.series_id.isna().all()
    assert lake.mine("raw-stats", client=local_client).skipped == 1
