"""AnonymizationWidget: data and policy, before/after preview, burned-in review, run, summary."""

from __future__ import annotations

import html
import os
from typing import Any

import ipywidgets as w

from imagelake.anonymize import Option, profiles
from imagelake.errors import ImagelakeError
from imagelake.lake.share_preview import (
    anonymize_series,
    burned_in_image,
    burned_in_review,
    preview_deidentification,
)
from imagelake.widgets._logic import png, series_label, table_html

__all__ = ["AnonymizationWidget"]


class AnonymizationWidget(w.VBox):
    """Make an anonymized share of chosen series, after looking at what it will do.

    Parameters
    ----------
    lake
        The source :class:`~imagelake.lake.Lake` (only read).
    destination
        Folder (or URL) of the share lake; editable in the widget.
    series
        SeriesInstanceUIDs chosen at first (e.g. a :class:`CatalogBrowser` selection; see
        :meth:`follow`).

    The preview de-identifies one instance in memory
    (:func:`imagelake.lake.share_preview.preview_deidentification`) and shows the changed
    attributes before and after: values of the source, on screen only. *Run* calls
    :func:`imagelake.lake.share_preview.anonymize_series` with a progress bar.
    """

    def __init__(
        self, lake: Any, destination: str | os.PathLike[str] | None = None, *, series: Any = None
    ) -> None:
        self.lake = lake
        self.report: Any = None
        table = lake.query()
        options = [(series_label(r)[:90], str(r.series_instance_uid)) for r in table.itertuples()]
        self.series = w.SelectMultiple(
            options=options, description="series", rows=6, layout=w.Layout(width="98%")
        )
        self.profile = w.Dropdown(options=profiles.names(), value="basic", description="profile")
        self.options = w.SelectMultiple(
            options=[o.value for o in Option],
            description="options",
            rows=5,
            layout=w.Layout(width="360px"),
        )
        self.sample = w.Dropdown(options=[], description="sample")
        self.preview_table = w.HTML(layout=w.Layout(max_height="320px", overflow="auto"))
        self.preview_note = w.HTML()
        self.review_button = w.Button(description="review burned-in risk", icon="eye")
        self.review = w.Select(
            options=[], description="held back", rows=4, layout=w.Layout(width="98%")
        )
        self.review_image = w.Image(format="png", layout=w.Layout(display="none"))
        self.destination = w.Text(
            value=os.fspath(destination) if destination else "",
            description="share to",
            placeholder="folder of the anonymized lake",
            layout=w.Layout(width="60%"),
        )
        self.run_button = w.Button(
            description="anonymize", button_style="primary", icon="user-secret"
        )
        self.progress = w.IntProgress(value=0, min=0, max=1, description="progress")
        self.summary = w.HTML()
        self.series.observe(self._on_series, "value")
        self.sample.observe(lambda _c: self.preview(), "value")
        self.profile.observe(lambda _c: self.preview(), "value")
        self.options.observe(lambda _c: self.preview(), "value")
        self.review_button.on_click(lambda _b: self.review_burned_in())
        self.review.observe(self._on_review, "value")
        self.run_button.on_click(lambda _b: self.run())
        super().__init__(
            [
                w.HTML("<b>1. Data and policy</b>"),
                self.series,
                w.HBox([self.profile, self.options]),
                w.HTML(
                    "<b>2. Before / after</b> (one sample instance; source values on screen only)"
                ),
                self.sample,
                self.preview_note,
                self.preview_table,
                w.HTML("<b>3. Burned-in text</b>"),
                self.review_button,
                w.HBox([self.review, self.review_image]),
                w.HTML("<b>4. Run</b>"),
                w.HBox([self.destination, self.run_button]),
                self.progress,
                self.summary,
            ]
        )
        self.add_class("imagelake-anonymization")
        if series is not None:
            self.series.value = tuple(u for u in series if u in {v for _, v in options})

    # -- the model ------------------------------------------------------------------------
    def policy(self) -> dict[str, Any]:
        """The policy the controls describe, as :func:`imagelake.anonymize.load_policy` reads it."""
        return {
            "name": "widget",
            "profile": self.profile.value,
            "options": list(self.options.value),
        }

    def follow(self, browser: Any) -> None:
        """Take the series chosen in a :class:`CatalogBrowser`, now and whenever it changes."""

        def take(uids: list[str]) -> None:
            known = {v for _, v in self.series.options}
            self.series.value = tuple(u for u in uids if u in known)

        browser.on_select(take)
        take(browser.selected)

    # -- actions ------------------------------------------------------------------------
    def preview(self) -> None:
        """De-identify the sample instance in memory and show the changes."""
        uid = self.sample.value
        if not uid:
            self.preview_table.value = ""
            self.preview_note.value = "<i>choose series to preview</i>"
            return
        try:
            result = preview_deidentification(self.lake, uid, self.policy())
        except ImagelakeError as exc:
            self.preview_note.value = f"<span style='color:#b71c1c'>{html.escape(str(exc))}</span>"
            self.preview_table.value = ""
            return
        counts = ", ".join(f"{k}: {v}" for k, v in result.counts.items())
        risk = (
            f"<br>⚠ burned-in risk: {html.escape(result.burned_in_risk)} (held back)"
            if result.burned_in_risk
            else ""
        )
        self.preview_note.value = f"policy <b>{html.escape(result.policy)}</b>: {counts}{risk}"
        self.preview_table.value = table_html(result.table, max_rows=80)

    def review_burned_in(self) -> None:
        """List the chosen series' instances a share would hold back for burned-in text."""
        flagged = burned_in_review(self.lake, list(self.series.value))
        self._flagged = flagged
        self.review.options = [
            (f"{r.modality} {r.series_description} #{r.instance}: {r.reason}", k)
            for k, r in enumerate(flagged.itertuples())
        ]
        if flagged.empty:
            self.review.options = [("no instance flagged: nothing will be held back", -1)]

    def run(self) -> None:
        """Anonymize the chosen series into the destination, with progress."""
        uids = list(self.series.value)
        if not uids or not self.destination.value.strip():
            self.summary.value = "choose series and a destination first"
            return

        def progress(done: int, total: int) -> None:
            self.progress.max = max(total, 1)
            self.progress.value = done

        try:
            self.report = anonymize_series(
                self.lake,
                self.destination.value.strip(),
                uids,
                policy=self.policy(),
                progress=progress,
            )
        except ImagelakeError as exc:
            self.summary.value = f"<span style='color:#b71c1c'>{html.escape(str(exc))}</span>"
            return
        self.summary.value = f"<b>done</b>: {html.escape(str(self.report))}"

    # -- events -------------------------------------------------------------------------
    def _on_series(self, _change: Any) -> None:
        labels = dict((v, k) for k, v in self.series.options)
        chosen = list(self.series.value)
        self.sample.options = [(labels.get(u, u)[:60], u) for u in chosen]
        self.sample.value = chosen[0] if chosen else None
        if not chosen:
            self.preview()

    def _on_review(self, _change: Any) -> None:
        k = self.review.value
        if k is None or k < 0:
            self.review_image.value = b""
            self.review_image.layout.display = "none"
            return
        row = self._flagged.iloc[int(k)]
        grey = burned_in_image(
            self.lake,
            row.series_instance_uid,
            int(row.instance),
            stack_number=int(row.stack_number),
        )
        self.review_image.value = png(grey, size=192)
        self.review_image.layout.display = None
