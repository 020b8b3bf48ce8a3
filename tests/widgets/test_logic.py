"""Widget logic in plain Python: set a control, check the model's state and the library call.

Call assertions use a recording lake injected through the constructor (``recording_lake``);
state assertions use a real small demo lake (``small_lake``, or ``lake_copy`` when it changes).
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import xarray as xr

try:  # the jupyter extra; CI installs it with the test extra
    import ipywidgets  # noqa: F401
except ImportError:
    if os.environ.get("CI") == "true":
        raise  # CI=true: a missing dependency fails
    pytest.skip(
        "ipywidgets is not installed (pip install -e '.[jupyter]')", allow_module_level=True
    )

from imagelake.anonymize import Deidentifier, load_policy
from imagelake.anonymize.preview import change_counts, tag_changes
from imagelake.index import FacetSelection, facet_options
from imagelake.lake import explore, share_preview
from imagelake.store.views import WINDOW_PRESETS, mosaic, read_plane, window
from imagelake.widgets import (
    AnonymizationWidget,
    CatalogBrowser,
    EmulatorPanel,
    LinkingWidget,
    SeriesViewer,
)
from imagelake.widgets._logic import emulator_rows, link_graph_svg, png, vm_state_html

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _uid(lake: Any, description: str) -> str:
    s = lake.query()
    return str(s[s.series_description == description].series_instance_uid.iloc[0])


# -- library helpers ---------------------------------------------------------------------------
def test_facet_selection_becomes_query_conditions() -> None:
    choice = FacetSelection(
        modalities=["CT"],
        scanners=["SIEMENS / SOMATOM Force"],
        thickness=(0.5, 1.5),
        dates=("20240101", None),
        has_raw_parent=True,
    )
    assert choice.conditions() == {
        "modality": ["CT"],
        "model": ["SOMATOM Force"],
        "slice_thickness": (0.5, 1.5),
        "study_date": ("20240101", None),
    }
    assert FacetSelection().conditions() == {}


def test_catalog_table_facets_on_the_demo_lake(small_lake: Any) -> None:
    everything = explore.catalog_table(small_lake)
    options = facet_options(everything)
    assert {"CT", "MR"} <= set(options.modalities)
    assert "SIEMENS / SOMATOM Force" in options.scanners
    with_raw = explore.catalog_table(
        small_lake, FacetSelection(modalities=["CT"], has_raw_parent=True)
    )
    assert len(with_raw) >= 2 and all(len(p) for p in with_raw.raw_parents)
    assert set(with_raw.modality) == {"CT"}
    alerted = explore.catalog_table(small_lake, FacetSelection(has_alerts=True))
    kinds = {k for ks in alerted.alerts for k in ks}
    assert {"unknown_scanner", "unknown_software_version"} <= kinds
    assert len(alerted) < len(everything)


def test_window_presets_and_planes(small_lake: Any) -> None:
    ds = small_lake.open_series(_uid(small_lake, "Thorax 1mm Br40 SYNTHETIC"))
    n, rows, cols = ds.image.shape
    axial = read_plane(ds, "axial", 3)
    coronal = read_plane(ds, "coronal", 10)
    sagittal = read_plane(ds, "sagittal", 10)
    assert axial.values.shape == (rows, cols) and coronal.values.shape == (n, cols)
    assert sagittal.values.shape == (n, rows) and axial.units == "HU"
    assert coronal.spacing[0] == pytest.approx(float(ds.attrs["spacing_between_frames"]))
    np.testing.assert_allclose(axial.values, ds.image.isel(slice=3).values)
    value, _pos = axial.value_at(5, 6)
    assert value == pytest.approx(float(ds.image.isel(slice=3, y=5, x=6)))
    grey = window(np.array([-2000.0, -600.0, 2000.0]), *WINDOW_PRESETS["lung"])
    assert grey.dtype == np.uint8 and grey[0] == 0 and grey[-1] == 255 and 100 < grey[1] < 155
    grid = mosaic(ds, 4, tile_size=32)
    assert grid.dtype == np.uint8 and grid.shape == (64, 64)


def test_link_helpers(small_lake: Any) -> None:
    graph = explore.link_graph(small_lake)
    assert len(graph.raw_nodes()) == len(small_lake.raw_files())
    assert any("raw_not_viable" in n.alerts for n in graph.raw_nodes())
    assert {e.status for e in graph.edges} == {"accepted", "proposed"}
    svg = link_graph_svg(graph)
    assert svg.startswith("<svg") and "stroke-dasharray" in svg
    queued = small_lake.review_queue().iloc[0]
    rows = explore.raw_candidates(small_lake, queued.raw_sha256)
    assert queued.link_id in set(rows.link_id)
    lines = rows[rows.link_id == queued.link_id].evidence_lines.iloc[0]
    assert any("[veto]" in line for line in lines) and lines[-1].startswith("decision: review")


def test_tag_changes_and_share_batches(small_lake: Any) -> None:
    uid = _uid(small_lake, "Thorax 1mm Br40 SYNTHETIC")
    ds = share_preview.sample_instance(small_lake, uid)
    deid = Deidentifier(load_policy(None), secret=b"k" * 32)
    table = tag_changes(ds, deid.deidentify(ds, subject_key="x").dataset)
    by_kw = table.set_index("keyword")
    assert by_kw.loc["PatientName", "change"] == "replaced"
    assert by_kw.loc["PatientName", "before"] == str(ds.PatientName)
    assert change_counts(table)["removed"] > 0
    siblings = [
        _uid(small_lake, "Thorax 1mm Br40 SYNTHETIC"),
        _uid(small_lake, "Thorax 3mm Br64 SYNTHETIC"),
    ]
    other = _uid(small_lake, "Sagittal T2 SYNTHETIC")
    batches = share_preview.share_batches(small_lake, [*siblings, other])
    assert sorted(map(sorted, batches)) == sorted([sorted(siblings), [other]])


def test_png_is_square_in_millimetres() -> None:
    import io

    from PIL import Image

    data = png(np.zeros((10, 40), dtype="uint8"), spacing=(4.0, 1.0), size=100, marker=(5, 5))
    assert data.startswith(PNG_MAGIC)
    assert Image.open(io.BytesIO(data)).size == (100, 100)


# -- CatalogBrowser ------------------------------------------------------------------------------
def test_browser_facet_change_queries_the_lake(recording_lake: Any) -> None:
    browser = CatalogBrowser(recording_lake)
    recording_lake.calls.clear()
    browser.modality.value = ("CT",)
    ((_args, kwargs),) = recording_lake.named("query")
    assert kwargs == {"modality": ["CT"]}
    browser.has_raw.value = "yes"
    assert recording_lake.named("query")[-1][1] == {"modality": ["CT"]}  # a post-filter
    assert all(len(p) for p in browser.table.raw_parents)
    browser.date_from.value = dt.date(2024, 1, 1)
    conditions = recording_lake.named("query")[-1][1]
    assert conditions["study_date"][0] == "20240101"
    assert all(d >= "20240101" for d in browser.table.study_date)
    browser.thickness.value = (1.0, 3.0)
    assert recording_lake.named("query")[-1][1]["slice_thickness"] == (1.0, 3.0)


def test_browser_state_selection_feeds_viewer_and_thumbnails(small_lake: Any) -> None:
    viewer = SeriesViewer(small_lake)
    browser = CatalogBrowser(small_lake, viewer=viewer)
    seen: list[list[str]] = []
    browser.on_select(seen.append)
    total = len(browser.series.options)
    browser.modality.value = ("CT",)
    browser.has_raw.value = "yes"
    assert 2 <= len(browser.series.options) < total
    assert f"<b>{len(browser.series.options)}</b> of" in browser.count.value
    uid = browser.series.options[0][1]
    browser.series.value = (uid,)
    assert seen == [[uid]] and viewer.series_instance_uid == uid
    assert bytes(browser.thumbs.children[0].value).startswith(PNG_MAGIC)
    browser.has_raw.value = "any"
    browser.has_alerts.value = "yes"
    assert "unknown" in " ".join(label for label, _ in browser.series.options)
    browser.series.value = (browser.series.options[0][1],)
    assert "il-alert" in browser.alerts.value


# -- SeriesViewer --------------------------------------------------------------------------------
def test_viewer_controls(recording_lake: Any) -> None:
    uid = _uid(recording_lake, "Thorax 1mm Br40 SYNTHETIC")
    viewer = SeriesViewer(recording_lake, uid)
    assert recording_lake.named("open_series") == [((uid, 0), {})]
    assert viewer.preset.value == "soft tissue" and "HU" in viewer.readout.value
    before = bytes(viewer.image.value)
    viewer.preset.value = "lung"
    assert (viewer.center.value, viewer.width.value) == WINDOW_PRESETS["lung"]
    assert bytes(viewer.image.value) != before and bytes(viewer.image.value).startswith(PNG_MAGIC)
    viewer.slice.value = 2
    assert viewer.readout.value.startswith("axial 3/")
    viewer.orientation.value = "sagittal"
    n, rows, _cols = viewer.dataset.image.shape
    assert viewer.slice.max == viewer.dataset.image.shape[2] - 1
    assert viewer.probe_row.max == n - 1 and viewer.probe_col.max == rows - 1
    assert viewer.readout.value.startswith("sagittal") and " mm" in viewer.readout.value


class _CountingStore:
    """Wraps a zarr store and records every read of the image array (key and byte range)."""

    def __new__(cls, inner: Any) -> Any:
        from zarr.storage import WrapperStore

        class Counting(WrapperStore[Any]):
            reads: ClassVar[list[tuple[str, Any]]] = []

            async def get(self, key: str, prototype: Any, byte_range: Any = None) -> Any:
                if key.startswith("image/c/"):
                    type(self).reads.append((key, byte_range))
                return await self._store.get(key, prototype, byte_range)

        Counting.reads = []
        return Counting(inner)


def test_viewer_reads_only_the_chunks_it_shows(tmp_path: Path, write_ct: Any) -> None:
    """Chunks of 4 slices x 32 x 32, shards of 8 slices: one axial slice of a 16 x 64 x 64
    stack intersects 4 of its 32 inner chunks, all in one shard."""
    from zarr.storage import LocalStore

    from imagelake import open_lake
    from imagelake.config import override

    files = write_ct("ct", n_slices=16, rows=64, cols=64)
    with override(chunk_slices=4, chunk_rows=32, chunk_cols=32, shard_slices=8):
        lake = open_lake(tmp_path / "lake", create=True)
        lake.ingest(files[0].parent)
    store_path = str(lake.stacks().store_path.iloc[0])
    counting = _CountingStore(LocalStore(lake.fs.path(store_path), read_only=True))

    class OneStackLake:
        def open_series(self, uid: str, stack: int = 0) -> xr.Dataset:
            return xr.open_zarr(counting, consolidated=True, chunks=None)

    viewer = SeriesViewer(OneStackLake(), "any")
    counting.reads.clear()
    viewer.slice.value = 13  # shard 1 (slices 8-15), inner chunk row 3 (slices 12-15)
    data_reads = [(k, r) for k, r in counting.reads if r is None or hasattr(r, "start")]
    keys = {k for k, _ in counting.reads}
    assert keys == {"image/c/1/0/0"}, keys  # only the shard holding slice 13
    assert len(data_reads) == 4, counting.reads  # the 4 inner chunks crossing slice 13
    assert len(data_reads) < 32
    counting.reads.clear()
    viewer.orientation.value = "coronal"  # row 32: 4 slice-chunks x 1 row-chunk x 2 column-chunks
    data_reads = [(k, r) for k, r in counting.reads if r is None or hasattr(r, "start")]
    assert len(data_reads) == 8 and len({k for k, _ in counting.reads}) == 2


# -- LinkingWidget -------------------------------------------------------------------------------
def test_linking_accept_calls_review(recording_lake: Any) -> None:
    widget = LinkingWidget(recording_lake)
    queued = recording_lake.review_queue().iloc[0]
    widget.raw.value = queued.raw_sha256
    widget.candidates.value = int(queued.link_id)
    assert "[veto]" in widget.evidence.value
    widget.note.value = "sibling scan, checked"
    widget.reject.click()
    assert recording_lake.named("review") == [
        ((int(queued.link_id),), {"accept": False, "note": "sibling scan, checked"})
    ]
    assert "rejected" in widget.status.value


def test_linking_manual_link_calls_add_link(recording_lake: Any) -> None:
    widget = LinkingWidget(recording_lake)
    opaque = recording_lake.raw_files(format="opaque").sha256.iloc[0]
    widget.raw.value = opaque
    assert "raw_not_viable" in widget.raw_alerts.value
    assert "no candidate" in widget.evidence.value
    uid = widget.manual_series.options[0][1]
    widget.manual_series.value = uid
    widget.manual.click()
    assert recording_lake.named("add_link") == [((opaque, uid), {"note": ""})]


def test_linking_state_on_a_real_lake(lake_copy: Any) -> None:
    widget = LinkingWidget(lake_copy)
    queued = lake_copy.review_queue().iloc[0]
    assert str(queued.link_id) in widget.queue.value
    widget.raw.value = queued.raw_sha256
    widget.candidates.value = int(queued.link_id)
    dashed = widget.graph.value.count("stroke-dasharray")
    widget.accept.click()
    assert int(queued.link_id) not in set(lake_copy.review_queue().link_id)
    assert lake_copy.links().set_index("link_id").loc[int(queued.link_id), "status"] == "accepted"
    assert f"link {int(queued.link_id)}: <b>accepted" in widget.status.value
    assert widget.graph.value.count("stroke-dasharray") == dashed - 1  # drawn solid now


# -- AnonymizationWidget ---------------------------------------------------------------------
def test_anonymization_run_calls_the_library(recording_lake: Any, tmp_path: Path) -> None:
    uids = [
        _uid(recording_lake, "Thorax 1mm Br40 SYNTHETIC"),
        _uid(recording_lake, "Sagittal T2 SYNTHETIC"),
    ]
    widget = AnonymizationWidget(recording_lake, tmp_path / "share")
    widget.series.value = tuple(uids)
    widget.options.value = ("retain_long_modified_dates",)
    assert "replaced" in widget.preview_table.value and "PatientName" in widget.preview_table.value
    widget.run_button.click()
    calls = recording_lake.named("anonymize")
    assert sorted(u for _a, k in calls for u in k["series_instance_uid"]) == sorted(uids)
    assert all(
        k["policy"]
        == {"name": "widget", "profile": "basic", "options": ["retain_long_modified_dates"]}
        for _a, k in calls
    )
    assert widget.progress.value == widget.progress.max == 2
    assert "done" in widget.summary.value


def test_anonymization_state_on_a_real_lake(lake_copy: Any, tmp_path: Path) -> None:
    from imagelake import open_lake

    uid = _uid(lake_copy, "Sagittal T2 SYNTHETIC")
    widget = AnonymizationWidget(lake_copy, tmp_path / "share", series=[uid])
    before = share_preview.sample_instance(lake_copy, uid)
    assert str(before.PatientName) in widget.preview_table.value  # on screen, for the owner
    widget.review_burned_in()
    assert widget.review.options[0][1] == -1  # synthetic MR: nothing held back
    widget.run_button.click()
    assert widget.report.series == 1 and widget.report.instances == 10
    share = open_lake(tmp_path / "share").query()
    assert len(share) == 1 and str(before.PatientName) not in set(share.patient_name)


def test_widgets_without_the_extra_name_it() -> None:
    code = (
        "import sys; sys.modules['ipywidgets'] = None\n"
        "try:\n    import imagelake.widgets\nexcept Exception as e:\n"
        "    print(type(e).__name__, e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "MissingExtraError" in out.stdout and "imagelake[jupyter]" in out.stdout


# -- emulator panel ------------------------------------------------------------------------------
def _emulated_raw(lake: Any) -> str:
    plan = lake.viability(alert=False)
    return str(plan[plan.path == "emulator"].sha256.iloc[0])


def test_emulator_panel_shows_emulators_vms_and_viability(
    recording_lake: Any, fake_manager: Any
) -> None:
    panel = EmulatorPanel(recording_lake, manager=fake_manager)
    assert {"reference-recon@1.0", "reference-recon@2.0"} <= set(panel.emulator.options)
    assert panel.emulator.options[0] == "auto"
    assert "reference-recon@1.0" in panel.emulators.value and "refscan" in panel.emulators.value
    assert "imagelake-job-x" in panel.vm.value and "QEMU" in panel.vm.value
    assert recording_lake.named("viability") == [((), {"alert": False})]
    plan = recording_lake.viability(alert=False)
    assert len(panel.raw.options) == len(plan)
    not_viable = plan[plan.path == "none"]
    if len(not_viable):  # the demo's opaque file: an alert in the list and in the detail
        panel.raw.value = str(not_viable.sha256.iloc[0])
        assert "not viable" in panel.detail.value
        assert any("⚠ not viable" in label for label, _ in panel.raw.options)
    sha = _emulated_raw(recording_lake)
    panel.raw.value = sha
    assert "path <b>emulator</b>" in panel.detail.value and "reference-recon@" in panel.detail.value
    assert not recording_lake.named("reprocess"), "showing never submits a job"


def test_emulator_panel_submit_calls_reprocess(recording_lake: Any, fake_manager: Any) -> None:
    panel = EmulatorPanel(recording_lake, manager=fake_manager)
    sha = _emulated_raw(recording_lake)
    panel.raw.value = sha
    panel.emulator.value = "reference-recon@1.0"
    panel.submit.click()
    panel.wait(30)
    ((args, kwargs),) = recording_lake.named("reprocess")
    assert args == (sha,)
    assert kwargs["emulator"] == "reference-recon@1.0" and kwargs["manager"] is fake_manager
    assert callable(kwargs["on_progress"])
    report = panel.last_report
    assert report is not None and panel.status.value.endswith(str(report))
    assert "TCG emulation, 12.5 s in the VM" in panel.status.value
    assert "1.2.3.4" in panel.outputs.value and "rootfs abababababab" in panel.outputs.value
    assert "qemu" in panel.outputs.value and "12.5 s" in panel.outputs.value
    assert not panel.submit.disabled and not fake_manager.closed, "an injected manager stays open"
    panel.emulator.value = "auto"  # the default choice goes to the library as "auto"
    panel.submit.click()
    panel.wait(30)
    assert recording_lake.named("reprocess")[-1][1]["emulator"] == "auto"


def test_emulator_panel_shows_an_error_not_a_traceback(
    recording_lake: Any, fake_manager: Any
) -> None:
    from imagelake.emulators import EmulatorJobError

    message = (
        "refscan revision 1 is no longer supported by this software (R2 reads revision 2 "
        "only); reconstruct it with reference-recon 1.0"
    )
    recording_lake.fail_with = EmulatorJobError(message, None)  # type: ignore[arg-type]
    panel = EmulatorPanel(recording_lake, manager=fake_manager, background=False)
    panel.raw.value = _emulated_raw(recording_lake)
    panel.emulator.value = "reference-recon@2.0"
    panel.submit.click()
    assert panel.last_report is None and panel.last_error == message
    assert "no longer supported by this software (R2 reads revision 2 only)" in panel.status.value
    assert "Traceback" not in panel.status.value and panel.outputs.value == ""
    assert not panel.submit.disabled


def test_emulator_panel_without_libvirt_names_the_fix(
    recording_lake: Any, fake_manager: Any
) -> None:
    fake_manager.down = True
    panel = EmulatorPanel(recording_lake, manager=fake_manager)
    assert "sudo make libvirtd-start" in panel.vm.value
    assert "cannot connect" in panel.vm.value
    assert "sudo make libvirtd-start" in vm_state_html(None)


def test_emulator_rows_image_state() -> None:
    from types import SimpleNamespace

    scanner = SimpleNamespace(manufacturer="RefScan", model="CT", software_versions=("R1.0",))
    manifests = [
        SimpleNamespace(
            ref=f"ref@{v}",
            vendor="imagelake",
            scanners=(scanner,),
            raw_formats=("refscan",),
            format_revisions={"refscan": (int(v[0]),)},
        )
        for v in ("1.0", "2.0", "3.0")
    ]

    class Images:
        def registered(self, m: Any) -> bool:
            return m.ref != "ref@3.0"

        def verify(self, m: Any) -> dict[str, Path]:
            if m.ref == "ref@2.0":
                raise ValueError("digest mismatch")
            return {}

    rows = emulator_rows(manifests, Images())
    assert list(rows.image) == ["ready", "registered, not verified", "missing"]
    assert rows.formats.iloc[0] == "refscan rev 1"
    assert rows.scanners.iloc[0] == "RefScan CT (R1.0)"
