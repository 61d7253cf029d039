"""The compact tables the permission cache answers from (services/permission_cache.py
says when an entry may be used; this module says how entries are laid out).

Sized for a large catalogue (10k roles, 100k cached users): what is shared is stored
once, and what is per user is a plain tuple of numbers, which the garbage collector
stops tracking after its first pass, so a full collection does not walk the users:

- permissions: each name is interned to a small int once per process;
- roles: each role id is numbered once, and its entry (name, permission numbers) is
  stored once, however many users hold it;
- users: `str(user id) -> (version, deadline, disabled, live roles, expired roles)`,
  the roles as tuples of role numbers: about 0.35 KB a user all told (README,
  Permission cache)."""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Collection
from typing import Final
from uuid import UUID

from identity.domain.permissions import WILDCARD, Decision, DecisionReason, RoleGrants, UserGrants

# A cached user; a plain tuple (a class instance or a named tuple stays tracked by the
# garbage collector): (version read at, deadline, disabled, live roles, expired roles).
UserRecord = tuple[int, float, bool, tuple[int, ...], tuple[int, ...]]
VERSION: Final = 0
DEADLINE: Final = 1
DISABLED: Final = 2
LIVE: Final = 3
EXPIRED: Final = 4

# A role carrying more permissions than this keeps them in a frozenset; fewer, in a
# tuple searched in order (a 20-item frozenset costs 2.2 KB, the tuple 0.2 KB).
_SET_ABOVE = 32
# Tables larger than this are released a chunk per event-loop turn, not at once.
_RELEASE_CHUNK = 5000


class RoleEntry:
    """A role as checks use it. One per role, shared by every user holding it."""

    __slots__ = ("granted_by", "name", "permissions", "role_id", "wildcard")

    def __init__(self, role_id: UUID, name: str, permissions: Collection[int], wildcard: bool) -> None:
        self.role_id = role_id
        self.name = name
        self.permissions = permissions
        self.wildcard = wildcard
        self.granted_by = (name,)

    def carries(self, permission: int | None) -> bool:
        return self.wildcard or (permission is not None and permission in self.permissions)


class Tables:
    """Interned names, roles and users: replaced whole when everything is cleared."""

    def __init__(self) -> None:
        self.permission_ids: dict[str, int] = {}
        self.permission_names: list[str] = []
        self.role_numbers: dict[UUID, int] = {}
        self.role_ids: list[UUID] = []
        self.roles: dict[int, RoleEntry] = {}
        self.users: dict[str, UserRecord] = {}
        # role number -> the version at which it lost holders in bulk: records of its
        # holders read before that are stale (the log could not name each holder).
        self.members_changed: dict[int, int] = {}

    def permission(self, name: str) -> int:
        number = self.permission_ids.get(name)
        if number is None:
            number = self.permission_ids[name] = len(self.permission_names)
            self.permission_names.append(name)
        return number

    def role_number(self, role_id: UUID) -> int:
        number = self.role_numbers.get(role_id)
        if number is None:
            number = self.role_numbers[role_id] = len(self.role_ids)
            self.role_ids.append(role_id)
        return number

    def role_entry(self, grants: RoleGrants) -> RoleEntry:
        numbers = sorted({self.permission(name) for name in grants.permissions})
        carried: Collection[int] = frozenset(numbers) if len(numbers) > _SET_ABOVE else tuple(numbers)
        return RoleEntry(grants.role_id, grants.name, carried, WILDCARD in grants.permissions)

    def stale(self, record: UserRecord) -> bool:
        """Read before a bulk change to the holders of one of its roles."""
        changed = self.members_changed
        if not changed:
            return False
        version = record[VERSION]
        return any(changed.get(number, -1) > version for number in record[LIVE] + record[EXPIRED])

    def resolve(self, numbers: tuple[int, ...]) -> tuple[RoleEntry, ...] | None:
        """The entries of these roles, or None if one is not in the table."""
        roles = self.roles
        try:
            return tuple([roles[number] for number in numbers])
        except KeyError:
            return None

    def missing(self, record: UserRecord) -> list[UUID]:
        return [
            self.role_ids[number] for number in record[LIVE] + record[EXPIRED] if number not in self.roles
        ]

    def add_user(self, key: str, record: UserRecord, max_users: int) -> None:
        users = self.users
        if key not in users and len(users) >= max_users:
            # The oldest first, a batch at a time: evicting one by one from the front of a
            # dict rescans the holes left by the previous evictions every time.
            for oldest in list(itertools.islice(users, max(1, max_users // 32))):
                del users[oldest]
        users[key] = record


def release(table: dict[object, object] | dict[str, UserRecord]) -> None:
    """Drops a table no longer referenced elsewhere a chunk per event-loop turn, so that
    freeing 100k entries does not hold up the calls in between."""
    if len(table) <= _RELEASE_CHUNK:
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return

    def step() -> None:
        for _ in range(min(_RELEASE_CHUNK, len(table))):
            table.popitem()
        if table:
            loop.call_soon(step)

    loop.call_soon(step)


def decide(
    permission: str,
    live: tuple[RoleEntry, ...],
    expired: tuple[RoleEntry, ...],
    permission_id: int | None,
    catalogue: frozenset[str] | None,
) -> Decision | None:
    """The answer to a check of an existing user for a well-formed permission name, as
    UserGrants.decide gives it; None when it needs the catalogue and `catalogue` is None.

    A permission some live role carries is in the catalogue by definition, so a direct
    grant needs no catalogue; a wildcard grant and every refusal do."""
    direct = [role for role in live if permission_id is not None and permission_id in role.permissions]
    wildcard = [role for role in live if role.wildcard]
    if direct and not wildcard:
        return Decision(permission, True, DecisionReason.GRANTED, _names(direct))
    if catalogue is None:
        return None
    if permission not in catalogue:
        return Decision(permission, False, DecisionReason.NO_SUCH_PERMISSION)
    if direct or wildcard:
        return Decision(permission, True, DecisionReason.GRANTED, _names(direct + wildcard))
    if any(role.carries(permission_id) for role in expired):
        return Decision(permission, False, DecisionReason.ASSIGNMENT_EXPIRED)
    return Decision(permission, False, DecisionReason.NOT_GRANTED)


def _names(roles: list[RoleEntry]) -> tuple[str, ...]:
    if len(roles) == 1:
        return roles[0].granted_by
    return tuple(sorted({role.name for role in roles}))


def user_grants(
    user_id: UUID,
    exists: bool,
    disabled: bool,
    live: tuple[RoleEntry, ...],
    expired: tuple[RoleEntry, ...],
    names: list[str],
) -> UserGrants:
    """The UserGrants of a cached user (for the admin RPCs and ListUserPermissions); the
    earliest expiry is not kept by the cache."""
    granted: dict[str, set[str]] = {}
    for role in live:
        for number in role.permissions:
            granted.setdefault(names[number], set()).add(role.name)
    return UserGrants(
        user_id=user_id,
        exists=exists,
        disabled=disabled,
        granted={name: tuple(sorted(roles)) for name, roles in granted.items()},
        expired=frozenset(names[number] for role in expired for number in role.permissions),
        next_expiry=None,
    )


NO_DEADLINE = math.inf
