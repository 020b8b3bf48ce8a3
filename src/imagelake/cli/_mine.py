"""``imagelake mine`` and ``imagelake measures``: thin commands over :meth:`Lake.mine`."""

from __future__ import annotations

import json

import click

from imagelake.cli._main import _lake, _progress, _show

__all__ = ["measures", "mine", "register"]

# the same options as the other commands'; declared here because _main imports this module
# (mypy cannot type values taken from a module in the middle of an import cycle)
lake_option = click.option(
    "--lake", "lake_url", default=None, help="Lake URL (default: IMAGELAKE_LAKE or ./lake)."
)
format_option = click.option(
    "--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table"
)


def _params(items: tuple[str, ...]) -> dict[str, object]:
    """``NAME=VALUE`` pairs; a value is read as JSON when it parses (numbers, lists, null)."""
    out: dict[str, object] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise click.UsageError(f"--param {item!r} is not NAME=VALUE (e.g. threshold=-400)")
        try:
            out[key.strip()] = json.loads(text)
        except json.JSONDecodeError:
            out[key.strip()] = text
    return out


@click.command()
@click.argument("words", nargs=-1)
@lake_option
@click.option(
    "--scheduler",
    default=None,
    help="Dask scheduler address (tcp://host:8786); default IMAGELAKE_SCHEDULER, "
    "DASK_SCHEDULER_ADDRESS, else a LocalCluster sized to this machine.",
)
@click.option(
    "--param", "params", multiple=True, help="Analysis parameter NAME=VALUE (repeatable)."
)
@click.option(
    "--stacks",
    type=click.Choice(["all", "main"]),
    default="all",
    show_default=True,
    help="Every image stack of a series, or stack 0 only.",
)
@click.option("--force", is_flag=True, help="Recompute measures whose inputs did not change.")
@click.option("--no-progress", is_flag=True, help="Do not show progress bars.")
@click.option("--list", "list_analyses", is_flag=True, help="List the analyses and exit.")
@format_option
def mine(
    words: tuple[str, ...],
    lake_url: str | None,
    scheduler: str | None,
    params: tuple[str, ...],
    stacks: str,
    force: bool,
    no_progress: bool,
    list_analyses: bool,
    fmt: str,
) -> None:
    """Run an analysis over the series matching FIELD=VALUE filters, on Dask, and store its
    measures with provenance (unchanged inputs are skipped).

    WORDS: an optional ANALYSIS first (a registered name such as series-stats, hu-histogram,
    body-mask, radiomics, raw-stats, or module:function; default series-stats), then
    filters (Modality=CT SliceThickness=0.5:1.5; raw-stats filters the raw table:
    format=ismrmrd).
    """
    from imagelake.index import parse_filters
    from imagelake.mining import analyses, get_analysis

    if list_analyses:
        import pandas as pd

        rows = []
        for name in analyses.names():
            found = get_analysis(name)
            rows.append(
                {
                    "name": name,
                    "version": found.version,
                    "takes": found.takes,
                    "modalities": ",".join(found.modalities) or "any",
                    "params": json.dumps(dict(found.params)),
                    "description": found.description,
                }
            )
        _show(pd.DataFrame(rows), fmt)
        return
    words_list = list(words)
    analysis = "series-stats"
    if words_list and "=" not in words_list[0]:
        analysis = words_list.pop(0)
    lake = _lake(lake_url)
    with _progress(not no_progress) as progress:
        report = lake.mine(
            analysis,
            parse_filters(words_list),
            params=_params(params),
            scheduler=scheduler,
            stacks=stacks,
            force=force,
            progress=progress,
        )
    if fmt == "table":
        click.echo(str(report))
    frame = report.frame.copy()
    if fmt == "table" and "series_instance_uid" in frame:
        frame["series_instance_uid"] = frame["series_instance_uid"].map(
            lambda s: s if not isinstance(s, str) or len(s) <= 24 else "…" + s[-23:]
        )
    _show(frame.dropna(axis=1, how="all"), fmt)


@click.command()
@lake_option
@click.option("--analysis", default=None, help="Only this analysis' measures.")
@click.option("--name", default=None, help="Only measures of this name.")
@click.option("--wide", is_flag=True, help="One row per series/stack, one column per measure.")
@format_option
def measures(
    lake_url: str | None, analysis: str | None, name: str | None, wide: bool, fmt: str
) -> None:
    """Derived measures with their provenance (filter series on them with
    `imagelake query measure.NAME=VALUE`)."""
    lake = _lake(lake_url)
    df = lake.measures(analysis, name=name, wide=wide)
    if not wide and fmt == "table" and not df.empty:
        df = df[
            [
                c
                for c in (
                    "series_instance_uid",
                    "stack_number",
                    "raw_sha256",
                    "tool",
                    "tool_version",
                    "name",
                    "value",
                    "unit",
                    "created_at",
                )
                if c in df
            ]
        ]
    _show(df, fmt)


def register(group: click.Group) -> None:
    """Add the mining commands to the ``imagelake`` command group."""
    group.add_command(mine)
    group.add_command(measures)
