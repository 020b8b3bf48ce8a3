"""Typed settings from ``IMAGELAKE_*`` environment variables and ``imagelake.toml``.

Resolution order (later wins): defaults, ``imagelake.toml`` in the working directory (or
the file named by ``IMAGELAKE_CONFIG``), environment variables, then :func:`override`
blocks. Settings are immutable; there is no module-level mutable state besides a
context variable, so threads and tasks each see their own overrides.
"""

from __future__ import annotations

import contextvars
import dataclasses
import getpass
import os
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from imagelake.errors import ConfigError

__all__ = ["Settings", "get_settings", "override"]


def _default_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        return "unknown"


@dataclass(frozen=True)
class Settings:
    """imagelake's settings.

    Attributes
    ----------
    lake
        Root URL of the lake (local path or fsspec URL).
    db_url
        SQLAlchemy URL of the registry; ``None`` means ``<lake>/registry.sqlite``.
    scheduler
        Address of a Dask scheduler; ``None`` means a LocalCluster.
    workers
        Worker processes for ingest and LocalCluster; ``None`` means one per core.
    user
        Who is acting, recorded in the audit log and on jobs.
    knowledge_base
        YAML file of known scanners; ``None`` means the one shipped with imagelake.
    chunk_slices, chunk_rows, chunk_cols
        Inner chunk shape of image arrays.
    shard_slices
        Slices per shard (one stored object per shard along the slice axis).
    compression_level
        zstd level inside Blosc.
    progress
        Show progress bars.
    raw_rules
        YAML file of site rules describing raw files nobody can parse yet (file-name
        patterns -> format name and scanner metadata); see :mod:`imagelake.formats.opaque`.
    link_key_file
        File holding the secret key for keyed hashes of patient identity used by linking;
        ``None`` means ``~/.config/imagelake/link.key`` (made on first use). Never in a lake.
    deid_secret_file
        File holding the secret that keys pseudonyms, UID remapping and date shifts of
        anonymized shares; ``None`` means ``~/.config/imagelake/deid.key``. Never in a lake.
    link_accept, link_review
        Link confidence at or above which a proposed raw-to-series link is accepted
        automatically, and at or above which it waits in the review queue.
    emulator_manifests
        Folder of emulator manifests (``<id>@<version>.yaml``); ``None`` means the ones
        shipped with imagelake (the repository's ``emulators/`` in a checkout).
    emulator_images
        Image store of emulator VM images (local folder or fsspec URL); ``None`` means
        ``~/.cache/imagelake/emulator-images``.
    emulator_uri
        libvirt connection URI of the emulator manager.
    emulator_work_dir
        Local folder for job overlays, the acceleration probe's result and interactive VMs;
        ``None`` means ``~/.cache/imagelake/emulator-work``.
    """

    lake: str = "./lake"
    db_url: str | None = None
    scheduler: str | None = None
    workers: int | None = None
    user: str = dataclasses.field(default_factory=_default_user)
    knowledge_base: str | None = None
    chunk_slices: int = 64
    chunk_rows: int = 128
    chunk_cols: int = 128
    shard_slices: int = 64
    compression_level: int = 3
    progress: bool = True
    raw_rules: str | None = None
    link_key_file: str | None = None
    deid_secret_file: str | None = None
    link_accept: float = 0.95
    link_review: float = 0.5
    emulator_manifests: str | None = None
    emulator_images: str | None = None
    emulator_uri: str = "qemu:///system"
    emulator_work_dir: str | None = None

    def replace(self, **changes: Any) -> Settings:
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise ConfigError(
                f"unknown setting(s) {sorted(unknown)}; valid: {sorted(f.name for f in fields(self))}"
            )
        return dataclasses.replace(self, **changes)


_ENV_PREFIX = "IMAGELAKE_"
_overrides: contextvars.ContextVar[tuple[Mapping[str, Any], ...]] = contextvars.ContextVar(
    "imagelake_overrides", default=()
)


def _to_bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(raw)


# Field annotation (a string, because of ``from __future__ import annotations``) -> parser.
_PARSERS: dict[str, Any] = {"int": int, "float": float, "bool": _to_bool, "str": str}


def _coerce(name: str, raw: Any) -> Any:
    kind = str({f.name: f for f in fields(Settings)}[name].type)
    optional = kind.endswith("| None")
    if optional and raw in (None, ""):
        return None
    parser = _PARSERS[kind.removesuffix("| None").strip()]
    try:
        return parser(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {name!r} must be {kind}, got {raw!r}") from exc


def _from_toml(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    section = data.get("imagelake", data)
    return {k.replace("-", "_"): v for k, v in section.items()}


def _load_base(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    names = {f.name for f in fields(Settings)}
    cfg = environ.get("IMAGELAKE_CONFIG")
    path = Path(cfg) if cfg else Path("imagelake.toml")
    if path.is_file():
        for key, value in _from_toml(path).items():
            if key not in names:
                raise ConfigError(f"{path}: unknown setting {key!r}; valid: {sorted(names)}")
            values[key] = _coerce(key, value)
    elif cfg:
        raise ConfigError(f"IMAGELAKE_CONFIG names {cfg!r}, which does not exist")
    for name in names:
        env = _ENV_PREFIX + name.upper()
        if env in environ:
            values[name] = _coerce(name, environ[env])
    return values


def get_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Current settings: defaults < imagelake.toml < environment < :func:`override`."""
    values = _load_base(os.environ if environ is None else environ)
    for layer in _overrides.get():
        values.update(layer)
    return Settings(**values)


@contextmanager
def override(**changes: Any) -> Iterator[Settings]:
    """Temporarily change settings in this thread/task::

    with override(lake="/data/lake", workers=2):
        ...
    """
    Settings().replace(**changes)  # validates the names
    token = _overrides.set((*_overrides.get(), changes))
    try:
        yield get_settings()
    finally:
        _overrides.reset(token)
