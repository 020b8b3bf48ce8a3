"""Lake.mine on a LocalCluster: results against numpy on the source files, provenance,
skipping unchanged inputs, recomputing changed ones, queries on measures, job and audit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mining_analyses
import numpy as np
import pytest
import sqlalchemy as sa
from mining_testkit import MiningInputs, source_volume

from imagelake import model, synthetic
from imagelake.errors import PluginNotFoundError, QueryError
from imagelake.lake import open_lake
from imagelake.mining import resolve_analysis


def _count(lake: Any, table: sa.Table) -> int:
    with lake.db.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar())


def _row(frame: Any, uid: str) -> Any:
    rows = frame[frame.series_instance_uid == uid]
    assert len(rows) == 1, rows
    return rows.iloc[0]


def test_series_stats_match_pydicom_and_carry_provenance(
    mining_lake: Any, mining_inputs: MiningInputs, local_client: Any
) -> None:
    report = mining_lake.mine("series-stats", client=local_client)
    assert (report.computed, report.skipped, report.failed) == (4, 0, 0)
    for uid in mining_inputs.files:
        vol = mining_inputs.volume(uid)
        row = _row(report.frame, uid)
        assert row.status == "computed"
        assert row["mean"] == pytest.approx(vol.mean(), rel=1e-12)
        assert row["std"] == pytest.approx(vol.std(), rel=1e-9)
        assert row["min"] == vol.min() and row["max"] == vol.max()
        assert row["n_voxels"] == vol.size

    # the registry rows carry their provenance
    m = mining_lake.measures("series-stats")
    assert len(m) == 4 * 5
    stacks = mining_lake.stacks().set_index("series_instance_uid")
    for rec in m.itertuples():
        assert rec.tool == "series-stats" and rec.tool_version.startswith("1+")
        assert rec.user == mining_lake.settings.user and rec.created_at is not None
        assert rec.inputs["function"] == "imagelake.mining.builtin:series_stats"
        assert rec.inputs["store_path"] == stacks.loc[rec.series_instance_uid, "store_path"]
        assert rec.inputs["job_id"] == report.job_id
        assert len(rec.provenance_key) == 64 and len(rec.inputs["code_hash"]) == 64
        assert rec.params == {}
    ct_mean = m[(m.name == "mean")].set_index("series_instance_uid")["value"]
    unit = m[(m.name == "mean")].set_index("series_instance_uid")["unit"]
    for uid, modality in mining_inputs.modality.items():
        if modality == "CT":
            assert unit[uid] == "HU"
        else:
            assert not isinstance(unit[uid], str)  # MR: no physical unit, stored as NULL

    # queryable like tags: measure.<name> with the index's value forms
    highest = float(ct_mean.max())
    found = mining_lake.query({"measure.mean": (highest - 1e-6, None)})
    assert list(found.series_instance_uid) == [ct_mean.idxmax()]
    both = mining_lake.query({"Modality": "CT", "measure.series-stats/max": "0:"})
    expected = {u for u, mod in mining_inputs.modality.items() if mod == "CT"}
    assert set(both.series_instance_uid) <= expected and len(both) >= 1
    with pytest.raises(QueryError, match="no measure 'nope'"):
        mining_lake.query({"measure.nope": 1})

    # the job row and the audit entry
    jobs = mining_lake.jobs()
    job = jobs[jobs.id == report.job_id].iloc[0]
    assert job.kind == "mine" and job.status == "done"
    assert job.params["analysis"] == "series-stats" and job.summary["computed"] == 4
    entries = list(mining_lake.audit.entries(action="mine"))
    assert len(entries) == 1
    assert list(entries[0].objects) == [f"job:{report.job_id}"]
    assert entries[0].details["computed"] == 4
    mining_lake.verify_audit()


def test_rerun_skips_unchanged_and_recomputes_a_changed_version_or_code(
    mining_lake: Any, local_client: Any
) -> None:
    first = mining_lake.mine(mining_analyses.versioned("1"), client=local_client)
    assert (first.computed, first.skipped) == (4, 0)
    rows = _count(mining_lake, model.measure)
    assert rows == 4 * 2

    again = mining_lake.mine(mining_analyses.versioned("1"), client=local_client)
    assert (again.computed, again.skipped, again.rows_written) == (0, 4, 0)
    assert "skipped 4 (unchanged)" in str(again)
    assert _count(mining_lake, model.measure) == rows
    assert set(again.frame.status) == {"skipped"}
    pd_first = first.frame.set_index("series_instance_uid")["mean"]
    pd_again = again.frame.set_index("series_instance_uid")["mean"]
    assert pd_again.to_dict() == pytest.approx(pd_first.to_dict())

    bumped = mining_lake.mine(mining_analyses.versioned("2"), client=local_client)
    assert (bumped.computed, bumped.skipped, bumped.rows_superseded) == (4, 0, 8)
    assert _count(mining_lake, model.measure) == rows  # superseded, not duplicated
    assert set(mining_lake.measures("versioned-stats").tool_version.str[:2]) == {"2+"}

    recoded = mining_lake.mine(mining_analyses.recoded(), client=local_client)
    assert recoded.computed == 4, "a changed function body is a changed analysis"
    assert _count(mining_lake, model.measure) == rows

    params = mining_lake.mine(
        mining_analyses.slow_stats,
        params={"delay": 0.01},
        client=local_client,
    )
    assert params.computed == 4
    assert (
        mining_lake.mine(
            mining_analyses.slow_stats, params={"delay": 0.01}, client=local_client
        ).skipped
        == 4
    )
    assert (
        mining_lake.mine(
            mining_analyses.slow_stats, params={"delay": 0.0}, client=local_client
        ).computed
        == 4
    ), "other parameters are another provenance"
    forced = mining_lake.mine(mining_analyses.versioned("2"), force=True, client=local_client)
    assert forced.computed == 4


def test_a_changed_series_is_recomputed_alone(tmp_path: Path, local_client: Any) -> None:
    ct = synthetic.write_series(synthetic.ct_series(6, 24, 24, seed=7), tmp_path / "ct")
    mr = synthetic.write_series(synthetic.mr_series(4, 24, 24, seed=8), tmp_path / "mr")
    lake = open_lake(tmp_path / "lake", create=True)
    lake.ingest([*ct[:5], *mr], workers=1)
    first = lake.mine("series-stats", client=local_client)
    assert first.computed == 2
    lake.ingest([ct[5]], workers=1)  # the CT series gains a slice: a new stack content
    second = lake.mine("series-stats", client=local_client)
    assert (second.computed, second.skipped) == (1, 1)
    changed = second.frame[second.frame.status == "computed"].iloc[0]
    assert changed.modality == "CT"
    vol = source_volume([Path(p) for p in ct])
    assert changed["mean"] == pytest.approx(vol.mean(), rel=1e-12)
    assert changed["n_voxels"] == vol.size
    m = lake.measures("series-stats", name="n_voxels")
    assert sorted(m.value) == sorted([float(vol.size), 4 * 24 * 24.0])  # one row per stack


def test_builtin_ct_analyses_match_numpy(
    mining_lake: Any, mining_inputs: MiningInputs, local_client: Any
) -> None:
    from imagelake.mining.builtin import HU_CLASSES

    hist = mining_lake.mine("hu-histogram", client=local_client)
    body = mining_lake.mine("body-mask", params={"threshold": -400}, client=local_client)
    rad = mining_lake.mine("radiomics", {"Modality": "CT"}, client=local_client)
    assert hist.computed == body.computed == rad.computed == 3  # CT only
    payloads = mining_lake.measures("hu-histogram", name="hu_histogram")
    payloads = payloads.set_index("series_instance_uid")["payload"]
    for uid, modality in mining_inputs.modality.items():
        if modality != "CT":
            continue
        vol = mining_inputs.volume(uid)
        first = __import__("pydicom").dcmread(mining_inputs.files[uid][0])
        voxel_ml = (
            float(first.PixelSpacing[0])
            * float(first.PixelSpacing[1])
            * float(first.SliceThickness)
            / 1000
        )
        # HU histogram: numpy's histogram of the source voxels, same edges
        edges = np.arange(-1024.0, 3072.0 + 8, 16.0)
        counts, _ = np.histogram(vol, bins=edges)
        assert payloads[uid]["counts"] == counts.tolist()
        assert payloads[uid]["edges"] == edges.tolist()
        h = _row(hist.frame, uid)
        for name, (lo, hi) in HU_CLASSES.items():
            inside = np.ones(vol.shape, bool)
            if lo is not None:
                inside &= vol >= lo
            if hi is not None:
                inside &= vol <= hi
            assert h[f"{name}_fraction"] == pytest.approx(inside.mean(), abs=1e-12)
        # body mask
        b = _row(body.frame, uid)
        mask = vol > -400
        assert b.body_voxels == mask.sum()
        assert b.body_volume_ml == pytest.approx(mask.sum() * voxel_ml, rel=1e-9)
        assert b.body_mean_hu == pytest.approx(vol[mask].mean(), rel=1e-9)
        # radiomics on the HU range [-500, 3000]
        r = _row(rad.frame, uid)
        x = vol[(vol >= -500) & (vol <= 3000)]
        mu, sd = x.mean(), x.std()
        assert r["voxels"] == x.size
        assert r["mean"] == pytest.approx(mu, rel=1e-9)
        assert r["std"] == pytest.approx(sd, rel=1e-9)
        assert r["skewness"] == pytest.approx(((x - mu) ** 3).mean() / sd**3, rel=1e-6)
        assert r["kurtosis"] == pytest.approx(((x - mu) ** 4).mean() / sd**4 - 3, rel=1e-6)
        assert r["energy"] == pytest.approx((x**2).sum(), rel=1e-9)
        binned, _ = np.histogram(x, bins=np.arange(-500.0, 3000.0 + 25, 25.0))
        p = binned[binned > 0] / x.size
        assert r["entropy"] == pytest.approx(-(p * np.log2(p)).sum(), rel=1e-9)
        assert r["uniformity"] == pytest.approx((p**2).sum(), rel=1e-9)
        for q in (10, 50, 90):  # integer HU: the 1-unit histogram gives the exact value
            assert abs(r[f"p{q}"] - np.percentile(x, q, method="inverted_cdf")) <= 1.0
        assert r["min"] == x.min() and r["max"] == x.max()


def test_an_analysis_error_is_a_failed_row_not_a_failed_run(
    mining_lake: Any, local_client: Any
) -> None:
    report = mining_lake.mine("mining_analyses:fails_on_mr", client=local_client)
    assert (report.computed, report.failed) == (3, 1)
    failed = report.frame[report.frame.status == "failed"].iloc[0]
    assert failed.modality == "MR" and "no MR please" in failed.error
    assert "failed: " in str(report)
    # nothing was stored for the failure, so the next run tries it again
    assert mining_lake.mine("mining_analyses:fails_on_mr", client=local_client).failed == 1


def test_analyses_by_name_module_function_and_errors() -> None:
    assert resolve_analysis("series-stats").name == "series-stats"
    plain = resolve_analysis("mining_analyses:plain_sum")
    assert plain.name == "mining_analyses:plain_sum" and plain.version == "0"
    assert plain.takes == "stack"
    with pytest.raises(PluginNotFoundError, match=r"registered: .*series-stats"):
        resolve_analysis("no-such-analysis")
    with pytest.raises(PluginNotFoundError, match="cannot load"):
        resolve_analysis("no_such_module_xyz:f")
    with pytest.raises(ValueError, match="no parameter"):
        resolve_analysis("body-mask").bind({"thresold": 1})
    a1, a2 = mining_analyses.versioned("1"), mining_analyses.recoded()
    assert a1.code_hash != a2.code_hash and a1.version == a2.version


def test_registry_names_and_the_cli_list() -> None:
    from click.testing import CliRunner

    from imagelake.cli import cli
    from imagelake.mining import analyses, get_analysis

    assert {"series-stats", "hu-histogram", "body-mask", "radiomics", "raw-stats"} <= set(
        analyses.names()
    )
    # what an entry point of the group imagelake.analyses adds: a name -> "module:function"
    analyses.register("test-plain-sum", "mining_analyses:plain_sum")
    try:
        found = get_analysis("test-plain-sum")
        assert found.name == "test-plain-sum" and found.function == "mining_analyses:plain_sum"
        assert resolve_analysis("test-plain-sum").code_hash == found.code_hash
    finally:
        analyses.unregister("test-plain-sum")
    out = CliRunner().invoke(cli, ["mine", "--list", "--format", "csv"])
    assert out.exit_code == 0, out.output
    assert "radiomics" in out.output and "raw-stats" in out.output
