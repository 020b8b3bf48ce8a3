"""A lake served through s3fs (a local moto server): workers read the stores over S3."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from mining_testkit import MiningInputs

from imagelake.lake import Lake


def test_mine_a_lake_on_s3(
    moto_s3: Any,
    mining_lake_template: Path,
    mining_inputs: MiningInputs,
    local_client: Any,
    tmp_path: Path,
) -> None:
    import s3fs

    opts = moto_s3.options()
    bucket = moto_s3.new_bucket()
    url = f"s3://{bucket}/site/lake"
    fs = s3fs.S3FileSystem(**opts)
    for path in mining_lake_template.rglob("*"):
        rel = path.relative_to(mining_lake_template).as_posix()
        if path.is_file() and not rel.startswith("registry.sqlite") and rel != ".lock":
            fs.put_file(str(path), f"{bucket}/site/lake/{rel}")
    # the registry is a database, not an object: a copy of the SQLite file stands in for
    # the site's PostgreSQL server
    registry = tmp_path / "registry.sqlite"
    shutil.copy2(mining_lake_template / "registry.sqlite", registry)

    lake = Lake(url, db_url=f"sqlite:///{registry}", storage_options=opts)
    assert not lake.fs.is_local
    selection = lake.mining_selection(Modality="CT")
    assert len(selection) == 3 and selection.lake_url.startswith("s3://")
    assert selection.storage_options["client_kwargs"]["endpoint_url"] == moto_s3.endpoint

    report = lake.mine("series-stats", client=local_client)
    assert (report.computed, report.failed) == (4, 0), report
    for uid in mining_inputs.files:
        vol = mining_inputs.volume(uid)
        row = report.frame[report.frame.series_instance_uid == uid].iloc[0]
        assert row["mean"] == pytest.approx(vol.mean(), rel=1e-12)
        assert row["max"] == vol.max()

    # the index on S3 has the measures: queryable, and a re-run skips everything
    assert fs.exists(f"{bucket}/site/lake/index/measures.parquet")
    found = lake.query({"measure.n_voxels": (float(10 * 40 * 40), float(10 * 40 * 40))})
    assert len(found) == 1
    assert lake.mine("series-stats", client=local_client).skipped == 4
    assert [e.action for e in lake.audit.entries(action="mine")] == ["mine", "mine"]
