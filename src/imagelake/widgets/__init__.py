"""JupyterLab widgets: thin views over imagelake's library calls (layer L4).

Every button is a library function first; the widgets only show and call:

========================  ================================================================
widget                    library calls behind it
========================  ================================================================
:class:`CatalogBrowser`   :func:`imagelake.lake.explore.catalog_table`,
                          :func:`imagelake.index.facet_options`,
                          :func:`imagelake.lake.explore.series_thumbnail`
:class:`SeriesViewer`     :meth:`Lake.open_series`, :func:`imagelake.store.views.read_plane`,
                          :func:`imagelake.store.views.window`
:class:`LinkingWidget`    :meth:`Lake.review`, :meth:`Lake.add_link`,
                          :func:`imagelake.lake.explore.raw_candidates`,
                          :func:`imagelake.lake.explore.link_graph`
:class:`AnonymizationWidget`  :func:`imagelake.lake.share_preview.preview_deidentification`,
                          :func:`~imagelake.lake.share_preview.burned_in_review`,
                          :func:`~imagelake.lake.share_preview.anonymize_series`
:class:`EmulatorPanel`    :meth:`Lake.emulator_registry`, :meth:`Lake.viability`,
                          :meth:`Lake.reprocess`, :meth:`EmulatorManager.status`
========================  ================================================================

Each takes the lake in its constructor (a :class:`~imagelake.lake.Lake`, or any object with the
same public methods, such as a test double). Images reach the browser as PNG bytes windowed on
the kernel side. Needs the ``jupyter`` extra: ``pip install 'imagelake[jupyter]'``.
"""

from __future__ import annotations

from imagelake._optional import import_optional

import_optional("ipywidgets", "jupyter", "imagelake.widgets")
import_optional("PIL", "jupyter", "imagelake.widgets (PNG encoding)")

from imagelake.widgets._anonymize import AnonymizationWidget  # noqa: E402
from imagelake.widgets._catalog import CatalogBrowser  # noqa: E402
from imagelake.widgets._emulators import EmulatorPanel  # noqa: E402
from imagelake.widgets._linking import LinkingWidget  # noqa: E402
from imagelake.widgets._viewer import SeriesViewer  # noqa: E402

__all__ = [
    "AnonymizationWidget",
    "CatalogBrowser",
    "EmulatorPanel",
    "LinkingWidget",
    "SeriesViewer",
]
