"""Fixtures of the mining tests: a small real lake, a Dask cluster of real processes, moto S3.

* ``mining_inputs`` / ``mining_lake``: four SYNTHETIC series (three CT, one MR) written as
  DICOM files and ingested; the tests compare what mining gives with numpy computed on
  those source files read back by pydicom;
* ``dask_cluster``: ``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1, free
  ports, stopped by pid at teardown (a worker may be killed by the test);
* ``local_client``: a LocalCluster client for the tests that need only a cluster;
* ``moto_s3``: the moto S3 server of tests/replicate (its ``MotoS3`` class, loaded from there).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mining_testkit import (
    DaskCluster,
    MiningInputs,
    replicate_moto,
    start_cluster,
    write_inputs,
)


@pytest.fixture(scope="session")
def mining_inputs(tmp_path_factory: pytest.TempPathFactory) -> MiningInputs:
    return write_inputs(tmp_path_factory.mktemp("mining-in"))


@pytest.fixture(scope="session")
def mining_lake_template(
    mining_inputs: MiningInputs, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The inputs ingested once; tests copy it (``mining_lake``) before writing measures."""
    from imagelake.lake import open_lake

    root = tmp_path_factory.mktemp("mining-template") / "lake"
    lake = open_lake(root, create=True)
    lake.ingest(mining_inputs.root, workers=1)
    return root


@pytest.fixture
def mining_lake(mining_lake_template: Path, tmp_path: Path) -> Any:
    """A fresh copy of the ingested lake, opened."""
    from imagelake.lake import open_lake

    root = tmp_path / "lake"
    shutil.copytree(mining_lake_template, root, ignore=shutil.ignore_patterns(".lock"))
    return open_lake(root)


@pytest.fixture(scope="module")
def local_client() -> Iterator[Any]:
    """A LocalCluster of one worker process (this module's tests share it)."""
    from imagelake.mining import get_client

    client = get_client(n_workers=1)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def dask_cluster(tmp_path: Path) -> Iterator[DaskCluster]:
    """``dask scheduler`` + two ``dask worker`` processes, stopped at teardown."""
    cluster = start_cluster(tmp_path / "dask-logs")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def moto_s3() -> Iterator[Any]:
    server = replicate_moto()()
    try:
        yield server
    finally:
        server.stop()
