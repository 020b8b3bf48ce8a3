"""The image store: registration (immutable, digests.json once), verification, remote caches."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from imagelake.emulators import DIGESTS_FILE, EmulatorManifest, ImageStore
from imagelake.errors import FixityError, StoreError

Files = dict[str, bytes]


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "built"
    folder.mkdir()
    for name, body in {
        "rootfs.qcow2": b"disk" * 1000,
        "vmlinuz": b"kernel",
        "initrd.img": b"initrd",
    }.items():
        (folder / name).write_bytes(body)
    return folder


def test_register_then_verify(
    tmp_path: Path, image_dir: Path, make_manifest: Callable[..., EmulatorManifest]
) -> None:
    m = make_manifest()
    store = ImageStore(tmp_path / "store")
    digests = store.register(m, image_dir)
    folder = tmp_path / "store" / "test-recon" / "1.0"
    recorded = json.loads((folder / DIGESTS_FILE).read_text())
    assert recorded["kernel"] == {"file": "vmlinuz", "sha256": digests["kernel"]}
    assert (
        not os.access(folder / "vmlinuz", os.W_OK) or os.geteuid() == 0
    )  # read-only (root may write anyway)
    assert oct((folder / "vmlinuz").stat().st_mode & 0o777) == "0o444"
    paths = store.verify(m)
    assert paths == {role: folder / name for role, name in m.image.files.items()}
    assert store.register(m, image_dir) == digests  # the same files again: a no-op


def test_a_corrupted_image_is_refused(
    tmp_path: Path, image_dir: Path, make_manifest: Callable[..., EmulatorManifest]
) -> None:
    m = make_manifest()
    store = ImageStore(tmp_path / "store")
    store.register(m, image_dir)
    store.verify(m)
    disk = tmp_path / "store" / "test-recon" / "1.0" / "rootfs.qcow2"
    disk.chmod(0o644)
    disk.write_bytes(b"evil" * 1000)  # same size; a new mtime, so it is hashed again
    with pytest.raises(
        FixityError, match=r"rootfs\.qcow2 of test-recon@1\.0 is corrupted .*refusing to boot"
    ):
        store.verify(m)


def test_images_are_immutable(
    tmp_path: Path, image_dir: Path, make_manifest: Callable[..., EmulatorManifest]
) -> None:
    m = make_manifest()
    store = ImageStore(tmp_path / "store")
    store.register(m, image_dir)
    (image_dir / "vmlinuz").write_bytes(b"another kernel")
    with pytest.raises(StoreError, match="immutable: publish a new emulator version"):
        store.register(m, image_dir)


def test_manifest_digests_must_match(
    tmp_path: Path, image_dir: Path, make_manifest: Callable[..., EmulatorManifest]
) -> None:
    image = {
        "boot": "direct-kernel",
        "files": {"kernel": "vmlinuz"},
        "sha256": {"kernel": "0" * 64},
    }
    m = make_manifest(image=image)
    with pytest.raises(FixityError, match="lists 0000"):
        ImageStore(tmp_path / "store").register(m, image_dir)


def test_manifest_digests_are_used_without_digests_json(
    tmp_path: Path, image_dir: Path, make_manifest: Callable[..., EmulatorManifest]
) -> None:
    from imagelake._fs import sha256_file

    image = {
        "boot": "direct-kernel",
        "files": {"kernel": "vmlinuz"},
        "sha256": {"kernel": sha256_file(image_dir / "vmlinuz")},
    }
    m = make_manifest(image=image)
    store_root = tmp_path / "store" / "test-recon" / "1.0"
    store_root.mkdir(parents=True)
    (store_root / "vmlinuz").write_bytes((image_dir / "vmlinuz").read_bytes())  # copied by hand
    assert ImageStore(tmp_path / "store").verify(m)["kernel"] == store_root / "vmlinuz"


def test_unregistered_and_missing_images(
    tmp_path: Path, image_dir: Path, make_manifest: Callable[..., EmulatorManifest]
) -> None:
    m = make_manifest()
    store = ImageStore(tmp_path / "store")
    with pytest.raises(StoreError, match="register the image first: imagelake vm register"):
        store.verify(m)
    store.register(m, image_dir)
    (tmp_path / "store" / "test-recon" / "1.0" / "initrd.img").unlink()
    with pytest.raises(StoreError, match=r"initrd\.img is missing"):
        store.verify(m)


def test_remote_store_is_fetched_into_a_verified_cache(
    tmp_path: Path, image_dir: Path, make_manifest: Callable[..., EmulatorManifest]
) -> None:
    m = make_manifest()
    store = ImageStore("memory://imagelake-test-images", cache_dir=tmp_path / "cache")
    try:
        store.register(m, image_dir)
        paths = store.verify(m)
        assert paths["kernel"] == tmp_path / "cache" / "test-recon" / "1.0" / "vmlinuz"
        assert paths["kernel"].read_bytes() == b"kernel"
        paths["kernel"].write_bytes(b"tampered")  # a damaged cache copy is fetched again
        assert store.verify(m)["kernel"].read_bytes() == b"kernel"
        store.fs.write_atomic("test-recon/1.0/vmlinuz", b"tampered")  # the store itself...
        store.clear_cache()  # ...is refused once its copy is fetched
        with pytest.raises(FixityError, match=r"vmlinuz of test-recon@1\.0 is corrupted"):
            store.verify(m)
    finally:
        store.fs.rm_tree("")
