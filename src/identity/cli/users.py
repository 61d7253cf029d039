"""`identity users`: bootstrap a superuser, see what a user may do, unlock an account."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from identity.cli.output import JsonOpt, emit_json
from identity.cli.runtime import with_services
from identity.cli.sessions import session_json
from identity.cli.user_show import echo_overview, overview_json
from identity.container import Services

app = typer.Typer(
    help="Users: bootstrap an admin, inspect an account and its permissions, unlock, reset MFA.",
    no_args_is_help=True,
)
LoginOpt = Annotated[str, typer.Option("--login", help="The user's login.")]


def _read_password() -> str:
    """A hidden prompt asked twice on a terminal; otherwise the first line of stdin."""
    if sys.stdin.isatty():
        return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))
    line = sys.stdin.readline()
    return line.removesuffix("\n").removesuffix("\r")


@app.command("create-superuser")
def create_superuser(login: LoginOpt) -> None:
    """Create an account holding the built-in superuser role."""
    password = _read_password()
    if not password:
        raise typer.BadParameter("a password is required (prompt, or the first line of standard input)")

    async def action(services: Services) -> None:
        user = await services.user_admin.create_superuser(login, password)
        typer.echo(f"created superuser {user.login} ({user.id})")

    with_services(action)


@app.command()
def show(
    login: LoginOpt,
    last_logins: Annotated[
        int, typer.Option("--last-logins", min=0, max=100, help="Login attempts shown.")
    ] = 10,
    json_output: JsonOpt = False,
) -> None:
    """The account at a glance: state, lockout, MFA, roles, live sessions, last logins."""

    async def action(services: Services) -> None:
        overview = await services.user_admin.overview(login, last_logins=last_logins)
        _, sessions = await services.sessions.list_for_login(login)
        max_failed = services.settings.max_failed_logins
        if json_output:
            emit_json(overview_json(overview, [session_json(s) for s in sessions], max_failed))
        else:
            echo_overview(overview, sessions, max_failed)

    with_services(action)


@app.command()
def permissions(login: LoginOpt, json_output: JsonOpt = False) -> None:
    """The user's effective permissions and the roles granting each."""

    async def action(services: Services) -> None:
        user, effective = await services.user_admin.permissions(login)
        if json_output:
            emit_json(
                {
                    "user": {"id": str(user.id), "login": user.login},
                    "permissions": [
                        {"permission": item.permission, "granted_by": list(item.granted_by)}
                        for item in effective
                    ],
                }
            )
            return
        if not effective:
            typer.echo(f"{user.login} holds no permission")
            return
        for item in effective:
            typer.echo(f"{item.permission:<48} {', '.join(item.granted_by)}")

    with_services(action)


@app.command()
def unlock(login: LoginOpt) -> None:
    """Reset the failed-login counter that locks an account."""

    async def action(services: Services) -> None:
        user = await services.user_admin.unlock(login)
        typer.echo(f"unlocked {user.login}")

    with_services(action)


@app.command()
def status(login: LoginOpt) -> None:
    """Whether an account is locked or disabled (a locked account's logins answer like an unknown login's)."""

    async def action(services: Services) -> None:
        user, failed = await services.user_admin.failed_logins(login)
        limit = services.settings.max_failed_logins
        lock = "locked" if failed >= limit else "not locked"
        disabled = "disabled" if user.disabled_at is not None else "enabled"
        typer.echo(f"{user.login}: {disabled}, {lock} ({failed} consecutive failed logins, limit {limit})")

    with_services(action)


def _set_disabled(login: str, disabled: bool) -> None:
    async def action(services: Services) -> None:
        user, ended = await services.user_admin.set_disabled(login, disabled=disabled)
        outcome = f"disabled {user.login}; {ended} session(s) ended" if disabled else f"enabled {user.login}"
        typer.echo(outcome)

    with_services(action)


@app.command()
def disable(login: LoginOpt) -> None:
    """Disable an account: every session ends now and it can no longer log in or hold permissions."""
    _set_disabled(login, disabled=True)


@app.command()
def enable(login: LoginOpt) -> None:
    """Enable a disabled account again."""
    _set_disabled(login, disabled=False)


@app.command("mfa-reset")
def mfa_reset(login: LoginOpt) -> None:
    """Lost device: remove TOTP and recovery codes, end every session (recorded)."""

    async def action(services: Services) -> None:
        user, removed, ended = await services.mfa.reset_for_login(login)
        what = "removed TOTP and recovery codes" if removed else "no TOTP was set up"
        typer.echo(f"{user.login}: {what}; {ended} session(s) ended")

    with_services(action)
