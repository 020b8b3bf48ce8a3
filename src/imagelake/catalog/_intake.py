"""A lake's native Intake 2 catalog: build it, write ``<lake>/catalog.yaml``, open it.

What the file holds (Intake 2 "version: 2" YAML, readable by ``intake.from_yaml_file``):

* one entry per index table (``series``, ``instances`` ...): Intake's ``PandasParquet``
  reader over a ``Parquet`` datatype, giving a :class:`pandas.DataFrame`;
* ``stack``: a parametrised entry that opens any stack by its ``store_path`` user parameter,
  so code can walk the ``series`` table without the catalog listing every stack;
* one entry per image stack: Intake's ``XArrayDatasetReader`` over a ``Zarr`` datatype with
  ``engine="zarr", chunks={}``, giving a lazy, dask-backed :class:`xarray.Dataset` whose
  CF ``scale_factor``/``add_offset`` turn stored integers into physical values on read;
* one entry per raw store with decoded arrays (k-space, sinograms): the same reader, with
  the store's ``original`` bytes left out (``drop_variables``), giving the decoded arrays,
  their coordinates and the scanner metadata (``attrs["meta"]``).

Paths are written as ``{CATALOG_DIR}/<relative path>``. ``intake.from_yaml_file`` sets the
``CATALOG_DIR`` user parameter to the folder (or URL) the file was read from, and
``STORAGE_OPTIONS`` to the options it was given, so the same file works wherever the lake is
copied or moved, on a local disk or an fsspec URL (``s3://bucket/lake``). Data sets are keyed
by their relative path (``cat.data["index/series.parquet"]``) rather than Intake's hashes, so
the file reads well and diffs cleanly.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import yaml

from imagelake._fs import LakeFS
from imagelake._version import __version__
from imagelake.catalog._entries import (
    CatalogError,
    RawEntry,
    StackEntry,
    TableEntry,
    check_key,
    check_relative_path,
    jsonable,
)
from imagelake.errors import LakeNotFoundError

if TYPE_CHECKING:
    from intake.readers.entry import Catalog

__all__ = [
    "CATALOG_FILE",
    "CATALOG_FORMAT",
    "DEFAULT_DESCRIPTION",
    "STACK_TEMPLATE_KEY",
    "STORE_PATH_PARAMETER",
    "build_catalog",
    "open_catalog",
    "to_yaml",
    "write_catalog",
]

#: Name of the catalog file at the lake root.
CATALOG_FILE = "catalog.yaml"
#: Version of the layout of entries written here (in the catalog's metadata).
CATALOG_FORMAT = 1
#: Key of the entry that opens any stack given its ``store_path`` user parameter.
STACK_TEMPLATE_KEY = "stack"
#: The catalog-level user parameter that :data:`STACK_TEMPLATE_KEY` reads.
STORE_PATH_PARAMETER = "store_path"
DEFAULT_DESCRIPTION = (
    "imagelake lake: DICOM image stacks and decoded raw scanner data (Zarr v3, opened "
    "lazily with xarray) and the registry's index tables (Parquet)"
)

# Set by intake.from_yaml_file on load; bound by build_catalog for in-memory use only,
# never written (the location would pin the file, the options may hold credentials).
_RUNTIME_PARAMETERS = ("CATALOG_DIR", "CATALOG_PATH", "STORAGE_OPTIONS")
_TEMPLATE_DATA_KEY = "stack_template"
# The raw object's bytes (possibly GBs): read with imagelake.store.read_original, not xarray.
_RAW_ORIGINAL = "original"

_HEADER = """\
# Intake 2 catalog of an imagelake lake, written by imagelake.catalog and rewritten after
# every change to the lake: edits made here are lost.
#
#   import intake
#   cat = intake.from_yaml_file("<lake>/catalog.yaml")
#   list(cat)                                # entry names
#   cat["series"].read()                     # pandas.DataFrame of the series index
#   cat["<stack key>"].read()                # lazy, dask-backed xarray.Dataset
#   cat(store_path="stores/dicom/<...>.zarr")["stack"].read()   # any stack by path
#   cat["raw_<format>_<sha>"].read()         # decoded raw data (k-space...), lazily
#
"""
_HEADER_RELATIVE = "# Paths are relative to this file ({CATALOG_DIR}): the lake may be moved.\n"
_HEADER_ABSOLUTE = "# Paths are absolute: re-write the catalog after moving the lake.\n"


def _reserved_keys() -> frozenset[str]:
    from intake.readers.entry import Catalog

    # An instance, not the class: entries, data, aliases ... are set in __init__.
    public = {name for name in dir(Catalog()) if not name.startswith("_")}
    # Catalog.get_entity("cat"/"catalog") returns the catalog itself.
    return frozenset(public | {"cat", "catalog", STACK_TEMPLATE_KEY, *_RUNTIME_PARAMETERS})


def _absolute(lake_url: str) -> str:
    # A relative local path would make the in-memory catalog depend on the working folder.
    if "://" in lake_url or "::" in lake_url:
        return lake_url.rstrip("/")
    return os.path.abspath(lake_url)


def _add(
    cat: Catalog,
    key: str,
    *,
    data_key: str,
    datatype: type[Any],
    data_kwargs: dict[str, Any],
    reader: type[Any],
    reader_kwargs: dict[str, Any],
    metadata: dict[str, Any],
) -> None:
    from intake.readers.entry import DataDescription, ReaderDescription

    cat.add_entry(DataDescription(datatype=datatype.qname(), kwargs=data_kwargs), name=data_key)
    entry = ReaderDescription(
        reader=reader.qname(),
        kwargs={"args": [f"{{data({data_key})}}"], **reader_kwargs},
        output_instance=reader.output_instance,
        metadata=metadata,
    )
    cat.add_entry(entry, name=key)
    # Catalog.__iter__/__len__/__repr__ only show aliases; an entry added under its own
    # name gets none, so `list(cat)` would be empty without this.
    cat.aliases[key] = key


def build_catalog(
    stacks: Iterable[StackEntry],
    tables: Iterable[TableEntry],
    *,
    lake_url: str,
    name: str = "imagelake",
    description: str = DEFAULT_DESCRIPTION,
    storage_options: Mapping[str, Any] | None = None,
    relative: bool = True,
    consolidated: bool | None = False,
    raws: Iterable[RawEntry] = (),
) -> Catalog:
    """Describe a lake as an Intake 2 catalog.

    Parameters
    ----------
    stacks
        The image stacks to list, in the order they should appear.
    tables
        The index tables to list (they come first in the catalog).
    lake_url
        Root of the lake (local path or fsspec URL). The returned catalog is bound to it so
        it can be read at once; with ``relative=True`` the location is not written to YAML.
    name, description
        Shown by Intake (``cat.metadata``).
    storage_options
        fsspec options for reading the lake from *this* catalog object (never written;
        whoever opens the YAML passes their own to ``intake.from_yaml_file``).
    relative
        Write paths as ``{CATALOG_DIR}/...`` (default), so the lake can be moved; with
        ``False`` they are absolute URLs under ``lake_url`` and the catalog must be
        re-written after a move.
    consolidated
        Passed to :func:`xarray.open_dataset` for every stack. ``False`` (default) reads the
        per-array ``zarr.json`` files and works whether or not consolidated metadata
        exists; ``None`` tries consolidated first (and warns when absent); ``True``
        requires it.
    raws
        Raw stores with decoded arrays to list after the stacks (keys from
        :func:`~imagelake.catalog.make_raw_key`).

    Returns
    -------
    intake.readers.entry.Catalog
        Entries keyed by table, stack and raw keys, plus :data:`STACK_TEMPLATE_KEY`.

    Raises
    ------
    CatalogError
        A key is not a valid identifier, is reserved or repeated, a path is not a plain
        relative path or repeated, or metadata is not JSON-able.
    """
    from intake.readers.datatypes import Parquet, Zarr
    from intake.readers.entry import Catalog
    from intake.readers.readers import PandasParquet, XArrayDatasetReader
    from intake.readers.user_parameters import SimpleUserParameter

    lake_url = _absolute(lake_url)
    base = "{CATALOG_DIR}" if relative else lake_url
    reserved = _reserved_keys()
    stacks, tables, raw_list = list(stacks), list(tables), list(raws)
    cat = Catalog(
        metadata={
            "name": name,
            "description": description,
            "generator": f"imagelake {__version__}",
            "imagelake_catalog_format": CATALOG_FORMAT,
            "paths": "relative" if relative else "absolute",
            "tables": [t.key for t in tables],
            "stacks": len(stacks),
            "raws": len(raw_list),
        }
    )
    cat.user_parameters.update(
        CATALOG_DIR=lake_url,
        CATALOG_PATH=f"{lake_url}/{CATALOG_FILE}",
        STORAGE_OPTIONS=dict(storage_options or {}),
    )
    seen_keys: set[str] = set()
    seen_paths: set[str] = {_TEMPLATE_DATA_KEY}

    def claim(key: str, path: str, what: str) -> None:
        check_key(key, reserved=reserved, what=what)
        check_relative_path(path, what=f"path of {what} {key!r}")
        if key in seen_keys:
            raise CatalogError(f"{what} key {key!r} is used twice; keys must be unique")
        if path in seen_paths:
            raise CatalogError(f"path {path!r} of {what} {key!r} is listed twice")
        seen_keys.add(key)
        seen_paths.add(path)

    for table in tables:
        claim(table.key, table.path, "table")
        _add(
            cat,
            table.key,
            data_key=table.path,
            datatype=Parquet,
            data_kwargs={"url": f"{base}/{table.path}", "storage_options": "{STORAGE_OPTIONS}"},
            reader=PandasParquet,
            reader_kwargs={},
            metadata=jsonable(
                {"kind": "table", "description": table.description, "path": table.path},
                where=f"table {table.key!r}",
            ),
        )

    xarray_kwargs: dict[str, Any] = {"engine": "zarr", "chunks": {}, "consolidated": consolidated}
    cat.user_parameters[STORE_PATH_PARAMETER] = SimpleUserParameter(
        dtype=str,
        default="",
        description="path of a stack's Zarr group relative to the lake root, for the "
        f"'{STACK_TEMPLATE_KEY}' entry (e.g. a stack entry's metadata['store_path'])",
    )
    _add(
        cat,
        STACK_TEMPLATE_KEY,
        data_key=_TEMPLATE_DATA_KEY,
        datatype=Zarr,
        data_kwargs={
            "url": f"{base}/{{{STORE_PATH_PARAMETER}}}",
            "storage_options": "{STORAGE_OPTIONS}",
        },
        reader=XArrayDatasetReader,
        reader_kwargs=dict(xarray_kwargs),
        metadata={
            "kind": "stack_template",
            "description": "any image stack, chosen by the store_path parameter: "
            f"cat({STORE_PATH_PARAMETER}='stores/dicom/<...>.zarr')"
            f"['{STACK_TEMPLATE_KEY}'].read()",
        },
    )

    for stack in stacks:
        claim(stack.key, stack.store_path, "stack")
        meta = {
            **stack.metadata,
            "kind": "stack",
            "description": stack.description,
            "store_path": stack.store_path,
        }
        _add(
            cat,
            stack.key,
            data_key=stack.store_path,
            datatype=Zarr,
            data_kwargs={
                "url": f"{base}/{stack.store_path}",
                "storage_options": "{STORAGE_OPTIONS}",
            },
            reader=XArrayDatasetReader,
            reader_kwargs=dict(xarray_kwargs),
            metadata=jsonable(meta, where=f"stack {stack.key!r}"),
        )

    raw_kwargs = {**xarray_kwargs, "drop_variables": [_RAW_ORIGINAL]}
    for raw in raw_list:
        claim(raw.key, raw.store_path, "raw store")
        meta = {
            **raw.metadata,
            "kind": "raw",
            "description": raw.description,
            "store_path": raw.store_path,
        }
        _add(
            cat,
            raw.key,
            data_key=raw.store_path,
            datatype=Zarr,
            data_kwargs={
                "url": f"{base}/{raw.store_path}",
                "storage_options": "{STORAGE_OPTIONS}",
            },
            reader=XArrayDatasetReader,
            reader_kwargs=dict(raw_kwargs),
            metadata=jsonable(meta, where=f"raw store {raw.key!r}"),
        )
    return cat


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """Safe YAML dumper (the C one when available: lakes list thousands of stacks)."""


def to_yaml(catalog: Catalog) -> str:
    """Serialise a catalog as Intake 2 YAML, without its runtime bindings.

    Unlike ``Catalog.to_yaml_file``, this drops ``CATALOG_DIR``/``CATALOG_PATH``/
    ``STORAGE_OPTIONS`` (which ``intake.from_yaml_file`` sets on load), keeps each user
    parameter's class (Intake 2.0.9 drops it, reviving a plain ``BaseUserParameter``), and
    orders sections for a human reader.

    Parameters
    ----------
    catalog
        Usually from :func:`build_catalog`.

    Returns
    -------
    str
        YAML text that ``intake.from_yaml_file`` reads.
    """
    from intake.readers.user_parameters import BaseUserParameter

    whole = catalog.to_dict()
    parameters = {
        key: (value.to_dict() if isinstance(value, BaseUserParameter) else value)
        for key, value in catalog.user_parameters.items()
        if key not in _RUNTIME_PARAMETERS
    }
    document = {
        "version": whole["version"],
        "metadata": whole["metadata"],
        "user_parameters": parameters,
        "entries": whole["entries"],
        "data": whole["data"],
        "aliases": whole["aliases"],
    }
    body = yaml.dump(
        # Flow style for leaf collections only: `shape: [120, 512, 512]` stays on one line.
        document,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=None,
        allow_unicode=True,
    )
    relative = catalog.metadata.get("paths", "relative") == "relative"
    return _HEADER + (_HEADER_RELATIVE if relative else _HEADER_ABSOLUTE) + body


def write_catalog(
    lakefs: LakeFS,
    stacks: Iterable[StackEntry],
    tables: Iterable[TableEntry],
    *,
    name: str = "imagelake",
    description: str = DEFAULT_DESCRIPTION,
    relative: bool = True,
    consolidated: bool | None = False,
    raws: Iterable[RawEntry] = (),
) -> str:
    """Write ``<lake>/catalog.yaml`` atomically (readers see the old or the new file).

    Parameters
    ----------
    lakefs
        The lake's file system.
    stacks, tables, name, description, relative, consolidated, raws
        As for :func:`build_catalog`.

    Returns
    -------
    str
        URL of the written file, for ``intake.from_yaml_file``.
    """
    catalog = build_catalog(
        stacks,
        tables,
        lake_url=lakefs.url(),
        name=name,
        description=description,
        storage_options=lakefs.storage_options,
        relative=relative,
        consolidated=consolidated,
        raws=raws,
    )
    lakefs.write_atomic(CATALOG_FILE, to_yaml(catalog))
    return lakefs.url(CATALOG_FILE)


def open_catalog(lake_url: str | os.PathLike[str], **storage_options: Any) -> Catalog:
    """Open a lake's catalog with Intake (the same as ``intake.from_yaml_file``).

    Parameters
    ----------
    lake_url
        Root of the lake (local path or fsspec URL), or the URL of a catalog file itself
        (ending in ``.yaml``/``.yml``).
    **storage_options
        fsspec options (credentials, endpoint ...), used for the catalog file and, through
        ``{STORAGE_OPTIONS}``, for every table and stack.

    Returns
    -------
    intake.readers.entry.Catalog

    Raises
    ------
    LakeNotFoundError
        There is no catalog file at that place.
    """
    import intake

    url = os.fspath(lake_url)
    if url.endswith((".yaml", ".yml")):
        root, _, filename = url.rstrip("/").rpartition("/")
        lakefs, rel = LakeFS(root or ".", **storage_options), filename
    else:
        lakefs, rel = LakeFS(url, **storage_options), CATALOG_FILE
    if not lakefs.exists(rel):
        raise LakeNotFoundError(
            f"no catalog at {lakefs.url(rel)}: not a lake, or its catalog was never written "
            "(imagelake.catalog.write_catalog, or any ingest, writes it)"
        )
    catalog: Catalog = intake.from_yaml_file(lakefs.url(rel), storage_options=storage_options)
    return catalog
