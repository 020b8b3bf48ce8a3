"""The ``imagelake`` command line: every command over a small SYNTHETIC lake.

Commands run in-process through click's CliRunner; the error path (exit code 2 and a short
message instead of a traceback) runs the installed console script in a subprocess.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import warnings
from pathlib import Path

import pydicom
import pytest
from click.testing import CliRunner, Result

from imagelake import synthetic
from imagelake.cli._main import cli

N_KNOWN, N_UNKNOWN = 5, 3


def run(*args: str) -> Result:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result


@pytest.fixture(scope="module")
def cli_lake(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Result]:
    """A lake made by ``imagelake ingest``: a known-scanner CT, an unknown-scanner CT, an
    empty file. Returns the lake, the input folder and the ingest's result."""
    base = tmp_path_factory.mktemp("cli")
    synthetic.write_series(synthetic.ct_series(N_KNOWN, 32, 32), base / "in" / "known")
    canon = synthetic.DEMO_SCANNERS["unknown_model"]
    synthetic.write_series(
        synthetic.ct_series(N_UNKNOWN, 32, 32, scanner=canon, seed=3, series_number=5),
        base / "in" / "canon",
    )
    (base / "in" / "empty.dcm").write_bytes(b"")
    lake = base / "lake"
    result = run("ingest", str(base / "in"), "--lake", str(lake), "--workers", "1", "--no-progress")
    return lake, base / "in", result


@pytest.fixture
def lake_copy(cli_lake: tuple[Path, Path, Result], tmp_path: Path) -> Path:
    copy = tmp_path / "lake"
    shutil.copytree(cli_lake[0], copy)
    return copy


def series_uid(folder: Path) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return str(
            pydicom.dcmread(next(folder.iterdir()), stop_before_pixels=True).SeriesInstanceUID
        )


def test_ingest_reports_what_it_did(cli_lake: tuple[Path, Path, Result]) -> None:
    lake, _, result = cli_lake
    assert result.exit_code == 0, result.output
    assert f"{N_KNOWN + N_UNKNOWN + 1} files: {N_KNOWN + N_UNKNOWN} new instances" in result.output
    assert "1 quarantined" in result.output
    assert "empty file" in result.output
    assert "alert: unknown_scanner" in result.output
    assert (lake / "imagelake.json").exists()


def test_query_as_json(cli_lake: tuple[Path, Path, Result]) -> None:
    lake, inputs, _ = cli_lake
    result = run("query", "Manufacturer=SIEMENS", "--lake", str(lake), "--format", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["series_instance_uid"] for r in rows] == [series_uid(inputs / "known")]
    assert rows[0]["n_instances"] == N_KNOWN
    everything = json.loads(run("query", "--lake", str(lake), "--format", "json").output)
    assert len(everything) == 2


def test_query_as_csv_with_chosen_columns(cli_lake: tuple[Path, Path, Result]) -> None:
    lake, inputs, _ = cli_lake
    result = run(
        "query", "Modality=CT", "--lake", str(lake), "--format", "csv",
        "--columns", "series_instance_uid,n_instances",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0] == "series_instance_uid,n_instances"
    assert sorted(lines[1:]) == sorted(
        [f"{series_uid(inputs / 'known')},{N_KNOWN}", f"{series_uid(inputs / 'canon')},{N_UNKNOWN}"]
    )


def test_export_writes_the_matching_series(
    cli_lake: tuple[Path, Path, Result], tmp_path: Path
) -> None:
    lake, inputs, _ = cli_lake
    out = tmp_path / "out"
    result = run("export", "ManufacturerModelName=Aquilion ONE PRISM", "--lake", str(lake),
                 "--out", str(out), "--flat")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"{N_UNKNOWN} instances exported" in result.output
    files = sorted(out.iterdir())
    assert len(files) == N_UNKNOWN
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert {str(pydicom.dcmread(f).SeriesInstanceUID) for f in files} == {
            series_uid(inputs / "canon")
        }


def test_alerts(cli_lake: tuple[Path, Path, Result]) -> None:
    lake, _, _ = cli_lake
    result = run("alerts", "--lake", str(lake), "--format", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [(r["kind"], r["count"]) for r in rows] == [("unknown_scanner", N_UNKNOWN)]
    table = run("alerts", "--lake", str(lake))
    assert "unknown_scanner" in table.output and "Aquilion ONE PRISM" in table.output


def test_quarantine(cli_lake: tuple[Path, Path, Result]) -> None:
    lake, inputs, _ = cli_lake
    result = run("quarantine", "--lake", str(lake), "--format", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [(r["source"], r["error"]) for r in rows] == [
        (str(inputs / "empty.dcm"), "NotDicomError")
    ]
    assert "empty" in rows[0]["reason"]


def test_verify_exit_codes(lake_copy: Path) -> None:
    result = run("verify", "--lake", str(lake_copy))
    assert result.exit_code == 0, result.output
    assert "all stores intact" in result.output
    chunk = next(lake_copy.glob("stores/dicom/*/*.zarr/image/c/0/0/0"))
    chunk.write_bytes(chunk.read_bytes()[:-1] + b"\x00")
    result = run("verify", "--lake", str(lake_copy))
    assert result.exit_code == 1
    assert "image/c/0/0/0: changed" in result.output
    assert "1 problem(s)" in result.output


def test_audit_verify_exit_codes(lake_copy: Path) -> None:
    result = run("audit", "verify", "--lake", str(lake_copy))
    assert result.exit_code == 0, result.output
    log = lake_copy / "audit" / "log.jsonl"
    lines = log.read_text().splitlines()
    assert len(lines) >= 2
    entry = json.loads(lines[1])
    entry["user"] = entry["user"] + "-edited"
    lines[1] = json.dumps(entry, separators=(",", ":"), sort_keys=True)
    log.write_text("\n".join(lines) + "\n")
    result = run("audit", "verify", "--lake", str(lake_copy))
    assert result.exit_code == 1, result.output


def test_scanners_list_shows_the_knowledge_base(cli_lake: tuple[Path, Path, Result]) -> None:
    lake, _, _ = cli_lake
    result = run("scanners", "list", "--lake", str(lake))
    assert result.exit_code == 0, result.output
    known = synthetic.DEMO_SCANNERS["known_ct"]
    lines = [
        line
        for line in result.output.splitlines()
        if line.startswith(f"{known.manufacturer} | {known.model} |")
    ]
    assert len(lines) == 1
    assert known.software_versions in lines[0]
    assert "Aquilion ONE PRISM" not in result.output


# -- errors: a short message and exit code 2, never a traceback ---------------------------------
@pytest.mark.parametrize(
    ("lake_arg", "words"),
    [
        ("{tmp}/no/lake/here", "no imagelake lake"),
        ("notaproto://bucket/lake", "Protocol not known"),
    ],
    ids=["missing-folder", "unknown-protocol"],
)
def test_bad_lake_url_is_an_error_of_exit_code_2(
    imagelake_exe: str, tmp_path: Path, lake_arg: str, words: str
) -> None:
    proc = subprocess.run(
        [imagelake_exe, "query", "--lake", lake_arg.format(tmp=tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error:")
    assert words in " ".join(proc.stderr.split())
    assert proc.stdout == ""


def test_bad_lake_url_error_is_one_line(imagelake_exe: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [imagelake_exe, "query", "--lake", str(tmp_path / "no" / "lake" / "here")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "80"},  # a log or terminal of 80 columns
    )
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
