"""Round trip of REAL DICOM files: ingest → export gives the same pixels and the same header.

Every file of pydicom's ``test_files`` and of pydicom-data is either

* exported from a lake (tests/export/conftest.py) with pixel values identical to what
  pydicom decodes from the original, and every element of the original (pixel data, group
  lengths and — for originally compressed transfer syntaxes only — PhotometricInterpretation
  and PlanarConfiguration aside) present and equal; or
* quarantined, for the documented reason in :data:`EXPECTED_QUARANTINE`, which each test
  of ``test_quarantine_reason_is_true`` confirms with pydicom alone.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
import zarr
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels.utils import get_expected_length
from pydicom.tag import Tag
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from imagelake.dicom import decode_pixels
from imagelake.lake import open_lake

#: Real files that cannot be ingested, by ``folder/name``: (error class, words of the reason).
EXPECTED_QUARANTINE: dict[str, tuple[str, str]] = {
    # not DICOM at all
    "test_files/README.txt": ("NotDicomError", "not a DICOM file"),
    "dicomdirtests/README.txt": ("NotDicomError", "not a DICOM file"),
    "TINY_ALPHA/README": ("NotDicomError", "not a DICOM file"),
    "test_files/crayons.icc": ("NotDicomError", "not a DICOM file"),
    "test_files/rtplan.dump": ("NotDicomError", "not a DICOM file"),
    "test_files/rtstruct.dump": ("NotDicomError", "not a DICOM file"),
    "test_files/test1.json": ("NotDicomError", "not a DICOM file"),
    "test_files/test_PN.json": ("NotDicomError", "not a DICOM file"),
    "test_files/zipMR.gz": ("NotDicomError", "not a DICOM file"),
    # a dataset fragment without file meta and without SOP Instance UID
    "test_files/no_meta.dcm": ("NotDicomError", "not a DICOM file"),
    "test_files/meta_missing_tsyntax.dcm": ("NotDicomError", "not a DICOM file"),
    # DICOMDIR indexes: their folders are ingested instead
    "dicomdirtests/DICOMDIR-bigEnd": ("NotDicomError", "DICOMDIR"),
    "dicomdirtests/DICOMDIR-empty.dcm": ("NotDicomError", "DICOMDIR"),
    "dicomdirtests/DICOMDIR-implicit": ("NotDicomError", "DICOMDIR"),
    "dicomdirtests/DICOMDIR-nooffset": ("NotDicomError", "DICOMDIR"),
    "dicomdirtests/DICOMDIR-nopatient": ("NotDicomError", "DICOMDIR"),
    "dicomdirtests/DICOMDIR-reordered": ("NotDicomError", "DICOMDIR"),
    # no SOP/Series/Study Instance UID: nothing to file the instance under
    "test_files/JPEGLSNearLossless_08.dcm": ("InvalidInputError", "missing identifying"),
    "test_files/JPEGLSNearLossless_16.dcm": ("InvalidInputError", "missing identifying"),
    "test_files/SC_rgb_jls_lossy_line.dcm": ("InvalidInputError", "missing identifying"),
    "test_files/SC_rgb_jls_lossy_sample.dcm": ("InvalidInputError", "missing identifying"),
    "test_files/UN_sequence.dcm": ("InvalidInputError", "missing identifying"),
    "test_files/empty_charset_LEI.dcm": ("InvalidInputError", "missing identifying"),
    "test_files/nested_priv_SQ.dcm": ("InvalidInputError", "missing identifying"),
    "test_files/no_meta_group_length.dcm": ("InvalidInputError", "missing identifying"),
    "test_files/priv_SQ.dcm": ("InvalidInputError", "missing identifying"),
    "data/emri_small_jpeg_2k_lossless_too_short.dcm": (
        "InvalidInputError",
        "missing identifying",
    ),
    # broken files
    "test_files/badVR.dcm": ("InvalidInputError", "NumberOfFrames is not an integer"),
    "test_files/MR_truncated.dcm": ("PixelDataError", "truncated"),
    "test_files/rtplan_truncated.dcm": ("InvalidInputError", "truncated"),
    # pixel data no installed decoder can decode (pydicom fails as well)
    "test_files/JPEG-lossy.dcm": ("PixelDataError", "cannot be decoded"),
    "test_files/JPEG2000-embedded-sequence-delimiter.dcm": ("PixelDataError", "cannot be decoded"),
}

#: Enhanced multi-frame objects that must be among the round-tripped files.
ENHANCED = [
    "data/emri_small.dcm",
    "data/emri_small_RLE.dcm",
    "data/emri_small_big_endian.dcm",
    "data/emri_small_jpeg_2k_lossless.dcm",
    "data/emri_small_jpeg_ls_lossless.dcm",
    "data/eCT_Supplemental.dcm",
]

PIXEL_TAGS = {Tag(0x7FE00010), Tag(0x7FE00008), Tag(0x7FE00009)}
#: Elements an export of an originally compressed instance sets to describe decoded pixels.
DECODED_DESCRIPTION = {Tag(0x00280004), Tag(0x00280006)}


def _real_files() -> list[str]:
    """``folder/name`` of every input file the main ingest discovers (for test ids)."""
    try:
        import data_store
    except ImportError:
        return []
    from imagelake.ingest import discover

    folders = [
        Path(pydicom.__file__).parent / "data" / "test_files",
        Path(data_store.__file__).parent / "data",
    ]
    return [f"{Path(s.path).parent.name}/{Path(s.path).name}" for s in discover(folders)]


pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

REAL_FILES = _real_files()
ROUND_TRIP_FILES = [f for f in REAL_FILES if f not in EXPECTED_QUARANTINE]


def read(path: str | Path) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path, force=True)


def source_of(real_lakes, rel: str) -> str:
    matches = [str(p) for p in real_lakes.files if real_lakes.relname(p) == rel]
    assert len(matches) == 1, f"{rel}: {len(matches)} files"
    return matches[0]


def transfer_syntax(ds: Dataset) -> UID | None:
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    return UID(ts) if ts else None


def with_transfer_syntax(ds: Dataset) -> Dataset:
    """``ds``, given the transfer syntax it was read with if it has no file meta (pydicom
    needs one to decode pixels)."""
    if transfer_syntax(ds) is None:
        implicit, little = ds.original_encoding
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = (
            ImplicitVRLittleEndian if implicit else
            ExplicitVRLittleEndian if little else ExplicitVRBigEndian
        )  # fmt: skip
    return ds


def pixel_words_are_masked(ds: Dataset) -> bool:
    """Whether decoding drops bits of the stored words (BitsStored < BitsAllocated)."""
    bits = int(ds.get("BitsAllocated") or 0)
    return bits > 8 and int(ds.get("BitsStored") or bits) < bits


def reference_pixels(ds: Dataset) -> tuple[np.ndarray, bool]:
    """pydicom's own decoding: raw (no colour conversion) when it can, else its default.

    Returns the array and whether it is raw.
    """
    ds = with_transfer_syntax(ds)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return pydicom.pixels.pixel_array(ds, raw=True), True
        except Exception:
            return ds.pixel_array, False


def shown(elem: pydicom.DataElement) -> str:
    """An element's value for a failure message; never a name, ID or birth date."""
    if elem.VR == "PN" or elem.keyword.startswith(("Patient", "OtherPatient", "Accession")):
        return "<value withheld>"
    return repr(str(elem.value)[:60])


def header_differences(original: Dataset, exported: Dataset) -> list[str]:
    ts = transfer_syntax(original)
    compressed = ts is not None and ts.is_compressed
    problems = []
    for elem in original:
        tag = elem.tag
        if tag in PIXEL_TAGS or tag.element == 0 or (compressed and tag in DECODED_DESCRIPTION):
            continue
        if tag not in exported:
            problems.append(f"{tag} {elem.keyword or 'private'} missing")
        elif exported[tag].value != elem.value:
            problems.append(
                f"{tag} {elem.keyword or 'private'}: {shown(elem)} became {shown(exported[tag])}"
            )
    meta_o = getattr(original, "file_meta", None)
    meta_e = getattr(exported, "file_meta", None)
    for keyword in ("MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID"):
        present = meta_o is not None and keyword in meta_o
        if present and (meta_e is None or meta_e.get(keyword) != meta_o.get(keyword)):
            problems.append(f"file meta {keyword} differs")
    return problems


@pytest.mark.slow
def test_every_real_file_is_exported_or_quarantined(real_lakes) -> None:
    assert REAL_FILES, "no real files found"
    assert len(real_lakes.files) == len(REAL_FILES)
    assert not real_lakes.lost, "\n".join(
        f"{real_lakes.relname(p)}: {why}" for p, why in sorted(real_lakes.lost.items())
    )
    assert len(real_lakes.exported) + len(real_lakes.quarantined) == len(real_lakes.files)


@pytest.mark.slow
def test_quarantined_real_files_are_the_documented_ones(real_lakes) -> None:
    found = {real_lakes.relname(p): v for p, v in real_lakes.quarantined.items()}
    assert sorted(found) == sorted(EXPECTED_QUARANTINE), (
        f"unexpectedly quarantined: {sorted(set(found) - set(EXPECTED_QUARANTINE))}; "
        f"unexpectedly accepted: {sorted(set(EXPECTED_QUARANTINE) - set(found))}"
    )
    for rel, (error, reason) in found.items():
        want_error, words = EXPECTED_QUARANTINE[rel]
        assert error == want_error, f"{rel}: {error}: {reason}"
        assert words in reason, f"{rel}: {reason!r} does not say {words!r}"


@pytest.mark.parametrize("rel", sorted(EXPECTED_QUARANTINE))
def test_quarantine_reason_is_true(real_dicom_dirs, rel: str) -> None:
    """pydicom alone confirms each documented reason (the lake is not consulted)."""
    matches = [
        p for folder in real_dicom_dirs for p in folder.rglob(rel.split("/")[-1])
        if p.parent.name == rel.split("/")[0]
    ]  # fmt: skip
    assert len(matches) == 1, rel
    path = matches[0]
    _, words = EXPECTED_QUARANTINE[rel]
    if words == "DICOMDIR":
        assert "DirectoryRecordSequence" in read(path)
    elif words == "not a DICOM file":
        try:
            ds = read(path)
        except Exception:
            return
        assert not ds.get("SOPInstanceUID")
        assert "TransferSyntaxUID" not in getattr(ds, "file_meta", Dataset())
    elif words == "missing identifying":
        ds = read(path)
        uids = ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID")
        assert not all(ds.get(k) for k in uids)
    elif words == "NumberOfFrames is not an integer":
        with pytest.raises(ValueError):
            int(read(path).NumberOfFrames)
    elif words == "truncated":
        ds = read(path)
        truncated = [
            t for t in ds.keys()  # noqa: SIM118 - iterating a Dataset yields elements
            if isinstance(getattr(ds.get_item(t), "value", None), bytes)
            and ds.get_item(t).length != 0xFFFFFFFF
            and len(ds.get_item(t).value) < ds.get_item(t).length
        ]  # fmt: skip
        assert truncated, f"{rel} is not truncated"
    elif words == "cannot be decoded":
        with pytest.raises(Exception):  # noqa: B017 - whatever pydicom raises
            reference_pixels(read(path))
    else:
        pytest.fail(f"no check for {words!r}")


@pytest.mark.slow  # (the session's ingest of the real files)
@pytest.mark.parametrize("rel", ROUND_TRIP_FILES)
def test_round_trip(real_lakes, rel: str) -> None:
    source = source_of(real_lakes, rel)
    assert source in real_lakes.exported, real_lakes.quarantined.get(source)
    original = read(source)
    exported = read(real_lakes.exported[source])

    assert header_differences(original, exported) == []

    has_pixels = any(t in original for t in PIXEL_TAGS)
    assert has_pixels == any(t in exported for t in PIXEL_TAGS)
    if not has_pixels:
        return
    ts = transfer_syntax(original)
    native = ts is None or not (ts.is_compressed or ts.is_deflated)
    if native:
        # same transfer syntax, and the very same pixel bytes
        assert transfer_syntax(exported) == ts
        tag = next(t for t in PIXEL_TAGS if t in original)
        # (big endian 8-bit data may come as OW, byte-swapped per word, and go out as OB;
        # bits above BitsStored are not pixel values: pydicom masks or sign-extends them)
        same_vr = exported[tag].VR == original[tag].VR or ts != "1.2.840.10008.1.2.2"
        if same_vr and not pixel_words_are_masked(original):
            n = get_expected_length(original, "bytes")
            assert bytes(exported[tag].value)[:n] == bytes(original[tag].value)[:n]
    want, raw = reference_pixels(original)
    got = (
        pydicom.pixels.pixel_array(with_transfer_syntax(exported), raw=True)
        if raw
        else reference_pixels(exported)[0]
    )
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)
    if raw:  # and the lake's own decoder reads the export the same way
        lake_view = decode_pixels(with_transfer_syntax(exported)).array
        np.testing.assert_array_equal(lake_view.reshape(want.shape), want)


@pytest.mark.slow
@pytest.mark.parametrize("rel", ENHANCED)
def test_enhanced_multiframe_is_one_stack_of_all_frames(real_lakes, rel: str) -> None:
    source = source_of(real_lakes, rel)
    assert source in real_lakes.exported
    original = read(source)
    n_frames = int(original.NumberOfFrames)
    assert n_frames > 1
    exported = read(real_lakes.exported[source])
    assert int(exported.NumberOfFrames) == n_frames
    per_frame = original.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None:  # (emri_small* are enhanced MR without functional groups)
        assert exported.PerFrameFunctionalGroupsSequence == per_frame

    # in the lake: one stack holding every frame, with per-frame positions as coordinates
    lake = open_lake(real_lakes.lake_root[source])
    stacks = lake.stacks(str(original.SeriesInstanceUID))
    mine = [
        row for row in stacks.itertuples()
        if str(original.SOPInstanceUID) in set(lake.open_stack(row.store_path).sop_instance_uid.values)
    ]  # fmt: skip
    assert len(mine) == 1
    assert mine[0].shape[0] == n_frames
    ds = lake.open_stack(mine[0].store_path)
    assert ds.image.shape[0] == n_frames
    # the stored array (no scaling) holds the frames in file order, as pydicom decodes them
    stored = zarr.open_group(str(real_lakes.lake_root[source] / mine[0].store_path), mode="r")
    want, raw = reference_pixels(original)
    assert raw
    np.testing.assert_array_equal(stored["image"][:], want)
    if per_frame is not None:
        assert ds.image_position_patient.shape == (n_frames, 3)
        for k in (0, n_frames - 1):
            where = per_frame[k].PlanePositionSequence[0].ImagePositionPatient
            np.testing.assert_allclose(
                ds.image_position_patient.values[k], [float(v) for v in where]
            )
