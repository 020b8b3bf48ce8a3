"""Mining on the lake: :meth:`MiningMixin.mine` and :meth:`MiningMixin.measures`.

A thin mixin of :class:`imagelake.lake.Lake` over :mod:`imagelake.mining`: it selects the
stores, hands the lake's URL, registry, user and writer lock to
:func:`imagelake.mining.run_analysis`, and records the run in the audit log.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from imagelake.errors import LakeLockedError
from imagelake.index import measures_frame
from imagelake.mining import (
    Analysis,
    MiningReport,
    Progress,
    Selection,
    resolve_analysis,
    run_analysis,
    select_raw,
    select_stacks,
)

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from imagelake._fs import LakeFS
    from imagelake.audit import AuditLog
    from imagelake.config import Settings
    from imagelake.db import Database

__all__ = ["MiningMixin"]


class MiningMixin:
    """Dask mining over the lake's stores, with measures kept with provenance."""

    fs: LakeFS
    db: Database
    settings: Settings
    audit: AuditLog

    if TYPE_CHECKING:

        def writer_lock(self) -> AbstractContextManager[None]: ...

    def mining_selection(
        self,
        filters: Mapping[str, Any] | None = None,
        /,
        *,
        raw: bool = False,
        stacks: Literal["all", "main"] = "all",
        **conditions: Any,
    ) -> Selection:
        """The stores a mining run would read: image stacks of the matching series, or
        with ``raw=True`` raw objects with decoded arrays (filters on the raw table)."""
        merged = {**(filters or {}), **conditions}
        if raw:
            return select_raw(self.fs, self.db, merged)
        return select_stacks(self.fs, self.db, merged, stacks=stacks)

    def mine(
        self,
        analysis: str | Analysis | Callable[..., Mapping[str, Any]] = "series-stats",
        filters: Mapping[str, Any] | None = None,
        /,
        *,
        params: Mapping[str, Any] | None = None,
        scheduler: str | None = None,
        client: Any = None,
        stacks: Literal["all", "main"] = "all",
        force: bool = False,
        progress: Progress | bool | None = None,
        **conditions: Any,
    ) -> MiningReport:
        """Run an analysis over the matching series (or raw objects) on Dask, and store
        its measures in the registry and the index with provenance.

        Parameters
        ----------
        analysis
            A registered name (``series-stats``, ``hu-histogram``, ``body-mask``,
            ``radiomics``, ``raw-stats``, or one from the entry-point group
            ``imagelake.analyses``), ``"module:function"``, an
            :class:`imagelake.mining.Analysis` or a plain function.
        filters, conditions
            Which series (as :meth:`query`: ``Modality="CT"``, ``"measure.mean": "0:"``);
            for an analysis that takes raw stores, filters on the raw table
            (``format="ismrmrd"``).
        params
            The analysis' parameters (its defaults fill in the rest).
        scheduler, client
            A Dask scheduler address or an existing client; default the ``scheduler``
            setting, ``DASK_SCHEDULER_ADDRESS``, else a LocalCluster sized to the machine.
        stacks
            ``"all"`` image stacks of each series, or ``"main"`` (stack 0) only.
        force
            Recompute targets whose measures are already known.
        progress
            ``progress(stage, done, total)`` or True for Dask's progress bar.

        Returns
        -------
        MiningReport
            Counts (computed, skipped as unchanged, failed) and ``frame``, one row per
            store with its measures. Targets whose provenance (analysis, version, code,
            parameters, store content) is already in the registry are not computed again.
        """
        found = resolve_analysis(analysis)
        merged = {**(filters or {}), **conditions}
        selection = self.mining_selection(merged, raw=found.takes == "raw", stacks=stacks)

        def audit(report: MiningReport) -> None:
            self.audit.record(
                "mine",
                user=self.settings.user,
                objects=[f"job:{report.job_id}"],
                # filter values may be patient identifiers: only the fields are audited
                details={**report.summary(), "params": report.params, "filters": sorted(merged)},
            )

        return run_analysis(
            self.fs,
            self.db,
            found,
            selection,
            params=params,
            user=self.settings.user,
            client=client,
            scheduler=scheduler,
            force=force,
            progress=progress,
            lock=self._waiting_writer_lock,
            after_write=audit,
        )

    @contextmanager
    def _waiting_writer_lock(self, timeout: float = 600.0) -> Iterator[None]:
        """The writer lock, waited for (an ingest may hold it): the results of a long run
        are not thrown away because someone else was writing when it finished."""
        deadline = time.monotonic() + timeout
        while True:
            with ExitStack() as stack:
                try:
                    stack.enter_context(self.writer_lock())
                except LakeLockedError:
                    if time.monotonic() >= deadline:
                        raise
                    time.sleep(0.5)
                    continue
                yield
                return

    def measures(
        self,
        analysis: str | None = None,
        *,
        name: str | None = None,
        wide: bool = False,
    ) -> pd.DataFrame:
        """Derived measures from the index, one row each (``wide``: one row per store,
        one column per measure), with their provenance columns (``tool``,
        ``tool_version``, ``params``, ``inputs``, ``provenance_key``, ``user``,
        ``created_at``)."""
        return measures_frame(self.fs, analysis=analysis, name=name, wide=wide)
