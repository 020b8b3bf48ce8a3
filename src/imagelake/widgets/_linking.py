"""LinkingWidget: raw files, their candidate series with evidence, review and manual links."""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as w
import pandas as pd

from imagelake.errors import ImagelakeError
from imagelake.lake.explore import alerts_by_raw, link_graph, raw_candidates
from imagelake.widgets._logic import alerts_html, link_graph_svg, series_label, table_html

__all__ = ["LinkingWidget"]


class LinkingWidget(w.VBox):
    """Review raw → series links: evidence and confidence; accept, reject, or link by hand.

    Parameters
    ----------
    lake
        A :class:`~imagelake.lake.Lake` (or an object with ``raw_files``, ``links``,
        ``review_queue``, ``review``, ``add_link``, ``query`` and ``alerts``).

    Accept and reject call :meth:`Lake.review` (who and when are recorded and audited);
    *link by hand* calls :meth:`Lake.add_link`.
    """

    def __init__(self, lake: Any) -> None:
        self.lake = lake
        self.raw = w.Select(
            options=[], description="raw file", rows=6, layout=w.Layout(width="98%")
        )
        self.candidates = w.Select(
            options=[], description="candidates", rows=5, layout=w.Layout(width="98%")
        )
        self.evidence = w.HTML()
        self.raw_alerts = w.HTML()
        self.note = w.Text(
            value="", description="note", placeholder="why (recorded with the decision)"
        )
        self.accept = w.Button(description="accept", button_style="success", icon="check")
        self.reject = w.Button(description="reject", button_style="danger", icon="times")
        self.manual_series = w.Dropdown(
            options=[], description="series", layout=w.Layout(width="60%")
        )
        self.manual = w.Button(description="link by hand", icon="link")
        self.status = w.HTML()
        self.queue = w.HTML()
        self.graph = w.HTML()
        self.raw.observe(self._on_raw, "value")
        self.candidates.observe(self._on_candidate, "value")
        self.accept.on_click(lambda _b: self.decide(True))
        self.reject.on_click(lambda _b: self.decide(False))
        self.manual.on_click(lambda _b: self.link_by_hand())
        super().__init__(
            [
                w.HTML("<b>Raw files</b>"),
                self.raw,
                self.raw_alerts,
                self.candidates,
                self.evidence,
                w.HBox([self.note, self.accept, self.reject]),
                w.HBox([self.manual_series, self.manual]),
                self.status,
                w.HTML("<b>Review queue</b>"),
                self.queue,
                w.HTML("<b>Links</b> (raw → series)"),
                self.graph,
            ]
        )
        self.add_class("imagelake-linking")
        self.refresh()

    # -- actions ------------------------------------------------------------------------
    @property
    def link_id(self) -> int | None:
        """The link chosen among the candidates."""
        value = self.candidates.value
        return None if value is None else int(value)

    def decide(self, accept: bool) -> None:
        """Accept or reject the chosen link (:meth:`Lake.review`)."""
        if self.link_id is None:
            self.status.value = "choose a candidate link first"
            return
        try:
            decision = self.lake.review(self.link_id, accept=accept, note=self.note.value or None)
        except ImagelakeError as exc:
            self.status.value = f"<span style='color:#b71c1c'>{html.escape(str(exc))}</span>"
            return
        status = decision.get("status", "accepted" if accept else "rejected")
        self.status.value = f"link {self.link_id}: <b>{html.escape(str(status))}</b>"
        self.refresh()

    def link_by_hand(self) -> None:
        """Link the chosen raw file to the chosen series (:meth:`Lake.add_link`)."""
        sha, uid = self.raw.value, self.manual_series.value
        if not sha or not uid:
            self.status.value = "choose a raw file and a series first"
            return
        try:
            link_id = self.lake.add_link(sha, uid, note=self.note.value or "")
        except ImagelakeError as exc:
            self.status.value = f"<span style='color:#b71c1c'>{html.escape(str(exc))}</span>"
            return
        self.status.value = f"link {link_id}: <b>accepted</b> (manual)"
        self.refresh()

    def refresh(self) -> None:
        """Read raw files, links, the review queue and alerts again."""
        raws = self.lake.raw_files()
        self._raw_alerts = alerts_by_raw(self.lake.alerts())
        options = []
        for row in raws.itertuples():
            sha = str(row.sha256)
            model = row.model if isinstance(row.model, str) else "?"
            flag = " ⚠" if sha in self._raw_alerts else ""
            options.append((f"{row.format} {sha[:12]} {model}{flag}", sha))
        current = self.raw.value
        self.raw.options = options
        if current in {v for _, v in options}:
            self.raw.value = current
            self._on_raw(None)
        elif options:
            self.raw.value = options[0][1]
        series = self.lake.query()
        self.manual_series.options = [
            (series_label(r)[:80], str(r.series_instance_uid)) for r in series.itertuples()
        ]
        queue: pd.DataFrame = self.lake.review_queue()
        cols = ["link_id", "format", "modality", "series_description", "method", "confidence"]
        self.queue.value = (
            table_html(queue.assign(raw=queue.raw_sha256.str[:12]), ["raw", *cols])
            if not queue.empty
            else "<i>nothing waits for review</i>"
        )
        self.graph.value = link_graph_svg(link_graph(self.lake))

    # -- events -------------------------------------------------------------------------
    def _on_raw(self, _change: Any) -> None:
        sha = self.raw.value
        if not sha:
            self.candidates.options = []
            return
        self.raw_alerts.value = alerts_html(
            self._raw_alerts.get(sha, []), subject=f"raw {sha[:12]}"
        )
        self._links = raw_candidates(self.lake, sha)
        options = [
            (
                f"#{r.link_id} {r.status} {r.confidence:.3f} {r.method}: {r.modality} "
                f"{r.series_description if isinstance(r.series_description, str) else ''}",
                int(r.link_id),
            )
            for r in self._links.itertuples()
        ]
        self.candidates.options = options
        self.candidates.value = options[0][1] if options else None
        if not options:
            self.evidence.value = "<i>no candidate series: link by hand below if you know it</i>"

    def _on_candidate(self, _change: Any) -> None:
        if self.link_id is None:
            return
        row = self._links[self._links.link_id == self.link_id]
        if row.empty:
            return
        lines = row.evidence_lines.iloc[0]
        self.evidence.value = (
            f"confidence <b>{float(row.confidence.iloc[0]):.3f}</b>, status "
            f"<b>{html.escape(str(row.status.iloc[0]))}</b><ul>"
            + "".join(f"<li>{html.escape(x)}</li>" for x in lines)
            + "</ul>"
        )
