"""Regenerate DICOM files from stack stores (pixel-identical, header-equal).

Differences from the ingested files are confined to: the file meta group (the transfer
syntax of instances received compressed becomes Explicit VR Little Endian, and pydicom
writes its own implementation UID/version), group length elements (retired, dropped),
and, for instances received compressed, PhotometricInterpretation/PlanarConfiguration
set to describe the decoded pixels (e.g. YBR_RCT → RGB). See docs/EXPORT.md.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pydicom

from imagelake._fs import LakeFS
from imagelake.dicom import regenerate
from imagelake.store import StackReader

__all__ = ["ExportReport", "export_stacks"]


@dataclass
class ExportReport:
    """Files written by an export."""

    files: list[Path] = field(default_factory=list)
    instances: int = 0
    bytes_written: int = 0

    def __str__(self) -> str:
        return f"{self.instances} instances exported ({self.bytes_written / 1e6:.1f} MB)"


def export_stacks(
    lakefs: LakeFS,
    store_paths: Iterable[str],
    out_dir: str | os.PathLike[str],
    *,
    layout: str = "series",
    progress: Callable[[str, int, int], None] | None = None,
) -> ExportReport:
    """Write every instance of the given stacks as a DICOM file under ``out_dir``.

    Parameters
    ----------
    layout
        ``"series"``: ``<out>/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm``;
        ``"flat"``: ``<out>/<SOPInstanceUID>.dcm``.
    """
    out = Path(out_dir)
    report = ExportReport()
    paths = list(store_paths)
    for k, store_path in enumerate(paths):
        reader = StackReader(lakefs, store_path)
        study = str(reader.attrs.get("study_instance_uid", "study"))
        series = str(reader.attrs.get("series_instance_uid", "series"))
        folder = out / study / series if layout == "series" else out
        folder.mkdir(parents=True, exist_ok=True)
        for _index, header, frames in reader.iter_instances():
            ds = regenerate(header, frames, reader.photometric)
            target = folder / f"{ds.SOPInstanceUID}.dcm"
            tmp = target.with_suffix(".dcm.tmp")
            pydicom.dcmwrite(tmp, ds, enforce_file_format=False)
            os.replace(tmp, target)
            report.files.append(target)
            report.instances += 1
            report.bytes_written += target.stat().st_size
        if progress:
            progress("exporting", k + 1, len(paths))
    return report
