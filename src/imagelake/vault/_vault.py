"""The sealed store of pseudonym -> original identifiers and demographics.

Layout of a vault (a folder outside any lake, or any fsspec URL)::

    vault.json            header: vault id, version, key id, wrapped data key, kdf, users, MAC
    records/<token>.rec   one sealed record per pseudonym
    .lock                 writer lock (local vaults)

**Envelope.** Each vault has a random 256-bit data-encryption key (DEK). The header holds it
wrapped (RFC 3394 AES key wrap) by the master key (:class:`~imagelake.vault.VaultKey`), so
:meth:`Vault.rotate` rewraps one key instead of re-encrypting every record. The header is
MACed (HMAC-SHA256 under an HKDF sub-key of the DEK) over everything but the MAC: an edited
permitted-users list, vault id, key id or kdf parameter is detected.

**Records.** ``<token>`` is HMAC-SHA256 (HKDF sub-key of the DEK) of the pseudonym, so file
names reveal neither the pseudonyms nor how many characters they have. A record is
``b"ILVR" | version | 96-bit nonce | AES-256-GCM(ciphertext + tag)`` of the canonical JSON
``{"identity": ..., "pseudonym": ...}``. The associated data binds the vault id, the data
key's id and the token (a keyed hash of the pseudonym), so a record moved to another name
or another vault fails authentication; after decryption the pseudonym inside must hash to
the file's token. (The data key's id is bound rather than the master key's so that
rotation does not re-encrypt records; the master key id is bound to the header by the key
wrap and the header MAC.) Each seal uses a fresh random nonce: with one DEK per vault and
the 2**32 random-nonce limit of GCM, a vault can hold billions of records.

**Writes** are atomic (temporary file + fsync + rename locally, one PUT on object stores)
and serialised by a file lock (see :mod:`imagelake.vault._lock`), so a crash leaves no half
record and two processes putting at once neither lose nor corrupt records.

**Not detected**: deleting a whole record file (the pseudonym just becomes unknown), and
restoring an older copy of the header after a rotation (the old key then opens the vault
again: destroy old keys and old header copies after a rotation).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import os
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from imagelake._fs import LakeFS
from imagelake.config import get_settings
from imagelake.vault import _crypto
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
from imagelake.vault._keys import KEY_BYTES, Passphrase, ScryptParams, VaultKey
from imagelake.vault._location import enclosing_lake
from imagelake.vault._lock import lock_path_for, locked

__all__ = ["HEADER_FILE", "Vault", "VaultLookup", "VaultReport"]

HEADER_FILE = "vault.json"
RECORDS = "records"
FORMAT = "imagelake-vault"
VERSION = 1
_MAGIC = b"ILVR"
_RECORD_VERSION = 1
_SALT_BYTES = 16
_TOKEN_HEX = 40
_PSEUDONYM_RE = re.compile(r"^[\x21-\x7e]{1,256}$")  # printable ASCII, no spaces
_USER_RE = re.compile(r"^[^\x00-\x1f\x7f]{1,256}$")
_HEADER_FIELDS = {
    "format",
    "version",
    "vault_id",
    "key_id",
    "data_key_id",
    "wrapped_data_key",
    "kdf",
    "permitted_users",
    "created",
    "mac",
}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _canonical(value: Any) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise ValueError("not base64 text")
    return base64.b64decode(text, validate=True)


def _check_pseudonym(pseudonym: Any) -> str:
    if not isinstance(pseudonym, str) or not _PSEUDONYM_RE.match(pseudonym):
        raise VaultInputError("a pseudonym is 1-256 printable ASCII characters without spaces")
    return pseudonym


def _check_users(users: Iterable[str]) -> list[str]:
    if isinstance(users, str):
        raise VaultInputError("permitted_users is a list of user names, not one string")
    given = list(users)
    for user in given:
        if not isinstance(user, str) or not _USER_RE.match(user):
            raise VaultInputError("a permitted user is a non-empty name without control characters")
    return sorted(set(given))


def _check_identity(identity: Mapping[str, Any]) -> bytes:
    """Canonical JSON of ``identity``; the error names a bad field, never a value."""
    if not isinstance(identity, Mapping) or not identity:
        raise VaultInputError("an identity is a non-empty mapping of field name -> JSON value")
    for field, value in identity.items():
        if not isinstance(field, str):
            raise VaultInputError("identity field names must be strings")
        try:
            _canonical(value)
        except (TypeError, ValueError):
            raise VaultInputError(
                f"identity field {field!r} holds a {type(value).__name__}, not a JSON value "
                "(str, number, bool, null, list, dict)"
            ) from None
    return _canonical(dict(identity))


@dataclass(frozen=True)
class _Header:
    vault_id: str
    key_id: str
    data_key_id: str
    wrapped_data_key: bytes
    kdf: dict[str, Any] | None
    permitted_users: tuple[str, ...]
    created: str

    def body(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "vault_id": self.vault_id,
            "key_id": self.key_id,
            "data_key_id": self.data_key_id,
            "wrapped_data_key": _b64(self.wrapped_data_key),
            "kdf": self.kdf,
            "permitted_users": list(self.permitted_users),
            "created": self.created,
        }


class _Keys:
    """Sub-keys of the data key (HKDF-SHA256), one per purpose."""

    __slots__ = ("data", "data_key_id", "header_mac", "names")

    def __init__(self, dek: bytes) -> None:
        self.data = dek
        self.header_mac = _crypto.hkdf(dek, b"imagelake.vault.header-mac.v1")
        self.names = _crypto.hkdf(dek, b"imagelake.vault.record-names.v1")
        self.data_key_id = _crypto.mac(dek, b"imagelake.vault.data-key-id.v1").hex()[:16]

    def __repr__(self) -> str:
        return "_Keys(<hidden>)"


class VaultLookup:
    """What :meth:`Vault.lookup` returns: the identity and the audit-ready event.

    Unpacks as ``identity, event = vault.lookup(...)``. ``repr`` never shows the identity.

    Attributes
    ----------
    identity
        The original identifiers and demographics stored for the pseudonym.
    event
        The event the caller must record in the lake's audit log; its keys are the keyword
        arguments of :meth:`imagelake.audit.AuditLog.record`
        (``log.record(**lookup.event)``): ``action`` (``"vault.lookup"``), ``user``,
        ``objects`` (``["pseudonym/<p>"]``) and ``details`` (``pseudonym``, ``time``,
        ``outcome``, ``vault_id``, ``key_id``).
    """

    __slots__ = ("event", "identity")

    def __init__(self, identity: dict[str, Any], event: dict[str, Any]) -> None:
        self.identity = identity
        self.event = event

    def __iter__(self) -> Iterator[Any]:
        return iter((self.identity, self.event))

    def __repr__(self) -> str:
        d = self.event["details"]
        return (
            f"VaultLookup(pseudonym={d['pseudonym']!r}, user={self.event['user']!r}, "
            f"fields={sorted(self.identity)!r})"
        )


@dataclass(frozen=True)
class VaultReport:
    """Result of :meth:`Vault.verify`.

    Attributes
    ----------
    records
        Record files checked.
    problems
        One line per record that failed (file name and reason; never a value).
    """

    records: int
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """Whether every record decrypted and authenticated."""
        return not self.problems


class Vault:
    """A re-identification vault. Build with :meth:`create` or :meth:`open`.

    Attributes
    ----------
    url
        Where the vault lives.
    vault_id
        Random id of this vault (32 hex digits).
    key_id
        Id of the master key currently wrapping the data key.
    permitted_users
        Users allowed to :meth:`lookup`.
    """

    def __init__(self, fs: LakeFS, header: _Header, keys: _Keys) -> None:  # use create/open
        self._fs = fs
        self._header = header
        self._keys = keys
        self._lock_file = lock_path_for(fs.url(), fs.root if fs.is_local else None)

    # -- construction -----------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        key: VaultKey | Passphrase,
        *,
        permitted_users: Iterable[str],
        storage_options: Mapping[str, Any] | None = None,
    ) -> Vault:
        """Create an empty vault at ``path`` (a folder or fsspec URL outside any lake).

        Parameters
        ----------
        path
            Where to create it; must not hold a vault already.
        key
            The master key, or a :class:`Passphrase` (a random salt is drawn and stored
            with its scrypt parameters in the header).
        permitted_users
            Users allowed to :meth:`lookup` identities.
        storage_options
            Passed to fsspec for remote URLs (e.g. s3fs's ``key``/``secret``/``client_kwargs``).
        """
        fs = LakeFS(path, **(storage_options or {}))
        _refuse_lake(fs)
        users = _check_users(permitted_users)
        master, kdf = _master_for_new(key)
        dek = os.urandom(KEY_BYTES)
        keys = _Keys(dek)
        header = _Header(
            vault_id=uuid.uuid4().hex,
            key_id=master.key_id,
            data_key_id=keys.data_key_id,
            wrapped_data_key=_crypto.wrap_key(master._material(), dek),
            kdf=kdf,
            permitted_users=tuple(users),
            created=_now(),
        )
        vault = cls(fs, header, keys)
        fs.makedirs("")
        with locked(vault._lock_file):
            if fs.exists(HEADER_FILE):
                raise VaultExistsError(f"a vault already exists at {fs.url()}")
            vault._write_header(header)
        return vault

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        key: VaultKey | Passphrase,
        *,
        storage_options: Mapping[str, Any] | None = None,
    ) -> Vault:
        """Open the vault at ``path`` with its master key (or passphrase).

        Parameters
        ----------
        path
            Folder or fsspec URL of the vault.
        key
            Its master key, or the :class:`Passphrase` (derived with the header's salt).
        storage_options
            Passed to fsspec for remote URLs.

        Raises
        ------
        VaultNotFoundError
            No vault header there.
        VaultKeyError
            "wrong key or tampered vault header" (naming key ids, never keys).
        VaultTamperedError
            The header was edited (its MAC does not match).
        """
        fs = LakeFS(path, **(storage_options or {}))
        _refuse_lake(fs)
        header, keys = _read_header(fs, key)
        return cls(fs, header, keys)

    # -- properties -------------------------------------------------------------------
    @property
    def url(self) -> str:
        return self._fs.url()

    @property
    def vault_id(self) -> str:
        return self._header.vault_id

    @property
    def key_id(self) -> str:
        return self._header.key_id

    @property
    def permitted_users(self) -> tuple[str, ...]:
        return self._header.permitted_users

    def __repr__(self) -> str:
        return f"Vault(url={self.url!r}, vault_id={self.vault_id!r}, key_id={self.key_id!r})"

    # -- records ----------------------------------------------------------------------
    def put(self, pseudonym: str, identity: Mapping[str, Any]) -> bool:
        """Seal ``identity`` under ``pseudonym``; idempotent.

        Returns
        -------
        bool
            ``True`` if a record was written, ``False`` if the same identity was already
            stored.

        Raises
        ------
        VaultConflictError
            The pseudonym already maps to a different identity.
        """
        _check_pseudonym(pseudonym)
        payload_identity = _check_identity(identity)
        token = self._token(pseudonym)
        rel = f"{RECORDS}/{token}.rec"
        with locked(self._lock_file):
            if self._fs.exists(rel):
                existing = self._read_record(token, expect=pseudonym)
                if _canonical(existing) == payload_identity:
                    return False
                raise VaultConflictError(
                    f"pseudonym {pseudonym!r} already maps to a different identity in the vault"
                )
            plaintext = _canonical(
                {"pseudonym": pseudonym, "identity": json.loads(payload_identity)}
            )
            nonce, ct = _crypto.seal(self._keys.data, plaintext, self._aad(token))
            self._fs.write_atomic(rel, _MAGIC + bytes([_RECORD_VERSION]) + nonce + ct)
        return True

    def lookup(self, pseudonym: str, *, user: str | None = None) -> VaultLookup:
        """The identity sealed under ``pseudonym``, for a permitted ``user`` only.

        Parameters
        ----------
        pseudonym
            The study pseudonym.
        user
            Who asks (default: the ``user`` setting). Must be on :attr:`permitted_users`.

        Returns
        -------
        VaultLookup
            ``identity, event``; the caller records ``event`` in the lake's audit log.

        Raises
        ------
        VaultPermissionError
            ``user`` is not permitted (``exc.event`` is the "denied" event to audit).
        VaultRecordNotFoundError
            No record for ``pseudonym`` (``exc.event`` outcome "not-found").
        VaultTamperedError
            The record fails authentication.
        """
        who = user if user is not None else get_settings().user
        _check_pseudonym(pseudonym)
        if who not in self._header.permitted_users:
            raise VaultPermissionError(
                f"user {who!r} is not permitted to look up identities in this vault",
                event=self._event(pseudonym, who, "denied"),
            )
        token = self._token(pseudonym)
        if not self._fs.exists(f"{RECORDS}/{token}.rec"):
            raise VaultRecordNotFoundError(
                f"the vault holds no record for pseudonym {pseudonym!r}",
                event=self._event(pseudonym, who, "not-found"),
            )
        try:
            identity = self._read_record(token, expect=pseudonym)
        except VaultTamperedError as exc:
            exc.event = self._event(pseudonym, who, "tampered")
            raise
        return VaultLookup(identity, self._event(pseudonym, who, "granted"))

    def __contains__(self, pseudonym: object) -> bool:
        if not isinstance(pseudonym, str) or not _PSEUDONYM_RE.match(pseudonym):
            return False
        return bool(self._fs.exists(f"{RECORDS}/{self._token(pseudonym)}.rec"))

    def pseudonyms(self) -> list[str]:
        """Every pseudonym in the vault, sorted (decrypts each record's envelope)."""
        return sorted(self._open_any(token)[0] for token in self._tokens())

    def verify(self) -> VaultReport:
        """Decrypt and authenticate every record; report the ones that fail."""
        tokens = self._tokens()
        problems = []
        for token in tokens:
            try:
                self._open_any(token)
            except VaultError as exc:
                problems.append(f"{RECORDS}/{token}.rec: {exc}")
        for name in self._fs.ls(RECORDS):
            if not name.endswith(".rec") and not name.endswith(".tmp"):
                problems.append(f"{RECORDS}/{name}: not a vault record")
        return VaultReport(records=len(tokens), problems=tuple(problems))

    # -- keys and users ---------------------------------------------------------------
    def rotate(self, new_key: VaultKey | Passphrase) -> dict[str, Any]:
        """Rewrap the data key under ``new_key``; the old key no longer opens the vault.

        Records are not re-encrypted (they are sealed with the data key). Returns the
        audit-ready event (``action="vault.rotate"``, old and new key ids).
        """
        master, kdf = _master_for_new(new_key)
        with locked(self._lock_file):
            self._check_header_unchanged()
            old = self._header
            header = _Header(
                vault_id=old.vault_id,
                key_id=master.key_id,
                data_key_id=old.data_key_id,
                wrapped_data_key=_crypto.wrap_key(master._material(), self._keys.data),
                kdf=kdf,
                permitted_users=old.permitted_users,
                created=old.created,
            )
            self._write_header(header)
            self._header = header
        return {
            "action": "vault.rotate",
            "user": get_settings().user,
            "objects": [f"vault/{old.vault_id}"],
            "details": {"old_key_id": old.key_id, "new_key_id": master.key_id, "time": _now()},
        }

    def set_permitted_users(self, users: Iterable[str]) -> dict[str, Any]:
        """Replace the permitted-users list (re-MACs the header); returns the audit event."""
        new_users = tuple(_check_users(users))
        with locked(self._lock_file):
            self._check_header_unchanged()
            old = self._header
            header = _Header(**{**old.__dict__, "permitted_users": new_users})
            self._write_header(header)
            self._header = header
        return {
            "action": "vault.permissions",
            "user": get_settings().user,
            "objects": [f"vault/{old.vault_id}"],
            "details": {
                "added": sorted(set(new_users) - set(old.permitted_users)),
                "removed": sorted(set(old.permitted_users) - set(new_users)),
                "time": _now(),
            },
        }

    # -- internals --------------------------------------------------------------------
    def _token(self, pseudonym: str) -> str:
        return _crypto.mac(self._keys.names, pseudonym.encode("utf-8")).hex()[:_TOKEN_HEX]

    def _aad(self, token: str) -> bytes:
        h = self._header
        return b"\x00".join(
            [
                b"imagelake.vault.record.v1",
                h.vault_id.encode(),
                h.data_key_id.encode(),
                token.encode(),
            ]
        )

    def _tokens(self) -> list[str]:
        names = self._fs.ls(RECORDS)
        return [n[: -len(".rec")] for n in names if n.endswith(".rec") and not n.startswith(".")]

    def _open_any(self, token: str) -> tuple[str, dict[str, Any]]:
        """Decrypt record ``token``; return ``(pseudonym, identity)``."""
        where = f"{RECORDS}/{token}.rec"
        try:
            blob = self._fs.read_bytes(where)
        except FileNotFoundError:
            raise VaultRecordNotFoundError(f"record {where} disappeared") from None
        head = len(_MAGIC) + 1
        if (
            len(blob) < head + _crypto.NONCE_BYTES + 16
            or blob[: len(_MAGIC)] != _MAGIC
            or blob[len(_MAGIC)] != _RECORD_VERSION
        ):
            raise VaultTamperedError(f"record {where} is not a sealed vault record (corrupted)")
        nonce = blob[head : head + _crypto.NONCE_BYTES]
        ct = blob[head + _crypto.NONCE_BYTES :]
        try:
            plaintext = _crypto.open_sealed(self._keys.data, nonce, ct, self._aad(token))
        except _crypto.AuthFailed:
            raise VaultTamperedError(
                f"record {where} failed authentication (tampered, corrupted, or moved from "
                "another record or vault)"
            ) from None
        try:
            doc = json.loads(plaintext)
            pseudonym, identity = doc["pseudonym"], doc["identity"]
        except (ValueError, KeyError, TypeError):
            raise VaultTamperedError(f"record {where} has an unreadable payload") from None
        if (
            not isinstance(pseudonym, str)
            or not hmac.compare_digest(self._token(pseudonym), token)
            or not isinstance(identity, dict)
        ):
            raise VaultTamperedError(f"record {where} does not belong under its file name")
        return pseudonym, identity

    def _read_record(self, token: str, *, expect: str) -> dict[str, Any]:
        pseudonym, identity = self._open_any(token)
        if pseudonym != expect:  # only reachable on an HMAC collision
            raise VaultTamperedError(f"record {RECORDS}/{token}.rec holds another pseudonym")
        return identity

    def _event(self, pseudonym: str, user: str, outcome: str) -> dict[str, Any]:
        return {
            "action": "vault.lookup",
            "user": user,
            "objects": [f"pseudonym/{pseudonym}"],
            "details": {
                "pseudonym": pseudonym,
                "time": _now(),
                "outcome": outcome,
                "vault_id": self.vault_id,
                "key_id": self.key_id,
            },
        }

    def _write_header(self, header: _Header) -> None:
        body = header.body()
        body["mac"] = _crypto.mac(self._keys.header_mac, _canonical(body)).hex()
        self._fs.write_atomic(HEADER_FILE, json.dumps(body, indent=2, sort_keys=True) + "\n")

    def _check_header_unchanged(self) -> None:
        """Refuse to rewrite a header another process rotated since we opened it."""
        try:
            on_disk = json.loads(self._fs.read_bytes(HEADER_FILE))
        except (OSError, ValueError):
            raise VaultTamperedError(
                f"vault header of {self.url} is missing or unreadable"
            ) from None
        if not isinstance(on_disk, dict) or on_disk.get("key_id") != self._header.key_id:
            raise VaultKeyError(
                f"the vault at {self.url} was re-keyed by someone else since it was opened "
                f"(key id {self.key_id} -> {on_disk.get('key_id') if isinstance(on_disk, dict) else '?'}); "
                "open it again"
            )


def _master_for_new(key: VaultKey | Passphrase) -> tuple[VaultKey, dict[str, Any] | None]:
    """The master key and the header's ``kdf`` entry for a new vault or rotation."""
    if isinstance(key, Passphrase):
        salt = os.urandom(_SALT_BYTES)
        prm = key.params
        kdf = {"name": "scrypt", "salt": _b64(salt), "n": prm.n, "r": prm.r, "p": prm.p}
        return key.derive(salt, prm), kdf
    if isinstance(key, VaultKey):
        return key, None
    raise VaultKeyError("the vault key must be a VaultKey or a Passphrase")


def _refuse_lake(fs: LakeFS) -> None:
    lake = enclosing_lake(fs.fs, fs.root)
    if lake is not None:
        raise VaultLocationError(
            f"the vault {fs.url()} is inside the lake at {lake}; keep vaults outside any lake"
        )


def _read_header(fs: LakeFS, key: VaultKey | Passphrase) -> tuple[_Header, _Keys]:
    where = fs.url(HEADER_FILE)
    try:
        raw = fs.read_bytes(HEADER_FILE)
    except FileNotFoundError:
        raise VaultNotFoundError(f"no vault at {fs.url()} ({HEADER_FILE} is missing)") from None
    try:
        doc = json.loads(raw)
        if not isinstance(doc, dict) or set(doc) != _HEADER_FIELDS:
            raise ValueError("fields")
        if doc["format"] != FORMAT:
            raise ValueError("format")
        if doc["version"] != VERSION:
            raise VaultError(
                f"vault header {where} has version {doc['version']!r}; this imagelake reads "
                f"version {VERSION}"
            )
        users = doc["permitted_users"]
        if not isinstance(users, list) or not all(isinstance(u, str) for u in users):
            raise ValueError("users")
        kdf = doc["kdf"]
        header = _Header(
            vault_id=str(doc["vault_id"]),
            key_id=str(doc["key_id"]),
            data_key_id=str(doc["data_key_id"]),
            wrapped_data_key=_unb64(doc["wrapped_data_key"]),
            kdf=kdf,
            permitted_users=tuple(users),
            created=str(doc["created"]),
        )
        mac = bytes.fromhex(doc["mac"])
    except VaultError:
        raise
    except (ValueError, TypeError, KeyError, binascii.Error):
        raise VaultTamperedError(
            f"vault header {where} is not a well-formed vault header (tampered or corrupted)"
        ) from None

    master = _master_for_open(key, header, where)
    if master.key_id != header.key_id:
        raise VaultKeyError(
            f"wrong key or tampered vault header {where}: the vault is sealed with key id "
            f"{header.key_id}, the key given has id {master.key_id}"
        )
    try:
        dek = _crypto.unwrap_key(master._material(), header.wrapped_data_key)
    except _crypto.AuthFailed:
        raise VaultKeyError(
            f"wrong key or tampered vault header {where} (key id {header.key_id}): "
            "the data key does not unwrap"
        ) from None
    keys = _Keys(dek)
    expected = _crypto.mac(keys.header_mac, _canonical(header.body()))
    if keys.data_key_id != header.data_key_id or not hmac.compare_digest(expected, mac):
        raise VaultTamperedError(
            f"tampered vault header {where}: its MAC does not match (the permitted users, "
            "vault id or another field were edited)"
        )
    return header, keys


def _master_for_open(key: VaultKey | Passphrase, header: _Header, where: str) -> VaultKey:
    if isinstance(key, VaultKey):
        return key
    if not isinstance(key, Passphrase):
        raise VaultKeyError("the vault key must be a VaultKey or a Passphrase")
    kdf = header.kdf
    if kdf is None:
        raise VaultKeyError(
            f"the vault {where} is sealed with a key (id {header.key_id}), not a passphrase"
        )
    try:
        if kdf["name"] != "scrypt":
            raise ValueError
        params = ScryptParams(n=int(kdf["n"]), r=int(kdf["r"]), p=int(kdf["p"]))
        salt = _unb64(kdf["salt"])
    except (KeyError, TypeError, ValueError, binascii.Error, VaultKeyError):
        raise VaultTamperedError(
            f"tampered vault header {where}: its kdf parameters are malformed"
        ) from None
    if params.n > 2**20 or params.r > 32 or params.p > 16:  # refuse a memory bomb
        raise VaultTamperedError(
            f"tampered vault header {where}: scrypt parameters beyond the allowed maximum"
        )
    return key.derive(salt, params)
