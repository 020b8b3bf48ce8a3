"""Raw stores: one Zarr v3 group per raw scanner object (ARCHITECTURE.md §3).

Layout (``layout_version`` 1; see docs/STORE_LAYOUT.md)::

    stores/raw/<sha256>.zarr/
        zarr.json        group attributes (format, sha256, meta, decode_error...) and the
                         consolidated metadata of every array
        original/        (byte,) uint8: the member files byte-exact, concatenated in order;
                         attribute ``members`` = [{name, offset, size, sha256}]
        kspace, ...      decoded arrays (complex64 k-space, sinograms...), with dims
        coil, view, ...  their 1-D coordinates
        manifest.json    sha256 + size of every object, sha256 of every member file

The object's identity is :func:`raw_object_sha256` of its members. A store is built under
``.tmp/raw-<uuid>`` and published by one rename; an existing store that verifies is
returned untouched, so writing the same object twice (or again after a crash) is safe.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import zarr
from zarr.codecs import BloscCodec, BloscShuffle
from zarr.core.dtype import VariableLengthUTF8

from imagelake._fs import LakeFS, fsync_dir
from imagelake._version import __version__
from imagelake.errors import FixityError, InvalidInputError, StoreError
from imagelake.formats import RawArray, RawContent, RawFormatError
from imagelake.store._manifest import MANIFEST, verify_store, write_manifest

__all__ = [
    "ORIGINAL",
    "RAW_KIND",
    "RAW_LAYOUT_VERSION",
    "RawMember",
    "RawStoreResult",
    "RawStoreSettings",
    "open_raw",
    "raw_object_sha256",
    "raw_store_path",
    "read_original",
    "restore_original",
    "write_raw_store",
]

RAW_LAYOUT_VERSION = 1
#: value of the group attribute ``kind`` of a raw store
RAW_KIND = "raw"
#: name of the array holding the member files byte-exact
ORIGINAL = "original"

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_MiB = 1 << 20


@dataclass(frozen=True)
class RawStoreSettings:
    """Chunking and compression of raw stores.

    Attributes
    ----------
    original_chunk_bytes
        Chunk length of ``original`` (bytes); also the most read into memory at once.
    array_chunk_bytes
        Upper bound of one chunk of a decoded array (chunks split its leading dims).
    compression_level
        zstd level of the Blosc codec.
    """

    original_chunk_bytes: int = 8 * _MiB
    array_chunk_bytes: int = 8 * _MiB
    compression_level: int = 3

    def __post_init__(self) -> None:
        if self.original_chunk_bytes < 1 or self.array_chunk_bytes < 1:
            raise ValueError("chunk sizes must be positive")


@dataclass(frozen=True)
class RawMember:
    """One file of a raw object.

    Attributes
    ----------
    name
        Relative name inside the object (usually the file name), ``/``-separated.
    path
        Local file to read.
    sha256
        Expected sha256 of the file; checked while it is stored. ``None``: computed.
    """

    name: str
    path: str
    sha256: str | None = None


@dataclass
class RawStoreResult:
    """What :func:`write_raw_store` did.

    ``arrays`` maps each decoded array to its shape (empty when none was decoded);
    ``decode_error`` is the reader's error when decoding failed (the original is kept);
    ``existed`` is true when the store was already in the lake and left untouched.
    """

    store_path: str
    sha256: str
    size: int
    stored_bytes: int
    manifest_sha256: str
    arrays: dict[str, tuple[int, ...]] = field(default_factory=dict)
    decode_error: str | None = None
    existed: bool = False


def raw_object_sha256(members: Sequence[tuple[str, str]]) -> str:
    """The identity of a raw object from its members' ``(name, sha256)`` pairs.

    One member: that file's sha256, so a single raw file's lake id is just its sha256.
    Several (e.g. one DICOM-CT-PD file per projection view): the sha256 of the UTF-8 text
    made of one line ``"<name>\\t<sha256>\\n"`` per member, members sorted by name. The id
    thus depends on the member names and contents, not on the order they were found in.

    Raises
    ------
    InvalidInputError
        No members, a repeated name, or a sha256 that is not 64 lower-case hex digits.
    """
    if not members:
        raise InvalidInputError("a raw object needs at least one member file")
    names = [name for name, _ in members]
    if len(set(names)) != len(names):
        raise InvalidInputError(f"raw object member names repeat: {sorted(names)}")
    for name, sha in members:
        if not _SHA256.match(sha):
            raise InvalidInputError(f"member {name!r}: {sha!r} is not a hex sha256")
    if len(members) == 1:
        return members[0][1]
    text = "".join(f"{name}\t{sha}\n" for name, sha in sorted(members))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def raw_store_path(sha256: str) -> str:
    """Where the raw object with this id lives in the lake: ``stores/raw/<sha256>.zarr``."""
    if not _SHA256.match(sha256):
        raise InvalidInputError(f"{sha256!r} is not a hex sha256 (64 lower-case digits)")
    return f"stores/raw/{sha256}.zarr"


def _check_member_name(name: str) -> None:
    parts = name.split("/")
    if not name or name.startswith("/") or "\\" in name or any(p in ("", ".", "..") for p in parts):
        raise InvalidInputError(
            f"raw member name {name!r} must be a relative '/'-separated path without "
            "empty, '.' or '..' segments"
        )


def _opts(lakefs: LakeFS) -> dict[str, Any] | None:
    return None if lakefs.is_local else lakefs.storage_options


def _blosc(dtype: np.dtype[Any], level: int) -> BloscCodec:
    # Bit-shuffle for integers (ADC counts) and for complex k-space: measured smaller than
    # byte-shuffle on real scanner k-space (twixtools' gre.dat 0.558 vs 0.584 of the raw
    # size, epi.dat 0.630 vs 0.640, ismrmrd-tools' phantom 0.873 vs 0.882) and faster to
    # read. Real-valued floats keep byte-shuffle, as in stack stores. (docs/STORE_LAYOUT.md)
    if dtype.kind in "biuc":
        shuffle = BloscShuffle.bitshuffle
    elif dtype.itemsize > 1:
        shuffle = BloscShuffle.shuffle
    else:
        shuffle = BloscShuffle.noshuffle
    return BloscCodec(cname="zstd", clevel=level, shuffle=shuffle)


def _array_chunks(shape: tuple[int, ...], itemsize: int, limit: int) -> tuple[int, ...]:
    """Chunk shape of at most ``limit`` bytes that splits only the leading dims.

    Trailing dims stay whole (a readout line, a detector row); the first dim whose
    trailing block fits is cut to fit, the ones before it become 1.
    """
    chunks = [max(1, n) for n in shape]
    for i in range(len(shape)):
        trailing = int(np.prod(chunks[i + 1 :], dtype=np.int64)) * itemsize
        if trailing * chunks[i] <= limit:
            break
        chunks[i] = max(1, min(chunks[i], limit // max(1, trailing)))
        if trailing <= limit:
            break
    return tuple(chunks)


def _jsonable(value: Mapping[str, Any], what: str) -> dict[str, Any]:
    def plain(v: Any) -> Any:
        if isinstance(v, np.generic | np.ndarray):
            return v.tolist()
        if isinstance(v, set | frozenset):
            return sorted(v)
        raise TypeError(f"{type(v).__name__} is not JSON-able")

    try:
        out: dict[str, Any] = json.loads(json.dumps(dict(value), default=plain))
    except (TypeError, ValueError) as exc:
        raise RawFormatError(f"{what}: {exc}") from exc
    return out


# -- writing ---------------------------------------------------------------------------


class _ChunkWriter:
    """Fills chunk-sized buffers and writes each full one to ``original`` in a thread.

    Two buffers: while one is compressed and written, the next is read and hashed, so the
    file is never in memory whole and the two cores overlap the work.
    """

    def __init__(self, arr: Any) -> None:
        self.arr = arr
        self.chunk = int(arr.chunks[0])
        self.buffers = [bytearray(self.chunk), bytearray(self.chunk)]
        self.current = 0
        self.fill = 0  # bytes of the current buffer not yet written
        self.pos = 0  # where the current buffer starts in the array
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="imagelake-raw")
        self.pending: Future[None] | None = None

    def __enter__(self) -> _ChunkWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.shutdown(wait=True)

    def space(self, limit: int) -> memoryview:
        """Where to read the next at most ``limit`` bytes."""
        free = min(self.chunk - self.fill, limit)
        return memoryview(self.buffers[self.current])[self.fill : self.fill + free]

    def advance(self, n: int) -> None:
        self.fill += n
        if self.fill == self.chunk:
            self.flush()

    def flush(self) -> None:
        self.wait()
        if not self.fill:
            return
        data = np.frombuffer(self.buffers[self.current], dtype="uint8")[: self.fill]
        self.pending = self.pool.submit(self._put, self.pos, data)
        self.pos += self.fill
        self.fill = 0
        self.current ^= 1

    def wait(self) -> None:
        if self.pending is not None:
            pending, self.pending = self.pending, None
            pending.result()

    def _put(self, pos: int, data: np.ndarray[Any, Any]) -> None:
        self.arr[pos : pos + data.size] = data


def _write_original(
    group: zarr.Group,
    members: Sequence[RawMember],
    chunk: int,
    level: int,
) -> list[dict[str, Any]]:
    """Stream the members into ``original`` one chunk at a time, hashing as they go."""
    sizes = []
    for m in members:
        try:
            sizes.append(os.path.getsize(m.path))
        except OSError as exc:
            raise StoreError(f"cannot read raw member {m.name!r} ({m.path}): {exc}") from exc
    total = sum(sizes)
    arr: Any = group.create_array(
        ORIGINAL,
        shape=(total,),
        dtype="uint8",
        chunks=(max(1, min(chunk, total)),),
        compressors=BloscCodec(cname="zstd", clevel=level, shuffle=BloscShuffle.noshuffle),
        fill_value=0,
        dimension_names=("byte",),
    )
    table = []
    offset = 0
    with _ChunkWriter(arr) as writer:
        for m, size in zip(members, sizes, strict=True):
            h = hashlib.sha256()
            seen = 0
            try:
                with open(m.path, "rb") as fh:
                    while seen < size:
                        space = writer.space(size - seen)
                        n = fh.readinto(space)
                        if not n:
                            break
                        h.update(space[:n])
                        seen += n
                        writer.advance(n)
                    grew = bool(fh.read(1))
            except OSError as exc:
                raise StoreError(f"cannot read raw member {m.name!r} ({m.path}): {exc}") from exc
            if seen != size or grew:
                raise StoreError(f"raw member {m.name!r} ({m.path}) changed size while stored")
            digest = h.hexdigest()
            if m.sha256 is not None and digest != m.sha256:
                raise FixityError(
                    f"raw member {m.name!r} ({m.path}) has sha256 {digest}, expected {m.sha256}"
                )
            table.append({"name": m.name, "offset": offset, "size": size, "sha256": digest})
            offset += size
        writer.flush()
        writer.wait()
    arr.attrs.update(
        {
            "long_name": "original file bytes",
            "members": table,
            "description": "the member files byte-exact, concatenated in this order",
        }
    )
    return table


def _coord_array(group: zarr.Group, dim: str, values: np.ndarray[Any, Any]) -> None:
    if values.dtype.kind in "OU":
        values = values.astype(str)
        dtype: Any = VariableLengthUTF8()
    else:
        dtype = values.dtype
    arr: Any = group.create_array(
        dim,
        shape=values.shape,
        dtype=dtype,
        chunks=(max(1, values.shape[0]),),
        dimension_names=(dim,),
    )
    arr[...] = values


def _unique_dims(raw: RawArray, sizes: dict[str, int]) -> RawArray:
    """``raw`` with a dimension renamed ``<dim>_<array>`` where an earlier array gave the
    same name another length (TWIX ``phasecorr`` has fewer ``ky`` lines than ``kspace``):
    one dataset cannot hold two lengths for one dimension name."""
    renamed = {
        d: f"{d}_{raw.name}"
        for d, n in zip(raw.dims, raw.shape, strict=True)
        if sizes.get(d, n) != n
    }
    for d, n in zip(raw.dims, raw.shape, strict=True):
        sizes.setdefault(renamed.get(d, d), n)
    if not renamed:
        return raw
    return dataclasses.replace(
        raw,
        dims=tuple(renamed.get(d, d) for d in raw.dims),
        coords={renamed.get(d, d): v for d, v in raw.coords.items()},
    )


def _write_decoded(
    group: zarr.Group, arrays: Mapping[str, RawArray], settings: RawStoreSettings
) -> tuple[dict[str, tuple[int, ...]], dict[str, np.ndarray[Any, Any]]]:
    """Load and store each decoded array and its coordinates."""
    shapes: dict[str, tuple[int, ...]] = {}
    coords: dict[str, np.ndarray[Any, Any]] = {}
    sizes: dict[str, int] = {}
    for original_raw in arrays.values():
        name = original_raw.name
        if name == ORIGINAL or "/" in name or not name or name in shapes or name in coords:
            raise RawFormatError(f"array name {name!r} is reserved, repeated or not a plain name")
        raw = _unique_dims(original_raw, sizes)
        for dim, values in raw.coords.items():
            vals = np.asarray(values)
            if dim not in raw.dims or vals.shape != (raw.shape[raw.dims.index(dim)],):
                raise RawFormatError(
                    f"array {name!r}: coordinate {dim!r} of shape {vals.shape} does not "
                    f"match its dims {raw.dims} and shape {raw.shape}"
                )
            if dim in shapes:
                raise RawFormatError(f"coordinate {dim!r} has the name of an array")
            if dim in coords:
                if not np.array_equal(coords[dim], vals):
                    raise RawFormatError(f"arrays disagree on coordinate {dim!r}")
                continue
            coords[dim] = vals
            _coord_array(group, dim, vals)
        attrs = _jsonable(raw.attrs, f"attributes of array {name!r}")
        data = raw.load()
        out: Any = group.create_array(
            name,
            shape=data.shape,
            dtype=data.dtype,
            chunks=_array_chunks(data.shape, data.dtype.itemsize, settings.array_chunk_bytes),
            compressors=_blosc(data.dtype, settings.compression_level),
            fill_value=0,
            dimension_names=raw.dims,
            attributes=attrs,
        )
        out[...] = data
        del data
        shapes[name] = tuple(int(n) for n in raw.shape)
    return shapes, coords


def _existing(lakefs: LakeFS, final: str) -> RawStoreResult | None:
    """The result for a published store that verifies, else ``None``."""
    if not lakefs.exists(final) or verify_store(lakefs, final):
        return None
    try:
        attrs = json.loads(lakefs.read_bytes(f"{final}/zarr.json")).get("attributes", {})
        size = int(attrs["size"])
        sha = str(attrs["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    manifest = lakefs.read_bytes(f"{final}/{MANIFEST}")
    return RawStoreResult(
        store_path=final,
        sha256=sha,
        size=size,
        stored_bytes=sum(lakefs.size(f"{final}/{rel}") for rel in lakefs.walk_files(final)),
        manifest_sha256=hashlib.sha256(manifest).hexdigest(),
        arrays={k: tuple(v) for k, v in (attrs.get("arrays") or {}).items()},
        decode_error=attrs.get("decode_error"),
        existed=True,
    )


def write_raw_store(
    lakefs: LakeFS,
    *,
    sha256: str,
    members: Sequence[RawMember],
    content: RawContent | None,
    settings: RawStoreSettings | None = None,
) -> RawStoreResult:
    """Store a raw object byte-exact, with its decoded arrays, at ``stores/raw/<sha256>.zarr``.

    The members are streamed into ``original`` one chunk at a time (memory stays at a few
    chunks whatever the file size) and hashed on the way. Each array of ``content`` is then
    loaded (whole: a reader's arrays must fit in memory) and stored with its dims,
    coordinates and attributes. When a reader fails while loading, the store is still
    written with ``original`` only and the group attribute ``decode_error``, also
    returned, says why.

    Parameters
    ----------
    lakefs
        The lake's file system.
    sha256
        The object's id, :func:`raw_object_sha256` of its members; checked.
    members
        The files of the object, in the order their bytes are concatenated.
    content
        What the format's reader found (metadata, lazy arrays), or ``None`` when no reader
        exists (an opaque object: ``original`` only).
    settings
        Chunking and compression; defaults of :class:`RawStoreSettings`.

    Returns
    -------
    RawStoreResult
        With ``existed=True`` (nothing written) when a store that verifies is already there.

    Raises
    ------
    FixityError
        A member's sha256 differs from the given one, or the members' id from ``sha256``.
        Nothing is published.
    StoreError
        A member cannot be read, or the store cannot be written.
    """
    settings = settings or RawStoreSettings()
    final = raw_store_path(sha256)
    if not members:
        raise InvalidInputError("a raw object needs at least one member file")
    for m in members:
        _check_member_name(m.name)
    if len({m.name for m in members}) != len(members):
        raise InvalidInputError(f"raw member names repeat: {[m.name for m in members]}")
    found = _existing(lakefs, final)
    if found is not None:
        return found
    tmp = lakefs.tmp_dir("raw-")
    try:
        with warnings.catch_warnings():
            # zarr warns that vlen-utf8 coordinates have no frozen v3 spec: we accept that
            warnings.simplefilter("ignore")
            group = zarr.open_group(lakefs.url(tmp), mode="w", storage_options=_opts(lakefs))
            table = _write_original(
                group, members, settings.original_chunk_bytes, settings.compression_level
            )
            actual = raw_object_sha256([(t["name"], t["sha256"]) for t in table])
            if actual != sha256:
                raise FixityError(f"the members of raw object {sha256} hash to {actual}")
            shapes: dict[str, tuple[int, ...]] = {}
            decode_error = None
            if content is not None and content.arrays:
                try:
                    shapes, _ = _write_decoded(group, content.arrays, settings)
                except Exception as exc:  # noqa: BLE001 - any reader failure keeps the original
                    decode_error = f"{type(exc).__name__}: {exc}"
                    shapes = {}
                    for name in [n for n in group.array_keys() if n != ORIGINAL]:
                        del group[name]
            meta = None
            if content is not None:
                try:
                    meta = _jsonable(content.meta.public(), "raw metadata")
                except RawFormatError as exc:  # a reader bug must not lose the original either
                    decode_error = decode_error or f"{type(exc).__name__}: {exc}"
            size = sum(int(t["size"]) for t in table)
            group.attrs.update(
                {
                    "layout_version": RAW_LAYOUT_VERSION,
                    "kind": RAW_KIND,
                    "imagelake_version": __version__,
                    "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                    "format": content.format if content is not None else None,
                    "sha256": sha256,
                    "size": size,
                    "n_members": len(table),
                    "arrays": {k: list(v) for k, v in shapes.items()},
                    "decode_error": decode_error,
                    "meta": meta,
                }
            )
            zarr.consolidate_metadata(group.store)
        manifest_sha = write_manifest(
            lakefs,
            tmp,
            sources={t["name"]: t["sha256"] for t in table},
            extra={"layout_version": RAW_LAYOUT_VERSION, "kind": RAW_KIND, "sha256": sha256},
        )
        stored = sum(lakefs.size(f"{tmp}/{rel}") for rel in lakefs.walk_files(tmp))
        if lakefs.exists(final):
            found = _existing(lakefs, final)
            if found is not None:  # another writer published the same object meanwhile
                return found
            # there but not verified: a damaged copy (an interrupted copy to object storage)
            lakefs.rm_tree(final)
        try:
            lakefs.publish_dir(tmp, final)
        except OSError:
            # another writer published the same object meanwhile
            found = _existing(lakefs, final)
            if found is None:
                raise
            return found
        return RawStoreResult(final, sha256, size, stored, manifest_sha, shapes, decode_error)
    finally:
        lakefs.rm_tree(tmp)


# -- reading ---------------------------------------------------------------------------


def open_raw(lakefs: LakeFS, store_path: str, *, chunks: Any = None) -> xr.Dataset:
    """Open a raw store's decoded arrays as an :class:`xarray.Dataset`, lazily.

    ``original`` (the file bytes, possibly GBs) is left out; read it with
    :func:`read_original` or :func:`restore_original`. Group attributes (``format``,
    ``sha256``, ``meta``, ``decode_error``...) are the dataset's attributes.

    Parameters
    ----------
    chunks
        As for :func:`imagelake.store.open_stack`: ``None`` lazy without dask, ``{}``
        one dask chunk per stored chunk.

    Raises
    ------
    StoreError
        Nothing readable at ``store_path``.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return xr.open_zarr(
                lakefs.url(store_path),
                chunks=chunks,
                consolidated=True,
                drop_variables=[ORIGINAL],
                storage_options=_opts(lakefs),
            )
    except (OSError, ValueError, KeyError) as exc:
        raise StoreError(f"cannot open raw store {store_path}: {exc}") from exc


def _original(lakefs: LakeFS, store_path: str) -> tuple[Any, list[dict[str, Any]]]:
    try:
        arr: Any = zarr.open_array(
            lakefs.url(f"{store_path}/{ORIGINAL}"), mode="r", storage_options=_opts(lakefs)
        )
        members = list(arr.attrs["members"])
    except (OSError, ValueError, KeyError) as exc:
        raise StoreError(f"{store_path} is not a raw store with an original: {exc}") from exc
    return arr, members


def _blocks(arr: Any, offset: int, size: int, store_path: str) -> Iterator[bytes]:
    """The bytes ``offset:offset+size`` of ``original``, one stored chunk at a time."""
    step = int(arr.chunks[0])
    start = offset
    end = offset + size
    while start < end:
        stop = min(end, (start // step + 1) * step)
        try:
            block = np.asarray(arr[start:stop]).tobytes()
        except Exception as exc:  # a damaged chunk fails in the codec
            raise FixityError(
                f"{store_path}: original bytes {start}:{stop} cannot be read "
                f"({type(exc).__name__}: {exc})"
            ) from exc
        yield block
        start = stop


def _member(members: list[dict[str, Any]], name: str, store_path: str) -> dict[str, Any]:
    for m in members:
        if m["name"] == name:
            return m
    raise StoreError(
        f"raw store {store_path} has no member {name!r}; members: {[m['name'] for m in members]}"
    )


def read_original(lakefs: LakeFS, store_path: str, member: str | None = None) -> bytes:
    """The original bytes of the whole object, or of one member, checked against sha256.

    Raises
    ------
    FixityError
        A member's bytes do not have the recorded sha256.
    StoreError
        Not a raw store, or no member of that name.
    """
    arr, members = _original(lakefs, store_path)
    chosen = members if member is None else [_member(members, member, store_path)]
    out = []
    for m in chosen:
        data = b"".join(_blocks(arr, int(m["offset"]), int(m["size"]), store_path))
        if hashlib.sha256(data).hexdigest() != m["sha256"]:
            raise FixityError(f"{store_path}: member {m['name']!r} does not match its sha256")
        out.append(data)
    return b"".join(out)


def restore_original(
    lakefs: LakeFS, store_path: str, dest_dir: str | os.PathLike[str]
) -> list[Path]:
    """Write each member file byte-exact under ``dest_dir`` and return their paths.

    Each file is streamed to a temporary name, its sha256 checked, then renamed into
    place; a member that does not verify is not left behind.

    Raises
    ------
    FixityError
        A member's bytes do not have the recorded sha256 (files restored before it stay).
    """
    arr, members = _original(lakefs, store_path)
    dest = Path(dest_dir)
    written = []
    for m in members:
        _check_member_name(str(m["name"]))
        target = dest.joinpath(*str(m["name"]).split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        h = hashlib.sha256()
        try:
            with open(tmp, "wb") as fh:
                for block in _blocks(arr, int(m["offset"]), int(m["size"]), store_path):
                    h.update(block)
                    fh.write(block)
                fh.flush()
                os.fsync(fh.fileno())
            if h.hexdigest() != m["sha256"]:
                raise FixityError(f"{store_path}: member {m['name']!r} does not match its sha256")
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                tmp.unlink()
        fsync_dir(target.parent)
        written.append(target)
    return written
