"""Raw-header anonymization: TWIX, ISMRMRD, DICOM-CT-PD, UFF and opaque files, on real files.

Every test scans the OUTPUT BYTES for each identifying value of the input (and its common
encodings), and checks that the data (k-space, sinogram, RF) is unchanged.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from raw_deid_helpers import (
    SECRET,
    TWIX_INJECTED,
    TWIX_INJECTED_ID,
    TWIX_RAID_NAME,
    inject_twix_identity,
    leaks,
    read_twix,
    twix_identifying_values,
    twix_uid_values,
)

from imagelake.anonymize import Deidentifier, load_policy
from imagelake.anonymize.raw import (
    OpaqueRawError,
    RawDeidError,
    RawDeidResult,
    anonymize_raw,
    raw_anonymizers,
)
from imagelake.errors import ImagelakeError, PluginNotFoundError
from imagelake.formats import get_format

_GENERATOR = "ismrmrd_generate_cartesian_shepp_logan"


def _deid(**policy: Any) -> Deidentifier:
    return Deidentifier(load_policy(policy or None), secret=SECRET)


def _arrays_equal(fmt: str, a: Any, b: Any) -> list[str]:
    """Names of the arrays of ``a`` that differ in ``b`` (or are missing)."""
    bad = []
    for name, arr in a.arrays.items():
        if name not in b.arrays:
            bad.append(name)
            continue
        x, y = np.asarray(arr.load()), np.asarray(b.arrays[name].load())
        if x.shape != y.shape or not np.array_equal(x, y, equal_nan=True):
            bad.append(name)
    return bad


# ---------------------------------------------------------------------------------------------
# Siemens TWIX
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def twix_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from imagelake.synthetic.samples import twix_samples

    folder = tmp_path_factory.mktemp("twix")
    return {
        name: inject_twix_identity(path, folder / name) for name, path in twix_samples().items()
    }


@pytest.mark.parametrize("sample", ["gre.dat", "epi.dat"])
def test_twix_no_identifying_value_left(
    twix_files: dict[str, Path], tmp_path: Path, sample: str
) -> None:
    src = twix_files[sample]
    values = twix_identifying_values(src)
    # the samples' real header values, and what we injected, are all found by twixtools
    assert "DZNE_Bonn-Venusberg" in values and "45385" in values
    assert TWIX_INJECTED["PatientName"].decode() in values
    values |= {TWIX_INJECTED_ID.decode(), TWIX_RAID_NAME.decode()}
    values |= {v.decode() for v in TWIX_INJECTED.values()}
    acquired = get_format("siemens-twix").open(src).meta.acquired_at
    assert acquired is not None
    exam_day = acquired[:10].replace("-", "")
    values.add(exam_day)
    before = leaks(src.read_bytes(), values)
    assert len(before) == len(values)  # every value really is in the input

    deid = _deid()
    out = tmp_path / "anon.dat"
    result = anonymize_raw(src, "siemens-twix", deid, out)
    data = out.read_bytes()
    assert leaks(data, values) == []
    assert len(data) == src.stat().st_size  # in place: every offset stays valid
    assert result.out_paths == (out,)
    assert result.actions.get("U", 0) > 0 and result.actions.get("blank", 0) > 0
    # the pseudonym is keyed on the injected patient ID (no subject_key given)
    meta = get_format("siemens-twix").open(out).meta
    assert meta.patient.patient_id == result.pseudonym
    assert (
        result.pseudonym
        == _deid()
        .deidentify(_tiny_dataset(TWIX_INJECTED_ID.decode()), subject_key=TWIX_INJECTED_ID.decode())
        .pseudonym
    )


@pytest.mark.parametrize("sample", ["gre.dat", "epi.dat"])
def test_twix_kspace_and_header_structure_unchanged(
    twix_files: dict[str, Path], tmp_path: Path, sample: str
) -> None:
    src = twix_files[sample]
    out = tmp_path / "anon.dat"
    deid = _deid()
    anonymize_raw(src, "siemens-twix", deid, out, subject_key="subject-1")
    fmt = get_format("siemens-twix")
    before, after = fmt.open(src), fmt.open(out)
    assert set(before.arrays) == set(after.arrays)
    assert _arrays_equal("siemens-twix", before, after) == []
    # twixtools still parses every header buffer the same way (same keys, same blocks)
    s_in, s_out = read_twix(src), read_twix(out)
    assert len(s_in) == len(s_out)
    for a, b in zip(s_in, s_out, strict=True):
        for buffer in ("MeasYaps", "Phoenix", "Dicom", "Meas", "Config"):
            assert set(a["hdr"][buffer]) == set(b["hdr"][buffer]), buffer
        assert len(a["mdb"]) == len(b["mdb"])
        assert a["hdr"]["MeasYaps"]["sKSpace"] == b["hdr"]["MeasYaps"]["sKSpace"]


def test_twix_uids_remapped_like_the_dicom(twix_files: dict[str, Path], tmp_path: Path) -> None:
    src = twix_files["gre.dat"]
    uids = twix_uid_values(src)
    assert "FrameOfReference" in uids and "tReferenceImage0" in uids
    deid = _deid()
    out = tmp_path / "anon.dat"
    anonymize_raw(src, "siemens-twix", deid, out, subject_key="subject-1")
    meta = get_format("siemens-twix").open(out).meta
    assert meta.frame_of_reference_uid == deid.uid(uids["FrameOfReference"])
    refs = [deid.uid(uids[k]) for k in sorted(uids) if k.startswith("tReferenceImage")]
    assert list(meta.referenced_sop_instance_uids) == refs
    # the same UID in a DICOM of this subject maps to the same value
    ds = _tiny_dataset("subject-1")
    ds.FrameOfReferenceUID = uids["FrameOfReference"]
    ds_out = deid.deidentify(ds, subject_key="subject-1").dataset
    assert ds_out.FrameOfReferenceUID == meta.frame_of_reference_uid


def test_twix_options_keep_device_and_characteristics(
    twix_files: dict[str, Path], tmp_path: Path
) -> None:
    src = twix_files["gre.dat"]
    deid = _deid(options=["retain_device_identity", "retain_patient_characteristics"])
    out = tmp_path / "anon.dat"
    anonymize_raw(src, "siemens-twix", deid, out, subject_key="s")
    hdr_in, hdr_out = read_twix(src)[-1]["hdr"], read_twix(out)[-1]["hdr"]
    assert hdr_out["Dicom"]["DeviceSerialNumber"] == hdr_in["Dicom"]["DeviceSerialNumber"]
    assert hdr_out["Dicom"]["flPatientAge"] == hdr_in["Dicom"]["flPatientAge"] > 0
    assert b"DZNE" not in out.read_bytes()  # institution still removed
    # and without the options they go
    out2 = tmp_path / "anon2.dat"
    anonymize_raw(src, "siemens-twix", _deid(), out2, subject_key="s")
    hdr2 = read_twix(out2)[-1]["hdr"]
    assert str(hdr2["Dicom"].get("DeviceSerialNumber", "")).strip() in ("", "None")
    assert not hdr2["Dicom"]["flPatientAge"]


def test_twix_rejects_a_non_twix_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.dat"
    bad.write_bytes(b"\x01" * 4096)
    with pytest.raises(RawDeidError, match="not a Siemens TWIX"):
        anonymize_raw(bad, "siemens-twix", _deid(), tmp_path / "out.dat", subject_key="s")
    assert not (tmp_path / "out.dat").exists()


# ---------------------------------------------------------------------------------------------
# ISMRMRD
# ---------------------------------------------------------------------------------------------
_ISMRMRD_PHI = {
    "name": "SYNTHETIC^PHI^ISMRMRDNAME",
    "id": "PHI-ISMRMRD-7781",
    "birth": "1971-05-17",
    "accession": "PHIACC99881",
    "referrer": "DR^PHI^REFERRER",
    "institution": "PHI General Hospital",
    "station": "PHISTATION01",
    "serial": "PHISER77123",
    "study_uid": "1.2.826.0.1.3680043.8.498.4711",
    "for_uid": "1.2.826.0.1.3680043.8.498.4712",
    "series_root": "1.2.826.0.1.3680043.8.498.4713",
    "ref_uid": "1.2.826.0.1.3680043.8.498.4714",
    "date": "2024-03-05",
}


def _tiny_dataset(patient_id: str) -> Dataset:
    ds = Dataset()
    ds.PatientID = patient_id
    ds.PatientName = "SYNTHETIC^TINY"
    ds.StudyInstanceUID = _ISMRMRD_PHI["study_uid"]
    ds.StudyDate = _ISMRMRD_PHI["date"].replace("-", "")
    return ds


@pytest.fixture(scope="module")
def ismrmrd_file(
    tmp_path_factory: pytest.TempPathFactory, require_tool: Callable[[str], str]
) -> Path:
    require_tool(_GENERATOR)
    import ismrmrd.xsd as xsd
    from xsdata.models.datatype import XmlDate

    from imagelake.synthetic.samples import ismrmrd_phantom

    d = date.fromisoformat(_ISMRMRD_PHI["date"])
    b = date.fromisoformat(_ISMRMRD_PHI["birth"])
    seq = xsd.referencedImageSequenceType(referencedSOPInstanceUID=[_ISMRMRD_PHI["ref_uid"]])
    meta: dict[str, dict[str, Any]] = {
        "subjectInformation": {
            "patientName": _ISMRMRD_PHI["name"],
            "patientID": _ISMRMRD_PHI["id"],
            "patientBirthdate": XmlDate(b.year, b.month, b.day),
            "patientWeight_kg": 81.25,
        },
        "studyInformation": {
            "studyInstanceUID": _ISMRMRD_PHI["study_uid"],
            "studyDate": XmlDate(d.year, d.month, d.day),
            "accessionNumber": _ISMRMRD_PHI["accession"],
            "referringPhysicianName": _ISMRMRD_PHI["referrer"],
        },
        "measurementInformation": {
            "frameOfReferenceUID": _ISMRMRD_PHI["for_uid"],
            "seriesInstanceUIDRoot": _ISMRMRD_PHI["series_root"],
            "seriesDate": XmlDate(d.year, d.month, d.day),
            "patientPosition": xsd.patientPositionType.HFS,
            "referencedImageSequence": seq,
        },
        "acquisitionSystemInformation": {
            "institutionName": _ISMRMRD_PHI["institution"],
            "stationName": _ISMRMRD_PHI["station"],
            "deviceSerialNumber": _ISMRMRD_PHI["serial"],
        },
    }
    dest = tmp_path_factory.mktemp("ismrmrd") / "phi.h5"
    return ismrmrd_phantom(dest, matrix=32, coils=2, metadata=meta)


def test_ismrmrd_no_injected_value_left(
    ismrmrd_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    values = [v for k, v in _ISMRMRD_PHI.items()] + ["19710517", "20240305"]
    assert len(leaks(ismrmrd_file.read_bytes(), values)) == len(values) - 2  # ISO dates in XML
    out = tmp_path / "anon.h5"
    with _no_warning_values(values):
        result = anonymize_raw(ismrmrd_file, "ismrmrd", _deid(), out)
    assert leaks(out.read_bytes(), values) == []
    captured = capsys.readouterr()
    assert leaks((captured.out + captured.err + repr(result)).encode(), values) == []
    meta = get_format("ismrmrd").open(out).meta
    assert meta.patient.patient_id == meta.patient.name == result.pseudonym
    assert meta.patient.birth_date is None
    assert meta.institution is None and meta.device_serial is None and meta.station_name is None


@contextlib.contextmanager
def _no_warning_values(values: list[str]) -> Iterator[None]:
    """Fail if a warning raised inside quotes one of ``values``."""
    with warnings.catch_warnings(record=True) as log:
        warnings.simplefilter("always")
        yield
    text = "\n".join(str(w.message) for w in log).encode()
    assert leaks(text, values) == []


def test_ismrmrd_kspace_identical_uids_and_dates_match_the_dicom(
    ismrmrd_file: Path, tmp_path: Path
) -> None:
    deid = _deid(options=["retain_long_modified_dates"])
    out = tmp_path / "anon.h5"
    key = "site-subject-17"
    anonymize_raw(ismrmrd_file, "ismrmrd", deid, out, subject_key=key)
    fmt = get_format("ismrmrd")
    before, after = fmt.open(ismrmrd_file), fmt.open(out)
    assert _arrays_equal("ismrmrd", before, after) == []
    # the subject's DICOM, de-identified with the same secret and key
    dicom = deid.deidentify(_tiny_dataset(_ISMRMRD_PHI["id"]), subject_key=key).dataset
    meta = after.meta
    assert meta.study_instance_uid == dicom.StudyInstanceUID == deid.uid(_ISMRMRD_PHI["study_uid"])
    assert meta.frame_of_reference_uid == deid.uid(_ISMRMRD_PHI["for_uid"])
    assert meta.referenced_sop_instance_uids == (deid.uid(_ISMRMRD_PHI["ref_uid"]),)
    assert meta.extra["series_instance_uid_root"] == deid.uid(_ISMRMRD_PHI["series_root"])
    assert meta.acquired_at is not None
    assert meta.acquired_at[:10].replace("-", "") == dicom.StudyDate != "20240305"
    assert meta.patient.birth_date is None  # Table E.1-1: Z, also under Modified Dates


def test_ismrmrd_patient_characteristics_option(ismrmrd_file: Path, tmp_path: Path) -> None:
    import h5py
    import ismrmrd.xsd as xsd

    def weight(path: Path) -> Any:
        with h5py.File(path, "r") as h5:
            raw = h5["dataset"]["xml"][0]
        xml = raw.decode() if isinstance(raw, bytes) else raw
        subject = xsd.CreateFromDocument(xml).subjectInformation
        return subject.patientWeight_kg

    kept, dropped = tmp_path / "kept.h5", tmp_path / "dropped.h5"
    options = ["retain_patient_characteristics", "retain_institution_identity"]
    anonymize_raw(ismrmrd_file, "ismrmrd", _deid(options=options), kept)
    anonymize_raw(ismrmrd_file, "ismrmrd", _deid(), dropped)
    assert weight(kept) == pytest.approx(81.25)
    assert weight(dropped) is None
    assert get_format("ismrmrd").open(kept).meta.institution == _ISMRMRD_PHI["institution"]


def test_ismrmrd_corrupt_header_is_a_clear_error(ismrmrd_file: Path, tmp_path: Path) -> None:
    import h5py

    bad = tmp_path / "bad.h5"
    bad.write_bytes(ismrmrd_file.read_bytes())
    with h5py.File(bad, "r+") as h5:
        del h5["dataset"]["xml"]
        h5["dataset"].create_dataset(
            "xml", data=[f"<ismrmrdHeader>{_ISMRMRD_PHI['name']}".encode()]
        )
    with pytest.raises(RawDeidError) as info:
        anonymize_raw(bad, "ismrmrd", _deid(), tmp_path / "out.h5", subject_key="s")
    assert leaks(str(info.value).encode(), [_ISMRMRD_PHI["name"]]) == []


# ---------------------------------------------------------------------------------------------
# DICOM-CT-PD
# ---------------------------------------------------------------------------------------------
def test_ctpd_views_deidentified_geometry_kept(tmp_path: Path) -> None:
    from imagelake.formats.ctpd import GEOMETRY_ATTRS
    from imagelake.synthetic._headers import Patient
    from imagelake.synthetic.sinogram import FanBeamGeometry, fan_beam_sinogram, write_ctpd

    geometry = FanBeamGeometry(n_views=36, n_channels=64, channel_spacing_rad=0.012, n_rows=2)
    sino = fan_beam_sinogram(geometry, seed=5)
    patient = Patient("SYNTHETIC^PHI^TESTNAME", "PHI-CTPD-55123", date(1966, 2, 3))
    files = write_ctpd(tmp_path / "in", sino, geometry, patient=patient)
    first = pydicom.dcmread(files[0])
    values = [
        "SYNTHETIC^PHI^TESTNAME", "PHI-CTPD-55123", "19660203", str(first.StudyInstanceUID),
        str(first.SeriesInstanceUID), str(first.FrameOfReferenceUID), str(first.SOPInstanceUID),
        str(first.StudyDate),
    ]  # fmt: skip
    assert len(leaks(files[0].read_bytes(), values)) == len(values)

    deid = _deid()
    result = anonymize_raw(files, "dicom-ct-pd", deid, tmp_path / "out")
    assert len(result.out_paths) == len(files)
    assert result.actions.get("private K", 0) > 0
    data = b"".join(p.read_bytes() for p in result.out_paths)
    assert leaks(data, values) == []
    fmt = get_format("dicom-ct-pd")
    before, after = fmt.open_group(files), fmt.open_group(list(result.out_paths))
    assert _arrays_equal("dicom-ct-pd", before, after) == []
    for attr in GEOMETRY_ATTRS:
        assert after.arrays["sinogram"].attrs.get(attr) == before.arrays["sinogram"].attrs.get(
            attr
        ), attr
    out = pydicom.dcmread(result.out_paths[0])
    assert out.PatientID == result.pseudonym
    assert out.StudyInstanceUID == deid.uid(first.StudyInstanceUID)
    # the policy the caller passed is not changed by the call
    assert not deid.policy.safe_private


# ---------------------------------------------------------------------------------------------
# USTB UFF
# ---------------------------------------------------------------------------------------------
def test_uff_free_text_stripped_data_untouched(tmp_path: Path) -> None:
    import h5py

    from imagelake.synthetic.ultrasound import uff_channel_data

    src = uff_channel_data(tmp_path / "in.uff", n_elements=16, n_samples=256)
    texts = {
        "info": "Patient SYNTHETIC^PHI^UFFNAME scanned at PHI Hospital",
        "author": "Dr PHI^UFFAUTHOR",
    }
    with h5py.File(src, "r+") as h5:
        group = h5["channel_data"]
        dtype = group["info"].dtype
        for key, text in texts.items():
            if key in group:
                del group[key]
            ds = group.create_dataset(key, data=np.array([[ord(c)] for c in text], dtype=dtype))
            ds.attrs["class"], ds.attrs["name"] = "char", key
        group["probe"].attrs["name"] = "PHI-PROBE-OWNER"
        h5.attrs["comment"] = "PHI-ROOT-ATTRIBUTE"
    values = ["SYNTHETIC^PHI^UFFNAME", "PHI Hospital", "PHI^UFFAUTHOR", "PHI-PROBE-OWNER",
              "PHI-ROOT-ATTRIBUTE"]  # fmt: skip
    assert len(leaks(src.read_bytes(), values)) == len(values)
    fmt = get_format("ustb-uff")
    assert fmt.open(src).meta.extra.get("uff_author") == texts["author"]

    out = tmp_path / "out.uff"
    result = anonymize_raw(src, "ustb-uff", _deid(), out, subject_key="s")
    assert leaks(out.read_bytes(), values) == []
    assert result.actions["text X"] >= 2 and result.actions["attribute X"] == 2
    before, after = fmt.open(src), fmt.open(out)
    assert _arrays_equal("ustb-uff", before, after) == []
    assert after.meta.extra.get("uff_author") is None


# ---------------------------------------------------------------------------------------------
# opaque, registry, input checks
# ---------------------------------------------------------------------------------------------
def test_opaque_refused_whatever_the_policy(tmp_path: Path) -> None:
    blob = tmp_path / "vendor.raw"
    blob.write_bytes(b"VENDOR" + bytes(range(256)) * 4)
    permissive = _deid(options=["retain_device_identity", "retain_safe_private"])
    for deid in (_deid(), permissive):
        with pytest.raises(OpaqueRawError, match="cannot be shared anonymized") as info:
            anonymize_raw(blob, "opaque", deid, tmp_path / "out.raw", subject_key="s")
        assert isinstance(info.value, ImagelakeError)
        assert "emulator" in str(info.value)
    # a plugin registered over "opaque" cannot make it shareable either
    raw_anonymizers.register("opaque", lambda *a: RawDeidResult((), "x"), replace=True)
    try:
        with pytest.raises(OpaqueRawError):
            anonymize_raw(blob, "opaque", _deid(), tmp_path / "out.raw", subject_key="s")
    finally:
        raw_anonymizers.register("opaque", "imagelake.anonymize.raw:_refuse_opaque", replace=True)
    assert not (tmp_path / "out.raw").exists()


def test_registry_third_party_format_and_unknown_format(tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("data")
    seen: list[tuple[list[Path], str | None]] = []

    def plugin(
        paths: Any, deid: Deidentifier, out_path: Path, subject_key: str | None
    ) -> RawDeidResult:
        seen.append((list(paths), subject_key))
        out_path.write_text("anon")
        return RawDeidResult((out_path,), "P", {"X": 1})

    raw_anonymizers.register("test-format", plugin)
    try:
        result = anonymize_raw(src, "test-format", _deid(), tmp_path / "o.txt", subject_key="k")
    finally:
        raw_anonymizers.unregister("test-format")
    assert seen == [([src], "k")] and result.actions == {"X": 1}
    assert {"ismrmrd", "siemens-twix", "dicom-ct-pd", "ustb-uff", "opaque"} <= set(
        raw_anonymizers.names()
    )
    with pytest.raises(PluginNotFoundError, match="no-such-format"):
        anonymize_raw(src, "no-such-format", _deid(), tmp_path / "o2.txt")
    with pytest.raises(RawDeidError, match="must not overwrite"):
        anonymize_raw(src, "siemens-twix", _deid(), src, subject_key="k")


def test_ctpd_geometry_kept_under_another_creator(tmp_path: Path) -> None:
    """Real files' creator strings are not confirmed: the blocks are kept whatever they say."""
    from imagelake.synthetic.sinogram import FanBeamGeometry, fan_beam_sinogram, write_ctpd

    geometry = FanBeamGeometry(n_views=24, n_channels=48, channel_spacing_rad=0.015, n_rows=2)
    files = write_ctpd(tmp_path / "in", fan_beam_sinogram(geometry, seed=2), geometry)
    renamed = 0
    for path in files:
        ds = pydicom.dcmread(path)
        for elem in ds:
            if elem.tag.group in range(0x7029, 0x7042, 2) and 0x10 <= elem.tag.element <= 0xFF:
                elem.value = f"VENDOR CT PD {elem.tag.group:04X}"
                renamed += 1
        ds.save_as(path, enforce_file_format=False)
    assert renamed >= len(files)
    result = anonymize_raw(files, "dicom-ct-pd", _deid(), tmp_path / "out")
    fmt = get_format("dicom-ct-pd")
    before, after = fmt.open_group(files), fmt.open_group(list(result.out_paths))
    assert _arrays_equal("dicom-ct-pd", before, after) == []
    assert dict(after.arrays["sinogram"].attrs) == dict(before.arrays["sinogram"].attrs)


def test_twix_modified_dates_shift_like_the_dicom(
    twix_files: dict[str, Path], tmp_path: Path
) -> None:
    src = twix_files["epi.dat"]
    deid = _deid(options=["retain_long_modified_dates"])
    out = tmp_path / "anon.dat"
    anonymize_raw(src, "siemens-twix", deid, out, subject_key="subject-9")
    fmt = get_format("siemens-twix")
    acquired_in, acquired_out = fmt.open(src).meta.acquired_at, fmt.open(out).meta.acquired_at
    assert acquired_in is not None and acquired_out is not None
    ds = _tiny_dataset("subject-9")
    ds.StudyDate = acquired_in[:10].replace("-", "")
    dicom = deid.deidentify(ds, subject_key="subject-9").dataset
    assert acquired_out[:10].replace("-", "") == dicom.StudyDate != ds.StudyDate
    assert acquired_out[10:] == acquired_in[10:]  # time of day kept, as in the DICOM
    assert acquired_in[:10].replace("-", "").encode() not in out.read_bytes()


def test_ismrmrd_per_image_meta_strings_cleaned(ismrmrd_file: Path, tmp_path: Path) -> None:
    """Images stored in an ISMRMRD file carry meta XML per image; free text must not survive."""
    import shutil

    import h5py
    import ismrmrd

    src = tmp_path / "with_images.h5"
    shutil.copy(ismrmrd_file, src)
    identifying = {
        "PatientName": _ISMRMRD_PHI["name"],
        "PatientID": "77123456",  # numeric, still identifying by its name
        "ImageComments": f"follow-up of {_ISMRMRD_PHI['name']}",
        "AcquisitionDate": "20240305",
    }
    kept = {"WindowCenter": ["40"], "slice": ["1", "2"], "GADGETRON_DataRole": ["Image"]}
    dset = ismrmrd.Dataset(str(src), "dataset", create_if_needed=False)
    for k in range(2):
        img = ismrmrd.Image.from_array(np.full((4, 4), k, np.float32))
        img.attribute_string = ismrmrd.Meta({**identifying, **kept}).serialize()
        dset.append_image("image_0", img)
    dset.close()
    values = [*identifying.values(), _ISMRMRD_PHI["id"]]
    assert len(leaks(src.read_bytes(), values)) == len(values)

    out = tmp_path / "anon.h5"
    result = anonymize_raw(src, "ismrmrd", _deid(), out)
    assert leaks(out.read_bytes(), values) == []
    assert result.actions["image meta X"] == 2 * len(identifying)
    with h5py.File(out) as f, h5py.File(src) as g:
        assert f["dataset/image_0/attributes"].shape == (2,)
        for text in f["dataset/image_0/attributes"][()]:
            meta = ismrmrd.Meta.deserialize(text)
            assert set(meta) == set(kept)
            assert meta["slice"] == ["1", "2"] and meta["WindowCenter"] == "40"
        # pixels and image headers untouched
        assert np.array_equal(f["dataset/image_0/data"][()], g["dataset/image_0/data"][()])
        assert (
            f["dataset/image_0/header"][()].tobytes() == g["dataset/image_0/header"][()].tobytes()
        )
