"""The operator commands: `identity roles`, `identity users`, `identity service-keys`."""

from __future__ import annotations

import grpc
import pytest

from identity.v1 import auth_pb2, rbac_pb2
from tests.rbac_support import by_user, identity_cli, new_permission, new_role_name
from tests.support import STRONG_PASSWORD, bearer, new_login


async def test_create_superuser_reads_the_first_line_of_stdin(auth, rbac, database_url) -> None:
    login = new_login("root")
    result = await identity_cli(
        database_url, "users", "create-superuser", "--login", login, input=f"{STRONG_PASSWORD}\nignored\n"
    )
    assert result.exit_code == 0, result.output
    assert f"created superuser {login}" in result.output
    tokens = await auth.Login(auth_pb2.LoginRequest(login=login, password=STRONG_PASSWORD))
    roles = await rbac.ListRoles(rbac_pb2.ListRolesRequest(), metadata=bearer(tokens.access_token))
    assert roles.roles

    permissions = await identity_cli(database_url, "users", "permissions", "--login", login)
    assert permissions.exit_code == 0 and "*" in permissions.output and "superuser" in permissions.output

    taken = await identity_cli(
        database_url, "users", "create-superuser", "--login", login.upper(), input=f"{STRONG_PASSWORD}\n"
    )
    assert taken.exit_code == 1 and "LOGIN_TAKEN" in taken.output
    weak = await identity_cli(
        database_url, "users", "create-superuser", "--login", new_login(), input="password\n"
    )
    assert weak.exit_code == 1 and "PASSWORD_TOO_COMMON" in weak.output


async def test_roles_lifecycle_from_the_command_line(auth, rbac, database_url) -> None:
    login = new_login("member")
    await auth.Register(auth_pb2.RegisterRequest(login=login, password=STRONG_PASSWORD))
    name, first, second = new_role_name("Editors"), new_permission(), new_permission()

    created = await identity_cli(database_url, "roles", "create", name, "--description", "edit", "-p", first)
    assert created.exit_code == 0, created.output
    assert name in created.output and first in created.output
    listed = await identity_cli(database_url, "roles", "list")
    assert name in listed.output and "superuser" in listed.output

    updated = await identity_cli(database_url, "roles", "update", name.upper(), "--add-permission", second)
    assert updated.exit_code == 0, updated.output
    shown = await identity_cli(database_url, "roles", "show", name)
    assert first in shown.output and second in shown.output and "edit" in shown.output

    granted = await identity_cli(database_url, "roles", "grant", "--login", login, "--role", name)
    assert granted.exit_code == 0 and f"granted {name} to {login}" in granted.output
    perms = await identity_cli(database_url, "users", "permissions", "--login", login)
    assert first in perms.output and second in perms.output

    in_use = await identity_cli(database_url, "roles", "delete", name)
    assert in_use.exit_code == 1 and "ROLE_IN_USE" in in_use.output
    revoked = await identity_cli(database_url, "roles", "revoke", "--login", login, "--role", name)
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    perms = await identity_cli(database_url, "users", "permissions", "--login", login)
    assert "holds no permission" in perms.output
    deleted = await identity_cli(database_url, "roles", "delete", name)
    assert deleted.exit_code == 0, deleted.output
    missing = await identity_cli(database_url, "roles", "show", name)
    assert missing.exit_code == 1 and "ROLE_NOT_FOUND" in missing.output

    builtin = await identity_cli(database_url, "roles", "delete", "superuser", "--force")
    assert builtin.exit_code == 1 and "ROLE_BUILTIN" in builtin.output
    invalid = await identity_cli(database_url, "roles", "create", new_role_name(), "-p", "Bad Name")
    assert invalid.exit_code == 1 and "PERMISSION_NAME_INVALID" in invalid.output


async def test_service_keys_create_list_revoke(rbac, database_url) -> None:
    name = new_role_name("peer")
    created = await identity_cli(database_url, "service-keys", "create", name)
    assert created.exit_code == 0, created.output
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("sk_") and len(key) > 40
    request = by_user("7a0c3bd4-6a5d-4e0e-9d59-0d7d3f0d4b11", "identity.roles.read")
    await rbac.CheckPermission(request, metadata=bearer(key))

    listed = await identity_cli(database_url, "service-keys", "list", name)
    assert name in listed.output and key not in listed.output
    revoked = await identity_cli(database_url, "service-keys", "revoke", name)
    assert revoked.exit_code == 0 and "revoked 1 key(s)" in revoked.output
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await rbac.CheckPermission(request, metadata=bearer(key))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    again = await identity_cli(database_url, "service-keys", "revoke", name)
    assert again.exit_code == 1 and "KEY_NOT_FOUND" in again.output


async def test_users_unlock_resets_the_failed_login_counter(auth, services, database_url) -> None:
    login = new_login("locked")
    registered = await auth.Register(auth_pb2.RegisterRequest(login=login, password=STRONG_PASSWORD))
    for _ in range(3):
        with pytest.raises(grpc.aio.AioRpcError):
            await auth.Login(auth_pb2.LoginRequest(login=login, password="not the password"))
    async with services.db.reader() as uow:
        assert await uow.users.failed_logins(registered.user.id) == 3  # type: ignore[union-attr]
    shown = await identity_cli(database_url, "users", "status", "--login", login)
    assert shown.exit_code == 0 and "not locked (3 consecutive failed logins, limit 100)" in shown.output
    result = await identity_cli(database_url, "users", "unlock", "--login", login)
    assert result.exit_code == 0 and f"unlocked {login}" in result.output
    async with services.db.reader() as uow:
        assert await uow.users.failed_logins(registered.user.id) == 0  # type: ignore[union-attr]
    unknown = await identity_cli(database_url, "users", "unlock", "--login", new_login())
    assert unknown.exit_code == 1 and "USER_NOT_FOUND" in unknown.output
