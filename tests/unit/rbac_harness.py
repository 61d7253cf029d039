"""The fast tier's RBAC world: in-memory users, roles and assignments, the permission
cache over them, the role service, a frozen clock and a lease the test grants or lets
lapse."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from identity.domain.observer import NOOP, Observer
from identity.domain.permissions import ROLES_ASSIGN, ROLES_WRITE, Decision, role_name
from identity.domain.rbac_changes import LoggedChange
from identity.services.permission_cache import PermissionCache
from identity.services.rbac import Actor, RoleService
from tests.fakes import FakeDatabase, FakeSync, FrozenClock


class Rbac:
    def __init__(self, max_users: int = 100, observer: Observer = NOOP) -> None:
        self.clock = FrozenClock()
        self.db = FakeDatabase(self.clock)
        self.sync = FakeSync(self.clock, self.db)
        self.sync.grant_lease(3600)
        self.cache = PermissionCache(
            self.db,  # type: ignore[arg-type]
            self.sync,  # type: ignore[arg-type]
            self.clock,
            max_users=max_users,
            observer=observer,
        )
        self.roles = RoleService(self.db, self.cache, self.sync, None, None, self.clock)  # type: ignore[arg-type]

    @property
    def state(self) -> Any:
        """The in-memory RBAC tables, version and change log."""
        return self.db.state.rbac

    @property
    def snapshots(self) -> int:
        """Reads of one user's grants (the permission cache's or the escalation rule's)."""
        return self.db.state.rbac.snapshots

    @property
    def user_reads(self) -> int:
        return self.db.state.rbac.snapshots

    @property
    def role_reads(self) -> int:
        return self.db.state.rbac.role_reads

    async def user(self, login: str) -> uuid.UUID:
        async with self.db.transaction() as uow:
            user = await uow.users.create(uuid.uuid4(), login, login, None, b"")
        return user.id

    async def role(self, *permissions: str, name: str | None = None) -> uuid.UUID:
        role_id = uuid.uuid4()
        async with self.db.transaction() as uow:
            await uow.roles.insert(role_id, role_name(name or f"role-{role_id.hex[:8]}"), "")
            await uow.roles.set_permissions(role_id, frozenset(permissions))
        return role_id

    async def give(self, user_id: uuid.UUID, role_id: uuid.UUID, expires_at: datetime | None = None) -> None:
        async with self.db.transaction() as uow:
            await uow.roles.assign(user_id, role_id, expires_at, None)

    async def give_until(self, user_id: uuid.UUID, role_id: uuid.UUID, seconds: float) -> None:
        await self.give(user_id, role_id, self.clock.now() + timedelta(seconds=seconds))

    async def set_permissions(self, role_id: uuid.UUID, *permissions: str) -> None:
        async with self.db.transaction() as uow:
            await uow.roles.set_permissions(role_id, frozenset(permissions))

    def name(self, role_id: uuid.UUID) -> str:
        return str(self.state.roles[role_id].name)

    def log(self, kind: str) -> None:
        """A version that touched only `kind` (e.g. "keys"), as its trigger logs it."""
        self.state.version += 1
        self.state.changes.append(LoggedChange(self.state.version, kind))

    async def delegate(self, *held: str) -> Actor:
        """A user holding the admin permissions and `held`, not a superuser."""
        user_id = await self.user(f"delegate-{uuid.uuid4().hex[:6]}")
        await self.give(user_id, await self.role(ROLES_WRITE, ROLES_ASSIGN, *held))
        return Actor(user_id)

    def apply(self) -> None:
        """What the sync does on a notification: apply the committed version."""
        self.sync.observe(self.db.state.rbac.version)

    async def holds(self, user_id: uuid.UUID, permission: str) -> bool:
        return (await self.cache.decide(await self.cache.user(user_id), permission)).allowed

    async def decision(self, user_id: uuid.UUID, permission: str) -> tuple[Any, ...]:
        """(permission, allowed, reason, granted_by) of one check."""
        return fields(await self.cache.decide(await self.cache.user(user_id), permission))


def fields(decision: Decision) -> tuple[Any, ...]:
    return (decision.permission, decision.allowed, decision.reason, decision.granted_by)
