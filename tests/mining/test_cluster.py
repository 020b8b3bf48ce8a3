"""Mining on a cluster of real processes (``dask scheduler`` + two ``dask worker``), the CLI
against it, and a worker killed in the middle of a run."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from mining_testkit import DaskCluster, MiningInputs

from imagelake.mining import client_for, scheduler_address


def _check_stats(frame: Any, inputs: MiningInputs, names: tuple[str, ...]) -> None:
    assert len(frame) == len(inputs.files)
    for uid in inputs.files:
        vol = inputs.volume(uid)
        row = frame[frame.series_instance_uid == uid].iloc[0]
        assert row.status == "computed", row.error
        if "mean" in names:
            assert row["mean"] == pytest.approx(vol.mean(), rel=1e-12)
        if "max" in names:
            assert row["max"] == vol.max()
        if "std" in names:
            assert row["std"] == pytest.approx(vol.std(), rel=1e-9)


def test_mine_on_a_real_cluster_and_from_the_cli(
    dask_cluster: DaskCluster,
    mining_lake: Any,
    mining_inputs: MiningInputs,
    imagelake_exe: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    report = mining_lake.mine("series-stats", scheduler=dask_cluster.address)
    _check_stats(report.frame, mining_inputs, ("mean", "max", "std"))
    assert len(report.workers) == 2, "both worker processes took tasks"

    # DASK_SCHEDULER_ADDRESS is how a site's cluster is found without an argument
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", dask_cluster.address)
    monkeypatch.delenv("IMAGELAKE_SCHEDULER", raising=False)
    import dask

    with dask.config.set({"scheduler-address": None}):
        assert scheduler_address() == dask_cluster.address
        with client_for() as client:
            assert client.scheduler.address == dask_cluster.address
            assert len(client.scheduler_info()["workers"]) == 2
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS")

    # the command line: the same run is skipped; another analysis is computed
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    lake_url = mining_lake.url

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [imagelake_exe, *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
        return proc

    again = run("mine", "--lake", lake_url, "--scheduler", dask_cluster.address, "--no-progress")
    assert "computed 0, skipped 4 (unchanged)" in again.stdout
    slow = run(
        "mine",
        "mining_analyses:slow_stats",
        "Modality=CT",
        "--lake",
        lake_url,
        "--scheduler",
        dask_cluster.address,
        "--param",
        "delay=0.01",
        "--no-progress",
        "--format",
        "json",
    )
    rows = json.loads(slow.stdout)
    assert len(rows) == 3 and {r["status"] for r in rows} == {"computed"}
    for r in rows:
        assert r["mean"] == pytest.approx(mining_inputs.volume(r["series_instance_uid"]).mean())
    listed = json.loads(
        run("measures", "--lake", lake_url, "--analysis", "slow-stats", "--format", "json").stdout
    )
    assert len(listed) == 3 * 2 and {r["tool"] for r in listed} == {"slow-stats"}
    assert all(r["params"] == {"delay": 0.01} for r in listed)
    top = max(rows, key=lambda r: r["mean"])
    found = run(
        "query",
        "--lake",
        lake_url,
        f"measure.slow-stats/mean={top['mean'] - 1e-6}:",
        "--format",
        "json",
    )
    assert [r["series_instance_uid"] for r in json.loads(found.stdout)] == [
        top["series_instance_uid"]
    ]


def test_a_killed_worker_does_not_stop_the_run(
    dask_cluster: DaskCluster, mining_lake: Any, mining_inputs: MiningInputs
) -> None:
    client = dask_cluster.client()
    killed: list[str] = []

    def kill_a_busy_worker(stage: str, done: int, total: int) -> None:
        if done != 1 or killed:
            return
        # a worker that is running a task right now: its task must be redone elsewhere
        processing = client.processing()
        info = client.scheduler_info()["workers"]
        busy = [info[a]["name"] for a, keys in processing.items() if keys and a in info]
        assert busy, f"no worker is busy after the first result: {processing}"
        dask_cluster.kill(str(busy[0]))
        killed.append(str(busy[0]))

    try:
        report = mining_lake.mine(
            "mining_analyses:slow_stats",
            params={"delay": 1.5},
            client=client,
            progress=kill_a_busy_worker,
        )
    finally:
        client.close()
    assert killed and dask_cluster.workers[killed[0]].poll() is not None
    assert dask_cluster.alive() == [n for n in dask_cluster.workers if n not in killed]
    assert (report.computed, report.failed) == (4, 0)
    _check_stats(report.frame, mining_inputs, ("mean", "max"))
    stored = mining_lake.measures("slow-stats", name="mean").set_index("series_instance_uid")
    for uid in mining_inputs.files:
        assert stored.loc[uid, "value"] == pytest.approx(mining_inputs.volume(uid).mean())
