"""Import optional dependencies with an error that names the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from imagelake.errors import MissingExtraError

__all__ = ["import_optional"]


def import_optional(module: str, extra: str, feature: str | None = None) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming ``imagelake[extra]``.

    Parameters
    ----------
    module
        Dotted module name, e.g. ``"pynetdicom"``.
    extra
        The imagelake extra that installs it, e.g. ``"net"``.
    feature
        What needs it, for the message (defaults to the module name).
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        what = feature or module
        raise MissingExtraError(
            f"{what} needs the optional dependency {module!r}, which is not installed. "
            f"Install it with: pip install 'imagelake[{extra}]'"
        ) from exc
