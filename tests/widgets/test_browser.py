"""Real-browser tests: JupyterLab on a free local port, Debian's chromium driven by Playwright.

Each notebook is opened and run through JupyterLab's UI; then one widget is changed in the page
and its effect checked there (a label, or the pixels of an image). A screenshot of each widget
is kept under ``test-artifacts/widgets/`` (and written to ``IMAGELAKE_SCREENSHOTS_DIR`` when
set: ``scripts/screenshots.py`` uses that to refresh ``docs/screenshots/``).

Needs ``/usr/bin/chromium`` (Debian package ``chromium``) and the ``jupyter`` extra (JupyterLab
and the Python package of Playwright; never ``playwright install``). Under ``CI=true`` their
absence fails the tests.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = REPO / "test-artifacts" / "widgets"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = pytest.mark.slow


def _missing(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: a missing dependency fails the test)", pytrace=False)
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def lab(
    small_lake_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """JupyterLab serving copies of the notebooks, on a copy of the small demo lake."""
    jupyter = Path(sys.executable).parent / "jupyter"
    try:
        import jupyterlab  # noqa: F401
    except ImportError:
        _missing("JupyterLab is not installed (pip install -e '.[jupyter]')")
    root = tmp_path_factory.mktemp("lab")
    shutil.copytree(small_lake_path, root / "lake")
    work = root / "notebooks"
    work.mkdir()
    for nb in NOTEBOOKS.glob("0[1-5]_*.ipynb"):
        shutil.copy(nb, work / nb.name)
    port, token = _free_port(), secrets.token_hex(16)
    env = {
        **os.environ,
        "IMAGELAKE_LAKE": str(root / "lake"),
        "JUPYTER_CONFIG_DIR": str(root / "cfg"),
    }
    env["JUPYTERLAB_WORKSPACES_DIR"] = str(root / "workspaces")
    # every cell in the DOM (no virtual scrolling), so the page shows every prompt and output
    settings = root / "settings"
    tracker = settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True)
    tracker.write_text('{"windowingMode": "none"}')
    notes = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notes.parent.mkdir(parents=True)
    notes.write_text('{"fetchNews": "false", "checkForUpdates": false}')
    env["JUPYTERLAB_SETTINGS_DIR"] = str(settings)
    cmd = [
        str(jupyter),
        "lab",
        "--no-browser",
        f"--port={port}",
        "--ip=127.0.0.1",
        f"--ServerApp.token={token}",
        f"--ServerApp.root_dir={work}",
        "--ServerApp.open_browser=False",
        "--LabApp.news_url=",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    log = open(root / "jupyter.log", "wb")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=work)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((root / "jupyter.log").read_text()[-3000:])
            time.sleep(0.5)
        yield {"url": url, "token": token, "root": root}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A headless Debian chromium with a fresh profile, driven by Playwright."""
    if not Path(CHROMIUM).exists():
        _missing(f"{CHROMIUM} is missing (Debian package chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the Python package playwright is not installed (pip install -e '.[jupyter]')")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 2400},
        )
        try:
            yield context
        finally:
            context.close()


def _shot(element: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    element.screenshot(path=str(ARTIFACTS / f"{name}.png"))
    docs = os.environ.get("IMAGELAKE_SCREENSHOTS_DIR")
    if docs:
        Path(docs).mkdir(parents=True, exist_ok=True)
        shutil.copy(ARTIFACTS / f"{name}.png", Path(docs) / f"{name}.png")


def _wait_idle(page: Any, timeout: float = 60_000) -> None:
    page.wait_for_function(
        "() => { const s = document.querySelector('#jp-main-statusbar');"
        " return !!s && /Idle/.test(s.textContent) && !/Busy|Starting|Connecting/.test(s.textContent); }",
        timeout=timeout,
    )


def _run_notebook(context: Any, lab: dict[str, Any], name: str) -> Any:
    page = context.new_page()
    # a workspace of its own, so JupyterLab does not restore the other notebooks' tabs
    workspace = name.split("_")[0]
    page.goto(f"{lab['url']}/lab/workspaces/nb{workspace}/tree/{name}?token={lab['token']}")
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=120_000)
    _wait_idle(page)
    page.locator(".jp-NotebookPanel:visible").first.click()
    # Run > Run All Cells, through the menu a person would use
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
    n_code = page.locator(".jp-CodeCell").count()
    page.wait_for_function(
        "n => { const p = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')];"
        " return p.length === n && p.every(e => /\\[\\d+\\]/.test(e.textContent)); }",
        arg=n_code,
        timeout=300_000,
    )
    _wait_idle(page)
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    tracebacks = [t for t in errors.all_text_contents() if "Traceback" in t or "Error" in t]
    assert not tracebacks, tracebacks
    return page


def _image_src(locator: Any) -> str:
    return str(locator.evaluate("e => e.src"))


def test_01_viewer_window_preset_changes_pixels(browser: Any, lab: dict[str, Any]) -> None:
    page = _run_notebook(browser, lab, "01_explore_the_lake.ipynb")
    catalog = page.locator(".imagelake-catalog-browser").first
    catalog.wait_for(timeout=60_000)
    viewer = page.locator(".imagelake-series-viewer").last
    viewer.scroll_into_view_if_needed()
    image = viewer.locator("img").first
    image.wait_for()
    before = _image_src(image)
    viewer.locator("select").first.select_option("lung")
    page.wait_for_function("([e, b]) => e.src !== b", arg=[image.element_handle(), before])
    center = viewer.locator("input[type='number']").first
    assert float(center.input_value()) == -600.0
    assert "HU" in viewer.inner_text()
    _shot(catalog, "catalog_browser")
    _shot(viewer, "series_viewer")
    page.close()


def test_02_linking_reject_shows_the_decision(browser: Any, lab: dict[str, Any]) -> None:
    page = _run_notebook(browser, lab, "02_link_raw_and_dicom.ipynb")
    widget = page.locator(".imagelake-linking").first
    widget.wait_for(timeout=60_000)
    assert "veto" in widget.inner_text()
    _shot(widget, "linking")
    widget.locator("button", has_text="reject").click()
    page.wait_for_function(
        "e => /rejected/.test(e.textContent)", arg=widget.element_handle(), timeout=60_000
    )
    assert re.search(r"link \d+: rejected", widget.inner_text())
    page.close()


def test_03_anonymization_policy_change_updates_preview(browser: Any, lab: dict[str, Any]) -> None:
    page = _run_notebook(browser, lab, "03_anonymize_and_share.ipynb")
    widget = page.locator(".imagelake-anonymization").first
    widget.wait_for(timeout=60_000)
    assert "done" in widget.inner_text()
    note_before = widget.inner_text()
    options = widget.locator("select[multiple]").nth(1)
    options.select_option(["retain_uids"])
    page.wait_for_function(
        "([e, b]) => e.innerText !== b", arg=[widget.element_handle(), note_before], timeout=60_000
    )
    _shot(widget, "anonymization")
    page.close()


def test_04_mining_plot_is_shown(browser: Any, lab: dict[str, Any]) -> None:
    page = _run_notebook(browser, lab, "04_mine_with_dask.ipynb")
    plot = page.locator(".jp-RenderedImage img").first
    plot.wait_for(timeout=60_000)
    assert _image_src(plot).startswith("data:image/png")
    assert "skipped" in page.locator(".jp-NotebookPanel:visible").first.inner_text()
    page.close()


def test_05_emulator_panel_raw_choice_changes_the_detail(browser: Any, lab: dict[str, Any]) -> None:
    # shows and selects only: submitting a job (a VM boot) is for notebook 05 and the VM tests
    page = _run_notebook(browser, lab, "05_reprocess_with_an_emulator.ipynb")
    panel = page.locator(".imagelake-emulator-panel").first
    panel.wait_for(timeout=60_000)
    panel.scroll_into_view_if_needed()
    text = panel.inner_text()
    assert "reference-recon@1.0" in text and "path emulator" in text
    _shot(panel, "emulator_panel")
    raw = panel.locator("select").first
    before = text
    current = raw.evaluate("e => e.selectedIndex")
    raw.select_option(index=0 if current != 0 else 1)
    page.wait_for_function(
        "([e, b]) => e.innerText !== b", arg=[panel.element_handle(), before], timeout=60_000
    )
    assert "path " in panel.inner_text()
    page.close()
