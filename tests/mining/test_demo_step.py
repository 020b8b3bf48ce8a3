"""The demo's Dask step (``imagelake demo``, step 5) on a small lake: a statistics table,
measures stored, and a re-run that skips every unchanged stack."""

from __future__ import annotations

from typing import Any

import pytest
from mining_testkit import MiningInputs

from imagelake.demo import catalog_statistics


def test_demo_statistics_are_mined_stored_and_skipped_on_rerun(
    mining_lake: Any, mining_inputs: MiningInputs
) -> None:
    lines: list[str] = []
    stats = catalog_statistics(mining_lake, echo=lines.append)  # a LocalCluster of its own
    assert list(stats.columns[:4]) == ["series_instance_uid", "stack_number", "modality", "status"]
    assert len(stats) == 4 and set(stats.status) == {"computed"}
    for row in stats.itertuples():
        vol = mining_inputs.volume(row.series_instance_uid)
        assert row.mean == pytest.approx(vol.mean(), rel=1e-12)
        assert (row.min, row.max) == (vol.min(), vol.max())
    assert len(mining_lake.measures("series-stats")) == 4 * 5

    again = catalog_statistics(mining_lake, echo=lines.append)
    assert set(again.status) == {"skipped"}
    assert any("skipped 4 (unchanged)" in line for line in lines)
    assert again.set_index("series_instance_uid")["mean"].to_dict() == pytest.approx(
        stats.set_index("series_instance_uid")["mean"].to_dict()
    )
