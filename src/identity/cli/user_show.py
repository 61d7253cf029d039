"""Rendering of `identity users show`: a block for people, a document for `--json`."""

from __future__ import annotations

from datetime import datetime

import typer

from identity.cli.output import when
from identity.services.sessions import ListedSession
from identity.services.user_overview import UserOverview


def _at(value: datetime | None) -> str:
    return "-" if value is None else value.isoformat(timespec="seconds")


def overview_json(
    overview: UserOverview, sessions: list[dict[str, object]], max_failed_logins: int
) -> dict[str, object]:
    user, facts = overview.user, overview.facts
    return {
        "id": str(user.id),
        "login": user.login,
        "email": user.email,
        "created_at": when(user.created_at),
        "disabled": user.disabled_at is not None,
        "disabled_at": when(user.disabled_at),
        "locked": facts.failed_logins >= max_failed_logins,
        "failed_logins": facts.failed_logins,
        "max_failed_logins": max_failed_logins,
        "mfa": facts.mfa_state,
        "recovery_codes_left": facts.recovery_codes_left,
        "mfa_locked_at": when(facts.mfa_locked_at),
        "roles": [
            {"role_id": str(a.role_id), "name": a.role_name, "expires_at": when(a.expires_at)}
            for a in overview.roles
        ],
        "sessions": sessions,
        "last_logins": [
            {
                "at": when(event.login_at),
                "outcome": event.outcome.value,
                "ip": event.ip,
                "user_agent": event.user_agent,
                "session_id": None if event.session_id is None else str(event.session_id),
            }
            for event in overview.last_logins
        ],
    }


def echo_overview(overview: UserOverview, sessions: list[ListedSession], max_failed_logins: int) -> None:
    user, facts = overview.user, overview.facts
    locked = facts.failed_logins >= max_failed_logins
    typer.echo(f"login:          {user.login}")
    typer.echo(f"id:             {user.id}")
    typer.echo(f"email:          {user.email or '-'}")
    typer.echo(f"created:        {_at(user.created_at)}")
    typer.echo(f"disabled:       {'yes, since ' + _at(user.disabled_at) if user.disabled_at else 'no'}")
    typer.echo(
        f"locked:         {'yes' if locked else 'no'} ({facts.failed_logins}/{max_failed_logins} failures)"
    )
    typer.echo(f"mfa:            {facts.mfa_state} ({facts.recovery_codes_left} recovery code(s) left)")
    if facts.mfa_locked_at is not None:
        typer.echo(f"mfa locked:     since {_at(facts.mfa_locked_at)} (identity users mfa-reset lifts it)")
    typer.echo(f"roles:          {len(overview.roles)}")
    for a in overview.roles:
        typer.echo(f"  {a.role_name:<32} expires {_at(a.expires_at) if a.expires_at else 'never'}")
    typer.echo(f"live sessions:  {len(sessions)}")
    for listed in sessions:
        s = listed.session
        typer.echo(f"  {s.id}  last used {_at(s.last_used_at)}  from {s.ip or '-'}  {s.user_agent or '-'}")
    typer.echo(f"last logins:    {len(overview.last_logins)}")
    for event in overview.last_logins:
        typer.echo(f"  {_at(event.login_at)}  {event.outcome.value:<20} {event.ip or '-'}")
