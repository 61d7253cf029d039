"""Domain <-> proto conversion for RbacService, kept in one place."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from identity.api.convert import timestamp
from identity.domain.errors import InvalidArgument
from identity.domain.permissions import (
    Decision,
    DecisionReason,
    EffectivePermission,
    PermissionCheck,
    Role,
    RoleAssignment,
    RolePatch,
    Subject,
)
from identity.services.rbac import UPDATE_PATHS
from identity.v1 import rbac_pb2

_REASONS = {
    name: rbac_pb2.DecisionReason.Value("DECISION_REASON_" + name)
    for name in (
        "GRANTED",
        "NOT_GRANTED",
        "NO_SUCH_PERMISSION",
        "ASSIGNMENT_EXPIRED",
        "USER_UNKNOWN",
        "TOKEN_INVALID",
        "PERMISSION_INVALID",
    )
}


def role(value: Role) -> rbac_pb2.Role:
    return rbac_pb2.Role(
        id=str(value.id),
        name=value.name,
        description=value.description,
        permissions=list(value.permissions),
        builtin=value.builtin,
        create_time=timestamp(value.created_at),
        update_time=timestamp(value.updated_at),
    )


def assignment(value: RoleAssignment) -> rbac_pb2.RoleAssignment:
    return rbac_pb2.RoleAssignment(
        user_id=str(value.user_id),
        role_id=str(value.role_id),
        role_name=value.role_name,
        expire_time=timestamp(value.expires_at),
        create_time=timestamp(value.created_at),
    )


def expire_time(request: Any) -> datetime | None:
    if not request.HasField("expire_time"):
        return None
    try:
        value: datetime = request.expire_time.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise InvalidArgument("expire_time", "expire_time is out of range") from None
    return value


def role_patch(request: rbac_pb2.UpdateRoleRequest) -> RolePatch:
    paths = list(request.update_mask.paths) or sorted(UPDATE_PATHS)
    unknown = [path for path in paths if path not in UPDATE_PATHS]
    if unknown:
        raise InvalidArgument("update_mask", f"update_mask may name only {', '.join(sorted(UPDATE_PATHS))}")
    given = request.role
    return RolePatch(
        name=given.name if "name" in paths else None,
        description=given.description if "description" in paths else None,
        permissions=tuple(given.permissions) if "permissions" in paths else None,
    )


def subject(value: rbac_pb2.Subject) -> Subject:
    kind = value.WhichOneof("kind")
    if kind == "user_id":
        return Subject(user_id=value.user_id)
    if kind == "access_token":
        return Subject(access_token=value.access_token)
    return Subject()


def checks(request: rbac_pb2.CheckPermissionsRequest) -> list[PermissionCheck]:
    return [PermissionCheck(subject(item.subject), item.permission) for item in request.checks]


def check_response(value: Decision) -> rbac_pb2.CheckPermissionResponse:
    return _check_response(value.allowed, value.reason, value.granted_by)


@lru_cache(maxsize=4096)
def _check_response(
    allowed: bool, reason: DecisionReason, granted_by: tuple[str, ...]
) -> rbac_pb2.CheckPermissionResponse:
    # A pure function of its arguments, memoised: the same few answers are sent again and
    # again, and a message is only read when it is serialised. Callers never modify it.
    return rbac_pb2.CheckPermissionResponse(
        allowed=allowed, reason=_REASONS[reason.value], granted_by=granted_by
    )


def decision(value: Decision) -> rbac_pb2.PermissionDecision:
    return rbac_pb2.PermissionDecision(
        permission=value.permission,
        allowed=value.allowed,
        reason=_REASONS[value.reason.value],
        granted_by=value.granted_by,
    )


def effective(values: list[EffectivePermission]) -> list[rbac_pb2.EffectivePermission]:
    return [rbac_pb2.EffectivePermission(permission=v.permission, granted_by=v.granted_by) for v in values]
