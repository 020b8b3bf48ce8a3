"""A project's de-identification policy, usually read from YAML.

Example::

    name: trial-42
    profile: basic
    options: [retain_long_modified_dates, retain_patient_characteristics]
    keep: [StudyDescription, "(0018,0050)"]
    remove: [ProtocolName]
    safe_private:
      - {creator: "GEMS_PARM_01", tag: "0043,xx39"}
    pseudonym_prefix: "T42-"
    date_shift_days: [-730, -365]
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydicom.datadict import tag_for_keyword

from imagelake.anonymize._profiles import profiles
from imagelake.anonymize._table import Option
from imagelake.errors import ConfigError

__all__ = ["Policy", "SafePrivate", "load_policy"]


@dataclass(frozen=True)
class SafePrivate:
    """A private attribute known to be safe: its private creator, group and element byte."""

    creator: str
    group: int
    element: int  # the low byte ``ee`` of ``(gggg,xxee)``


@dataclass(frozen=True)
class Policy:
    """What to de-identify and how.

    Attributes
    ----------
    name
        Recorded in DeidentificationMethod.
    profile
        Name of a registered :class:`~imagelake.anonymize.Profile`.
    options
        Extra Table E.1-1 options (on top of the profile's).
    keep, remove
        Attribute tags kept as they are / removed, overriding the table (any depth).
    safe_private
        Private attributes kept under the Retain Safe Private option.
    pseudonymize
        Replace PatientID and PatientName by the subject's pseudonym (else Basic Profile: empty).
    pseudonym_prefix, pseudonym_length
        Shape of the pseudonym (prefix + base32 characters).
    date_shift_days
        Inclusive range of the per-subject shift for the Modified Dates option.
    """

    name: str = "default"
    profile: str = "basic"
    options: frozenset[Option] = field(default_factory=frozenset)
    keep: frozenset[int] = field(default_factory=frozenset)
    remove: frozenset[int] = field(default_factory=frozenset)
    safe_private: frozenset[SafePrivate] = field(default_factory=frozenset)
    pseudonymize: bool = True
    pseudonym_prefix: str = "SUBJ-"
    pseudonym_length: int = 12
    date_shift_days: tuple[int, int] = (-365, -1)

    def effective_options(self) -> frozenset[Option]:
        """The profile's options together with the policy's own."""
        return profiles.get(self.profile).options | self.options


_TAG = re.compile(r"^\(?\s*([0-9A-Fa-f]{4})\s*,?\s*([0-9A-Fa-f]{4})\s*\)?$")
_PRIVATE = re.compile(r"^\(?\s*([0-9A-Fa-f]{4})\s*,\s*[xX]{2}([0-9A-Fa-f]{2})\s*\)?$")
_KEYS = {
    "name",
    "profile",
    "options",
    "keep",
    "remove",
    "safe_private",
    "pseudonymize",
    "pseudonym_prefix",
    "pseudonym_length",
    "date_shift_days",
}


def _tag(value: object) -> int:
    if isinstance(value, int):
        return value
    text = str(value).strip()
    match = _TAG.match(text)
    if match:
        return int(match.group(1) + match.group(2), 16)
    tag = tag_for_keyword(text)
    if tag is None:
        raise ConfigError(
            f"policy names an unknown attribute {text!r} (use a keyword or (gggg,eeee))"
        )
    return tag


def _safe_private(entry: object) -> SafePrivate:
    if not isinstance(entry, Mapping) or not {"creator", "tag"} <= set(entry):
        raise ConfigError("each safe_private entry needs 'creator' and 'tag' ('gggg,xxee')")
    match = _PRIVATE.match(str(entry["tag"]))
    if match is None or not int(match.group(1), 16) & 1:
        raise ConfigError(
            f"safe_private tag {entry['tag']!r} is not a private 'gggg,xxee' (odd group)"
        )
    return SafePrivate(
        str(entry["creator"]).strip(), int(match.group(1), 16), int(match.group(2), 16)
    )


def _tags(values: object, key: str) -> frozenset[int]:
    if values is None:
        return frozenset()
    if not isinstance(values, Iterable) or isinstance(values, str | bytes):
        raise ConfigError(f"policy key {key!r} must be a list")
    return frozenset(_tag(v) for v in values)


def load_policy(source: str | Path | Mapping[str, Any] | None = None) -> Policy:
    """Read a policy from a YAML file, a YAML string or a mapping; ``None`` gives the default.

    Raises
    ------
    ConfigError
        An unknown key, option, attribute or profile, or a malformed value.
    """
    if source is None:
        return Policy()
    if isinstance(source, Mapping):
        data: object = dict(source)
    else:
        path = Path(source)
        try:
            text = path.read_text("utf-8") if path.suffix in {".yaml", ".yml"} else str(source)
            data = yaml.safe_load(text)
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(
                f"cannot read de-identification policy {str(source)!r}: {exc}"
            ) from exc
    if not isinstance(data, Mapping):
        raise ConfigError("a de-identification policy must be a mapping of settings")
    unknown = set(data) - _KEYS
    if unknown:
        raise ConfigError(
            f"unknown policy keys {sorted(unknown)}; valid keys: {', '.join(sorted(_KEYS))}"
        )
    profile = str(data.get("profile", "basic"))
    if profile not in profiles:
        raise ConfigError(f"unknown profile {profile!r}; registered: {', '.join(profiles.names())}")
    options = frozenset(Option.parse(o) for o in data.get("options") or ())
    safe = frozenset(_safe_private(e) for e in data.get("safe_private") or ())
    if safe and Option.RETAIN_SAFE_PRIVATE not in options | profiles.get(profile).options:
        raise ConfigError("safe_private is listed but option retain_safe_private is not chosen")
    shift = data.get("date_shift_days", (-365, -1))
    if (
        not isinstance(shift, list | tuple)
        or len(shift) != 2
        or not all(isinstance(d, int) for d in shift)
        or shift[0] > shift[1]
    ):
        raise ConfigError("date_shift_days must be two integers [low, high] with low <= high")
    length = data.get("pseudonym_length", 12)
    if not isinstance(length, int) or not 4 <= length <= 52:
        raise ConfigError("pseudonym_length must be an integer between 4 and 52")
    prefix = str(data.get("pseudonym_prefix", "SUBJ-"))
    if len(prefix) + length > 64 or not re.fullmatch(r"[A-Za-z0-9_.\- ]*", prefix):
        raise ConfigError("pseudonym_prefix must be plain letters/digits/-_. and fit 64 characters")
    return Policy(
        name=str(data.get("name", "default")),
        profile=profile,
        options=options,
        keep=_tags(data.get("keep"), "keep"),
        remove=_tags(data.get("remove"), "remove"),
        safe_private=safe,
        pseudonymize=bool(data.get("pseudonymize", True)),
        pseudonym_prefix=prefix,
        pseudonym_length=length,
        date_shift_days=(int(shift[0]), int(shift[1])),
    )
