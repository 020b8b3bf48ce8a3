"""A small lazy plugin registry shared by formats, profiles, link rules, commands...

Built-in plugins are listed as ``name -> "module:attribute"`` strings and imported only
when first used (as pydicom lists its pixel decoders); third parties add plugins through
an entry-point group. A plugin that fails to import is reported with a warning and left
out, never crashing the caller (as xarray does with its backends).
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Iterator, Mapping
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from imagelake.errors import PluginNotFoundError

__all__ = ["Registry"]

T = TypeVar("T")


def _load_target(target: str) -> object:
    module_name, _, attr = target.partition(":")
    obj: object = importlib.import_module(module_name)
    for part in attr.split(".") if attr else []:
        obj = getattr(obj, part)
    return obj


class Registry(Generic[T]):
    """Named plugins of one kind, resolved lazily.

    Parameters
    ----------
    kind
        What the plugins are, for messages ("raw format", "link rule"...).
    group
        Entry-point group scanned for third-party plugins, or ``None``.
    builtins
        Built-in plugins as ``name -> "module:attribute"`` or ``name -> object``.
    """

    def __init__(
        self, kind: str, group: str | None = None, builtins: Mapping[str, str | T] | None = None
    ) -> None:
        self.kind = kind
        self.group = group
        self._targets: dict[str, str | T] = dict(builtins or {})
        self._loaded: dict[str, T] = {}
        self._scanned = group is None

    def _scan(self) -> None:
        if self._scanned:
            return
        self._scanned = True
        assert self.group is not None
        for ep in entry_points(group=self.group):
            self._targets.setdefault(ep.name, ep.value)

    def register(self, name: str, plugin: str | T, *, replace: bool = False) -> None:
        """Add a plugin (an object, or a ``"module:attribute"`` string to import later)."""
        self._scan()
        if name in self._targets and not replace:
            raise ValueError(f"a {self.kind} named {name!r} is already registered")
        self._targets[name] = plugin
        self._loaded.pop(name, None)

    def unregister(self, name: str) -> None:
        self._targets.pop(name, None)
        self._loaded.pop(name, None)

    def names(self) -> list[str]:
        """Names of every registered plugin, loaded or not, in registration order."""
        self._scan()
        return list(self._targets)

    def get(self, name: str) -> T:
        """Return the plugin called ``name``, importing it if needed."""
        self._scan()
        if name in self._loaded:
            return self._loaded[name]
        try:
            target = self._targets[name]
        except KeyError:
            choices = ", ".join(sorted(self._targets)) or "none"
            raise PluginNotFoundError(
                f"unknown {self.kind} {name!r}; registered: {choices}"
            ) from None
        plugin = _load_target(target) if isinstance(target, str) else target
        self._loaded[name] = plugin  # type: ignore[assignment]
        return plugin  # type: ignore[return-value]

    def available(self) -> dict[str, T]:
        """Every plugin that imports; failures are warned about and skipped."""
        out: dict[str, T] = {}
        for name in self.names():
            try:
                out[name] = self.get(name)
            except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the rest
                warnings.warn(f"{self.kind} {name!r} failed to load: {exc}", stacklevel=2)
        return out

    def __contains__(self, name: object) -> bool:
        self._scan()
        return name in self._targets

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())
