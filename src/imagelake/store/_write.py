"""Write one DICOM stack as a Zarr v3 group, under a temporary name, then publish it.

Layout (``layout_version`` 1; see docs/STORE_LAYOUT.md)::

    <series_uid>/<stack>-<content>.zarr/
        zarr.json                 group attributes: series tags, geometry, affine, reason
        image/                    (slice|frame, y, x[, channel]) original dtype, sharded
        z, y, x                   coordinates in mm
        sop_instance_uid, instance_number, frame_number, acquisition_time, ...
        headers/dicom             every instance's header (DICOM bytes, no pixel data)
        manifest.json             sha256 of every object and of every source file

The function runs in worker processes: it takes plain, picklable arguments.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec, BloscShuffle, ZstdCodec
from zarr.core.dtype import VariableLengthBytes, VariableLengthUTF8

from imagelake._fs import LakeFS
from imagelake._version import __version__
from imagelake.dicom import (
    DecodedPixels,
    InstanceInfo,
    Source,
    StackPlan,
    StoredInstance,
    decode_pixels,
    header_bytes,
    read_dataset,
    slice_normal,
)
from imagelake.errors import ImagelakeError, InvalidInputError, StoreError
from imagelake.store._manifest import write_manifest
from imagelake.store._read import StackReader

__all__ = [
    "LAYOUT_VERSION",
    "FramePart",
    "StackDraft",
    "StackResult",
    "StoreSettings",
    "abandon_stack",
    "begin_stack",
    "build_stack",
    "finish_stack",
    "frame_ranges",
    "stack_store_path",
    "write_frames",
]

LAYOUT_VERSION = 1


@dataclass(frozen=True)
class StoreSettings:
    """Chunking and compression of image arrays (see imagelake.config.Settings)."""

    chunk_slices: int = 64
    chunk_rows: int = 128
    chunk_cols: int = 128
    shard_slices: int = 64
    compression_level: int = 3


@dataclass
class StackResult:
    """What a worker reports back about one stack."""

    series_instance_uid: str
    number: int
    content_hash: str
    store_path: str | None = None
    manifest_sha256: str | None = None
    stored_bytes: int = 0
    source_bytes: int = 0
    shape: tuple[int, ...] = ()
    dtype: str = ""
    frame_dim: str = ""
    photometric_interpretation: str = ""
    #: instances that could not be decoded: (SOPInstanceUID, error class, reason)
    failures: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures and self.store_path is not None


def stack_store_path(plan: StackPlan) -> str:
    """Where a stack lives in the lake: stable for the same content."""
    return f"stores/dicom/{plan.series_instance_uid}/{plan.number}-{plan.content_hash[:16]}.zarr"


class _InstanceReader:
    """Header bytes and decoded frames of an instance, from a file or from the lake."""

    def __init__(self, lakefs: LakeFS) -> None:
        self.lakefs = lakefs
        self._stores: dict[str, StackReader] = {}

    def _store(self, path: str) -> StackReader:
        if path not in self._stores:
            self._stores[path] = StackReader(self.lakefs, path)
        return self._stores[path]

    def read(self, info: InstanceInfo, *, pixels: bool) -> tuple[bytes, DecodedPixels | None]:
        src = info.source
        if isinstance(src, StoredInstance):
            store = self._store(src.store_path)
            header = store.header(src.index)
            if not pixels:
                return header, None
            return header, DecodedPixels(store.instance_frames(src.index), store.photometric)
        assert isinstance(src, Source)
        data = src.read_bytes()
        ds = read_dataset(data)
        return header_bytes(ds, data), (decode_pixels(ds) if pixels else None)


def _constant_tags(instances: list[InstanceInfo]) -> dict[str, Any]:
    """Tags with the same value in every instance of the stack (series-level values)."""
    first = instances[0].tags
    out = dict(first)
    for info in instances[1:]:
        for key in list(out):
            if info.tags.get(key, _MISSING) != out[key]:
                del out[key]
    return out


_MISSING = object()


def _affine(plan: StackPlan) -> list[list[float]] | None:
    """4x4 matrix from array indices (frame, row, column) to patient coordinates (mm)."""
    info = plan.first
    if info.orientation is None or info.pixel_spacing is None or not plan.positions:
        return None
    if any(p is None for p in plan.positions) or plan.frame_dim != "slice":
        return None
    row_dir = np.asarray(info.orientation[:3])
    col_dir = np.asarray(info.orientation[3:])
    dr, dc = info.pixel_spacing  # spacing between rows, between columns
    p0 = np.asarray(plan.positions[0], dtype=float)
    if len(plan.positions) > 1:
        step = (np.asarray(plan.positions[-1], dtype=float) - p0) / (len(plan.positions) - 1)
    else:
        step = slice_normal(info.orientation) * (info.slice_thickness or 1.0)
    m = np.eye(4)
    m[:3, 0] = step
    m[:3, 1] = col_dir * dr
    m[:3, 2] = row_dir * dc
    m[:3, 3] = p0
    return [[float(v) for v in r] for r in m]


def _frame_coords(plan: StackPlan) -> dict[str, tuple[np.ndarray, tuple[str, ...]]]:
    dim = plan.frame_dim
    coords: dict[str, tuple[np.ndarray, tuple[str, ...]]] = {}
    uids, numbers, frame_no, acq, inst_index = [], [], [], [], []
    for i, f in plan.frames:
        info = plan.instances[i]
        uids.append(info.sop_instance_uid)
        numbers.append(info.instance_number if info.instance_number is not None else -1)
        frame_no.append(f + 1)
        acq.append(info.acquisition_time or "")
        inst_index.append(i)
    coords["z"] = (np.asarray(plan.z, dtype="float64"), (dim,))
    coords["sop_instance_uid"] = (np.asarray(uids, dtype=str), (dim,))
    coords["instance_number"] = (np.asarray(numbers, dtype="int32"), (dim,))
    coords["frame_number"] = (np.asarray(frame_no, dtype="int32"), (dim,))
    coords["instance"] = (np.asarray(inst_index, dtype="int32"), (dim,))
    coords["acquisition_time"] = (np.asarray(acq, dtype=str), (dim,))
    if len(plan.instances) == 1 and plan.first.per_frame:
        for name, values in plan.first.per_frame.items():
            if name == "image_position_patient":
                arr = np.asarray(
                    [v if v is not None else (np.nan,) * 3 for v in values], dtype="float64"
                )
                coords[name] = (arr, (dim, "xyz"))
            elif name not in ("rescale_slope", "rescale_intercept"):
                coords[name] = (
                    np.asarray([np.nan if v is None else v for v in values], dtype="float64"),
                    (dim,),
                )
    elif all(p is not None for p in plan.positions) and plan.positions:
        coords["image_position_patient"] = (
            np.asarray(plan.positions, dtype="float64"),
            (dim, "xyz"),
        )
    return coords


def _rescale(plan: StackPlan) -> tuple[list[float], list[float]] | None:
    slopes, intercepts = [], []
    for i, f in plan.frames:
        info = plan.instances[i]
        pf_s = info.per_frame.get("rescale_slope")
        pf_i = info.per_frame.get("rescale_intercept")
        if pf_s and pf_i and pf_s[f] is not None and pf_i[f] is not None:
            slopes.append(float(pf_s[f]))
            intercepts.append(float(pf_i[f]))
        elif info.rescale is not None:
            slopes.append(info.rescale[0])
            intercepts.append(info.rescale[1])
        else:
            return None
    return slopes, intercepts


def _image_attrs(plan: StackPlan, coords: dict[str, Any], tags: dict[str, Any]) -> dict[str, Any]:
    attrs: dict[str, Any] = {"long_name": "stored pixel values"}
    rescale = _rescale(plan)
    if rescale is not None:
        slopes, intercepts = rescale
        if len(set(slopes)) == 1 and len(set(intercepts)) == 1:
            if (slopes[0], intercepts[0]) != (1.0, 0.0):
                attrs["scale_factor"] = slopes[0]
                attrs["add_offset"] = intercepts[0]
        else:
            # CF allows one scale per variable: per-frame rescale stays as coordinates
            coords["rescale_slope"] = (np.asarray(slopes), (plan.frame_dim,))
            coords["rescale_intercept"] = (np.asarray(intercepts), (plan.frame_dim,))
            attrs["rescale"] = "per-frame: value * rescale_slope + rescale_intercept"
    units = tags.get("RescaleType") or ("HU" if tags.get("Modality") == "CT" and rescale else None)
    if units:
        attrs["units"] = str(units)
    attrs["coordinates"] = " ".join(sorted(k for k in coords if k not in ("y", "x")))
    return attrs


def _group_attrs(plan: StackPlan, tags: dict[str, Any], photometric: str) -> dict[str, Any]:
    info = plan.first
    z = np.asarray(plan.z, dtype=float)
    spacing = None
    uniform = None
    if plan.frame_dim == "slice" and z.size > 1:
        steps = np.diff(z)
        spacing = float(np.median(np.abs(steps)))
        uniform = bool(np.allclose(np.abs(steps), spacing, rtol=1e-3, atol=1e-3))
    return {
        "layout_version": LAYOUT_VERSION,
        "kind": "dicom-stack",
        "imagelake_version": __version__,
        "series_instance_uid": plan.series_instance_uid,
        "study_instance_uid": info.study_instance_uid,
        "stack_number": plan.number,
        "frame_dim": plan.frame_dim,
        "reason": plan.reason,
        "n_instances": len(plan.instances),
        "modality": tags.get("Modality"),
        "photometric_interpretation": photometric,
        "image_orientation_patient": list(info.orientation) if info.orientation else None,
        "pixel_spacing": list(info.pixel_spacing) if info.pixel_spacing else None,
        "slice_thickness": info.slice_thickness,
        "spacing_between_frames": spacing,
        "uniform_spacing": uniform,
        "affine": _affine(plan),
        "affine_axes": "(frame, row, column) -> patient (x, y, z) mm, DICOM LPS",
        "dicom": tags,
    }


def _chunking(shape: tuple[int, ...], s: StoreSettings) -> tuple[tuple[int, ...], tuple[int, ...]]:
    n, rows, cols = shape[:3]
    chunk = [max(1, min(s.chunk_slices, n)), min(s.chunk_rows, rows), min(s.chunk_cols, cols)]
    per_shard = max(1, min(s.shard_slices, n) // chunk[0])
    shard = [chunk[0] * per_shard, -(-rows // chunk[1]) * chunk[1], -(-cols // chunk[2]) * chunk[2]]
    extra = list(shape[3:])
    return tuple(chunk + extra), tuple(shard + extra)


def _write_headers(group: zarr.Group, headers: list[bytes]) -> None:
    sub = group.create_group("headers")
    arr = sub.create_array(
        "dicom",
        shape=(len(headers),),
        dtype=VariableLengthBytes(),
        chunks=(min(256, max(1, len(headers))),),
        compressors=ZstdCodec(level=3),
        attributes={"description": "DICOM header of each instance, pixel data removed"},
    )
    arr[:] = np.asarray(headers, dtype=object)


@dataclass(frozen=True)
class StackDraft:
    """A stack being built under ``.tmp/``: what every writer of its frames needs."""

    tmp: str
    shape: tuple[int, ...] = ()
    dtype: str = ""
    shard_frames: int = 1


@dataclass
class FramePart:
    """What one writer of a range of frames reports back."""

    headers: dict[int, bytes] = field(default_factory=dict)
    photometric_interpretation: str = ""
    failures: list[tuple[str, str, str]] = field(default_factory=list)


def _failure(info: InstanceInfo, exc: Exception) -> tuple[str, str, str]:
    err = exc if isinstance(exc, ImagelakeError) else InvalidInputError(str(exc))
    return (info.sop_instance_uid, type(err).__name__, str(err))


def begin_stack(
    root: str, storage_options: dict[str, Any], plan: StackPlan, settings: StoreSettings
) -> StackDraft | StackResult:
    """Create the stack's group and image array under ``.tmp/``.

    The first instance is decoded to learn the array's dtype and frame shape. Returns a
    :class:`StackResult` with failures instead when that instance cannot be decoded.
    """
    lakefs = LakeFS(root, **storage_options)
    tmp = lakefs.tmp_dir("stack-")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        group = zarr.open_group(lakefs.url(tmp), mode="w", storage_options=_opts(lakefs))
        if plan.frame_dim == "none":
            return StackDraft(tmp)
        try:
            _, pixels = _InstanceReader(lakefs).read(plan.first, pixels=True)
        except (ImagelakeError, ValueError) as exc:
            lakefs.rm_tree(tmp)
            result = StackResult(plan.series_instance_uid, plan.number, plan.content_hash)
            result.failures.append(_failure(plan.first, exc))
            return result
        assert pixels is not None
        shape = (plan.n_frames, *pixels.array.shape[1:])
        image = _create_image(group, plan, shape, pixels.array.dtype, settings)
        return StackDraft(tmp, shape, str(pixels.array.dtype), int(image.shards[0]))


def frame_ranges(plan: StackPlan, draft: StackDraft, parts: int) -> list[tuple[int, int]]:
    """Split a stack's frames into at most ``parts`` shard-aligned ranges.

    Shards are separate objects, so writers of different ranges never touch the same
    object. A multi-frame object (one instance) and a header-only stack are one range.
    """
    n = plan.n_frames
    if parts <= 1 or len(plan.instances) < 2 or n <= draft.shard_frames:
        return [(0, max(n, len(plan.instances)))] if plan.frame_dim != "none" else [(0, 0)]
    shards = -(-n // draft.shard_frames)
    per = -(-shards // min(parts, shards))
    step = per * draft.shard_frames
    return [(lo, min(n, lo + step)) for lo in range(0, n, step)]


def write_frames(
    root: str,
    storage_options: dict[str, Any],
    draft: StackDraft,
    plan: StackPlan,
    start: int,
    stop: int,
) -> FramePart:
    """Decode frames ``start:stop`` of a single-frame stack (or all of a multi-frame
    object, or the headers of a header-only stack) and write them."""
    lakefs = LakeFS(root, **storage_options)
    reader = _InstanceReader(lakefs)
    part = FramePart()
    if plan.frame_dim == "none":
        for k, info in enumerate(plan.instances):
            try:
                part.headers[k], _ = reader.read(info, pixels=False)
            except ImagelakeError as exc:
                part.failures.append(_failure(info, exc))
        return part
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        image: Any = zarr.open_array(
            lakefs.url(f"{draft.tmp}/image"), mode="r+", storage_options=_opts(lakefs)
        )
    indices = range(len(plan.instances)) if len(plan.instances) == 1 else range(start, stop)
    batch: list[np.ndarray] = []
    written = start if len(plan.instances) > 1 else 0
    for k in indices:
        info = plan.instances[k]
        try:
            part.headers[k], pixels = reader.read(info, pixels=True)
        except (ImagelakeError, ValueError) as exc:
            part.failures.append(_failure(info, exc))
            continue
        assert pixels is not None
        arr = pixels.array
        if arr.shape[1:] != tuple(draft.shape[1:]) or str(arr.dtype) != draft.dtype:
            part.failures.append(
                (
                    info.sop_instance_uid,
                    "PixelDataError",
                    f"decoded {arr.shape[1:]} {arr.dtype}, the stack holds "
                    f"{tuple(draft.shape[1:])} {draft.dtype}",
                )
            )
            continue
        if part.photometric_interpretation not in ("", pixels.photometric_interpretation):
            part.failures.append(
                (
                    info.sop_instance_uid,
                    "PixelDataError",
                    f"decoded as {pixels.photometric_interpretation}, the stack holds "
                    f"{part.photometric_interpretation}",
                )
            )
            continue
        part.photometric_interpretation = pixels.photometric_interpretation
        batch.append(arr)
        if sum(b.shape[0] for b in batch) >= draft.shard_frames or k == indices[-1]:
            block = np.concatenate(batch) if len(batch) > 1 else batch[0]
            image[written : written + block.shape[0]] = block
            written += block.shape[0]
            batch = []
    return part


def finish_stack(
    root: str,
    storage_options: dict[str, Any],
    draft: StackDraft,
    plan: StackPlan,
    parts: list[FramePart],
) -> StackResult:
    """Write coordinates, headers and attributes, consolidate, hash, and publish.

    With failures in any part, nothing is published and the temporary tree is removed.
    """
    lakefs = LakeFS(root, **storage_options)
    result = StackResult(plan.series_instance_uid, plan.number, plan.content_hash)
    result.frame_dim = plan.frame_dim
    result.source_bytes = sum(i.size for i in plan.instances)
    try:
        result.failures = [f for p in parts for f in p.failures]
        photometrics = {p.photometric_interpretation for p in parts} - {""}
        if len(photometrics) > 1:
            result.failures.append(
                (
                    plan.first.sop_instance_uid,
                    "PixelDataError",
                    f"mixed colour spaces {photometrics}",
                )
            )
        if result.failures:
            return result
        headers: dict[int, bytes] = {}
        for p in parts:
            headers.update(p.headers)
        if len(headers) != len(plan.instances):
            raise StoreError(f"got headers of {len(headers)} of {len(plan.instances)} instances")
        photometric = photometrics.pop() if photometrics else ""
        with warnings.catch_warnings():
            # zarr warns that variable-length strings have no frozen v3 spec: we accept that
            warnings.simplefilter("ignore")
            _finish(
                lakefs, draft, plan, [headers[k] for k in range(len(plan.instances))], photometric
            )
        result.shape, result.dtype = draft.shape, draft.dtype
        result.photometric_interpretation = photometric
        result.manifest_sha256 = write_manifest(
            lakefs,
            draft.tmp,
            sources={i.sop_instance_uid: i.sha256 for i in plan.instances},
            extra={"layout_version": LAYOUT_VERSION, "content_hash": plan.content_hash},
        )
        result.stored_bytes = sum(
            lakefs.size(f"{draft.tmp}/{rel}") for rel in lakefs.walk_files(draft.tmp)
        )
        final = stack_store_path(plan)
        if lakefs.exists(final):
            # same content already published (a re-run after a crash before commit)
            lakefs.rm_tree(final)
        lakefs.publish_dir(draft.tmp, final)
        result.store_path = final
        return result
    finally:
        lakefs.rm_tree(draft.tmp)


def _finish(
    lakefs: LakeFS, draft: StackDraft, plan: StackPlan, headers: list[bytes], photometric: str
) -> None:
    group = zarr.open_group(lakefs.url(draft.tmp), mode="r+", storage_options=_opts(lakefs))
    tags = _constant_tags(plan.instances)
    if plan.frame_dim != "none":
        coords = _frame_coords(plan)
        image: Any = group["image"]
        image.attrs.update(_image_attrs(plan, coords, tags))
        _write_coords(group, plan, coords)
    _write_headers(group, headers)
    group.attrs.update(_group_attrs(plan, tags, photometric))
    zarr.consolidate_metadata(group.store)


def abandon_stack(root: str, storage_options: dict[str, Any], draft: StackDraft) -> None:
    """Remove a draft that will not be finished."""
    LakeFS(root, **storage_options).rm_tree(draft.tmp)


def build_stack(
    root: str, storage_options: dict[str, Any], plan: StackPlan, settings: StoreSettings
) -> StackResult:
    """Decode a stack's pixels, write its store under ``.tmp/`` and publish it (serially;
    ingest runs :func:`write_frames` of one big stack in parallel instead)."""
    draft = begin_stack(root, storage_options, plan, settings)
    if isinstance(draft, StackResult):
        return draft
    n = max(plan.n_frames, len(plan.instances))
    part = write_frames(root, storage_options, draft, plan, 0, n)
    return finish_stack(root, storage_options, draft, plan, [part])


def _opts(lakefs: LakeFS) -> dict[str, Any] | None:
    return None if lakefs.is_local else lakefs.storage_options


def _create_image(
    group: zarr.Group, plan: StackPlan, shape: tuple[int, ...], dtype: np.dtype, s: StoreSettings
) -> Any:
    chunks, shards = _chunking(shape, s)
    dims: tuple[str, ...] = (plan.frame_dim, "y", "x") + (("channel",) if len(shape) == 4 else ())
    if dtype.kind == "f":
        compressor = BloscCodec(
            cname="zstd", clevel=s.compression_level, shuffle=BloscShuffle.shuffle
        )
    else:
        compressor = BloscCodec(
            cname="zstd", clevel=s.compression_level, shuffle=BloscShuffle.bitshuffle
        )
    return group.create_array(
        "image",
        shape=shape,
        dtype=dtype,
        chunks=chunks,
        shards=shards,
        compressors=compressor,
        fill_value=0,
        dimension_names=dims,
    )


def _write_coords(
    group: zarr.Group, plan: StackPlan, coords: dict[str, tuple[np.ndarray, tuple[str, ...]]]
) -> None:
    info = plan.first
    dr, dc = info.pixel_spacing or (1.0, 1.0)
    axes = {
        "y": np.arange(info.rows, dtype="float64") * dr,
        "x": np.arange(info.columns, dtype="float64") * dc,
    }
    units = "mm" if info.pixel_spacing else "pixel"
    for name, values in axes.items():
        arr = group.create_array(
            name, shape=values.shape, dtype=values.dtype, dimension_names=(name,)
        )
        arr[:] = values
        arr.attrs["units"] = units
    for name, (values, dims) in coords.items():
        dtype: Any = VariableLengthUTF8() if values.dtype.kind == "U" else values.dtype
        arr = group.create_array(
            name, shape=values.shape, dtype=dtype, dimension_names=dims, chunks=values.shape
        )
        arr[...] = values
        if name == "z":
            arr.attrs.update({"units": "mm", "long_name": "position along the slice normal"})
