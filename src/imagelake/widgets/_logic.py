"""Presentation only: PNG encoding, HTML tables, the link graph picture, alert banners.

Nothing here decides anything about the data; it turns what the library returns into what a
browser shows.
"""

from __future__ import annotations

import html
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from imagelake.lake.explore import LinkGraph

__all__ = [
    "ALERT_TEXT",
    "LIBVIRTD_START",
    "alerts_html",
    "emulator_rows",
    "error_html",
    "link_graph_svg",
    "png",
    "reprocess_report_html",
    "series_label",
    "table_html",
    "viability_label",
    "vm_state_html",
]

#: what each alert kind means to a person looking at data
ALERT_TEXT: Mapping[str, str] = {
    "unknown_scanner": "unknown scanner model (not in the knowledge base)",
    "unknown_software_version": "unknown software version of a known scanner",
    "unidentified_scanner": "no manufacturer or model in the headers",
    "raw_not_viable": "raw file not viable: no reader and no emulator known",
    "unexpected_raw_format": "raw format not expected for this scanner",
}


def png(
    grey: np.ndarray,
    *,
    spacing: tuple[float, float] = (1.0, 1.0),
    size: int = 256,
    marker: tuple[int, int] | None = None,
) -> bytes:
    """PNG bytes of a uint8 image, resized to ``size`` pixels with square physical pixels.

    ``spacing`` is the (row, column) pixel spacing in mm; ``marker`` a (row, column) pixel
    drawn as a small cross.
    """
    from PIL import Image

    array = np.ascontiguousarray(grey, dtype="uint8")
    rows, cols = array.shape[:2]
    height_mm, width_mm = rows * max(spacing[0], 1e-6), cols * max(spacing[1], 1e-6)
    scale = size / max(height_mm, width_mm)
    out = (max(1, round(width_mm * scale)), max(1, round(height_mm * scale)))
    image = Image.fromarray(array).resize(out, Image.Resampling.NEAREST)
    if marker is not None:
        image = image.convert("RGB")
        r = (marker[0] + 0.5) * out[1] / rows
        c = (marker[1] + 0.5) * out[0] / cols
        from PIL import ImageDraw

        draw = ImageDraw.Draw(image)
        draw.line([(c - 6, r), (c + 6, r)], fill=(255, 200, 0))
        draw.line([(c, r - 6), (c, r + 6)], fill=(255, 200, 0))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple | np.ndarray):
        return ", ".join(str(v)[:12] for v in value)
    return str(value)


def table_html(
    df: pd.DataFrame, columns: Sequence[str] | None = None, *, max_rows: int = 200, css: str = ""
) -> str:
    """An escaped HTML table of ``df`` (``columns`` only), at most ``max_rows`` rows."""
    cols = [c for c in (columns or list(df.columns)) if c in df.columns]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = []
    for row in df[cols].head(max_rows).itertuples(index=False):
        body.append("<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>")
    more = f"<div>… {len(df) - max_rows} more rows</div>" if len(df) > max_rows else ""
    style = (
        "<style>.il-table{border-collapse:collapse;font-size:12px}"
        ".il-table td,.il-table th{border:1px solid #ccc;padding:2px 6px;text-align:left}"
        f"{css}</style>"
    )
    return f"{style}<table class='il-table'><tr>{head}</tr>{''.join(body)}</table>{more}"


def alerts_html(kinds: Iterable[str], *, subject: str = "") -> str:
    """A warning banner for alert kinds (empty string when there are none)."""
    unique = list(dict.fromkeys(str(k) for k in kinds))
    if not unique:
        return ""
    items = "".join(
        f"<li><b>{html.escape(k)}</b>: {html.escape(ALERT_TEXT.get(k, k))}</li>" for k in unique
    )
    what = f" ({html.escape(subject)})" if subject else ""
    return (
        "<div class='il-alert' style='border-left:4px solid #d9822b;background:#fff4e5;"
        f"padding:4px 8px;margin:4px 0'>⚠ alerts{what}<ul style='margin:2px 0'>{items}</ul></div>"
    )


def series_label(row: Any) -> str:
    """One line for a series in a list: date, modality, scanner, description, thickness, flags."""
    date = str(getattr(row, "study_date", "") or "")
    if len(date) == 8 and date.isdigit():
        date = f"{date[:4]}-{date[4:6]}-{date[6:]}"
    parts = [
        date,
        _cell(getattr(row, "modality", "")),
        _cell(getattr(row, "model", "")) or "?",
        _cell(getattr(row, "series_description", "")) or "(no description)",
    ]
    thick = getattr(row, "slice_thickness", None)
    if thick is not None and not (isinstance(thick, float) and math.isnan(thick)):
        parts.append(f"{float(thick):.3g} mm")
    parts.append(f"{int(getattr(row, 'n_instances', 0) or 0)} inst")
    parents = getattr(row, "raw_parents", None)
    if parents is not None and len(parents):
        parts.append("raw")
    alerts = getattr(row, "alerts", None)
    if alerts is not None and len(alerts):
        parts.append("⚠ " + ",".join(alerts))
    return " | ".join(p for p in parts if p)


_STATUS_COLOUR = {"accepted": "#2e7d32", "proposed": "#d9822b", "rejected": "#b71c1c"}


def link_graph_svg(graph: LinkGraph, *, width: int = 640, row_height: int = 26) -> str:
    """An SVG picture of the raw → series links: raw files left, series right.

    Accepted links are solid green, proposed ones dashed orange, rejected ones red; raw files
    with alerts are outlined in orange.
    """
    raws, series = graph.raw_nodes(), graph.series_nodes()
    n = max(len(raws), len(series), 1)
    height = n * row_height + 16
    box_w = 200
    left_x, right_x = 8, width - box_w - 8
    y_raw = {node.id: 8 + k * row_height for k, node in enumerate(raws)}
    y_ser = {node.id: 8 + k * row_height for k, node in enumerate(series)}
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
        "font-family='sans-serif' font-size='11'>"
    ]
    for edge in graph.edges:
        if edge.raw not in y_raw or edge.series not in y_ser:
            continue
        colour = _STATUS_COLOUR.get(edge.status, "#555")
        dash = " stroke-dasharray='5,3'" if edge.status == "proposed" else ""
        y1, y2 = y_raw[edge.raw] + 10, y_ser[edge.series] + 10
        parts.append(
            f"<line x1='{left_x + box_w}' y1='{y1}' x2='{right_x}' y2='{y2}' "
            f"stroke='{colour}' stroke-width='2'{dash}><title>link {edge.link_id}: "
            f"{html.escape(edge.status)} {html.escape(edge.method)} "
            f"{edge.confidence:.2f}</title></line>"
        )
    for node in raws:
        stroke = "#d9822b" if node.alerts else "#888"
        parts.append(
            f"<rect x='{left_x}' y='{y_raw[node.id]}' width='{box_w}' height='20' rx='3' "
            f"fill='#eef3fb' stroke='{stroke}' stroke-width='{2 if node.alerts else 1}'/>"
            f"<text x='{left_x + 5}' y='{y_raw[node.id] + 14}'>{html.escape(node.label)}"
            f"{' ⚠' if node.alerts else ''}</text>"
        )
    for node in series:
        parts.append(
            f"<rect x='{right_x}' y='{y_ser[node.id]}' width='{box_w}' height='20' rx='3' "
            "fill='#f3f3f3' stroke='#888'/>"
            f"<text x='{right_x + 5}' y='{y_ser[node.id] + 14}'>"
            f"{html.escape(node.label[:32])}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


# -- emulator panel ------------------------------------------------------------------------------
#: the command that starts the system libvirtd this machine's VMs run on (root, no systemd)
LIBVIRTD_START = "sudo make libvirtd-start"


def error_html(text: str) -> str:
    """A message in red (escaped), for an error a person can act on — never a traceback."""
    return f"<span class='il-error' style='color:#b71c1c'>{html.escape(text)}</span>"


def emulator_rows(manifests: Iterable[Any], images: Any) -> pd.DataFrame:
    """One row per emulator version: ``emulator, vendor, scanners, formats, image``.

    ``image`` is ``ready`` (every file in the store and its sha256 verified),
    ``registered, not verified`` (files there, digests wrong or unreadable) or ``missing``.
    """
    rows = []
    for m in sorted(manifests, key=lambda m: m.ref):
        scanners = "; ".join(
            f"{s.manufacturer} {s.model} ({', '.join(s.software_versions)})" for s in m.scanners
        )
        formats = ", ".join(
            f"{f} rev {'/'.join(str(r) for r in m.format_revisions[f])}"
            if f in m.format_revisions
            else f
            for f in m.raw_formats
        )
        try:
            registered = bool(images.registered(m))
        except Exception:  # noqa: BLE001 - an unreachable store: not ready
            registered = False
        image = "missing"
        if registered:
            try:
                images.verify(m)
                image = "ready"
            except Exception:  # noqa: BLE001 - wrong digests or a broken file
                image = "registered, not verified"
        rows.append(
            {
                "emulator": m.ref,
                "vendor": m.vendor,
                "scanners": scanners,
                "formats": formats,
                "image": image,
            }
        )
    return pd.DataFrame(rows, columns=["emulator", "vendor", "scanners", "formats", "image"])


def vm_state_html(status: Mapping[str, Any] | None, *, error: str = "") -> str:
    """The hypervisor and imagelake's domains, or why libvirt is not reachable.

    ``status`` is :meth:`EmulatorManager.status`; ``None`` with ``error`` when no manager
    could connect.
    """
    if status is None:
        return (
            "<div class='il-alert' style='border-left:4px solid #d9822b;background:#fff4e5;"
            "padding:4px 8px'>libvirt is not reachable, so no VM can run here"
            f"{': ' + html.escape(error) if error else ''}. Start it with "
            f"<code>{LIBVIRTD_START}</code> (as root: <code>bash scripts/libvirtd.sh start"
            "</code>), then press <i>refresh</i>.</div>"
        )
    head = (
        f"{html.escape(str(status.get('hypervisor', '?')))} "
        f"{html.escape(str(status.get('hypervisor_version', '')))} on "
        f"<code>{html.escape(str(status.get('uri', '?')))}</code> (libvirt "
        f"{html.escape(str(status.get('libvirt_version', '?')))}); domain type "
        f"<b>{html.escape(str(status.get('domain_type') or '?'))}</b> "
        f"({html.escape(str(status.get('accel_reason', '')))}); at most "
        f"{html.escape(str(status.get('max_parallel', '?')))} job(s) at once"
    )
    domains = pd.DataFrame(
        list(status.get("domains") or []), columns=["name", "kind", "state", "active"]
    )
    body = table_html(domains) if len(domains) else "<i>no imagelake VM running</i>"
    return f"<div>{head}</div>{body}"


def viability_label(row: Any) -> str:
    """One line for a raw file in the emulator panel: format, sha prefix, scanner, path."""
    scanner = " ".join(
        str(v)
        for v in (row.manufacturer, row.model, row.software_version)
        if isinstance(v, str) and v
    )
    via = f" {row.via}" if row.via else ""
    flag = " ⚠ not viable" if row.path == "none" else ""
    return f"{row.format} {str(row.sha256)[:12]} {scanner or '?'} → {row.path}{via}{flag}"


def reprocess_report_html(report: Any) -> str:
    """The outputs of a :class:`~imagelake.lake.ReprocessReport`: series, links, provenance."""
    prov: Mapping[str, Any] = report.provenance or {}
    digests = prov.get("image_sha256") or {}
    if isinstance(digests, Mapping):
        image = ", ".join(f"{k} {str(v)[:12]}" for k, v in sorted(digests.items()))
    else:
        image = str(digests)[:12]
    duration = prov.get("duration_s")
    facts = {
        "emulator": report.emulator,
        "job": report.job_id,
        "image sha256": image or "?",
        "domain type": prov.get("domain_type", "?"),
        "duration in the VM": f"{duration:.1f} s" if isinstance(duration, int | float) else "?",
        "chosen by": prov.get("chosen_by", ""),
        "series": ", ".join(report.series_instance_uids) or "none",
        "links": ", ".join(str(i) for i in report.link_ids) or "none",
    }
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in facts.items()
    )
    return f"<table class='il-table il-reprocess'>{rows}</table>"
