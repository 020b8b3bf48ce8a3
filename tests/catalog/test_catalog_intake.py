"""A lake's catalog.yaml, read back by Intake 2 alone: lazy stacks, tables, moves, remote URLs."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dask.array
import fsspec
import intake
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr

from imagelake._fs import LakeFS
from imagelake.catalog import (
    CATALOG_FILE,
    STACK_TEMPLATE_KEY,
    StackEntry,
    TableEntry,
    build_catalog,
    make_stack_key,
    open_catalog,
    to_yaml,
    write_catalog,
)
from imagelake.errors import LakeNotFoundError

REPO = Path(__file__).resolve().parents[2]
SCALE, OFFSET = 2.0, -1024.0


# -- a tiny lake shaped like ours (ARCHITECTURE.md §1, §2) -------------------------------------
def write_stack(
    root: Path, rel: str, uid: str, *, slices: int = 3, consolidated: bool = False
) -> np.ndarray:
    """Write a Zarr v3 DICOM stack store at ``root/rel``; return the stored int16 pixels."""
    rows, cols = 4, 5
    raw = (np.arange(slices * rows * cols, dtype="int16") * 7).reshape(slices, rows, cols)
    group = zarr.open_group(str(root / rel), mode="w", zarr_format=3)
    group.attrs.update({"layout_version": 1, "Modality": "CT", "SeriesInstanceUID": uid})
    image = group.create_array(
        "image", shape=raw.shape, chunks=(2, rows, cols), dtype="int16",
        dimension_names=("slice", "y", "x"),
    )  # fmt: skip
    image[:] = raw
    image.attrs.update(
        {"scale_factor": SCALE, "add_offset": OFFSET, "units": "HU",
         "coordinates": "z sop_instance_uid"}
    )  # fmt: skip
    for name, dim, values in [
        ("z", "slice", np.arange(slices) * 2.5),
        ("y", "y", np.arange(rows) * 0.7),
        ("x", "x", np.arange(cols) * 0.7),
    ]:
        coord = group.create_array(
            name, shape=values.shape, dtype="float64", dimension_names=(dim,)
        )
        coord[:] = values
        coord.attrs["units"] = "mm"
    sop = group.create_array(
        "sop_instance_uid", shape=(slices,), dtype=str, dimension_names=("slice",)
    )
    sop[:] = np.array([f"{uid}.{i + 1}" for i in range(slices)])
    if consolidated:
        zarr.consolidate_metadata(str(root / rel))
    return raw


@dataclass
class Lake:
    root: Path
    stacks: list[StackEntry]
    tables: list[TableEntry]
    pixels: dict[str, np.ndarray]
    series: pd.DataFrame

    @property
    def fs(self) -> LakeFS:
        return LakeFS(self.root)


def make_lake(root: Path, *, n_stacks: int = 2, consolidated: bool = False) -> Lake:
    stacks, pixels, rows = [], {}, []
    for i in range(n_stacks):
        uid = f"1.2.826.0.1.3680043.8.498.{i + 1}"
        rel = f"stores/dicom/{uid}-s0-{i:08x}.zarr"
        key = make_stack_key(uid, 0, "CT")
        pixels[key] = write_stack(root, rel, uid, slices=3 + i, consolidated=consolidated)
        meta = {"modality": "CT", "manufacturer": "SIEMENS", "series_instance_uid": uid,
                "shape": pixels[key].shape, "dims": ("slice", "y", "x")}  # fmt: skip
        stacks.append(StackEntry(key, rel, f"CT test stack {i}", meta))
        rows.append({"series_instance_uid": uid, "modality": "CT", "store_path": rel})
    series = pd.DataFrame(rows, columns=["series_instance_uid", "modality", "store_path"])
    (root / "index").mkdir(parents=True, exist_ok=True)
    series.to_parquet(root / "index" / "series.parquet")
    tables = [TableEntry("series", "index/series.parquet", "one row per series")]
    return Lake(root, stacks, tables, pixels, series)


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    lake = make_lake(tmp_path / "lake")
    write_catalog(lake.fs, lake.stacks, lake.tables)
    return lake


@pytest.fixture
def no_runtime_warnings() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        yield


def physical(raw: np.ndarray) -> np.ndarray:
    return raw * SCALE + OFFSET


# -- the catalog file --------------------------------------------------------------------------
def test_write_returns_the_catalog_url(lake: Lake) -> None:
    url = write_catalog(lake.fs, lake.stacks, lake.tables)
    assert url == str(lake.root / CATALOG_FILE)
    assert sorted(p.name for p in lake.root.iterdir()) == [CATALOG_FILE, "index", "stores"]


def test_round_trip_through_yaml(lake: Lake) -> None:
    cat = intake.from_yaml_file(str(lake.root / CATALOG_FILE))
    keys = ["series", STACK_TEMPLATE_KEY] + [s.key for s in lake.stacks]
    assert list(cat.entries) == keys
    assert list(cat) == keys  # aliases make the names visible to list()/len()/repr()
    entry = cat.entries[lake.stacks[0].key]
    assert entry.metadata["kind"] == "stack"
    assert entry.metadata["modality"] == "CT"
    assert entry.metadata["shape"] == [3, 4, 5]
    assert entry.metadata["store_path"] == lake.stacks[0].store_path
    assert entry.metadata["description"] == "CT test stack 0"
    assert cat.metadata["stacks"] == 2 and cat.metadata["tables"] == ["series"]
    # Re-serialising what Intake loaded gives the same file: nothing is lost on the way.
    assert to_yaml(cat) == (lake.root / CATALOG_FILE).read_text()


def test_file_holds_no_absolute_path_or_options(lake: Lake) -> None:
    text = (lake.root / CATALOG_FILE).read_text()
    assert str(lake.root) not in text
    assert "{CATALOG_DIR}/stores/dicom/" in text
    for runtime in ("CATALOG_PATH", "STORAGE_OPTIONS:"):
        assert runtime not in text.split("version: 2", 1)[1].replace("'{STORAGE_OPTIONS}'", "")


def test_absolute_paths_on_request(tmp_path: Path) -> None:
    lake = make_lake(tmp_path / "lake", n_stacks=1)
    write_catalog(lake.fs, lake.stacks, lake.tables, relative=False)
    text = (lake.root / CATALOG_FILE).read_text()
    assert "{CATALOG_DIR}" not in text.split("version: 2", 1)[1]
    assert f"{lake.root}/stores/dicom/" in text
    cat = intake.from_yaml_file(str(lake.root / CATALOG_FILE))
    assert cat[lake.stacks[0].key].read().sizes["slice"] == 3


def test_empty_lake_writes_a_valid_catalog(tmp_path: Path) -> None:
    fs = LakeFS(tmp_path / "empty")
    url = write_catalog(fs, [], [])
    cat = intake.from_yaml_file(url)
    assert list(cat.entries) == [STACK_TEMPLATE_KEY]
    assert cat.metadata["stacks"] == 0


def test_lake_with_tables_but_no_stacks(tmp_path: Path) -> None:
    lake = make_lake(tmp_path / "lake", n_stacks=0)
    write_catalog(lake.fs, [], lake.tables)
    cat = intake.from_yaml_file(str(lake.root / CATALOG_FILE))
    assert cat["series"].read().empty


# -- reading -----------------------------------------------------------------------------------
@pytest.mark.usefixtures("no_runtime_warnings")
def test_stack_reads_lazily_in_physical_units(lake: Lake) -> None:
    cat = intake.from_yaml_file(str(lake.root / CATALOG_FILE))
    stack = lake.stacks[1]
    ds = cat[stack.key].read()
    assert isinstance(ds, xr.Dataset)
    assert isinstance(ds.image.data, dask.array.Array)
    assert ds.image.dims == ("slice", "y", "x")
    assert ds.image.dtype.kind == "f"
    np.testing.assert_allclose(ds.image.values, physical(lake.pixels[stack.key]))
    assert ds.image.attrs["units"] == "HU"
    assert ds.attrs["layout_version"] == 1
    assert {"z", "y", "x", "sop_instance_uid"} <= set(ds.coords)
    assert ds.sop_instance_uid.values[0] == stack.metadata["series_instance_uid"] + ".1"
    np.testing.assert_allclose(ds.z.values, [0.0, 2.5, 5.0, 7.5])


def test_read_arguments_override_the_catalog(lake: Lake) -> None:
    cat = intake.from_yaml_file(str(lake.root / CATALOG_FILE))
    key = lake.stacks[1].key
    assert cat[key].read(chunks={"slice": 4}).image.chunks[0] == (4,)
    raw = cat[key].read(mask_and_scale=False).image
    assert raw.dtype == np.int16
    np.testing.assert_array_equal(raw.values, lake.pixels[key])


@pytest.mark.parametrize("store_consolidated", [False, True])
@pytest.mark.usefixtures("no_runtime_warnings")
def test_default_reads_with_or_without_consolidated_metadata(
    tmp_path: Path, store_consolidated: bool
) -> None:
    lake = make_lake(tmp_path / "lake", n_stacks=1, consolidated=store_consolidated)
    write_catalog(lake.fs, lake.stacks, lake.tables)
    cat = intake.from_yaml_file(str(lake.root / CATALOG_FILE))
    assert cat[lake.stacks[0].key].read().sizes["slice"] == 3


def test_letting_xarray_decide_on_consolidated_metadata(tmp_path: Path) -> None:
    for store_consolidated in (True, False):
        lake = make_lake(tmp_path / f"lake{store_consolidated}", n_stacks=1,
                         consolidated=store_consolidated)  # fmt: skip
        write_catalog(lake.fs, lake.stacks, lake.tables, consolidated=None)
        cat = intake.from_yaml_file(str(lake.root / CATALOG_FILE))
        with warnings.catch_warnings():
            # xarray warns (RuntimeWarning) when it falls back to per-array metadata
            warnings.simplefilter("ignore", RuntimeWarning)
            assert cat[lake.stacks[0].key].read().sizes["slice"] == 3


def test_table_reads_as_a_dataframe(lake: Lake) -> None:
    cat = intake.from_yaml_file(str(lake.root / CATALOG_FILE))
    df = cat["series"].read()
    assert isinstance(df, pd.DataFrame)
    pd.testing.assert_frame_equal(df, lake.series)
    # Intake picks other readers for the same data: a lazy dask DataFrame for mining.
    ddf = cat["series"].to_reader("dask").read()
    assert ddf.compute().to_dict("list") == lake.series.to_dict("list")


@pytest.mark.usefixtures("no_runtime_warnings")
def test_stack_template_opens_any_stack_by_store_path(lake: Lake) -> None:
    cat = intake.from_yaml_file(str(lake.root / CATALOG_FILE))
    for row in cat["series"].read().itertuples():
        ds = cat(store_path=row.store_path)[STACK_TEMPLATE_KEY].read()
        assert ds.attrs["SeriesInstanceUID"] == row.series_instance_uid
        assert isinstance(ds.image.data, dask.array.Array)
    with pytest.raises(FileNotFoundError):  # no store_path given: the lake root is no stack
        cat[STACK_TEMPLATE_KEY].read()


def test_built_catalog_is_usable_before_writing(tmp_path: Path) -> None:
    lake = make_lake(tmp_path / "lake", n_stacks=1)
    cat = build_catalog(lake.stacks, lake.tables, lake_url=str(lake.root))
    key = lake.stacks[0].key
    np.testing.assert_allclose(cat[key].read().image.values, physical(lake.pixels[key]))
    assert len(cat["series"].read()) == 1


# -- moving the lake, other file systems -------------------------------------------------------
@pytest.mark.usefixtures("no_runtime_warnings")
def test_moved_lake_still_opens(lake: Lake, tmp_path: Path) -> None:
    moved = tmp_path / "elsewhere" / "a lake, moved"
    moved.parent.mkdir()
    shutil.move(lake.root, moved)
    cat = intake.from_yaml_file(str(moved / CATALOG_FILE))
    key = lake.stacks[0].key
    np.testing.assert_allclose(cat[key].read().image.values, physical(lake.pixels[key]))
    assert len(cat["series"].read()) == 2
    copy = tmp_path / "copy"
    shutil.copytree(moved, copy)
    shutil.rmtree(moved)
    assert intake.from_yaml_file(str(copy / CATALOG_FILE))[key].read().sizes["slice"] == 3


def test_relative_catalog_path_and_cwd(lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(lake.root.parent)
    cat = intake.from_yaml_file(f"{lake.root.name}/{CATALOG_FILE}")
    assert cat[lake.stacks[0].key].read().sizes["slice"] == 3


@pytest.fixture
def memory_lake(tmp_path: Path) -> Iterator[tuple[str, Lake]]:
    """The lake copied to fsspec's in-memory file system, standing in for s3://."""
    lake = make_lake(tmp_path / "lake")
    fs = fsspec.filesystem("memory")
    root = f"/imagelake-test-{uuid.uuid4().hex}"
    fs.put(str(lake.root), root, recursive=True)
    try:
        yield f"memory://{root}", lake
    finally:
        fs.rm(root, recursive=True)


@pytest.mark.usefixtures("no_runtime_warnings")
def test_lake_on_an_fsspec_url(memory_lake: tuple[str, Lake]) -> None:
    url, lake = memory_lake
    written = write_catalog(LakeFS(url), lake.stacks, lake.tables)
    assert written == f"{url}/{CATALOG_FILE}"
    cat = intake.from_yaml_file(written)
    key = lake.stacks[0].key
    ds = cat[key].read()
    assert isinstance(ds.image.data, dask.array.Array)
    np.testing.assert_allclose(ds.image.values, physical(lake.pixels[key]))
    pd.testing.assert_frame_equal(cat["series"].read(), lake.series)
    assert cat(store_path=lake.stacks[1].store_path)["stack"].read().sizes["slice"] == 4


def test_storage_options_reach_every_reader(lake: Lake) -> None:
    options = {"auto_mkdir": False}  # a harmless LocalFileSystem option
    cat = intake.from_yaml_file(str(lake.root / CATALOG_FILE), storage_options=options)
    assert cat["series"].data.storage_options == options
    assert cat[lake.stacks[0].key].data.storage_options == options
    assert len(cat["series"].read()) == 2
    assert cat[lake.stacks[0].key].read().sizes["slice"] == 3


# -- open_catalog ------------------------------------------------------------------------------
def test_open_catalog(lake: Lake) -> None:
    for where in (lake.root, str(lake.root / CATALOG_FILE)):
        cat = open_catalog(where)
        assert set(cat.entries) >= {"series", lake.stacks[0].key}


def test_open_catalog_without_a_catalog(tmp_path: Path) -> None:
    with pytest.raises(LakeNotFoundError, match="no catalog at"):
        open_catalog(tmp_path)
    with pytest.raises(FileNotFoundError):
        open_catalog(tmp_path / "other.yaml")


# -- users need only intake --------------------------------------------------------------------
USER_SCRIPT = """\
import sys

import intake
import dask.array
import pandas

cat = intake.from_yaml_file(sys.argv[1])
keys = list(cat.entries)
assert "series" in keys and "stack" in keys, keys
stacks = [k for k, e in cat.entries.items() if e.metadata.get("kind") == "stack"]
assert stacks == sys.argv[2].split(","), stacks
ds = cat[stacks[0]].read()
assert isinstance(ds.image.data, dask.array.Array), type(ds.image.data)
assert float(ds.image[0, 0, 0]) == -1024.0, float(ds.image[0, 0, 0])
df = cat["series"].read()
assert isinstance(df, pandas.DataFrame) and len(df) == 2
ds2 = cat(store_path=df.store_path[1])["stack"].read()
assert ds2.sizes["slice"] == 4
assert "imagelake" not in sys.modules, "the user's process imported imagelake"
print("OK", len(keys))
"""


def test_a_script_importing_only_intake_reads_the_lake(lake: Lake, tmp_path: Path) -> None:
    script = tmp_path / "user_script.py"
    script.write_text(textwrap.dedent(USER_SCRIPT))
    moved = tmp_path / "shared" / "lake"
    shutil.copytree(lake.root, moved)
    result = subprocess.run(
        [sys.executable, str(script), str(moved / CATALOG_FILE), ",".join(s.key for s in lake.stacks)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "OK 4"


# -- the repository's catalog of lakes ---------------------------------------------------------
def test_repository_catalog_opens_the_demo_lake(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "catalog").mkdir(parents=True)
    shutil.copy(REPO / "catalog" / "imagelake.yaml", repo / "catalog")
    lake = make_lake(repo / "lake", n_stacks=1)
    write_catalog(lake.fs, lake.stacks, lake.tables)
    lakes = intake.from_yaml_file(str(repo / "catalog" / "imagelake.yaml"))
    assert next(iter(lakes.entries)) == "demo"
    demo = lakes["demo"].read()
    key = lake.stacks[0].key
    np.testing.assert_allclose(demo[key].read().image.values, physical(lake.pixels[key]))

    other = make_lake(tmp_path / "other", n_stacks=2)
    write_catalog(other.fs, other.stacks, other.tables)
    chosen = lakes(lake_url=str(other.root))["lake"].read()
    assert len(chosen["series"].read()) == 2
