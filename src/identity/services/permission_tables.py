"""The compact tables the permission cache answers from (services/permission_cache.py
says when an entry may be used; this module says how entries are laid out).

Sized for a large catalogue (10k roles, 100k cached users): what is shared is stored
once, and what is per user is a plain tuple of numbers, which the garbage collector
stops tracking after its first pass, so a full collection does not walk the users:

- permissions: each name is interned to a small int once per process;
- roles: each role id is numbered once, and its entry (name, permission numbers) is
  stored once, however many users hold it;
- users: the user id's 128-bit number -> a `bytes` record packing the version it was
  read at, its deadline, the disabled flag and its live and expired role numbers: about
  0.2 KB a user all told (README, Permission cache). A dict of ints and bytes is not
  tracked by the garbage collector at all: no collection walks the users."""

from __future__ import annotations

import asyncio
import itertools
import math
import struct
from collections.abc import Collection
from uuid import UUID

from identity.domain.permissions import WILDCARD, Decision, DecisionReason, RoleGrants, UserGrants

# A cached user: version read at, deadline, disabled, how many roles are live, then the
# role numbers (live ones first).
UserRecord = bytes
_HEADER = "<qd?H"
_DEADLINE = struct.Struct("<d")
_LAYOUTS: dict[int, struct.Struct] = {}
_HEADER_SIZE = struct.calcsize(_HEADER)


class User:
    """A user record unpacked, for one check."""

    __slots__ = ("deadline", "disabled", "expired", "live", "version")

    def __init__(self, record: UserRecord) -> None:
        layout = _LAYOUTS.get(len(record))
        if layout is None:
            count = (len(record) - _HEADER_SIZE) // 4
            layout = _LAYOUTS[len(record)] = struct.Struct(f"{_HEADER}{count}I")
        self.version, self.deadline, self.disabled, live, *roles = layout.unpack(record)
        self.live: tuple[int, ...] = tuple(roles[:live])
        self.expired: tuple[int, ...] = tuple(roles[live:])


def pack_user(
    version: int, deadline: float, disabled: bool, live: list[int], expired: list[int]
) -> UserRecord:
    return struct.pack(
        f"{_HEADER}{len(live) + len(expired)}I", version, deadline, disabled, len(live), *live, *expired
    )


def deadline_of(record: UserRecord) -> float:
    return float(_DEADLINE.unpack_from(record, 8)[0])


def user_key(text: str) -> int | None:
    """The table key of a user id in its canonical text form (8-4-4-4-12 hex digits),
    without building a UUID; None for any other form (the full path parses those)."""
    if len(text) != 36 or not text.isascii() or text[8] != "-" or text[13] != "-" or text[18] != "-":
        return None
    digits = text[:8] + text[9:13] + text[14:18] + text[19:23] + text[24:]
    if text[23] != "-" or not digits.isalnum():
        return None
    try:
        return int(digits, 16)
    except ValueError:
        return None


# A role carrying more permissions than this keeps them in a frozenset; fewer, in a
# tuple searched in order (a 20-item frozenset costs 2.2 KB, the tuple 0.2 KB).
_SET_ABOVE = 32
# Tables larger than this are released a chunk per event-loop turn, not at once.
_RELEASE_CHUNK = 5000


class RoleEntry:
    """A role as checks use it. One per role, shared by every user holding it."""

    __slots__ = ("granted_by", "name", "names", "permissions", "role_id", "wildcard")

    def __init__(
        self, role_id: UUID, name: str, permissions: Collection[int], wildcard: bool, names: list[str]
    ) -> None:
        self.role_id = role_id
        self.name = name
        self.permissions = permissions
        self.wildcard = wildcard
        self.granted_by = (name,)
        # The interned names its numbers index: those of the tables it was made for (a
        # clear replaces the tables; an entry made before it keeps meaning what it meant).
        self.names = names

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
        self.users: dict[int, UserRecord] = {}
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
        return RoleEntry(
            grants.role_id, grants.name, carried, WILDCARD in grants.permissions, self.permission_names
        )

    def stale(self, user: User) -> bool:
        """Read before a bulk change to the holders of one of its roles."""
        changed = self.members_changed
        if not changed:
            return False
        return any(changed.get(number, -1) > user.version for number in user.live + user.expired)

    def resolve(self, numbers: tuple[int, ...]) -> tuple[RoleEntry, ...] | None:
        """The entries of these roles, or None if one is not in the table."""
        roles = self.roles
        try:
            return tuple([roles[number] for number in numbers])
        except KeyError:
            return None

    def missing(self, user: User) -> list[UUID]:
        return [self.role_ids[number] for number in user.live + user.expired if number not in self.roles]

    def add_user(self, key: int, record: UserRecord, max_users: int) -> None:
        users = self.users
        if key not in users and len(users) >= max_users:
            # The oldest first, a batch at a time: evicting one by one from the front of a
            # dict rescans the holes left by the previous evictions every time.
            for oldest in list(itertools.islice(users, max(1, max_users // 32))):
                del users[oldest]
        users[key] = record


def release(table: dict[int, UserRecord]) -> None:
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
    user_id: UUID, exists: bool, disabled: bool, live: tuple[RoleEntry, ...], expired: tuple[RoleEntry, ...]
) -> UserGrants:
    """The UserGrants of a cached user (for the admin RPCs and ListUserPermissions); the
    earliest expiry is not kept by the cache."""
    granted: dict[str, set[str]] = {}
    for role in live:
        for number in role.permissions:
            granted.setdefault(role.names[number], set()).add(role.name)
    return UserGrants(
        user_id=user_id,
        exists=exists,
        disabled=disabled,
        granted={name: tuple(sorted(roles)) for name, roles in granted.items()},
        expired=frozenset(role.names[number] for role in expired for number in role.permissions),
        next_expiry=None,
    )


NO_DEADLINE = math.inf
