"""`Lake.reprocess` / `imagelake reprocess` / `viability`: legacy raw files through real emulator
VMs (the reference emulator under libvirt + QEMU), outputs ingested and linked with provenance.

Two real boots: a revision-1 file reconstructed by reference-recon 1.0, and a revision-2 file
forced onto 1.0, which the guest refuses.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from imagelake import model
from imagelake.config import override
from imagelake.emulators import EmulatorJobError, EmulatorManager, ImageStore
from imagelake.errors import PluginNotFoundError
from imagelake.lake import Lake, open_lake
from imagelake.recon.parallel import fbp_parallel
from imagelake.synthetic.refscan import (
    RefscanGeometry,
    parallel_beam_sinogram,
    refscan_meta,
    write_refscan,
)

GEOMETRY = RefscanGeometry(n_views=128, n_detectors=128)


@pytest.fixture(scope="module")
def lake_and_files(
    tmp_path_factory: pytest.TempPathFactory, reference_images: Path
) -> Iterator[tuple[Lake, dict[str, str], Any]]:
    base = tmp_path_factory.mktemp("reprocess")
    sino = parallel_beam_sinogram(GEOMETRY)
    raw = base / "raw"
    written = {
        # a legacy file: software R1.1 -> the knowledge base says reference-recon@1.0
        "legacy": write_refscan(raw / "legacy.rfs", sino, revision=1, geometry=GEOMETRY,
                                meta=refscan_meta(software_version="R1.1")),
        # revision 2 written by a (mislabelled) R1.0 console: emulator 1.0 cannot read it
        "rev2": write_refscan(raw / "rev2.rfs", sino, revision=2, geometry=GEOMETRY,
                              meta=refscan_meta(software_version="R1.0",
                                                series_uid="2.25.1234567890123",
                                                study_uid="2.25.1234567890124")),
    }  # fmt: skip
    # a vendor file nobody reads and no emulator knows: described by its sidecar only
    blob = raw / "P0042.7"
    blob.write_bytes(b"\x00LEGACY\x00" + bytes(range(256)) * 16)
    (raw / "P0042.7.imagelake.yaml").write_text(
        "label: acme-pfile\nmodality: CT\nmanufacturer: Acme\nmodel: Legacy 1\n"
        "software_version: '0.9'\n"
    )
    written["unknown"] = blob
    with override(emulator_images=str(reference_images), emulator_work_dir=str(base / "work")):
        lake = open_lake(base / "lake", create=True)
        report = lake.ingest([raw])
        assert len(report.raw_new) == len(written), report
        table = lake.raw_files()
        by_software = dict(zip(table["software_version"], table["sha256"], strict=True))
        shas = {"legacy": by_software["R1.1"], "rev2": by_software["R1.0"],
                "unknown": by_software["0.9"]}  # fmt: skip
        yield lake, shas, sino


@pytest.fixture(scope="module")
def manager(system_libvirt: str, reference_images: Path, tmp_path_factory: Any) -> Iterator[Any]:
    with EmulatorManager(
        system_libvirt,
        images=ImageStore(reference_images),
        work_dir=tmp_path_factory.mktemp("vm-work"),
    ) as m:
        yield m


def test_viability_names_each_path(lake_and_files: tuple[Lake, dict[str, str], Any]) -> None:
    lake, shas, _ = lake_and_files
    v = lake.viability().set_index("sha256")
    assert v.loc[shas["legacy"], "path"] == "emulator"
    assert v.loc[shas["legacy"], "via"] == "reference-recon@1.0"
    assert v.loc[shas["legacy"], "detail"] == "image ready"
    # revision 2 from an R1.0 console: the knowledge base's 1.0 cannot read it, 2.0 can
    assert v.loc[shas["rev2"], "via"] == "reference-recon@2.0"
    assert v.loc[shas["unknown"], "path"] == "none"
    alerts = lake.alerts()
    assert any(
        a.kind == "raw_not_viable" and shas["unknown"] in str(a.details)
        for a in alerts.itertuples()
    ), alerts


def test_reprocess_without_emulator_raises_and_alerts(
    lake_and_files: tuple[Lake, dict[str, str], Any],
) -> None:
    lake, shas, _ = lake_and_files
    with pytest.raises(PluginNotFoundError, match="no emulator reconstructs"):
        lake.reprocess(shas["unknown"])


def test_reprocess_links_outputs_with_provenance(
    lake_and_files: tuple[Lake, dict[str, str], Any], manager: EmulatorManager, leftovers: Any
) -> None:
    lake, shas, sino = lake_and_files
    report = lake.reprocess(shas["legacy"], manager=manager)
    assert report.emulator == "reference-recon@1.0"
    assert len(report.series_instance_uids) == 1
    uid = report.series_instance_uids[0]
    links = lake.links()
    mine = links[(links["raw_sha256"] == shas["legacy"]) & (links["series_instance_uid"] == uid)]
    assert list(mine["method"]) == ["emulator"] and list(mine["status"]) == ["accepted"]
    prov = report.provenance
    recorded = json.loads(
        (Path(reference_images_dir(lake)) / "reference-recon" / "1.0" / "digests.json").read_text()
    )
    assert prov["image_sha256"] == {role: d["sha256"] for role, d in recorded.items()}
    assert prov["emulator"] == "reference-recon@1.0" and prov["domain_type"] in ("kvm", "qemu")
    assert prov["software_version"] and prov["duration_s"] > 0
    assert prov["console_log_sha256"] and prov["chosen_by"].startswith("knowledge base")
    # the job's record is in the lake, and its console log is the one hashed
    import hashlib

    console = lake.fs.read_bytes(f"jobs/{report.job_id}/console.log")
    assert hashlib.sha256(console).hexdigest() == prov["console_log_sha256"]
    # the pixels: the VM's reconstruction equals the host's reference FBP of the same data
    ds = lake.open_stack(lake.stacks(uid)["store_path"].iloc[0])
    image = np.asarray(ds["image"].values, dtype=np.float64)[0]
    host = fbp_parallel(sino[0], GEOMETRY.view_angles(), matrix=image.shape[-1])
    mu = GEOMETRY.water_attenuation_per_mm
    # the guest stores rounded HU + 1024 in 16 bits: below -1024 HU is clipped
    host_hu = np.maximum(np.rint(1000.0 * (host - mu) / mu), -1024)
    assert np.corrcoef(image.ravel(), host_hu.ravel())[0, 1] > 0.999
    assert np.sqrt(np.mean((image - host_hu) ** 2)) < 1.0
    # job row, audit
    with lake.db.connect() as conn:
        jobs = conn.execute(
            sa.select(model.job.c.status).where(model.job.c.kind == "reprocess")
        ).all()
    assert ("done",) in jobs
    assert [e.action for e in lake.audit.entries(action="reprocess")][-1:] == ["reprocess"]
    names, files = leftovers(manager.uri, manager.work_dir)
    assert names == [] and files == []


def test_v1_refuses_revision_2_clearly(
    lake_and_files: tuple[Lake, dict[str, str], Any], manager: EmulatorManager
) -> None:
    lake, shas, _ = lake_and_files
    before = len(lake.links())
    with pytest.raises(EmulatorJobError, match="revision 2") as info:
        lake.reprocess(shas["rev2"], emulator="reference-recon@1.0", manager=manager)
    assert info.value.result.outcome is not None and info.value.result.outcome.status == "error"
    assert len(lake.links()) == before
    prov = json.loads(lake.fs.read_bytes(f"jobs/{info.value.result.job_id}/provenance.json"))
    assert prov["status"] == "failed" and "revision 2" in prov["message"]
    with lake.db.connect() as conn:
        statuses = [
            r.status
            for r in conn.execute(sa.select(model.job).where(model.job.c.kind == "reprocess"))
        ]
    assert "failed" in statuses


def test_cli_viability(
    lake_and_files: tuple[Lake, dict[str, str], Any], imagelake_exe: str
) -> None:
    lake, shas, _ = lake_and_files
    out = subprocess.run(
        [imagelake_exe, "viability", "--lake", lake.fs.url(), "--format", "json", "--no-alerts"],
        capture_output=True, text=True, check=False,
        env=_env_with_images(lake),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    rows = {r["sha256"]: r for r in json.loads(out.stdout)}
    assert rows[shas["legacy"]]["via"] == "reference-recon@1.0"


def reference_images_dir(lake: Lake) -> str:
    return str(lake.settings.emulator_images)


def _env_with_images(lake: Lake) -> dict[str, str]:
    import os

    return {**os.environ, "IMAGELAKE_EMULATOR_IMAGES": reference_images_dir(lake)}
