"""EmulatorPanel: emulator versions, VM state, raw files' paths to pixels, reprocess jobs."""

from __future__ import annotations

import html
import threading
import time
from typing import Any

import ipywidgets as w
import pandas as pd

from imagelake.errors import ImagelakeError
from imagelake.widgets._logic import (
    emulator_rows,
    error_html,
    reprocess_report_html,
    table_html,
    viability_label,
    vm_state_html,
)

__all__ = ["EmulatorPanel"]

#: how often the status label shows the elapsed seconds while a job runs
TICK_S = 1.0


class EmulatorPanel(w.VBox):
    """Emulators and their images, VM state, viability of raw files, and reprocess jobs.

    Parameters
    ----------
    lake
        A :class:`~imagelake.lake.Lake` (or an object with ``emulator_registry``,
        ``viability``, ``reprocess`` and ``settings``).
    manager
        The :class:`~imagelake.emulators.EmulatorManager` that runs jobs and answers VM state;
        ``None`` means one is opened on ``Settings.emulator_uri`` when needed (and a clear
        message is shown when libvirt is not reachable).
    images
        The :class:`~imagelake.emulators.ImageStore`; ``None`` means the manager's, else one
        on ``Settings.emulator_images``.
    background
        Run jobs in a thread (default). Tests pass ``False`` to run them in the call.

    *Submit* calls :meth:`Lake.reprocess` with the chosen raw file and emulator
    (``auto`` or ``id@version``); :attr:`last_report` holds its report.
    """

    def __init__(
        self,
        lake: Any,
        *,
        manager: Any = None,
        images: Any = None,
        background: bool = True,
    ) -> None:
        self.lake = lake
        self.manager = manager
        self._images = images
        self.background = background
        self.last_report: Any = None
        self.last_error: str | None = None
        self._thread: threading.Thread | None = None
        self._viability = pd.DataFrame()
        self.emulators = w.HTML()
        self.vm = w.HTML()
        self.raw = w.Select(
            options=[], description="raw file", rows=6, layout=w.Layout(width="98%")
        )
        self.detail = w.HTML()
        self.emulator = w.Dropdown(
            options=["auto"], value="auto", description="emulator", layout=w.Layout(width="50%")
        )
        self.submit = w.Button(
            description="submit reprocess job", button_style="primary", icon="play",
            layout=w.Layout(width="auto"),
        )  # fmt: skip
        self.refresh_button = w.Button(description="refresh", icon="refresh")
        self.status = w.HTML()
        self.outputs = w.HTML()
        self.raw.observe(self._on_raw, "value")
        self.submit.on_click(lambda _b: self.run())
        self.refresh_button.on_click(lambda _b: self.refresh())
        super().__init__(
            [
                w.HTML("<b>Emulators</b> (versions and their images)"),
                self.emulators,
                w.HTML("<b>Virtual machines</b>"),
                self.vm,
                w.HTML("<b>Raw files</b> and their path to pixels"),
                self.raw,
                self.detail,
                w.HBox([self.emulator, self.submit, self.refresh_button]),
                self.status,
                self.outputs,
            ]
        )
        self.add_class("imagelake-emulator-panel")
        self.refresh()

    # -- library calls -----------------------------------------------------------------------
    def _image_store(self) -> Any:
        if self._images is not None:
            return self._images
        if self.manager is not None and getattr(self.manager, "images", None) is not None:
            return self.manager.images
        from imagelake.emulators import ImageStore

        return ImageStore(self.lake.settings.emulator_images)

    def _open_manager(self) -> Any:
        """The injected manager, or one on the lake's settings (raises when libvirt is down)."""
        if self.manager is not None:
            return self.manager
        from imagelake.emulators import EmulatorManager

        settings = self.lake.settings
        return EmulatorManager(
            settings.emulator_uri,
            images=self._image_store(),
            work_dir=settings.emulator_work_dir,
            sweep=False,
        )

    def refresh(self) -> None:
        """Read the emulator registry, the image store, the VM state and viability again."""
        try:
            registry = list(self.lake.emulator_registry())
        except ImagelakeError as exc:
            registry = []
            self.emulators.value = error_html(str(exc))
        else:
            rows = emulator_rows(registry, self._image_store())
            self.emulators.value = (
                table_html(rows, list(rows.columns)) if len(rows) else "<i>no emulator</i>"
            )
        self.emulator.options = ["auto", *sorted(m.ref for m in registry)]
        self.vm.value = self._vm_state()
        self._viability = self.lake.viability(alert=False)
        options = [(viability_label(r), str(r.sha256)) for r in self._viability.itertuples()]
        current = self.raw.value
        self.raw.options = options
        if current in {v for _, v in options}:
            self.raw.value = current
            self._on_raw(None)
        elif options:
            self.raw.value = options[0][1]

    def _vm_state(self) -> str:
        own = self.manager is None
        try:
            manager = self._open_manager()
        except Exception as exc:  # noqa: BLE001 - libvirt missing or down: say so, do not raise
            return vm_state_html(None, error=str(exc))
        try:
            return vm_state_html(manager.status())
        except Exception as exc:  # noqa: BLE001 - a connection that dropped
            return vm_state_html(None, error=str(exc))
        finally:
            if own:
                manager.close()

    def run(self) -> None:
        """Submit a reprocess job for the chosen raw file (:meth:`Lake.reprocess`)."""
        sha = self.raw.value
        if not sha:
            self.status.value = "choose a raw file first"
            return
        if self._thread is not None and self._thread.is_alive():
            self.status.value = "a job is running; wait for it to end"
            return
        emulator = str(self.emulator.value or "auto")
        self.last_report, self.last_error = None, None
        self.outputs.value = ""
        self.submit.disabled = True
        self.status.value = f"raw {html.escape(sha[:12])}: starting a job ({emulator}) …"
        if self.background:
            self._thread = threading.Thread(target=self._job, args=(sha, emulator), daemon=True)
            self._thread.start()
        else:
            self._job(sha, emulator)

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the running job (if any) to end."""
        if self._thread is not None:
            self._thread.join(timeout)

    def _job(self, sha: str, emulator: str) -> None:
        started = time.monotonic()
        done = threading.Event()
        stage = {"text": "VM running"}

        def on_progress(*args: Any) -> None:
            if args:
                stage["text"] = html.escape(" ".join(str(a) for a in args)[:80])

        def tick() -> None:
            while not done.wait(TICK_S):
                self.status.value = (
                    f"raw {html.escape(sha[:12])} ({html.escape(emulator)}): "
                    f"{stage['text']} … {time.monotonic() - started:.0f} s"
                )

        ticker = threading.Thread(target=tick, daemon=True)
        ticker.start()
        own = self.manager is None
        manager = None
        try:
            manager = self._open_manager()
            report = self.lake.reprocess(
                sha, emulator=emulator, manager=manager, on_progress=on_progress
            )
        except ImagelakeError as exc:
            self.last_error = str(exc)
            done.set()
            self.status.value = error_html(f"raw {sha[:12]}: {exc}")
        except Exception as exc:  # noqa: BLE001 - a thread must not die silently
            self.last_error = f"{type(exc).__name__}: {exc}"
            done.set()
            self.status.value = error_html(f"raw {sha[:12]}: {self.last_error}")
        else:
            self.last_report = report
            done.set()
            self.status.value = html.escape(str(report))
            self.outputs.value = reprocess_report_html(report)
        finally:
            done.set()
            if own and manager is not None:
                manager.close()
            self.submit.disabled = False
        self._refresh_quietly()

    def _refresh_quietly(self) -> None:
        try:
            self.refresh()
        except Exception:  # noqa: BLE001 - the job's outcome stays on screen either way
            pass

    # -- events ------------------------------------------------------------------------------
    def _on_raw(self, _change: Any) -> None:
        sha = self.raw.value
        rows = self._viability[self._viability.sha256 == sha] if sha else self._viability[:0]
        if rows.empty:
            self.detail.value = ""
            return
        row = rows.iloc[0]
        path = str(row["path"])
        text = (
            f"raw <code>{html.escape(str(sha)[:12])}</code> {html.escape(str(row['format']))}: "
            f"path <b>{html.escape(path)}</b>"
        )
        if row["via"]:
            text += f" via <code>{html.escape(str(row['via']))}</code>"
        if row["detail"]:
            text += f" ({html.escape(str(row['detail']))})"
        if path == "none":
            text = error_html("⚠ not viable: no reader and no emulator — ") + text
        self.detail.value = text
