"""Helpers of the mining tests (a uniquely named module: ``conftest`` names are ambiguous
across test folders); the fixtures in conftest.py use them."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest

from imagelake import synthetic

HERE = Path(__file__).resolve().parent


def _fail_or_skip(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: a missing dependency fails the test)", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def source_volume(files: list[Path]) -> np.ndarray:
    """The series in physical units from its DICOM files (pydicom), slices by ascending z
    along the slice normal (the stack's order)."""
    datasets = [pydicom.dcmread(f) for f in files]
    ori = np.asarray(datasets[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(ori[:3], ori[3:])
    datasets.sort(key=lambda d: float(np.dot(normal, np.asarray(d.ImagePositionPatient, float))))
    return np.stack(
        [
            d.pixel_array.astype(np.float64) * float(getattr(d, "RescaleSlope", 1) or 1)
            + float(getattr(d, "RescaleIntercept", 0) or 0)
            for d in datasets
        ]
    )


@dataclass
class MiningInputs:
    """Source files per series UID, and the folder holding them."""

    root: Path
    files: dict[str, list[Path]] = field(default_factory=dict)
    modality: dict[str, str] = field(default_factory=dict)

    def volume(self, uid: str) -> np.ndarray:
        return source_volume(self.files[uid])


def write_inputs(root: Path) -> MiningInputs:
    """Three CT series (different seeds, kernels, sizes) and one MR series, SYNTHETIC."""
    out = MiningInputs(root)
    specs: list[tuple[str, Any]] = [
        ("ct1", synthetic.ct_series(10, 40, 40, seed=1, kernel="Br40", series_number=1)),
        ("ct2", synthetic.ct_series(8, 32, 32, seed=2, kernel="Br64", series_number=2)),
        ("ct3", synthetic.ct_series(6, 48, 48, seed=3, dtype="int16", series_number=3)),
        ("mr1", synthetic.mr_series(6, 32, 32, seed=4)),
    ]
    for name, datasets in specs:
        paths = synthetic.write_series(datasets, root / name)
        uid = str(pydicom.dcmread(paths[0], stop_before_pixels=True).SeriesInstanceUID)
        out.files[uid] = [Path(p) for p in paths]
        out.modality[uid] = "MR" if name.startswith("mr") else "CT"
    return out


# -- a cluster of real processes ------------------------------------------------------------


def _dask_exe() -> str:
    exe = shutil.which("dask", path=str(Path(sys.executable).parent))
    if exe is None:
        _fail_or_skip("the `dask` command of distributed is not installed in this environment")
    assert exe is not None
    return exe


@dataclass
class DaskCluster:
    """A scheduler and workers as separate processes; ``workers`` by name."""

    address: str
    scheduler: subprocess.Popen[bytes]
    workers: dict[str, subprocess.Popen[bytes]]
    log_dir: Path

    def client(self) -> Any:
        from distributed import Client

        client = Client(self.address, timeout=30)
        client.wait_for_workers(len(self.alive()), timeout=60)
        return client

    def alive(self) -> list[str]:
        return [n for n, p in self.workers.items() if p.poll() is None]

    def kill(self, name: str) -> None:
        """SIGKILL one worker process (no clean shutdown: as if its machine died)."""
        proc = self.workers[name]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def stop(self) -> None:
        """Workers first, then the scheduler (a worker whose scheduler went away first
        spends its shutdown trying to reconnect)."""
        for group in (list(self.workers.values()), [self.scheduler]):
            for proc in group:
                if proc.poll() is None:
                    proc.terminate()
            for proc in group:
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)


def start_cluster(log_dir: Path, n_workers: int = 2) -> DaskCluster:
    exe = _dask_exe()
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {
        **os.environ,
        # the workers import the tests' own analyses (mining_analyses.py) by name
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]).rstrip(
            os.pathsep
        ),
    }
    log_dir.mkdir(parents=True, exist_ok=True)
    scheduler = subprocess.Popen(
        [exe, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        stdout=subprocess.DEVNULL,
        stderr=open(log_dir / "scheduler.log", "wb"),  # noqa: SIM115 - closed with the process
        env=env,
    )
    workers: dict[str, subprocess.Popen[bytes]] = {}
    cluster = DaskCluster(address, scheduler, workers, log_dir)
    try:
        deadline = time.monotonic() + 60
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if scheduler.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "the dask scheduler did not start: " + (log_dir / "scheduler.log").read_text()
                )
            time.sleep(0.2)
        for k in range(n_workers):
            name = f"w{k + 1}"
            workers[name] = subprocess.Popen(
                [
                    exe,
                    "worker",
                    address,
                    "--name",
                    name,
                    "--nthreads",
                    "1",
                    "--no-nanny",  # the pid is the worker itself, so killing it kills it
                    "--host",
                    "127.0.0.1",
                    "--no-dashboard",
                    "--memory-limit",
                    "1GiB",
                ],
                stdout=subprocess.DEVNULL,
                stderr=open(log_dir / f"{name}.log", "wb"),  # noqa: SIM115
                env=env,
            )
        client = cluster.client()
        client.wait_for_workers(n_workers, timeout=60)
        client.close()
    except BaseException:
        cluster.stop()
        raise
    return cluster


# -- S3 ---------------------------------------------------------------------------------------


def replicate_moto() -> Any:
    """The ``MotoS3`` class of tests/replicate/conftest.py (one moto setup for the suite)."""
    path = HERE.parent / "replicate" / "conftest.py"
    spec = importlib.util.spec_from_file_location("_replicate_conftest_for_mining", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.MotoS3
