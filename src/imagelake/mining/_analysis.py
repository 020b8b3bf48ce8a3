"""What an analysis is: a named, versioned function from one store to named measures.

An analysis takes one lazily opened store, an :class:`xarray.Dataset` whose arrays are
dask-backed (one dask chunk per stored chunk), and returns a mapping of measure name to a
:class:`Measure`, a number, or a lazy dask/xarray scalar. Lazy values are evaluated by the
engine in one pass over the chunks, so an analysis writes plain xarray expressions::

    @analysis("mean-hu", version="1")
    def mean_hu(ds, *, lower=-1000.0):
        image = ds.image
        return {"hu_mean": Measure(image.where(image > lower).mean(), "HU")}

Analyses are found by name in :data:`analyses` (built-ins and the entry-point group
``imagelake.analyses``), or given as ``"module:function"`` or as an object.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import marshal
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from imagelake._registry import Registry
from imagelake.errors import ConfigError, PluginNotFoundError

__all__ = [
    "Analysis",
    "Measure",
    "analyses",
    "analysis",
    "code_hash",
    "get_analysis",
    "resolve_analysis",
]

Takes = Literal["stack", "raw"]
_TAKES = ("stack", "raw")


@dataclass(frozen=True)
class Measure:
    """One derived value: a number with its unit, and an optional JSON payload.

    Parameters
    ----------
    value
        A number (or a lazy dask/xarray scalar the engine evaluates), or ``None``.
    unit
        ``"HU"``, ``"ml"``, ``"mm"``, ``""`` for a ratio or a count.
    payload
        Anything JSON can hold (numpy arrays and lazy arrays are converted), e.g. a
        histogram ``{"edges": [...], "counts": [...]}``.
    """

    value: Any
    unit: str = ""
    payload: Any = None


def code_hash(func: Callable[..., Any]) -> str:
    """sha256 of a function's source (its bytecode when the source is not available).

    A change to the function's own text recomputes its measures; a change in a helper it
    calls does not, which is what an analysis' explicit ``version`` is for.
    """
    target = inspect.unwrap(func)
    try:
        text = textwrap.dedent(inspect.getsource(target)).encode()
    except (OSError, TypeError):
        code = getattr(target, "__code__", None)
        if code is None:
            code = getattr(type(target).__call__, "__code__", None)
        text = marshal.dumps(code) if code is not None else repr(target).encode()
    return hashlib.sha256(text).hexdigest()


def _jsonable(value: Any) -> Any:
    """Parameters and payloads as JSON values (numpy to lists and Python scalars)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


@dataclass(frozen=True)
class Analysis:
    """A named, versioned analysis of one store.

    Parameters
    ----------
    name
        Registry name, recorded as the measures' ``tool``.
    func
        ``func(ds, **params) -> Mapping[str, Measure | number | lazy scalar]``.
    version
        Explicit version; bump it when the results change for a reason the function's
        own source does not show (a helper, a library).
    takes
        ``"stack"``: a DICOM stack (``image`` in physical units, coordinates and the
        series attributes); ``"raw"``: a raw store's decoded arrays (``kspace``,
        ``sinogram``...).
    modalities
        Modalities the analysis applies to (empty: all); others are left out of a run.
    params
        Default parameters; a run may override them (unknown names are refused).
    description
        One line for people.
    """

    name: str
    func: Callable[..., Mapping[str, Any]]
    version: str = "0"
    takes: Takes = "stack"
    modalities: tuple[str, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        if self.takes not in _TAKES:
            raise ConfigError(
                f"analysis {self.name!r}: takes must be one of {', '.join(_TAKES)}, "
                f"not {self.takes!r}"
            )

    @property
    def function(self) -> str:
        """``module:qualname`` of the function."""
        target = inspect.unwrap(self.func)
        module = getattr(target, "__module__", None) or "?"
        return f"{module}:{getattr(target, '__qualname__', type(target).__name__)}"

    @property
    def code_hash(self) -> str:
        return code_hash(self.func)

    @property
    def tool_version(self) -> str:
        """What ``measure.tool_version`` holds: ``<version>+<code hash[:12]>``."""
        return f"{self.version}+{self.code_hash[:12]}"

    def bind(self, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The defaults updated with ``params``, as JSON values (what provenance records)."""
        given = dict(params or {})
        if self.params:
            unknown = sorted(set(given) - set(self.params))
            if unknown:
                raise ConfigError(
                    f"analysis {self.name!r} has no parameter(s) {unknown}; "
                    f"its parameters: {', '.join(sorted(self.params)) or 'none'}"
                )
        merged: dict[str, Any] = _jsonable({**self.params, **given})
        try:
            json.dumps(merged, sort_keys=True)
        except TypeError as exc:
            raise ConfigError(
                f"analysis {self.name!r}: parameters must be JSON values ({exc})"
            ) from exc
        return merged

    def applies_to(self, modality: str | None) -> bool:
        return not self.modalities or (modality or "") in self.modalities

    def __call__(self, ds: Any, **params: Any) -> Mapping[str, Any]:
        return self.func(ds, **params)


def analysis(
    name: str,
    *,
    version: str = "0",
    takes: Takes = "stack",
    modalities: tuple[str, ...] = (),
    params: Mapping[str, Any] | None = None,
    description: str = "",
) -> Callable[[Callable[..., Mapping[str, Any]]], Analysis]:
    """Decorator turning a function into an :class:`Analysis` (see the module docstring)."""

    def wrap(func: Callable[..., Mapping[str, Any]]) -> Analysis:
        doc = (inspect.getdoc(func) or "").split("\n", 1)[0]
        return Analysis(
            name=name,
            func=func,
            version=version,
            takes=takes,
            modalities=tuple(modalities),
            params=dict(params or {}),
            description=description or doc,
        )

    return wrap


#: every analysis by name: built-ins first, then the entry-point group ``imagelake.analyses``
analyses: Registry[Analysis] = Registry(
    "analysis",
    "imagelake.analyses",
    {
        "series-stats": "imagelake.mining.builtin:series_stats",
        "hu-histogram": "imagelake.mining.builtin:hu_histogram",
        "body-mask": "imagelake.mining.builtin:body_mask",
        "radiomics": "imagelake.mining.builtin:radiomics",
        "raw-stats": "imagelake.mining.builtin:raw_stats",
    },
)


def get_analysis(name: str) -> Analysis:
    """The analysis registered as ``name`` (an entry point may name a plain function)."""
    found: Any = analyses.get(name)
    return found if isinstance(found, Analysis) else _wrap(found, name)


def _wrap(func: Any, name: str) -> Analysis:
    if not callable(func):
        raise ConfigError(f"{name!r} is not an analysis or a function (it is {type(func)})")
    return Analysis(
        name=name,
        func=func,
        version=str(getattr(func, "__version__", "0")),
        description=(inspect.getdoc(func) or "").split("\n", 1)[0],
    )


def resolve_analysis(ref: str | Analysis | Callable[..., Mapping[str, Any]]) -> Analysis:
    """An :class:`Analysis` from a registry name, ``"module:function"``, or an object.

    A plain function becomes an analysis named ``module:qualname``, version ``"0"`` (or
    its ``__version__``), taking a stack.

    Raises
    ------
    PluginNotFoundError
        An unknown name (the message lists the registered ones) or a ``module:function``
        that does not import.
    """
    if isinstance(ref, Analysis):
        return ref
    if callable(ref):
        target = inspect.unwrap(ref)
        module = getattr(target, "__module__", "?")
        return _wrap(ref, f"{module}:{getattr(target, '__qualname__', repr(ref))}")
    if not isinstance(ref, str):
        raise ConfigError(f"an analysis is a name, 'module:function' or a function, not {ref!r}")
    if ref in analyses:
        return get_analysis(ref)
    if ":" in ref:
        module_name, _, attr = ref.partition(":")
        try:
            obj: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as exc:
            raise PluginNotFoundError(f"cannot load the analysis {ref!r}: {exc}") from exc
        return obj if isinstance(obj, Analysis) else _wrap(obj, ref)
    choices = ", ".join(sorted(analyses.names()))
    raise PluginNotFoundError(
        f"unknown analysis {ref!r}; registered: {choices}; or give one as 'module:function'"
    )
