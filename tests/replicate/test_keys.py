"""MasterKey: sources, derivation, and that material is never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagelake.errors import ConfigError
from imagelake.replicate import MasterKey


def test_repr_and_str_hide_material() -> None:
    k = MasterKey.generate("site-a")
    for text in (repr(k), str(k), f"{k}", repr([k])):
        assert k.material.hex() not in text
        assert "site-a" in text


def test_file_round_trip_and_mode(tmp_path: Path) -> None:
    k = MasterKey.generate("site-a")
    k.to_file(tmp_path / "site.key")
    assert (tmp_path / "site.key").stat().st_mode & 0o077 == 0
    assert MasterKey.from_file(tmp_path / "site.key") == k
    with pytest.raises(FileExistsError):
        k.to_file(tmp_path / "site.key")


def test_file_without_id_uses_stem_and_accepts_base64(tmp_path: Path) -> None:
    import base64

    raw = bytes(range(32))
    (tmp_path / "offsite.key").write_text(base64.b64encode(raw).decode())
    k = MasterKey.from_file(tmp_path / "offsite.key")
    assert (k.key_id, k.material) == ("offsite", raw)


def test_bad_key_file_error_does_not_echo_content(tmp_path: Path) -> None:
    (tmp_path / "bad.key").write_text("site:" + "ab" * 31)  # 31 bytes
    with pytest.raises(ConfigError) as err:
        MasterKey.from_file(tmp_path / "bad.key")
    assert "ab" * 31 not in str(err.value)


def test_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = bytes(range(32, 64))
    monkeypatch.setenv("IMAGELAKE_MASTER_KEY", raw.hex())
    monkeypatch.setenv("IMAGELAKE_MASTER_KEY_ID", "env-key")
    assert MasterKey.from_env() == MasterKey("env-key", raw)
    monkeypatch.delenv("IMAGELAKE_MASTER_KEY_ID")
    with pytest.raises(ConfigError, match="IMAGELAKE_MASTER_KEY_ID"):
        MasterKey.from_env()


def test_passphrase_is_scrypt_and_salted() -> None:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    a = MasterKey.from_passphrase("pp", "correct horse battery", salt="site-a-salt")
    b = MasterKey.from_passphrase("pp", "correct horse battery", salt="site-a-salt")
    c = MasterKey.from_passphrase("pp", "correct horse battery", salt="site-b-salt")
    assert a == b and a.material != c.material
    expected = Scrypt(salt=b"site-a-salt", length=32, n=2**15, r=8, p=1).derive(
        b"correct horse battery"
    )
    assert a.material == expected


@pytest.mark.parametrize("key_id", ["", "has space", "x" * 65, "naïve"])
def test_bad_key_ids(key_id: str) -> None:
    with pytest.raises(ConfigError):
        MasterKey(key_id, bytes(32))


def test_short_material() -> None:
    with pytest.raises(ConfigError):
        MasterKey("k", bytes(16))
