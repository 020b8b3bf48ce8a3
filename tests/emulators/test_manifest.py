"""Emulator manifests: validation with clear errors, the registry, and picking an emulator."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from imagelake.config import override
from imagelake.emulators import (
    EmulatorManifest,
    EmulatorRegistry,
    default_manifest_dir,
    load_manifest,
    manifest_from_mapping,
    parse_ref,
)
from imagelake.errors import ConfigError, PluginNotFoundError

MD = Callable[..., dict[str, Any]]


def write(folder: Path, data: dict[str, Any], name: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (name or f"{data['id']}@{data['version']}.yaml")
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_load_valid_manifest(tmp_path: Path, manifest_data: MD) -> None:
    m = load_manifest(write(tmp_path, manifest_data()))
    assert m.ref == "test-recon@1.0"
    assert m.scanners[0].software_versions == ("R1.0", "R1.1")
    assert m.format_revisions == {"refscan": (1,)}
    assert m.image.files["kernel"] == "vmlinuz" and m.image.sha256 == {}
    assert m.machine.memory_mib == 256 and m.job.timeout_s == 60.0
    assert m.source == str(tmp_path / "test-recon@1.0.yaml")


def test_unquoted_version_is_a_string(tmp_path: Path, manifest_data: MD) -> None:
    text = yaml.safe_dump(manifest_data()).replace("version: '1.0'", "version: 1.0")
    (tmp_path / "test-recon@1.0.yaml").write_text(text)
    assert load_manifest(tmp_path / "test-recon@1.0.yaml").version == "1.0"


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"vendor": None}, "'vendor'", "is required"),
        ({"id": "Bad_Id"}, "'id'", "must match"),
        ({"machine": {"memory_mib": "lots"}}, "'machine.memory_mib'", "positive integer"),
        ({"machine": {"firmware": "coreboot"}}, "'machine.firmware'", "bios, uefi"),
        ({"job": {"transport": "nfs"}}, "'job.transport'", "disk-ext4, disk-fat"),
        ({"job": {"timeout_s": -1}}, "'job.timeout_s'", "positive number"),
        ({"scanners": []}, "'scanners'", "non-empty list"),
        (
            {"scanners": [{"manufacturer": "X", "model": "Y"}]},
            "'scanners[0].software_versions'",
            "required",
        ),
        (
            {"format_revisions": {"twix": [1]}},
            "'format_revisions.twix'",
            "missing from raw_formats",
        ),
        ({"format_revisions": {"refscan": ["one"]}}, "'format_revisions.refscan'", "integers"),
        ({"colour": "blue"}, "'colour'", "is not a manifest field"),
        (
            {"image": {"boot": "direct-kernel", "files": {"disk": "a.qcow2"}}},
            "'image.files'",
            "'kernel' file",
        ),
        (
            {"image": {"boot": "disk", "files": {"disk": "../a.qcow2"}}},
            "'image.files.disk'",
            "plain file name",
        ),
        (
            {"image": {"boot": "disk", "files": {"disk": "a.qcow2"}, "sha256": {"disk": "abc"}}},
            "'image.sha256.disk'",
            "64 hex digits",
        ),
        (
            {
                "image": {
                    "boot": "disk",
                    "files": {"disk": "a.qcow2"},
                    "sha256": {"kernel": "0" * 64},
                }
            },
            "'image.sha256.kernel'",
            "not a role",
        ),
    ],
)
def test_errors_name_the_file_and_field(
    tmp_path: Path, change: dict[str, Any], field: str, words: str, manifest_data: MD
) -> None:
    path = write(tmp_path, manifest_data(**change), "test-recon@1.0.yaml")
    with pytest.raises(ConfigError) as err:
        load_manifest(path)
    message = str(err.value)
    assert str(path) in message and field in message and words in message, message


def test_file_name_must_match_id_and_version(tmp_path: Path, manifest_data: MD) -> None:
    path = write(tmp_path, manifest_data(), "other@2.yaml")
    with pytest.raises(ConfigError, match=r"must be named .*test-recon@1\.0\.yaml"):
        load_manifest(path)


def test_yaml_syntax_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "x@1.yaml"
    path.write_text("id: [unclosed\n")
    with pytest.raises(ConfigError, match=r"x@1\.yaml: not valid YAML"):
        load_manifest(path)


def test_parse_ref() -> None:
    assert parse_ref("reference-recon@1.0") == ("reference-recon", "1.0")
    for bad in ("reference-recon", "Ref@1", "a@", "@1", "a@b@c"):
        with pytest.raises(ConfigError, match="id@version"):
            parse_ref(bad)


@pytest.fixture
def registry(tmp_path: Path, manifest_data: MD) -> EmulatorRegistry:
    folder = tmp_path / "emulators"
    write(folder, manifest_data())
    write(folder, manifest_data(version="1.2"))
    write(
        folder,
        manifest_data(
            version="2.0",
            scanners=[
                {
                    "manufacturer": "Imagelake Reference",
                    "model": "RefScan CT",
                    "software_versions": ["R2.0"],
                }
            ],
            format_revisions={"refscan": [2]},
        ),
    )
    write(
        folder,
        manifest_data(
            id="other-recon",
            scanners=[{"manufacturer": "ACME", "model": "Scan 9", "software_versions": ["9.1"]}],
            raw_formats=["acme"],
            format_revisions={},
        ),
    )
    (folder / "README.md").write_text("not a manifest")
    return EmulatorRegistry(folder, entry_points_group=None)


def test_registry_loads_every_manifest(registry: EmulatorRegistry) -> None:
    assert registry.refs() == [
        "other-recon@1.0",
        "test-recon@1.0",
        "test-recon@1.2",
        "test-recon@2.0",
    ]
    assert "test-recon@1.2" in registry and len(registry) == 4
    assert registry.get("test-recon@2.0").format_revisions == {"refscan": (2,)}


def test_unknown_emulator_lists_the_known_ones(registry: EmulatorRegistry) -> None:
    with pytest.raises(
        PluginNotFoundError,
        match=r"unknown emulator 'test-recon@9'; known: other-recon@1.0, test-recon@1.0",
    ):
        registry.get("test-recon@9")


def test_resolve_auto_picks_by_scanner_version_format_and_revision(
    registry: EmulatorRegistry,
) -> None:
    def auto(version: str, revision: int | None, **kw: Any) -> str:
        args = {
            "manufacturer": " imagelake  REFERENCE",
            "model": "refscan ct",
            "raw_format": "refscan",
        }
        args.update(kw)
        return registry.resolve("auto", software_version=version, revision=revision, **args).ref

    # two versions of one emulator accept R1.1 revision 1: the newest wins
    assert auto("r1.1", 1) == "test-recon@1.2"
    assert auto("R2.0", 2) == "test-recon@2.0"
    assert (
        registry.resolve(
            "auto",
            manufacturer="acme",
            model="SCAN 9",
            software_version="9.1",
            raw_format="acme",
            revision=7,
        ).ref
        == "other-recon@1.0"
    )
    with pytest.raises(PluginNotFoundError, match="no emulator reconstructs"):
        auto("R2.0", 1)  # revision 1 files of a 2.0 scanner: nobody
    with pytest.raises(PluginNotFoundError, match="no emulator reconstructs"):
        auto("R1.0", 1, raw_format="twix")
    assert registry.resolve("test-recon@1.0").ref == "test-recon@1.0"


def test_several_emulators_for_one_raw_file_is_an_error(tmp_path: Path, manifest_data: MD) -> None:
    folder = tmp_path / "emulators"
    write(folder, manifest_data())
    write(folder, manifest_data(id="rival-recon"))
    reg = EmulatorRegistry(folder, entry_points_group=None)
    with pytest.raises(ConfigError, match=r"several emulators .*rival-recon@1\.0.*test-recon@1\.0"):
        reg.resolve(
            "auto",
            manufacturer="Imagelake Reference",
            model="RefScan CT",
            software_version="R1.0",
            raw_format="refscan",
            revision=1,
        )


def test_same_ref_twice_with_other_content_is_an_error(
    make_manifest: Callable[..., EmulatorManifest],
) -> None:
    reg = EmulatorRegistry(
        Path("/nonexistent"), entry_points_group=None, manifests=[make_manifest()]
    )
    with pytest.raises(ConfigError, match="defined twice"):
        reg.add(make_manifest(vendor="someone else"))


def test_entry_point_plugins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, manifest_data: MD
) -> None:
    """A third party publishes a folder of manifests through the imagelake.emulators group."""
    theirs = tmp_path / "their-manifests"
    write(theirs, manifest_data(id="vendor-x"))
    module = tmp_path / "site" / "vendor_x_emulators.py"
    module.parent.mkdir()
    module.write_text(
        f"MANIFESTS = {str(theirs)!r}\ndef broken():\n    raise RuntimeError('boom')\n"
    )
    dist = tmp_path / "site" / "vendor_x_emulators-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: vendor-x-emulators\nVersion: 1.0\n"
    )
    (dist / "entry_points.txt").write_text(
        textwrap.dedent(
            """\
            [imagelake.emulators]
            vendor-x = vendor_x_emulators:MANIFESTS
            broken = vendor_x_emulators:broken
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with pytest.warns(UserWarning, match="emulator plugin 'broken' failed to load: boom"):
        reg = EmulatorRegistry(tmp_path / "none")
    assert "vendor-x@1.0" in reg


def test_manifest_folder_setting(tmp_path: Path, manifest_data: MD) -> None:
    write(tmp_path, manifest_data())
    with override(emulator_manifests=str(tmp_path)):
        assert default_manifest_dir() == tmp_path
        assert EmulatorRegistry(entry_points_group=None).refs() == ["test-recon@1.0"]


def test_the_repository_manifests_are_valid() -> None:
    """Every manifest shipped in the repository's emulators/ loads (none is fine, too)."""
    folder = Path(__file__).resolve().parents[2] / "emulators"
    reg = EmulatorRegistry(folder, entry_points_group=None)
    for m in reg:
        assert m.source is not None and Path(m.source).name == f"{m.ref}.yaml"


def test_accepts_any_revision_without_format_revisions(manifest_data: MD) -> None:
    m = manifest_from_mapping(manifest_data(format_revisions={}))
    kw = {
        "manufacturer": "Imagelake Reference",
        "model": "RefScan CT",
        "software_version": "R1.0",
        "raw_format": "refscan",
    }
    assert m.accepts(revision=42, **kw)
    assert not m.accepts(revision=1, **{**kw, "software_version": "R3"})


def test_the_knowledge_base_points_at_known_manifests_that_accept_its_scanners() -> None:
    """Each ``emulator: id@version`` of catalog/scanners.yaml names a manifest in emulators/
    whose scanners list covers that scanner and software version (what reprocess relies on)."""
    from imagelake.knowledge import KnowledgeBase

    repo = Path(__file__).resolve().parents[2]
    reg = EmulatorRegistry(repo / "emulators", entry_points_group=None)
    kb = KnowledgeBase.load(repo / "catalog" / "scanners.yaml")
    pointed = 0
    for scanner in kb.scanners:
        for version in scanner.software_versions:
            if version.emulator is None:
                continue
            pointed += 1
            manifest = reg.get(version.emulator)
            formats = set(scanner.raw_formats) | set(version.raw_formats)
            assert any(
                manifest.accepts(
                    manufacturer=scanner.manufacturer,
                    model=scanner.model,
                    software_version=version.version,
                    raw_format=fmt,
                )
                for fmt in formats
            ), f"{version.emulator} does not accept {scanner.model} {version.version}"
    assert pointed == 0 or len(reg) > 0


def test_public_api_matches_all() -> None:
    """``imagelake.emulators.__all__`` is exactly its public names (as httpx checks its own)."""
    import types

    import imagelake.emulators as package

    public = {
        name
        for name in dir(package)
        if not name.startswith("_") and not isinstance(getattr(package, name), types.ModuleType)
    }
    assert public == set(package.__all__)
