"""The image store: emulator VM images, outside git, immutable, verified before every use.

Layout (a local folder by default, or any fsspec URL)::

    <store>/<id>/<version>/<file>          the files a manifest's image.files names
    <store>/<id>/<version>/digests.json    {"<role>": {"file": ..., "sha256": ...}}, written once

A manifest that lists ``image.sha256`` is checked against those digests; one that does not
(images the project builds) against ``digests.json``, recorded when the image was registered.
Files of a remote store are fetched into a local cache and verified there: libvirt and QEMU
only ever open verified local files.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import threading
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from imagelake._fs import LakeFS, fsync_dir, sha256_file
from imagelake.config import get_settings
from imagelake.emulators._manifest import EmulatorManifest
from imagelake.errors import FixityError, StoreError

__all__ = ["DIGESTS_FILE", "ImageStore", "default_image_store"]

DIGESTS_FILE = "digests.json"


def default_image_store() -> str:
    """``Settings.emulator_images``, else ``~/.cache/imagelake/emulator-images``."""
    configured = get_settings().emulator_images
    return configured or str(Path("~/.cache/imagelake/emulator-images").expanduser())


class ImageStore:
    """Emulator images by ``id/version/file``, verified by sha256 before use.

    Parameters
    ----------
    root
        Local folder or fsspec URL; ``None`` means :func:`default_image_store`.
    cache_dir
        Local folder for files fetched from a remote store (default
        ``~/.cache/imagelake/emulator-image-cache``). Unused for a local store.
    storage_options
        Passed to fsspec.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        **storage_options: Any,
    ) -> None:
        self.fs = LakeFS(
            os.fspath(root) if root is not None else default_image_store(), **storage_options
        )
        self.cache_dir = Path(
            cache_dir if cache_dir is not None else "~/.cache/imagelake/emulator-image-cache"
        ).expanduser()
        # path -> (size, mtime_ns, sha256): a file verified once in this process is not
        # hashed again until it changes (a job per minute would otherwise re-read the image)
        self._verified: dict[str, tuple[int, int, str]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ImageStore({self.fs.url()!r})"

    @staticmethod
    def folder(manifest: EmulatorManifest) -> str:
        """The store-relative folder of an emulator version's files."""
        return f"{manifest.id}/{manifest.version}"

    # -- digests ---------------------------------------------------------------------------------
    def recorded_digests(self, manifest: EmulatorManifest) -> dict[str, str]:
        """Role -> sha256 from the store's ``digests.json`` (empty when there is none)."""
        rel = f"{self.folder(manifest)}/{DIGESTS_FILE}"
        if not self.fs.exists(rel):
            return {}
        try:
            data = json.loads(self.fs.read_text(rel))
            return {role: str(entry["sha256"]) for role, entry in data.items()}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise FixityError(f"{self.fs.url(rel)} is not a valid digests file: {exc}") from exc

    def expected_digests(self, manifest: EmulatorManifest) -> dict[str, str]:
        """Role -> sha256 every file must have: the manifest's, else ``digests.json``'s."""
        recorded = self.recorded_digests(manifest)
        expected = {}
        for role, name in manifest.image.files.items():
            digest = manifest.image.sha256.get(role) or recorded.get(role)
            if digest is None:
                raise StoreError(
                    f"emulator {manifest.ref}: no sha256 for {name!r} (role {role}) in the manifest "
                    f"({manifest.source}) nor in {self.fs.url(self.folder(manifest))}/{DIGESTS_FILE}; "
                    f"register the image first: imagelake vm register {manifest.source or 'MANIFEST'} "
                    "--image-dir DIR"
                )
            expected[role] = digest
        return expected

    # -- use ---------------------------------------------------------------------------------------
    def _check(self, path: Path, expected: str, what: str) -> None:
        st = path.stat()
        key = str(path)
        with self._lock:
            seen = self._verified.get(key)
        if seen == (st.st_size, st.st_mtime_ns, expected):
            return
        actual = sha256_file(path)
        if actual != expected:
            raise FixityError(
                f"{what} is corrupted or was replaced: sha256 {actual}, expected {expected}; "
                "refusing to boot it (restore the file, or register the image again under a new "
                "emulator version)"
            )
        with self._lock:
            self._verified[key] = (st.st_size, st.st_mtime_ns, expected)

    def verify(self, manifest: EmulatorManifest) -> dict[str, Path]:
        """Check every image file of ``manifest``; return role -> verified local path.

        Remote stores are fetched into :attr:`cache_dir` first (to a temporary name, then
        renamed), and the cached copy is what is verified and returned; a cached copy that no
        longer matches is fetched again once. Raises
        :class:`~imagelake.errors.FixityError` for a file whose sha256 differs (nothing is
        booted from it) and :class:`~imagelake.errors.StoreError` for a missing one.
        """
        expected = self.expected_digests(manifest)
        out: dict[str, Path] = {}
        for role, name in manifest.image.files.items():
            rel = f"{self.folder(manifest)}/{name}"
            if not self.fs.exists(rel):
                raise StoreError(
                    f"emulator {manifest.ref}: image file {self.fs.url(rel)} is missing; register "
                    f"it with: imagelake vm register {manifest.source or 'MANIFEST'} --image-dir DIR"
                )
            what = f"image file {self.fs.url(rel)} of {manifest.ref}"
            if self.fs.is_local:
                local = Path(self.fs.path(rel))
                self._check(local, expected[role], what)
            else:
                local = self._fetch(manifest, rel, name)
                try:
                    self._check(local, expected[role], f"cached copy {local} of {what}")
                except FixityError:
                    # a damaged cache copy is fetched again once; the remote itself must match
                    local.unlink(missing_ok=True)
                    local = self._fetch(manifest, rel, name)
                    self._check(local, expected[role], what)
            out[role] = local
        return out

    def _fetch(self, manifest: EmulatorManifest, rel: str, name: str) -> Path:
        target = self.cache_dir / manifest.id / manifest.version / name
        if target.exists():
            return target  # verified by the caller; a corrupted cache copy is refused there
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{name}.{uuid.uuid4().hex}.tmp")
        try:
            self.fs.fs.get_file(self.fs.path(rel), str(tmp))
            os.replace(tmp, target)
            fsync_dir(target.parent)
        finally:
            tmp.unlink(missing_ok=True)
        return target

    # -- registration ------------------------------------------------------------------------------
    def register(
        self, manifest: EmulatorManifest, image_dir: str | os.PathLike[str]
    ) -> dict[str, str]:
        """Copy an emulator's image files from ``image_dir`` into the store; return role -> sha256.

        Images are immutable: a file already in the store must have the same content, and
        ``digests.json`` is written once (a second registration with equal digests is a no-op,
        with different ones an error). Digests the manifest lists must match. Local store
        files are made read-only.
        """
        src = Path(image_dir)
        digests: dict[str, str] = {}
        for role, name in manifest.image.files.items():
            path = src / name
            if not path.is_file():
                raise StoreError(f"emulator {manifest.ref}: {path} (role {role}) does not exist")
            digests[role] = sha256_file(path)
            listed = manifest.image.sha256.get(role)
            if listed and listed != digests[role]:
                raise FixityError(
                    f"{path} has sha256 {digests[role]}, but {manifest.source} lists {listed}"
                )
        recorded = self.recorded_digests(manifest)
        if recorded and recorded != digests:
            raise StoreError(
                f"emulator {manifest.ref} is already registered in {self.fs.url(self.folder(manifest))} "
                "with other image files; images are immutable: publish a new emulator version"
            )
        folder = self.folder(manifest)
        for role, name in manifest.image.files.items():
            rel = f"{folder}/{name}"
            if self.fs.exists(rel):
                if self.fs.sha256(rel) != digests[role]:
                    raise StoreError(
                        f"{self.fs.url(rel)} exists with other content; images are immutable: "
                        "publish a new emulator version"
                    )
                continue
            self.fs.copy_in(str(src / name), rel)
            if self.fs.is_local:
                os.chmod(self.fs.path(rel), stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        if not recorded:
            self._write_digests(manifest, digests)
        return digests

    def _write_digests(self, manifest: EmulatorManifest, digests: Mapping[str, str]) -> None:
        rel = f"{self.folder(manifest)}/{DIGESTS_FILE}"
        body = {
            role: {"file": manifest.image.files[role], "sha256": digest}
            for role, digest in sorted(digests.items())
        }
        self.fs.write_atomic(rel, json.dumps(body, indent=2, sort_keys=True) + "\n")
        if self.fs.is_local:
            os.chmod(self.fs.path(rel), stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)

    def registered(self, manifest: EmulatorManifest) -> bool:
        """Whether every image file of ``manifest`` is in the store (not verified)."""
        folder = self.folder(manifest)
        return all(self.fs.exists(f"{folder}/{n}") for n in manifest.image.files.values())

    def clear_cache(self) -> None:
        """Delete the local copies of remote images (they are fetched again when needed)."""
        shutil.rmtree(self.cache_dir, ignore_errors=True)
