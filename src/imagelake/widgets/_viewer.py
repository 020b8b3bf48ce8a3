"""SeriesViewer: one series, slice by slice, in three planes, with window/level presets."""

from __future__ import annotations

from typing import Any

import ipywidgets as w

from imagelake.store.views import (
    ORIENTATIONS,
    WINDOW_PRESETS,
    Plane,
    auto_window,
    plane_count,
    read_plane,
    window,
)
from imagelake.widgets._logic import png

__all__ = ["SeriesViewer"]

_AUTO = "auto"


class SeriesViewer(w.VBox):
    """Scroll through a series' main stack; reformat; window/level; read values in mm and HU.

    Parameters
    ----------
    lake
        A :class:`~imagelake.lake.Lake` (or an object with ``open_series``).
    series_instance_uid
        The series to show first (``None``: nothing until :meth:`show`).
    size
        Displayed image size in pixels (the longer side).

    Every redraw reads one plane (:func:`imagelake.store.views.read_plane`): only the chunks
    that intersect it.
    """

    def __init__(
        self, lake: Any, series_instance_uid: str | None = None, *, size: int = 320
    ) -> None:
        self.lake = lake
        self.size = size
        self.dataset: Any = None
        self.plane: Plane | None = None
        self.series_instance_uid: str | None = None
        self.orientation = w.ToggleButtons(
            options=list(ORIENTATIONS), value="axial", description="plane"
        )
        self.slice = w.IntSlider(
            value=0, min=0, max=0, description="slice", continuous_update=False
        )
        self.preset = w.Dropdown(
            options=[_AUTO, *WINDOW_PRESETS], value=_AUTO, description="window"
        )
        self.center = w.FloatText(value=40.0, description="center", layout=w.Layout(width="160px"))
        self.width = w.FloatText(value=400.0, description="width", layout=w.Layout(width="160px"))
        self.probe_row = w.IntSlider(
            value=0, min=0, max=0, description="row", continuous_update=False
        )
        self.probe_col = w.IntSlider(
            value=0, min=0, max=0, description="column", continuous_update=False
        )
        self.image = w.Image(format="png", layout=w.Layout(border="1px solid #ccc"))
        self.readout = w.Label(value="")
        self.caption = w.HTML(value="<i>no series selected</i>")
        self._quiet = False
        self._auto_pending = False
        self.orientation.observe(self._on_orientation, "value")
        self.preset.observe(self._on_preset, "value")
        for control in (self.slice, self.center, self.width, self.probe_row, self.probe_col):
            control.observe(self._on_redraw, "value")
        super().__init__(
            [
                self.caption,
                self.orientation,
                w.HBox([self.slice, self.preset, self.center, self.width]),
                w.HBox([self.image, w.VBox([self.probe_row, self.probe_col, self.readout])]),
            ]
        )
        self.add_class("imagelake-series-viewer")
        if series_instance_uid:
            self.show(series_instance_uid)

    # -- actions ------------------------------------------------------------------------
    def show(self, series_instance_uid: str, stack: int = 0) -> None:
        """Open a series (lazily: nothing is read until a plane is drawn) and draw its middle."""
        dataset = self.lake.open_series(series_instance_uid, stack)
        self.series_instance_uid = series_instance_uid
        if "image" not in dataset or dataset["image"].ndim != 3:
            self.dataset = None
            self.image.value = b""
            self.readout.value = ""
            self.caption.value = (
                "<i>this series has no image stack to show (header-only objects)</i>"
            )
            return
        self.dataset = dataset
        modality = str(self.dataset.attrs.get("modality", ""))
        shape = tuple(int(s) for s in self.dataset["image"].shape)
        self.caption.value = (
            f"<b>{modality}</b> series, stack {stack}: {' x '.join(map(str, shape))} "
            f"({self.dataset['image'].attrs.get('units', '') or 'stored values'})"
        )
        self._quiet = True
        try:
            self._reset_ranges()
            is_hu = modality == "CT" and self.dataset["image"].attrs.get("units") == "HU"
            self.preset.value = "soft tissue" if is_hu else _AUTO
        finally:
            self._quiet = False
        self._apply_preset()
        self.redraw()

    def redraw(self) -> None:
        """Read the current plane and draw it with the current window."""
        if self.dataset is None:
            return
        self.plane = read_plane(self.dataset, self.orientation.value, self.slice.value)
        if self._auto_pending:
            self._auto_pending = False
            center, width = auto_window(self.plane.values)
            self._quiet = True
            try:
                self.center.value, self.width.value = round(center, 1), round(width, 1)
            finally:
                self._quiet = False
        grey = window(self.plane.values, self.center.value, self.width.value)
        row, col = self.probe_row.value, self.probe_col.value
        self.image.value = png(grey, spacing=self.plane.spacing, size=self.size, marker=(row, col))
        self.readout.value = self.plane.readout(row, col)

    # -- events ---------------------------------------------------------------------------
    def _reset_ranges(self) -> None:
        n = plane_count(self.dataset, self.orientation.value)
        self.slice.max = max(n - 1, 0)
        self.slice.value = n // 2
        shape = self.dataset["image"].shape
        rows, cols = {
            "axial": (shape[1], shape[2]),
            "coronal": (shape[0], shape[2]),
            "sagittal": (shape[0], shape[1]),
        }[self.orientation.value]
        self.probe_row.max, self.probe_col.max = max(rows - 1, 0), max(cols - 1, 0)
        self.probe_row.value, self.probe_col.value = rows // 2, cols // 2

    def _apply_preset(self) -> None:
        if self.preset.value == _AUTO:
            self._auto_pending = True  # from the next plane drawn: no extra read
            return
        center, width = WINDOW_PRESETS[self.preset.value]
        self._quiet = True
        try:
            self.center.value, self.width.value = round(center, 1), round(width, 1)
        finally:
            self._quiet = False

    def _on_orientation(self, _change: Any) -> None:
        if self.dataset is None:
            return
        self._quiet = True
        try:
            self._reset_ranges()
        finally:
            self._quiet = False
        self.redraw()

    def _on_preset(self, _change: Any) -> None:
        if self._quiet:
            return
        self._apply_preset()
        self.redraw()

    def _on_redraw(self, _change: Any) -> None:
        if not self._quiet:
            self.redraw()
