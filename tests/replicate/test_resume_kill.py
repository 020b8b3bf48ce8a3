"""push → kill -9 mid-way → push again: completes, every object verified, nothing doubled."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from replicate_testkit import remote_blobs, tree_sha

from imagelake.replicate import MasterKey, lake_files, pull, push
from imagelake.replicate._remote import Remote

KILL_AFTER = 22


def test_push_resumes_after_kill_9(
    source_lake: Path, s3_url: str, s3_opts: dict[str, Any], key: MasterKey, tmp_path: Path
) -> None:
    files = lake_files(source_lake)
    assert len(files) > KILL_AFTER + 10
    args = {
        "src": str(source_lake),
        "url": s3_url,
        "opts": s3_opts,
        "key_id": key.key_id,
        "key_hex": key.material.hex(),
        "delay": 0.1,
    }
    worker = Path(__file__).with_name("replicate_push_worker.py")
    child = subprocess.Popen(
        [sys.executable, str(worker), json.dumps(args)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    done = 0
    for line in child.stdout:
        if line.startswith("DONE"):
            done = int(line.split()[1])
            if done >= KILL_AFTER:
                os.kill(child.pid, signal.SIGKILL)
                break
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL and done == KILL_AFTER

    # the kill left a journal and objects, but no manifest
    remote = Remote(s3_url, s3_opts)
    remote.open(key)
    assert not remote.exists("manifest.ilk")
    journaled = remote.load_journal(key)
    assert KILL_AFTER - 4 <= len(journaled) <= KILL_AFTER  # journal batches of 4

    seen: list[str] = []
    report = push(
        source_lake,
        s3_url,
        key=key,
        storage_options=s3_opts,
        verify="decrypt",
        progress=lambda p, d, t: seen.append(p),
    )
    assert report.skipped == len(journaled)
    assert report.uploaded == len(files) - len(journaled)
    assert report.objects == report.verified == len(files)
    assert sorted(seen) == sorted(files)  # every file once

    blobs = remote_blobs(s3_url, s3_opts)
    objects = [n for n in blobs if n.startswith("objects/")]
    assert len(objects) == len(files)  # nothing doubled
    assert not any(n.startswith("journal/") for n in blobs)
    manifest = remote.load_manifest(key)
    assert manifest is not None and sorted(manifest) == files
    assert {e.name for e in manifest.values()} == set(objects)

    pull(s3_url, tmp_path / "restored", key=key, storage_options=s3_opts)
    src, out = tree_sha(source_lake), tree_sha(tmp_path / "restored")
    assert {k: v for k, v in out.items() if k != "registry.sqlite"} == {
        k: v for k, v in src.items() if k != "registry.sqlite"
    }
    assert out["registry.sqlite"] == report.registry_sha256
