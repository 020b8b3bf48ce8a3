"""References, pseudonyms and date intervals stay consistent across files and runs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pydicom
import pytest
from deid_phi_helpers import SECRET, real_files, uid_pairs
from pydicom.dataset import Dataset
from pydicom.uid import UID

from imagelake.anonymize import Deidentifier, load_policy

FILES = real_files()
DATES = {"options": ["retain_long_modified_dates"], "date_shift_days": [-400, -20]}


def _deid(
    name: str, subject: str, policy: dict[str, object] | None = None
) -> tuple[Dataset, Dataset]:
    source = pydicom.dcmread(FILES[name])
    # a new Deidentifier per file: consistency must come from the secret, not from a cache
    result = Deidentifier(load_policy(policy or {}), secret=SECRET).deidentify(
        source, subject_key=subject
    )
    return source, result.dataset


@pytest.mark.parametrize(
    "group",
    [
        [f"deid-data/dicom-cookies/image{i}.dcm" for i in range(1, 8)],
        ["deid-data/humans/ctbrain1.dcm", "deid-data/humans/ctbrain2.dcm", "pydicom/CT_small.dcm"],
        ["pydicom/rtplan.dcm", "pydicom/rtdose.dcm", "pydicom/test-SR.dcm", "pydicom/reportsi.dcm"],
    ],
    ids=["cookies", "ct", "rt-sr"],
)
def test_uid_map_is_one_to_one_across_files(group: list[str]) -> None:
    mapping: dict[str, str] = {}
    for name in group:
        before, after = _deid(name, subject="s")
        pairs = list(uid_pairs(before, after))
        assert pairs, name
        for old, new in pairs:
            assert mapping.setdefault(old, new) == new, f"{name}: one UID mapped two ways"
            if old.startswith("1.2.840.10008."):
                assert new == old  # DICOM's own UIDs (SOP classes...) are kept
            else:
                assert new != old and new.startswith("2.25.")
                assert UID(new).is_valid and len(new) <= 64
        assert after.file_meta.MediaStorageSOPInstanceUID == after.SOPInstanceUID
    news = [n for o, n in mapping.items() if not o.startswith("1.2.840.10008.")]
    assert len(set(news)) == len(news), "two different UIDs were mapped to one"


def test_files_of_one_series_keep_their_shared_references() -> None:
    outs = [_deid(f"deid-data/humans/ctbrain{i}.dcm", subject="homer") for i in (1, 2)]
    (in1, out1), (in2, out2) = outs
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
        assert in1.get(keyword) == in2.get(keyword)  # the real files share them...
        assert out1.get(keyword) == out2.get(keyword)  # ...and so do the outputs
        assert out1.get(keyword) != in1.get(keyword)
    cookies = [_deid(f"deid-data/dicom-cookies/image{i}.dcm", subject="c") for i in (1, 2)]
    (c1, d1), (c2, d2) = cookies
    assert (c1.StudyInstanceUID == c2.StudyInstanceUID) == (
        d1.StudyInstanceUID == d2.StudyInstanceUID
    )
    assert d1.SOPInstanceUID != d2.SOPInstanceUID


def test_references_inside_sequences_point_at_the_remapped_targets() -> None:
    """A ReferencedSOPInstanceUID deep in a sequence maps like the instance it names."""
    source, out = _deid("pydicom/rtplan.dcm", subject="s")
    refs_in = [e.value for e in source.iterall() if e.keyword == "ReferencedSOPInstanceUID"]
    refs_out = [e.value for e in out.iterall() if e.keyword == "ReferencedSOPInstanceUID"]
    assert refs_in and len(refs_in) == len(refs_out)
    # the same UID, met as the top-level SOPInstanceUID of another file, maps the same way
    target = Dataset()
    target.SOPInstanceUID = refs_in[0]
    target.SOPClassUID = "1.2.840.10008.5.1.4.1.1.481.3"
    moved = Deidentifier(load_policy(), secret=SECRET).deidentify(target, subject_key="s")
    assert moved.dataset.SOPInstanceUID == refs_out[0]


def test_pseudonym_is_stable_per_subject_and_secret() -> None:
    _, first = _deid("pydicom/CT_small.dcm", subject="patient-42")
    _, second = _deid("pydicom/MR_small.dcm", subject="patient-42")
    _, other = _deid("pydicom/CT_small.dcm", subject="patient-43")
    assert first.PatientID == second.PatientID == str(first.PatientName)
    assert other.PatientID != first.PatientID
    assert first.PatientID.startswith("SUBJ-") and len(first.PatientID) == len("SUBJ-") + 12
    source = pydicom.dcmread(FILES["pydicom/CT_small.dcm"])
    other_secret = Deidentifier(load_policy(), secret=b"another-secret-of-32-bytes-....")
    assert other_secret.deidentify(source, subject_key="patient-42").pseudonym != first.PatientID


def _dates(ds: Dataset, path: str = "") -> Iterator[tuple[str, str, str]]:
    for elem in ds:
        where = f"{path}/{elem.tag}"
        if elem.VR == "SQ":
            for i, item in enumerate(elem.value):
                yield from _dates(item, f"{where}[{i}]")
        elif elem.VR in ("DA", "DT") and elem.value:
            yield where, elem.VR, str(elem.value)


def _day(vr: str, value: str) -> dt.date:
    return dt.datetime.strptime(value[:8], "%Y%m%d").date()


@pytest.mark.parametrize(
    "names",
    [
        ["deid-data/humans/ctbrain1.dcm", "deid-data/humans/ctbrain2.dcm"],
        ["pydicom/CT_small.dcm", "pydicom/rtplan.dcm"],
    ],
)
def test_date_shift_keeps_every_interval(names: list[str]) -> None:
    before: list[dt.date] = []
    after: list[dt.date] = []
    for name in names:
        source, out = _deid(name, subject="one-subject", policy=DATES)
        old = {where: (vr, v) for where, vr, v in _dates(source)}
        new = {where: (vr, v) for where, vr, v in _dates(out)}
        for where, (vr, value) in old.items():
            if where in new:
                before.append(_day(vr, value))
                after.append(_day(*new[where]))
                if vr == "DT":  # the time of day and fraction are kept
                    assert new[where][1][8:] == value[8:]
    assert len(before) >= 4
    shifts = {(b - a).days for a, b in zip(before, after, strict=True)}
    assert len(shifts) == 1, "dates of one subject moved by different amounts"
    (shift,) = shifts
    assert -400 <= shift <= -20


def test_dates_without_the_longitudinal_option_are_gone() -> None:
    source, out = _deid("deid-data/humans/ctbrain1.dcm", subject="s")
    old = {v for _, _, v in _dates(source)}
    assert old
    assert not old & {v for _, _, v in _dates(out)}
    assert out.LongitudinalTemporalInformationModified == "REMOVED"


def test_full_dates_option_keeps_dates_and_times() -> None:
    source, out = _deid(
        "deid-data/humans/ctbrain1.dcm", subject="s", policy={"options": ["retain_long_full_dates"]}
    )
    assert out.StudyDate == source.StudyDate and out.StudyTime == source.StudyTime
    assert out.LongitudinalTemporalInformationModified == "UNMODIFIED"
