"""The :class:`Lake`: one object over a lake's stores, registry, index, catalog and audit.

>>> lake = open_lake("./lake", create=True)                       # doctest: +SKIP
>>> report = lake.ingest(["/data/incoming"])                       # doctest: +SKIP
>>> ct = lake.query(Modality="CT", SliceThickness=(0.5, 1.5))      # doctest: +SKIP
>>> ds = lake.open_series(ct.series_instance_uid[0])               # doctest: +SKIP
>>> lake.descendants(lake.raw_files().sha256[0])                   # doctest: +SKIP

DICOM data lives in :mod:`imagelake.lake._lake`; raw files, links, review and
reconstruction in :mod:`imagelake.lake._raw` (a mixin of :class:`Lake`).
"""

from imagelake.lake._lake import LAKE_MARKER, Lake, open_lake

__all__ = ["LAKE_MARKER", "Lake", "open_lake"]
