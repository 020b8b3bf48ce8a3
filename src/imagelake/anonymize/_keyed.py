"""Keyed, repeatable replacements: UIDs, pseudonyms and per-subject date shifts.

All three are HMAC-SHA256 of the original value under the project's secret, each with its own
domain label, so the same input gives the same output in every run and every file (references
between objects stay consistent; a subject keeps one pseudonym) while nobody without the secret
can recompute or invert them.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import re
from functools import lru_cache

from imagelake.errors import ConfigError, InvalidInputError

__all__ = ["date_shift", "pseudonym", "shift_da", "shift_dt", "uid_remap"]

_MIN_SECRET = 16


def _mac(secret: bytes, domain: bytes, value: str) -> bytes:
    if not isinstance(secret, bytes | bytearray) or len(secret) < _MIN_SECRET:
        raise ConfigError(f"the de-identification secret must be at least {_MIN_SECRET} bytes")
    return hmac.new(
        bytes(secret), domain + b"\x00" + value.encode("utf-8"), hashlib.sha256
    ).digest()


def uid_remap(uid: str, secret: bytes) -> str:
    """Replace ``uid`` by a ``2.25.<int>`` UID derived from HMAC-SHA256 of it under ``secret``.

    The integer is the first 128 bits of the MAC (as a UUID-derived UID would be), so the result
    is at most 44 characters and a valid UID.
    """
    value = str(uid).strip().rstrip("\x00")
    if not value:
        return ""
    return "2.25." + str(int.from_bytes(_mac(secret, b"uid", value)[:16], "big"))


def pseudonym(subject_key: str, secret: bytes, prefix: str = "SUBJ-", length: int = 12) -> str:
    """The subject's pseudonym: ``prefix`` + ``length`` base32 characters of the keyed hash.

    ``length`` is at most 52 (a SHA-256 in base32). The result is upper case, so it also fits a
    Patient ID (LO) and a Patient's Name (PN) without escaping.
    """
    if not subject_key:
        raise InvalidInputError("a pseudonym needs a non-empty subject key")
    if not 4 <= length <= 52:
        raise ConfigError(f"pseudonym length must be between 4 and 52, not {length}")
    code = base64.b32encode(_mac(secret, b"pseudonym", subject_key)).decode("ascii")
    return f"{prefix}{code[:length]}"


def date_shift(subject_key: str, secret: bytes, days: tuple[int, int] = (-365, -1)) -> int:
    """The subject's date shift in days, drawn by keyed hash from the inclusive range ``days``.

    Every date of one subject moves by the same number of days, so intervals are kept.
    """
    low, high = days
    if low > high:
        raise ConfigError(f"date shift range {days!r} has its low end above its high end")
    if not subject_key:
        raise InvalidInputError("a date shift needs a non-empty subject key")
    draw = int.from_bytes(_mac(secret, b"date-shift", subject_key)[:8], "big")
    return low + draw % (high - low + 1)


def shift_da(value: str, days: int) -> str:
    """Shift a DA value (``YYYYMMDD``; the old ``YYYY.MM.DD`` accepted) by ``days``."""
    if type(value) is str:  # memoized: a study repeats its dates in every file
        return _shift_da_memo(value, days)
    return _shift_da(value, days)


def _shift_da(value: str, days: int) -> str:
    text = value.strip().replace(".", "")
    try:
        day = dt.datetime.strptime(text, "%Y%m%d").date()
        return (day + dt.timedelta(days=days)).strftime("%Y%m%d")
    except (ValueError, OverflowError):
        raise InvalidInputError("a DA value is not a valid date (YYYYMMDD)") from None


_DT = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(.*)$")


def shift_dt(value: str, days: int) -> str:
    """Shift the date part of a DT value by ``days``; time, fraction and offset are kept.

    A DT with only a year or a year and month keeps its precision (the shift is applied to the
    first day of the period).
    """
    if type(value) is str:
        return _shift_dt_memo(value, days)
    return _shift_dt(value, days)


def _shift_dt(value: str, days: int) -> str:
    match = _DT.match(value.strip())
    if match is None:
        raise InvalidInputError("a DT value does not start with a year")
    year, month, day, rest = match.groups()
    try:
        base = dt.date(int(year), int(month or 1), int(day or 1)) + dt.timedelta(days=days)
    except (ValueError, OverflowError):
        raise InvalidInputError("a DT value is not a valid date-time") from None
    head = f"{base.year:04d}"
    if month:
        head += f"{base.month:02d}"
    if day:
        head += f"{base.day:02d}"
    return head + rest


# Errors (InvalidInputError) are not memoized: lru_cache re-runs the call and it raises again.
_shift_da_memo = lru_cache(maxsize=8192)(_shift_da)
_shift_dt_memo = lru_cache(maxsize=8192)(_shift_dt)
