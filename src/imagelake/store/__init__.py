"""Stack stores: one Zarr v3 group per DICOM image stack (ARCHITECTURE.md §2)."""

from imagelake.store._manifest import MANIFEST, FixityProblem, verify_store, write_manifest
from imagelake.store._read import StackReader, open_stack
from imagelake.store._write import (
    LAYOUT_VERSION,
    StackResult,
    StoreSettings,
    build_stack,
    stack_store_path,
)

__all__ = [
    "LAYOUT_VERSION",
    "MANIFEST",
    "FixityProblem",
    "StackReader",
    "StackResult",
    "StoreSettings",
    "build_stack",
    "open_stack",
    "stack_store_path",
    "verify_store",
    "write_manifest",
]
