"""Registry factories shared by the index tests (not a conftest: see tests/test_setup.py)."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from imagelake import model
from imagelake._fs import LakeFS
from imagelake.db import Database, ensure_project, ensure_study, ensure_subject

T0 = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


class RegistryFactory:
    """Inserts projects, subjects, studies, series (with image parameters and stacks),
    instances (with a tags JSON dict), raw files, links and measures."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._uids = itertools.count(1)

    def uid(self, kind: str) -> str:
        return f"1.2.826.0.1.3680043.10.1.{kind}.{next(self._uids)}"

    def study(
        self, patient_id: str = "P1", project: str = "demo", **values: Any
    ) -> tuple[int, str]:
        uid = values.pop("study_instance_uid", None) or self.uid("1")
        with self.db.begin() as conn:
            project_id = ensure_project(conn, project)
            subject_id = ensure_subject(conn, project_id, patient_id, sex="O")
            study_id = ensure_study(conn, subject_id, uid, **values)
        return study_id, uid

    def series(
        self,
        study_id: int,
        *,
        params: Mapping[str, Any] | None = None,
        stacks: int = 1,
        **values: Any,
    ) -> tuple[int, str, list[int]]:
        """A series with its image parameters and ``stacks`` stacks; returns ids, uid."""
        uid = values.pop("series_instance_uid", None) or self.uid("2")
        with self.db.begin() as conn:
            res = conn.execute(
                sa.insert(model.series).values(
                    study_id=study_id,
                    series_instance_uid=uid,
                    created_at=T0,
                    updated_at=T0,
                    **values,
                )
            )
            series_id = int(res.inserted_primary_key[0])
            conn.execute(
                sa.insert(model.image_parameters).values(series_id=series_id, **(params or {}))
            )
            stack_ids = []
            for number in range(1, stacks + 1):
                key = f"{uid}-{number}"
                res = conn.execute(
                    sa.insert(model.stack).values(
                        series_id=series_id,
                        stack_key=key,
                        stack_number=number,
                        store_path=f"stores/dicom/{key}.zarr",
                        content_hash=hashlib.sha256(key.encode()).hexdigest(),
                        frame_dim="slice",
                        shape=[4, 8, 8],
                        dtype="int16",
                        reason=None if number == 1 else "orientation",
                        layout_version=1,
                        manifest_sha256="0" * 64,
                        stored_bytes=1000 * number,
                        source_bytes=3000 * number,
                        created_at=T0,
                    )
                )
                stack_ids.append(int(res.inserted_primary_key[0]))
        return series_id, uid, stack_ids

    def instances(
        self, series_id: int, stack_id: int | None, tags: list[dict[str, Any]]
    ) -> list[int]:
        """One instance per tags dict, in order (frame offset = position)."""
        rows = []
        for i, t in enumerate(tags):
            uid = t.get("SOPInstanceUID") or self.uid("3")
            rows.append(
                {
                    "series_id": series_id,
                    "stack_id": stack_id,
                    "sop_instance_uid": uid,
                    "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2",
                    "instance_number": i + 1,
                    "source_sha256": hashlib.sha256(uid.encode()).hexdigest(),
                    "source_path": f"/data/{uid}.dcm",
                    "source_size": 1234,
                    "n_frames": 1,
                    "first_frame": i,
                    "acquisition_datetime": t.get("AcquisitionDateTime"),
                    "tags": t,
                    "ingested_at": T0,
                }
            )
        with self.db.begin() as conn:
            conn.execute(sa.insert(model.instance), rows)
            ids = conn.execute(
                sa.select(model.instance.c.id)
                .where(model.instance.c.series_id == series_id)
                .order_by(model.instance.c.id)
            ).scalars()
            return [int(x) for x in ids][-len(rows) :]

    def raw_file(self, sha: str = "ab" * 32, **values: Any) -> int:
        with self.db.begin() as conn:
            res = conn.execute(
                sa.insert(model.raw_file).values(
                    sha256=sha,
                    format="twix",
                    size=10,
                    meta={"k": 1},
                    ingested_at=T0,
                    **values,
                )
            )
            return int(res.inserted_primary_key[0])

    def link(self, raw_id: int, series_id: int) -> int:
        with self.db.begin() as conn:
            res = conn.execute(
                sa.insert(model.link).values(
                    raw_id=raw_id,
                    series_id=series_id,
                    method="uid",
                    confidence=0.9,
                    evidence=["same StudyInstanceUID"],
                    status="accepted",
                    created_at=T0,
                )
            )
            return int(res.inserted_primary_key[0])

    def measure(self, series_id: int, name: str, value: float) -> int:
        with self.db.begin() as conn:
            res = conn.execute(
                sa.insert(model.measure).values(
                    series_id=series_id,
                    name=name,
                    value=value,
                    unit="HU",
                    tool="test",
                    tool_version="1",
                    params={},
                    inputs={},
                    provenance_key="p" * 16,
                    user="tester",
                    created_at=T0,
                )
            )
            return int(res.inserted_primary_key[0])


def ct_tags(i: int, *, thickness: float, current: int, **extra: Any) -> dict[str, Any]:
    """Tags of the ``i``-th slice of a CT series, as ingest stores them."""
    tags: dict[str, Any] = {
        "Modality": "CT",
        "SliceThickness": thickness,
        "ImagePositionPatient": [-100.0, -120.5, float(i) * thickness],
        "ImageOrientationPatient": [1, 0, 0, 0, 1, 0],
        "ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"],
        "InstanceNumber": i + 1,
        "XRayTubeCurrent": current,
        "SliceLocation": float(i) * thickness,
        "AcquisitionDateTime": f"20240101{120000 + i:06d}",
        "0019100C": 42,
    }
    tags.update(extra)
    return tags


class Indexed:
    """A small registry of five series, snapshotted; ``uids`` names them S1…S5."""

    def __init__(self, lake: LakeFS, db: Database, factory: RegistryFactory) -> None:
        self.lake, self.db, self.factory = lake, db, factory
        self.uids: dict[str, str] = {}
        f = factory
        st1, _ = f.study("P1", study_date="20240101")
        s1, self.uids["S1"], k1 = f.series(
            st1,
            modality="CT",
            manufacturer="SIEMENS",
            model="SOMATOM Force",
            series_date="20240101",
            params={"slice_thickness": 1.0, "convolution_kernel": "Br40d", "kvp": 120.0},
            stacks=2,
        )
        f.instances(s1, k1[0], [ct_tags(i, thickness=1.0, current=300 + 10 * i) for i in range(3)])
        f.instances(s1, k1[1], [ct_tags(0, thickness=1.0, current=100, ImageType="DERIVED")])
        st2, _ = f.study("007", study_date="20230615")
        s2, self.uids["S2"], k2 = f.series(
            st2,
            modality="CT",
            manufacturer="GE MEDICAL SYSTEMS",
            params={"slice_thickness": 5.0, "convolution_kernel": "STANDARD", "kvp": 100.0},
        )
        f.instances(
            s2,
            k2[0],
            [
                ct_tags(0, thickness=5.0, current=350, WindowCenter=[40, 400]),
                ct_tags(1, thickness=5.0, current=360, WindowCenter=40),
            ],
        )
        st3, _ = f.study("P3", study_date="20221201")
        s3, self.uids["S3"], k3 = f.series(
            st3,
            modality="MR",
            manufacturer="Philips",
            params={"slice_thickness": 3.0, "echo_time": 90.0, "repetition_time": 4000.0},
        )
        mr = {"Modality": "MR", "EchoTime": 90.0, "SequenceName": "*tse2d1_15"}
        f.instances(
            s3,
            k3[0],
            [
                {**mr, "ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"], "EchoNumbers": 1},
                {**mr, "ImageType": ["ORIGINAL", "PRIMARY", "M"], "EchoNumbers": 2},
            ],
        )
        st4, _ = f.study("P1", study_date="20240301")
        s4, self.uids["S4"], k4 = f.series(
            st4, modality="CT", manufacturer="SIEMENS", params={"slice_thickness": 0.5}
        )
        f.instances(
            s4,
            k4[0],
            [ct_tags(0, thickness=0.5, current=200), ct_tags(1, thickness=0.5, current=500)],
        )
        st5, _ = f.study("P5", study_date="20200101")
        _, self.uids["S5"], _ = f.series(st5, modality="SR", manufacturer="Siemens Healthineers")
        self.by_uid = {v: k for k, v in self.uids.items()}

    def names(self, frame: Any) -> list[str]:
        """S-names of a query result's series, sorted."""
        return sorted(self.by_uid[u] for u in frame["series_instance_uid"])


def indexed_lake(root: Path) -> Indexed:
    from imagelake.index import write_snapshot

    root.mkdir(exist_ok=True)
    lake = LakeFS(root)
    database = Database(f"sqlite:///{lake.path('registry.sqlite')}")
    data = Indexed(lake, database, RegistryFactory(database))
    write_snapshot(database, lake)
    return data
