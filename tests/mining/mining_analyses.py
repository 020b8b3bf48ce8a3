"""Analyses the mining tests run by name (``mining_analyses:...``); workers import this module.

Each one is plain numpy/xarray over the lazily opened stack, so the tests can compare the
stored measures with the same formulas applied to the source files.
"""

from __future__ import annotations

import time
from typing import Any

from imagelake.mining import Analysis, Measure, analysis


def _stats(ds: Any) -> dict[str, Any]:
    image = ds.image
    return {"mean": Measure(image.mean(), "HU"), "max": Measure(image.max(), "HU")}


@analysis("slow-stats", version="1", params={"delay": 0.0})
def slow_stats(ds: Any, *, delay: float = 0.0) -> dict[str, Any]:
    """Mean and maximum, after sleeping ``delay`` seconds (time to kill a worker)."""
    time.sleep(delay)
    image = ds.image
    return {"mean": Measure(image.mean(), "HU"), "max": Measure(image.max(), "HU")}


def plain_sum(ds: Any) -> dict[str, Any]:
    """A plain function given as ``module:function``: the sum of the image."""
    return {"sum": ds.image.sum()}


def stats_v1(ds: Any) -> dict[str, Any]:
    return _stats(ds)


def stats_v2(ds: Any) -> dict[str, Any]:
    # the same results as stats_v1, but different code: provenance must see it
    out = _stats(ds)
    return out


def versioned(version: str) -> Analysis:
    """The same function under an explicit version string."""
    return Analysis("versioned-stats", stats_v1, version=version)


def recoded() -> Analysis:
    """The same name and version as ``versioned("1")``, with another function body."""
    return Analysis("versioned-stats", stats_v2, version="1")


def fails_on_mr(ds: Any) -> dict[str, Any]:
    if ds.attrs.get("modality") == "MR":
        raise ValueError("no MR please")
    return {"mean": ds.image.mean()}
