"""Before sharing: a de-identification preview, the burned-in text review, a share in steps.

The library calls behind the anonymization widget (:mod:`imagelake.widgets`), for notebooks and
scripts as well::

    from imagelake.lake import share_preview as sp

    preview = sp.preview_deidentification(lake, uid)            # before/after table of instance 0
    review = sp.burned_in_review(lake, uids)                    # instances held back, and why
    report = sp.anonymize_series(lake, "/share/lake", uids, progress=print)

:func:`anonymize_series` runs :meth:`Lake.anonymize` once per group of series that share a raw
parent (so every raw file goes with all its shared descendants in one call) and reports progress
between groups; the share is the same as one call would make (re-runs add only new data, under
the same pseudonyms).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pydicom

from imagelake.anonymize import Deidentifier, burned_in_risk, load_policy
from imagelake.anonymize.preview import change_counts, tag_changes
from imagelake.dicom import regenerate
from imagelake.errors import QueryError
from imagelake.lake._share import AnonymizeReport, _secret
from imagelake.store import StackReader
from imagelake.store.views import auto_window, window

__all__ = [
    "DeidPreview",
    "anonymize_series",
    "burned_in_image",
    "burned_in_review",
    "preview_deidentification",
    "sample_instance",
    "share_batches",
]

PolicyLike = str | os.PathLike[str] | Mapping[str, Any] | None


def _main_stack(lake: Any, series_instance_uid: str) -> str:
    rows = lake.stacks(series_instance_uid)
    if rows.empty:
        raise QueryError(f"no series {series_instance_uid!r} in {lake.url}")
    rows = rows.sort_values("stack_number")
    return str(rows.store_path.iloc[0])


def sample_instance(lake: Any, series_instance_uid: str, index: int = 0) -> pydicom.Dataset:
    """Instance ``index`` of a series' main stack, regenerated as a pydicom dataset."""
    reader = StackReader(lake.fs, _main_stack(lake, series_instance_uid))
    k = min(max(int(index), 0), reader.n_instances - 1)
    return regenerate(reader.header(k), reader.instance_frames(k), reader.photometric)


@dataclass(frozen=True)
class DeidPreview:
    """What the policy does to one sample instance.

    ``table`` holds values of the source (see :func:`imagelake.anonymize.preview.tag_changes`):
    show it to people entitled to the source, never log it. ``counts`` and
    ``burned_in_risk`` (a fixed reason text) are safe to log.
    """

    table: pd.DataFrame
    counts: dict[str, int]
    burned_in_risk: str | None
    policy: str


def preview_deidentification(
    lake: Any,
    series_instance_uid: str,
    policy: PolicyLike = None,
    *,
    index: int = 0,
    include_kept: bool = False,
) -> DeidPreview:
    """De-identify instance ``index`` of a series in memory and compare (nothing is written).

    Uses the same policy loading and secret as :meth:`Lake.anonymize`, so pseudonyms,
    UIDs and shifted dates are those the share will have.
    """
    ds = sample_instance(lake, series_instance_uid, index)
    loaded = load_policy(policy)  # type: ignore[arg-type]
    deid = Deidentifier(loaded, secret=_secret(lake.settings.deid_secret_file))
    subject = "|".join((str(ds.get("IssuerOfPatientID", "")), str(ds.get("PatientID", ""))))
    result = deid.deidentify(ds, subject_key=subject)
    table = tag_changes(ds, result.dataset, include_kept=include_kept)
    return DeidPreview(table, change_counts(table), result.burned_in_risk, loaded.name)


def burned_in_review(lake: Any, series_instance_uids: Iterable[str]) -> pd.DataFrame:
    """Instances whose pixels may show identifying text (a share holds them back).

    Returns
    -------
    pandas.DataFrame
        One row per flagged instance: ``series_instance_uid``, ``stack_number``,
        ``instance`` (index in the stack), ``modality``, ``series_description``, ``reason``
        (fixed texts, never values of the data).
    """
    rows: list[dict[str, Any]] = []
    for uid in series_instance_uids:
        stacks = lake.stacks(uid)
        for stack_number, path in zip(stacks.stack_number, stacks.store_path, strict=True):
            reader = StackReader(lake.fs, str(path))
            for k in range(reader.n_instances):
                from io import BytesIO

                ds = pydicom.dcmread(BytesIO(reader.header(k)), stop_before_pixels=True, force=True)
                reason = burned_in_risk(ds)
                if reason:
                    rows.append(
                        {
                            "series_instance_uid": str(uid),
                            "stack_number": int(stack_number),
                            "instance": k,
                            "modality": str(ds.get("Modality", "")),
                            "series_description": str(ds.get("SeriesDescription", "")),
                            "reason": reason,
                        }
                    )
    columns = [
        "series_instance_uid",
        "stack_number",
        "instance",
        "modality",
        "series_description",
        "reason",
    ]
    return pd.DataFrame(rows, columns=columns)


def burned_in_image(
    lake: Any, series_instance_uid: str, instance: int = 0, *, stack_number: int = 0
) -> np.ndarray:
    """The first frame of one instance as uint8 grey levels (colour is averaged), for review."""
    stacks = lake.stacks(series_instance_uid)
    match = stacks[stacks.stack_number == stack_number]
    if match.empty:
        raise QueryError(f"series {series_instance_uid} has no stack {stack_number}")
    reader = StackReader(lake.fs, str(match.store_path.iloc[0]))
    frames = np.asarray(reader.instance_frames(int(instance)), dtype="float64")
    if frames.size == 0:
        return np.zeros((1, 1), dtype="uint8")
    frame = frames[0]
    if frame.ndim == 3:
        frame = frame.mean(axis=-1)
    return window(frame, *auto_window(frame))


def share_batches(lake: Any, series_instance_uids: Sequence[str]) -> list[list[str]]:
    """Groups of the given series such that series sharing an accepted raw parent go together."""
    wanted = [str(u) for u in dict.fromkeys(series_instance_uids)]
    parent: dict[str, str] = {u: u for u in wanted}

    def find(u: str) -> str:
        while parent[u] != u:
            parent[u] = parent[parent[u]]
            u = parent[u]
        return u

    links = lake.links("accepted")
    by_raw: dict[str, list[str]] = {}
    if not links.empty:
        for uid, sha in zip(links.series_instance_uid, links.raw_sha256, strict=True):
            if str(uid) in parent:
                by_raw.setdefault(str(sha), []).append(str(uid))
    for members in by_raw.values():
        for other in members[1:]:
            parent[find(other)] = find(members[0])
    groups: dict[str, list[str]] = {}
    for u in wanted:
        groups.setdefault(find(u), []).append(u)
    return list(groups.values())


def _merge(total: AnonymizeReport, part: AnonymizeReport) -> None:
    for name in (
        "series",
        "instances",
        "instances_new",
        "held_back",
        "raw_files",
        "raw_refused",
        "vault_records_new",
    ):
        setattr(total, name, getattr(total, name) + getattr(part, name))
    for key, n in part.held_back_reasons.items():
        total.held_back_reasons[key] = total.held_back_reasons.get(key, 0) + n
    total.seconds += part.seconds


def anonymize_series(
    lake: Any,
    destination: str | os.PathLike[str],
    series_instance_uids: Sequence[str],
    *,
    policy: PolicyLike = None,
    vault: Any = None,
    raw: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> AnonymizeReport:
    """:meth:`Lake.anonymize` of the given series, in groups, reporting ``progress(done, total)``.

    ``total`` counts series. ``subjects`` in the report is the largest count of one group
    (the same subject may appear in several groups).
    """
    batches = share_batches(lake, series_instance_uids)
    total = AnonymizeReport(destination=os.fspath(destination))
    done = 0
    n = sum(len(b) for b in batches)
    if progress:
        progress(0, n)
    for batch in batches:
        part = lake.anonymize(
            destination, series_instance_uid=list(batch), policy=policy, vault=vault, raw=raw
        )
        _merge(total, part)
        total.subjects = max(total.subjects, part.subjects)
        done += len(batch)
        if progress:
            progress(done, n)
    return total
