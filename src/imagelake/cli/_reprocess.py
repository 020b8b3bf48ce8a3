"""``imagelake reprocess`` and ``imagelake viability``: legacy raw files through emulator VMs."""

from __future__ import annotations

import json

import click

from imagelake.cli._main import _lake, _show, cli, format_option, lake_option


def _param(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise click.BadParameter(f"{text!r}: give KEY=VALUE (VALUE as JSON, or plain text)")
    key, value = text.split("=", 1)
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


@cli.command()
@click.argument("raw", nargs=-1, required=True)
@lake_option
@click.option(
    "--emulator",
    default="auto",
    show_default=True,
    help="auto (the knowledge base's emulator for the file's scanner software) or ID@VERSION.",
)
@click.option(
    "--param", "params", multiple=True, help="KEY=VALUE for the emulator's program (repeatable)."
)
@click.option("--timeout", type=float, default=None, help="Hard VM limit in seconds.")
def reprocess(
    raw: tuple[str, ...],
    lake_url: str | None,
    emulator: str,
    params: tuple[str, ...],
    timeout: float | None,
) -> None:
    """Reconstruct RAW files (sha256 or a unique prefix) in their emulator VM; the DICOM
    outputs are ingested and linked to the raw file with provenance."""
    lake = _lake(lake_url)
    settings = dict(_param(p) for p in params)
    failed = 0
    for sha in raw:
        try:
            report = lake.reprocess(sha, emulator=emulator, params=settings, timeout=timeout)
        except Exception as exc:
            from imagelake.errors import ImagelakeError

            if not isinstance(exc, ImagelakeError) or len(raw) == 1:
                raise
            click.echo(f"error: {sha}: {exc}", err=True)
            failed += 1
            continue
        click.echo(str(report))
    if failed:
        raise SystemExit(2)


@cli.command()
@lake_option
@click.option("--no-alerts", is_flag=True, help="Do not raise raw_not_viable alerts, only report.")
@format_option
def viability(lake_url: str | None, no_alerts: bool, fmt: str) -> None:
    """Every raw file with its path to pixels: reader, emulator, arrays only, or none."""
    df = _lake(lake_url).viability(alert=not no_alerts)
    if fmt == "table":
        df = df.assign(sha256=df["sha256"].str[:12])
    _show(df, fmt)
