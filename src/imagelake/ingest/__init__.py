"""Ingest DICOM into a lake: discover, inspect, quarantine, stack, store, register."""

from imagelake.ingest._discover import discover
from imagelake.ingest._quarantine import QuarantineEntry, quarantine
from imagelake.ingest._run import IngestReport, Progress, ingest_paths, sweep_orphans

__all__ = [
    "IngestReport",
    "Progress",
    "QuarantineEntry",
    "discover",
    "ingest_paths",
    "quarantine",
    "sweep_orphans",
]
