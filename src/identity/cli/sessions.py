"""`identity sessions`: support staff look at and end a user's sessions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from identity.cli.output import JsonOpt, emit_json
from identity.cli.runtime import with_services
from identity.container import Services
from identity.services.sessions import ListedSession

app = typer.Typer(help="A user's sessions (support).", no_args_is_help=True)

LoginOption = Annotated[
    str, typer.Option("--login", help="The user's login (any spelling that canonicalises to it).")
]
HEADER = f"{'SESSION':<36}  {'CREATED':<25}  {'LAST USED':<25}  {'EXPIRES':<25}  {'IP':<15}  USER AGENT"


def _when(value: datetime) -> str:
    return value.isoformat(timespec="seconds")


def session_json(listed: ListedSession) -> dict[str, object]:
    s = listed.session
    return {
        "id": str(s.id),
        "created_at": s.created_at.isoformat(),
        "last_used_at": s.last_used_at.isoformat(),
        "expires_at": listed.expires_at.isoformat(),
        "ip": s.ip,
        "user_agent": s.user_agent,
    }


@app.command("list")
def list_sessions(login: LoginOption, json_output: JsonOpt = False) -> None:
    """Show the user's live sessions, newest first."""

    async def action(services: Services) -> None:
        user, sessions = await services.sessions.list_for_login(login)
        if json_output:
            emit_json(
                {
                    "user": {"id": user.id, "login": user.login},
                    "sessions": [session_json(listed) for listed in sessions],
                }
            )
            return
        typer.echo(f"user {user.login} ({user.id}): {len(sessions)} live session(s)")
        if not sessions:
            return
        typer.echo(HEADER)
        for listed in sessions:
            s = listed.session
            typer.echo(
                f"{s.id!s:<36}  {_when(s.created_at):<25}  {_when(s.last_used_at):<25}  "
                f"{_when(listed.expires_at):<25}  {s.ip or '-':<15}  {s.user_agent or '-'}"
            )

    with_services(action)


@app.command("revoke")
def revoke_sessions(
    login: LoginOption,
    session: Annotated[str | None, typer.Option("--session", help="End this session id.")] = None,
    all_sessions: Annotated[bool, typer.Option("--all", help="End every session of the user.")] = False,
) -> None:
    """End one session (--session ID) or all of them (--all). Their tokens stop working at once."""
    if (session is None) == (not all_sessions):
        raise typer.BadParameter("give exactly one of --session ID or --all")

    async def action(services: Services) -> None:
        count = await services.sessions.revoke_for_login(login, session)
        typer.echo(f"revoked {count} session(s)")

    with_services(action)
