"""DICOM instances through pydicom: inspect, group into stacks, decode, regenerate.

imagelake never parses DICOM by hand: every byte goes through pydicom and its pixel
plugins (pylibjpeg, pyjpegls, gdcm).
"""

from imagelake.dicom._inspect import (
    PIXEL_TAGS,
    InstanceInfo,
    flatten_tags,
    header_bytes,
    inspect_bytes,
    inspect_source,
    read_dataset,
    read_header_bytes,
)
from imagelake.dicom._pixels import DecodedPixels, decode_pixels, regenerate, to_bytes
from imagelake.dicom._source import Source, StoredInstance
from imagelake.dicom._stack import StackPlan, plan_stacks, slice_normal

__all__ = [
    "PIXEL_TAGS",
    "DecodedPixels",
    "InstanceInfo",
    "Source",
    "StackPlan",
    "StoredInstance",
    "decode_pixels",
    "flatten_tags",
    "header_bytes",
    "inspect_bytes",
    "inspect_source",
    "plan_stacks",
    "read_dataset",
    "read_header_bytes",
    "regenerate",
    "slice_normal",
    "to_bytes",
]
