"""CatalogBrowser: facets → series table → selection (feeds a viewer) and thumbnails."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import ipywidgets as w
import pandas as pd

from imagelake.errors import ImagelakeError
from imagelake.index import FacetOptions, FacetSelection, facet_options
from imagelake.lake.explore import BROWSE_COLUMNS, catalog_table, series_thumbnail
from imagelake.widgets._logic import alerts_html, png, series_label, table_html

__all__ = ["CatalogBrowser"]

_TRISTATE = {"any": None, "yes": True, "no": False}


def _date(text: str | None) -> dt.date | None:
    if not text or len(text) < 8 or not text[:8].isdigit():
        return None
    try:
        return dt.date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        return None


class CatalogBrowser(w.VBox):
    """Browse a lake's series by facets; the selected series feed other widgets.

    Parameters
    ----------
    lake
        A :class:`~imagelake.lake.Lake` (or an object with ``query``, ``links``, ``alerts``
        and ``open_series``).
    viewer
        A :class:`~imagelake.widgets.SeriesViewer` that shows the first selected series.
    thumbnails
        How many selected series get a mosaic thumbnail.

    The facets are modality, scanner (manufacturer / model), kernel, sequence, slice
    thickness range, study dates, has a raw parent, has open alerts. Each change asks
    :func:`imagelake.lake.explore.catalog_table` (``lake.query`` with the facet conditions).
    """

    def __init__(self, lake: Any, *, viewer: Any = None, thumbnails: int = 4) -> None:
        self.lake = lake
        self.viewer = viewer
        self.max_thumbnails = thumbnails
        self.table: pd.DataFrame = pd.DataFrame()
        self._callbacks: list[Callable[[list[str]], None]] = []
        everything = catalog_table(lake)
        self.options: FacetOptions = facet_options(everything)
        o = self.options
        box = w.Layout(width="230px", height="90px")
        self.modality = w.SelectMultiple(
            options=list(o.modalities), description="modality", layout=box
        )
        self.scanner = w.SelectMultiple(options=list(o.scanners), description="scanner", layout=box)
        self.kernel = w.SelectMultiple(options=list(o.kernels), description="kernel", layout=box)
        self.sequence = w.SelectMultiple(
            options=list(o.sequences), description="sequence", layout=box
        )
        lo, hi = o.thickness or (0.0, 1.0)
        self.thickness = w.FloatRangeSlider(
            value=(lo, hi),
            min=lo,
            max=max(hi, lo + 0.1),
            step=0.1,
            description="thickness mm",
            continuous_update=False,
            readout_format=".1f",
        )
        d0, d1 = o.dates or (None, None)
        self.date_from = w.DatePicker(value=_date(d0), description="from")
        self.date_to = w.DatePicker(value=_date(d1), description="to")
        self.has_raw = w.Dropdown(options=list(_TRISTATE), value="any", description="raw parent")
        self.has_alerts = w.Dropdown(options=list(_TRISTATE), value="any", description="alerts")
        self.count = w.HTML()
        self.series = w.SelectMultiple(
            options=[], description="series", rows=10, layout=w.Layout(width="98%")
        )
        self.details = w.HTML(layout=w.Layout(max_height="260px", overflow="auto"))
        self.alerts = w.HTML()
        self.thumbs = w.HBox([])
        for control in (
            self.modality,
            self.scanner,
            self.kernel,
            self.sequence,
            self.thickness,
            self.date_from,
            self.date_to,
            self.has_raw,
            self.has_alerts,
        ):
            control.observe(self._on_facet, "value")
        self.series.observe(self._on_select, "value")
        super().__init__(
            [
                w.HBox([self.modality, self.scanner, self.kernel, self.sequence]),
                w.HBox([self.thickness, self.date_from, self.date_to]),
                w.HBox([self.has_raw, self.has_alerts, self.count]),
                self.series,
                self.alerts,
                self.thumbs,
                self.details,
            ]
        )
        self.add_class("imagelake-catalog-browser")
        self._show(everything)

    # -- the model ------------------------------------------------------------------------
    def selection(self) -> FacetSelection:
        """The facet choice the controls describe."""
        o = self.options
        thickness = None
        if o.thickness and tuple(self.thickness.value) != tuple(o.thickness):
            thickness = (float(self.thickness.value[0]), float(self.thickness.value[1]))
        d0 = self.date_from.value.strftime("%Y%m%d") if self.date_from.value else None
        d1 = self.date_to.value.strftime("%Y%m%d") if self.date_to.value else None
        dates = None if o.dates and (d0, d1) == o.dates else (d0, d1)
        return FacetSelection(
            modalities=tuple(self.modality.value),
            scanners=tuple(self.scanner.value),
            kernels=tuple(self.kernel.value),
            sequences=tuple(self.sequence.value),
            thickness=thickness,
            dates=dates if dates and any(dates) else None,
            has_raw_parent=_TRISTATE[self.has_raw.value],
            has_alerts=_TRISTATE[self.has_alerts.value],
        )

    @property
    def selected(self) -> list[str]:
        """SeriesInstanceUIDs of the selected series."""
        return list(self.series.value)

    def on_select(self, callback: Callable[[list[str]], None]) -> None:
        """Call ``callback(series_instance_uids)`` whenever the selection changes."""
        self._callbacks.append(callback)

    def refresh(self) -> None:
        """Query the lake again with the current facets."""
        self._show(catalog_table(self.lake, self.selection()))

    # -- drawing --------------------------------------------------------------------------
    def _show(self, table: pd.DataFrame) -> None:
        self.table = table
        options = [(series_label(row), str(row.series_instance_uid)) for row in table.itertuples()]
        keep = [uid for uid in self.series.value if uid in {v for _, v in options}]
        self.series.options = options
        self.series.value = tuple(keep)
        total = self.options.n_series
        self.count.value = f"<b>{len(table)}</b> of {total} series"
        cols = [c for c in BROWSE_COLUMNS if c in table.columns]
        self.details.value = table_html(table, cols, max_rows=50)

    def _on_facet(self, _change: Any) -> None:
        self.refresh()

    def _on_select(self, _change: Any) -> None:
        uids = self.selected
        rows = (
            self.table[self.table.series_instance_uid.isin(uids)] if uids else self.table.iloc[:0]
        )
        kinds = [k for kinds in rows.get("alerts", []) for k in kinds]
        self.alerts.value = alerts_html(kinds, subject="selected series")
        thumbs = []
        for uid in uids[: self.max_thumbnails]:
            try:
                grid = series_thumbnail(self.lake, uid, tiles=9, tile_size=64)
            except ImagelakeError as exc:  # e.g. a header-only series has no picture
                thumbs.append(w.HTML(f"<i>no thumbnail: {type(exc).__name__}</i>"))
                continue
            thumbs.append(w.Image(value=png(grid, size=192), format="png"))
        self.thumbs.children = thumbs
        if self.viewer is not None and uids:
            self.viewer.show(uids[0])
        for callback in self._callbacks:
            callback(uids)
