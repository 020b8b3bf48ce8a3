"""The demo input folder: what is written matches the manifest and the knowledge base."""

from __future__ import annotations

import io
import json
import re
import time
import zipfile
from collections import defaultdict
from pathlib import Path

import pydicom
import pytest
import yaml
from pydicom.fileset import FileSet
from pydicom.uid import MediaStorageDirectoryStorage

from imagelake.errors import ConfigError
from imagelake.synthetic import DemoManifest, build_demo_dataset

SCANNERS_YAML = Path(__file__).resolve().parents[2] / "catalog" / "scanners.yaml"


def _fold(text: str) -> str:
    """Matching rule of catalog/scanners.yaml: case, punctuation and repeated spaces folded."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[DemoManifest, float]:
    start = time.perf_counter()
    manifest = build_demo_dataset(tmp_path_factory.mktemp("demo") / "input", size="small")
    return manifest, time.perf_counter() - start


@pytest.fixture(scope="module")
def manifest(demo: tuple[DemoManifest, float]) -> DemoManifest:
    return demo[0]


def _headers(root: Path) -> list[pydicom.Dataset]:
    """Every DICOM instance reachable under ``root``: files, zip members, DICOMDIR records."""
    found: list[pydicom.Dataset] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as zf:
                for name in zf.namelist():
                    found.append(
                        pydicom.dcmread(io.BytesIO(zf.read(name)), stop_before_pixels=True)
                    )
            continue
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if ds.file_meta.MediaStorageSOPClassUID == MediaStorageDirectoryStorage:
            for instance in FileSet(ds):
                found.append(instance.load())
        else:
            found.append(ds)
    return found


def test_small_demo_builds_quickly(demo: tuple[DemoManifest, float]) -> None:
    assert demo[1] < 10


def test_manifest_counts(manifest: DemoManifest) -> None:
    assert manifest.subjects == ("SYN-DEMO-001", "SYN-DEMO-002", "SYN-DEMO-003")
    assert (manifest.n_studies, manifest.n_series, manifest.n_stacks) == (5, 7, 8)
    assert manifest.n_instances == 24 + 3 + 8 + 12 + 10 + 8 + 8 + 6
    assert [s.key for s in manifest.series] == ["a", "b", "c", "h", "d", "e", "i"]
    assert manifest["a"].n_stacks == 2 and manifest["b"].study_uid == manifest["a"].study_uid
    assert manifest["h"].study_uid == manifest["c"].study_uid
    assert {s.container for s in manifest.series} == {"folder", "zip", "dicomdir"}
    with pytest.raises(KeyError, match="keys are"):
        manifest["z"]


def test_everything_reachable_matches_the_manifest(manifest: DemoManifest) -> None:
    headers = _headers(manifest.root)
    by_uid = {ds.SOPInstanceUID: ds for ds in headers}  # DICOMDIR files are also plain files
    assert len(by_uid) == manifest.n_instances
    series: dict[str, set[str]] = defaultdict(set)
    stacks: set[tuple[str, tuple[float, ...], int, int]] = set()
    for ds in by_uid.values():
        assert ds.ImageComments == "SYNTHETIC imagelake test data"
        assert str(ds.PatientName).startswith("SYNTHETIC^DEMO^")
        series[ds.SeriesInstanceUID].add(ds.SOPInstanceUID)
        iop = tuple(float(v) for v in ds.ImageOrientationPatient)
        stacks.add((ds.SeriesInstanceUID, iop, ds.Rows, ds.Columns))
    assert len(stacks) == manifest.n_stacks
    for s in manifest.series:
        assert len(series[s.series_uid]) == s.n_instances, s.key
        assert all(p.is_file() for p in s.files)


def test_localizer_lives_in_series_a(manifest: DemoManifest) -> None:
    a = manifest["a"]
    types = [tuple(pydicom.dcmread(p, stop_before_pixels=True).ImageType) for p in a.files]
    assert types.count(("ORIGINAL", "PRIMARY", "LOCALIZER")) == 3
    assert len(types) == 27


def test_zip_and_dicomdir_hold_their_series(manifest: DemoManifest) -> None:
    h, i = manifest["h"], manifest["i"]
    with zipfile.ZipFile(h.location) as zf:
        assert len(zf.namelist()) == h.n_instances
        first = pydicom.dcmread(io.BytesIO(zf.read(zf.namelist()[0])))
    assert first.SeriesInstanceUID == h.series_uid and first.Modality == "MR"
    assert h.location.suffix == ".zip" and not h.location.with_suffix("").exists()
    fileset = FileSet(i.location)
    assert len(fileset) == i.n_instances
    assert {inst.SeriesInstanceUID for inst in fileset} == {i.series_uid}


def test_alerts_agree_with_the_knowledge_base(manifest: DemoManifest) -> None:
    known = yaml.safe_load(SCANNERS_YAML.read_text())["scanners"]
    models = {(_fold(s["manufacturer"]), _fold(s["model"])): s for s in known}
    for s in manifest.series:
        entry = models.get((_fold(s.manufacturer), _fold(s.model)))
        versions = {_fold(v["version"]) for v in entry["software_versions"]} if entry else set()
        if entry is None:
            expected = "unknown_scanner"
        elif _fold(s.software_version) not in versions:
            expected = "unknown_software_version"
        else:
            expected = None
        assert s.alert == expected, s.key
    assert sorted(manifest.alerts.values()) == ["unknown_scanner", "unknown_software_version"]


def test_manifest_serialises(manifest: DemoManifest) -> None:
    data = json.loads(manifest.to_json())
    assert data["expected"]["series"] == 7 and data["expected"]["stacks"] == 8
    assert data["series"][0]["location"] == "SYN-DEMO-001/CT_thorax_1mm_Br40"


def test_include_bad_adds_a_stack_and_quarantine_cases(tmp_path: Path) -> None:
    manifest = build_demo_dataset(tmp_path / "demo", size="small", seed=1, include_bad=True)
    assert manifest.n_stacks == 9 and manifest.n_quarantined == 6
    assert manifest["a"].n_instances == 28
    assert set(manifest.bad) >= {"truncated", "inconsistent_size"}


def test_refuses_a_non_empty_folder_and_unknown_size(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        build_demo_dataset(tmp_path, size="small")
    with pytest.raises(ConfigError, match="size"):
        build_demo_dataset(tmp_path / "new", size="huge")  # type: ignore[arg-type]
