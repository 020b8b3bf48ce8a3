"""StackReader: instance by instance access to a stack store (what export and growth use)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest

from imagelake.dicom import read_header_bytes
from imagelake.lake import open_lake
from imagelake.store import StackReader


@pytest.fixture(scope="module")
def reader_and_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[StackReader, list[Path]]:
    from imagelake import synthetic

    base = tmp_path_factory.mktemp("reader")
    files = synthetic.write_series(synthetic.ct_series(5, 32, 32), base / "in")
    lake = open_lake(base / "lake", create=True)
    lake.ingest(base / "in", workers=1)
    (store,) = lake.stacks().store_path
    return StackReader(lake.fs, store), files


def test_header_of_one_instance_is_the_stored_bytes(reader_and_files) -> None:
    reader, files = reader_and_files
    headers = reader.headers()
    assert reader.n_instances == len(files) == len(headers)
    for index, whole in enumerate(headers):
        one = reader.header(index)
        assert isinstance(one, bytes)
        assert one == whole  # not the 8 bytes of a pointer to it
        assert len(one) > 128


def test_headers_and_frames_are_those_of_the_originals(reader_and_files) -> None:
    reader, files = reader_and_files
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        originals = {str(d.SOPInstanceUID): d for d in map(pydicom.dcmread, files)}
    seen = set()
    for index, header, frames in reader.iter_instances():
        ds = read_header_bytes(header)
        uid = str(ds.SOPInstanceUID)
        seen.add(uid)
        assert "PixelData" not in ds
        assert ds.ImagePositionPatient == originals[uid].ImagePositionPatient
        assert frames.shape == (1, 32, 32)
        np.testing.assert_array_equal(frames[0], originals[uid].pixel_array)
        assert reader.header(index) == header
    assert seen == set(originals)
