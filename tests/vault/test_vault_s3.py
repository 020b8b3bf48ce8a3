"""A vault at an s3:// URL, against a local moto S3 server started by the test."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from vault_testkit import identity_values, need_module, real_identities

from imagelake.vault import Vault, VaultKey, VaultKeyError, VaultTamperedError


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3_options() -> Iterator[dict[str, Any]]:
    moto_server = need_module("moto.server")
    need_module("s3fs")
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        yield {
            "key": "testing",
            "secret": "testing",
            "client_kwargs": {
                "endpoint_url": f"http://127.0.0.1:{port}",
                "region_name": "eu-west-1",
            },
            "use_listings_cache": False,
            "skip_instance_cache": True,
        }
    finally:
        server.stop()


def test_vault_on_s3(s3_options: dict[str, Any]) -> None:
    import s3fs

    fs = s3fs.S3FileSystem(**s3_options)
    bucket = f"vault-{uuid.uuid4().hex[:12]}"
    fs.mkdir(bucket)
    url = f"s3://{bucket}/site-a/vault"
    identities = real_identities()
    key = VaultKey.generate()

    vault = Vault.create(url, key, permitted_users=["alice"], storage_options=s3_options)
    for pseudonym, identity in identities.items():
        assert vault.put(pseudonym, identity) is True
    assert vault.put("SUBJ-0000", identities["SUBJ-0000"]) is False

    reopened = Vault.open(url, key, storage_options=s3_options)
    assert reopened.pseudonyms() == sorted(identities)
    for pseudonym, identity in identities.items():
        assert reopened.lookup(pseudonym, user="alice").identity == identity
    assert reopened.verify().ok

    # nothing identifying in any stored object
    stored = b"".join(fs.cat_file(p) for p in fs.find(f"{bucket}/site-a/vault"))
    assert stored and not [v for v in identity_values(identities) if v.encode() in stored]

    # wrong key, rotation, and a tampered object over S3
    with pytest.raises(VaultKeyError, match="wrong key or tampered vault header"):
        Vault.open(url, VaultKey.generate(), storage_options=s3_options)
    new_key = VaultKey.generate()
    reopened.rotate(new_key)
    with pytest.raises(VaultKeyError):
        Vault.open(url, key, storage_options=s3_options)
    rotated = Vault.open(url, new_key, storage_options=s3_options)
    assert rotated.verify().ok
    record = sorted(fs.find(f"{bucket}/site-a/vault/records"))[0]
    data = bytearray(fs.cat_file(record))
    data[20] ^= 0xFF
    fs.pipe_file(record, bytes(data))
    report = rotated.verify()
    assert not report.ok and len(report.problems) == 1
    with pytest.raises(VaultTamperedError):
        rotated.pseudonyms()
