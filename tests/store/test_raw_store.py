"""Raw stores: byte-exact originals, decoded arrays, fixity, idempotency and crash safety."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

from imagelake._fs import LakeFS, sha256_file
from imagelake.db import Database
from imagelake.errors import FixityError, InvalidInputError, StoreError
from imagelake.formats import PatientIdentity, RawArray, RawContent, RawFormatError, RawMeta
from imagelake.ingest import sweep_orphans
from imagelake.store import (
    RawMember,
    RawStoreSettings,
    open_raw,
    raw_object_sha256,
    raw_store_path,
    read_original,
    restore_original,
    verify_store,
    write_raw_store,
)
from imagelake.synthetic.samples import ismrmrd_phantom, twix_samples

CHUNK = 4096
SMALL = RawStoreSettings(original_chunk_bytes=CHUNK)
#: patient identity a raw header might hold: none of it may reach the store's metadata
PHI = PatientIdentity(patient_id="PID-Q7X93", name="ZZTESTPATIENT^ALICE", birth_date="19610423")


def _file(path: Path, data: bytes) -> RawMember:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return RawMember(path.name, str(path), hashlib.sha256(data).hexdigest())


def _random(n: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype="uint8").tobytes()


def _object_id(members: list[RawMember]) -> str:
    return raw_object_sha256([(m.name, m.sha256 or sha256_file(m.path)) for m in members])


def _array(name: str, dims: tuple[str, ...], data: np.ndarray, **kw: Any) -> RawArray:
    return RawArray(name, dims, data.shape, data.dtype, lambda: data, **kw)


def _kspace(shape: tuple[int, ...] = (4, 32, 64), seed: int = 0) -> np.ndarray:
    """Coil k-space of a smooth image plus noise, like an MR acquisition."""
    rng = np.random.default_rng(seed)
    coils, ny, nx = shape
    y, x = np.mgrid[-1 : 1 : ny * 1j, -1 : 1 : nx * 1j]
    image = np.exp(-(x**2 + y**2) * 3) * (x**2 + y**2 < 0.8)
    out = np.empty(shape, dtype="complex64")
    for c in range(coils):
        sens = np.exp(-((x - np.cos(c)) ** 2 + (y - np.sin(c)) ** 2))
        k = np.fft.fftshift(np.fft.fft2(image * sens))
        noise = rng.standard_normal(k.shape) + 1j * rng.standard_normal(k.shape)
        out[c] = k + 0.05 * noise
    return out


def _content(arrays: dict[str, RawArray], fmt: str = "fake-mr") -> RawContent:
    meta = RawMeta(
        modality="MR",
        manufacturer="ACME",
        model="Phantom 3T",
        software_version="VE11C",
        device_serial="12345",
        acquired_at="2021-06-22T15:16:35",
        frame_of_reference_uid="1.2.3.4.5",
        series_instance_uids=("1.2.3.4.6",),
        patient=PHI,
        extra={"n_coils": 4},
    )
    return RawContent(fmt, meta, arrays)


def _store_files(lake: Path, store_path: str) -> dict[str, int]:
    root = lake / store_path
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


# -- identity ------------------------------------------------------------------------------
def test_object_id_of_one_file_is_its_sha256_and_of_several_the_sorted_listing() -> None:
    a, b = "a" * 64, "b" * 64
    assert raw_object_sha256([("scan.dat", a)]) == a
    listing = f"v0001.dcm\t{b}\nv0002.dcm\t{a}\n".encode()
    expected = hashlib.sha256(listing).hexdigest()
    assert raw_object_sha256([("v0002.dcm", a), ("v0001.dcm", b)]) == expected
    assert raw_object_sha256([("v0001.dcm", b), ("v0002.dcm", a)]) == expected
    assert raw_object_sha256([("v0001.dcm", a), ("v0002.dcm", b)]) != expected
    assert raw_store_path(a) == f"stores/raw/{a}.zarr"
    with pytest.raises(InvalidInputError, match="repeat"):
        raw_object_sha256([("x", a), ("x", b)])
    with pytest.raises(InvalidInputError, match="not a hex sha256"):
        raw_object_sha256([("x", "ABC")])
    with pytest.raises(InvalidInputError):
        raw_store_path("../../etc")


# -- byte-exact originals ----------------------------------------------------------------------
@pytest.mark.parametrize("size", [0, 1, 1000, CHUNK, 2 * CHUNK, 5 * CHUNK + 17])
def test_single_file_round_trips_byte_exact(tmp_path: Path, size: int) -> None:
    lakefs = LakeFS(tmp_path / "lake")
    data = _random(size, seed=size)
    member = _file(tmp_path / "in" / "scan.dat", data)
    result = write_raw_store(lakefs, sha256=member.sha256 or "", members=[member], content=None)
    assert result.store_path == f"stores/raw/{hashlib.sha256(data).hexdigest()}.zarr"
    assert (result.size, result.arrays, result.decode_error) == (size, {}, None)
    assert read_original(lakefs, result.store_path) == data
    assert read_original(lakefs, result.store_path, "scan.dat") == data
    restored = restore_original(lakefs, result.store_path, tmp_path / "out")
    assert restored == [tmp_path / "out" / "scan.dat"]
    assert sha256_file(restored[0]) == hashlib.sha256(data).hexdigest()
    assert verify_store(lakefs, result.store_path) == []
    assert not list((tmp_path / "lake" / ".tmp").iterdir())


def test_multi_member_object_round_trips_each_member(tmp_path: Path) -> None:
    lakefs = LakeFS(tmp_path / "lake")
    sizes = {"views/v0003.dcm": 3 * CHUNK + 5, "views/v0001.dcm": 0, "views/v0002.dcm": 777}
    members = [
        RawMember(name, str(_write(tmp_path / "in" / name, _random(n, i))), None)
        for i, (name, n) in enumerate(sizes.items())
    ]
    sha = _object_id(members)
    result = write_raw_store(lakefs, sha256=sha, members=members, content=None, settings=SMALL)
    assert result.store_path == raw_store_path(sha) and result.size == sum(sizes.values())

    original: Any = zarr.open_array(str(tmp_path / "lake" / result.store_path / "original"))
    table = original.attrs["members"]
    assert [m["name"] for m in table] == list(sizes)  # the given order, not sorted
    assert [m["offset"] for m in table] == [0, 3 * CHUNK + 5, 3 * CHUNK + 5]
    whole = b""
    for m in members:
        data = Path(m.path).read_bytes()
        assert read_original(lakefs, result.store_path, m.name) == data
        whole += data
    assert read_original(lakefs, result.store_path) == whole
    restored = restore_original(lakefs, result.store_path, tmp_path / "out")
    for m, path in zip(members, restored, strict=True):
        assert path == tmp_path / "out" / m.name
        assert path.read_bytes() == Path(m.path).read_bytes()
    with pytest.raises(StoreError, match="no member 'nope'"):
        read_original(lakefs, result.store_path, "nope")


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_original_is_streamed_chunk_by_chunk(tmp_path: Path) -> None:
    """A file of many chunks is never held in memory whole, neither written nor restored."""
    lakefs = LakeFS(tmp_path / "lake")
    chunk = 128 * 1024
    size = 128 * chunk  # 16 MiB; memory use is a few chunks (two buffers, zarr + Blosc's)
    member = _file(tmp_path / "big.dat", _random(size))
    settings = RawStoreSettings(original_chunk_bytes=chunk)
    write_raw_store(lakefs, sha256=member.sha256 or "", members=[member], content=None)  # warm
    lakefs.rm_tree(raw_store_path(member.sha256 or ""))

    def peak(fn: Callable[[], object]) -> int:
        tracemalloc.start()
        try:
            fn()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    sha = member.sha256 or ""
    written = peak(
        lambda: write_raw_store(
            lakefs, sha256=sha, members=[member], content=None, settings=settings
        )
    )
    store: Any = zarr.open_array(str(tmp_path / "lake" / raw_store_path(sha) / "original"))
    assert store.chunks == (chunk,) and store.nchunks == 128
    restored = peak(lambda: restore_original(lakefs, raw_store_path(sha), tmp_path / "out"))
    assert written < size / 4, f"writing peaked at {written} bytes for a {size}-byte file"
    assert restored < size / 4, f"restoring peaked at {restored} bytes for a {size}-byte file"
    assert sha256_file(tmp_path / "out" / "big.dat") == sha


def test_writing_again_returns_the_store_untouched(tmp_path: Path) -> None:
    lakefs = LakeFS(tmp_path / "lake")
    member = _file(tmp_path / "scan.dat", _random(3 * CHUNK))
    k = _kspace((2, 8, 16))
    content = _content({"kspace": _array("kspace", ("coil", "ky", "kx"), k)})
    first = write_raw_store(
        lakefs, sha256=member.sha256 or "", members=[member], content=content, settings=SMALL
    )
    before = _store_files(tmp_path / "lake", first.store_path)
    again = write_raw_store(
        lakefs, sha256=member.sha256 or "", members=[member], content=content, settings=SMALL
    )
    assert again.existed and not first.existed
    assert (again.store_path, again.manifest_sha256, again.size, again.stored_bytes) == (
        first.store_path,
        first.manifest_sha256,
        first.size,
        first.stored_bytes,
    )
    assert again.arrays == first.arrays == {"kspace": (2, 8, 16)}
    assert _store_files(tmp_path / "lake", first.store_path) == before


def test_a_damaged_published_store_is_replaced(tmp_path: Path) -> None:
    lakefs = LakeFS(tmp_path / "lake")
    member = _file(tmp_path / "scan.dat", _random(3 * CHUNK))
    first = write_raw_store(
        lakefs, sha256=member.sha256 or "", members=[member], content=None, settings=SMALL
    )
    (tmp_path / "lake" / first.store_path / "original" / "c" / "1").unlink()
    again = write_raw_store(
        lakefs, sha256=member.sha256 or "", members=[member], content=None, settings=SMALL
    )
    assert not again.existed
    assert verify_store(lakefs, again.store_path) == []
    assert read_original(lakefs, again.store_path) == Path(member.path).read_bytes()


# -- decoded arrays ------------------------------------------------------------------------
def test_decoded_arrays_round_trip_exactly_with_dims_coords_attrs(tmp_path: Path) -> None:
    lakefs = LakeFS(tmp_path / "lake")
    member = _file(tmp_path / "scan.h5", _random(5000))
    k = _kspace((4, 32, 64))
    sino = np.random.default_rng(1).integers(-3000, 3000, (6, 3, 10), dtype="int16")
    noise = np.random.default_rng(2).standard_normal((4, 4)).astype("float32")
    angles = np.linspace(0, np.pi, 6, endpoint=False)
    coils = np.array(["H1", "H2", "N1", "N2"])
    arrays = {
        "kspace": _array(
            "kspace",
            ("coil", "ky", "kx"),
            k,
            attrs={"encoding": "cartesian"},
            coords={"coil": coils},
        ),
        "sinogram": _array(
            "sinogram",
            ("view", "row", "channel"),
            sino,
            attrs={"units": "counts", "source_to_detector_mm": 1085.6, "flip": [1, -1]},
            coords={"view": angles},
        ),
        "noise": _array("noise", ("coil", "coil_b"), noise, coords={"coil": coils}),
    }
    # small chunk limit: kspace is split along its leading dims only
    settings = RawStoreSettings(original_chunk_bytes=CHUNK, array_chunk_bytes=4 * 64 * 8)
    result = write_raw_store(
        lakefs,
        sha256=member.sha256 or "",
        members=[member],
        content=_content(arrays),
        settings=settings,
    )
    assert result.arrays == {"kspace": k.shape, "sinogram": sino.shape, "noise": noise.shape}
    assert result.decode_error is None

    ds = open_raw(lakefs, result.store_path)
    assert set(ds.data_vars) == {"kspace", "sinogram", "noise"} and "original" not in ds.variables
    for name, data in (("kspace", k), ("sinogram", sino), ("noise", noise)):
        assert ds[name].dims == arrays[name].dims
        assert ds[name].dtype == data.dtype
        assert np.array_equal(ds[name].values, data)  # bit-exact
    assert list(ds["coil"].values) == list(coils)
    assert np.array_equal(ds["view"].values, angles)
    assert ds["kspace"].attrs["encoding"] == "cartesian"
    assert ds["sinogram"].attrs == {
        "units": "counts",
        "source_to_detector_mm": 1085.6,
        "flip": [1, -1],
    }
    meta = ds.attrs["meta"]
    assert (meta["manufacturer"], meta["model"], meta["device_serial"]) == (
        "ACME",
        "Phantom 3T",
        "12345",
    )
    assert meta["series_instance_uids"] == ["1.2.3.4.6"] and meta["extra"] == {"n_coils": 4}
    assert "patient" not in meta
    assert ds.attrs["format"] == "fake-mr" and ds.attrs["sha256"] == result.sha256
    assert ds.attrs["layout_version"] == 1 and ds.attrs["decode_error"] is None

    group: Any = zarr.open_group(str(tmp_path / "lake" / result.store_path), mode="r")
    assert group["kspace"].chunks == (1, 4, 64)  # 2 KiB: whole readout lines
    assert group["sinogram"].chunks == sino.shape
    dask_ds = open_raw(lakefs, result.store_path, chunks={})
    assert np.array_equal(dask_ds["kspace"].data.compute(), k)


def test_a_failing_reader_keeps_the_original_and_reports_why(tmp_path: Path) -> None:
    lakefs = LakeFS(tmp_path / "lake")
    data = _random(2 * CHUNK + 3)
    member = _file(tmp_path / "scan.h5", data)

    def truncated() -> np.ndarray:
        raise RawFormatError("scan.h5: dataset /dataset/data is truncated")

    good = np.ones((2, 3), dtype="float32")
    arrays = {
        "noise": _array("noise", ("a", "b"), good, coords={"a": np.arange(2)}),
        "kspace": RawArray("kspace", ("ky", "kx"), (4, 4), np.dtype("complex64"), truncated),
    }
    result = write_raw_store(
        lakefs,
        sha256=member.sha256 or "",
        members=[member],
        content=_content(arrays),
        settings=SMALL,
    )
    assert result.decode_error == "RawFormatError: scan.h5: dataset /dataset/data is truncated"
    assert result.arrays == {}
    ds = open_raw(lakefs, result.store_path)
    assert dict(ds.variables) == {}  # the array written before the failure was removed too
    assert ds.attrs["decode_error"] == result.decode_error
    assert ds.attrs["meta"]["manufacturer"] == "ACME"
    assert read_original(lakefs, result.store_path) == data
    assert verify_store(lakefs, result.store_path) == []


def test_an_array_of_the_wrong_shape_is_a_decode_error(tmp_path: Path) -> None:
    lakefs = LakeFS(tmp_path / "lake")
    member = _file(tmp_path / "scan.h5", _random(10))
    liar = RawArray("kspace", ("ky", "kx"), (4, 4), np.dtype("complex64"), lambda: np.zeros(3))
    result = write_raw_store(
        lakefs, sha256=member.sha256 or "", members=[member], content=_content({"k": liar})
    )
    assert result.decode_error is not None and "declared complex64[4, 4]" in result.decode_error


def test_metadata_that_is_not_json_is_a_decode_error_too(tmp_path: Path) -> None:
    lakefs = LakeFS(tmp_path / "lake")
    member = _file(tmp_path / "scan.dat", _random(100))
    content = RawContent("fake-mr", RawMeta(manufacturer="ACME", extra={"bad": object()}))
    result = write_raw_store(lakefs, sha256=member.sha256 or "", members=[member], content=content)
    assert result.decode_error is not None and "raw metadata" in result.decode_error
    assert open_raw(lakefs, result.store_path).attrs["meta"] is None
    assert read_original(lakefs, result.store_path) == Path(member.path).read_bytes()


# -- fixity, bad input, crashes ------------------------------------------------------------
def test_a_member_with_another_sha256_is_refused_and_nothing_published(tmp_path: Path) -> None:
    lakefs = LakeFS(tmp_path / "lake")
    member = _file(tmp_path / "scan.dat", _random(3 * CHUNK))
    claimed = hashlib.sha256(b"something else").hexdigest()
    bad = RawMember(member.name, member.path, claimed)
    with pytest.raises(FixityError, match=f"scan.dat.*expected {claimed}"):
        write_raw_store(lakefs, sha256=claimed, members=[bad], content=None, settings=SMALL)
    assert not (tmp_path / "lake" / raw_store_path(claimed)).exists()
    assert not list((tmp_path / "lake" / ".tmp").iterdir())
    # the right member sha256 but another object id: refused as well
    with pytest.raises(FixityError, match="hash to"):
        write_raw_store(lakefs, sha256=claimed, members=[member], content=None, settings=SMALL)
    assert not (tmp_path / "lake" / "stores" / "raw").exists() or not list(
        (tmp_path / "lake" / "stores" / "raw").iterdir()
    )


def test_bad_input_gets_a_clear_error(tmp_path: Path) -> None:
    lakefs = LakeFS(tmp_path / "lake")
    sha = "a" * 64
    missing = RawMember("gone.dat", str(tmp_path / "gone.dat"), sha)
    with pytest.raises(StoreError, match=r"gone\.dat"):
        write_raw_store(lakefs, sha256=sha, members=[missing], content=None)
    for name in ("../x.dat", "/abs.dat", "a//b", ""):
        with pytest.raises(InvalidInputError, match="relative"):
            write_raw_store(lakefs, sha256=sha, members=[RawMember(name, "x", sha)], content=None)
    with pytest.raises(InvalidInputError, match="at least one"):
        write_raw_store(lakefs, sha256=sha, members=[], content=None)
    with pytest.raises(StoreError, match="cannot open raw store"):
        open_raw(lakefs, "stores/raw/nothing.zarr")
    with pytest.raises(StoreError, match="not a raw store"):
        read_original(lakefs, "stores/raw/nothing.zarr")


def test_a_crash_before_publishing_leaves_nothing_visible(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lakefs = LakeFS(tmp_path / "lake")
    member = _file(tmp_path / "scan.dat", _random(3 * CHUNK))

    def crash(tmp_rel: str, final_rel: str) -> None:
        raise RuntimeError("simulated crash before the rename")

    monkeypatch.setattr(lakefs, "publish_dir", crash)
    with pytest.raises(RuntimeError, match="simulated"):
        write_raw_store(lakefs, sha256=member.sha256 or "", members=[member], content=None)
    assert not (tmp_path / "lake" / raw_store_path(member.sha256 or "")).exists()
    assert not list((tmp_path / "lake" / ".tmp").iterdir())


_KILLED_WRITER = """
import os, signal, sys
from imagelake._fs import LakeFS
from imagelake.store import RawMember, RawStoreSettings, write_raw_store

def die(self, tmp_rel, final_rel):
    os.kill(os.getpid(), signal.SIGKILL)   # kill -9 between writing and publishing

LakeFS.publish_dir = die
lake, path, sha = sys.argv[1:]
write_raw_store(LakeFS(lake), sha256=sha, members=[RawMember("scan.dat", path, sha)],
                content=None, settings=RawStoreSettings(original_chunk_bytes=4096))
"""


def test_after_kill_9_the_tmp_tree_is_swept_and_a_rerun_completes(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    member = _file(tmp_path / "scan.dat", _random(3 * CHUNK))
    sha = member.sha256 or ""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_KILLED_WRITER), str(lake), member.path, sha],
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == -9, proc.stderr.decode()
    leftovers = list((lake / ".tmp").iterdir())
    assert len(leftovers) == 1 and leftovers[0].name.startswith("raw-")
    assert (leftovers[0] / "original" / "zarr.json").exists()  # it was killed mid-way, not before
    assert not (lake / raw_store_path(sha)).exists()

    lakefs = LakeFS(lake)
    db = Database(f"sqlite:///{tmp_path / 'registry.sqlite'}")
    try:
        removed = sweep_orphans(lakefs, db)
    finally:
        db.dispose()
    assert f".tmp/{leftovers[0].name}" in removed and not list((lake / ".tmp").iterdir())
    result = write_raw_store(lakefs, sha256=sha, members=[member], content=None, settings=SMALL)
    assert not result.existed and verify_store(lakefs, result.store_path) == []
    assert read_original(lakefs, result.store_path) == Path(member.path).read_bytes()


def test_verify_store_and_reads_detect_a_damaged_chunk(tmp_path: Path) -> None:
    lakefs = LakeFS(tmp_path / "lake")
    data = _random(3 * CHUNK)
    member = _file(tmp_path / "scan.dat", data)
    result = write_raw_store(
        lakefs, sha256=member.sha256 or "", members=[member], content=None, settings=SMALL
    )
    chunk = tmp_path / "lake" / result.store_path / "original" / "c" / "1"
    stored = bytearray(chunk.read_bytes())
    stored[len(stored) // 2] ^= 0x01
    chunk.write_bytes(bytes(stored))
    problems = verify_store(lakefs, result.store_path)
    assert [(p.object, p.problem) for p in problems] == [("original/c/1", "changed")]
    with pytest.raises(FixityError, match=r"scan\.dat|original bytes"):
        read_original(lakefs, result.store_path)
    # a chunk that decodes, but to other bytes (chunk 0 copied over chunk 1)
    chunk.write_bytes((chunk.parent / "0").read_bytes())
    with pytest.raises(FixityError, match=r"'scan\.dat' does not match its sha256"):
        read_original(lakefs, result.store_path)
    with pytest.raises(FixityError):
        restore_original(lakefs, result.store_path, tmp_path / "out")
    assert not list((tmp_path / "out").iterdir())  # nothing unverified left behind


def test_patient_identity_never_reaches_the_store(tmp_path: Path) -> None:
    lakefs = LakeFS(tmp_path / "lake")
    member = _file(tmp_path / "scan.dat", _random(2 * CHUNK))
    k = _kspace((2, 8, 16))
    content = _content({"kspace": _array("kspace", ("coil", "ky", "kx"), k)})
    result = write_raw_store(
        lakefs, sha256=member.sha256 or "", members=[member], content=content, settings=SMALL
    )
    secrets = [PHI.patient_id, PHI.name, PHI.birth_date, "ZZTESTPATIENT"]
    blobs = {p: p.read_bytes() for p in (tmp_path / "lake").rglob("*") if p.is_file()}
    assert any(p.name == "zarr.json" for p in blobs) and any(
        p.name == "manifest.json" for p in blobs
    )
    for path, blob in blobs.items():
        for secret in secrets:
            assert secret is not None and secret.encode() not in blob, f"{secret!r} in {path}"
    for secret in secrets:
        assert str(secret) not in repr(result)
    attrs = json.loads((tmp_path / "lake" / result.store_path / "zarr.json").read_bytes())
    assert attrs["attributes"]["meta"]["manufacturer"] == "ACME"  # the metadata is there


# -- real raw files ------------------------------------------------------------------------
def test_real_twix_files_round_trip_byte_exact(tmp_path: Path) -> None:
    """The Siemens TWIX examples shipped with twixtools, alone and as one two-file object."""
    try:
        samples = twix_samples()
    except RuntimeError as exc:  # PyPI unreachable and nothing cached
        pytest.skip(str(exc))
    lakefs = LakeFS(tmp_path / "lake")
    members = [RawMember(name, str(path), sha256_file(path)) for name, path in samples.items()]
    for m in members:
        result = write_raw_store(lakefs, sha256=m.sha256 or "", members=[m], content=None)
        assert result.store_path == raw_store_path(sha256_file(m.path))
        assert result.stored_bytes < result.size  # scanner raw data does compress
        assert read_original(lakefs, result.store_path) == Path(m.path).read_bytes()
    both = write_raw_store(
        lakefs,
        sha256=_object_id(members),
        members=members,
        content=None,
        settings=RawStoreSettings(original_chunk_bytes=256 * 1024),  # members cross chunks
    )
    restored = restore_original(lakefs, both.store_path, tmp_path / "out")
    assert [sha256_file(p) for p in restored] == [m.sha256 for m in members]
    assert verify_store(lakefs, both.store_path) == []


def test_real_ismrmrd_kspace_round_trips_exactly(
    tmp_path: Path, require_tool: Callable[[str], str]
) -> None:
    """A file made by ismrmrd-tools: its k-space decoded (with h5py, as the research notes
    show) and stored, and the file restored byte-exact."""
    require_tool("ismrmrd_generate_cartesian_shepp_logan")
    h5py = pytest.importorskip("h5py")
    path = ismrmrd_phantom(tmp_path / "phantom.h5", matrix=64, coils=4)

    def kspace() -> np.ndarray:
        with h5py.File(path, "r") as f:
            rec = f["/dataset/data"][...]
        nc = int(rec["head"]["active_channels"][0])
        lines = [d.view(np.complex64).reshape(nc, -1) for d in rec["data"]]
        return np.stack(lines, axis=1)  # (coil, ky, kx)

    k = kspace()
    assert k.dtype == np.complex64 and k.shape[0] == 4
    sha = sha256_file(path)
    content = _content(
        {"kspace": RawArray("kspace", ("coil", "ky", "kx"), k.shape, k.dtype, kspace)}
    )
    lakefs = LakeFS(tmp_path / "lake")
    result = write_raw_store(
        lakefs, sha256=sha, members=[RawMember("phantom.h5", str(path), sha)], content=content
    )
    ds = open_raw(lakefs, result.store_path)
    assert ds["kspace"].dtype == np.complex64 and np.array_equal(ds["kspace"].values, k)
    (restored,) = restore_original(lakefs, result.store_path, tmp_path / "out")
    assert sha256_file(restored) == sha
    with h5py.File(restored, "r") as f:
        assert set(f["dataset"]) >= {"data", "xml"}
