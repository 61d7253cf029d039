"""CheckPermission, CheckPermissions and ListUserPermissions: every reason, batch
ordering, expiry, and that a returned write is seen by the very next check."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest
from google.protobuf import field_mask_pb2

from identity.v1 import auth_pb2, rbac_pb2
from tests.conftest import register_and_login
from tests.rbac_support import (
    ASSIGNMENT_EXPIRED,
    GRANTED,
    NO_SUCH_PERMISSION,
    NOT_GRANTED,
    OPERATOR,
    PERMISSION_INVALID,
    TOKEN_INVALID,
    USER_UNKNOWN,
    by_token,
    by_user,
    give,
    make_role,
    make_superuser,
    new_permission,
    service_key,
)
from tests.support import failure

UNKNOWN_USER = "7a0c3bd4-6a5d-4e0e-9d59-0d7d3f0d4b11"


@pytest.fixture(scope="module")
async def key(services):
    return await service_key(services, "catalog")


async def test_granted_names_the_roles(rbac, services, key, account) -> None:
    permission = new_permission()
    first = await give(services, account.user_id, permission)
    second = await give(services, account.user_id, permission, new_permission())
    answer = await rbac.CheckPermission(by_user(account.user_id, permission), metadata=key)
    assert answer.allowed and answer.reason == GRANTED
    assert list(answer.granted_by) == sorted([first.name, second.name])


async def test_each_reason_for_not_allowed(rbac, services, key, account) -> None:
    mine, theirs = new_permission(), new_permission()
    await give(services, account.user_id, mine)
    await make_role(services, theirs)
    cases = [
        (by_user(account.user_id, theirs), NOT_GRANTED),
        (by_user(account.user_id, "catalog.no.such.thing"), NO_SUCH_PERMISSION),
        (by_user(UNKNOWN_USER, mine), USER_UNKNOWN),
        (by_token("not.a.token", mine), TOKEN_INVALID),
        (by_token("x" * 10_000, mine), TOKEN_INVALID),
    ]
    for request, reason in cases:
        answer = await rbac.CheckPermission(request, metadata=key)
        assert (answer.allowed, answer.reason, list(answer.granted_by)) == (False, reason, []), request


async def test_a_revoked_sessions_token_is_not_allowed(rbac, auth, services, key) -> None:
    account = await register_and_login(auth)
    permission = new_permission()
    await give(services, account.user_id, permission)
    assert (await rbac.CheckPermission(by_token(account.access_token, permission), metadata=key)).allowed
    await auth.Logout(auth_pb2.LogoutRequest(), metadata=account.metadata)
    answer = await rbac.CheckPermission(by_token(account.access_token, permission), metadata=key)
    assert (answer.allowed, answer.reason) == (False, TOKEN_INVALID)


async def test_superuser_holds_every_known_permission_only(rbac, services, key, account) -> None:
    known = new_permission()
    await make_role(services, known)
    await make_superuser(services, account.user_id)
    answer = await rbac.CheckPermission(by_user(account.user_id, known), metadata=key)
    assert answer.allowed and list(answer.granted_by) == ["superuser"]
    own = await rbac.CheckPermission(by_user(account.user_id, "identity.roles.write"), metadata=key)
    assert own.allowed
    typo = await rbac.CheckPermission(by_user(account.user_id, "catalog.flims.read"), metadata=key)
    assert (typo.allowed, typo.reason) == (False, NO_SUCH_PERMISSION)


@pytest.mark.parametrize(
    ("request_", "field", "reason"),
    [
        (by_user(UNKNOWN_USER, "Catalog.Films"), "permission", "PERMISSION_NAME_INVALID"),
        (by_user(UNKNOWN_USER, ""), "permission", "PERMISSION_NAME_INVALID"),
        (by_user(UNKNOWN_USER, "*"), "permission", "PERMISSION_NAME_INVALID"),
        (by_user("not-a-uuid", "catalog.films.read"), "subject.user_id", "INVALID_FIELD"),
        (rbac_pb2.CheckPermissionRequest(permission="catalog.films.read"), "subject", "INVALID_FIELD"),
    ],
)
async def test_malformed_single_checks_are_invalid_argument(rbac, key, request_, field, reason) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await rbac.CheckPermission(request_, metadata=key)
    got = failure(err.value)
    assert (got.code, got.reason, got.fields) == (grpc.StatusCode.INVALID_ARGUMENT, reason, (field,))


async def test_expired_assignment_stops_granting_when_it_expires(rbac, services, key, account, clock) -> None:
    permission = new_permission()
    role = await make_role(services, permission)
    await services.roles.assign_role(
        OPERATOR, account.user_id, str(role.id), clock.now() + timedelta(seconds=1)
    )
    request = by_user(account.user_id, permission)
    assert (await rbac.CheckPermission(request, metadata=key)).allowed  # now cached
    assert (await rbac.CheckPermission(request, metadata=key)).allowed
    clock.advance(timedelta(seconds=1.1))
    answer = await rbac.CheckPermission(request, metadata=key)  # no write in between: the cache knows
    assert (answer.allowed, answer.reason) == (False, ASSIGNMENT_EXPIRED)
    listed = await rbac.ListUserPermissions(
        rbac_pb2.ListUserPermissionsRequest(subject=rbac_pb2.Subject(user_id=account.user_id)), metadata=key
    )
    assert permission not in [p.permission for p in listed.permissions]


async def test_batch_answers_in_request_order_and_one_bad_item_fails_nothing(
    rbac, services, key, account
) -> None:
    granted, other = new_permission(), new_permission()
    await give(services, account.user_id, granted)
    await make_role(services, other)
    items = [
        (rbac_pb2.Subject(user_id=account.user_id), granted, GRANTED),
        (rbac_pb2.Subject(user_id=account.user_id), "Bad..Name", PERMISSION_INVALID),
        (rbac_pb2.Subject(user_id=account.user_id), other, NOT_GRANTED),
        (rbac_pb2.Subject(user_id=UNKNOWN_USER), granted, USER_UNKNOWN),
        (rbac_pb2.Subject(user_id="not-a-uuid"), granted, USER_UNKNOWN),
        (rbac_pb2.Subject(access_token="garbage"), granted, TOKEN_INVALID),
        (rbac_pb2.Subject(access_token=account.access_token), granted, GRANTED),
        (rbac_pb2.Subject(user_id=account.user_id), "nothing.has.this", NO_SUCH_PERMISSION),
        (rbac_pb2.Subject(user_id=account.user_id), granted, GRANTED),
    ]
    reply = await rbac.CheckPermissions(
        rbac_pb2.CheckPermissionsRequest(
            checks=[rbac_pb2.PermissionCheck(subject=s, permission=p) for s, p, _ in items]
        ),
        metadata=key,
    )
    assert [(d.permission, d.reason) for d in reply.decisions] == [(p, r) for _, p, r in items]
    assert [d.allowed for d in reply.decisions] == [r == GRANTED for _, _, r in items]


async def test_batch_size_is_bounded(rbac, key, account) -> None:
    check = rbac_pb2.PermissionCheck(subject=rbac_pb2.Subject(user_id=account.user_id), permission="a.b")
    full = await rbac.CheckPermissions(rbac_pb2.CheckPermissionsRequest(checks=[check] * 100), metadata=key)
    assert len(full.decisions) == 100
    empty = await rbac.CheckPermissions(rbac_pb2.CheckPermissionsRequest(), metadata=key)
    assert list(empty.decisions) == []
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await rbac.CheckPermissions(rbac_pb2.CheckPermissionsRequest(checks=[check] * 101), metadata=key)
    got = failure(err.value)
    assert (got.code, got.reason, got.fields) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "TOO_MANY_ITEMS",
        ("checks",),
    )


async def test_list_user_permissions_gives_the_effective_set(rbac, services, key, account) -> None:
    shared, solo = sorted([new_permission(), new_permission()])
    first = await give(services, account.user_id, shared, solo)
    second = await give(services, account.user_id, shared)
    reply = await rbac.ListUserPermissions(
        rbac_pb2.ListUserPermissionsRequest(subject=rbac_pb2.Subject(user_id=account.user_id)), metadata=key
    )
    got = {p.permission: sorted(p.granted_by) for p in reply.permissions}
    assert got == {shared: sorted([first.name, second.name]), solo: [first.name]}
    own = await rbac.ListUserPermissions(
        rbac_pb2.ListUserPermissionsRequest(subject=rbac_pb2.Subject(access_token=account.access_token)),
        metadata=account.metadata,
    )
    assert own == reply
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await rbac.ListUserPermissions(
            rbac_pb2.ListUserPermissionsRequest(subject=rbac_pb2.Subject(user_id=UNKNOWN_USER)), metadata=key
        )
    assert failure(err.value).reason == "USER_NOT_FOUND"


async def test_every_write_is_seen_by_the_very_next_check(rbac, services, key, auth) -> None:
    root = await register_and_login(auth)
    await make_superuser(services, root.user_id)
    user = await register_and_login(auth)
    permission = new_permission()
    request = by_user(user.user_id, permission)

    async def allowed() -> bool:
        return (await rbac.CheckPermission(request, metadata=key)).allowed

    role = (
        await rbac.CreateRole(
            rbac_pb2.CreateRoleRequest(role=rbac_pb2.Role(name=f"r-{permission}", permissions=[permission])),
            metadata=root.metadata,
        )
    ).role
    for _ in range(3):
        assert not await allowed()
        await rbac.AssignRole(
            rbac_pb2.AssignRoleRequest(user_id=user.user_id, role_id=role.id), metadata=root.metadata
        )
        assert await allowed()
        await rbac.RevokeRole(
            rbac_pb2.RevokeRoleRequest(user_id=user.user_id, role_id=role.id), metadata=root.metadata
        )
    assert not await allowed()

    await rbac.AssignRole(
        rbac_pb2.AssignRoleRequest(user_id=user.user_id, role_id=role.id), metadata=root.metadata
    )
    assert await allowed()
    await rbac.UpdateRole(
        rbac_pb2.UpdateRoleRequest(
            role_id=role.id,
            role=rbac_pb2.Role(permissions=[new_permission()]),
            update_mask=field_mask_pb2.FieldMask(paths=["permissions"]),
        ),
        metadata=root.metadata,
    )
    assert not await allowed()
    await rbac.UpdateRole(
        rbac_pb2.UpdateRoleRequest(
            role_id=role.id,
            role=rbac_pb2.Role(permissions=[permission]),
            update_mask=field_mask_pb2.FieldMask(paths=["permissions"]),
        ),
        metadata=root.metadata,
    )
    assert await allowed()
    await rbac.DeleteRole(rbac_pb2.DeleteRoleRequest(role_id=role.id, force=True), metadata=root.metadata)
    assert not await allowed()


async def test_a_disabled_user_holds_nothing(rbac, services, key, account) -> None:
    await make_superuser(services, account.user_id)
    request = by_user(account.user_id, "identity.roles.read")
    assert (await rbac.CheckPermission(request, metadata=key)).allowed
    async with services.db.transaction() as uow:
        await uow.users.set_disabled(account.user_id, True)
        version = await uow.roles.version()
    # What an account-disabling use case does after its commit to be exact on every process.
    await services.rbac_sync.wait_applied(version)
    answer = await rbac.CheckPermission(request, metadata=key)
    assert (answer.allowed, answer.reason) == (False, NOT_GRANTED)
