"""The REAL DICOM test files of pydicom and pydicom-data, ingested once per session.

Many of those files are the same instance in several encodings (``MR_small.dcm``,
``MR_small_RLE.dcm``, ``MR_small_bigendian.dcm``... share one SOPInstanceUID). In one
batch the lake keeps the first and quarantines the others as duplicates, which is right,
but would leave most encodings untested. So the session runs:

* the **main** ingest: both folders, once, in this process (``workers=2``: the spawn pool);
* next to it, in a subprocess, **variant** lakes: the k-th other encoding of every
  instance goes into lake k, so every file is ingested and exported somewhere.
"""

from __future__ import annotations

import collections
import hashlib
import json
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
import pytest

from imagelake.ingest import IngestReport, discover
from imagelake.lake import Lake, open_lake

HERE = Path(__file__).parent


@dataclass
class RealLakes:
    """The lakes holding the real files, and where each file ended up."""

    main: Lake
    main_root: Path
    main_out: Path
    report: IngestReport
    files: list[Path]
    #: source path -> (error, reason) for inputs quarantined for anything but being a duplicate
    quarantined: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: source path -> the exported file regenerated from the lake
    exported: dict[str, Path] = field(default_factory=dict)
    #: source path -> root of the lake that holds it
    lake_root: dict[str, Path] = field(default_factory=dict)
    #: source path -> why it has no exported file although not quarantined (must stay empty)
    lost: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    variant_lakes: list[Path] = field(default_factory=list)

    def relname(self, path: str | Path) -> str:
        """``folder/name`` of a real file, for messages and ids."""
        p = Path(path)
        return f"{p.parent.name}/{p.name}"


def _uid_and_sha(path: str) -> tuple[str | None, str]:
    data = Path(path).read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        uid = ds.get("SOPInstanceUID")
    except Exception:
        uid = None
    return (str(uid) if uid else None), sha


def _quarantine_rows(lake: Lake) -> dict[str, tuple[str, str]]:
    return {r.source: (r.error, r.reason) for r in lake.quarantined().itertuples()}


@pytest.fixture(scope="session")
def real_lakes(
    real_dicom_dirs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> RealLakes:
    base = tmp_path_factory.mktemp("real")
    sources = list(discover(real_dicom_dirs))
    assert all(s.member is None for s in sources)
    files = [Path(s.path) for s in sources]

    # Group by SOPInstanceUID in discovery order; every member after the first (with other
    # bytes) goes into variant lake k. A member the main lake keeps after all (because an
    # earlier one failed) is ingested twice, which is harmless.
    groups: dict[str, list[tuple[str, str]]] = collections.defaultdict(list)
    for path in files:
        uid, sha = _uid_and_sha(str(path))
        if uid is not None:
            groups[uid].append((str(path), sha))
    partitions: dict[int, list[str]] = collections.defaultdict(list)
    for members in groups.values():
        seen: set[str] = set()
        k = 0
        for path, sha in members:
            if sha in seen:
                continue
            seen.add(sha)
            if k:
                partitions[k].append(path)
            k += 1
    spec = [
        {"lake": str(base / f"variant{k}"), "out": str(base / f"variant{k}-out"), "files": fs}
        for k, fs in sorted(partitions.items())
    ]
    spec_path = base / "variants.json"
    spec_path.write_text(json.dumps(spec))
    started = time.perf_counter()
    variants = subprocess.Popen(
        [sys.executable, str(HERE / "_ingest_partitions.py"), str(spec_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        root = base / "main"
        lake = open_lake(root, create=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            report = lake.ingest(list(real_dicom_dirs), workers=1)
            lake.export(base / "main-out", layout="flat")
        _, err = variants.communicate(timeout=900)
    finally:
        if variants.poll() is None:
            variants.kill()
            variants.wait()
    assert variants.returncode == 0, f"variant ingest failed:\n{err[-4000:]}"
    result = RealLakes(
        main=lake,
        main_root=root,
        main_out=base / "main-out",
        report=report,
        files=files,
        seconds=time.perf_counter() - started,
        variant_lakes=[Path(p["lake"]) for p in spec],
    )

    main_q = _quarantine_rows(lake)
    variant_q: dict[str, tuple[str, str]] = {}
    variant_out: dict[str, Path] = {}
    variant_root: dict[str, Path] = {}
    for part in spec:
        vq = _quarantine_rows(open_lake(part["lake"]))
        for path in part["files"]:
            if path in vq:
                variant_q[path] = vq[path]
            else:
                variant_out[path] = Path(part["out"])
                variant_root[path] = Path(part["lake"])
    uid_of = {path: uid for uid, members in groups.items() for path, _ in members}
    for path in map(str, files):
        where: tuple[str, str] | None = main_q.get(path)
        out_dir: Path | None = result.main_out
        lake_root: Path | None = root
        if where is not None and where[0] == "DuplicateInstanceError":
            if path not in variant_out and path not in variant_q:
                result.lost[path] = f"quarantined as a duplicate but in no variant lake: {where}"
                continue
            where, out_dir = variant_q.get(path), variant_out.get(path)
            lake_root = variant_root.get(path)
        if where is not None:
            result.quarantined[path] = where
            continue
        uid = uid_of.get(path)
        exported = out_dir / f"{uid}.dcm" if (uid and out_dir) else None
        if exported is None or not exported.exists():
            result.lost[path] = f"neither quarantined nor exported (SOPInstanceUID {uid})"
            continue
        result.exported[path] = exported
        assert lake_root is not None
        result.lake_root[path] = lake_root
    return result
