"""Opaque raw files: anything nobody can parse yet, archived byte-exact, described by people.

A file is accepted only when it is *described*, either

- by a **sidecar** next to it, ``<file name>.imagelake.yaml`` or ``<file name>.imagelake.json``
  (``scan.RDA`` → ``scan.RDA.imagelake.yaml``), a mapping of the keys below; or
- by a **site rule** in the YAML file named by the ``raw_rules`` setting (environment
  ``IMAGELAKE_RAW_RULES``): a list of mappings (or ``{"rules": [...]}``), each with exactly
  one of ``pattern`` (fnmatch on the file name, case-insensitive) or ``regex`` (``re.search``
  on the file name, case-insensitive); the first matching rule wins.

Keys (all optional but ``label``)::

    label: siemens-rda              # what kind of file this is (required)
    modality: MR
    manufacturer: SIEMENS
    model: Prisma
    software_version: syngo MR XA30
    device_serial: "166123"
    station_name: MRC40123
    institution: Example Hospital
    acquired_at: 2024-03-01T10:22:05   # ISO local time
    study_instance_uid: 1.2.3...
    frame_of_reference_uid: 1.2.3...
    series_instance_uids: [1.2.3..., ...]
    protocol_name: svs_se_30
    sequence_name: svs_se
    notes: free text

A sidecar wins over the rules. Unknown keys or wrong types raise :class:`RawFormatError`
(sidecar) or :class:`ConfigError` (rules file) naming the file and the key. The rules are
re-read whenever the setting or the file's modification time changes. Discovery must skip
sidecars as inputs: see :func:`is_sidecar`.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from imagelake.config import get_settings
from imagelake.errors import ConfigError, ImagelakeError
from imagelake.formats._base import RawContent, RawFormat, RawFormatError, RawMeta

__all__ = ["SIDECAR_SUFFIXES", "OpaqueFormat", "Rule", "is_sidecar", "load_rules", "sidecar_for"]

#: sidecar file-name suffixes, tried in this order
SIDECAR_SUFFIXES = (".imagelake.yaml", ".imagelake.json")

_STR_KEYS = (
    "label", "modality", "manufacturer", "model", "software_version", "device_serial",
    "station_name", "institution", "acquired_at", "study_instance_uid",
    "frame_of_reference_uid", "protocol_name", "sequence_name", "notes",
)  # fmt: skip
_DESCRIPTION_KEYS = frozenset((*_STR_KEYS, "series_instance_uids"))
_RULE_KEYS = _DESCRIPTION_KEYS | {"pattern", "regex"}
_META_FIELDS = (
    "modality", "manufacturer", "model", "software_version", "device_serial", "station_name",
    "institution", "acquired_at", "study_instance_uid", "frame_of_reference_uid",
    "protocol_name", "sequence_name",
)  # fmt: skip


def is_sidecar(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is an imagelake sidecar (a description, never an input itself)."""
    return os.path.basename(os.fspath(path)).lower().endswith(SIDECAR_SUFFIXES)


def sidecar_for(path: str | os.PathLike[str]) -> Path | None:
    """The sidecar describing ``path`` (``<name>.imagelake.yaml`` or ``.json``), or ``None``."""
    p = Path(path)
    if is_sidecar(p):
        return None
    for suffix in SIDECAR_SUFFIXES:
        candidate = p.with_name(p.name + suffix)
        if candidate.is_file():
            return candidate
    return None


def _check_description(
    data: Any, where: str, allowed: frozenset[str], error: type[ImagelakeError]
) -> dict[str, Any]:
    """Validate one description mapping; return it with normalised values."""
    if not isinstance(data, Mapping):
        raise error(f"{where}: expected a mapping of keys, got {type(data).__name__}")
    unknown = sorted(str(k) for k in data if k not in allowed)
    if unknown:
        raise error(f"{where}: unknown key(s) {unknown}; valid keys: {sorted(allowed)}")
    out: dict[str, Any] = {}
    for key, value in data.items():
        if value is None:
            continue
        if key == "series_instance_uids":
            values = [value] if isinstance(value, str) else value
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise error(f"{where}: key 'series_instance_uids' must be a list of strings")
            out[key] = tuple(v.strip() for v in values)
        elif key == "acquired_at":
            if isinstance(value, datetime):
                value = value.replace(tzinfo=None).isoformat(timespec="seconds")
            elif isinstance(value, date):
                value = f"{value.isoformat()}T00:00:00"
            if not isinstance(value, str):
                raise error(f"{where}: key 'acquired_at' must be an ISO date-time string")
            try:
                parsed = datetime.fromisoformat(value.strip())
            except ValueError:
                raise error(
                    f"{where}: key 'acquired_at' is not an ISO date-time: {value!r}"
                ) from None
            out[key] = parsed.replace(tzinfo=None).isoformat(timespec="seconds")
        elif key == "device_serial" and isinstance(value, int) and not isinstance(value, bool):
            out[key] = str(value)
        elif isinstance(value, str):
            out[key] = value.strip()
        else:
            raise error(f"{where}: key {key!r} must be a string, got {type(value).__name__}")
    if not out.get("label"):
        raise error(f"{where}: key 'label' is required (what kind of file this is)")
    return out


def _parse_text(path: Path, text: str, error: type[ImagelakeError]) -> Any:
    if path.name.lower().endswith(".json"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise error(f"{path}: not valid JSON: {exc}") from exc
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {exc}") from exc


@dataclass(frozen=True)
class Rule:
    """One site rule: a file-name pattern or regex and the description it gives."""

    pattern: str | None
    regex: str | None
    description: Mapping[str, Any]

    def matches(self, name: str) -> bool:
        if self.pattern is not None:
            return fnmatch.fnmatch(name.lower(), self.pattern.lower())
        assert self.regex is not None
        return re.search(self.regex, name, re.IGNORECASE) is not None

    @property
    def key(self) -> str:
        return self.pattern if self.pattern is not None else f"regex:{self.regex}"


def load_rules(path: str | os.PathLike[str]) -> tuple[Rule, ...]:
    """Read and validate a site rules file (YAML); :class:`ConfigError` names what is wrong."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"raw_rules file {p} cannot be read: {exc}") from exc
    data = _parse_text(p, text, ConfigError)
    if isinstance(data, Mapping) and set(data) == {"rules"}:
        data = data["rules"]
    if data is None:
        return ()
    if not isinstance(data, list):
        raise ConfigError(f"{p}: expected a list of rules, got {type(data).__name__}")
    rules: list[Rule] = []
    for i, item in enumerate(data):
        where = f"{p}: rule {i + 1}"
        desc = _check_description(item, where, _RULE_KEYS, ConfigError)
        pattern, regex = desc.pop("pattern", None), desc.pop("regex", None)
        if (pattern is None) == (regex is None):
            raise ConfigError(f"{where}: give exactly one of 'pattern' or 'regex'")
        if regex is not None:
            try:
                re.compile(regex)
            except re.error as exc:
                raise ConfigError(f"{where}: key 'regex' does not compile: {exc}") from exc
        rules.append(Rule(pattern=pattern, regex=regex, description=desc))
    return tuple(rules)


def read_sidecar(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a sidecar; :class:`RawFormatError` names the file and key."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RawFormatError(f"sidecar {p} cannot be read: {exc}") from exc
    data = _parse_text(p, text, RawFormatError)
    return _check_description(data, f"sidecar {p}", _DESCRIPTION_KEYS, RawFormatError)


class OpaqueFormat(RawFormat):
    """Any file nobody can parse yet, described by a sidecar or a site rule; archived as is."""

    name = "opaque"
    description = "Unparsed raw file described by a sidecar or a site rule (archived byte-exact)"
    modality = None
    readable = False
    priority = 1000

    def __init__(self) -> None:
        self._cache: tuple[tuple[str, int, int], tuple[Rule, ...]] | None = None

    # -- rules ------------------------------------------------------------------------------
    def rules(self) -> tuple[Rule, ...]:
        """The current site rules (re-read when the setting or the file changes)."""
        setting = get_settings().raw_rules
        if not setting:
            return ()
        path = Path(setting).expanduser()
        try:
            st = path.stat()
        except OSError as exc:
            raise ConfigError(
                f"raw_rules file {path} does not exist or cannot be read: {exc}"
            ) from exc
        key = (os.fspath(path.resolve()), st.st_mtime_ns, st.st_size)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        rules = load_rules(path)
        self._cache = (key, rules)
        return rules

    def describe(self, path: str | os.PathLike[str]) -> tuple[dict[str, Any], str] | None:
        """The description of ``path`` and where it comes from, or ``None`` if undescribed."""
        if is_sidecar(path):
            return None
        sidecar = sidecar_for(path)
        if sidecar is not None:
            return read_sidecar(sidecar), f"sidecar:{sidecar.name}"
        name = os.path.basename(os.fspath(path))
        for rule in self.rules():
            if rule.matches(name):
                return dict(rule.description), f"rule:{rule.key}"
        return None

    # -- format API -------------------------------------------------------------------------
    def guess_can_open(self, path: str | os.PathLike[str], head: bytes | None = None) -> bool:
        if is_sidecar(path) or not os.path.isfile(os.fspath(path)):
            return False
        if sidecar_for(path) is not None:
            return True
        name = os.path.basename(os.fspath(path))
        return any(rule.matches(name) for rule in self.rules())

    def open(self, path: str | os.PathLike[str]) -> RawContent:
        p = os.fspath(path)
        if not os.path.isfile(p):
            raise FileNotFoundError(f"{p}: no such file")
        if is_sidecar(p):
            raise RawFormatError(f"{p}: is an imagelake sidecar, not a raw file")
        found = self.describe(p)
        if found is None:
            raise RawFormatError(f"{p}: not described by a sidecar or a site rule (raw_rules)")
        desc, source = found
        extra: dict[str, Any] = {"label": desc["label"], "described_by": source}
        if desc.get("notes"):
            extra["notes"] = desc["notes"]
        extra["size"] = os.path.getsize(p)
        fields: dict[str, Any] = {k: desc.get(k) for k in _META_FIELDS}
        meta = RawMeta(
            **fields,
            series_instance_uids=tuple(desc.get("series_instance_uids", ())),
            extra=extra,
        )
        return RawContent(format=self.name, meta=meta, arrays={}, members=(p,))
