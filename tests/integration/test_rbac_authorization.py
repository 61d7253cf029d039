"""Who may call what on RbacService: every admin RPC without a token and with a token
lacking its permission; every escalation path; who may ask the check RPCs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2

from identity.domain.permissions import ROLES_ASSIGN, ROLES_READ, ROLES_WRITE, SUPERUSER_ROLE_ID
from identity.v1 import rbac_pb2
from tests.conftest import Account, register_and_login
from tests.rbac_support import (
    OPERATOR,
    by_token,
    by_user,
    give,
    make_role,
    make_superuser,
    new_permission,
    new_role_name,
    service_key,
)
from tests.support import bearer, failure

SUPERUSER_ID = str(SUPERUSER_ROLE_ID)
ANY_ID = "7a0c3bd4-6a5d-4e0e-9d59-0d7d3f0d4b11"

# (RPC name, request, the permission it needs)
ADMIN_CALLS: list[tuple[str, Any, str]] = [
    ("CreateRole", rbac_pb2.CreateRoleRequest(role=rbac_pb2.Role(name="x-role")), ROLES_WRITE),
    ("GetRole", rbac_pb2.GetRoleRequest(role_id=SUPERUSER_ID), ROLES_READ),
    ("ListRoles", rbac_pb2.ListRolesRequest(), ROLES_READ),
    (
        "UpdateRole",
        rbac_pb2.UpdateRoleRequest(role_id=ANY_ID, role=rbac_pb2.Role(name="y-role")),
        ROLES_WRITE,
    ),
    ("DeleteRole", rbac_pb2.DeleteRoleRequest(role_id=ANY_ID), ROLES_WRITE),
    ("AssignRole", rbac_pb2.AssignRoleRequest(user_id=ANY_ID, role_id=SUPERUSER_ID), ROLES_ASSIGN),
    ("RevokeRole", rbac_pb2.RevokeRoleRequest(user_id=ANY_ID, role_id=SUPERUSER_ID), ROLES_ASSIGN),
    ("ListUserRoles", rbac_pb2.ListUserRolesRequest(user_id=ANY_ID), ROLES_READ),
]
CALL_IDS = [name for name, _, _ in ADMIN_CALLS]


async def _fails(call: Awaitable[Any]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    got = failure(err.value)
    return got.code, got.reason


@pytest.mark.parametrize(("rpc", "request_", "permission"), ADMIN_CALLS, ids=CALL_IDS)
async def test_admin_rpcs_need_a_token(rbac, rpc, request_, permission) -> None:
    assert await _fails(getattr(rbac, rpc)(request_)) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_MISSING")
    garbage = getattr(rbac, rpc)(request_, metadata=bearer("not-a-token"))
    assert (await _fails(garbage))[0] == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize(("rpc", "request_", "permission"), ADMIN_CALLS, ids=CALL_IDS)
async def test_admin_rpcs_need_their_permission(rbac, services, auth, rpc, request_, permission) -> None:
    account = await register_and_login(auth)
    # Every identity permission except the one this RPC needs.
    others = [p for p in (ROLES_READ, ROLES_WRITE, ROLES_ASSIGN) if p != permission]
    await give(services, account.user_id, *others)
    denied = getattr(rbac, rpc)(request_, metadata=account.metadata)
    assert await _fails(denied) == (grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")


async def test_a_service_key_is_not_an_admin_credential(rbac, services) -> None:
    key = await service_key(services)
    assert (await _fails(rbac.ListRoles(rbac_pb2.ListRolesRequest(), metadata=key)))[0] == (
        grpc.StatusCode.UNAUTHENTICATED
    )


async def test_a_granted_reader_can_read(rbac, services, auth) -> None:
    account = await register_and_login(auth)
    await give(services, account.user_id, ROLES_READ)
    listed = await rbac.ListRoles(rbac_pb2.ListRolesRequest(), metadata=account.metadata)
    assert listed.roles
    own = await rbac.ListUserRoles(
        rbac_pb2.ListUserRolesRequest(user_id=account.user_id), metadata=account.metadata
    )
    assert len(own.assignments) == 1


# -- escalation -------------------------------------------------------------------------


@pytest.fixture
async def delegate(auth, services) -> tuple[Account, str]:
    """A delegated admin: may write and assign roles, and holds one catalogue permission."""
    account = await register_and_login(auth)
    held = new_permission("held")
    await give(services, account.user_id, ROLES_READ, ROLES_WRITE, ROLES_ASSIGN, held)
    return account, held


async def test_create_role_with_a_permission_not_held_is_escalation(rbac, delegate) -> None:
    account, held = delegate
    ok = await rbac.CreateRole(
        rbac_pb2.CreateRoleRequest(role=rbac_pb2.Role(name=new_role_name(), permissions=[held])),
        metadata=account.metadata,
    )
    assert list(ok.role.permissions) == [held]
    for permissions in ([new_permission("other")], [held, new_permission("other")]):
        attempt = rbac.CreateRole(
            rbac_pb2.CreateRoleRequest(role=rbac_pb2.Role(name=new_role_name(), permissions=permissions)),
            metadata=account.metadata,
        )
        assert await _fails(attempt) == (grpc.StatusCode.PERMISSION_DENIED, "ESCALATION_DENIED")


async def test_update_role_cannot_add_what_the_caller_lacks_nor_touch_a_stronger_role(
    rbac, services, delegate
) -> None:
    account, held = delegate
    mine = await make_role(services, held)
    add_other = rbac.UpdateRole(
        rbac_pb2.UpdateRoleRequest(
            role_id=str(mine.id),
            role=rbac_pb2.Role(permissions=[held, new_permission("other")]),
            update_mask=field_mask_pb2.FieldMask(paths=["permissions"]),
        ),
        metadata=account.metadata,
    )
    assert await _fails(add_other) == (grpc.StatusCode.PERMISSION_DENIED, "ESCALATION_DENIED")

    stronger = await make_role(services, held, new_permission("other"))
    rename_stronger = rbac.UpdateRole(
        rbac_pb2.UpdateRoleRequest(
            role_id=str(stronger.id),
            role=rbac_pb2.Role(name=new_role_name()),
            update_mask=field_mask_pb2.FieldMask(paths=["name"]),
        ),
        metadata=account.metadata,
    )
    assert await _fails(rename_stronger) == (grpc.StatusCode.PERMISSION_DENIED, "ESCALATION_DENIED")
    superuser = rbac.UpdateRole(
        rbac_pb2.UpdateRoleRequest(
            role_id=SUPERUSER_ID,
            role=rbac_pb2.Role(description="mine now"),
            update_mask=field_mask_pb2.FieldMask(paths=["description"]),
        ),
        metadata=account.metadata,
    )
    assert await _fails(superuser) == (grpc.StatusCode.PERMISSION_DENIED, "ESCALATION_DENIED")
    # What the caller holds, they may change.
    changed = await rbac.UpdateRole(
        rbac_pb2.UpdateRoleRequest(
            role_id=str(mine.id),
            role=rbac_pb2.Role(description="fine"),
            update_mask=field_mask_pb2.FieldMask(paths=["description"]),
        ),
        metadata=account.metadata,
    )
    assert changed.role.description == "fine"


async def test_update_role_cannot_shrink_a_stronger_role_to_what_the_caller_holds(
    rbac, services, delegate
) -> None:
    """Stripping a stronger role down (to take other admins' powers away) is escalation
    too: the role before the change is checked, not only the role after it."""
    account, held = delegate
    other = new_permission("other")
    stronger = await make_role(services, held, other)
    shrink = rbac.UpdateRole(
        rbac_pb2.UpdateRoleRequest(
            role_id=str(stronger.id),
            role=rbac_pb2.Role(permissions=[held]),
            update_mask=field_mask_pb2.FieldMask(paths=["permissions"]),
        ),
        metadata=account.metadata,
    )
    assert await _fails(shrink) == (grpc.StatusCode.PERMISSION_DENIED, "ESCALATION_DENIED")
    unchanged = await rbac.GetRole(
        rbac_pb2.GetRoleRequest(role_id=str(stronger.id)), metadata=account.metadata
    )
    assert sorted(unchanged.role.permissions) == sorted([held, other])


async def test_assign_a_role_carrying_what_the_caller_lacks_is_escalation(
    rbac, services, auth, delegate
) -> None:
    account, held = delegate
    target = await register_and_login(auth)
    stronger = await make_role(services, held, new_permission("other"))
    for role_id in (str(stronger.id), SUPERUSER_ID):
        attempt = rbac.AssignRole(
            rbac_pb2.AssignRoleRequest(user_id=target.user_id, role_id=role_id), metadata=account.metadata
        )
        assert await _fails(attempt) == (grpc.StatusCode.PERMISSION_DENIED, "ESCALATION_DENIED")
        # Not to themself either.
        self_grant = rbac.AssignRole(
            rbac_pb2.AssignRoleRequest(user_id=account.user_id, role_id=role_id), metadata=account.metadata
        )
        assert await _fails(self_grant) == (grpc.StatusCode.PERMISSION_DENIED, "ESCALATION_DENIED")
    within = await make_role(services, held)
    await rbac.AssignRole(
        rbac_pb2.AssignRoleRequest(user_id=target.user_id, role_id=str(within.id)), metadata=account.metadata
    )


async def test_revoke_and_delete_of_a_stronger_role_are_refused(rbac, services, auth, delegate) -> None:
    account, held = delegate
    root = await register_and_login(auth)
    await make_superuser(services, root.user_id)
    demote = rbac.RevokeRole(
        rbac_pb2.RevokeRoleRequest(user_id=root.user_id, role_id=SUPERUSER_ID), metadata=account.metadata
    )
    assert await _fails(demote) == (grpc.StatusCode.PERMISSION_DENIED, "ESCALATION_DENIED")
    stronger = await make_role(services, held, new_permission("other"))
    delete = rbac.DeleteRole(rbac_pb2.DeleteRoleRequest(role_id=str(stronger.id)), metadata=account.metadata)
    assert await _fails(delete) == (grpc.StatusCode.PERMISSION_DENIED, "ESCALATION_DENIED")


async def test_escalation_checks_read_the_callers_current_permissions(rbac, services, auth, clock) -> None:
    """Holding a permission through an expired assignment does not count."""
    account = await register_and_login(auth)
    await give(services, account.user_id, ROLES_WRITE)
    lapsed = new_permission("lapsed")
    role = await make_role(services, lapsed)
    await services.roles.assign_role(
        OPERATOR, account.user_id, str(role.id), clock.now() + timedelta(milliseconds=300)
    )
    clock.advance(timedelta(milliseconds=500))
    attempt = rbac.CreateRole(
        rbac_pb2.CreateRoleRequest(role=rbac_pb2.Role(name=new_role_name(), permissions=[lapsed])),
        metadata=account.metadata,
    )
    assert await _fails(attempt) == (grpc.StatusCode.PERMISSION_DENIED, "ESCALATION_DENIED")


async def test_superusers_may_do_anything(rbac, services, auth) -> None:
    root = await register_and_login(auth)
    await make_superuser(services, root.user_id)
    target = await register_and_login(auth)
    role = await rbac.CreateRole(
        rbac_pb2.CreateRoleRequest(role=rbac_pb2.Role(name=new_role_name(), permissions=[new_permission()])),
        metadata=root.metadata,
    )
    await rbac.AssignRole(
        rbac_pb2.AssignRoleRequest(user_id=target.user_id, role_id=role.role.id), metadata=root.metadata
    )
    await rbac.AssignRole(
        rbac_pb2.AssignRoleRequest(user_id=target.user_id, role_id=SUPERUSER_ID), metadata=root.metadata
    )
    revoked = await rbac.RevokeRole(
        rbac_pb2.RevokeRoleRequest(user_id=target.user_id, role_id=SUPERUSER_ID), metadata=root.metadata
    )
    assert revoked.revoked


# -- who may ask the checks -------------------------------------------------------------


CheckCall = Callable[..., Awaitable[Any]]


def _check_calls(rbac: Any, subject: rbac_pb2.Subject) -> list[tuple[str, Any]]:
    return [
        (
            "CheckPermission",
            rbac_pb2.CheckPermissionRequest(subject=subject, permission="catalog.films.read"),
        ),
        (
            "CheckPermissions",
            rbac_pb2.CheckPermissionsRequest(
                checks=[rbac_pb2.PermissionCheck(subject=subject, permission="catalog.films.read")]
            ),
        ),
        ("ListUserPermissions", rbac_pb2.ListUserPermissionsRequest(subject=subject)),
    ]


async def test_checks_need_a_service_key_or_the_subjects_own_token(rbac, services, auth) -> None:
    alice = await register_and_login(auth)
    bob = await register_and_login(auth)
    await give(services, bob.user_id, ROLES_READ)  # an admin still may not ask about others
    key = await service_key(services)
    for subject in (
        rbac_pb2.Subject(user_id=alice.user_id),
        rbac_pb2.Subject(access_token=alice.access_token),
    ):
        for rpc, request in _check_calls(rbac, subject):
            call = getattr(rbac, rpc)
            assert await _fails(call(request)) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_MISSING")
            assert (await _fails(call(request, metadata=bearer("sk_wrong"))))[
                0
            ] == grpc.StatusCode.UNAUTHENTICATED
            assert (await _fails(call(request, metadata=bob.metadata)))[
                0
            ] == grpc.StatusCode.PERMISSION_DENIED
            await call(request, metadata=key)
            await call(request, metadata=alice.metadata)


async def test_a_revoked_service_key_stops_working_at_once(rbac, services, account) -> None:
    name = new_role_name("peer")
    issued_old = await services.service_keys.create(name)
    issued_new = await services.service_keys.create(name)
    request = by_user(account.user_id, "identity.roles.read")
    await rbac.CheckPermission(request, metadata=bearer(issued_old.secret))
    await services.service_keys.revoke(name, issued_old.key.id)
    assert await _fails(rbac.CheckPermission(request, metadata=bearer(issued_old.secret))) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "TOKEN_INVALID",
    )
    await rbac.CheckPermission(request, metadata=bearer(issued_new.secret))  # rotation: the new one works
    await services.service_keys.revoke(name)
    assert (await _fails(rbac.CheckPermission(request, metadata=bearer(issued_new.secret))))[0] == (
        grpc.StatusCode.UNAUTHENTICATED
    )


async def test_a_user_may_check_themself_by_token(rbac, services, account) -> None:
    permission = new_permission()
    await give(services, account.user_id, permission)
    answer = await rbac.CheckPermission(by_token(account.access_token, permission), metadata=account.metadata)
    assert answer.allowed
