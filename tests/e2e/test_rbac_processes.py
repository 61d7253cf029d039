"""RBAC across real `identity serve` processes: a write returned by one process is seen
by the very next check on another; a lost database fails checks closed."""

from __future__ import annotations

import subprocess
import time

import grpc
import psycopg
import pytest
from google.protobuf import field_mask_pb2

from identity.store.migrate import upgrade
from identity.v1 import auth_pb2, auth_pb2_grpc, rbac_pb2, rbac_pb2_grpc
from tests.e2e.conftest import BIN, ServerProcess, free_port, server_env, start_server_process
from tests.rbac_support import new_permission, new_role_name
from tests.support import ADMIN_URL, STRONG_PASSWORD, bearer, failure, fresh_database, new_login


def identity(database_url: str, *args: str, stdin: str = "") -> str:
    result = subprocess.run(
        [str(BIN / "identity"), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=server_env(database_url, free_port(), IDENTITY_LOG_LEVEL="warning"),
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


class Client:
    def __init__(self, server: ServerProcess) -> None:
        self.channel = grpc.insecure_channel(server.address)
        self.auth = auth_pb2_grpc.AuthServiceStub(self.channel)
        self.rbac = rbac_pb2_grpc.RbacServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()


def _setup(
    database_url: str, client: Client
) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...], str]:
    """(root's metadata, a service key's metadata, a plain user's id)."""
    root = new_login("root")
    identity(database_url, "users", "create-superuser", "--login", root, stdin=STRONG_PASSWORD + "\n")
    key = identity(database_url, "service-keys", "create", new_role_name("peer")).strip()
    tokens = client.auth.Login(auth_pb2.LoginRequest(login=root, password=STRONG_PASSWORD))
    user = client.auth.Register(auth_pb2.RegisterRequest(login=new_login(), password=STRONG_PASSWORD))
    return bearer(tokens.access_token), bearer(key), user.user.id


def test_a_write_on_one_process_is_seen_by_the_next_check_on_another(database_url, tmp_path) -> None:
    writer_server = start_server_process(database_url, tmp_path)
    reader_server = start_server_process(database_url, tmp_path)
    writer, reader = Client(writer_server), Client(reader_server)
    try:
        root, key, user_id = _setup(database_url, writer)
        permission = new_permission("films")
        role = writer.rbac.CreateRole(
            rbac_pb2.CreateRoleRequest(role=rbac_pb2.Role(name=new_role_name(), permissions=[permission])),
            metadata=root,
        ).role
        check = rbac_pb2.CheckPermissionRequest(
            subject=rbac_pb2.Subject(user_id=user_id), permission=permission
        )

        def allowed() -> bool:
            # A few calls, so the answer comes from the reader's warm cache.
            answers = {reader.rbac.CheckPermission(check, metadata=key).allowed for _ in range(3)}
            assert len(answers) == 1
            return answers.pop()

        assign = rbac_pb2.AssignRoleRequest(user_id=user_id, role_id=role.id)
        for _ in range(10):
            writer.rbac.AssignRole(assign, metadata=root)
            assert allowed()
            writer.rbac.RevokeRole(
                rbac_pb2.RevokeRoleRequest(user_id=user_id, role_id=role.id), metadata=root
            )
            assert not reader.rbac.CheckPermission(check, metadata=key).allowed

        writer.rbac.AssignRole(assign, metadata=root)
        assert allowed()
        writer.rbac.UpdateRole(
            rbac_pb2.UpdateRoleRequest(
                role_id=role.id,
                role=rbac_pb2.Role(permissions=[new_permission("other")]),
                update_mask=field_mask_pb2.FieldMask(paths=["permissions"]),
            ),
            metadata=root,
        )
        assert not reader.rbac.CheckPermission(check, metadata=key).allowed

        writer.rbac.UpdateRole(
            rbac_pb2.UpdateRoleRequest(
                role_id=role.id,
                role=rbac_pb2.Role(permissions=[permission]),
                update_mask=field_mask_pb2.FieldMask(paths=["permissions"]),
            ),
            metadata=root,
        )
        assert allowed()
        writer.rbac.DeleteRole(rbac_pb2.DeleteRoleRequest(role_id=role.id, force=True), metadata=root)
        assert not reader.rbac.CheckPermission(check, metadata=key).allowed

        # And the command line is a writer like any other.
        role = writer.rbac.CreateRole(
            rbac_pb2.CreateRoleRequest(role=rbac_pb2.Role(name=new_role_name(), permissions=[permission])),
            metadata=root,
        ).role
        writer.rbac.AssignRole(rbac_pb2.AssignRoleRequest(user_id=user_id, role_id=role.id), metadata=root)
        assert allowed()
        login = writer.rbac.ListUserRoles(rbac_pb2.ListUserRolesRequest(user_id=user_id), metadata=root)
        assert login.assignments
        identity(database_url, "roles", "delete", role.id, "--force")
        assert not reader.rbac.CheckPermission(check, metadata=key).allowed
    finally:
        writer.close()
        reader.close()
        writer_server.stop()
        reader_server.stop()
    # Both processes logged how many checks they answered.
    assert any(line.get("event") == "authz_totals" for line in reader_server.log_lines())


def test_a_lost_database_fails_checks_closed(tmp_path) -> None:
    with fresh_database("identity_rbac_lost") as url:
        upgrade(url)
        server = start_server_process(url, tmp_path, IDENTITY_DB_TIMEOUT_SECONDS="1")
        client = Client(server)
        try:
            root, key, user_id = _setup(url, client)
            permission = new_permission("films")
            role = client.rbac.CreateRole(
                rbac_pb2.CreateRoleRequest(
                    role=rbac_pb2.Role(name=new_role_name(), permissions=[permission])
                ),
                metadata=root,
            ).role
            client.rbac.AssignRole(
                rbac_pb2.AssignRoleRequest(user_id=user_id, role_id=role.id), metadata=root
            )
            cached = rbac_pb2.CheckPermissionRequest(
                subject=rbac_pb2.Subject(user_id=user_id), permission=permission
            )
            for _ in range(3):
                assert client.rbac.CheckPermission(cached, metadata=key).allowed

            name = url.rsplit("/", 1)[1]
            with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')

            requests = [
                lambda: client.rbac.CheckPermission(cached, metadata=key, timeout=15),
                lambda: client.rbac.CheckPermissions(
                    rbac_pb2.CheckPermissionsRequest(
                        checks=[rbac_pb2.PermissionCheck(subject=cached.subject, permission=permission)]
                    ),
                    metadata=key,
                    timeout=15,
                ),
                lambda: client.rbac.ListUserPermissions(
                    rbac_pb2.ListUserPermissionsRequest(subject=cached.subject), metadata=key, timeout=15
                ),
            ]
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline:
                for request in requests:
                    with pytest.raises(grpc.RpcError) as err:
                        request()
                    got = failure(err.value)
                    assert (got.code, got.reason) == (grpc.StatusCode.UNAVAILABLE, "BACKEND_UNAVAILABLE")
        finally:
            client.close()
            server.stop()
