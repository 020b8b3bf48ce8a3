"""Group a series' instances into stacks: arrays whose frames share one geometry.

A series often mixes things that cannot share an array: localizers, several
orientations or image sizes, several echoes at the same positions, enhanced multi-frame
objects, non-image objects. Each becomes its own stack, and every stack but the main one
carries the reason it was split off.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from imagelake.dicom._inspect import InstanceInfo

__all__ = ["StackPlan", "plan_stacks", "slice_normal"]

#: Tolerance (mm) under which two slice positions are the same position.
POSITION_TOLERANCE = 1e-3


def slice_normal(orientation: Sequence[float]) -> np.ndarray:
    """Unit normal of the image plane (row direction × column direction)."""
    row = np.asarray(orientation[:3], dtype=float)
    col = np.asarray(orientation[3:6], dtype=float)
    normal = np.cross(row, col)
    norm = np.linalg.norm(normal)
    return normal / norm if norm > 0 else normal


@dataclass
class StackPlan:
    """How one stack is built from instances.

    Attributes
    ----------
    frame_dim
        ``"slice"`` for a volume with distinct positions along the normal, ``"frame"``
        for any other sequence of frames, ``"none"`` for non-image objects.
    frames
        ``(instance position in instances, frame index within that instance)`` per frame.
    z
        Position of each frame along the slice normal (mm), or NaN when unknown.
    """

    series_instance_uid: str
    instances: list[InstanceInfo]
    frames: list[tuple[int, int]]
    frame_dim: str
    z: list[float]
    reason: str | None = None
    number: int = 0
    positions: list[tuple[float, ...] | None] = field(default_factory=list)

    @property
    def content_hash(self) -> str:
        """Digest of the stack's content: its instances and their source checksums."""
        h = hashlib.sha256()
        for info in sorted(self.instances, key=lambda i: i.sop_instance_uid):
            h.update(f"{info.sop_instance_uid}:{info.sha256};".encode())
        return h.hexdigest()

    @property
    def n_frames(self) -> int:
        return len(self.frames)

    @property
    def first(self) -> InstanceInfo:
        return self.instances[0]

    def first_frame_of(self) -> dict[str, int]:
        """Index of the first frame of each instance in this stack, by SOPInstanceUID."""
        out: dict[str, int] = {}
        for k, (i, _) in enumerate(self.frames):
            out.setdefault(self.instances[i].sop_instance_uid, k)
        return out


def _z(info: InstanceInfo, position: Sequence[float] | None) -> float:
    if position is None or info.orientation is None:
        return float("nan")
    return float(np.dot(np.asarray(position, dtype=float), slice_normal(info.orientation)))


def _distinct(values: Sequence[float]) -> bool:
    arr = np.sort(np.asarray(values, dtype=float))
    return bool(np.all(np.isfinite(arr))) and bool(np.all(np.diff(arr) > POSITION_TOLERANCE))


def _plan_multiframe(info: InstanceInfo) -> StackPlan:
    positions = info.per_frame.get("image_position_patient") or [None] * info.n_frames
    z = [_z(info, p) for p in positions]
    dim = "slice" if info.n_frames > 1 and _distinct(z) else "frame"
    return StackPlan(
        series_instance_uid=info.series_instance_uid,
        instances=[info],
        frames=[(0, f) for f in range(info.n_frames)],
        frame_dim=dim,
        z=z,
        positions=list(positions),
    )


_SPLIT_KEYS: list[tuple[str, Callable[[InstanceInfo], Any]]] = [
    ("echo number", lambda i: i.echo_number),
    ("temporal position", lambda i: i.temporal_position),
    ("acquisition number", lambda i: i.acquisition_number),
]


def _order_single_frames(group: list[InstanceInfo]) -> tuple[list[InstanceInfo], str, list[float]]:
    z = [_z(i, i.position) for i in group]
    if _distinct(z):
        order = np.argsort(z, kind="stable")
        return [group[k] for k in order], "slice", [z[k] for k in order]
    # no usable positions, or repeated ones: keep acquisition order
    by_number = sorted(range(len(group)), key=lambda k: (group[k].instance_number or 0, z[k]))
    return [group[k] for k in by_number], "frame", [z[k] for k in by_number]


def _split_repeats(group: list[InstanceInfo]) -> list[tuple[list[InstanceInfo], str | None]]:
    """Split a same-geometry group whose positions repeat (echoes, phases) by the first
    attribute that makes every part a proper volume."""
    z = [_z(i, i.position) for i in group]
    if _distinct(z) or not all(np.isfinite(z)):
        return [(group, None)]
    for label, key in _SPLIT_KEYS:
        parts: dict[Any, list[InstanceInfo]] = defaultdict(list)
        for info in group:
            parts[key(info)].append(info)
        if len(parts) > 1 and all(
            _distinct([_z(i, i.position) for i in p]) for p in parts.values()
        ):
            return [
                (parts[k], f"{label} {k}")
                for k in sorted(parts, key=lambda v: (v is None, v if v is not None else 0))
            ]
    return [(group, None)]


def _describe_difference(main: InstanceInfo, other: InstanceInfo) -> str:
    if other.is_localizer and not main.is_localizer:
        return "localizer (ImageType contains LOCALIZER)"
    if (other.rows, other.columns) != (main.rows, main.columns):
        return (
            f"image size {other.rows}x{other.columns} differs from the main stack's "
            f"{main.rows}x{main.columns}"
        )
    if other.orientation != main.orientation:
        return "orientation differs from the main stack"
    if other.pixel_spacing != main.pixel_spacing:
        return "pixel spacing differs from the main stack"
    if other.decoded_photometric != main.decoded_photometric:
        return (
            f"photometric interpretation {other.decoded_photometric} differs from the main "
            f"stack's {main.decoded_photometric}"
        )
    return "pixel format differs from the main stack (samples, bits or representation)"


def plan_stacks(instances: Sequence[InstanceInfo]) -> list[StackPlan]:
    """Group one series' instances into stacks, the main (largest) stack first.

    Parameters
    ----------
    instances
        Instances of a single series (same SeriesInstanceUID).
    """
    if not instances:
        return []
    uid = instances[0].series_instance_uid
    plans: list[StackPlan] = []
    # one stack per multi-frame object, one for all non-image objects
    documents = [i for i in instances if not i.has_pixels]
    multi = [i for i in instances if i.has_pixels and i.n_frames > 1]
    single = [i for i in instances if i.has_pixels and i.n_frames == 1]

    groups: dict[tuple[Any, ...], list[InstanceInfo]] = defaultdict(list)
    for info in single:
        groups[info.geometry_key].append(info)
    ranked = sorted(
        groups.values(), key=lambda g: (g[0].is_localizer, -len(g), g[0].sop_instance_uid)
    )
    main_info = ranked[0][0] if ranked else None
    for g_index, group in enumerate(ranked):
        for part, split_reason in _split_repeats(group):
            ordered, dim, z = _order_single_frames(part)
            reasons = []
            if g_index > 0 and main_info is not None:
                reasons.append(_describe_difference(main_info, part[0]))
            if split_reason:
                reasons.append(f"split by {split_reason}: positions repeat within the series")
            plans.append(
                StackPlan(
                    series_instance_uid=uid,
                    instances=ordered,
                    frames=[(k, 0) for k in range(len(ordered))],
                    frame_dim=dim,
                    z=z,
                    reason="; ".join(reasons) or None,
                    positions=[i.position for i in ordered],
                )
            )
    for info in sorted(multi, key=lambda i: (i.instance_number or 0, i.sop_instance_uid)):
        plan = _plan_multiframe(info)
        plan.reason = "multi-frame object" if plans else None
        plans.append(plan)
    if documents:
        docs = sorted(documents, key=lambda i: (i.instance_number or 0, i.sop_instance_uid))
        plans.append(
            StackPlan(
                series_instance_uid=uid,
                instances=docs,
                frames=[],
                frame_dim="none",
                z=[],
                reason="non-image objects (no pixel data)",
            )
        )
    for number, plan in enumerate(plans):
        plan.number = number
    return plans
