"""The RBAC model through RbacService: roles, permissions, assignments, the built-in
superuser, and validation. The caller is a superuser unless a test says otherwise."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf import field_mask_pb2, timestamp_pb2

from identity.domain.permissions import SUPERUSER_ROLE_ID
from identity.v1 import rbac_pb2
from tests.conftest import Account, register_and_login
from tests.rbac_support import by_user, make_superuser, new_permission, new_role_name, service_key
from tests.support import failure

SUPERUSER_ID = str(SUPERUSER_ROLE_ID)


@pytest.fixture
async def admin(auth, services) -> Account:
    account = await register_and_login(auth)
    await make_superuser(services, account.user_id)
    return account


def _role(name: str | None = None, *permissions: str, description: str = "") -> rbac_pb2.Role:
    return rbac_pb2.Role(name=name or new_role_name(), description=description, permissions=list(permissions))


def _ts(value: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


async def test_create_get_and_list_roles(rbac, admin) -> None:
    perms = sorted([new_permission(), new_permission()])
    created = (
        await rbac.CreateRole(
            rbac_pb2.CreateRoleRequest(
                role=_role("Film Editors " + perms[0][5:13], *perms, description="edit")
            ),
            metadata=admin.metadata,
        )
    ).role
    assert created.id and not created.builtin and created.description == "edit"
    assert list(created.permissions) == perms
    assert created.create_time.seconds > 0

    got = (await rbac.GetRole(rbac_pb2.GetRoleRequest(role_id=created.id), metadata=admin.metadata)).role
    assert got == created

    listed = await rbac.ListRoles(rbac_pb2.ListRolesRequest(page_size=200), metadata=admin.metadata)
    names = [role.name for role in listed.roles]
    assert "superuser" in names and created.name in names
    superuser = next(role for role in listed.roles if role.name == "superuser")
    assert superuser.builtin and list(superuser.permissions) == ["*"] and superuser.id == SUPERUSER_ID


async def test_list_roles_is_paginated_with_opaque_tokens(rbac, admin) -> None:
    for _ in range(5):
        await rbac.CreateRole(rbac_pb2.CreateRoleRequest(role=_role()), metadata=admin.metadata)
    seen: list[str] = []
    token = ""
    while True:
        page = await rbac.ListRoles(
            rbac_pb2.ListRolesRequest(page_size=2, page_token=token), metadata=admin.metadata
        )
        assert len(page.roles) <= 2
        seen.extend(role.name for role in page.roles)
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == len(set(seen)) >= 6
    assert seen == sorted(seen, key=str.casefold)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await rbac.ListRoles(rbac_pb2.ListRolesRequest(page_token="forged.token"), metadata=admin.metadata)
    assert failure(err.value).reason == "PAGE_TOKEN_INVALID"


async def test_role_names_are_unique_after_canonicalisation(rbac, admin) -> None:
    name = new_role_name("Editors")
    await rbac.CreateRole(rbac_pb2.CreateRoleRequest(role=_role(name)), metadata=admin.metadata)
    for variant in (name.upper(), f"  {name}  ", name.replace("E", "Ｅ")):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await rbac.CreateRole(rbac_pb2.CreateRoleRequest(role=_role(variant)), metadata=admin.metadata)
        got = failure(err.value)
        assert (got.code, got.reason) == (grpc.StatusCode.ALREADY_EXISTS, "ROLE_EXISTS")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await rbac.CreateRole(rbac_pb2.CreateRoleRequest(role=_role("SUPERUSER")), metadata=admin.metadata)
    assert failure(err.value).reason == "ROLE_EXISTS"


@pytest.mark.parametrize(
    ("role", "reason", "field"),
    [
        (rbac_pb2.Role(name=""), "ROLE_NAME_INVALID", "role.name"),
        (rbac_pb2.Role(name="bad/name"), "ROLE_NAME_INVALID", "role.name"),
        (rbac_pb2.Role(name="x" * 65), "ROLE_NAME_INVALID", "role.name"),
        (
            rbac_pb2.Role(name="ok-name", permissions=["Catalog.Films"]),
            "PERMISSION_NAME_INVALID",
            "role.permissions[0]",
        ),
        (
            rbac_pb2.Role(name="ok-name", permissions=["a.b", "a..b"]),
            "PERMISSION_NAME_INVALID",
            "role.permissions[1]",
        ),
        (rbac_pb2.Role(name="ok-name", permissions=["*"]), "PERMISSION_NAME_INVALID", "role.permissions[0]"),
        (
            rbac_pb2.Role(name="ok-name", permissions=["a" * 129]),
            "PERMISSION_NAME_INVALID",
            "role.permissions[0]",
        ),
        (
            rbac_pb2.Role(name="ok-name", permissions=[f"p.n{i}" for i in range(201)]),
            "TOO_MANY_ITEMS",
            "role.permissions",
        ),
        (rbac_pb2.Role(name="ok-name", description="d" * 1025), "INVALID_FIELD", "role.description"),
    ],
)
async def test_invalid_roles_are_refused_with_the_field(rbac, admin, role, reason, field) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await rbac.CreateRole(rbac_pb2.CreateRoleRequest(role=role), metadata=admin.metadata)
    got = failure(err.value)
    assert (got.code, got.reason, got.fields) == (grpc.StatusCode.INVALID_ARGUMENT, reason, (field,))


async def test_update_role_honours_the_field_mask(rbac, admin) -> None:
    first, second = new_permission(), new_permission()
    created = (
        await rbac.CreateRole(
            rbac_pb2.CreateRoleRequest(role=_role(None, first, description="before")), metadata=admin.metadata
        )
    ).role
    only_description = await rbac.UpdateRole(
        rbac_pb2.UpdateRoleRequest(
            role_id=created.id,
            role=rbac_pb2.Role(name="ignored", description="after", permissions=[second]),
            update_mask=field_mask_pb2.FieldMask(paths=["description"]),
        ),
        metadata=admin.metadata,
    )
    assert only_description.role.description == "after"
    assert only_description.role.name == created.name and list(only_description.role.permissions) == [first]

    renamed = new_role_name("renamed")
    everything = await rbac.UpdateRole(
        rbac_pb2.UpdateRoleRequest(
            role_id=created.id, role=rbac_pb2.Role(name=renamed, description="", permissions=[second, first])
        ),
        metadata=admin.metadata,
    )
    assert everything.role.name == renamed and everything.role.description == ""
    assert list(everything.role.permissions) == sorted([first, second])
    assert everything.role.update_time.ToDatetime() >= created.update_time.ToDatetime()

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await rbac.UpdateRole(
            rbac_pb2.UpdateRoleRequest(
                role_id=created.id,
                role=rbac_pb2.Role(),
                update_mask=field_mask_pb2.FieldMask(paths=["builtin"]),
            ),
            metadata=admin.metadata,
        )
    assert failure(err.value).fields == ("update_mask",)


async def test_removed_permissions_leave_the_catalogue(rbac, services, admin) -> None:
    gone, kept = new_permission(), new_permission()
    key = await service_key(services)
    role = (
        await rbac.CreateRole(
            rbac_pb2.CreateRoleRequest(role=_role(None, gone, kept)), metadata=admin.metadata
        )
    ).role
    assert (await rbac.CheckPermission(by_user(admin.user_id, gone), metadata=key)).allowed
    await rbac.UpdateRole(
        rbac_pb2.UpdateRoleRequest(
            role_id=role.id,
            role=rbac_pb2.Role(permissions=[kept]),
            update_mask=field_mask_pb2.FieldMask(paths=["permissions"]),
        ),
        metadata=admin.metadata,
    )
    answer = await rbac.CheckPermission(by_user(admin.user_id, gone), metadata=key)
    assert not answer.allowed and answer.reason == rbac_pb2.DECISION_REASON_NO_SUCH_PERMISSION


async def test_the_superuser_role_cannot_be_deleted_emptied_or_renamed(rbac, admin) -> None:
    attempts = [
        rbac.DeleteRole(
            rbac_pb2.DeleteRoleRequest(role_id=SUPERUSER_ID, force=True), metadata=admin.metadata
        ),
        rbac.UpdateRole(
            rbac_pb2.UpdateRoleRequest(
                role_id=SUPERUSER_ID,
                role=rbac_pb2.Role(),
                update_mask=field_mask_pb2.FieldMask(paths=["permissions"]),
            ),
            metadata=admin.metadata,
        ),
        rbac.UpdateRole(
            rbac_pb2.UpdateRoleRequest(
                role_id=SUPERUSER_ID,
                role=rbac_pb2.Role(permissions=["catalog.films.read"]),
                update_mask=field_mask_pb2.FieldMask(paths=["permissions"]),
            ),
            metadata=admin.metadata,
        ),
        rbac.UpdateRole(
            rbac_pb2.UpdateRoleRequest(
                role_id=SUPERUSER_ID,
                role=rbac_pb2.Role(name="root"),
                update_mask=field_mask_pb2.FieldMask(paths=["name"]),
            ),
            metadata=admin.metadata,
        ),
    ]
    for attempt in attempts:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await attempt
        got = failure(err.value)
        assert (got.code, got.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "ROLE_BUILTIN")
    # Its description may change; its permissions stay the wildcard.
    updated = await rbac.UpdateRole(
        rbac_pb2.UpdateRoleRequest(
            role_id=SUPERUSER_ID,
            role=rbac_pb2.Role(description="Every permission."),
            update_mask=field_mask_pb2.FieldMask(paths=["description"]),
        ),
        metadata=admin.metadata,
    )
    assert updated.role.builtin and list(updated.role.permissions) == ["*"]


async def test_delete_refuses_a_role_in_use_unless_forced(rbac, services, admin, account) -> None:
    permission = new_permission()
    key = await service_key(services)
    role = (
        await rbac.CreateRole(
            rbac_pb2.CreateRoleRequest(role=_role(None, permission)), metadata=admin.metadata
        )
    ).role
    await rbac.AssignRole(
        rbac_pb2.AssignRoleRequest(user_id=account.user_id, role_id=role.id), metadata=admin.metadata
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await rbac.DeleteRole(rbac_pb2.DeleteRoleRequest(role_id=role.id), metadata=admin.metadata)
    got = failure(err.value)
    assert (got.code, got.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "ROLE_IN_USE")
    assert (await rbac.CheckPermission(by_user(account.user_id, permission), metadata=key)).allowed

    await rbac.DeleteRole(rbac_pb2.DeleteRoleRequest(role_id=role.id, force=True), metadata=admin.metadata)
    assert not (await rbac.CheckPermission(by_user(account.user_id, permission), metadata=key)).allowed
    roles = await rbac.ListUserRoles(
        rbac_pb2.ListUserRolesRequest(user_id=account.user_id), metadata=admin.metadata
    )
    assert list(roles.assignments) == []
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await rbac.GetRole(rbac_pb2.GetRoleRequest(role_id=role.id), metadata=admin.metadata)
    got = failure(err.value)
    assert (got.code, got.reason) == (grpc.StatusCode.NOT_FOUND, "ROLE_NOT_FOUND")


async def test_a_role_whose_only_assignment_expired_can_be_deleted(
    rbac, services, admin, account, clock
) -> None:
    role = (
        await rbac.CreateRole(
            rbac_pb2.CreateRoleRequest(role=_role(None, new_permission())), metadata=admin.metadata
        )
    ).role
    await rbac.AssignRole(
        rbac_pb2.AssignRoleRequest(
            user_id=account.user_id,
            role_id=role.id,
            expire_time=_ts(clock.now() + timedelta(seconds=1)),
        ),
        metadata=admin.metadata,
    )
    with pytest.raises(grpc.aio.AioRpcError) as still_assigned:
        await rbac.DeleteRole(rbac_pb2.DeleteRoleRequest(role_id=role.id), metadata=admin.metadata)
    assert failure(still_assigned.value).reason == "ROLE_IN_USE"
    clock.advance(timedelta(seconds=1.2))
    await rbac.DeleteRole(rbac_pb2.DeleteRoleRequest(role_id=role.id), metadata=admin.metadata)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await rbac.GetRole(rbac_pb2.GetRoleRequest(role_id=role.id), metadata=admin.metadata)
    assert failure(err.value).reason == "ROLE_NOT_FOUND"


async def test_assign_is_idempotent_and_updates_the_expiry(rbac, admin, account) -> None:
    role = (
        await rbac.CreateRole(
            rbac_pb2.CreateRoleRequest(role=_role(None, new_permission())), metadata=admin.metadata
        )
    ).role
    later = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    first = await rbac.AssignRole(
        rbac_pb2.AssignRoleRequest(user_id=account.user_id, role_id=role.id, expire_time=_ts(later)),
        metadata=admin.metadata,
    )
    assert first.assignment.role_name == role.name
    assert first.assignment.expire_time.ToDatetime(tzinfo=UTC) == later
    again = await rbac.AssignRole(
        rbac_pb2.AssignRoleRequest(user_id=account.user_id, role_id=role.id), metadata=admin.metadata
    )
    assert not again.assignment.HasField("expire_time")
    assert again.assignment.create_time == first.assignment.create_time
    listed = await rbac.ListUserRoles(
        rbac_pb2.ListUserRolesRequest(user_id=account.user_id), metadata=admin.metadata
    )
    assert [a.role_id for a in listed.assignments] == [role.id]

    revoked = await rbac.RevokeRole(
        rbac_pb2.RevokeRoleRequest(user_id=account.user_id, role_id=role.id), metadata=admin.metadata
    )
    assert revoked.revoked
    again_revoked = await rbac.RevokeRole(
        rbac_pb2.RevokeRoleRequest(user_id=account.user_id, role_id=role.id), metadata=admin.metadata
    )
    assert not again_revoked.revoked


async def test_assign_validates_its_input(rbac, admin, account) -> None:
    role = (await rbac.CreateRole(rbac_pb2.CreateRoleRequest(role=_role()), metadata=admin.metadata)).role
    unknown = "7a0c3bd4-6a5d-4e0e-9d59-0d7d3f0d4b11"
    cases = [
        (
            rbac_pb2.AssignRoleRequest(user_id=unknown, role_id=role.id),
            grpc.StatusCode.NOT_FOUND,
            "USER_NOT_FOUND",
        ),
        (
            rbac_pb2.AssignRoleRequest(user_id=account.user_id, role_id=unknown),
            grpc.StatusCode.NOT_FOUND,
            "ROLE_NOT_FOUND",
        ),
        (
            rbac_pb2.AssignRoleRequest(user_id="nope", role_id=role.id),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_FIELD",
        ),
        (
            rbac_pb2.AssignRoleRequest(
                user_id=account.user_id,
                role_id=role.id,
                expire_time=_ts(datetime.now(UTC) - timedelta(seconds=5)),
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_FIELD",
        ),
    ]
    for request, code, reason in cases:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await rbac.AssignRole(request, metadata=admin.metadata)
        got = failure(err.value)
        assert (got.code, got.reason) == (code, reason), request
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await rbac.ListUserRoles(rbac_pb2.ListUserRolesRequest(user_id=unknown), metadata=admin.metadata)
    assert failure(err.value).reason == "USER_NOT_FOUND"
