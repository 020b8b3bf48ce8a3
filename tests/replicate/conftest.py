"""A local moto S3 server, s3fs options for a fresh bucket, and a small real lake."""

from __future__ import annotations

import importlib
import logging
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from imagelake import synthetic
from imagelake.replicate import MasterKey


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _need(module: str, package: str) -> Any:
    """Import a test dependency; skip without it, but fail under CI=true."""
    try:
        return importlib.import_module(module)
    except ImportError:
        reason = f"{package} is not installed (pip install {package!r})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true: a missing dependency fails the test)", pytrace=False)
        pytest.skip(reason)


class MotoS3:
    """A moto S3 server in a thread on a free port."""

    def __init__(self) -> None:
        moto_server = _need("moto.server", "moto[server]")
        _need("s3fs", "s3fs")
        _need("boto3", "boto3")
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
        self.port = free_port()
        self.server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=self.port)
        self.server.start()
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def options(self) -> dict[str, Any]:
        return {
            "key": "testing",
            "secret": "testing",
            "client_kwargs": {"endpoint_url": self.endpoint, "region_name": "us-east-1"},
            "use_listings_cache": False,
        }

    def new_bucket(self) -> str:
        import boto3

        name = f"b-{uuid.uuid4().hex[:12]}"
        boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        ).create_bucket(Bucket=name)
        return name

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    server = MotoS3()
    yield server
    server.stop()


@pytest.fixture
def s3_url(moto_s3: MotoS3) -> str:
    """URL of an empty folder in a fresh bucket of the session's moto server."""
    return f"s3://{moto_s3.new_bucket()}/offsite/site-a"


@pytest.fixture
def s3_opts(moto_s3: MotoS3) -> dict[str, Any]:
    return moto_s3.options()


@pytest.fixture(scope="session")
def source_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real lake (two synthetic series ingested); tests must not change it."""
    from imagelake.lake import open_lake

    base = tmp_path_factory.mktemp("src")
    synthetic.write_series(synthetic.ct_series(8, 32, 32), base / "in" / "ct")
    synthetic.write_series(synthetic.mr_series(6, 32, 32), base / "in" / "mr")
    lake = open_lake(base / "lake", create=True)
    lake.ingest(base / "in")
    return base / "lake"


@pytest.fixture
def key() -> MasterKey:
    return MasterKey.generate("site-a-2026")
