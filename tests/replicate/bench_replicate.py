"""Measure push / pull throughput of a ~200 MB lake against a local moto S3 server.

Not a test (pytest does not collect it). Run::

    .venv/bin/python tests/replicate/bench_replicate.py [--mb 200] [--workdir DIR]

moto runs in its own process (``moto_server``), so the client's figures are not slowed by
sharing the interpreter with the server.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_lake(root: Path, mb: int) -> Path:
    from imagelake import synthetic
    from imagelake.lake import open_lake

    src = root / "in"
    synthetic.write_series(synthetic.ct_series(120, 512, 512), src / "ct")
    lake = open_lake(root / "lake", create=True)
    lake.ingest(src)
    size = sum(f.stat().st_size for f in (root / "lake").rglob("*") if f.is_file())
    # top up with incompressible raw-like files (quarantine holds raw inputs byte-exact)
    n = 0
    while size < mb * 1_000_000:
        chunk = min(20_000_000, mb * 1_000_000 - size)
        (root / "lake" / "quarantine").mkdir(exist_ok=True)
        (root / "lake" / "quarantine" / f"filler-{n}.bin").write_bytes(os.urandom(chunk))
        size += chunk
        n += 1
    return root / "lake"


def main() -> None:
    from imagelake.replicate import MasterKey, lake_files, pull, push

    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-replicate-"))
    lake = (
        work / "lake" if (work / "lake" / "imagelake.json").exists() else build_lake(work, args.mb)
    )
    files = lake_files(lake)
    total = sum((lake / f).stat().st_size for f in files)

    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        endpoint = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="x",
            aws_secret_access_key="x",
        ).create_bucket(Bucket="bench")
        opts = {"key": "x", "secret": "x", "client_kwargs": {"endpoint_url": endpoint}}
        key = MasterKey.generate("bench")
        url = "s3://bench/lake"
        print(f"lake: {len(files)} files, {total / 1e6:.1f} MB")
        r = push(lake, url, key=key, storage_options=opts)
        print(f"push (verify=ciphertext): {r.seconds:.1f} s, {total / 1e6 / r.seconds:.1f} MB/s")
        r2 = push(lake, url, key=key, storage_options=opts)
        print(f"re-push (all skipped, hashes checked): {r2.seconds:.1f} s")
        out = work / "pulled"
        shutil.rmtree(out, ignore_errors=True)
        p = pull(url, out, key=key, storage_options=opts)
        print(f"pull: {p.seconds:.1f} s, {p.mb_per_s:.1f} MB/s")
        same = all(
            hashlib.sha256((lake / f).read_bytes()).digest()
            == hashlib.sha256((out / f).read_bytes()).digest()
            for f in files
            if f != "registry.sqlite"
        )
        print(f"byte-identical: {same}")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
