"""The lake describes itself as a native Intake 2 catalog (``<lake>/catalog.yaml``).

Users need only Intake (and xarray, dask, pandas) to read a lake::

    import intake
    cat = intake.from_yaml_file("lake/catalog.yaml")   # or s3://bucket/lake/catalog.yaml
    list(cat)                                          # table and stack keys
    cat["series"].read()                               # pandas.DataFrame
    ds = cat["ct_1_2_840_10008_9_s0"].read()           # lazy xarray.Dataset, physical units
    cat(store_path="stores/dicom/<...>.zarr")["stack"].read()
    cat["raw_ismrmrd_0123456789ab"].read()             # decoded raw k-space, lazily

imagelake writes the file with :func:`write_catalog` from plain descriptions
(:class:`StackEntry`, :class:`RawEntry`, :class:`TableEntry`); paths in it are relative to
the file, so a lake keeps working when it is moved, copied or pushed to object storage.
"""

from __future__ import annotations

from imagelake.catalog._entries import (
    KEY_PATTERN,
    CatalogError,
    RawEntry,
    StackEntry,
    TableEntry,
    make_raw_key,
    make_stack_key,
)
from imagelake.catalog._intake import (
    CATALOG_FILE,
    CATALOG_FORMAT,
    STACK_TEMPLATE_KEY,
    STORE_PATH_PARAMETER,
    build_catalog,
    open_catalog,
    to_yaml,
    write_catalog,
)

__all__ = [
    "CATALOG_FILE",
    "CATALOG_FORMAT",
    "KEY_PATTERN",
    "STACK_TEMPLATE_KEY",
    "STORE_PATH_PARAMETER",
    "CatalogError",
    "RawEntry",
    "StackEntry",
    "TableEntry",
    "build_catalog",
    "make_raw_key",
    "make_stack_key",
    "open_catalog",
    "to_yaml",
    "write_catalog",
]
