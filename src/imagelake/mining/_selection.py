"""Which stores a mining run reads: a query over the index, resolved to store paths.

A :class:`Selection` is the lake's URL and storage options plus one :class:`Target` per
store: an image stack of a series, or a raw object with decoded arrays. Each target
carries the identity of its content (the stack's content hash and manifest digest, or
the raw object's sha256), which is what provenance compares. A selection is small and
picklable; workers open the stores themselves from it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd
import sqlalchemy as sa

from imagelake import model
from imagelake._fs import LakeFS
from imagelake.db import Database
from imagelake.errors import ConfigError
from imagelake.index import query, query_raw

__all__ = ["Selection", "Target", "select_raw", "select_stacks"]

Kind = Literal["stack", "raw"]


@dataclass(frozen=True)
class Target:
    """One store a mining run reads.

    Attributes
    ----------
    kind
        ``"stack"`` or ``"raw"``.
    store_path
        Path of the store inside the lake.
    identity
        What the content is: ``"<content hash>:<manifest sha256>"`` of a stack, the
        sha256 of a raw object. Provenance keys include it.
    series_instance_uid, stack_number, series_id
        The stack's series (stacks only).
    raw_sha256, raw_id
        The raw object (raw only).
    modality
        The series' modality, or the raw object's.
    """

    kind: Kind
    store_path: str
    identity: str
    series_instance_uid: str | None = None
    stack_number: int | None = None
    series_id: int | None = None
    raw_sha256: str | None = None
    raw_id: int | None = None
    modality: str | None = None

    @property
    def label(self) -> str:
        if self.kind == "raw":
            return f"raw {str(self.raw_sha256)[:12]}"
        return f"{self.series_instance_uid} #{self.stack_number}"

    def key_columns(self) -> dict[str, Any]:
        """The columns that name this target in result frames."""
        return {
            "series_instance_uid": self.series_instance_uid,
            "stack_number": self.stack_number,
            "raw_sha256": self.raw_sha256,
            "modality": self.modality,
        }


@dataclass(frozen=True)
class Selection:
    """The stores of a mining run, and how workers reach the lake.

    Attributes
    ----------
    lake_url
        The lake's root URL (local path or fsspec URL).
    storage_options
        fsspec options of a remote lake (shipped to the workers; empty for local lakes).
    targets
        One per store.
    """

    lake_url: str
    storage_options: Mapping[str, Any] = field(default_factory=dict)
    targets: tuple[Target, ...] = ()

    def __len__(self) -> int:
        return len(self.targets)

    def __iter__(self) -> Iterator[Target]:
        return iter(self.targets)

    def subset(self, targets: Sequence[Target]) -> Selection:
        return Selection(self.lake_url, self.storage_options, tuple(targets))

    def store_url(self, target: Target) -> str:
        return LakeFS(self.lake_url, **dict(self.storage_options)).url(target.store_path)

    def to_frame(self) -> pd.DataFrame:
        """One row per target: its keys, kind, store path and identity."""
        columns = [
            "kind",
            "series_instance_uid",
            "stack_number",
            "raw_sha256",
            "modality",
            "store_path",
            "identity",
        ]
        return pd.DataFrame(
            [
                {
                    "kind": t.kind,
                    **t.key_columns(),
                    "store_path": t.store_path,
                    "identity": t.identity,
                }
                for t in self.targets
            ],
            columns=columns,
        )


def _lake_of(lakefs: LakeFS) -> tuple[str, dict[str, Any]]:
    opts = {} if lakefs.is_local else dict(lakefs.storage_options)
    return lakefs.url(), opts


def select_stacks(
    lakefs: LakeFS,
    db: Database,
    filters: Mapping[str, Any] | None = None,
    *,
    stacks: Literal["all", "main"] = "all",
    modalities: Sequence[str] = (),
) -> Selection:
    """The image stacks of the series matching ``filters`` (see :func:`imagelake.index.query`).

    Parameters
    ----------
    stacks
        ``"all"``: every image stack of each series (localizers, other geometries);
        ``"main"``: stack 0 only.
    modalities
        Keep only these modalities (empty: all).

    Stacks of non-image objects (``frame_dim`` ``none``) are never selected.
    """
    if stacks not in ("all", "main"):
        raise ConfigError(f"stacks must be 'all' or 'main', not {stacks!r}")
    found = query(lakefs, dict(filters or {}), columns=["series_id"])
    ids = [int(i) for i in found["series_id"]]
    st, se = model.stack, model.series
    rows: list[Any] = []
    if ids:
        sel = (
            sa.select(
                se.c.id,
                se.c.series_instance_uid,
                se.c.modality,
                st.c.stack_number,
                st.c.store_path,
                st.c.content_hash,
                st.c.manifest_sha256,
            )
            .join(se, se.c.id == st.c.series_id)
            .where(st.c.frame_dim != "none")
            .order_by(se.c.id, st.c.stack_number)
        )
        if stacks == "main":
            sel = sel.where(st.c.stack_number == 0)
        with db.connect() as conn:
            for start in range(0, len(ids), 500):  # bounded IN lists
                chunk = ids[start : start + 500]
                rows += conn.execute(sel.where(se.c.id.in_(chunk))).all()
        rows.sort(key=lambda r: (r.id, r.stack_number))
    wanted = set(modalities)
    targets = tuple(
        Target(
            kind="stack",
            store_path=r.store_path,
            identity=f"{r.content_hash}:{r.manifest_sha256}",
            series_instance_uid=r.series_instance_uid,
            stack_number=int(r.stack_number),
            series_id=int(r.id),
            modality=r.modality,
        )
        for r in rows
        if not wanted or r.modality in wanted
    )
    url, opts = _lake_of(lakefs)
    return Selection(url, opts, targets)


def select_raw(
    lakefs: LakeFS,
    db: Database,
    filters: Mapping[str, Any] | None = None,
    *,
    arrays: Sequence[str] = (),
) -> Selection:
    """Raw objects with decoded arrays matching ``filters`` (columns of the raw table:
    ``format``, ``model``, ``modality``...; see :func:`imagelake.index.query_raw`).

    ``arrays`` keeps only objects holding every one of these arrays (e.g. ``["kspace"]``).
    """
    found = query_raw(lakefs, dict(filters or {}), status=None)
    shas = [str(s) for s, a in zip(found["sha256"], found["arrays"], strict=True) if len(a)]
    r = model.raw_file
    rows: list[Any] = []
    with db.connect() as conn:
        for start in range(0, len(shas), 500):
            chunk = shas[start : start + 500]
            rows += conn.execute(
                sa.select(r.c.id, r.c.sha256, r.c.store_path, r.c.meta)
                .where(r.c.sha256.in_(chunk), r.c.store_path.is_not(None))
                .order_by(r.c.id)
            ).all()
    rows.sort(key=lambda row: row.id)
    targets = []
    for row in rows:
        meta = row.meta or {}
        held = set(meta.get("arrays") or {})
        if not held or not set(arrays) <= held:
            continue
        targets.append(
            Target(
                kind="raw",
                store_path=row.store_path,
                identity=row.sha256,
                raw_sha256=row.sha256,
                raw_id=int(row.id),
                modality=meta.get("modality"),
            )
        )
    url, opts = _lake_of(lakefs)
    return Selection(url, opts, tuple(targets))
