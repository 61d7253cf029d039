"""What a run of RBAC versions touched, from the change log (migration 0008).

Each rbac_version bump writes one or more log rows naming what it touched; a process
catching up from version A to V reads the rows of (A, V] and summarises them here. When
the log cannot say (a version without a row, too many rows, a kind meaning "all") the
summary says `everything`, and the caches are cleared instead of trimmed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from uuid import UUID

# Beyond this many versions behind, or rows to read, clearing is cheaper than trimming.
MAX_VERSIONS_TRIMMED = 256
MAX_ROWS_TRIMMED = 2000


class ChangeKind(Enum):
    USER = "user"  # a user's assignments, disabled flag or existence
    ROLE = "role"  # a role's name or permissions
    MEMBERS = "members"  # a role lost many holders at once
    CATALOGUE = "catalogue"  # a permission added to or dropped from the catalogue
    KEYS = "keys"  # the service keys
    ALL = "all"  # the log cannot say
    NONE = "none"  # the statement changed no row


@dataclass(frozen=True, slots=True)
class LoggedChange:
    version: int
    kind: str
    role_id: UUID | None = None
    user_id: UUID | None = None


@dataclass(frozen=True)
class RbacChanges:
    """What versions up to `version` touched that had not been applied yet."""

    version: int
    everything: bool = False
    users: frozenset[UUID] = frozenset()
    roles: frozenset[UUID] = frozenset()
    members: frozenset[UUID] = frozenset()
    catalogue: bool = False
    keys: bool = False

    @classmethod
    def all_at(cls, version: int) -> RbacChanges:
        return cls(version, everything=True)


def readable(after: int, upto: int) -> bool:
    """Whether the log is worth reading for (after, upto]: not for a process that has
    applied nothing yet, nor one too far behind."""
    return after >= 0 and upto - after <= MAX_VERSIONS_TRIMMED


def summarise(after: int, upto: int, rows: Sequence[LoggedChange]) -> RbacChanges:
    """The rows of (after, upto], in any order. Every version of the range must have a
    row (a gap: a version the log does not name, e.g. written before the log existed or
    pruned), and there must be at most MAX_ROWS_TRIMMED of them; else `everything`."""
    if not readable(after, upto) or len(rows) > MAX_ROWS_TRIMMED:
        return RbacChanges.all_at(upto)
    if {row.version for row in rows} != set(range(after + 1, upto + 1)):
        return RbacChanges.all_at(upto)
    users: set[UUID] = set()
    roles: set[UUID] = set()
    members: set[UUID] = set()
    catalogue = keys = False
    for row in rows:
        kind = _kind(row.kind)
        if kind is ChangeKind.USER and row.user_id is not None:
            users.add(row.user_id)
        elif kind in (ChangeKind.ROLE, ChangeKind.MEMBERS) and row.role_id is not None:
            (roles if kind is ChangeKind.ROLE else members).add(row.role_id)
        elif kind is ChangeKind.CATALOGUE:
            catalogue = True
        elif kind is ChangeKind.KEYS:
            keys = True
        elif kind is not ChangeKind.NONE:
            # ALL, an unknown kind, or an id missing where one is needed.
            return RbacChanges.all_at(upto)
    return RbacChanges(
        upto,
        users=frozenset(users),
        roles=frozenset(roles),
        members=frozenset(members),
        catalogue=catalogue,
        keys=keys,
    )


def _kind(value: str) -> ChangeKind | None:
    try:
        return ChangeKind(value)
    except ValueError:
        return None
