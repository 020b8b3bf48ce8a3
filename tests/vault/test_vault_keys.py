"""Vault keys: key files, the environment, passphrases; no key material ever shown."""

from __future__ import annotations

import base64
import os
import pickle
import stat
import time
from pathlib import Path

import pytest
from vault_testkit import FAST_SCRYPT

from imagelake.vault import (
    VAULT_KEY_ENV,
    Passphrase,
    ScryptParams,
    VaultExistsError,
    VaultKey,
    VaultKeyError,
    VaultLocationError,
    create_key_file,
)


def test_create_key_file_is_0600_base64_and_loads_back(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "vault.key"
    key = create_key_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    material = base64.b64decode(path.read_bytes().strip(), validate=True)
    assert len(material) == 32
    loaded = VaultKey.from_file(path)
    assert loaded == key and loaded.key_id == key.key_id
    assert [p.name for p in path.parent.iterdir()] == ["vault.key"]  # no temporary left


def test_create_key_file_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "vault.key"
    first = create_key_file(path)
    before = path.read_bytes()
    with pytest.raises(VaultExistsError):
        create_key_file(path)
    assert path.read_bytes() == before
    assert VaultKey.from_file(path) == first


def test_two_key_files_differ(tmp_path: Path) -> None:
    a = create_key_file(tmp_path / "a.key")
    b = create_key_file(tmp_path / "b.key")
    assert a != b and a.key_id != b.key_id


def test_raw_32_byte_key_file(tmp_path: Path) -> None:
    material = os.urandom(32)
    path = tmp_path / "raw.key"
    path.write_bytes(material)
    path.chmod(0o600)
    assert VaultKey.from_file(path) == VaultKey(material)


def test_key_id_is_a_fingerprint_not_the_key(tmp_path: Path) -> None:
    material = os.urandom(32)
    key = VaultKey(material)
    assert len(key.key_id) == 16 and int(key.key_id, 16) >= 0
    assert key.key_id not in (material.hex(), base64.b64encode(material).decode())
    assert key.key_id not in material.hex()
    assert VaultKey(material).key_id == key.key_id  # stable


@pytest.mark.parametrize("content", [b"", b"short", b"A" * 31, b"!" * 44, os.urandom(40)])
def test_malformed_key_file_is_refused_without_showing_it(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.key"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(VaultKeyError, match="does not hold a vault key") as exc:
        VaultKey.from_file(path)
    if len(content) >= 4:
        assert content.decode("latin-1") not in str(exc.value)


def test_open_key_file_is_refused_or_warned(tmp_path: Path) -> None:
    path = tmp_path / "open.key"
    key = create_key_file(path)
    path.chmod(0o644)
    with pytest.raises(VaultKeyError, match="0644"):
        VaultKey.from_file(path)
    with pytest.warns(UserWarning, match="chmod 600"):
        assert VaultKey.from_file(path, strict=False) == key


def test_missing_key_file(tmp_path: Path) -> None:
    with pytest.raises(VaultKeyError, match="does not exist"):
        VaultKey.from_file(tmp_path / "nope.key")


@pytest.mark.parametrize("marker", ["imagelake.json", "registry.sqlite"])
def test_key_file_inside_a_lake_is_refused(tmp_path: Path, marker: str) -> None:
    lake = tmp_path / "lake"
    (lake / "keys").mkdir(parents=True)
    (lake / marker).write_text("{}")
    with pytest.raises(VaultLocationError, match="inside the lake"):
        create_key_file(lake / "keys" / "vault.key")
    assert not (lake / "keys" / "vault.key").exists()
    outside = tmp_path / "outside.key"
    create_key_file(outside)
    os.link(outside, lake / "keys" / "linked.key")
    with pytest.raises(VaultLocationError):
        VaultKey.from_file(lake / "keys" / "linked.key")


def test_key_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    material = os.urandom(32)
    monkeypatch.setenv(VAULT_KEY_ENV, base64.b64encode(material).decode())
    assert VaultKey.from_env() == VaultKey(material)
    assert VaultKey.from_env().source == "env"
    monkeypatch.setenv("OTHER_VAR", " " + base64.b64encode(material).decode() + "\n")
    assert VaultKey.from_env("OTHER_VAR") == VaultKey(material)


def test_key_from_environment_missing_or_malformed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(VAULT_KEY_ENV, raising=False)
    with pytest.raises(VaultKeyError, match=VAULT_KEY_ENV):
        VaultKey.from_env()
    secretish = base64.b64encode(os.urandom(16)).decode()  # 16 bytes: too short
    monkeypatch.setenv(VAULT_KEY_ENV, secretish)
    with pytest.raises(VaultKeyError, match="base64 of 32 bytes") as exc:
        VaultKey.from_env()
    assert secretish not in str(exc.value)


def test_passphrase_derivation_is_deterministic_per_salt() -> None:
    salt_a, salt_b = os.urandom(16), os.urandom(16)
    k1 = VaultKey.from_passphrase("correct horse battery staple", salt_a, FAST_SCRYPT)
    k2 = Passphrase("correct horse battery staple", FAST_SCRYPT).derive(salt_a)
    assert k1 == k2
    assert VaultKey.from_passphrase("correct horse battery staple", salt_b, FAST_SCRYPT) != k1
    assert VaultKey.from_passphrase("correct horse battery stapler", salt_a, FAST_SCRYPT) != k1
    assert VaultKey.from_passphrase("correct horse battery staple", salt_a) != k1  # other cost


def test_passphrase_matches_rfc7914_scrypt_vector() -> None:
    # RFC 7914 section 12: scrypt("password", "NaCl", N=1024, r=8, p=16, dkLen=64),
    # first 32 bytes - checks we call scrypt with the parameters we claim
    expected = bytes.fromhex("fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b373162")
    key = VaultKey.from_passphrase("password", b"NaCl" * 4, ScryptParams(n=1024, r=8, p=16))
    assert isinstance(key, VaultKey)
    from imagelake.vault import _crypto

    assert _crypto.scrypt(b"password", b"NaCl", n=1024, r=8, p=16, length=64)[:32] == expected


def test_default_scrypt_params_and_time() -> None:
    prm = ScryptParams()
    assert (prm.n, prm.r, prm.p) == (2**15, 8, 1)
    start = time.perf_counter()
    key = Passphrase("a long passphrase").derive(os.urandom(16))
    elapsed = time.perf_counter() - start
    print(f"\nscrypt n=2**15 r=8 p=1 derivation: {elapsed:.3f} s")
    assert isinstance(key, VaultKey)
    assert 0.005 < elapsed < 10  # a real memory-hard derivation, not a no-op


@pytest.mark.parametrize("bad", [dict(n=1000), dict(n=1), dict(r=0), dict(p=0)])
def test_bad_scrypt_params(bad: dict[str, int]) -> None:
    with pytest.raises(VaultKeyError):
        ScryptParams(**bad)


def test_empty_passphrase_refused() -> None:
    with pytest.raises(VaultKeyError):
        Passphrase("")


def test_no_key_material_in_repr_str_or_pickle(tmp_path: Path) -> None:
    material = os.urandom(32)
    key = VaultKey(material)
    forms = {material.hex(), base64.b64encode(material).decode(), repr(material)[2:-1]}
    for shown in (repr(key), str(key), f"{key}", repr([key])):
        assert key.key_id in shown
        for form in forms:
            assert form not in shown
    phrase = Passphrase("my secret passphrase")
    assert "my secret passphrase" not in repr(phrase) + str(phrase)
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(key)
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(phrase)


def test_wrong_size_key_bytes() -> None:
    with pytest.raises(VaultKeyError) as exc:
        VaultKey(b"x" * 16)
    assert "xxxx" not in str(exc.value)
