"""The permission cache, its tables and the change log's rules, held to what mutation
testing (`make mutate`) showed no other test pinned: each test names the behaviour it
protects. The cache runs over the fakes, as in test_permission_invalidation_fast.py."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from identity.domain.permissions import role_name
from identity.services.permission_cache import PermissionCache
from tests.fakes import FakeDatabase, FakeRoles, FakeSync, FrozenClock

PUBLISH = "catalog.films.publish"
DELETE = "catalog.films.delete"
ADMIN = "iam.users.admin"


class Rbac:
    def __init__(self) -> None:
        self.clock = FrozenClock()
        self.db = FakeDatabase(self.clock)
        self.sync = FakeSync(self.clock, self.db)
        self.sync.grant_lease(3600)
        self.cache = PermissionCache(self.db, self.sync, self.clock, max_users=100)  # type: ignore[arg-type]

    @property
    def state(self) -> Any:
        return self.db.state.rbac

    async def user(self, login: str) -> uuid.UUID:
        async with self.db.transaction() as uow:
            user = await uow.users.create(uuid.uuid4(), login, login, None, b"")
        return user.id

    async def role(self, *permissions: str) -> uuid.UUID:
        role_id = uuid.uuid4()
        async with self.db.transaction() as uow:
            await uow.roles.insert(role_id, role_name(f"role-{role_id.hex[:8]}"), "")
            await uow.roles.set_permissions(role_id, frozenset(permissions))
        return role_id

    async def give(self, user_id: uuid.UUID, role_id: uuid.UUID) -> None:
        async with self.db.transaction() as uow:
            await uow.roles.assign(user_id, role_id, None, None)

    async def set_permissions(self, role_id: uuid.UUID, *permissions: str) -> None:
        async with self.db.transaction() as uow:
            await uow.roles.set_permissions(role_id, frozenset(permissions))

    def apply(self) -> None:
        self.sync.observe(self.state.version)


def _hold_first(monkeypatch: Any, method: str) -> tuple[asyncio.Event, asyncio.Event]:
    """Makes the first call of FakeRoles.`method` read, then wait for `release`."""
    read, release = asyncio.Event(), asyncio.Event()
    original = getattr(FakeRoles, method)

    async def held(self: FakeRoles, *args: Any) -> Any:
        result = await original(self, *args)
        if not read.is_set():
            read.set()
            await release.wait()
        return result

    monkeypatch.setattr(FakeRoles, method, held)
    return read, release


async def test_a_role_refill_across_a_clear_never_resolves_old_role_numbers_in_new_tables(
    monkeypatch: Any,
) -> None:
    rbac = Rbac()
    ann, bob = await rbac.user("ann"), await rbac.user("bob")
    editors, admins = await rbac.role(PUBLISH), await rbac.role(ADMIN)
    await rbac.give(ann, editors)
    await rbac.give(bob, admins)
    rbac.apply()
    await rbac.cache.user(ann)  # editors is role number 0 of these tables
    await rbac.set_permissions(editors, DELETE)
    rbac.apply()  # editors out of the tables: ann's next read refills that role only
    read, release = _hold_first(monkeypatch, "role_grants")
    refill = asyncio.ensure_future(rbac.cache.user(ann))
    await read.wait()
    rbac.state.version += 1  # a version the log does not name: every table replaced
    rbac.apply()
    await rbac.cache.user(bob)  # admins is role number 0 of the new tables
    release.set()
    view = await refill
    assert [role.name for role in view.live] == [rbac.state.roles[editors].name]
    assert not (await rbac.cache.decide(view, ADMIN)).allowed
