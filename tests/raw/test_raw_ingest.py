"""Raw scanner files through a real lake: recognised, archived byte-exact, decoded,
registered, indexed, checked against the knowledge base; bad ones quarantined."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from raw_world import PATIENT, copy, kspace_for, mr_session, truncate

from imagelake.formats import get_format
from imagelake.lake import open_lake
from imagelake.synthetic.samples import twix_samples

SIDECAR = """\
label: acme-blob
modality: CT
manufacturer: ACME Imaging
model: Prototype 9
software_version: "0.9"
"""


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def inputs(tmp_path: Path, require_tool: Any) -> dict[str, Path]:
    require_tool("ismrmrd_generate_cartesian_shepp_logan")
    session = mr_session(tmp_path)
    raw = tmp_path / "in"
    out = {"ismrmrd": kspace_for(session, raw / "mr" / "meas.h5")}
    for name, path in twix_samples().items():
        out[name] = copy(path, raw / "twix" / name)
    blob = raw / "vendor" / "scan.blob"
    blob.parent.mkdir(parents=True)
    blob.write_bytes(b"ACME\x00" + bytes(range(256)) * 40)
    (raw / "vendor" / "scan.blob.imagelake.yaml").write_text(SIDECAR)
    out["opaque"] = blob
    out["junk"] = raw / "vendor" / "mystery.bin"
    out["junk"].write_bytes(b"no header anyone knows" * 50)
    out["truncated_h5"] = truncate(out["ismrmrd"], raw / "bad" / "cut.h5", 0.5)
    out["truncated_twix"] = truncate(out["gre.dat"], raw / "bad" / "cut.dat", 0.6)
    out["root"] = raw
    return out


def test_raw_files_are_archived_decoded_and_checked(
    tmp_path: Path, inputs: dict[str, Path]
) -> None:
    lake = open_lake(tmp_path / "lake", create=True)
    report = lake.ingest([inputs["root"]], link=False)
    assert len(report.raw_new) == 4  # ismrmrd, gre.dat, epi.dat, the described blob
    raw = lake.raw_files()
    by_format = raw.groupby("format").size().to_dict()
    assert by_format == {"ismrmrd": 1, "siemens-twix": 2, "opaque": 1}

    # originals come back byte-exact, and the lake id of a single file is its sha256
    for key in ("ismrmrd", "gre.dat", "epi.dat", "opaque"):
        sha = _sha(inputs[key])
        assert sha in set(raw.sha256)
        assert hashlib.sha256(lake.raw_original(sha)).hexdigest() == sha
        restored = lake.restore_raw(sha, tmp_path / "restored" / key)
        files = [p for p in restored if not p.name.endswith(".imagelake.yaml")]
        assert [_sha(p) for p in files] == [sha]

    # decoded arrays equal the format reader's own
    for key, fmt in (("ismrmrd", "ismrmrd"), ("gre.dat", "siemens-twix")):
        ds = lake.open_raw(_sha(inputs[key]))
        content = get_format(fmt).open(inputs[key])
        for name, array in content.arrays.items():
            assert (ds[name].values == array.load()).all(), name

    # scanner metadata from the raw header
    mr = raw[raw.format == "ismrmrd"].iloc[0]
    assert (mr.manufacturer, mr.model) == ("GE MEDICAL SYSTEMS", "SIGNA Premier")
    twix = raw[raw.format == "siemens-twix"].iloc[0]
    assert twix.model == "Skyra"

    # bad inputs: quarantined with a reason each, bytes kept; nothing else lost
    q = lake.quarantined()
    reasons = {Path(s).name: r for s, r in zip(q.source, q.reason, strict=True)}
    assert set(reasons) == {"cut.h5", "cut.dat", "mystery.bin"}
    assert "sidecar" in reasons["mystery.bin"]
    for row in q.itertuples():
        kept = [p for p in (tmp_path / "lake" / row.path).iterdir() if p.name != "reason.json"]
        assert [_sha(p) for p in kept] == [row.sha256]

    # the knowledge base: an unknown scanner, and a raw file nobody can read
    alerts = lake.alerts()
    kinds = set(alerts.kind)
    assert {"unknown_scanner", "raw_not_viable"} <= kinds
    not_viable = alerts[alerts.kind == "raw_not_viable"].iloc[0]
    assert "ACME" in not_viable.message and "acme-blob" in not_viable.message
    assert not any("SIGNA" in m for m in alerts.message)  # a known scanner raises nothing

    assert lake.verify() == []


def test_reingest_adds_nothing(tmp_path: Path, inputs: dict[str, Path], lake_disk: Any) -> None:
    lake = open_lake(tmp_path / "lake", create=True)
    lake.ingest([inputs["root"]], link=False)
    stores = sorted((tmp_path / "lake" / "stores" / "raw").iterdir())
    again = lake.ingest([inputs["root"]], link=False)
    assert again.raw_new == [] and again.raw_skipped == 4
    assert lake_disk.count(lake, "raw_file") == 4
    assert sorted((tmp_path / "lake" / "stores" / "raw").iterdir()) == stores


def test_crash_between_store_and_registry_is_completed_by_a_rerun(
    tmp_path: Path, inputs: dict[str, Path], monkeypatch: pytest.MonkeyPatch, lake_disk: Any
) -> None:
    import imagelake.ingest._raw as raw_ingest

    lake = open_lake(tmp_path / "lake", create=True)
    real = raw_ingest._register
    calls = {"n": 0}

    def dies_on_second(*args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("simulated kill")
        real(*args, **kwargs)

    monkeypatch.setattr(raw_ingest, "_register", dies_on_second)
    with pytest.raises(KeyboardInterrupt):
        lake.ingest([inputs["root"]], link=False)
    monkeypatch.setattr(raw_ingest, "_register", real)
    assert lake_disk.count(lake, "raw_file") == 1
    report = lake.ingest([inputs["root"]], link=False)
    assert len(report.raw_new) == 3 and report.raw_skipped == 1
    assert lake_disk.count(lake, "raw_file") == 4
    registered = {Path(p).name for p in lake.raw_files().store_path}
    on_disk = {p.name for p in (tmp_path / "lake" / "stores" / "raw").iterdir()}
    assert on_disk == registered
    assert lake.verify() == []


def test_patient_identity_from_raw_headers_stays_out_of_the_lake_metadata(
    tmp_path: Path, inputs: dict[str, Path]
) -> None:
    lake = open_lake(tmp_path / "lake", create=True)
    lake.ingest([inputs["ismrmrd"]])
    row = lake.raw_files().iloc[0]
    meta = json.loads(row.meta)
    assert meta["patient_keys"]["id_key"]  # a keyed hash is kept for linking
    secrets = [PATIENT.name, PATIENT.id, "RAWTEST"]
    root = tmp_path / "lake"
    for path in [*root.glob("index/*.parquet"), root / "catalog.yaml", *root.glob("audit/*")]:
        if path.is_file():
            text = path.read_bytes()
            for secret in secrets:
                assert secret.encode() not in text, (path, secret)
    for path in root.glob("stores/raw/*/zarr.json"):
        for secret in secrets:
            assert secret.encode() not in path.read_bytes()
    alerts = lake.alerts()
    assert not any(PATIENT.id in str(m) for m in alerts.message)


def test_raw_arrays_are_in_the_lake_catalog(tmp_path: Path, inputs: dict[str, Path]) -> None:
    import intake

    lake = open_lake(tmp_path / "lake", create=True)
    lake.ingest([inputs["ismrmrd"], inputs["opaque"]], link=False)
    cat = intake.from_yaml_file(str(tmp_path / "lake" / "catalog.yaml"))
    raw_keys = [k for k in cat.entries if k.startswith("raw_")]
    assert len(raw_keys) == 1  # the opaque blob has no arrays: it is in the raw table only
    entry = cat.entries[raw_keys[0]]
    assert entry.metadata["format"] == "ismrmrd"
    ds = cat[raw_keys[0]].read()
    expected = get_format("ismrmrd").open(inputs["ismrmrd"]).arrays["kspace"].load()
    assert (ds.kspace.values == expected).all()
    table = cat["raw"].read()
    assert set(table.format) == {"ismrmrd", "opaque"}
