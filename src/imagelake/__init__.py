"""imagelake: a medical-imaging research data lake.

DICOM and raw scanner data become lossless chunked Zarr stores (read with xarray),
described by a registry (SQLite or PostgreSQL), a Parquet tag index and an Intake 2
catalog, ready for Dask-scale mining.

>>> import imagelake
>>> lake = imagelake.open_lake("./lake", create=True)     # doctest: +SKIP
>>> lake.ingest(["/data/dicom"])                           # doctest: +SKIP
>>> lake.query(Modality="CT", SliceThickness=(0.5, 1.5))   # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from imagelake._version import __version__
from imagelake.errors import ImagelakeError

__all__ = ["ImagelakeError", "Lake", "__version__", "open_lake"]

if TYPE_CHECKING:
    from imagelake.lake import Lake, open_lake


def __getattr__(name: str) -> Any:
    # The facade pulls in zarr, xarray and SQLAlchemy: import it only when asked for, so
    # that ``import imagelake.errors`` stays light.
    if name in ("Lake", "open_lake"):
        from imagelake import lake

        return getattr(lake, name)
    raise AttributeError(f"module 'imagelake' has no attribute {name!r}")
