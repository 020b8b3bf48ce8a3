"""Stores: one Zarr v3 group per DICOM image stack (ARCHITECTURE.md §2) and per raw
scanner object (§3)."""

from imagelake.store._manifest import MANIFEST, FixityProblem, verify_store, write_manifest
from imagelake.store._raw import (
    RAW_LAYOUT_VERSION,
    RawMember,
    RawStoreResult,
    RawStoreSettings,
    open_raw,
    raw_object_sha256,
    raw_store_path,
    read_original,
    restore_original,
    write_raw_store,
)
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
    "RAW_LAYOUT_VERSION",
    "FixityProblem",
    "FramePart",
    "RawMember",
    "RawStoreResult",
    "RawStoreSettings",
    "StackDraft",
    "StackReader",
    "StackResult",
    "StoreSettings",
    "abandon_stack",
    "begin_stack",
    "build_stack",
    "finish_stack",
    "frame_ranges",
    "open_raw",
    "open_stack",
    "raw_object_sha256",
    "raw_store_path",
    "read_original",
    "restore_original",
    "stack_store_path",
    "verify_store",
    "write_frames",
    "write_manifest",
    "write_raw_store",
]
