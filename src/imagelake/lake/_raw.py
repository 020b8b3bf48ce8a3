"""Raw files, raw-to-DICOM links, the review queue and reference reconstructions of a lake.

A mixin of :class:`imagelake.lake.Lake`, kept apart so each file holds one concept.

>>> lake.raw_files()                                   # doctest: +SKIP
>>> lake.link()                                        # propose, auto-accept, queue the rest
>>> lake.review_queue()                                # doctest: +SKIP
>>> lake.review(12, accept=True, note="same session")  # doctest: +SKIP
>>> lake.descendants(sha)                              # doctest: +SKIP
>>> lake.antecedents(series_uid)                       # doctest: +SKIP
>>> lake.reconstruct(sha)                              # raw -> DICOM -> ingested, linked
"""

from __future__ import annotations

import hmac
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import sqlalchemy as sa
import xarray as xr

from imagelake import model
from imagelake._fs import LakeFS
from imagelake._version import __version__
from imagelake.audit import AuditLog
from imagelake.config import Settings
from imagelake.db import Database
from imagelake.errors import ConfigError, QueryError
from imagelake.formats import PatientIdentity, RawContent, get_format
from imagelake.index import query_raw, query_series_with_raw
from imagelake.store import open_raw, read_original, restore_original

if TYPE_CHECKING:
    from imagelake.ingest import IngestReport

__all__ = ["DEFAULT_LINK_KEY_FILE", "LinkReport", "RawLinkMixin", "ReconReport"]

#: where the secret for keyed patient hashes lives unless ``link_key_file`` says otherwise
DEFAULT_LINK_KEY_FILE = "~/.config/imagelake/link.key"


@dataclass
class LinkReport:
    """What :meth:`RawLinkMixin.link` did."""

    raw_files: int = 0
    series: int = 0
    proposals: int = 0
    accepted: int = 0
    review: int = 0
    unchanged: int = 0
    kept_decisions: int = 0
    withdrawn: int = 0
    auto_accepted: int = 0  # proposals the engine accepts (new or unchanged)
    in_review: int = 0  # proposals waiting for a person (new or unchanged)
    seconds: float = 0.0

    def __str__(self) -> str:
        return (
            f"{self.raw_files} raw files x {self.series} open series: {self.proposals} "
            f"proposals, {self.auto_accepted} accepted ({self.accepted} new), "
            f"{self.in_review} waiting for review ({self.review} new), {self.kept_decisions} "
            f"decided links kept, {self.withdrawn} withdrawn ({self.seconds:.2f} s)"
        )


@dataclass
class ReconReport:
    """What :meth:`RawLinkMixin.reconstruct` made."""

    raw_sha256: str
    method: str
    series_instance_uids: list[str] = field(default_factory=list)
    link_ids: list[int] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def __str__(self) -> str:
        return (
            f"{self.method} of raw sha256:{self.raw_sha256[:16]}…: "
            f"{len(self.series_instance_uids)} series, linked ({self.seconds:.1f} s)"
        )


_SIDECAR_KEYS = (
    "modality",
    "manufacturer",
    "model",
    "software_version",
    "device_serial",
    "station_name",
    "institution",
    "acquired_at",
    "study_instance_uid",
    "frame_of_reference_uid",
    "series_instance_uids",
    "protocol_name",
    "sequence_name",
)


def _write_sidecar(path: Path, meta: Mapping[str, Any]) -> Path:
    """The description of a restored opaque file, as the sidecar that described it."""
    import yaml

    extra = meta.get("extra") or {}
    body: dict[str, Any] = {"label": extra.get("label") or "opaque"}
    for key in _SIDECAR_KEYS:
        value = meta.get(key)
        if value not in (None, "", []):
            body[key] = value
    if extra.get("notes"):
        body["notes"] = extra["notes"]
    sidecar = path.with_name(path.name + ".imagelake.yaml")
    if not sidecar.exists():
        sidecar.write_text(
            "# restored by imagelake raw get: the description this file was archived with\n"
            + yaml.safe_dump(body, sort_keys=False)
        )
    return sidecar


def _settled_series(conn: Any) -> set[str]:
    """Series with a link whose origin is certain: recon, manual, emulator, or a person's."""
    from imagelake.linking._db import AUTO_USER

    lk, se = model.link, model.series
    rows = conn.execute(
        sa.select(se.c.series_instance_uid)
        .join(lk, lk.c.series_id == se.c.id)
        .where(
            sa.or_(
                lk.c.method != "rules",
                sa.and_(lk.c.status == "accepted", lk.c.decided_by != AUTO_USER),
            )
        )
    ).all()
    return {r[0] for r in rows}


class RawLinkMixin:
    """Raw-file, link and reconstruction methods of :class:`~imagelake.lake.Lake`."""

    fs: LakeFS
    db: Database
    settings: Settings
    audit: AuditLog

    if TYPE_CHECKING:  # provided by Lake

        def writer_lock(self) -> AbstractContextManager[None]: ...
        def refresh(self) -> None: ...
        def ingest(
            self, paths: Any, *, workers: int | None = None, progress: Any = None, link: bool = True
        ) -> IngestReport: ...

    # -- keyed patient hashes ---------------------------------------------------------
    def _link_key(self) -> bytes:
        """The site key for keyed patient hashes, checked against the one this lake used.

        Hashes made with another key never match, so linking would see "another patient"
        everywhere and withdraw good links: a lake remembers its key's fingerprint (an HMAC
        of a constant, not the key) and refuses a different key.
        """
        from imagelake.linking import load_or_create_key

        path = os.path.expanduser(self.settings.link_key_file or DEFAULT_LINK_KEY_FILE)
        key = load_or_create_key(path)
        fingerprint = hmac.new(key, b"imagelake link key fingerprint", "sha256").hexdigest()[:16]
        known = self._info("link_key_fingerprint")
        if known is None:
            self._set_info("link_key_fingerprint", fingerprint)
        elif known != fingerprint:
            raise ConfigError(
                f"the link key in {path} (fingerprint {fingerprint}) is not the one this lake's "
                f"patient hashes were made with (fingerprint {known}); point "
                "IMAGELAKE_LINK_KEY_FILE (or the link_key_file setting) at that key"
            )
        return key

    def _check_link_key(self) -> None:
        """Fail before any change when the link key cannot be used (wrong key, a key file
        inside a lake, unreadable); makes the key on first use."""
        self._link_key()

    def _info(self, key: str) -> str | None:
        t = model.schema_info
        with self.db.connect() as conn:
            return conn.execute(sa.select(t.c.value).where(t.c.key == key)).scalar()

    def _set_info(self, key: str, value: str | None) -> None:
        t = model.schema_info
        with self.db.begin() as conn:
            conn.execute(sa.delete(t).where(t.c.key == key))
            if value is not None:
                conn.execute(sa.insert(t).values(key=key, value=value))

    def _link_pending(self) -> bool:
        return self._info("link_pending") == "1"

    def _set_link_pending(self, pending: bool) -> None:
        self._set_info("link_pending", "1" if pending else None)

    def _raw_patient_hasher(self) -> Callable[[PatientIdentity], dict[str, str | None]]:
        key: list[bytes] = []

        def hasher(identity: PatientIdentity) -> dict[str, str | None]:
            from imagelake.linking import patient_keys

            if not key:
                key.append(self._link_key())
            keys = patient_keys(identity.patient_id, identity.name, identity.birth_date, key=key[0])
            return {"id_key": keys.id_key, "name_dob_key": keys.name_dob_key}

        return hasher

    # -- raw files ----------------------------------------------------------------------
    def raw_files(
        self, filters: Mapping[str, Any] | None = None, /, **conditions: Any
    ) -> pd.DataFrame:
        """Raw objects (one row each) matching the conditions, from the index.

        Fields are the columns of ``index/raw.parquet`` (``format``, ``manufacturer``,
        ``model``, ``software_version``, ``device_serial``, ``acquired_at``...) and the
        spread meta fields (``modality``, ``protocol_name``, ``study_instance_uid``...).
        Each row lists the ``series_instance_uid`` of its accepted descendants.
        """
        return query_raw(self.fs, {**(filters or {}), **conditions})

    def query_raw(
        self,
        filters: Mapping[str, Any] | None = None,
        /,
        *,
        descendants: Mapping[str, Any] | None = None,
        **conditions: Any,
    ) -> pd.DataFrame:
        """Raw objects matching the conditions *and* having a descendant that matches
        ``descendants`` (series conditions, as for :meth:`query`).

        >>> lake.query_raw(descendants={"SliceThickness": 1.0})   # doctest: +SKIP
        """
        return query_raw(self.fs, {**(filters or {}), **conditions}, descendants=descendants)

    def query_with_raw(
        self,
        filters: Mapping[str, Any] | None = None,
        /,
        *,
        raw: Mapping[str, Any] | None = None,
        **conditions: Any,
    ) -> pd.DataFrame:
        """Series matching the conditions, with their raw parents (``raw_sha256`` lists).

        ``raw`` filters the parents: ``lake.query_with_raw(Modality="CT",
        ConvolutionKernel="B30*", raw={"model": "SOMATOM*"})`` returns only series having
        such a parent.
        """
        return query_series_with_raw(self.fs, {**(filters or {}), **conditions}, raw=raw)

    def _raw_row(self, sha256: str) -> Any:
        prefix = str(sha256).strip().lower()
        if not re.fullmatch(r"[0-9a-f]{4,64}", prefix):
            raise QueryError(
                f"{sha256!r} is not a raw file id: give its sha256 (64 hex digits, or a "
                "unique prefix of at least 4)"
            )
        r = model.raw_file
        with self.db.connect() as conn:
            rows = conn.execute(sa.select(r).where(r.c.sha256.startswith(prefix))).all()
        if not rows:
            raise QueryError(f"no raw file with sha256 {sha256!r} in {self.fs.url()}")
        if len(rows) > 1:
            raise QueryError(f"sha256 prefix {sha256!r} is ambiguous ({len(rows)} raw files)")
        return rows[0]

    def open_raw(self, sha256: str, *, chunks: Any = None) -> xr.Dataset:
        """The decoded arrays of a raw object (k-space, sinogram, RF...), lazily.

        ``sha256`` may be a unique prefix. Opaque raw files have no arrays: the dataset
        is empty but carries the metadata attributes.
        """
        row = self._raw_row(sha256)
        return open_raw(self.fs, row.store_path, chunks=chunks)

    def raw_original(self, sha256: str, member: str | None = None) -> bytes:
        """The original bytes of a raw object (or of one member file), checked by sha256."""
        row = self._raw_row(sha256)
        return read_original(self.fs, row.store_path, member)

    def restore_raw(self, sha256: str, dest: str | os.PathLike[str]) -> list[Path]:
        """Write a raw object's original files, byte-exact and verified, into
        ``dest/<first 12 hex of its sha256>/`` (one folder per object).

        An opaque file gets its description back as a sidecar, so ingesting the restored
        folder again recognises it. A different file already at a target path is an error;
        the same bytes are left alone.
        """
        from imagelake._fs import sha256_file

        row = self._raw_row(sha256)
        folder = Path(dest) / row.sha256[:12]
        members = (row.meta or {}).get("members") or []
        for member in members:
            target = folder / str(member.get("name", ""))
            if target.is_file() and sha256_file(target) != member.get("sha256"):
                raise ConfigError(
                    f"{target} exists and differs from the raw file's member; restore into "
                    "another folder"
                )
        out = restore_original(self.fs, row.store_path, folder)
        meta = row.meta or {}
        if row.format == "opaque" and len(out) == 1:
            out.append(_write_sidecar(out[0], meta))
        self.audit.record(
            "raw_restore",
            user=self.settings.user,
            objects=[f"raw:{row.sha256}"],
            details={"files": len(out)},
        )
        return out

    def verify_raw(self) -> list[Any]:
        """Fixity of every raw store (an empty list means intact)."""
        from imagelake.store import verify_store

        with self.db.connect() as conn:
            rows = conn.execute(sa.select(model.raw_file.c.store_path, model.raw_file.c.meta)).all()
        problems: list[Any] = []
        for path, meta in rows:
            if path:
                problems.extend(verify_store(self.fs, path, (meta or {}).get("manifest_sha256")))
        return problems

    # -- links --------------------------------------------------------------------------
    def link(
        self,
        raws: Iterable[str] | None = None,
        *,
        accept: float | None = None,
        review: float | None = None,
    ) -> LinkReport:
        """Propose raw→series links from the evidence in both headers; accept the strong
        ones, queue the weak or conflicting ones for review (:meth:`review_queue`).

        Human decisions are never overridden; links made by reconstruction stay.
        """
        from imagelake.linking import LinkEngine, patient_keys
        from imagelake.linking._db import apply_proposals, raw_records, series_records

        started = time.perf_counter()
        engine = LinkEngine(
            accept=self.settings.link_accept if accept is None else accept,
            review=self.settings.link_review if review is None else review,
        )
        key: list[bytes] = []

        def series_hasher(pid: str | None, name: str | None, dob: str | None) -> Any:
            if not key:
                key.append(self._link_key())
            return patient_keys(pid, name, dob, key=key[0])

        with self.writer_lock():
            with self.db.connect() as conn:
                raw = raw_records(conn, list(raws) if raws is not None else None)
                refs = set().union(*(r.referenced_sop_uids for r in raw)) if raw else set()
                series = series_records(conn, series_hasher, referenced_sops=refs) if raw else []
                settled = _settled_series(conn)
            # a series whose origin is known (made here by a reconstruction, linked by hand,
            # or accepted by a person) is not offered to the rules again
            series = [s for s in series if s.key not in settled]
            proposals = engine.propose(raw, series)
            with self.db.begin() as conn:
                summary = apply_proposals(conn, proposals, raw_keys=[r.key for r in raw])
            report = LinkReport(
                raw_files=len(raw),
                series=len(series),
                proposals=len(proposals),
                accepted=summary.accepted,
                review=summary.review,
                unchanged=summary.unchanged,
                kept_decisions=summary.kept_decisions,
                withdrawn=summary.withdrawn,
                auto_accepted=sum(1 for p in proposals if p.decision == "accept"),
                in_review=sum(1 for p in proposals if p.decision != "accept"),
                seconds=time.perf_counter() - started,
            )
            self.refresh()
            self.audit.record(
                "link",
                user=self.settings.user,
                objects=[f"raw:{r.key}" for r in raw][:1000],
                details={
                    "proposals": report.proposals,
                    "accepted": report.accepted,
                    "review": report.review,
                    "withdrawn": report.withdrawn,
                },
            )
        return report

    def _links_select(self) -> sa.Select[Any]:
        lk, r, s = model.link, model.raw_file, model.series
        return (
            sa.select(
                lk.c.id.label("link_id"),
                r.c.sha256.label("raw_sha256"),
                r.c.format,
                s.c.series_instance_uid,
                s.c.modality,
                s.c.series_description,
                lk.c.method,
                lk.c.confidence,
                lk.c.status,
                lk.c.decided_by,
                lk.c.decided_at,
                lk.c.evidence,
            )
            .join(r, r.c.id == lk.c.raw_id)
            .join(s, s.c.id == lk.c.series_id)
            .order_by(lk.c.id)
        )

    def links(self, status: str | Sequence[str] | None = None) -> pd.DataFrame:
        """Raw→series links (``status``: accepted, proposed, rejected; ``None``: all)."""
        sel = self._links_select()
        if status is not None:
            wanted = [status] if isinstance(status, str) else list(status)
            bad = sorted(set(wanted) - {"accepted", "proposed", "rejected"})
            if bad:
                raise QueryError(f"unknown link status {bad}; valid: accepted, proposed, rejected")
            sel = sel.where(model.link.c.status.in_(wanted))
        with self.db.connect() as conn:
            return pd.DataFrame(
                conn.execute(sel).mappings().all(), columns=list(sel.selected_columns.keys())
            )

    def review_queue(self) -> pd.DataFrame:
        """Proposed links waiting for a person: weak evidence, conflicts, ambiguity."""
        return self.links("proposed")

    def review(
        self, link_id: int, *, accept: bool, user: str | None = None, note: str | None = None
    ) -> dict[str, Any]:
        """Accept or reject a link, recording who and when (audited)."""
        from imagelake.linking._db import decide

        who = user or self.settings.user
        with self.writer_lock():
            with self.db.begin() as conn:
                decision = decide(conn, int(link_id), accept=accept, user=who, note=note)
            self.refresh()
            self.audit.record(
                "link_review",
                user=who,
                objects=[
                    f"raw:{decision['raw_sha256']}",
                    f"series:{decision['series_instance_uid']}",
                ],
                details={
                    "link_id": decision["link_id"],
                    "status": decision["status"],
                    "previous": decision["previous"],
                },
            )
        return decision

    def add_link(
        self, sha256: str, series_instance_uid: str, *, user: str | None = None, note: str = ""
    ) -> int:
        """Link a raw object to a series by hand (method ``manual``, accepted, audited).

        For links the evidence cannot show (a raw file whose header says nothing useful).
        """
        from imagelake.linking._db import record_link

        who = user or self.settings.user
        row = self._raw_row(sha256)
        with self.writer_lock():
            with self.db.begin() as conn:
                link_id = record_link(
                    conn,
                    row.sha256,
                    series_instance_uid,
                    method="manual",
                    user=who,
                    evidence=[{"rule": "manual", "note": note, "by": who}],
                )
            self.refresh()
            self.audit.record(
                "link_manual",
                user=who,
                objects=[f"raw:{row.sha256}", f"series:{series_instance_uid}"],
                details={"link_id": link_id},
            )
        return link_id

    def descendants(self, sha256: str, *, status: str | Sequence[str] = "accepted") -> pd.DataFrame:
        """Series derived from a raw object (one raw → many series), with the link."""
        row = self._raw_row(sha256)
        df = self.links(status)
        return df[df.raw_sha256 == row.sha256].reset_index(drop=True)

    def antecedents(
        self, series_instance_uid: str, *, status: str | Sequence[str] = "accepted"
    ) -> pd.DataFrame:
        """Raw objects a series derives from, with the link."""
        df = self.links(status)
        return df[df.series_instance_uid == series_instance_uid].reset_index(drop=True)

    # -- reconstruction ---------------------------------------------------------------
    def _content(self, row: Any, folder: str) -> RawContent:
        paths = [os.fspath(p) for p in restore_original(self.fs, row.store_path, folder)]
        fmt = get_format(row.format)
        if len(paths) == 1 and fmt.group_key(paths[0]) is None:
            return fmt.open(paths[0])
        return fmt.open_group(sorted(paths))

    def reconstruct(self, sha256: str, method: str | None = None, **params: Any) -> ReconReport:
        """Reconstruct a raw object with a reference method, ingest the DICOM series it
        gives, and link them to it (method ``recon``, with full provenance).

        Re-running gives the same UIDs: nothing is doubled.
        """
        import pydicom

        from imagelake.linking._db import LinkError, record_link
        from imagelake.recon import (
            get_reconstructor,
            reconstructors,
            reconstructors_for,
            write_recon_series,
        )

        started = time.perf_counter()
        row = self._raw_row(sha256)
        if method is None:
            found = reconstructors_for(row.format)
            if not found:
                raise LinkError(
                    f"no reconstruction for raw format {row.format!r}; "
                    f"available: {', '.join(reconstructors.names())}"
                )
            recon = found[0]
        else:
            recon = get_reconstructor(method)
        with tempfile.TemporaryDirectory(prefix="imagelake-recon-") as tmp:
            content = self._content(row, os.path.join(tmp, "raw"))
            result = recon.run(content, **params)
            out_dir = Path(tmp) / "dicom"
            written = write_recon_series(result, content.meta, out_dir, raw_sha256=row.sha256)
            self.ingest([out_dir], link=False)
            uids = sorted(
                {
                    str(pydicom.dcmread(p, stop_before_pixels=True).SeriesInstanceUID)
                    for p in written
                }
            )
        provenance = dict(result.provenance)
        provenance.update({"raw_sha256": row.sha256, "imagelake": __version__})
        report = ReconReport(raw_sha256=row.sha256, method=recon.name, provenance=provenance)
        with self.writer_lock():
            with self.db.begin() as conn:
                for uid in uids:
                    report.link_ids.append(
                        record_link(
                            conn,
                            row.sha256,
                            uid,
                            method="recon",
                            user=self.settings.user,
                            evidence=[{"rule": "recon", "provenance": provenance}],
                        )
                    )
            report.series_instance_uids = uids
            self.refresh()
            self.audit.record(
                "reconstruct",
                user=self.settings.user,
                objects=[f"raw:{row.sha256}", *(f"series:{u}" for u in uids)],
                details={"method": recon.name, "version": provenance.get("version")},
            )
        report.seconds = time.perf_counter() - started
        return report
