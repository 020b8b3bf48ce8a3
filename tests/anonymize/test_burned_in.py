"""Burned-in annotation risk is flagged on real files; mask_regions blanks pixel rectangles."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from deid_phi_helpers import SECRET, deid_data_files, pydicom_data_files, pydicom_files, to_bytes

from imagelake.anonymize import Deidentifier, burned_in_risk, load_policy, mask_regions
from imagelake.errors import PixelDataError


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        (deid_data_files() / "ultrasounds" / "GREYSCALE_IMAGE.dcm", "BurnedInAnnotation is YES"),
        (deid_data_files() / "ultrasounds" / "RGB_IMAGE.dcm", "modality US"),
        (pydicom_data_files() / "SC_rgb.dcm", "secondary capture or document SOP class"),
        (pydicom_data_files() / "mlut_18.dcm", "modality OT"),
    ],
)
def test_risky_real_images_are_flagged(path: Path, reason: str) -> None:
    ds = pydicom.dcmread(path)
    result = Deidentifier(load_policy(), secret=SECRET).deidentify(ds, subject_key="s")
    assert result.burned_in_risk is not None and reason in result.burned_in_risk


@pytest.mark.parametrize(
    "path",
    [
        pydicom_files() / "CT_small.dcm",
        pydicom_files() / "MR_small.dcm",
        pydicom_data_files() / "emri_small.dcm",  # BurnedInAnnotation NO
        pydicom_data_files() / "MR-SIEMENS-DICOM-WithOverlays.dcm",  # overlays are removed
    ],
)
def test_plain_real_images_are_not_flagged(path: Path) -> None:
    ds = pydicom.dcmread(path)
    result = Deidentifier(load_policy(), secret=SECRET).deidentify(ds, subject_key="s")
    assert result.burned_in_risk is None
    assert not any((int(t) >> 16) & 0xFF00 == 0x6000 for t in result.dataset.keys())  # noqa: SIM118


def test_overlays_kept_by_policy_are_flagged() -> None:
    ds = pydicom.dcmread(pydicom_data_files() / "MR-SIEMENS-DICOM-WithOverlays.dcm")
    assert burned_in_risk(ds) == "overlay data present"
    policy = load_policy({"keep": ["(6000,3000)", "(6000,4000)"]})
    result = Deidentifier(policy, secret=SECRET).deidentify(ds, subject_key="s")
    assert result.burned_in_risk == "overlay data present"


def test_mask_regions_blanks_only_the_regions_of_a_real_ultrasound() -> None:
    ds = pydicom.dcmread(deid_data_files() / "ultrasounds" / "GREYSCALE_IMAGE.dcm")
    before = ds.pixel_array.copy()
    result = Deidentifier(load_policy(), secret=SECRET).deidentify(ds, subject_key="s")
    out = mask_regions(result.dataset, [(0, 0, 60, before.shape[1]), (100, 10, 120, 50)])
    back = pydicom.dcmread(io.BytesIO(to_bytes(out)))
    after = back.pixel_array
    assert after.shape == before.shape
    fill = before.min()
    assert (after[:60] == fill).all() and (after[100:120, 10:50] == fill).all()
    untouched = np.ones(before.shape[:2], bool)
    untouched[:60] = False
    untouched[100:120, 10:50] = False
    assert (after[untouched] == before[untouched]).all()
    assert (before[:60] != fill).any()  # the header band really had content to remove
    assert back.BurnedInAnnotation == "NO"
    codes = [item.CodeValue for item in back.DeidentificationMethodCodeSequence]
    assert codes[:2] == ["113100", "113101"]


def test_mask_regions_on_compressed_multiframe_data() -> None:
    ds = pydicom.dcmread(pydicom_files() / "SC_rgb_rle_2frame.dcm")
    before = ds.pixel_array.copy()
    mask_regions(ds, [(0, 0, 10, 10)], fill=7, record=False)
    assert not ds.file_meta.TransferSyntaxUID.is_compressed
    after = ds.pixel_array
    assert (after[:, :10, :10, :] == 7).all()
    assert (after[:, 10:, :, :] == before[:, 10:, :, :]).all()
    assert "BurnedInAnnotation" not in ds or ds.BurnedInAnnotation != "NO"


def test_mask_regions_errors() -> None:
    ds = pydicom.dcmread(pydicom_files() / "CT_small.dcm")
    with pytest.raises(PixelDataError, match="outside"):
        mask_regions(ds, [(0, 0, 500, 10)])
    del ds.PixelData
    with pytest.raises(PixelDataError, match="no pixel data"):
        mask_regions(ds, [(0, 0, 1, 1)])
