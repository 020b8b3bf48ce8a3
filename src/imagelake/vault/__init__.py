"""The re-identification vault: pseudonym -> original identifiers, sealed (layer L1).

Anonymization replaces each subject by a study pseudonym; the vault keeps the way back for
the few people allowed to take it::

    from imagelake.vault import Vault, VaultKey, create_key_file

    key = create_key_file("~/.config/imagelake/vault.key")      # 0600, outside any lake
    vault = Vault.create("/secure/vault", key, permitted_users=["alice"])
    vault.put("SUBJ-0001", {"PatientName": "DOE^JANE", "PatientID": "12345"})

    identity, event = Vault.open("/secure/vault", VaultKey.from_env()).lookup(
        "SUBJ-0001", user="alice")
    audit_log.record(**event)            # the caller audits; the vault does not import audit

Records are sealed with AES-256-GCM under a per-vault data key that the master key wraps
(AES key wrap), so :meth:`Vault.rotate` is cheap. Keys come from a key file, the
``IMAGELAKE_VAULT_KEY`` environment variable (base64) or a passphrase through scrypt.
``cryptography`` is the ``crypto`` extra. See :mod:`imagelake.vault._vault` for the format
and what tampering is and is not detected.
"""

from imagelake.vault._errors import (
    VaultConflictError,
    VaultError,
    VaultExistsError,
    VaultInputError,
    VaultKeyError,
    VaultLocationError,
    VaultNotFoundError,
    VaultPermissionError,
    VaultRecordNotFoundError,
    VaultTamperedError,
)
from imagelake.vault._keys import (
    VAULT_KEY_ENV,
    Passphrase,
    ScryptParams,
    VaultKey,
    create_key_file,
)
from imagelake.vault._vault import HEADER_FILE, Vault, VaultLookup, VaultReport

__all__ = [
    "HEADER_FILE",
    "VAULT_KEY_ENV",
    "Passphrase",
    "ScryptParams",
    "Vault",
    "VaultConflictError",
    "VaultError",
    "VaultExistsError",
    "VaultInputError",
    "VaultKey",
    "VaultKeyError",
    "VaultLocationError",
    "VaultLookup",
    "VaultNotFoundError",
    "VaultPermissionError",
    "VaultRecordNotFoundError",
    "VaultReport",
    "VaultTamperedError",
    "create_key_file",
]
