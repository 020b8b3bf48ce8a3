"""The SYNTHETIC demo dataset raises exactly the alerts its manifest expects, once each.

The ingest runs with two worker processes (the spawn pool), as it does by default on a
multi-core machine.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from imagelake import synthetic
from imagelake.lake import Lake, open_lake


@pytest.fixture(scope="module")
def demo_lake(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Lake, synthetic.DemoManifest, Path]:
    base = tmp_path_factory.mktemp("demo")
    manifest = synthetic.build_demo_dataset(base / "in", size="small")
    lake = open_lake(base / "lake", create=True)
    report = lake.ingest(base / "in", workers=2)
    assert report.quarantined == []
    return lake, manifest, base


def expected_alerts(manifest: synthetic.DemoManifest) -> dict[tuple[str, str, str], int]:
    """(kind, manufacturer, model) -> instances seen, from the manifest."""
    out: dict[tuple[str, str, str], int] = {}
    for s in manifest.series:
        if s.alert is not None:
            key = (s.alert, s.manufacturer, s.model)
            out[key] = out.get(key, 0) + s.n_instances
    return out


@pytest.mark.slow
def test_demo_ingests_every_series_of_the_manifest(demo_lake) -> None:
    lake, manifest, _ = demo_lake
    series = lake.series()
    assert sorted(series.series_instance_uid) == sorted(s.series_uid for s in manifest.series)
    stacks = lake.stacks()
    for s in manifest.series:
        mine = stacks[stacks.series_instance_uid == s.series_uid]
        assert len(mine) == s.n_stacks, s.key
        assert sum(shape[0] for shape in mine["shape"]) == s.n_instances, s.key


@pytest.mark.slow
def test_demo_raises_exactly_the_expected_alerts_once_each(demo_lake) -> None:
    lake, manifest, _ = demo_lake
    expected = expected_alerts(manifest)
    assert {k for k, _, _ in expected} == {"unknown_scanner", "unknown_software_version"}
    alerts = lake.alerts()
    found = {
        (a.kind, a.details["manufacturer"], a.details["model"]): a.count
        for a in alerts.itertuples()
    }
    assert len(alerts) == len(found)  # one alert per combination
    assert found == expected
    # the unknown software version is named in its alert
    version = next(
        s.software_version for s in manifest.series if s.alert == "unknown_software_version"
    )
    (row,) = [a for a in alerts.itertuples() if a.kind == "unknown_software_version"]
    assert version in row.details["software_versions"]


@pytest.mark.slow
def test_more_files_from_an_unknown_scanner_bump_the_count(demo_lake) -> None:
    lake, _, base = demo_lake
    before = lake.alerts().set_index("kind")
    unknown = synthetic.DEMO_SCANNERS["unknown_model"]
    files = synthetic.write_series(
        synthetic.ct_series(3, 32, 32, scanner=unknown, seed=42, series_number=9),
        base / "more",
    )
    report = lake.ingest(base / "more", workers=1)
    assert report.instances_new == len(files)
    assert report.alerts == []  # nothing new to report
    after = lake.alerts().set_index("kind")
    assert sorted(after.index) == sorted(before.index)
    assert after.loc["unknown_scanner", "id"] == before.loc["unknown_scanner", "id"]
    assert after.loc["unknown_scanner", "count"] == before.loc["unknown_scanner", "count"] + len(
        files
    )
    assert (
        after.loc["unknown_software_version", "count"]
        == before.loc["unknown_software_version", "count"]
    )
    assert after.loc["unknown_scanner", "last_seen"] >= before.loc["unknown_scanner", "last_seen"]
