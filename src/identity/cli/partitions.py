"""`identity partitions`: monthly login_history partitions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from identity.cli.output import JsonOpt, emit_json, when
from identity.cli.progress import progress_on_stderr
from identity.cli.runtime import with_services
from identity.container import Services

app = typer.Typer(help="login_history partitions (one per month, plus DEFAULT).", no_args_is_help=True)


def _day(value: datetime | None) -> str:
    return "-" if value is None else value.date().isoformat()


@app.command()
def ensure(
    months_ahead: Annotated[
        int | None,
        typer.Option(
            "--months-ahead", help="Months after the current one (default IDENTITY_PARTITION_MONTHS_AHEAD)."
        ),
    ] = None,
) -> None:
    """Create the missing monthly partitions from the current month on, moving rows
    of those months out of DEFAULT. Safe to run while servers run it too."""

    async def action(services: Services) -> None:
        with progress_on_stderr("partitions ensure") as progress:
            created = await services.partitions.ensure(months_ahead, progress=progress)
        for item in created:
            span = f"[{_day(item.start)}, {_day(item.end)})"
            typer.echo(f"created {item.name} {span}, moved {item.moved_rows} row(s) out of DEFAULT")
        if not created:
            typer.echo("nothing to do: every month is covered")

    with_services(action)


@app.command("list")
def list_partitions(json_output: JsonOpt = False) -> None:
    """Every partition with its range [from, to) and its exact row count."""

    async def action(services: Services) -> None:
        found = await services.partitions.list_partitions()
        if json_output:
            emit_json(
                [
                    {
                        "name": p.name,
                        "default": p.is_default,
                        "from": when(p.start),
                        "to": when(p.end),
                        "rows": p.rows,
                    }
                    for p in found
                ]
            )
            return
        typer.echo(f"{'PARTITION':<24}  {'FROM':<10}  {'TO':<10}  ROWS")
        for p in found:
            start, end = ("DEFAULT", "") if p.is_default else (_day(p.start), _day(p.end))
            typer.echo(f"{p.name:<24}  {start:<10}  {end:<10}  {p.rows}")

    with_services(action)


@app.command()
def prune(
    older_than: Annotated[
        int | None,
        typer.Option(
            "--older-than",
            help="Months kept before the current one (default IDENTITY_LOGIN_HISTORY_RETENTION_MONTHS).",
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only show what would be dropped.")] = False,
) -> None:
    """Detach and drop the monthly partitions past retention. Never DEFAULT."""

    async def action(services: Services) -> None:
        with progress_on_stderr("partitions prune") as progress:
            result = await services.partitions.prune(older_than, dry_run=dry_run, progress=progress)
        verb = "would drop" if result.dry_run else "dropped"
        for p in result.dropped:
            typer.echo(f"{verb} {p.name} [{_day(p.start)}, {_day(p.end)}), {p.rows} row(s)")
        if not result.dropped:
            typer.echo(f"nothing to drop: no partition ends before {_day(result.cutoff)}")

    with_services(action)
