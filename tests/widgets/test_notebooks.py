"""Every notebook runs top to bottom on a small demo lake, and its widgets' views are in the output."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"

# each notebook, and the widget classes whose views its output must hold
EXPECTED = {
    "01_explore_the_lake.ipynb": {"CatalogBrowser", "SeriesViewer"},
    "02_link_raw_and_dicom.ipynb": {"LinkingWidget"},
    "03_anonymize_and_share.ipynb": {"AnonymizationWidget"},
    "04_mine_with_dask.ipynb": set(),
    "05_reprocess_with_an_emulator.ipynb": {"EmulatorPanel"},
}


def test_every_notebook_is_listed() -> None:
    assert {p.name for p in NOTEBOOKS.glob("0[1-9]_*.ipynb")} == set(EXPECTED)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_notebook_runs_with_widget_views(
    name: str, lake_copy: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    try:
        import nbclient
        import nbformat
    except ImportError:
        if os.environ.get("CI") == "true":
            raise  # CI=true: a missing dependency fails
        pytest.skip("nbclient is not installed (pip install -e '.[jupyter]')")
    work = tmp_path / "notebooks"
    work.mkdir()
    shutil.copy(NOTEBOOKS / name, work / name)
    monkeypatch.setenv("IMAGELAKE_LAKE", lake_copy.url)  # the kernel inherits the environment
    nb = nbformat.read(work / name, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=300,
        kernel_name="python3",
        store_widget_state=True,
        resources={"metadata": {"path": str(work)}},
    )
    client.execute()
    views = [
        out["data"][WIDGET_VIEW]["model_id"]
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if WIDGET_VIEW in out.get("data", {})
    ]
    errors = [
        out
        for cell in nb.cells
        for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]
    assert not errors
    assert len(views) >= len(EXPECTED[name])
    # a notebook without widgets (04) stores no widget state
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    assert bool(state) == bool(EXPECTED[name])
    assert all(v in state for v in views), "every displayed view has its stored state"
    # the displayed top-level views carry the widgets' CSS classes
    classes = {c for v in views for c in state[v]["state"].get("_dom_classes", [])}
    wanted = {
        "CatalogBrowser": "imagelake-catalog-browser",
        "SeriesViewer": "imagelake-series-viewer",
        "LinkingWidget": "imagelake-linking",
        "AnonymizationWidget": "imagelake-anonymization",
        "EmulatorPanel": "imagelake-emulator-panel",
    }
    assert {wanted[w] for w in EXPECTED[name]} <= classes
    images = [s for s in state.values() if s["model_name"] == "ImageModel"]
    if name.startswith("01"):
        assert images, "the viewer and the thumbnails are images"
    if name.startswith("04"):  # the plot, and the second run skips every stack
        plots = [
            out
            for cell in nb.cells
            for out in cell.get("outputs", [])
            if "image/png" in out.get("data", {})
        ]
        assert plots, "the per-series statistics are plotted"
        text = "".join(out.get("text", "") for cell in nb.cells for out in cell.get("outputs", []))
        assert "computed 0, skipped" in text
    if name.startswith("05"):  # the reprocessed file, or why not, and never a traceback
        text = "".join(out.get("text", "") for cell in nb.cells for out in cell.get("outputs", []))
        assert (
            "already reprocessed" in text or "reprocessed by" in text or "not reprocessed" in text
        )
    assert os.environ["IMAGELAKE_LAKE"] == lake_copy.url
