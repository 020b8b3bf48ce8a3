"""Stack stores: one Zarr v3 group per DICOM image stack (ARCHITECTURE.md §2)."""

from imagelake.store._manifest import MANIFEST, FixityProblem, verify_store, write_manifest
from imagelake.store._read import StackReader, open_stack
from imagelake.store._write import (
    LAYOUT_VERSION,
    FramePart,
    StackDraft,
    StackResult,
    StoreSettings,
    abandon_stack,
    begin_stack,
    build_stack,
    finish_stack,
    frame_ranges,
    stack_store_path,
    write_frames,
)

__all__ = [
    "LAYOUT_VERSION",
    "MANIFEST",
    "FixityProblem",
    "FramePart",
    "StackDraft",
    "StackReader",
    "StackResult",
    "StoreSettings",
    "abandon_stack",
    "begin_stack",
    "build_stack",
    "finish_stack",
    "frame_ranges",
    "open_stack",
    "stack_store_path",
    "verify_store",
    "write_frames",
    "write_manifest",
]
