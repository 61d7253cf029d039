"""`identity users`: bootstrap a superuser, see what a user may do, unlock an account."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from identity.cli.runtime import with_services
from identity.container import Services

app = typer.Typer(help="Users: bootstrap an admin, inspect permissions, unlock.", no_args_is_help=True)
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
def permissions(login: LoginOpt) -> None:
    """The user's effective permissions and the roles granting each."""

    async def action(services: Services) -> None:
        user, effective = await services.user_admin.permissions(login)
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
