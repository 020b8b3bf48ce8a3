"""``imagelake remote``: read an encrypted offsite copy through a local decrypting cache.

Thin over :func:`imagelake.replicate.open_remote`; nothing is written to the remote.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import click

from imagelake.cli._main import _master_key, _show, cli, format_option, master_key_option


def _default_cache(url: str) -> str:
    """``~/.cache/imagelake/remote/<sha256(url)[:16]>``: one cache per remote."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    return os.path.join(base, "imagelake", "remote", digest)


def _open(url: str, key_file: str | None, cache: str | None) -> Any:
    from imagelake.replicate import open_remote

    return open_remote(url, key=_master_key(key_file), cache_dir=cache or _default_cache(url))


cache_option = click.option(
    "--cache",
    default=None,
    type=click.Path(file_okay=False),
    help="Local cache folder (plaintext: keep it on an encrypted disk). "
    "Default: ~/.cache/imagelake/remote/<hash of URL>.",
)


@cli.group()
def remote() -> None:
    """Read an encrypted remote lake (made by `imagelake push`) through a local cache."""


@remote.command("query")
@click.argument("url")
@click.argument("conditions", nargs=-1)
@master_key_option
@cache_option
@format_option
def remote_query(
    url: str, conditions: tuple[str, ...], key_file: str | None, cache: str | None, fmt: str
) -> None:
    """Series of the remote lake at URL matching FIELD=VALUE conditions.

    Fetches and decrypts only the index files."""
    from imagelake.index import parse_filters

    df = _open(url, key_file, cache).query(parse_filters(list(conditions)))
    if fmt == "table":
        keep = ["series_instance_uid", "modality", "manufacturer", "model", "n_instances"]
        df = df[[c for c in keep if c in df.columns]]
    _show(df, fmt)


@remote.command("prefetch")
@click.argument("url")
@click.argument("conditions", nargs=-1)
@click.option(
    "--path",
    "paths",
    multiple=True,
    help="A lake-relative file or folder to fetch as well (repeatable).",
)
@master_key_option
@cache_option
def remote_prefetch(
    url: str,
    conditions: tuple[str, ...],
    paths: tuple[str, ...],
    key_file: str | None,
    cache: str | None,
) -> None:
    """Download and decrypt ahead (the night before): the stores of every series matching
    FIELD=VALUE conditions, and any --path. With neither, fetch the whole lake."""
    from imagelake.index import parse_filters

    rl = _open(url, key_file, cache)
    query = parse_filters(list(conditions)) if conditions else None
    wanted = list(paths) if (paths or query is not None) else [""]
    if wanted == [""]:
        wanted = rl.files()
    files = rl.prefetch(wanted, query=query)
    size = sum((rl.cache_dir / f).stat().st_size for f in files)
    click.echo(f"{len(files)} files ({size / 1e6:.1f} MB) decrypted and verified in {rl.cache_dir}")


@remote.command("clear")
@click.argument("url")
@cache_option
def remote_clear(url: str, cache: str | None) -> None:
    """Delete the local plaintext cache of the remote lake at URL (no key needed)."""
    import shutil

    folder = cache or _default_cache(url)
    shutil.rmtree(folder, ignore_errors=True)
    click.echo(f"removed {folder}")
