"""The knowledge base of known scanners, and the check ingest runs against it.

What we know about the scanners our data comes from: models, the software versions we
have seen and trust, the raw formats they write and the emulator that reconstructs them.
It ships as ``catalog/scanners.yaml`` (:meth:`KnowledgeBase.load`), is loaded into each
registry's ``scanner`` / ``scanner_version`` tables by :func:`sync`, and grows by hand
through :func:`add_scanner` / :func:`add_version` (``imagelake scanners add``).

Ingest checks each series with a :class:`ScannerIndex` and calls :func:`record_sighting`
for whatever is new, which raises one alert per new scanner, software version or
unidentified modality and counts later sightings::

    index = ScannerIndex.from_db(conn)
    result = index.check(ds.Manufacturer, ds.ManufacturerModelName, ds.SoftwareVersions)
    record_sighting(conn, result, count=n_instances, modality=ds.Modality,
                    context={"series_instance_uid": uid})

Matching (also stated in the file's header): names are compared casefolded with
punctuation and repeated spaces folded (``+`` kept, see :func:`normalize_name`); a series
with several SoftwareVersions values is known when any one of them is listed.
"""

from imagelake.knowledge._check import (
    SIGHTING_CONTEXT_KEYS,
    ScannerCheck,
    ScannerIndex,
    ScannerStatus,
    check,
    record_sighting,
)
from imagelake.knowledge._db import (
    SyncReport,
    add_scanner,
    add_version,
    list_scanners,
    remove_scanner,
    remove_version,
    sync,
    to_yaml,
)
from imagelake.knowledge._kb import (
    FORMAT_VERSION,
    KnowledgeBase,
    ScannerEntry,
    VersionEntry,
    default_path,
    shipped_path,
)
from imagelake.knowledge._normalize import (
    normalize_name,
    normalize_version,
    scanner_key,
    split_versions,
)

__all__ = [
    "FORMAT_VERSION",
    "SIGHTING_CONTEXT_KEYS",
    "KnowledgeBase",
    "ScannerCheck",
    "ScannerEntry",
    "ScannerIndex",
    "ScannerStatus",
    "SyncReport",
    "VersionEntry",
    "add_scanner",
    "add_version",
    "check",
    "default_path",
    "list_scanners",
    "normalize_name",
    "normalize_version",
    "record_sighting",
    "remove_scanner",
    "remove_version",
    "scanner_key",
    "shipped_path",
    "split_versions",
    "sync",
    "to_yaml",
]
