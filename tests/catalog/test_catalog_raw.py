"""Raw stores in the lake's Intake catalog: keys, entries read back by Intake, moved lakes."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import intake
import numpy as np
import pytest
import xarray as xr

from imagelake._fs import LakeFS
from imagelake.catalog import (
    CATALOG_FILE,
    KEY_PATTERN,
    STACK_TEMPLATE_KEY,
    CatalogError,
    RawEntry,
    StackEntry,
    make_raw_key,
    make_stack_key,
    open_catalog,
    write_catalog,
)
from imagelake.formats import PatientIdentity, RawArray, RawContent, RawMeta
from imagelake.store import RawMember, RawStoreResult, raw_store_path, write_raw_store

SHA = hashlib.sha256(b"x").hexdigest()


# -- keys ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("ismrmrd", f"raw_ismrmrd_{SHA[:12]}"),
        ("siemens-twix", f"raw_siemens_twix_{SHA[:12]}"),
        ("dicom-ct-pd", f"raw_dicom_ct_pd_{SHA[:12]}"),
        ("3D Vendor!", f"raw_f3d_vendor_{SHA[:12]}"),
        (None, f"raw_unknown_{SHA[:12]}"),
        ("--", f"raw_unknown_{SHA[:12]}"),
    ],
)
def test_raw_keys_are_identifiers(fmt: str | None, expected: str) -> None:
    key = make_raw_key(SHA, fmt)
    assert key == expected and KEY_PATTERN.match(key) and key.isidentifier()


def test_raw_keys_never_look_like_stack_keys() -> None:
    # the only stack keys starting "raw_" are those of modality RAW, followed by a UID digit
    stack = make_stack_key("1.2.840.113619.2.55", 0, "RAW")
    assert stack.startswith("raw_") and stack[4].isdigit()
    for fmt in ("ismrmrd", "1234", "x"):
        assert make_raw_key(SHA, fmt)[4].isalpha()
    with pytest.raises(CatalogError, match="hex sha256"):
        make_raw_key("not-a-digest", "ismrmrd")
    with pytest.raises(CatalogError, match="hex sha256"):
        make_raw_key("abc", "ismrmrd")


# -- a lake with one decoded raw store ------------------------------------------------------
def _raw_store(lake: Path, src: Path, *, seed: int = 0) -> tuple[RawStoreResult, np.ndarray]:
    """Write a raw store from a synthetic reader result (complex64 k-space with coords)."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, 3000, dtype="uint8").tobytes()
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    k = (rng.standard_normal((2, 4, 6)) + 1j * rng.standard_normal((2, 4, 6))).astype("complex64")
    kspace = RawArray(
        "kspace",
        ("coil", "ky", "kx"),
        k.shape,
        k.dtype,
        lambda: k,
        attrs={"encoding": "cartesian"},
        coords={"coil": np.array(["H1", "H2"])},
    )
    meta = RawMeta(
        modality="MR",
        manufacturer="ACME",
        model="Phantom 3T",
        patient=PatientIdentity("PID-CAT-991", "ZZCATALOG^BOB", "19500101"),
    )
    content = RawContent("fake-mr", meta, {"kspace": kspace})
    result = write_raw_store(
        LakeFS(lake), sha256=sha, members=[RawMember(src.name, str(src), sha)], content=content
    )
    return result, k


def _entry(result: RawStoreResult) -> RawEntry:
    return RawEntry(
        key=make_raw_key(result.sha256, "fake-mr"),
        store_path=result.store_path,
        description="fake-mr k-space, ACME Phantom 3T",
        metadata={"format": "fake-mr", "sha256": result.sha256, "arrays": result.arrays},
    )


def _check_read(ds: xr.Dataset, k: np.ndarray) -> None:
    assert set(ds.data_vars) == {"kspace"} and "original" not in ds.variables
    assert ds["kspace"].dims == ("coil", "ky", "kx") and ds["kspace"].dtype == np.complex64
    assert np.array_equal(ds["kspace"].values, k)
    assert list(ds["coil"].values) == ["H1", "H2"]
    assert ds["kspace"].attrs["encoding"] == "cartesian"
    assert ds.attrs["meta"]["manufacturer"] == "ACME" and ds.attrs["format"] == "fake-mr"


def test_a_raw_entry_reads_back_through_intake_and_survives_a_move(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    result, k = _raw_store(lake, tmp_path / "in" / "scan.h5")
    entry = _entry(result)
    url = write_catalog(LakeFS(lake), [], [], raws=[entry])
    assert url == str(lake / CATALOG_FILE)
    text = (lake / CATALOG_FILE).read_text()
    assert str(tmp_path) not in text  # relative paths only
    assert "ZZCATALOG" not in text and "PID-CAT-991" not in text

    cat = open_catalog(lake)
    assert list(cat) == [STACK_TEMPLATE_KEY, entry.key]
    assert cat.metadata["raws"] == 1 and cat.metadata["stacks"] == 0
    meta = cat.entries[entry.key].metadata
    assert meta["kind"] == "raw" and meta["store_path"] == result.store_path
    assert meta["arrays"] == {"kspace": [2, 4, 6]} and meta["sha256"] == result.sha256
    ds = cat[entry.key].read()
    assert isinstance(ds, xr.Dataset)
    _check_read(ds, k)

    moved = tmp_path / "elsewhere" / "lake2"
    moved.parent.mkdir()
    shutil.move(str(lake), str(moved))
    cat2 = intake.from_yaml_file(str(moved / CATALOG_FILE))
    _check_read(cat2[entry.key].read(), k)


def test_stacks_and_raws_share_one_catalog_with_unique_keys_and_paths(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    result, _ = _raw_store(lake, tmp_path / "in" / "a.h5")
    other, k2 = _raw_store(lake, tmp_path / "in" / "b.h5", seed=1)
    stack = StackEntry(make_stack_key("1.2.3", 0, "MR"), "stores/dicom/1.2.3/0-abc.zarr")
    lakefs = LakeFS(lake)
    write_catalog(lakefs, [stack], [], raws=[_entry(result), _entry(other)])
    cat = open_catalog(lake)
    assert list(cat) == [STACK_TEMPLATE_KEY, stack.key, _entry(result).key, _entry(other).key]
    assert np.array_equal(cat[_entry(other).key].read()["kspace"].values, k2)

    with pytest.raises(CatalogError, match="used twice"):
        write_catalog(lakefs, [], [], raws=[_entry(result), _entry(result)])
    clash = RawEntry(stack.key, result.store_path)
    with pytest.raises(CatalogError, match="used twice"):
        write_catalog(lakefs, [stack], [], raws=[clash])
    same_path = RawEntry(make_raw_key(other.sha256, "x"), result.store_path)
    with pytest.raises(CatalogError, match="listed twice"):
        write_catalog(lakefs, [], [], raws=[_entry(result), same_path])
    with pytest.raises(CatalogError, match="relative"):
        write_catalog(lakefs, [], [], raws=[RawEntry(_entry(result).key, str(lake / "x.zarr"))])


def test_the_existing_call_without_raws_still_works(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    write_catalog(LakeFS(lake), [], [], name="imagelake", consolidated=True)
    cat = open_catalog(lake)
    assert list(cat) == [STACK_TEMPLATE_KEY] and cat.metadata["raws"] == 0
    assert raw_store_path(SHA) == f"stores/raw/{SHA}.zarr"
