"""Commands. Each is a few lines over a library call; no logic lives here."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from imagelake.config import get_settings
from imagelake.errors import ImagelakeError

if TYPE_CHECKING:
    import pandas as pd
lake_option = click.option(
    "--lake", "lake_url", default=None, help="Lake URL (default: IMAGELAKE_LAKE or ./lake)."
)


def _lake(url: str | None, create: bool = False) -> Any:
    from imagelake.lake import open_lake

    return open_lake(url or get_settings().lake, create=create)


@contextmanager
def _progress(enabled: bool = True) -> Iterator[Any]:
    """A rich progress bar fed by the library's (stage, done, total) callbacks."""
    # imported here, as pandas below: each command pays only for what it uses
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    console = Console(stderr=True)
    if not enabled or (not console.is_terminal and not get_settings().progress):
        yield None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        tasks: dict[str, Any] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield update


def _show(df: pd.DataFrame, fmt: str) -> None:
    import pandas as pd

    if fmt == "csv":
        click.echo(df.to_csv(index=False), nl=False)
    elif fmt == "json":
        click.echo(df.to_json(orient="records", date_format="iso", default_handler=str))
    else:
        with pd.option_context(
            "display.width", 200, "display.max_columns", 20, "display.max_colwidth", 40
        ):
            click.echo(df.to_string(index=False) if not df.empty else "(none)")


format_option = click.option(
    "--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table"
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="imagelake")
def cli() -> None:
    """imagelake: a medical-imaging research data lake."""


@cli.command()
@lake_option
def init(lake_url: str | None) -> None:
    """Create a lake (registry, index, catalog, audit log)."""
    lake = _lake(lake_url, create=True)
    click.echo(f"lake ready at {lake.url}")


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@lake_option
@click.option("--workers", type=int, default=None, help="Worker processes (default: one per core).")
@click.option("--no-progress", is_flag=True, help="Do not show progress bars.")
def ingest(
    paths: tuple[str, ...], lake_url: str | None, workers: int | None, no_progress: bool
) -> None:
    """Ingest DICOM files, raw scanner files, folders, zip files and DICOMDIRs."""
    lake = _lake(lake_url, create=True)
    with _progress(not no_progress) as progress:
        report = lake.ingest(list(paths), workers=workers, progress=progress)
    click.echo(str(report))


@cli.command()
@click.argument("conditions", nargs=-1)
@lake_option
@click.option("--level", type=click.Choice(["series", "instances"]), default="series")
@click.option("--columns", default=None, help="Comma-separated columns to show.")
@click.option("--with-raw", is_flag=True, help="Add each series' raw parents (raw_sha256 column).")
@click.option(
    "--raw",
    "raw_conditions",
    multiple=True,
    help="Keep series with a raw parent matching FIELD=VALUE (e.g. --raw format=siemens-twix).",
)
@format_option
def query(
    conditions: tuple[str, ...],
    lake_url: str | None,
    level: str,
    columns: str | None,
    with_raw: bool,
    raw_conditions: tuple[str, ...],
    fmt: str,
) -> None:
    """Series matching FIELD=VALUE conditions (e.g. Modality=CT SliceThickness=0.5:1.5)."""
    from imagelake.index import parse_filters

    lake = _lake(lake_url)
    filters = parse_filters(list(conditions))
    if with_raw or raw_conditions:
        raw = parse_filters(list(raw_conditions)) if raw_conditions else None
        df = lake.query_with_raw(filters, raw=raw)
    else:
        df = lake.query(filters, level=level)
    if columns:
        wanted = [c.strip() for c in columns.split(",")]
        unknown = [c for c in wanted if c not in df.columns]
        if unknown:
            raise click.UsageError(
                f"unknown column(s) {unknown}; columns: {', '.join(map(str, df.columns))}"
            )
        df = df[wanted]
    elif fmt == "table" and level == "series":
        keep = [
            "series_instance_uid",
            "modality",
            "manufacturer",
            "model",
            "n_instances",
            "slice_thickness",
            "convolution_kernel",
            "n_stacks",
            "raw_sha256",
        ]
        df = df[[c for c in keep if c in df.columns]]
    _show(df, fmt)


@cli.command()
@click.argument("conditions", nargs=-1)
@lake_option
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False))
@click.option(
    "--flat", is_flag=True, help="All files in one folder instead of study/series folders."
)
def export(conditions: tuple[str, ...], lake_url: str | None, out_dir: str, flat: bool) -> None:
    """Regenerate DICOM files of the series matching FIELD=VALUE conditions."""
    from imagelake.index import parse_filters

    lake = _lake(lake_url)
    report = lake.export(
        out_dir, parse_filters(list(conditions)), layout="flat" if flat else "series"
    )
    click.echo(f"{report} to {out_dir}")


@cli.command()
@lake_option
@click.option("--all", "show_all", is_flag=True, help="Include acknowledged alerts.")
@format_option
def alerts(lake_url: str | None, show_all: bool, fmt: str) -> None:
    """Alerts: unknown scanner models or software versions, and more."""
    df = _lake(lake_url).alerts(None if show_all else "open")
    if fmt == "table" and not df.empty:
        df = df[["kind", "message", "count", "first_seen", "last_seen", "status"]]
    _show(df, fmt)


@cli.command(name="quarantine")
@lake_option
@format_option
def quarantine_cmd(lake_url: str | None, fmt: str) -> None:
    """Inputs that could not be ingested, with their reasons."""
    df = _lake(lake_url).quarantined()
    if fmt == "table" and not df.empty:
        df = df[["source", "error", "reason", "path"]]
    _show(df, fmt)


@cli.command()
@lake_option
def verify(lake_url: str | None) -> None:
    """Check every stored object against its sha256 manifest (exit 1 on any problem)."""
    problems = _lake(lake_url).verify()
    for p in problems:
        click.echo(str(p))
    click.echo(f"{len(problems)} problem(s)" if problems else "all stores intact")
    sys.exit(1 if problems else 0)


@cli.group()
def audit() -> None:
    """The tamper-evident audit log."""


@audit.command(name="verify")
@lake_option
def audit_verify(lake_url: str | None) -> None:
    """Check the audit log's hash chain (exit 1 if any line was edited, removed or moved)."""
    report = _lake(lake_url).audit.verify(raise_error=False)
    click.echo(str(report))
    sys.exit(0 if report.ok else 1)


@audit.command(name="show")
@lake_option
@click.option("--action", default=None)
def audit_show(lake_url: str | None, action: str | None) -> None:
    """Print audit entries."""
    for entry in _lake(lake_url).audit.entries(action=action):
        click.echo(
            f"{entry.seq:>6} {entry.time} {entry.user:<12} {entry.action:<16} {', '.join(entry.objects)[:80]}"
        )


@cli.group()
def scanners() -> None:
    """The knowledge base of known scanners."""


@scanners.command(name="list")
@lake_option
def scanners_list(lake_url: str | None) -> None:
    """Known scanners and software versions."""
    from imagelake.knowledge import list_scanners

    for entry in list_scanners(_lake(lake_url).db):
        versions = ", ".join(v.version for v in entry.software_versions) or "(any version)"
        click.echo(f"{entry.manufacturer} | {entry.model} | {entry.modality or ''} | {versions}")


@scanners.command(name="add")
@lake_option
@click.option("--manufacturer", required=True)
@click.option("--model", "model_name", required=True)
@click.option("--modality", default=None)
@click.option("--software-version", "versions", multiple=True)
def scanners_add(
    lake_url: str | None,
    manufacturer: str,
    model_name: str,
    modality: str | None,
    versions: tuple[str, ...],
) -> None:
    """Add a scanner (or software versions of a known one) to the knowledge base."""
    from imagelake.knowledge import add_scanner

    add_scanner(
        _lake(lake_url).db, manufacturer, model_name, modality=modality, software_versions=versions
    )
    click.echo(f"known: {manufacturer} {model_name} {', '.join(versions)}")


@scanners.command(name="sync")
@lake_option
def scanners_sync(lake_url: str | None) -> None:
    """Reload the knowledge base file (catalog/scanners.yaml) into the lake."""
    from imagelake.knowledge import sync

    click.echo(str(sync(_lake(lake_url).db)))


@scanners.command(name="export")
@lake_option
def scanners_export(lake_url: str | None) -> None:
    """Print the lake's knowledge base as YAML."""
    from imagelake.knowledge import to_yaml

    click.echo(to_yaml(_lake(lake_url).db), nl=False)


@cli.group()
def raw() -> None:
    """Raw scanner files (k-space, projections, RF, opaque vendor files)."""


_RAW_COLUMNS = [
    "sha256",
    "format",
    "label",
    "modality",
    "manufacturer",
    "model",
    "software_version",
    "acquired_at",
    "size",
    "arrays",
    "series_instance_uid",
]


def _short_raw(df: pd.DataFrame, fmt: str) -> pd.DataFrame:
    if fmt != "table" or df.empty:
        return df
    df = df[[c for c in _RAW_COLUMNS if c in df.columns]].copy()
    df["sha256"] = df["sha256"].str[:16]
    df = df.rename(columns={"series_instance_uid": "descendants"})
    df["descendants"] = df["descendants"].map(len)
    return df


@raw.command(name="list")
@click.argument("conditions", nargs=-1)
@lake_option
@click.option(
    "--descendant",
    "descendant_conditions",
    multiple=True,
    help="Keep raw files with a descendant series matching FIELD=VALUE (e.g. SliceThickness=1).",
)
@format_option
def raw_list(
    conditions: tuple[str, ...],
    lake_url: str | None,
    descendant_conditions: tuple[str, ...],
    fmt: str,
) -> None:
    """Raw files matching FIELD=VALUE conditions (format=ismrmrd model=Skyra...)."""
    from imagelake.index import parse_filters

    lake = _lake(lake_url)
    desc = parse_filters(list(descendant_conditions)) if descendant_conditions else None
    df = lake.query_raw(parse_filters(list(conditions)), descendants=desc)
    _show(_short_raw(df, fmt), fmt)


@raw.command(name="show")
@click.argument("sha256")
@lake_option
def raw_show(sha256: str, lake_url: str | None) -> None:
    """One raw file: metadata, arrays, descendants."""
    lake = _lake(lake_url)
    ds = lake.open_raw(sha256)
    click.echo(str(ds))
    desc = lake.descendants(sha256)
    click.echo(f"descendants ({len(desc)}):")
    for row in desc.itertuples():
        click.echo(f"  {row.series_instance_uid} {row.modality} {row.method} {row.confidence:.3f}")


@raw.command(name="get")
@click.argument("sha256")
@lake_option
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False))
@click.option("--list", "list_files", is_flag=True, help="Print every file written.")
def raw_get(sha256: str, lake_url: str | None, out_dir: str, list_files: bool) -> None:
    """Write a raw file's original bytes (verified by sha256) into OUT/<sha256 prefix>/."""
    paths = _lake(lake_url).restore_raw(sha256, out_dir)
    for path in paths if list_files else []:
        click.echo(str(path))
    folder = paths[0].parent if len(paths) == 1 else os.path.commonpath(paths)
    click.echo(f"{len(paths)} file(s) restored byte-exact (sha256 verified) in {folder}")


@cli.group(invoke_without_command=True)
@lake_option
@click.option(
    "--accept-at", "accept_at", type=float, default=None, help="Auto-accept threshold (0.95)."
)
@click.option(
    "--review-at", "review_at", type=float, default=None, help="Review-queue threshold (0.5)."
)
@click.pass_context
def link(
    ctx: click.Context, lake_url: str | None, accept_at: float | None, review_at: float | None
) -> None:
    """Link raw files to their DICOM descendants (run without a subcommand)."""
    ctx.obj = {"lake_url": lake_url}
    if ctx.invoked_subcommand is None:
        click.echo(str(_lake(lake_url).link(accept=accept_at, review=review_at)))
    elif accept_at is not None or review_at is not None:
        raise click.UsageError("--accept-at/--review-at apply to `imagelake link` itself")


def _group_lake(lake_url: str | None) -> Any:
    """The lake named on the subcommand, else on the group (`imagelake link --lake X list`)."""
    ctx = click.get_current_context()
    parent = (ctx.parent.obj or {}) if ctx.parent is not None else {}
    return _lake(lake_url or parent.get("lake_url"))


def _short_links(df: pd.DataFrame, fmt: str) -> pd.DataFrame:
    if fmt != "table" or df.empty:
        return df
    df = df[
        [
            "link_id",
            "raw_sha256",
            "format",
            "series_instance_uid",
            "modality",
            "method",
            "confidence",
            "status",
            "decided_by",
        ]
    ].copy()
    df["raw_sha256"] = df["raw_sha256"].str[:16]
    df["confidence"] = df["confidence"].round(3)
    return df


@link.command(name="list")
@lake_option
@click.option(
    "--status", type=click.Choice(["accepted", "proposed", "rejected", "all"]), default="all"
)
@format_option
def link_list(lake_url: str | None, status: str, fmt: str) -> None:
    """The link table."""
    df = _group_lake(lake_url).links(None if status == "all" else status)
    _show(_short_links(df, fmt), fmt)


@link.command(name="review")
@lake_option
@click.option("--accept", "accept_ids", type=int, multiple=True, help="Accept link ID.")
@click.option("--reject", "reject_ids", type=int, multiple=True, help="Reject link ID.")
@click.option("--note", default=None, help="Why (kept with the link).")
@click.option("--evidence", "show_evidence", is_flag=True, help="Show each link's evidence.")
@format_option
def link_review(
    lake_url: str | None,
    accept_ids: tuple[int, ...],
    reject_ids: tuple[int, ...],
    note: str | None,
    show_evidence: bool,
    fmt: str,
) -> None:
    """The review queue; --accept/--reject ID record a decision (who and when, audited)."""
    both = sorted(set(accept_ids) & set(reject_ids))
    if both:
        raise click.UsageError(f"link {both[0]} cannot be both accepted and rejected")
    if note and not (accept_ids or reject_ids):
        raise click.UsageError("--note goes with --accept or --reject")
    lake = _group_lake(lake_url)
    for link_id in accept_ids:
        d = lake.review(link_id, accept=True, note=note)
        click.echo(f"link {link_id}: {d['previous']} -> {d['status']}")
    for link_id in reject_ids:
        d = lake.review(link_id, accept=False, note=note)
        click.echo(f"link {link_id}: {d['previous']} -> {d['status']}")
    if accept_ids or reject_ids:
        return
    df = lake.review_queue()
    if show_evidence and fmt == "table":
        for row in df.itertuples():
            click.echo(
                f"link {row.link_id}: raw {row.raw_sha256[:16]} -> {row.series_instance_uid}"
            )
            for item in row.evidence:
                if "rule" in item:
                    click.echo(f"    {item['rule']:<22} {item['weight']:+.2f}  {item['detail']}")
                elif "reason" in item:
                    click.echo(f"    => {item['reason']}")
        return
    _show(_short_links(df, fmt), fmt)


@link.command(name="add")
@click.argument("sha256")
@click.argument("series_instance_uid")
@lake_option
@click.option("--note", default="", help="Why (kept with the link).")
def link_add(sha256: str, series_instance_uid: str, lake_url: str | None, note: str) -> None:
    """Link a raw file to a series by hand (method manual; audited)."""
    link_id = _group_lake(lake_url).add_link(sha256, series_instance_uid, note=note)
    click.echo(f"link {link_id}: manual, accepted")


@cli.command()
@click.argument("sha256")
@lake_option
@click.option("--method", default=None, help="Reconstruction (default: the first for the format).")
def recon(sha256: str, lake_url: str | None, method: str | None) -> None:
    """Reconstruct a raw file with a reference method; ingest and link the DICOM series."""
    click.echo(str(_lake(lake_url).reconstruct(sha256, method)))


def _master_key(key_file: str | None) -> Any:
    from imagelake.replicate import MasterKey

    if key_file:
        return MasterKey.from_file(key_file)
    return MasterKey.from_env()


master_key_option = click.option(
    "--key-file",
    default=None,
    help="Master key file (else IMAGELAKE_MASTER_KEY and IMAGELAKE_MASTER_KEY_ID).",
)


@cli.command()
@click.argument("dest_url")
@lake_option
@master_key_option
@click.option("--no-progress", is_flag=True, help="Do not show progress bars.")
def push(dest_url: str, lake_url: str | None, key_file: str | None, no_progress: bool) -> None:
    """Copy the lake, encrypted client-side, to DEST_URL (s3://..., any fsspec URL).

    Resumable: run it again after an interruption; every object is verified."""
    lake = _lake(lake_url)
    with _progress(not no_progress) as progress:
        report = lake.push(dest_url, key=_master_key(key_file), progress=progress)
    click.echo(str(report))


@cli.command()
@click.argument("src_url")
@click.argument("dest_dir", type=click.Path(file_okay=False))
@master_key_option
@click.option("--no-progress", is_flag=True, help="Do not show progress bars.")
def pull(src_url: str, dest_dir: str, key_file: str | None, no_progress: bool) -> None:
    """Decrypt an encrypted copy at SRC_URL into the local lake DEST_DIR (byte-identical)."""
    from imagelake.audit import AuditLog
    from imagelake.replicate import pull as pull_lake

    key = _master_key(key_file)
    with _progress(not no_progress) as progress:
        report = pull_lake(src_url, dest_dir, key=key, progress=progress)
    lake = _lake(dest_dir)
    log: AuditLog = lake.audit
    log.record(
        "pull",
        user=lake.settings.user,
        objects=[f"remote:{src_url}"],
        details={"key_id": key.key_id, "objects": report.objects, "written": report.written},
    )
    click.echo(str(report))


def _vault_key(key_file: str | None) -> Any:
    """The vault's master key: a key file, else IMAGELAKE_VAULT_KEY, else a passphrase."""
    from imagelake.vault import VAULT_KEY_ENV, Passphrase, VaultKey

    if key_file:
        return VaultKey.from_file(key_file)
    if os.environ.get(VAULT_KEY_ENV):
        return VaultKey.from_env()
    return Passphrase(click.prompt("vault passphrase", hide_input=True))


def _open_vault(path: str, key_file: str | None, *, create: bool, user: str) -> Any:
    from imagelake.vault import Vault

    key = _vault_key(key_file)
    from imagelake.vault import HEADER_FILE

    if create and not os.path.exists(os.path.join(path, HEADER_FILE)):
        return Vault.create(path, key, permitted_users=[user])
    return Vault.open(path, key)


vault_key_option = click.option(
    "--vault-key-file",
    "key_file",
    default=None,
    help="The vault's key file (else IMAGELAKE_VAULT_KEY, else a passphrase prompt).",
)


@cli.command()
@click.argument("conditions", nargs=-1)
@lake_option
@click.option("--out", "out_url", required=True, help="The anonymized lake to write (or add to).")
@click.option("--policy", default=None, help="De-identification policy (YAML file).")
@click.option(
    "--vault", "vault_path", default=None, help="Seal pseudonym -> identity in this vault."
)
@vault_key_option
def anonymize(
    conditions: tuple[str, ...],
    lake_url: str | None,
    out_url: str,
    policy: str | None,
    vault_path: str | None,
    key_file: str | None,
) -> None:
    """De-identify the series matching FIELD=VALUE conditions into another lake (PS3.15
    Basic Profile with keyed pseudonyms by default; re-running adds only new data)."""
    from imagelake.index import parse_filters

    lake = _lake(lake_url)
    vault = None
    if vault_path:
        vault = _open_vault(vault_path, key_file, create=True, user=lake.settings.user)
    click.echo(
        str(lake.anonymize(out_url, parse_filters(list(conditions)), policy=policy, vault=vault))
    )


@cli.group()
def vault() -> None:
    """The re-identification vault (pseudonym -> identity, sealed with AES-256-GCM)."""


@vault.command(name="lookup")
@click.argument("pseudonym")
@click.option("--vault", "vault_path", required=True, help="The vault folder or URL.")
@vault_key_option
@lake_option
def vault_lookup(
    pseudonym: str, vault_path: str, key_file: str | None, lake_url: str | None
) -> None:
    """Show the identity behind a pseudonym (permitted users only; audited in the lake)."""
    from imagelake.vault import VaultError

    lake = _lake(lake_url)
    opened = _open_vault(vault_path, key_file, create=False, user=lake.settings.user)
    try:
        identity, event = opened.lookup(pseudonym, user=lake.settings.user)
    except VaultError as exc:
        if exc.event is not None:  # refusals are audited too
            lake.audit.record(**exc.event)
        raise
    lake.audit.record(**event)
    for key, value in identity.items():
        click.echo(f"{key}: {value}")


@cli.command()
@lake_option
@click.option("--data", "data_dir", default="./demo-data", show_default=True)
@click.option("--size", type=click.Choice(["full", "small"]), default="full", show_default=True)
@click.option("--no-compute", is_flag=True, help="Skip the Dask computation.")
def demo(lake_url: str | None, data_dir: str, size: str, no_compute: bool) -> None:
    """Build the demo lake from synthetic + real data, show it, and compute over it."""
    from imagelake.demo import run_demo

    with _progress() as progress:
        run_demo(
            lake_url or "./lake",
            data_dir=data_dir,
            size=size,
            compute=not no_compute,
            echo=click.echo,
            progress=progress,
        )


def main(args: list[str] | None = None) -> None:
    """Entry point: errors of ours are one clear line, not a traceback."""
    try:
        cli.main(args=args, prog_name="imagelake", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        sys.exit(130)
    except ImagelakeError as exc:
        # plain echo: rich would wrap the line and read "[s3]" in an install hint as markup
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except OSError as exc:  # a path the user gave that cannot be read or written
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
