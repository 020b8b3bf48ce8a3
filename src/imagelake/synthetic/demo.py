"""The demo input folder: three synthetic subjects, seven series, every way data arrives.

===  =======================================================  ===========================
key  what                                                      tests
===  =======================================================  ===========================
a    CT 1 mm Br40, SIEMENS SOMATOM Force, syngo CT VA50A       a known scanner, full size
f    + a 3-slice coronal localizer in series a's series         splitting into stacks
b    CT 3 mm Br64, same patient and study as a                  a second series of a study
c    MR T1 axial, GE SIGNA Premier, MR30.1_R01                  a known MR scanner
h    MR T2 sagittal, same study as c, inside a .zip             discovery in zip files
d    CT, SIEMENS SOMATOM Force, syngo CT VB10A                  alert unknown_software_version
e    CT, Canon Medical Systems Aquilion ONE PRISM, V10.12       alert unknown_scanner
i    CT follow-up of subject 1, SOMATOM Definition AS+,         discovery through a DICOMDIR
     syngo CT 2011A, reachable through a DICOMDIR
===  =======================================================  ===========================

Everything is labelled SYNTHETIC (patient names ``SYNTHETIC^DEMO^00n``, ImageComments). The
folder holds only what ingest should read: the manifest is returned, not written.
The files behind the DICOMDIR are ordinary files too (``DICOMDIR_export/PT000000/...``): a
folder walk finds them directly as well as through the DICOMDIR, so ingest must count each
SOPInstanceUID once. The DICOMDIR itself is a Media Storage Directory object, not an image.
"""

from __future__ import annotations

import gc
import io
import json
import os
import warnings
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import pydicom
from pydicom.dataset import Dataset
from pydicom.fileset import FileSet

from imagelake.errors import ConfigError
from imagelake.synthetic._headers import (
    GE_SIGNA_PREMIER,
    SIEMENS_SOMATOM_FORCE,
    Patient,
    Scanner,
    synthetic_uid,
)
from imagelake.synthetic.bad import bad_inputs
from imagelake.synthetic.localizer import localizer
from imagelake.synthetic.series import ct_series, mr_series
from imagelake.synthetic.writing import write_series

__all__ = ["DEMO_SCANNERS", "DemoManifest", "DemoSeries", "build_demo_dataset"]

AlertKind = Literal["unknown_scanner", "unknown_software_version"]

#: The scanners of the demo, by role; ``known`` ones are in ``catalog/scanners.yaml``.
DEMO_SCANNERS: Mapping[str, Scanner] = MappingProxyType(
    {
        "known_ct": SIEMENS_SOMATOM_FORCE,
        "known_mr": GE_SIGNA_PREMIER,
        "known_ct_other": Scanner(
            "SIEMENS", "SOMATOM Definition AS+", "syngo CT 2011A", "SYN-64002", "SYNCTAWP64002"
        ),
        "unknown_version": Scanner(
            "SIEMENS", "SOMATOM Force", "syngo CT VB10A", "SYN-75002", "SYNCTAWP75002"
        ),
        "unknown_model": Scanner(
            "Canon Medical Systems", "Aquilion ONE PRISM", "V10.12", "SYN-ACP001", "SYNCANON01"
        ),
    }
)

_SUBJECTS = (
    Patient("SYNTHETIC^DEMO^001", "SYN-DEMO-001", date(1958, 4, 12), "F", 64.0, 1.63),
    Patient("SYNTHETIC^DEMO^002", "SYN-DEMO-002", date(1983, 9, 30), "M", 88.0, 1.84),
    Patient("SYNTHETIC^DEMO^003", "SYN-DEMO-003", date(1947, 1, 21), "M", 72.0, 1.71),
)

# (slices, rows = columns) per series and size
_SIZES: dict[str, dict[str, tuple[int, int]]] = {
    "full": dict(
        a=(300, 512), b=(100, 512), c=(24, 256), h=(20, 256), d=(80, 512), e=(80, 512), i=(60, 512)
    ),
    "small": dict(a=(24, 64), b=(8, 64), c=(12, 64), h=(10, 64), d=(8, 64), e=(8, 64), i=(6, 64)),
}


@dataclass(frozen=True)
class DemoSeries:
    """One series of the demo dataset and what ingest should make of it.

    Attributes
    ----------
    key
        Letter of the brief (``"a"``...``"i"``; the localizer ``f`` lives in series ``a``).
    description
        What the series is for.
    subject, study_uid, series_uid, modality
        PatientID and UIDs as written.
    manufacturer, model, software_version
        The General Equipment values the knowledge base matches on.
    container
        ``"folder"``, ``"zip"`` or ``"dicomdir"``.
    location
        The series' folder, the zip file, or the DICOMDIR file.
    files
        Files on disk holding the series (for a zip: the zip itself).
    n_instances, n_stacks
        Instances and image stacks ingest should find.
    alert
        The alert kind ingest should raise for it, or ``None``.
    """

    key: str
    description: str
    subject: str
    study_uid: str
    series_uid: str
    modality: str
    manufacturer: str
    model: str
    software_version: str
    container: Literal["folder", "zip", "dicomdir"]
    location: Path
    files: tuple[Path, ...]
    n_instances: int
    n_stacks: int
    alert: AlertKind | None = None


@dataclass(frozen=True)
class DemoManifest:
    """What :func:`build_demo_dataset` wrote and what ingest should find in it.

    Attributes
    ----------
    root
        The demo folder.
    size, seed
        The arguments it was built with.
    series
        Every series, in the order of the brief.
    bad
        Bad input files by kind (see :mod:`imagelake.synthetic.bad`); empty unless asked for.
    """

    root: Path
    size: str
    seed: int
    series: tuple[DemoSeries, ...]
    bad: Mapping[str, Path] = field(default_factory=dict)

    @property
    def subjects(self) -> tuple[str, ...]:
        """PatientIDs, sorted."""
        return tuple(sorted({s.subject for s in self.series}))

    @property
    def n_studies(self) -> int:
        """Distinct studies."""
        return len({s.study_uid for s in self.series})

    @property
    def n_series(self) -> int:
        """Distinct series (the localizer shares series ``a``)."""
        return len({s.series_uid for s in self.series})

    @property
    def n_stacks(self) -> int:
        """Image stacks ingest should store (series ``a`` holds two, three with bad inputs)."""
        return sum(s.n_stacks for s in self.series)

    @property
    def n_instances(self) -> int:
        """Valid instances ingest should register (quarantined bad inputs excluded)."""
        return sum(s.n_instances for s in self.series)

    @property
    def n_quarantined(self) -> int:
        """Bad inputs ingest should quarantine."""
        return sum(1 for kind in self.bad if kind != "inconsistent_size")

    @property
    def alerts(self) -> dict[str, AlertKind]:
        """Expected alert kind by SeriesInstanceUID."""
        return {s.series_uid: s.alert for s in self.series if s.alert is not None}

    def __getitem__(self, key: str) -> DemoSeries:
        """The series with this key (``"a"``...)."""
        for s in self.series:
            if s.key == key:
                return s
        keys = ", ".join(s.key for s in self.series)
        raise KeyError(f"no demo series {key!r}; the keys are {keys}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary, paths relative to ``root``."""

        def rel(path: Path) -> str:
            return path.relative_to(self.root).as_posix()

        return {
            "root": str(self.root),
            "size": self.size,
            "seed": self.seed,
            "expected": {
                "subjects": len(self.subjects),
                "studies": self.n_studies,
                "series": self.n_series,
                "stacks": self.n_stacks,
                "instances": self.n_instances,
                "quarantined": self.n_quarantined,
                "alerts": self.alerts,
            },
            "series": [
                {
                    "key": s.key,
                    "description": s.description,
                    "subject": s.subject,
                    "study_uid": s.study_uid,
                    "series_uid": s.series_uid,
                    "modality": s.modality,
                    "manufacturer": s.manufacturer,
                    "model": s.model,
                    "software_version": s.software_version,
                    "container": s.container,
                    "location": rel(s.location),
                    "n_files": len(s.files),
                    "n_instances": s.n_instances,
                    "n_stacks": s.n_stacks,
                    "alert": s.alert,
                }
                for s in self.series
            ],
            "bad": {kind: rel(path) for kind, path in self.bad.items()},
        }

    def to_json(self) -> str:
        """:meth:`to_dict` as indented JSON."""
        return json.dumps(self.to_dict(), indent=2)


def _entry(
    key: str,
    description: str,
    datasets: list[Dataset],
    container: Literal["folder", "zip", "dicomdir"],
    location: Path,
    files: Iterable[Path],
    *,
    n_stacks: int = 1,
    alert: AlertKind | None = None,
) -> DemoSeries:
    ref = datasets[0]
    return DemoSeries(
        key=key,
        description=description,
        subject=str(ref.PatientID),
        study_uid=str(ref.StudyInstanceUID),
        series_uid=str(ref.SeriesInstanceUID),
        modality=str(ref.Modality),
        manufacturer=str(ref.Manufacturer),
        model=str(ref.ManufacturerModelName),
        software_version=str(ref.SoftwareVersions),
        container=container,
        location=location,
        files=tuple(files),
        n_instances=len(datasets),
        n_stacks=n_stacks,
        alert=alert,
    )


def _write_zip(datasets: list[Dataset], path: Path, folder: str) -> None:
    with zipfile.ZipFile(path, "x", compression=zipfile.ZIP_DEFLATED) as zf:
        for ds in datasets:
            buffer = io.BytesIO()
            pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
            zf.writestr(f"{folder}/IM{int(ds.InstanceNumber):04d}.dcm", buffer.getvalue())


def _write_dicomdir(datasets: list[Dataset], folder: Path) -> tuple[Path, list[Path]]:
    fileset = FileSet()
    fileset.ID = "SYNDEMO"
    for ds in datasets:
        fileset.add(ds)
    fileset.write(folder)
    files = sorted(Path(instance.path) for instance in fileset)
    # pydicom's FileSet keeps a staging TemporaryDirectory that only the garbage collector
    # removes (with a ResourceWarning): drop it now, quietly
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        del fileset
        gc.collect()
    return folder / "DICOMDIR", files


def build_demo_dataset(
    out_dir: str | os.PathLike[str],
    *,
    size: Literal["full", "small"] = "full",
    seed: int = 0,
    include_bad: bool = False,
) -> DemoManifest:
    """Write the demo input folder (see the module docstring) and say what is in it.

    Parameters
    ----------
    out_dir
        Folder to write; created if missing, and it must be empty.
    size
        ``"full"``: series a is 300 × 512 × 512 (about 670 instances, 330 MB in all);
        ``"small"``: 6-24 slices of 64 × 64 everywhere, for tests (well under a second's I/O).
    seed
        Seeds UIDs, phantoms and noise; the same seed writes the same files.
    include_bad
        Also write :func:`~imagelake.synthetic.bad_inputs` into ``bad/``; the valid
        ``inconsistent_size`` slice then joins series a as a third stack.

    Returns
    -------
    DemoManifest
        Paths, UIDs, expected counts and expected alerts.

    Raises
    ------
    FileExistsError
        If ``out_dir`` exists and is not empty.
    imagelake.errors.ConfigError
        If ``size`` is unknown.
    """
    if size not in _SIZES:
        raise ConfigError(f"size must be one of {sorted(_SIZES)}, got {size!r}")
    root = Path(out_dir)
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} is not empty; build the demo dataset into a new folder")
    root.mkdir(parents=True, exist_ok=True)
    dims = _SIZES[size]
    shift = timedelta(days=seed)
    s1, s2, s3 = _SUBJECTS
    when = {
        "A": datetime(2024, 3, 5, 8, 15) + shift,
        "B": datetime(2024, 3, 7, 14, 30) + shift,
        "C": datetime(2024, 4, 2, 10, 0) + shift,
        "D": datetime(2024, 5, 10, 11, 45) + shift,
        "E": datetime(2025, 3, 4, 9, 0) + shift,
    }
    study = {k: synthetic_uid("demo-study", seed, k) for k in when}
    out: list[DemoSeries] = []

    def ct(key: str, study_key: str, patient: Patient, **kw: Any) -> list[Dataset]:
        n, px = dims[key]
        # One seed per subject: a subject's series share anatomy and lesions, not noise.
        subject_seed = seed * 10 + _SUBJECTS.index(patient)
        return list(
            ct_series(
                n,
                px,
                px,
                patient=patient,
                seed=subject_seed,
                study_uid=study[study_key],
                study_datetime=when[study_key],
                **kw,
            )
        )

    # a + f: the reference CT and a localizer inside its series
    a = ct("a", "A", s1, slice_thickness=1.0, kernel="Br40", series_number=2)
    f = localizer(a, seed=seed)
    folder = root / s1.id / "CT_thorax_1mm_Br40"
    files = write_series([*a, *f], folder, naming="number")
    out.append(
        _entry(
            "a",
            "CT 1 mm Br40 (known scanner) with a 3-slice localizer (f)",
            [*a, *f],
            "folder",
            folder,
            files,
            n_stacks=2,
        )
    )

    b = ct("b", "A", s1, slice_thickness=3.0, kernel="Br64", series_number=3)
    folder = root / s1.id / "CT_thorax_3mm_Br64"
    out.append(
        _entry("b", "CT 3 mm Br64, same study as a", b, "folder", folder, write_series(b, folder))
    )

    n, px = dims["c"]
    c = list(
        mr_series(
            n,
            px,
            px,
            patient=s2,
            weighting="T1",
            orientation="axial",
            seed=seed * 10 + 1,
            study_uid=study["B"],
            study_datetime=when["B"],
            series_number=1,
        )
    )
    folder = root / s2.id / "MR_T1_axial"
    out.append(
        _entry("c", "MR T1 axial (known MR scanner)", c, "folder", folder, write_series(c, folder))
    )

    n, px = dims["h"]
    h = list(
        mr_series(
            n,
            px,
            px,
            patient=s2,
            weighting="T2",
            orientation="sagittal",
            seed=seed * 10 + 1,
            study_uid=study["B"],
            study_datetime=when["B"],
            series_number=2,
        )
    )
    archive = root / f"{s2.id}_MR_T2_sagittal.zip"
    _write_zip(h, archive, "MR_T2_sagittal")
    out.append(
        _entry("h", "MR T2 sagittal, same study as c, in a zip file", h, "zip", archive, [archive])
    )

    d = ct(
        "d", "C", s3, slice_thickness=3.0, scanner=DEMO_SCANNERS["unknown_version"], series_number=2
    )
    folder = root / s3.id / "CT_unknown_software_version"
    out.append(
        _entry(
            "d",
            "CT from a known model with an unknown software version",
            d,
            "folder",
            folder,
            write_series(d, folder),
            alert="unknown_software_version",
        )
    )

    e = ct(
        "e",
        "D",
        s3,
        slice_thickness=3.0,
        kernel="FC13",
        scanner=DEMO_SCANNERS["unknown_model"],
        series_number=4,
    )
    folder = root / s3.id / "CT_unknown_scanner"
    out.append(
        _entry(
            "e",
            "CT from a scanner model not in the knowledge base",
            e,
            "folder",
            folder,
            write_series(e, folder),
            alert="unknown_scanner",
        )
    )

    i = ct(
        "i",
        "E",
        s1,
        slice_thickness=5.0,
        kernel="B31f",
        scanner=DEMO_SCANNERS["known_ct_other"],
        series_number=2,
    )
    dicomdir, files = _write_dicomdir(i, root / "DICOMDIR_export")
    out.append(
        _entry("i", "CT follow-up of subject 1 behind a DICOMDIR", i, "dicomdir", dicomdir, files)
    )

    bad: dict[str, Path] = {}
    if include_bad:
        bad = bad_inputs(root / "bad", reference=a[0], seed=seed)
        first = out[0]
        out[0] = replace(
            first,
            files=(*first.files, bad["inconsistent_size"]),
            n_instances=first.n_instances + 1,
            n_stacks=first.n_stacks + 1,
        )
    return DemoManifest(root=root, size=size, seed=seed, series=tuple(out), bad=bad)
