"""``imagelake vm``: admin commands for the emulator VMs, thin over :mod:`imagelake.emulators`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

__all__ = ["register", "vm"]


def _registry() -> Any:
    from imagelake.emulators import EmulatorRegistry

    return EmulatorRegistry()


def _store(images: str | None) -> Any:
    from imagelake.emulators import ImageStore

    return ImageStore(images)


def _manifest(spec: str) -> Any:
    """A manifest by file path or by ``id@version`` (from the manifests folder)."""
    from imagelake.emulators import load_manifest

    if spec.endswith((".yaml", ".yml")) or Path(spec).is_file():
        return load_manifest(spec)
    return _registry().get(spec)


def _manager(ctx: click.Context) -> Any:
    from imagelake.emulators import EmulatorManager

    obj = ctx.obj
    return EmulatorManager(obj["uri"], images=_store(obj["images"]), work_dir=obj["work_dir"])


@click.group()
@click.option(
    "--uri", default=None, help="libvirt URI (default: IMAGELAKE_EMULATOR_URI or qemu:///system)."
)
@click.option(
    "--images",
    default=None,
    help="Image store URL (default: IMAGELAKE_EMULATOR_IMAGES or ~/.cache/imagelake/emulator-images).",
)
@click.option(
    "--work-dir",
    default=None,
    type=click.Path(file_okay=False),
    help="Local work folder (default: IMAGELAKE_EMULATOR_WORK_DIR or ~/.cache/imagelake/emulator-work).",
)
@click.pass_context
def vm(ctx: click.Context, uri: str | None, images: str | None, work_dir: str | None) -> None:
    """Emulator VMs: manifests, the image store, running domains."""
    ctx.obj = {"uri": uri, "images": images, "work_dir": work_dir}


@vm.command(name="list")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.pass_context
def list_(ctx: click.Context, fmt: str) -> None:
    """Emulator versions (manifests) and whether their images are in the store."""
    store = _store(ctx.obj["images"])
    rows = []
    for m in _registry():
        scanners = "; ".join(
            f"{s.manufacturer} {s.model} ({', '.join(s.software_versions)})" for s in m.scanners
        )
        rows.append(
            {
                "emulator": m.ref,
                "vendor": m.vendor,
                "scanners": scanners,
                "raw_formats": ", ".join(m.raw_formats),
                "image": "registered" if store.registered(m) else "missing",
            }
        )
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
    elif not rows:
        click.echo("(no emulator manifests)")
    else:
        for r in rows:
            click.echo(
                f"{r['emulator']:<28} {r['image']:<10} {r['raw_formats']:<12} {r['scanners']}"
            )


@vm.command(name="register")
@click.argument("manifest")
@click.option(
    "--image-dir",
    type=click.Path(file_okay=False, exists=True),
    default=None,
    help="Folder holding the image files (copied into the store). Default: the files already in a local store.",
)
@click.pass_context
def register_(ctx: click.Context, manifest: str, image_dir: str | None) -> None:
    """Put an emulator's image files in the store and record their sha256 (once; immutable).

    MANIFEST is a manifest file or an id@version of the manifests folder.
    """
    m = _manifest(manifest)
    store = _store(ctx.obj["images"])
    if image_dir is None:
        if not store.fs.is_local:
            raise click.UsageError("a remote image store needs --image-dir")
        image_dir = store.fs.path(store.folder(m))
    digests = store.register(m, image_dir)
    click.echo(f"registered {m.ref} in {store.fs.url(store.folder(m))}")
    for role, digest in sorted(digests.items()):
        click.echo(f"  {role:<8} {m.image.files[role]:<24} sha256 {digest}")


@vm.command()
@click.argument("emulator")
@click.pass_context
def verify(ctx: click.Context, emulator: str) -> None:
    """Check every image file of EMULATOR (id@version) against its sha256."""
    m = _manifest(emulator)
    store = _store(ctx.obj["images"])
    paths = store.verify(m)
    digests = store.expected_digests(m)
    click.echo(f"{m.ref}: all {len(paths)} image files verified")
    for role, path in sorted(paths.items()):
        click.echo(f"  {role:<8} {path}  sha256 {digests[role]}")


@vm.command()
@click.argument("emulator")
@click.pass_context
def start(ctx: click.Context, emulator: str) -> None:
    """Start EMULATOR (id@version) for an admin: a fresh overlay, the console on a pty."""
    m = _manifest(emulator)
    with _manager(ctx) as mgr:
        domain_type, reason = mgr.probe_accel()
        click.echo(f"acceleration: {domain_type} ({reason})")
        running = mgr.start_interactive(m)
    click.echo(f"started {running.name} ({running.emulator})")
    click.echo(f"  console:  {running.attach}   (leave with Ctrl-])")
    click.echo(f"  log:      {running.console_log}")
    click.echo(f"  stop:     imagelake vm stop {running.name}")


@vm.command()
@click.argument("name")
@click.pass_context
def stop(ctx: click.Context, name: str) -> None:
    """Destroy and undefine the imagelake domain NAME and delete its overlay."""
    with _manager(ctx) as mgr:
        mgr.stop(name)
    click.echo(f"stopped {name}")


@vm.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.pass_context
def status(ctx: click.Context, fmt: str) -> None:
    """The hypervisor, the acceleration in use, and imagelake's domains."""
    with _manager(ctx) as mgr:
        info = mgr.status()
        swept = mgr.swept
    if fmt == "json":
        click.echo(json.dumps({**info, "swept": swept}, indent=2))
        return
    click.echo(
        f"libvirt      {info['uri']} ({info['hypervisor']} {info['hypervisor_version']}, libvirt {info['libvirt_version']})"
    )
    click.echo(f"acceleration {info['domain_type'] or '?'}: {info['accel_reason']}")
    click.echo(f"parallel     {info['max_parallel']} job(s); work folder {info['work_dir']}")
    click.echo(f"images       {info['images']}")
    if swept:
        click.echo(f"swept        {len(swept)} stale job(s): {', '.join(swept)}")
    if not info["domains"]:
        click.echo("domains      (none)")
    for d in info["domains"]:
        click.echo(f"  {d['name']:<40} {d['kind']:<12} {d['state']}")


def register(group: click.Group) -> None:
    """Add ``vm`` to the ``imagelake`` command group."""
    group.add_command(vm)
