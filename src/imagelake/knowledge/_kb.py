"""The knowledge base file: scanner entries, where the file is, loading and validating it."""

from __future__ import annotations

import importlib.resources
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from imagelake.config import get_settings
from imagelake.errors import ConfigError
from imagelake.knowledge._normalize import normalize_version, scanner_key

__all__ = [
    "FORMAT_VERSION",
    "KnowledgeBase",
    "ScannerEntry",
    "VersionEntry",
    "default_path",
    "shipped_path",
]

#: The ``version:`` of the knowledge-base file format this module reads and writes.
FORMAT_VERSION = 1

_SCANNER_FIELDS = ("manufacturer", "model", "modality", "raw_formats", "software_versions", "notes")
_VERSION_FIELDS = ("version", "emulator", "raw_formats")
_EMULATOR = re.compile(r"^[^@\s]+@[^@\s]+$")
_HEADER = """\
# imagelake knowledge base of known scanners (format version {version}), exported from a
# registry. The matching rules are in the header of imagelake's own catalog/scanners.yaml.
"""


@dataclass(frozen=True)
class VersionEntry:
    """A software version of a scanner that we have seen and trust.

    Attributes
    ----------
    version
        The SoftwareVersions value, as the scanner writes it.
    emulator
        ``id@version`` of the emulator VM that reconstructs this version's raw files.
    raw_formats
        Raw formats this version writes, beyond the scanner's own list.
    """

    version: str
    emulator: str | None = None
    raw_formats: tuple[str, ...] = ()


@dataclass(frozen=True)
class ScannerEntry:
    """A known scanner model.

    Attributes
    ----------
    manufacturer, model
        As the scanner writes Manufacturer and ManufacturerModelName.
    modality
        The DICOM modality it produces (CT, MR...).
    raw_formats
        Formats of raw files it writes (names in :mod:`imagelake.formats`).
    software_versions
        The versions we know. With none listed, any version is accepted.
    notes
        Free text.
    source
        Where the entry came from: ``"catalog"`` (the knowledge-base file) or ``"cli"``
        (added to one registry by hand; :func:`~imagelake.knowledge.sync` never removes it).
    """

    manufacturer: str
    model: str
    modality: str | None = None
    raw_formats: tuple[str, ...] = ()
    software_versions: tuple[VersionEntry, ...] = ()
    notes: str | None = None
    source: str = "catalog"

    @property
    def key(self) -> str:
        """The normalised ``manufacturer|model`` this entry is matched on."""
        return scanner_key(self.manufacturer, self.model)

    def to_dict(self) -> dict[str, Any]:
        """The entry as it is written in the YAML file (empty fields left out)."""
        out: dict[str, Any] = {"manufacturer": self.manufacturer, "model": self.model}
        if self.modality:
            out["modality"] = self.modality
        if self.raw_formats:
            out["raw_formats"] = list(self.raw_formats)
        if self.software_versions:
            out["software_versions"] = [_version_dict(v) for v in self.software_versions]
        if self.notes:
            out["notes"] = self.notes
        return out


def _version_dict(entry: VersionEntry) -> dict[str, Any]:
    out: dict[str, Any] = {"version": entry.version}
    if entry.emulator:
        out["emulator"] = entry.emulator
    if entry.raw_formats:
        out["raw_formats"] = list(entry.raw_formats)
    return out


def check_emulator(emulator: str | None) -> str | None:
    """``emulator`` if it is a well-formed ``id@version`` (or None); raises ConfigError."""
    if emulator is not None and not _EMULATOR.match(emulator):
        raise ConfigError(f"emulator {emulator!r} must look like id@version, e.g. siemens-ct@va50")
    return emulator


def shipped_path() -> Path:
    """The knowledge base shipped with imagelake.

    In a wheel it is ``imagelake/_data/scanners.yaml`` (pyproject force-includes it); in a
    source checkout or an editable install it is the repository's ``catalog/scanners.yaml``.
    """
    packaged = Path(str(importlib.resources.files("imagelake"))) / "_data" / "scanners.yaml"
    if packaged.is_file():
        return packaged
    # src/imagelake/knowledge/_kb.py -> the checkout's root is three folders above the package
    return Path(__file__).resolve().parents[3] / "catalog" / "scanners.yaml"


def default_path() -> Path:
    """The knowledge base in use: ``Settings.knowledge_base`` if set, else :func:`shipped_path`."""
    configured = get_settings().knowledge_base
    return Path(configured).expanduser() if configured else shipped_path()


class _Validator:
    """Turns parsed YAML into entries, with errors that name the file and the entry."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.source}: {where}: {problem}")

    def text(self, where: str, name: str, value: Any, *, required: bool = False) -> str | None:
        if value is None or value == "":
            if required:
                raise self.fail(where, f"{name!r} is required and must not be empty")
            return None
        if isinstance(value, int | float):  # bool too: YAML reads yes/no as booleans
            raise self.fail(
                where, f'{name!r} is the number {value!r}; quote it so it stays text: "{value}"'
            )
        if not isinstance(value, str):
            raise self.fail(where, f"{name!r} must be text, got {type(value).__name__}")
        return value.strip() or None

    def text_list(self, where: str, name: str, value: Any) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self.fail(where, f"{name!r} must be a list, e.g. [dicom-ct-pd]")
        out = tuple(
            self.text(where, f"{name}[{i}]", v, required=True) or "" for i, v in enumerate(value)
        )
        return out

    def fields(self, where: str, data: Any, allowed: Sequence[str]) -> Mapping[str, Any]:
        if not isinstance(data, dict):
            raise self.fail(where, f"must be a mapping with keys {list(allowed)}")
        unknown = sorted(set(data) - set(allowed), key=str)
        if unknown:
            raise self.fail(where, f"unknown key(s) {unknown}; valid: {list(allowed)}")
        return data

    def version(self, where: str, data: Any) -> VersionEntry:
        data = self.fields(where, data, _VERSION_FIELDS)
        version = self.text(where, "version", data.get("version"), required=True) or ""
        emulator = self.text(where, "emulator", data.get("emulator"))
        try:
            check_emulator(emulator)
        except ConfigError as exc:
            raise self.fail(where, str(exc)) from None
        return VersionEntry(
            version, emulator, self.text_list(where, "raw_formats", data.get("raw_formats"))
        )

    def scanner(self, index: int, data: Any) -> ScannerEntry:
        where = f"scanners[{index}]"
        if isinstance(data, dict) and data.get("manufacturer") and data.get("model"):
            where += f" ({data['manufacturer']} {data['model']})"
        data = self.fields(where, data, _SCANNER_FIELDS)
        manufacturer = self.text(where, "manufacturer", data.get("manufacturer"), required=True)
        model = self.text(where, "model", data.get("model"), required=True)
        raw_versions = data.get("software_versions")
        raw_versions = [] if raw_versions is None else raw_versions
        if not isinstance(raw_versions, list):
            raise self.fail(where, "'software_versions' must be a list of {version: ...} mappings")
        versions = tuple(
            self.version(f"{where} software_versions[{i}]", v) for i, v in enumerate(raw_versions)
        )
        seen: dict[str, str] = {}
        for v in versions:
            norm = normalize_version(v.version)
            if norm in seen:
                raise self.fail(where, f"software version {v.version!r} is listed twice")
            seen[norm] = v.version
        return ScannerEntry(
            manufacturer=manufacturer or "",
            model=model or "",
            modality=self.text(where, "modality", data.get("modality")),
            raw_formats=self.text_list(where, "raw_formats", data.get("raw_formats")),
            software_versions=versions,
            notes=self.text(where, "notes", data.get("notes")),
        )

    def document(self, data: Any) -> tuple[ScannerEntry, ...]:
        data = self.fields("top level", data, ("version", "scanners"))
        if data.get("version") != FORMAT_VERSION:
            raise self.fail(
                "top level",
                f"'version' is {data.get('version')!r}; this imagelake reads version {FORMAT_VERSION}",
            )
        raw = data.get("scanners")
        raw = [] if raw is None else raw
        if not isinstance(raw, list):
            raise self.fail("top level", "'scanners' must be a list of scanner entries")
        entries = tuple(self.scanner(i, item) for i, item in enumerate(raw))
        first: dict[str, int] = {}
        for i, entry in enumerate(entries):
            if entry.key in first:
                raise self.fail(
                    f"scanners[{i}] ({entry.manufacturer} {entry.model})",
                    f"same scanner as scanners[{first[entry.key]}] under the matching rules "
                    "(case and punctuation are ignored); merge the two entries",
                )
            first[entry.key] = i
        return entries


@dataclass(frozen=True)
class KnowledgeBase:
    """The known scanners, as read from a knowledge-base YAML file.

    Attributes
    ----------
    scanners
        The entries, in file order.
    source
        Where they were read from (for messages).
    """

    scanners: tuple[ScannerEntry, ...] = ()
    source: str = "<memory>"

    @classmethod
    def load(cls, path: str | Path | None = None) -> KnowledgeBase:
        """Read and validate a knowledge-base file.

        Parameters
        ----------
        path
            The YAML file; ``None`` means :func:`default_path` (``Settings.knowledge_base``,
            else the file shipped with imagelake).

        Raises
        ------
        ConfigError
            The file is missing, is not YAML, or an entry is invalid; the message names
            the file and the entry.
        """
        target = Path(path) if path is not None else default_path()
        try:
            text = target.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"knowledge base {target} does not exist") from None
        except OSError as exc:
            raise ConfigError(f"cannot read knowledge base {target}: {exc}") from exc
        return cls.from_yaml(text, source=str(target))

    @classmethod
    def from_yaml(cls, text: str, *, source: str = "<string>") -> KnowledgeBase:
        """Parse and validate knowledge-base YAML (see :meth:`load`)."""
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source} is not valid YAML: {exc}") from exc
        return cls(_Validator(source).document(data), source)

    def to_yaml(self) -> str:
        """The entries as knowledge-base YAML that :meth:`from_yaml` reads back."""
        body = yaml.safe_dump(
            {"version": FORMAT_VERSION, "scanners": [e.to_dict() for e in self.scanners]},
            sort_keys=False,
            allow_unicode=True,
            default_flow_style=False,
            width=100,
        )
        return _HEADER.format(version=FORMAT_VERSION) + body

    def find(self, manufacturer: str, model: str) -> ScannerEntry | None:
        """The entry for this scanner under the matching rules, if any."""
        key = scanner_key(manufacturer, model)
        return next((e for e in self.scanners if e.key == key), None)

    def __iter__(self) -> Iterator[ScannerEntry]:
        return iter(self.scanners)

    def __len__(self) -> int:
        return len(self.scanners)
