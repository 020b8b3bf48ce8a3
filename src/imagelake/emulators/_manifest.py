"""Emulator manifests: one YAML file per emulator version, and the registry of them.

A manifest (``emulators/<id>@<version>.yaml`` in the repository) says what an emulator
reconstructs (scanners, software versions, raw formats and their revisions), which image
files it boots (kept in an :class:`~imagelake.emulators.ImageStore`, never in git), what
machine it needs and how jobs reach it. :class:`EmulatorRegistry` loads every manifest of a
folder plus the ones third parties publish under the entry-point group
``imagelake.emulators``, and picks the emulator for a raw file (``"auto"``) or by name
(``"id@version"``).
"""

from __future__ import annotations

import importlib.resources
import re
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import yaml

from imagelake._registry import _load_target
from imagelake.config import get_settings
from imagelake.errors import ConfigError, PluginNotFoundError
from imagelake.knowledge import normalize_name, normalize_version

__all__ = [
    "ENTRY_POINT_GROUP",
    "EmulatorManifest",
    "EmulatorRegistry",
    "ImageSpec",
    "JobSpec",
    "MachineSpec",
    "ScannerMatch",
    "default_manifest_dir",
    "load_manifest",
    "manifest_from_mapping",
    "parse_ref",
]

#: Entry-point group through which third parties publish manifests (see :class:`EmulatorRegistry`).
ENTRY_POINT_GROUP = "imagelake.emulators"

_ID = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_BOOTS = ("direct-kernel", "disk")
_FIRMWARES = ("bios", "uefi")
_TRANSPORTS = ("disk-ext4", "disk-fat")
_PROGRESS = ("none", "virtio-serial")
_ARCHES = ("x86_64",)
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ScannerMatch:
    """Scanners whose raw files an emulator reconstructs (names compared normalised)."""

    manufacturer: str
    model: str
    software_versions: tuple[str, ...]


@dataclass(frozen=True)
class ImageSpec:
    """The image files an emulator boots.

    Attributes
    ----------
    boot
        ``direct-kernel`` (libvirt loads ``kernel``/``initrd``) or ``disk`` (a bootloader
        inside the disk image).
    files
        Role (``disk``, ``kernel``, ``initrd``...) -> file name inside
        ``<image store>/<id>/<version>/``.
    sha256
        Role -> hex digest. Empty for images the project builds: the store's
        ``digests.json`` (written once, at registration) is used instead.
    build
        How the project builds the image, if it does (a path in the repository).
    """

    boot: str
    files: Mapping[str, str]
    sha256: Mapping[str, str] = field(default_factory=dict)
    build: str | None = None


@dataclass(frozen=True)
class MachineSpec:
    """The virtual machine an emulator needs."""

    arch: str = "x86_64"
    memory_mib: int = 256
    vcpus: int = 1
    firmware: str = "bios"
    cmdline: str | None = None
    guest_os: str | None = None


@dataclass(frozen=True)
class JobSpec:
    """How a job reaches the guest: the job-disk file system, the time limit, progress."""

    transport: str = "disk-ext4"
    timeout_s: float = 300.0
    progress: str = "none"


@dataclass(frozen=True)
class EmulatorManifest:
    """One emulator version, as its manifest describes it.

    Attributes
    ----------
    id, version
        Together the emulator's name, ``id@version`` (:attr:`ref`); the manifest file is
        ``<id>@<version>.yaml``.
    source
        The file the manifest was read from, for messages (``None`` when built in code).
    """

    id: str
    version: str
    vendor: str
    description: str
    scanners: tuple[ScannerMatch, ...]
    raw_formats: tuple[str, ...]
    format_revisions: Mapping[str, tuple[int, ...]]
    image: ImageSpec
    machine: MachineSpec
    job: JobSpec
    licence: str
    source: str | None = None

    @property
    def ref(self) -> str:
        """``id@version``, the name the knowledge base and the CLI use."""
        return f"{self.id}@{self.version}"

    def accepts(
        self,
        *,
        manufacturer: str | None,
        model: str | None,
        software_version: str | None,
        raw_format: str | None,
        revision: int | None = None,
    ) -> bool:
        """Whether this emulator reconstructs a raw file with this scanner and format.

        Manufacturer and model are compared with :func:`~imagelake.knowledge.normalize_name`,
        the software version with :func:`~imagelake.knowledge.normalize_version`. A format
        without a ``format_revisions`` entry accepts every revision.
        """
        if raw_format is not None and raw_format not in self.raw_formats:
            return False
        revisions = self.format_revisions.get(raw_format or "")
        if revision is not None and revisions is not None and revision not in revisions:
            return False
        wanted_version = normalize_version(software_version)
        for scanner in self.scanners:
            if normalize_name(scanner.manufacturer) != normalize_name(manufacturer):
                continue
            if normalize_name(scanner.model) != normalize_name(model):
                continue
            if wanted_version in {normalize_version(v) for v in scanner.software_versions}:
                return True
        return False


def parse_ref(ref: str) -> tuple[str, str]:
    """Split ``"id@version"``; raises :class:`ConfigError` naming the expected form."""
    emulator_id, sep, version = ref.partition("@")
    if not sep or not _ID.match(emulator_id) or not _VERSION.match(version):
        raise ConfigError(
            f"emulator {ref!r} must look like id@version (id: lower-case letters, digits and "
            "dashes), e.g. reference-recon@1.0"
        )
    return emulator_id, version


# -- validation ---------------------------------------------------------------------------------


class _Fields:
    """Reads one mapping of a manifest; every error names the file and the dotted field."""

    def __init__(self, source: str, data: Any, prefix: str = "") -> None:
        self.source = source
        self.prefix = prefix
        if not isinstance(data, Mapping):
            raise self.error(prefix.rstrip(".") or "(top level)", "must be a mapping", data)
        self.data: Mapping[str, Any] = data

    def error(self, name: str, problem: str, value: Any = None) -> ConfigError:
        got = "" if value is None else f", got {value!r}"
        return ConfigError(f"{self.source}: field {self.prefix + name!r} {problem}{got}")

    def known(self, names: Iterable[str]) -> None:
        unknown = sorted(set(self.data) - set(names))
        if unknown:
            raise self.error(
                unknown[0], f"is not a manifest field; valid here: {', '.join(sorted(names))}"
            )

    def raw(self, name: str, default: Any = ..., *, required: bool = False) -> Any:
        if name not in self.data or self.data[name] is None:
            if required or default is ...:
                raise self.error(name, "is required")
            return default
        return self.data[name]

    def text(self, name: str, default: Any = ..., *, pattern: re.Pattern[str] | None = None) -> Any:
        value = self.raw(name, default)
        if value is default and default is not ...:
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)  # version: 1.0 written without quotes
        if not isinstance(value, str) or not value.strip():
            raise self.error(name, "must be a non-empty string", value)
        if pattern is not None and not pattern.match(value):
            raise self.error(name, f"must match {pattern.pattern}", value)
        return value

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = self.raw(name, default)
        if value not in choices:
            raise self.error(name, f"must be one of {', '.join(choices)}", value)
        return str(value)

    def number(self, name: str, default: Any, *, kind: type = int) -> Any:
        value = self.raw(name, default)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok or value <= 0 or (kind is int and not isinstance(value, int)):
            raise self.error(
                name, f"must be a positive {'integer' if kind is int else 'number'}", value
            )
        return kind(value)

    def strings(self, name: str, default: Any = ...) -> tuple[str, ...]:
        value = self.raw(name, default)
        if isinstance(value, str) or not isinstance(value, list):
            raise self.error(name, "must be a list of strings", value)
        out = []
        for item in value:
            if isinstance(item, (int, float)) and not isinstance(item, bool):
                item = str(item)
            if not isinstance(item, str) or not item.strip():
                raise self.error(name, "must be a list of non-empty strings", value)
            out.append(item)
        return tuple(out)

    def sub(self, name: str, default: Any = ...) -> _Fields:
        return _Fields(self.source, self.raw(name, default), f"{self.prefix}{name}.")


_TOP = (
    "id", "version", "vendor", "description", "scanners", "raw_formats", "format_revisions",
    "image", "machine", "job", "licence",
)  # fmt: skip


def manifest_from_mapping(data: Any, source: str = "<manifest>") -> EmulatorManifest:
    """Validate parsed YAML into an :class:`EmulatorManifest` (errors name ``source``)."""
    top = _Fields(source, data)
    top.known(_TOP)
    scanners = []
    raw_scanners = top.raw("scanners")
    if not isinstance(raw_scanners, list) or not raw_scanners:
        raise top.error("scanners", "must be a non-empty list", raw_scanners)
    for i, item in enumerate(raw_scanners):
        s = _Fields(source, item, f"scanners[{i}].")
        s.known(("manufacturer", "model", "software_versions"))
        scanners.append(
            ScannerMatch(s.text("manufacturer"), s.text("model"), s.strings("software_versions"))
        )
    raw_formats = top.strings("raw_formats")
    revisions: dict[str, tuple[int, ...]] = {}
    rev = top.sub("format_revisions", {})
    for fmt, values in rev.data.items():
        if fmt not in raw_formats:
            raise rev.error(
                str(fmt), f"names a format missing from raw_formats {list(raw_formats)}"
            )
        if not isinstance(values, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in values
        ):
            raise rev.error(str(fmt), "must be a list of integers", values)
        revisions[str(fmt)] = tuple(values)

    img = top.sub("image")
    img.known(("boot", "files", "sha256", "build"))
    boot = img.choice("boot", _BOOTS, "direct-kernel")
    files_f = img.sub("files")
    files = {str(role): files_f.text(str(role)) for role in files_f.data}
    for role, name in files.items():
        if "/" in name or name in (".", "..") or name.startswith("."):
            raise files_f.error(role, "must be a plain file name (no folders)", name)
    needed = ("disk",) if boot == "disk" else ("kernel",)
    for role in needed:
        if role not in files:
            raise img.error("files", f"must name a {role!r} file for boot: {boot}", files)
    sums_f = img.sub("sha256", {})
    sha256 = {}
    for role, digest in sums_f.data.items():
        if role not in files:
            raise sums_f.error(str(role), f"is not a role of image.files ({', '.join(files)})")
        if not isinstance(digest, str) or not _HEX64.match(digest.lower()):
            raise sums_f.error(str(role), "must be 64 hex digits", digest)
        sha256[str(role)] = digest.lower()
    image = ImageSpec(boot, files, sha256, img.text("build", None))

    m = top.sub("machine", {})
    m.known(("arch", "memory_mib", "vcpus", "firmware", "cmdline", "guest_os"))
    machine = MachineSpec(
        arch=m.choice("arch", _ARCHES, "x86_64"),
        memory_mib=m.number("memory_mib", 256),
        vcpus=m.number("vcpus", 1),
        firmware=m.choice("firmware", _FIRMWARES, "bios"),
        cmdline=m.text("cmdline", None),
        guest_os=m.text("guest_os", None),
    )
    j = top.sub("job", {})
    j.known(("transport", "timeout_s", "progress"))
    job = JobSpec(
        transport=j.choice("transport", _TRANSPORTS, "disk-ext4"),
        timeout_s=j.number("timeout_s", 300.0, kind=float),
        progress=j.choice("progress", _PROGRESS, "none"),
    )
    return EmulatorManifest(
        id=top.text("id", pattern=_ID),
        version=top.text("version", pattern=_VERSION),
        vendor=top.text("vendor"),
        description=top.text("description"),
        scanners=tuple(scanners),
        raw_formats=raw_formats,
        format_revisions=revisions,
        image=image,
        machine=machine,
        job=job,
        licence=top.text("licence"),
        source=source,
    )


def load_manifest(path: str | Path) -> EmulatorManifest:
    """Read and validate one manifest file; its name must be ``<id>@<version>.yaml``."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read emulator manifest {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    manifest = manifest_from_mapping(data, str(path))
    if path.stem != manifest.ref:
        raise ConfigError(
            f"{path}: the file must be named after its id and version: {manifest.ref}.yaml"
        )
    return manifest


def default_manifest_dir() -> Path:
    """Where the manifests are: ``Settings.emulator_manifests``, else the shipped ones.

    Shipped means ``imagelake/_data/emulators/`` in a wheel (pyproject force-includes the
    manifests there) and the repository's top-level ``emulators/`` in a source checkout or an
    editable install.
    """
    configured = get_settings().emulator_manifests
    if configured:
        return Path(configured).expanduser()
    packaged = Path(str(importlib.resources.files("imagelake"))) / "_data" / "emulators"
    if packaged.is_dir():
        return packaged
    # src/imagelake/emulators/_manifest.py -> the checkout's root is three folders above
    return Path(__file__).resolve().parents[3] / "emulators"


# -- the registry --------------------------------------------------------------------------------


def _version_key(version: str) -> tuple[tuple[int, Any], ...]:
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"[._+-]", version)
    )


class EmulatorRegistry:
    """Every emulator manifest of a folder, plus third-party ones.

    Parameters
    ----------
    folder
        Folder of ``*.yaml`` manifests; ``None`` means :func:`default_manifest_dir`.
        A missing folder is an empty registry.
    manifests
        Extra manifests (tests, programs building their own).
    entry_points_group
        Entry-point group scanned for third-party manifests (``None`` to skip). An entry
        point names a manifest, a file or folder path, an iterable of those, or a callable
        returning any of them. A broken one is warned about and skipped.
    """

    def __init__(
        self,
        folder: str | Path | None = None,
        *,
        manifests: Iterable[EmulatorManifest] = (),
        entry_points_group: str | None = ENTRY_POINT_GROUP,
    ) -> None:
        self.folder = Path(folder) if folder is not None else default_manifest_dir()
        self._by_ref: dict[str, EmulatorManifest] = {}
        if self.folder.is_dir():
            for path in sorted(self.folder.glob("*.yaml")):
                self.add(load_manifest(path))
        if entry_points_group:
            for ep in entry_points(group=entry_points_group):
                try:
                    for manifest in self._from_plugin(_load_target(ep.value)):
                        self.add(manifest)
                except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the rest
                    warnings.warn(
                        f"emulator plugin {ep.name!r} failed to load: {exc}", stacklevel=2
                    )
        for manifest in manifests:
            self.add(manifest)

    def _from_plugin(self, obj: Any) -> Iterator[EmulatorManifest]:
        if callable(obj) and not isinstance(obj, EmulatorManifest):
            obj = obj()
        if isinstance(obj, EmulatorManifest):
            yield obj
        elif isinstance(obj, (str, Path)):
            path = Path(obj)
            if path.is_dir():
                yield from (load_manifest(p) for p in sorted(path.glob("*.yaml")))
            else:
                yield load_manifest(path)
        else:
            for item in obj:
                yield from self._from_plugin(item)

    def add(self, manifest: EmulatorManifest) -> None:
        """Add a manifest; a second, different manifest with the same ``id@version`` is an error."""
        old = self._by_ref.get(manifest.ref)
        if old is not None and old != manifest:
            raise ConfigError(
                f"emulator {manifest.ref} is defined twice: {old.source} and {manifest.source}"
            )
        self._by_ref[manifest.ref] = manifest

    def refs(self) -> list[str]:
        """``id@version`` of every manifest, sorted by id then version."""
        return [m.ref for m in self]

    def __iter__(self) -> Iterator[EmulatorManifest]:
        return iter(sorted(self._by_ref.values(), key=lambda m: (m.id, _version_key(m.version))))

    def __len__(self) -> int:
        return len(self._by_ref)

    def __contains__(self, ref: object) -> bool:
        return ref in self._by_ref

    def get(self, ref: str) -> EmulatorManifest:
        """The manifest named ``id@version``; the error lists the known ones."""
        parse_ref(ref)
        try:
            return self._by_ref[ref]
        except KeyError:
            known = ", ".join(self.refs()) or f"none (no manifests in {self.folder})"
            raise PluginNotFoundError(f"unknown emulator {ref!r}; known: {known}") from None

    def candidates(
        self,
        *,
        manufacturer: str | None,
        model: str | None,
        software_version: str | None,
        raw_format: str | None,
        revision: int | None = None,
    ) -> list[EmulatorManifest]:
        """Every manifest that reconstructs such a raw file (see :meth:`EmulatorManifest.accepts`)."""
        return [
            m
            for m in self
            if m.accepts(
                manufacturer=manufacturer,
                model=model,
                software_version=software_version,
                raw_format=raw_format,
                revision=revision,
            )
        ]

    def resolve(
        self,
        spec: str,
        *,
        manufacturer: str | None = None,
        model: str | None = None,
        software_version: str | None = None,
        raw_format: str | None = None,
        revision: int | None = None,
    ) -> EmulatorManifest:
        """The emulator named by ``spec``: ``"id@version"``, or ``"auto"`` for a raw file.

        ``"auto"`` picks among the manifests whose scanners lists accept the raw file's
        manufacturer, model, software version, format and revision. Several versions of one
        emulator: the newest. Several emulators: an error naming them (say which one in the
        knowledge base). None: an error naming what was looked for.
        """
        if spec != "auto":
            return self.get(spec)
        found = self.candidates(
            manufacturer=manufacturer,
            model=model,
            software_version=software_version,
            raw_format=raw_format,
            revision=revision,
        )
        what = (
            f"manufacturer={manufacturer!r}, model={model!r}, software_version="
            f"{software_version!r}, raw_format={raw_format!r}, revision={revision!r}"
        )
        if not found:
            raise PluginNotFoundError(
                f"no emulator reconstructs {what}; known: {', '.join(self.refs()) or 'none'}"
            )
        ids = sorted({m.id for m in found})
        if len(ids) > 1:
            raise ConfigError(
                f"several emulators reconstruct {what}: {', '.join(m.ref for m in found)}; "
                "name one (id@version) in the knowledge base"
            )
        return max(found, key=lambda m: _version_key(m.version))
