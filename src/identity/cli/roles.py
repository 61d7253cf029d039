"""`identity roles`: roles, their permissions, and who holds them.

The operator is trusted: no permission or escalation checks apply at the command line."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer

from identity.cli.output import JsonOpt, emit_json
from identity.cli.runtime import with_services
from identity.container import Services
from identity.domain.permissions import Role, RolePatch
from identity.services.rbac import Actor

app = typer.Typer(help="Roles and their permissions; grant and revoke them.", no_args_is_help=True)
OPERATOR = Actor.OPERATOR

RoleArg = Annotated[str, typer.Argument(help="Role name or id.")]
LoginOpt = Annotated[str, typer.Option("--login", help="The user's login.")]
RoleOpt = Annotated[str, typer.Option("--role", help="Role name or id.")]


def role_json(role: Role) -> dict[str, object]:
    return {
        "id": str(role.id),
        "name": role.name,
        "description": role.description,
        "builtin": role.builtin,
        "permissions": list(role.permissions),
        "created_at": role.created_at.isoformat(),
        "updated_at": role.updated_at.isoformat(),
    }


def _echo_role(role: Role) -> None:
    typer.echo(f"id:          {role.id}")
    typer.echo(f"name:        {role.name}{'  (built-in)' if role.builtin else ''}")
    typer.echo(f"description: {role.description}")
    typer.echo(f"updated:     {role.updated_at.isoformat(timespec='seconds')}")
    typer.echo("permissions:")
    for permission in role.permissions:
        typer.echo(f"  {permission}")


@app.command("list")
def list_roles(json_output: JsonOpt = False) -> None:
    """Every role with its number of permissions."""

    async def action(services: Services) -> None:
        everything: list[Role] = []
        token = ""
        while True:
            roles, token = await services.roles.list_roles(OPERATOR, 200, token)
            everything.extend(roles)
            if not token:
                break
        if json_output:
            emit_json([role_json(role) for role in everything])
            return
        typer.echo(f"{'NAME':<32} {'ID':<36} {'PERMS':>5}  BUILT-IN")
        for role in everything:
            builtin = "yes" if role.builtin else ""
            typer.echo(f"{role.name:<32} {role.id!s:<36} {len(role.permissions):>5}  {builtin}")

    with_services(action)


@app.command()
def show(role: RoleArg, json_output: JsonOpt = False) -> None:
    """A role's details and permissions."""

    async def action(services: Services) -> None:
        found = await services.roles.find_role(OPERATOR, role)
        if json_output:
            emit_json(role_json(found))
        else:
            _echo_role(found)

    with_services(action)


@app.command()
def create(
    name: Annotated[str, typer.Argument(help="Unique role name.")],
    description: Annotated[str, typer.Option(help="What the role is for.")] = "",
    permission: Annotated[
        list[str] | None, typer.Option("--permission", "-p", help="A permission it carries (repeatable).")
    ] = None,
) -> None:
    """Create a role."""

    async def action(services: Services) -> None:
        _echo_role(await services.roles.create_role(OPERATOR, name, description, permission or []))

    with_services(action)


@app.command()
def update(
    role: RoleArg,
    name: Annotated[str | None, typer.Option(help="New name.")] = None,
    description: Annotated[str | None, typer.Option(help="New description.")] = None,
    permission: Annotated[
        list[str] | None, typer.Option("--permission", "-p", help="Replace the permissions (repeatable).")
    ] = None,
    add: Annotated[list[str] | None, typer.Option("--add-permission", help="Add one (repeatable).")] = None,
    remove: Annotated[
        list[str] | None, typer.Option("--remove-permission", help="Remove one (repeatable).")
    ] = None,
) -> None:
    """Change a role's name, description or permissions."""
    if permission and (add or remove):
        raise typer.BadParameter("use --permission alone, or --add-permission/--remove-permission")

    async def action(services: Services) -> None:
        current = await services.roles.find_role(OPERATOR, role)
        permissions: tuple[str, ...] | None = None
        if permission:
            permissions = tuple(permission)
        elif add or remove:
            permissions = tuple(sorted((set(current.permissions) | set(add or ())) - set(remove or ())))
        patch = RolePatch(name=name, description=description, permissions=permissions)
        _echo_role(await services.roles.update_role(OPERATOR, str(current.id), patch))

    with_services(action)


@app.command()
def delete(
    role: RoleArg,
    force: Annotated[bool, typer.Option("--force", help="Also remove its assignments.")] = False,
) -> None:
    """Delete a role (refused while assigned, unless --force)."""

    async def action(services: Services) -> None:
        found = await services.roles.find_role(OPERATOR, role)
        await services.roles.delete_role(OPERATOR, str(found.id), force)
        typer.echo(f"deleted role {found.name}")

    with_services(action)


@app.command()
def grant(
    login: LoginOpt,
    role: RoleOpt,
    expires_in: Annotated[
        int | None, typer.Option("--expires-in", min=1, help="Expire after this many seconds.")
    ] = None,
) -> None:
    """Assign a role to a user (again: updates the expiry)."""

    async def action(services: Services) -> None:
        user = await services.user_admin.by_login(login)
        found = await services.roles.find_role(OPERATOR, role)
        expires_at = services.clock.now() + timedelta(seconds=expires_in) if expires_in is not None else None
        assigned = await services.roles.assign_role(OPERATOR, str(user.id), str(found.id), expires_at)
        until = assigned.expires_at.isoformat(timespec="seconds") if assigned.expires_at else "never"
        typer.echo(f"granted {found.name} to {user.login} (expires: {until})")

    with_services(action)


@app.command()
def revoke(
    login: LoginOpt,
    role: RoleOpt,
) -> None:
    """Take a role away from a user."""

    async def action(services: Services) -> None:
        user = await services.user_admin.by_login(login)
        found = await services.roles.find_role(OPERATOR, role)
        revoked = await services.roles.revoke_role(OPERATOR, str(user.id), str(found.id))
        if revoked:
            typer.echo(f"revoked {found.name} from {user.login}")
        else:
            typer.echo(f"{user.login} did not hold {found.name}")

    with_services(action)
