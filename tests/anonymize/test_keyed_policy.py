"""Keyed helpers (UIDs, pseudonyms, date shifts), policies and the profile registry."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from deid_phi_helpers import SECRET, real_files
from pydicom.uid import UID

import imagelake.anonymize as anonymize
from imagelake.anonymize import (
    Deidentifier,
    Option,
    Profile,
    date_shift,
    load_policy,
    profiles,
    pseudonym,
    shift_da,
    shift_dt,
    uid_remap,
)
from imagelake.errors import ConfigError, InvalidInputError, PluginNotFoundError


def test_uid_remap_is_valid_keyed_and_repeatable() -> None:
    uid = "1.2.826.0.1.3680043.8.498.2010020400001"
    new = uid_remap(uid, SECRET)
    assert new == uid_remap(uid, SECRET)
    assert new != uid_remap(uid, SECRET[::-1])
    assert new != uid_remap(uid + "1", SECRET)
    assert new.startswith("2.25.") and UID(new).is_valid and len(new) <= 64
    assert uid not in new
    many = {uid_remap(f"1.2.3.{i}", SECRET) for i in range(2000)}
    assert len(many) == 2000 and all(UID(u).is_valid for u in many)


def test_short_secret_is_refused_without_showing_it() -> None:
    with pytest.raises(ConfigError) as err:
        uid_remap("1.2.3", b"short-key")
    assert "short-key" not in str(err.value)
    with pytest.raises(ConfigError):
        Deidentifier(load_policy(), secret=b"")


def test_deidentifier_repr_hides_the_secret() -> None:
    deid = Deidentifier(load_policy(), secret=SECRET)
    assert SECRET.decode() not in repr(deid)


def test_pseudonym_shape() -> None:
    name = pseudonym("MRN-001", SECRET, prefix="T42-", length=10)
    assert name.startswith("T42-") and len(name) == 14
    assert name[4:].isupper() or name[4:].isalnum()
    assert name == pseudonym("MRN-001", SECRET, prefix="T42-", length=10)
    assert name != pseudonym("MRN-002", SECRET, prefix="T42-", length=10)
    with pytest.raises(InvalidInputError):
        pseudonym("", SECRET)


def test_date_shift_spreads_over_the_range() -> None:
    shifts = [date_shift(f"subject-{i}", SECRET, (-30, -10)) for i in range(500)]
    assert min(shifts) == -30 and max(shifts) == -10
    assert len(set(shifts)) == 21
    assert date_shift("a", SECRET, (5, 5)) == 5
    with pytest.raises(ConfigError):
        date_shift("a", SECRET, (3, 1))


def test_shift_da_and_dt() -> None:
    assert shift_da("20240301", -1) == "20240229"  # leap year
    assert shift_da("1999.12.31", 1) == "20000101"  # ACR-NEMA style date
    assert shift_dt("20230101011721.621000+0100", -2) == "20221230011721.621000+0100"
    assert shift_dt("2023", -1) == "2022"  # year-only precision kept
    with pytest.raises(InvalidInputError) as err:
        shift_da("20231340", 1)
    assert "20231340" not in str(err.value)  # no value in messages


def test_unparsable_dates_are_emptied_not_leaked() -> None:
    ds = pydicom.dcmread(real_files()["pydicom/CT_small.dcm"])
    ds.StudyDate = "2003XX25"
    deid = Deidentifier(load_policy({"options": ["retain_long_modified_dates"]}), secret=SECRET)
    result = deid.deidentify(ds, subject_key="s")
    assert not result.dataset.StudyDate
    assert result.actions["Z unparsable date"] == 1


def test_load_policy_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(
        "name: trial-42\n"
        "options: [retain_long_modified_dates, RETAIN_PATIENT_CHARACTERISTICS, retain_safe_private]\n"
        "keep: [StudyDescription, '(0018,0050)']\n"
        "remove: [Manufacturer]\n"
        "safe_private:\n  - {creator: 'GEMS_PARM_01', tag: '0043,xx39'}\n"
        "pseudonym_prefix: T42-\n"
        "date_shift_days: [-730, -365]\n"
    )
    policy = load_policy(path)
    assert policy.name == "trial-42"
    assert Option.RETAIN_PATIENT_CHARACTERISTICS in policy.effective_options()
    assert 0x00081030 in policy.keep and 0x00180050 in policy.keep
    assert 0x00080070 in policy.remove
    (safe,) = policy.safe_private
    assert (safe.creator, safe.group, safe.element) == ("GEMS_PARM_01", 0x0043, 0x39)
    assert policy.date_shift_days == (-730, -365)


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({"optoins": []}, "unknown policy keys"),
        ({"options": ["retain_everything"]}, "choices"),
        ({"keep": ["NoSuchKeyword"]}, "NoSuchKeyword"),
        ({"profile": "nope"}, "registered: basic"),
        ({"date_shift_days": [5, 1]}, "date_shift_days"),
        ({"safe_private": [{"creator": "X", "tag": "0043,xx39"}]}, "retain_safe_private"),
        (
            {
                "options": ["retain_safe_private"],
                "safe_private": [{"creator": "X", "tag": "0008,xx10"}],
            },
            "odd",
        ),
        ({"pseudonym_length": 99}, "pseudonym_length"),
    ],
)
def test_bad_policies_fail_clearly(settings: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        load_policy(settings)


def test_policy_keep_and_remove_override_the_table() -> None:
    ds = pydicom.dcmread(real_files()["pydicom/CT_small.dcm"])
    policy = load_policy({"keep": ["StudyDescription"], "remove": ["Manufacturer"]})
    out = Deidentifier(policy, secret=SECRET).deidentify(ds, subject_key="s").dataset
    assert "Manufacturer" not in out
    if "StudyDescription" in ds:
        assert out.StudyDescription == ds.StudyDescription


def test_safe_private_keeps_only_listed_elements() -> None:
    ds = pydicom.dcmread(real_files()["deid-data/humans/ctbrain1.dcm"])
    private = [e for e in ds if e.tag.is_private and e.tag.element >= 0x1000]
    assert private
    keep = private[0]
    creator = ds[(keep.tag.group << 16) | (keep.tag.element >> 8)].value
    policy = load_policy(
        {
            "options": ["retain_safe_private"],
            "safe_private": [
                {"creator": creator, "tag": f"{keep.tag.group:04X},xx{keep.tag.element & 0xFF:02X}"}
            ],
        }
    )
    out = Deidentifier(policy, secret=SECRET).deidentify(ds, subject_key="s").dataset
    kept = [e for e in out if e.tag.is_private]
    assert keep.tag in out and out[keep.tag].value == keep.value
    assert {e.tag for e in kept} == {keep.tag, (keep.tag.group << 16) | (keep.tag.element >> 8)}
    codes = {item.CodeValue for item in out.DeidentificationMethodCodeSequence}
    assert codes == {"113100", "113111"}


def test_profiles_registry_and_custom_profile() -> None:
    assert "basic" in profiles and profiles.get("basic").options == frozenset()
    research = Profile(
        "research-test", "dates shifted", frozenset({Option.RETAIN_LONG_MODIFIED_DATES})
    )
    profiles.register("research-test", research)
    try:
        policy = load_policy({"profile": "research-test"})
        assert Option.RETAIN_LONG_MODIFIED_DATES in policy.effective_options()
    finally:
        profiles.unregister("research-test")
    with pytest.raises(PluginNotFoundError, match="basic"):
        profiles.get("research-test")


def test_public_api_matches_all() -> None:
    public = {
        name
        for name in dir(anonymize)
        if not name.startswith("_")
        and name != "annotations"  # from __future__ import annotations
        and not isinstance(getattr(anonymize, name), type(anonymize))  # submodules
    }
    assert set(anonymize.__all__) == public
