"""The vault: round trip, permissions, rotation, tampering, secrecy, atomic writes."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest
from vault_testkit import (
    FAST_SCRYPT,
    files_containing,
    identity_values,
    real_identities,
)

from imagelake._fs import LakeFS
from imagelake.vault import (
    HEADER_FILE,
    Passphrase,
    Vault,
    VaultConflictError,
    VaultError,
    VaultExistsError,
    VaultInputError,
    VaultKey,
    VaultKeyError,
    VaultLocationError,
    VaultNotFoundError,
    VaultPermissionError,
    VaultRecordNotFoundError,
    VaultTamperedError,
    create_key_file,
)

USERS = ["alice", "bob"]


@pytest.fixture(scope="module")
def identities() -> dict[str, dict[str, Any]]:
    found = real_identities()
    assert len(found) == 5 and all("PatientName" in i for i in found.values())
    return found


@pytest.fixture
def key(tmp_path: Path) -> VaultKey:
    return create_key_file(tmp_path / "keys" / "vault.key")


@pytest.fixture
def filled(tmp_path: Path, key: VaultKey, identities: dict[str, dict[str, Any]]) -> Path:
    vault = Vault.create(tmp_path / "vault", key, permitted_users=USERS)
    for pseudonym, identity in identities.items():
        assert vault.put(pseudonym, identity) is True
    return tmp_path / "vault"


def record_files(folder: Path) -> list[Path]:
    return sorted((folder / "records").glob("*.rec"))


def header(folder: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((folder / HEADER_FILE).read_text())
    return doc


def write_header(folder: Path, doc: dict[str, Any]) -> None:
    (folder / HEADER_FILE).write_text(json.dumps(doc))


def key_forms(key: VaultKey) -> list[str]:
    material = key._material()
    return [material.hex(), base64.b64encode(material).decode(), repr(material)[2:-1]]


def assert_clean(text: str, identities: dict[str, dict[str, Any]], key: VaultKey) -> None:
    for value in identity_values(identities):
        assert value not in text, "an identity value leaked"
    for form in key_forms(key):
        assert form not in text, "key material leaked"


# -- round trip ----------------------------------------------------------------------------


def test_round_trip_with_a_reopened_vault(
    filled: Path, tmp_path: Path, identities: dict[str, dict[str, Any]]
) -> None:
    vault = Vault.open(filled, VaultKey.from_file(tmp_path / "keys" / "vault.key"))
    assert vault.pseudonyms() == sorted(identities)
    for pseudonym, identity in identities.items():
        got, event = vault.lookup(pseudonym, user="alice")
        assert got == identity
        assert event["user"] == "alice" and event["action"] == "vault.lookup"
        assert event["details"]["pseudonym"] == pseudonym
        assert event["details"]["outcome"] == "granted"
        assert event["details"]["key_id"] == vault.key_id
        assert event["details"]["time"].endswith("Z")
    assert "SUBJ-0000" in vault and "SUBJ-9999" not in vault
    report = vault.verify()
    assert report.ok and report.records == len(identities)


def test_lookup_event_goes_into_the_audit_log(filled: Path, key: VaultKey, tmp_path: Path) -> None:
    from imagelake.audit import AuditLog

    vault = Vault.open(filled, key)
    log = AuditLog(LakeFS(tmp_path / "lake"))
    _, event = vault.lookup("SUBJ-0001", user="bob")
    entry = log.record(**event)
    with pytest.raises(VaultPermissionError) as exc:
        vault.lookup("SUBJ-0001", user="mallory")
    assert exc.value.event is not None and exc.value.event["details"]["outcome"] == "denied"
    log.record(**exc.value.event)
    assert log.verify().ok
    lines = (tmp_path / "lake" / "audit" / "log.jsonl").read_text().splitlines()
    assert [json.loads(x)["user"] for x in lines] == ["bob", "mallory"]
    assert list(entry.objects) == ["pseudonym/SUBJ-0001"]


def test_put_is_idempotent_and_conflicts_are_refused(
    filled: Path, key: VaultKey, identities: dict[str, dict[str, Any]]
) -> None:
    vault = Vault.open(filled, key)
    before = {p.name: p.read_bytes() for p in record_files(filled)}
    same = dict(reversed(list(identities["SUBJ-0002"].items())))  # same content, other order
    assert vault.put("SUBJ-0002", same) is False
    assert {p.name: p.read_bytes() for p in record_files(filled)} == before
    changed = {**identities["SUBJ-0002"], "PatientName": "SOMEONE^ELSE"}
    with pytest.raises(VaultConflictError, match="SUBJ-0002") as exc:
        vault.put("SUBJ-0002", changed)
    assert "SOMEONE^ELSE" not in str(exc.value)
    assert_clean(str(exc.value), identities, key)
    assert vault.lookup("SUBJ-0002", user="alice").identity == identities["SUBJ-0002"]


def test_unknown_pseudonym(filled: Path, key: VaultKey) -> None:
    vault = Vault.open(filled, key)
    with pytest.raises(VaultRecordNotFoundError, match="SUBJ-4242") as exc:
        vault.lookup("SUBJ-4242", user="alice")
    assert isinstance(exc.value, KeyError) and exc.value.event is not None
    assert exc.value.event["details"]["outcome"] == "not-found"


@pytest.mark.parametrize("pseudonym", ["", "has space", "x" * 257, "tab\t", "é"])
def test_bad_pseudonym(filled: Path, key: VaultKey, pseudonym: str) -> None:
    vault = Vault.open(filled, key)
    with pytest.raises(VaultInputError):
        vault.put(pseudonym, {"PatientID": "1"})


def test_identity_must_be_json_and_errors_name_fields_not_values(
    filled: Path, key: VaultKey
) -> None:
    import datetime

    vault = Vault.open(filled, key)
    with pytest.raises(VaultInputError, match="PatientBirthDate") as exc:
        vault.put(
            "SUBJ-0100",
            {"PatientName": "HIDDEN^NAME", "PatientBirthDate": datetime.date(1970, 1, 2)},
        )
    assert "HIDDEN^NAME" not in str(exc.value) and "1970" not in str(exc.value)
    with pytest.raises(VaultInputError):
        vault.put("SUBJ-0100", {})
    assert "SUBJ-0100" not in vault


def test_non_permitted_user_is_refused(filled: Path, key: VaultKey) -> None:
    vault = Vault.open(filled, key)
    assert vault.permitted_users == ("alice", "bob")
    with pytest.raises(VaultPermissionError, match="carol") as exc:
        vault.lookup("SUBJ-0000", user="carol")
    assert isinstance(exc.value, PermissionError)
    with pytest.raises(VaultPermissionError):
        vault.lookup("SUBJ-9999", user="carol")  # refused before revealing existence
    event = vault.set_permitted_users(["alice", "carol"])
    assert event["details"] == {**event["details"], "added": ["carol"], "removed": ["bob"]}
    reopened = Vault.open(filled, key)
    assert reopened.lookup("SUBJ-0000", user="carol").identity["source_file"] == "CT_small.dcm"
    with pytest.raises(VaultPermissionError):
        reopened.lookup("SUBJ-0000", user="bob")


def test_default_user_comes_from_settings(filled: Path, key: VaultKey) -> None:
    from imagelake.config import override

    vault = Vault.open(filled, key)
    with override(user="alice"):
        assert vault.lookup("SUBJ-0000").event["user"] == "alice"
    with override(user="eve"), pytest.raises(VaultPermissionError):
        vault.lookup("SUBJ-0000")


# -- keys ----------------------------------------------------------------------------------


def test_wrong_key_fails_clearly(filled: Path, key: VaultKey) -> None:
    other = VaultKey.generate()
    with pytest.raises(VaultKeyError, match="wrong key or tampered vault header") as exc:
        Vault.open(filled, other)
    assert key.key_id in str(exc.value) and other.key_id in str(exc.value)
    assert_clean(str(exc.value), {}, other)
    assert_clean(str(exc.value), {}, key)


def test_wrong_key_with_a_forged_key_id_still_fails(filled: Path) -> None:
    other = VaultKey.generate()
    doc = header(filled)
    doc["key_id"] = other.key_id
    write_header(filled, doc)
    with pytest.raises(VaultKeyError, match="wrong key or tampered vault header"):
        Vault.open(filled, other)


def test_rotation_keeps_records_and_rejects_the_old_key(
    filled: Path, key: VaultKey, identities: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    vault = Vault.open(filled, key)
    before = {p.name: p.read_bytes() for p in record_files(filled)}
    new_key = create_key_file(tmp_path / "keys" / "new.key")
    event = vault.rotate(new_key)
    assert event["details"]["old_key_id"] == key.key_id
    assert event["details"]["new_key_id"] == new_key.key_id
    assert vault.key_id == new_key.key_id
    assert {p.name: p.read_bytes() for p in record_files(filled)} == before  # not re-encrypted
    with pytest.raises(VaultKeyError, match="wrong key or tampered vault header"):
        Vault.open(filled, key)
    reopened = Vault.open(filled, VaultKey.from_file(tmp_path / "keys" / "new.key"))
    assert reopened.verify().ok
    for pseudonym, identity in identities.items():
        assert reopened.lookup(pseudonym, user="bob").identity == identity


def test_stale_handle_cannot_rotate(filled: Path, key: VaultKey) -> None:
    first = Vault.open(filled, key)
    second = Vault.open(filled, key)
    first.rotate(VaultKey.generate())
    with pytest.raises(VaultKeyError, match="re-keyed"):
        second.rotate(VaultKey.generate())
    with pytest.raises(VaultKeyError, match="re-keyed"):
        second.set_permitted_users(["eve"])


def test_passphrase_vault_and_rotation_to_a_key(
    tmp_path: Path, identities: dict[str, dict[str, Any]]
) -> None:
    phrase = Passphrase("a study-wide passphrase", FAST_SCRYPT)
    vault = Vault.create(tmp_path / "pv", phrase, permitted_users=["alice"])
    vault.put("SUBJ-0000", identities["SUBJ-0000"])
    kdf = header(tmp_path / "pv")["kdf"]
    assert kdf["name"] == "scrypt" and kdf["n"] == FAST_SCRYPT.n
    assert len(base64.b64decode(kdf["salt"])) == 16
    # opening uses the stored parameters, whatever the Passphrase object's own
    reopened = Vault.open(tmp_path / "pv", Passphrase("a study-wide passphrase"))
    assert reopened.lookup("SUBJ-0000", user="alice").identity == identities["SUBJ-0000"]
    with pytest.raises(VaultKeyError, match="wrong key or tampered vault header"):
        Vault.open(tmp_path / "pv", Passphrase("a study-wide passphrasf", FAST_SCRYPT))
    # a changed salt derives another key
    doc = header(tmp_path / "pv")
    doc["kdf"]["salt"] = base64.b64encode(os.urandom(16)).decode()
    (tmp_path / "pv" / "saved.json").write_text(json.dumps(header(tmp_path / "pv")))
    write_header(tmp_path / "pv", doc)
    with pytest.raises(VaultKeyError, match="wrong key or tampered vault header"):
        Vault.open(tmp_path / "pv", Passphrase("a study-wide passphrase"))
    (tmp_path / "pv" / "saved.json").replace(tmp_path / "pv" / HEADER_FILE)
    # rotate from the passphrase to a key: the passphrase stops working
    new_key = VaultKey.generate()
    reopened.rotate(new_key)
    assert header(tmp_path / "pv")["kdf"] is None
    with pytest.raises(VaultKeyError):
        Vault.open(tmp_path / "pv", Passphrase("a study-wide passphrase"))
    assert Vault.open(tmp_path / "pv", new_key).verify().ok


def test_scrypt_memory_bomb_in_header_is_refused(tmp_path: Path) -> None:
    Vault.create(tmp_path / "pv", Passphrase("pw", FAST_SCRYPT), permitted_users=["a"])
    doc = header(tmp_path / "pv")
    doc["kdf"]["n"] = 2**30
    write_header(tmp_path / "pv", doc)
    with pytest.raises(VaultTamperedError, match="scrypt"):
        Vault.open(tmp_path / "pv", Passphrase("pw"))


# -- tampering -----------------------------------------------------------------------------


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("where", "offset"),
    [("magic", 0), ("nonce", 5), ("nonce-end", 16), ("ciphertext", 40), ("tag", -1)],
)
def test_flipped_record_byte_is_detected(
    filled: Path, key: VaultKey, identities: dict[str, dict[str, Any]], where: str, offset: int
) -> None:
    vault = Vault.open(filled, key)
    victim = next(p for p in sorted(identities) if vault._token(p) == record_files(filled)[0].stem)
    flip(record_files(filled)[0], offset)
    with pytest.raises(VaultTamperedError, match=record_files(filled)[0].name) as exc:
        vault.lookup(victim, user="alice")
    assert exc.value.event is not None and exc.value.event["details"]["outcome"] == "tampered"
    assert_clean(str(exc.value), identities, key)
    report = vault.verify()
    assert not report.ok and len(report.problems) == 1
    assert record_files(filled)[0].name in report.problems[0]
    with pytest.raises(VaultTamperedError):
        vault.pseudonyms()
    others = [p for p in identities if p != victim]
    assert all(vault.lookup(p, user="alice").identity == identities[p] for p in others)


def test_truncated_record_is_detected(filled: Path, key: VaultKey) -> None:
    path = record_files(filled)[1]
    path.write_bytes(path.read_bytes()[:10])
    report = Vault.open(filled, key).verify()
    assert not report.ok and "not a sealed vault record" in report.problems[0]


def test_swapped_records_are_detected(
    filled: Path, key: VaultKey, identities: dict[str, dict[str, Any]]
) -> None:
    a, b = record_files(filled)[:2]
    da, db = a.read_bytes(), b.read_bytes()
    a.write_bytes(db)
    b.write_bytes(da)
    vault = Vault.open(filled, key)
    report = vault.verify()
    assert len(report.problems) == 2
    assert all("failed authentication" in p for p in report.problems)
    for pseudonym in identities:
        if vault._token(pseudonym) in (a.stem, b.stem):
            with pytest.raises(VaultTamperedError):
                vault.lookup(pseudonym, user="alice")


def test_record_copied_from_another_vault_is_detected(
    filled: Path, key: VaultKey, tmp_path: Path, identities: dict[str, dict[str, Any]]
) -> None:
    # same key, another vault: the record's name and content are valid there, not here
    other = Vault.create(tmp_path / "other", key, permitted_users=USERS)
    other.put("SUBJ-0003", {"PatientName": "OTHER^PERSON"})
    vault = Vault.open(filled, key)
    target = filled / "records" / f"{vault._token('SUBJ-0003')}.rec"
    source = tmp_path / "other" / "records" / f"{other._token('SUBJ-0003')}.rec"
    target.write_bytes(source.read_bytes())
    with pytest.raises(VaultTamperedError):
        vault.lookup("SUBJ-0003", user="alice")


@pytest.mark.parametrize(
    "edit",
    [
        "permitted_users_add",
        "permitted_users_replace",
        "vault_id",
        "created",
        "data_key_id",
    ],
)
def test_edited_header_is_detected(filled: Path, key: VaultKey, edit: str) -> None:
    doc = header(filled)
    if edit == "permitted_users_add":
        doc["permitted_users"].append("mallory")
    elif edit == "permitted_users_replace":
        doc["permitted_users"] = ["mallory"]
    elif edit == "vault_id":
        doc["vault_id"] = "0" * 32
    elif edit == "created":
        doc["created"] = "2000-01-01T00:00:00Z"
    else:
        doc["data_key_id"] = "f" * 16
    write_header(filled, doc)
    with pytest.raises(VaultTamperedError, match="tampered vault header"):
        Vault.open(filled, key)


def test_flipped_key_id_in_header_is_detected(filled: Path, key: VaultKey) -> None:
    doc = header(filled)
    kid = doc["key_id"]
    doc["key_id"] = kid[:-1] + ("0" if kid[-1] != "0" else "1")
    write_header(filled, doc)
    with pytest.raises(VaultKeyError, match="wrong key or tampered vault header") as exc:
        Vault.open(filled, key)
    assert key.key_id in str(exc.value)


def test_flipped_wrapped_key_is_detected(filled: Path, key: VaultKey) -> None:
    doc = header(filled)
    wrapped = bytearray(base64.b64decode(doc["wrapped_data_key"]))
    wrapped[3] ^= 0x80
    doc["wrapped_data_key"] = base64.b64encode(bytes(wrapped)).decode()
    write_header(filled, doc)
    with pytest.raises(VaultKeyError, match="does not unwrap"):
        Vault.open(filled, key)


@pytest.mark.parametrize("content", ["", "not json", "[]", '{"format": "imagelake-vault"}'])
def test_garbled_header(filled: Path, key: VaultKey, content: str) -> None:
    (filled / HEADER_FILE).write_text(content)
    with pytest.raises(VaultTamperedError, match="not a well-formed vault header"):
        Vault.open(filled, key)


def test_header_with_extra_field_is_refused(filled: Path, key: VaultKey) -> None:
    doc = header(filled)
    doc["permitted_users_extra"] = ["mallory"]
    write_header(filled, doc)
    with pytest.raises(VaultTamperedError):
        Vault.open(filled, key)


# -- secrecy -------------------------------------------------------------------------------


def test_vault_files_hold_no_identity_value(
    filled: Path, key: VaultKey, identities: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    needles = identity_values(identities)
    assert len(needles) >= 10 and any("^" in n for n in needles)  # real names were read
    assert files_containing(filled, needles) == []
    # the scan itself works: a plaintext copy is caught
    leak = tmp_path / "leak"
    leak.mkdir()
    (leak / "x.json").write_text(json.dumps(identities))
    assert files_containing(leak, needles)
    # and no pseudonym is in a file name either
    names = " ".join(p.name for p in filled.rglob("*"))
    assert not any(p in names for p in identities)
    for form in key_forms(key):
        assert files_containing(filled, {form}) == []


def test_errors_and_reprs_hold_no_identity_or_key(
    filled: Path, key: VaultKey, identities: dict[str, dict[str, Any]]
) -> None:
    vault = Vault.open(filled, key)
    shown = [repr(vault), str(vault), repr(key), repr(vault._keys)]
    lookup = vault.lookup("SUBJ-0000", user="alice")
    shown += [repr(lookup), str(lookup), json.dumps(lookup.event)]
    errors: list[VaultError] = []
    for attempt in (
        lambda: Vault.open(filled, VaultKey.generate()),
        lambda: vault.lookup("SUBJ-0000", user="mallory"),
        lambda: vault.put("SUBJ-0000", {**identities["SUBJ-0001"]}),
        lambda: vault.lookup("NOPE", user="alice"),
    ):
        with pytest.raises(VaultError) as exc:
            attempt()
        errors.append(exc.value)
    flip(record_files(filled)[0], 30)
    with pytest.raises(VaultError) as exc:
        vault.pseudonyms()
    errors.append(exc.value)
    shown += [str(e) for e in errors] + [repr(e) for e in errors]
    shown += [json.dumps(e.event) for e in errors if e.event]
    shown += list(vault.verify().problems)
    data_key = VaultKey(vault._keys.data)  # the vault's data key: never shown either
    for text in shown:
        assert_clean(text, identities, key)
        assert_clean(text, {}, data_key)


# -- locations -----------------------------------------------------------------------------


def test_create_refuses_an_existing_vault(filled: Path, key: VaultKey) -> None:
    before = (filled / HEADER_FILE).read_bytes()
    with pytest.raises(VaultExistsError):
        Vault.create(filled, key, permitted_users=["x"])
    assert (filled / HEADER_FILE).read_bytes() == before


def test_open_missing_vault(tmp_path: Path, key: VaultKey) -> None:
    with pytest.raises(VaultNotFoundError):
        Vault.open(tmp_path / "nothing", key)


def test_vault_inside_a_lake_is_refused(tmp_path: Path, key: VaultKey) -> None:
    (tmp_path / "lake").mkdir()
    (tmp_path / "lake" / "imagelake.json").write_text("{}")
    with pytest.raises(VaultLocationError, match="inside the lake"):
        Vault.create(tmp_path / "lake" / "vault", key, permitted_users=["a"])
    assert not (tmp_path / "lake" / "vault" / HEADER_FILE).exists()


def test_vault_at_an_fsspec_url(identities: dict[str, dict[str, Any]]) -> None:
    import fsspec

    url = f"memory://vault-{os.getpid()}-{id(identities)}"
    key = VaultKey.generate()
    vault = Vault.create(url, key, permitted_users=["alice"])
    for pseudonym, identity in identities.items():
        vault.put(pseudonym, identity)
    reopened = Vault.open(url, key)
    assert reopened.pseudonyms() == sorted(identities)
    assert reopened.lookup("SUBJ-0004", user="alice").identity == identities["SUBJ-0004"]
    fs = fsspec.filesystem("memory")
    blobs = b"".join(fs.cat_file(p) for p in fs.find(url))
    assert not any(v.encode() in blobs for v in identity_values(identities))
    with pytest.raises(VaultKeyError):
        Vault.open(url, VaultKey.generate())
    fs.rm(url, recursive=True)


# -- atomic writes -------------------------------------------------------------------------


def test_crash_during_put_leaves_no_half_record(
    filled: Path, key: VaultKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault = Vault.open(filled, key)
    before = sorted(p.name for p in (filled / "records").iterdir())

    def crash(src: str, dst: str) -> None:
        raise OSError("simulated crash before the rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        vault.put("SUBJ-0777", {"PatientName": "HALF^WRITTEN"})
    monkeypatch.undo()
    assert sorted(p.name for p in (filled / "records").iterdir()) == before
    assert "SUBJ-0777" not in vault
    # a stray temporary left by a killed process is ignored by readers
    (filled / "records" / ".deadbeef.rec.1234.tmp").write_bytes(b"partial")
    assert vault.verify().ok and "SUBJ-0777" not in vault.pseudonyms()
    assert vault.put("SUBJ-0777", {"PatientName": "HALF^WRITTEN"}) is True


def test_crash_during_rotate_keeps_the_old_key_working(
    filled: Path, key: VaultKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault = Vault.open(filled, key)

    def crash(src: str, dst: str) -> None:
        raise OSError("simulated crash before the rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        vault.rotate(VaultKey.generate())
    monkeypatch.undo()
    assert Vault.open(filled, key).verify().ok
    assert vault.key_id == key.key_id and vault.lookup("SUBJ-0000", user="alice").identity


@pytest.mark.parametrize("users", ["alice", ["alice", 3], ["", "bob"], ["a\nb"]])
def test_bad_permitted_users(tmp_path: Path, key: VaultKey, users: Any) -> None:
    with pytest.raises(VaultInputError):
        Vault.create(tmp_path / "v", key, permitted_users=users)
    assert not (tmp_path / "v" / HEADER_FILE).exists()
