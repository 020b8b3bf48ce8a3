"""Exploring a lake: the series table with facets, thumbnails, links as a graph, alerts in context.

These are the library calls behind the JupyterLab widgets (:mod:`imagelake.widgets`), usable as
well from a notebook, a script or the CLI. Each takes a :class:`~imagelake.lake.Lake` (or
anything with the same public methods) and uses only its public API::

    from imagelake.index import FacetSelection
    from imagelake.lake import explore

    table = explore.catalog_table(lake, FacetSelection(modalities=["CT"], has_raw_parent=True))
    grid = explore.series_thumbnail(lake, table.series_instance_uid[0])     # uint8 mosaic
    graph = explore.link_graph(lake)                                        # raw -> series
    explore.link_evidence(lake.links().evidence[0])                         # readable lines

Nothing here prints or logs values of the data: tables go back to the caller, who decides
what to show.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from imagelake.index import FacetSelection
from imagelake.store.views import Window, mosaic

__all__ = [
    "BROWSE_COLUMNS",
    "LinkEdge",
    "LinkGraph",
    "LinkNode",
    "alerts_by_raw",
    "alerts_by_series",
    "catalog_table",
    "link_evidence",
    "link_graph",
    "raw_candidates",
    "series_thumbnail",
]

#: columns of :func:`catalog_table` a browser shows (no patient identity)
BROWSE_COLUMNS: tuple[str, ...] = (
    "study_date",
    "modality",
    "manufacturer",
    "model",
    "series_description",
    "convolution_kernel",
    "sequence_name",
    "slice_thickness",
    "n_instances",
    "raw_parents",
    "alerts",
)

# alert kinds that concern every series of one scanner model (the alert names the first only)
_SCANNER_KINDS = frozenset({"unknown_scanner", "unknown_software_version"})


def _norm(v: Any) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return ""
    return str(v).strip().lower()


def _details(value: Any) -> Mapping[str, Any]:
    if isinstance(value, Mapping):
        return value
    if isinstance(value, str):
        import json

        try:
            loaded = json.loads(value)
        except ValueError:
            return {}
        return loaded if isinstance(loaded, Mapping) else {}
    return {}


def alerts_by_series(series: pd.DataFrame, alerts: pd.DataFrame) -> dict[str, list[str]]:
    """Open alert kinds that concern each series of ``series`` (series UID -> kinds).

    An alert concerns a series when it names it, or (unknown scanner, unknown software
    version) when the series comes from the scanner model it names, or (unidentified
    scanner) when the series has no manufacturer and model.
    """
    out: dict[str, list[str]] = {}
    if series.empty or alerts.empty:
        return out
    rows = [(str(k), _details(d)) for k, d in zip(alerts.kind, alerts.details, strict=True)]
    for uid, man, mod, soft in zip(
        series.series_instance_uid,
        series.get("manufacturer", pd.Series([None] * len(series))),
        series.get("model", pd.Series([None] * len(series))),
        series.get("software_versions", pd.Series([None] * len(series))),
        strict=True,
    ):
        kinds: list[str] = []
        for kind, details in rows:
            hit = details.get("series_instance_uid") == uid
            if not hit and kind in _SCANNER_KINDS and details.get("model"):
                same = _norm(details.get("manufacturer")) == _norm(man) and _norm(
                    details.get("model")
                ) == _norm(mod)
                if kind == "unknown_software_version":
                    wanted = {_norm(v) for v in details.get("software_versions") or []}
                    same = same and (not wanted or _norm(soft) in wanted)
                hit = same
            if not hit and kind == "unidentified_scanner":
                hit = not _norm(man) and not _norm(mod)
            if hit and kind not in kinds:
                kinds.append(kind)
        if kinds:
            out[str(uid)] = kinds
    return out


def alerts_by_raw(alerts: pd.DataFrame) -> dict[str, list[str]]:
    """Open alert kinds that name each raw file (raw sha256 -> kinds), e.g. ``raw_not_viable``."""
    out: dict[str, list[str]] = {}
    if alerts.empty:
        return out
    for kind, details in zip(alerts.kind, alerts.details, strict=True):
        sha = _details(details).get("raw_sha256")
        if sha and kind not in out.setdefault(str(sha), []):
            out[str(sha)].append(str(kind))
    return out


def catalog_table(lake: Any, selection: FacetSelection | None = None) -> pd.DataFrame:
    """Series matching ``selection``, with their raw parents and open alerts.

    The facets that are index columns go to ``lake.query`` as conditions; the rest
    (scanner pairs, has a raw parent, has alerts) filter the result. Two columns are
    added: ``raw_parents`` (sha256 of the accepted raw parents) and ``alerts`` (open alert
    kinds that concern the series; see :func:`alerts_by_series`).
    """
    choice = selection or FacetSelection()
    series = lake.query(**choice.conditions())
    series = series.reset_index(drop=True)
    links = lake.links("accepted")
    parents: dict[str, list[str]] = {}
    if not links.empty:
        for uid, sha in zip(links.series_instance_uid, links.raw_sha256, strict=True):
            parents.setdefault(str(uid), []).append(str(sha))
    by_series = alerts_by_series(series, lake.alerts())
    uids = series.series_instance_uid.astype(str) if not series.empty else pd.Series([], dtype=str)
    series["raw_parents"] = [parents.get(u, []) for u in uids]
    series["alerts"] = [by_series.get(u, []) for u in uids]
    return choice.post_filter(series)


def series_thumbnail(
    lake: Any,
    series_instance_uid: str,
    *,
    tiles: int = 9,
    tile_size: int = 96,
    window_: Window | None = None,
) -> np.ndarray:
    """A uint8 mosaic of evenly spaced slices of a series' main stack (reads only those)."""
    ds = lake.open_series(series_instance_uid)
    return mosaic(ds, tiles, tile_size=tile_size, window_=window_)


def link_evidence(evidence: Any) -> list[str]:
    """A link's evidence as short lines: rule, weight, anchor/veto, detail; then the decision."""
    lines: list[str] = []
    for item in (
        evidence if isinstance(evidence, Iterable) and not isinstance(evidence, str) else []
    ):
        if not isinstance(item, Mapping):
            continue
        if "rule" in item:
            flags = "".join(f" [{name}]" for name in ("anchor", "veto") if item.get(name))
            weight = item.get("weight")
            w = f" {float(weight):+.1f}" if isinstance(weight, int | float) else ""
            detail = item.get("detail") or item.get("note") or ""
            if item.get("rule") == "recon" and isinstance(item.get("provenance"), Mapping):
                prov = item["provenance"]
                detail = f"{prov.get('method')} v{prov.get('version')}"
            lines.append(f"{item['rule']}{w}{flags}: {detail}".rstrip(": "))
        elif "decision" in item:
            lines.append(f"decision: {item['decision']} ({item.get('reason', '')})")
    return lines


def raw_candidates(lake: Any, sha256: str) -> pd.DataFrame:
    """Every link of one raw file (proposed, accepted, rejected), best first, with evidence lines."""
    links = lake.links()
    if links.empty:
        return links.assign(evidence_lines=[])
    rows = links[links.raw_sha256.astype(str).str.startswith(str(sha256).lower())]
    rows = rows.sort_values(["confidence", "link_id"], ascending=[False, True]).reset_index(
        drop=True
    )
    return rows.assign(evidence_lines=[link_evidence(e) for e in rows.evidence])


@dataclass(frozen=True)
class LinkNode:
    """A raw file (``kind="raw"``) or a series (``kind="series"``) in the link graph."""

    id: str
    kind: str
    label: str
    alerts: tuple[str, ...] = ()


@dataclass(frozen=True)
class LinkEdge:
    """A link between a raw file and a series."""

    link_id: int
    raw: str
    series: str
    status: str
    method: str
    confidence: float


@dataclass(frozen=True)
class LinkGraph:
    """Raw files, series and the links between them."""

    nodes: list[LinkNode] = field(default_factory=list)
    edges: list[LinkEdge] = field(default_factory=list)

    def raw_nodes(self) -> list[LinkNode]:
        return [n for n in self.nodes if n.kind == "raw"]

    def series_nodes(self) -> list[LinkNode]:
        return [n for n in self.nodes if n.kind == "series"]


def link_graph(
    lake: Any,
    *,
    raw: Sequence[str] | None = None,
    status: Sequence[str] = ("accepted", "proposed"),
) -> LinkGraph:
    """The raw → series link graph (of the raw files ``raw``, or all), links of ``status``.

    Raw files without links are nodes too, with their alerts (e.g. ``raw_not_viable``).
    """
    raws = lake.raw_files()
    links = lake.links(list(status)) if status else lake.links()
    by_raw = alerts_by_raw(lake.alerts())
    wanted = None if raw is None else {str(s) for s in raw}

    def chosen(sha: str) -> bool:
        return wanted is None or any(sha.startswith(w) for w in wanted)

    nodes: list[LinkNode] = []
    for sha, fmt in zip(raws.get("sha256", []), raws.get("format", []), strict=True):
        if chosen(str(sha)):
            nodes.append(
                LinkNode(str(sha), "raw", f"{fmt} {str(sha)[:8]}", tuple(by_raw.get(str(sha), [])))
            )
    edges: list[LinkEdge] = []
    seen: set[str] = set()
    for row in links.itertuples(index=False):
        if not chosen(str(row.raw_sha256)):
            continue
        edges.append(
            LinkEdge(
                int(row.link_id),
                str(row.raw_sha256),
                str(row.series_instance_uid),
                str(row.status),
                str(row.method),
                float(row.confidence),
            )
        )
        if row.series_instance_uid not in seen:
            seen.add(str(row.series_instance_uid))
            description = row.series_description if isinstance(row.series_description, str) else ""
            nodes.append(
                LinkNode(
                    str(row.series_instance_uid),
                    "series",
                    f"{row.modality} {description}".strip()[:40],
                )
            )
    return LinkGraph(nodes, edges)
