"""Facets of a series table: the values to choose from, and a choice as query conditions.

A catalog browser (the JupyterLab widget, or anything else) shows the distinct values of a few
columns, lets a person pick some, and asks the index for the matching series. This module is
that logic in plain pandas:

>>> series = lake.query()                                                   # doctest: +SKIP
>>> options = facet_options(series)                                         # doctest: +SKIP
>>> choice = FacetSelection(modalities=("CT",), thickness=(0.5, 1.5))
>>> choice.conditions()
{'modality': ['CT'], 'slice_thickness': (0.5, 1.5)}
>>> lake.query(**choice.conditions())                                       # doctest: +SKIP

Two facets are not columns of the index: *has a raw parent* and *has open alerts* come from the
links and alerts of the registry; :func:`imagelake.lake.explore.catalog_table` adds them as the
columns ``raw_parents`` and ``alerts``, and :meth:`FacetSelection.post_filter` uses them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

__all__ = ["SCANNER_SEPARATOR", "FacetOptions", "FacetSelection", "facet_options", "scanner_label"]

#: joins manufacturer and model into one scanner label ("SIEMENS / SOMATOM Force")
SCANNER_SEPARATOR = " / "


def scanner_label(manufacturer: Any, model: Any) -> str:
    """``"SIEMENS / SOMATOM Force"``; an unknown part is ``"?"``."""

    def text(v: Any) -> str:
        return "?" if v is None or (isinstance(v, float) and pd.isna(v)) or v == "" else str(v)

    return f"{text(manufacturer)}{SCANNER_SEPARATOR}{text(model)}"


def _distinct(df: pd.DataFrame, column: str) -> tuple[str, ...]:
    if column not in df or df.empty:
        return ()
    values = df[column].dropna().astype(str)
    return tuple(sorted({v for v in values if v.strip()}))


def _range(df: pd.DataFrame, column: str) -> tuple[Any, Any] | None:
    if column not in df or df.empty:
        return None
    values = df[column].dropna()
    if values.empty:
        return None
    return values.min(), values.max()


@dataclass(frozen=True)
class FacetOptions:
    """What there is to choose from in a series table."""

    modalities: tuple[str, ...] = ()
    scanners: tuple[str, ...] = ()
    kernels: tuple[str, ...] = ()
    sequences: tuple[str, ...] = ()
    thickness: tuple[float, float] | None = None
    dates: tuple[str, str] | None = None
    n_series: int = 0


def facet_options(series: pd.DataFrame) -> FacetOptions:
    """The distinct values and ranges of ``series`` (a :meth:`Lake.query` table)."""
    scanners: tuple[str, ...] = ()
    if not series.empty and "manufacturer" in series and "model" in series:
        scanners = tuple(
            sorted(
                {
                    scanner_label(m, d)
                    for m, d in zip(series.manufacturer, series.model, strict=True)
                }
            )
        )
    thick = _range(series, "slice_thickness")
    dates = _range(series, "study_date")
    return FacetOptions(
        modalities=_distinct(series, "modality"),
        scanners=scanners,
        kernels=_distinct(series, "convolution_kernel"),
        sequences=_distinct(series, "sequence_name"),
        thickness=(float(thick[0]), float(thick[1])) if thick else None,
        dates=(str(dates[0]), str(dates[1])) if dates else None,
        n_series=len(series),
    )


@dataclass(frozen=True)
class FacetSelection:
    """A choice of facet values; empty means "any".

    Attributes
    ----------
    modalities, kernels, sequences
        Any of these values.
    scanners
        Any of these ``"manufacturer / model"`` labels (see :func:`scanner_label`).
    thickness
        Inclusive slice thickness range in mm (either end may be ``None``).
    dates
        Inclusive study date range, ``("YYYYMMDD", "YYYYMMDD")`` (either end may be ``None``).
    has_raw_parent, has_alerts
        ``True``/``False`` to require or exclude; ``None`` for either.
    """

    modalities: Sequence[str] = field(default_factory=tuple)
    scanners: Sequence[str] = field(default_factory=tuple)
    kernels: Sequence[str] = field(default_factory=tuple)
    sequences: Sequence[str] = field(default_factory=tuple)
    thickness: tuple[float | None, float | None] | None = None
    dates: tuple[str | None, str | None] | None = None
    has_raw_parent: bool | None = None
    has_alerts: bool | None = None

    def conditions(self) -> dict[str, Any]:
        """Conditions for :meth:`imagelake.lake.Lake.query` / :func:`imagelake.index.query`.

        Scanners become the models chosen (exact pairs are checked by :meth:`post_filter`).
        """
        out: dict[str, Any] = {}
        if self.modalities:
            out["modality"] = list(self.modalities)
        if self.scanners:
            models = sorted({s.split(SCANNER_SEPARATOR, 1)[-1] for s in self.scanners} - {"?"})
            if models and len(models) == len(set(self.scanners)):
                out["model"] = models
        if self.kernels:
            out["convolution_kernel"] = list(self.kernels)
        if self.sequences:
            out["sequence_name"] = list(self.sequences)
        if self.thickness and any(v is not None for v in self.thickness):
            out["slice_thickness"] = tuple(self.thickness)
        if self.dates and any(v for v in self.dates):
            out["study_date"] = tuple(v or None for v in self.dates)
        return out

    def post_filter(self, series: pd.DataFrame) -> pd.DataFrame:
        """Rows of ``series`` that also satisfy what the index cannot ask itself.

        Exact scanner pairs, and the ``raw_parents`` / ``alerts`` columns that
        :func:`imagelake.lake.explore.catalog_table` adds.
        """
        keep = pd.Series(True, index=series.index)
        if self.scanners and not series.empty:
            labels = [
                scanner_label(m, d) for m, d in zip(series.manufacturer, series.model, strict=True)
            ]
            keep &= pd.Series([x in set(self.scanners) for x in labels], index=series.index)
        if self.has_raw_parent is not None and "raw_parents" in series:
            has = series.raw_parents.map(
                lambda v: bool(len(v)) if isinstance(v, list | tuple) else False
            )
            keep &= has if self.has_raw_parent else ~has
        if self.has_alerts is not None and "alerts" in series:
            has = series.alerts.map(
                lambda v: bool(len(v)) if isinstance(v, list | tuple) else False
            )
            keep &= has if self.has_alerts else ~has
        return series[keep].reset_index(drop=True)
