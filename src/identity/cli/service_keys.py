"""`identity service-keys`: credentials of peer services for CheckPermission."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

import typer

from identity.cli.output import JsonOpt, emit_json, when
from identity.cli.runtime import with_services
from identity.container import Services

app = typer.Typer(help="Service keys for peers calling CheckPermission.", no_args_is_help=True)


@app.command()
def create(name: Annotated[str, typer.Argument(help="The peer service's name, e.g. catalog.")]) -> None:
    """Make a new key for NAME and print it once (only its hash is stored)."""

    async def action(services: Services) -> None:
        issued = await services.service_keys.create(name)
        typer.echo(f"service key {issued.key.id} for {name}; it is shown only now:", err=True)
        typer.echo(issued.secret)

    with_services(action)


@app.command("list")
def list_keys(
    name: Annotated[str | None, typer.Argument(help="Only the keys of this name.")] = None,
    json_output: JsonOpt = False,
) -> None:
    """Keys with their state (the secrets themselves are never stored)."""

    async def action(services: Services) -> None:
        if json_output:
            emit_json(
                [
                    {
                        "name": key.name,
                        "id": str(key.id),
                        "created_at": when(key.created_at),
                        "revoked_at": when(key.revoked_at),
                    }
                    for key in await services.service_keys.list(name)
                ]
            )
            return
        typer.echo(f"{'NAME':<24} {'ID':<36} {'CREATED':<25} REVOKED")
        for key in await services.service_keys.list(name):
            revoked = key.revoked_at.isoformat(timespec="seconds") if key.revoked_at else "-"
            created = key.created_at.isoformat(timespec="seconds")
            typer.echo(f"{key.name:<24} {key.id!s:<36} {created:<25} {revoked}")

    with_services(action)


@app.command()
def revoke(
    name: Annotated[str, typer.Argument(help="The peer service's name.")],
    key_id: Annotated[
        UUID | None, typer.Option("--id", help="Only this key (default: every key of NAME).")
    ] = None,
) -> None:
    """Revoke the keys of NAME (or one of them); they stop working at once on every server."""

    async def action(services: Services) -> None:
        count = await services.service_keys.revoke(name, key_id)
        typer.echo(f"revoked {count} key(s) of {name}")

    with_services(action)
