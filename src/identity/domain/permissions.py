"""Permissions, roles and decisions: names, validation and the records of RBAC.

A permission is a name such as ``catalog.films.publish``: lower-case segments
separated by single dots, each segment starting with a letter and holding letters,
digits, ``_`` or ``-``; at most 128 characters. The wildcard ``*`` exists only in the
built-in superuser role and cannot be put in any other role or asked about."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import NamedTuple
from uuid import UUID

from identity.domain.errors import InvalidArgument, Reason
from identity.domain.lookalikes import NameProblem, name_problem

MAX_PERMISSION_LENGTH = 128
WILDCARD = "*"
SUPERUSER_ROLE_ID = UUID("00000000-0000-0000-0000-000000000001")
SUPERUSER_ROLE_NAME = "superuser"

# The service's own namespace: what the admin RPCs of RbacService require.
ROLES_READ = "identity.roles.read"
ROLES_WRITE = "identity.roles.write"
ROLES_ASSIGN = "identity.roles.assign"
IDENTITY_PERMISSIONS = (ROLES_READ, ROLES_WRITE, ROLES_ASSIGN)

MAX_ROLE_NAME_LENGTH = 64
MAX_DESCRIPTION_LENGTH = 1024
MAX_PERMISSIONS_PER_ROLE = 200
# CheckPermissions answers at most this many items per call.
MAX_BATCH_CHECKS = 100

_SEGMENT = r"[a-z][a-z0-9_-]*"
_PERMISSION = re.compile(rf"{_SEGMENT}(?:\.{_SEGMENT})*")
_ROLE_PUNCTUATION = frozenset("._-: ")


def is_valid_permission(name: str) -> bool:
    return len(name) <= MAX_PERMISSION_LENGTH and _PERMISSION.fullmatch(name) is not None


def validate_permission(name: str, *, field: str = "permission") -> str:
    if not name:
        raise InvalidArgument(field, "permission is required", reason=Reason.PERMISSION_NAME_INVALID)
    if not is_valid_permission(name):
        raise InvalidArgument(
            field,
            "permission must be lower-case segments separated by dots (e.g. catalog.films.publish), "
            f"at most {MAX_PERMISSION_LENGTH} characters",
            reason=Reason.PERMISSION_NAME_INVALID,
        )
    return name


def validate_permission_set(
    names: list[str] | tuple[str, ...], *, field: str = "permissions"
) -> frozenset[str]:
    if len(names) > MAX_PERMISSIONS_PER_ROLE:
        raise InvalidArgument(
            field,
            f"a role carries at most {MAX_PERMISSIONS_PER_ROLE} permissions",
            reason=Reason.TOO_MANY_ITEMS,
        )
    for index, name in enumerate(names):
        validate_permission(name, field=f"{field}[{index}]")
    return frozenset(names)


@dataclass(frozen=True)
class RoleName:
    display: str
    canonical: str


def role_name(raw: str, *, field: str = "name") -> RoleName:
    """NFKC, inner whitespace collapsed, trimmed; the canonical form is also case folded.

    Letters of one script, digits, spaces and . _ - : only, so look-alike names collide
    or are refused (the same rule as logins)."""
    display = " ".join(unicodedata.normalize("NFKC", raw).split())
    canonical = unicodedata.normalize("NFKC", display.casefold())
    if not 1 <= len(display) <= MAX_ROLE_NAME_LENGTH:
        raise InvalidArgument(
            field,
            f"role name must be 1 to {MAX_ROLE_NAME_LENGTH} characters",
            reason=Reason.ROLE_NAME_INVALID,
        )
    problem = name_problem(canonical, _ROLE_PUNCTUATION)
    if problem is NameProblem.BAD_CHARACTER:
        raise InvalidArgument(
            field,
            "role name may contain letters, digits, spaces and . _ - : only",
            reason=Reason.ROLE_NAME_INVALID,
        )
    if problem is NameProblem.MIXED_SCRIPTS:
        raise InvalidArgument(
            field, "role name mixes letters of several scripts", reason=Reason.ROLE_NAME_INVALID
        )
    return RoleName(display, canonical)


def validate_description(raw: str, *, field: str = "description") -> str:
    description = raw.strip()
    if len(description) > MAX_DESCRIPTION_LENGTH:
        raise InvalidArgument(field, f"description is at most {MAX_DESCRIPTION_LENGTH} characters")
    if any(unicodedata.category(c) == "Cc" and c not in "\n\t" for c in description):
        raise InvalidArgument(field, "description contains control characters")
    return description


def parse_uuid(raw: str, field: str) -> UUID:
    try:
        return UUID(raw)
    except (ValueError, AttributeError, TypeError):
        raise InvalidArgument(field, f"{field} must be a UUID") from None


@dataclass(frozen=True)
class Role:
    id: UUID
    name: str
    name_canonical: str
    description: str
    permissions: tuple[str, ...]
    builtin: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class RoleAssignment:
    user_id: UUID
    role_id: UUID
    role_name: str
    expires_at: datetime | None
    created_at: datetime


@dataclass(frozen=True)
class RolePatch:
    """What UpdateRole changes; None leaves a field as it is."""

    name: str | None = None
    description: str | None = None
    permissions: tuple[str, ...] | None = None


class DecisionReason(Enum):
    """Values match identity.v1.DecisionReason names without the prefix."""

    GRANTED = "GRANTED"
    NOT_GRANTED = "NOT_GRANTED"
    NO_SUCH_PERMISSION = "NO_SUCH_PERMISSION"
    ASSIGNMENT_EXPIRED = "ASSIGNMENT_EXPIRED"
    USER_UNKNOWN = "USER_UNKNOWN"
    TOKEN_INVALID = "TOKEN_INVALID"
    PERMISSION_INVALID = "PERMISSION_INVALID"


@dataclass(frozen=True, slots=True, eq=False)
class Decision:
    """Compared and hashed by identity: decisions are memoised and looked up by the object."""

    permission: str
    allowed: bool
    reason: DecisionReason
    granted_by: tuple[str, ...] = ()


class Subject(NamedTuple):
    """Whose permissions are asked about: a user id, or an access token to validate first.
    (A named tuple: built on every check, it must be cheap.)"""

    user_id: str | None = None
    access_token: str | None = None


@dataclass(frozen=True)
class PermissionCheck:
    subject: Subject
    permission: str


@dataclass(frozen=True)
class EffectivePermission:
    permission: str
    granted_by: tuple[str, ...]


@dataclass(frozen=True)
class ServiceKey:
    id: UUID
    name: str
    created_at: datetime
    revoked_at: datetime | None = None


@dataclass(frozen=True)
class IssuedServiceKey:
    key: ServiceKey
    secret: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class RoleGrants:
    """A role as the permission cache reads it: its name and the permissions it carries."""

    role_id: UUID
    name: str
    permissions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class HeldRole:
    """One of a user's assignments: the role it gives, until when."""

    role: RoleGrants
    expires_at: datetime | None


@dataclass(frozen=True)
class GrantRow:
    """One (assignment, permission) pair of a user, as read in one snapshot."""

    role_name: str
    expires_at: datetime | None
    permission: str | None


@dataclass(frozen=True, slots=True)
class UserGrants:
    """A user's effective permissions at one moment: what checks are answered from."""

    user_id: UUID
    exists: bool
    disabled: bool
    # Live assignments only: permission -> names of the roles granting it.
    granted: dict[str, tuple[str, ...]]
    # Permissions carried by the user's expired assignments.
    expired: frozenset[str]
    # The earliest future expiry among live assignments: the answer changes then.
    next_expiry: datetime | None

    @classmethod
    def build(
        cls, user_id: UUID, *, exists: bool, disabled: bool, rows: list[GrantRow], now: datetime
    ) -> UserGrants:
        granted: dict[str, set[str]] = {}
        expired: set[str] = set()
        next_expiry: datetime | None = None
        if exists and not disabled:
            for row in rows:
                live = row.expires_at is None or row.expires_at > now
                if (
                    live
                    and row.expires_at is not None
                    and (next_expiry is None or row.expires_at < next_expiry)
                ):
                    next_expiry = row.expires_at
                if row.permission is None:
                    continue
                if live:
                    granted.setdefault(row.permission, set()).add(row.role_name)
                else:
                    expired.add(row.permission)
        return cls(
            user_id=user_id,
            exists=exists,
            disabled=disabled,
            granted={name: tuple(sorted(roles)) for name, roles in granted.items()},
            expired=frozenset(expired),
            next_expiry=next_expiry,
        )

    @property
    def superuser(self) -> bool:
        return WILDCARD in self.granted

    def holds(self, permission: str) -> bool:
        """For the admin RPCs and escalation rules: the wildcard holds everything."""
        return WILDCARD in self.granted or permission in self.granted

    def decide(self, permission: str, catalogue: frozenset[str]) -> Decision:
        """The answer to CheckPermission for a well-formed permission name.

        A permission that no role carries (and that is not one of the service's own) is
        NO_SUCH_PERMISSION for everyone, superusers included: a typo in a peer's check
        must show up as such rather than pass for the admin."""
        if not self.exists:
            return Decision(permission, False, DecisionReason.USER_UNKNOWN)
        if permission not in catalogue:
            return Decision(permission, False, DecisionReason.NO_SUCH_PERMISSION)
        direct = self.granted.get(permission)
        wildcard = self.granted.get(WILDCARD)
        if direct or wildcard:
            roles = tuple(sorted({*(direct or ()), *(wildcard or ())}))
            return Decision(permission, True, DecisionReason.GRANTED, roles)
        if permission in self.expired or WILDCARD in self.expired:
            return Decision(permission, False, DecisionReason.ASSIGNMENT_EXPIRED)
        return Decision(permission, False, DecisionReason.NOT_GRANTED)

    def effective(self) -> list[EffectivePermission]:
        return [EffectivePermission(name, roles) for name, roles in sorted(self.granted.items())]
