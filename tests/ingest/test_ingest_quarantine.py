"""Bad inputs are quarantined byte-exact with their reason; the rest of the batch goes in.

Also: duplicates with other content, and inputs in zip files and behind a DICOMDIR.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.fileset import FileSet

from imagelake import synthetic
from imagelake.lake import Lake, open_lake

#: What the reason of each kind of bad input must say.
REASON_WORDS = {
    "truncated": r"truncated",
    "not_dicom": r"not a DICOM file",
    "missing_pixels": r"no pixel data",
    "short_pixels": r"pixel data is short",
    "empty": r"empty",
    "garbage_after_preamble": r"not a DICOM file.*garbage",
}


def read(path: Path) -> pydicom.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path)


@pytest.fixture(scope="module")
def bad_batch(tmp_path_factory: pytest.TempPathFactory) -> tuple[Lake, dict[str, Path], list[Path]]:
    """One batch: a SYNTHETIC CT series and one file of every kind of bad input."""
    base = tmp_path_factory.mktemp("bad")
    ct = list(synthetic.ct_series(6, 32, 32))
    ct_files = synthetic.write_series(ct, base / "in" / "ct")
    bad = synthetic.bad_inputs(base / "in" / "bad", reference=ct[0])
    lake = open_lake(base / "lake", create=True)
    lake.ingest(base / "in", workers=1)
    return lake, bad, ct_files


def test_every_kind_of_bad_input_is_known() -> None:
    assert set(synthetic.BAD_INPUT_KINDS) == set(REASON_WORDS) | {"inconsistent_size"}


@pytest.mark.parametrize("kind", sorted(REASON_WORDS))
def test_bad_input_is_quarantined_with_its_reason(bad_batch, kind: str) -> None:
    lake, bad, _ = bad_batch
    rows = lake.quarantined()
    mine = rows[rows.source == str(bad[kind])]
    assert len(mine) == 1, rows[["source", "reason"]].to_string()
    row = mine.iloc[0]
    assert row.error == synthetic.EXPECTED_ERRORS[kind].__name__
    assert re.search(REASON_WORDS[kind], row.reason), row.reason

    # the quarantine folder holds the bytes, byte-exact, and reason.json says why
    data = bad[kind].read_bytes()
    folder = Path(lake.fs.root) / row.path
    assert folder.name == hashlib.sha256(data).hexdigest()
    kept = [p for p in folder.iterdir() if p.name != "reason.json"]
    assert len(kept) == 1
    assert kept[0].read_bytes() == data
    reasons = json.loads((folder / "reason.json").read_text())
    assert {"source": str(bad[kind]), "reason": row.reason} in [
        {"source": r["source"], "reason": r["reason"]} for r in reasons
    ]


def test_the_rest_of_the_batch_is_ingested(bad_batch, lake_disk) -> None:
    lake, bad, ct_files = bad_batch
    assert lake_disk.count(lake, "quarantine") == len(REASON_WORDS)
    assert lake_disk.count(lake, "instance") == len(ct_files) + 1
    uid = str(read(ct_files[0]).SeriesInstanceUID)
    stacks = lake.stacks(uid)
    assert sorted(s[0] for s in stacks["shape"]) == [1, len(ct_files)]
    assert str(read(bad["inconsistent_size"]).SOPInstanceUID) in set(
        lake.open_series(uid, stack=1).sop_instance_uid.values
    )


def test_rerun_adds_no_quarantine_rows(bad_batch, lake_disk) -> None:
    lake, bad, ct_files = bad_batch
    before = lake.quarantined()
    report = lake.ingest(list(bad.values()) + ct_files, workers=1)
    assert report.quarantined == []
    assert report.already_quarantined == len(REASON_WORDS)
    assert report.instances_new == 0
    after = lake.quarantined()
    assert len(after) == len(before)
    assert lake_disk.count(lake, "quarantine") == len(REASON_WORDS)
    for folder in (Path(lake.fs.root) / "quarantine").iterdir():
        assert len(json.loads((folder / "reason.json").read_text())) == 1


def test_duplicate_uid_with_other_content_is_quarantined_and_the_stored_one_kept(
    tmp_path: Path,
) -> None:
    files = synthetic.write_series(synthetic.ct_series(4, 32, 32), tmp_path / "in")
    lake = open_lake(tmp_path / "lake", create=True)
    lake.ingest(tmp_path / "in", workers=1)

    changed = read(files[1])
    changed.PixelData = (changed.pixel_array + 1).astype(changed.pixel_array.dtype).tobytes()
    (tmp_path / "again").mkdir()
    changed.save_as(tmp_path / "again" / "changed.dcm", enforce_file_format=True)
    report = lake.ingest(tmp_path / "again", workers=1)
    assert report.instances_new == 0
    assert len(report.quarantined) == 1
    assert report.quarantined[0].error == "DuplicateInstanceError"
    assert str(changed.SOPInstanceUID) in report.quarantined[0].reason

    lake.export(tmp_path / "out", layout="flat")
    exported = read(tmp_path / "out" / f"{changed.SOPInstanceUID}.dcm")
    np.testing.assert_array_equal(exported.pixel_array, read(files[1]).pixel_array)
    assert len(lake.stacks()) == 1
    assert lake.stacks()["shape"].iloc[0][0] == 4


def test_zip_input_is_ingested(tmp_path: Path) -> None:
    files = synthetic.write_series(synthetic.ct_series(5, 32, 32), tmp_path / "files")
    archive = tmp_path / "upload.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in files:
            zf.write(path, f"study/series/{path.name}")
        zf.writestr("__MACOSX/._junk", b"resource fork")
    lake = open_lake(tmp_path / "lake", create=True)
    report = lake.ingest(archive, workers=1)
    assert report.files_seen == 5
    assert (report.instances_new, report.series_new) == (5, 1)
    assert report.quarantined == []
    assert lake.stacks()["shape"].iloc[0][0] == 5


def test_dicomdir_input_is_ingested(tmp_path: Path) -> None:
    series = list(synthetic.ct_series(4, 32, 32))
    fileset = FileSet()
    for ds in series:
        fileset.add(ds)
    fileset.write(tmp_path / "media")
    # a stray file next to the DICOMDIR that it does not reference must not be read
    (tmp_path / "media" / "notes.txt").write_text("not referenced by the DICOMDIR")
    lake = open_lake(tmp_path / "lake", create=True)
    report = lake.ingest(tmp_path / "media" / "DICOMDIR", workers=1)
    assert report.files_seen == 4
    assert (report.instances_new, report.series_new) == (4, 1)
    assert report.quarantined == []
    assert set(lake.open_series(str(series[0].SeriesInstanceUID)).sop_instance_uid.values) == {
        str(ds.SOPInstanceUID) for ds in series
    }
