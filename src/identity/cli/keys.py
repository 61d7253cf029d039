"""`identity keys`: the signing key ring."""

from __future__ import annotations

import typer

from identity.cli.output import JsonOpt, emit_json, when
from identity.cli.runtime import with_services
from identity.container import Services

app = typer.Typer(help="Signing keys (RS256 key ring).", no_args_is_help=True)


@app.command("list")
def list_keys(json_output: JsonOpt = False) -> None:
    """Show every key with its state and until when it stays published."""

    async def action(services: Services) -> None:
        keys = await services.keys.list_keys()
        if json_output:
            emit_json(
                [
                    {
                        "kid": key.kid,
                        "state": key.state,
                        "created_at": when(key.created_at),
                        "activated_at": when(key.activated_at),
                        "publish_until": when(key.publish_until),
                    }
                    for key in keys
                ]
            )
            return
        typer.echo(f"{'KID':<18} {'STATE':<8} {'CREATED':<25} PUBLISHED UNTIL")
        for key in keys:
            until = (
                "-"
                if key.state != "retired"
                else (key.publish_until.isoformat() if key.publish_until else "-")
            )
            typer.echo(
                f"{key.kid:<18} {key.state:<8} {key.created_at.isoformat(timespec='seconds'):<25} {until}"
            )

    with_services(action)


@app.command()
def rotate() -> None:
    """Promote the pre-published next key to active, retire the old one, make a new next key."""

    async def action(services: Services) -> None:
        # Open the active key first: a wrong secret must stop here, before a new key
        # sealed with it enters the ring (it would sign after the next rotation).
        await services.keys.reload()
        await services.keys.ensure_ring()
        result = await services.keys.rotate()
        typer.echo(f"active: {result.active_kid}")
        typer.echo(f"next:   {result.next_kid}")
        if result.retired_kid:
            typer.echo(f"retired (still published until its tokens expire): {result.retired_kid}")

    # New private keys are sealed with the master secret: this one command needs it.
    with_services(action, needs_secret=True)
