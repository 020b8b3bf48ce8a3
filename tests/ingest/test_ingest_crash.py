"""``kill -9`` of ``imagelake ingest`` at several points, then a re-run, equals one clean run.

The input is SYNTHETIC: three CT series of 64 slices of 256 x 256 (about 25 MB), so one
ingest takes a few seconds and the kills land mid-flight.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from imagelake import synthetic
from imagelake.lake import Lake, open_lake

N_SERIES, N_SLICES, SIZE = 3, 64, 256


@pytest.fixture(scope="module")
def crash_input(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("crash-input")
    for k in range(N_SERIES):
        synthetic.write_series(
            synthetic.ct_series(N_SLICES, SIZE, SIZE, seed=k, series_number=k + 1),
            base / f"series{k}",
        )
    return base


def ingest_cmd(exe: str, data: Path, lake: Path) -> list[str]:
    return [exe, "ingest", str(data), "--lake", str(lake), "--workers", "1", "--no-progress"]


def run_to_completion(exe: str, data: Path, lake: Path) -> None:
    proc = subprocess.run(ingest_cmd(exe, data, lake), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


def kill_when(
    exe: str, data: Path, lake: Path, ready: Callable[[], bool], *, after: float = 0.0
) -> None:
    """Start an ingest, wait until ``ready()`` (then ``after`` seconds more), SIGKILL it."""
    proc = subprocess.Popen(
        ingest_cmd(exe, data, lake), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 300
        while not ready():
            assert proc.poll() is None, "the ingest ended before the kill point"
            assert time.monotonic() < deadline, "the kill point never came"
            time.sleep(0.005)
        time.sleep(after)
        assert proc.poll() is None, "the ingest ended before the kill point"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
        if proc.stderr is not None:
            proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


def stores_on_disk(lake: Path) -> list[Path]:
    return list(lake.glob("stores/dicom/*/*.zarr"))


def manifests(lake: Lake) -> dict[str, dict[str, str]]:
    """Store path -> {object: sha256} of every stack the registry references."""
    root = Path(lake.fs.root)
    out = {}
    for path in lake.stacks().store_path:
        objects = json.loads((root / path / "manifest.json").read_text())["objects"]
        out[path] = {name: o["sha256"] for name, o in objects.items()}
    return out


def check_consistent(lake_root: Path) -> None:
    """What must hold even right after a kill: every referenced store is complete."""
    if not (lake_root / "imagelake.json").exists():
        return
    lake = open_lake(lake_root)
    assert lake.verify() == []


@pytest.mark.slow
def test_sigkill_at_several_points_then_rerun_equals_a_clean_run(
    tmp_path: Path, crash_input: Path, imagelake_exe: str, lake_disk
) -> None:
    reference_root = tmp_path / "reference"
    run_to_completion(imagelake_exe, crash_input, reference_root)
    reference = open_lake(reference_root)

    root = tmp_path / "lake"

    def stack_tmps() -> set[str]:
        return {n for n in lake_disk.tmp_leftovers(root) if n.startswith("stack-")}

    # 1. very early: as soon as the lake exists, before any stack is written
    kill_when(imagelake_exe, crash_input, root, lambda: (root / "imagelake.json").exists())
    check_consistent(root)
    # 2. while the first stack is being written under .tmp/
    kill_when(imagelake_exe, crash_input, root, lambda: bool(stack_tmps()))
    check_consistent(root)
    # 3. right after a store is published, before (or while) the registry commits it
    published = len(stores_on_disk(root))
    kill_when(imagelake_exe, crash_input, root, lambda: len(stores_on_disk(root)) > published)
    check_consistent(root)
    # 4. a second after a run (which swept what run 3 left) starts writing a new stack
    left = stack_tmps()  # (what run 3 left half-written, if anything)
    kill_when(imagelake_exe, crash_input, root, lambda: bool(stack_tmps() - left), after=1.0)
    check_consistent(root)

    run_to_completion(imagelake_exe, crash_input, root)
    lake = open_lake(root)
    for table in ("instance", "series", "stack"):
        assert lake_disk.count(lake, table) == lake_disk.count(reference, table), table
    assert lake_disk.count(lake, "instance") == N_SERIES * N_SLICES
    assert lake_disk.count(lake, "quarantine") == 0
    assert lake_disk.store_dirs(root) == lake_disk.referenced(lake)
    assert lake_disk.tmp_leftovers(root) == []
    assert lake.verify() == []
    # nothing doubled: the same stacks, the same content, object for object
    assert manifests(lake) == manifests(reference)
    assert sorted(lake.series().series_instance_uid) == sorted(
        reference.series().series_instance_uid
    )
    assert lake.verify_audit().ok
    # the killed runs' jobs are marked interrupted by the next run, not left "running"
    # (kill 1 comes before its job row exists; kills 2-4 each leave one)
    jobs = lake.jobs()
    assert list(jobs.status).count("running") == 0
    assert list(jobs.status).count("interrupted") == 3
    assert jobs.status.iloc[-1] == "done"
