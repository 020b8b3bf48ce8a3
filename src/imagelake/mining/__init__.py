"""Dask-scale mining: analyses over a lake's stores, with measures stored with provenance.

>>> from imagelake import mining                                           # doctest: +SKIP
>>> sel = mining.select_stacks(lake.fs, lake.db, {"Modality": "CT"})       # doctest: +SKIP
>>> with mining.client_for("tcp://scheduler:8786") as client:              # doctest: +SKIP
...     df = mining.map_series("series-stats", sel, client=client)
>>> report = lake.mine("hu-histogram", {"Modality": "CT"})                 # doctest: +SKIP
>>> lake.query({"measure.bone_fraction": "0.1:"})                          # doctest: +SKIP

* selection (:mod:`._selection`): a query → one :class:`Target` per store, with its
  content identity;
* clients (:mod:`._client`): a scheduler address, or a LocalCluster sized to the machine;
* map / reduce (:mod:`._map`): one Dask task per store, reading chunks lazily on the
  workers; results as pandas (or lazy Dask) frames;
* analyses (:mod:`._analysis`): a registry (entry-point group ``imagelake.analyses``),
  ``module:function`` strings, and the built-ins of :mod:`.builtin`;
* provenance (:mod:`._provenance`) and persistent runs (:mod:`._engine`): unchanged
  inputs are skipped, changed ones recomputed, measures written with provenance;
* ROI and patch sampling (:mod:`.sampling`).

Layer L3: uses store, index, db and config; never the lake (the lake calls it).
"""

from __future__ import annotations

from imagelake.mining._analysis import (
    Analysis,
    Measure,
    analyses,
    analysis,
    code_hash,
    get_analysis,
    resolve_analysis,
)
from imagelake.mining._client import client_for, default_workers, get_client, scheduler_address
from imagelake.mining._engine import MiningReport, run_analysis
from imagelake.mining._map import (
    MiningError,
    Progress,
    TargetResult,
    compute_targets,
    evaluate,
    map_series,
    open_target,
    reduce_series,
)
from imagelake.mining._provenance import existing_keys, measures_table, provenance_key
from imagelake.mining._selection import Selection, Target, select_raw, select_stacks
from imagelake.mining.sampling import grid_patches, patch_origins, roi, roi_mm, sample_patches

__all__ = [
    "Analysis",
    "Measure",
    "MiningError",
    "MiningReport",
    "Progress",
    "Selection",
    "Target",
    "TargetResult",
    "analyses",
    "analysis",
    "client_for",
    "code_hash",
    "compute_targets",
    "default_workers",
    "evaluate",
    "existing_keys",
    "get_analysis",
    "get_client",
    "grid_patches",
    "map_series",
    "measures_table",
    "open_target",
    "patch_origins",
    "provenance_key",
    "reduce_series",
    "resolve_analysis",
    "roi",
    "roi_mm",
    "run_analysis",
    "sample_patches",
    "scheduler_address",
    "select_raw",
    "select_stacks",
]
