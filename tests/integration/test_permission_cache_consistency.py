"""The permission cache's consistency rule, at the edges a tired change would break:
a lease is never renewed by a process that has not applied the current RBAC version,
a process that missed a notification catches up through its renewal, and a load that
was in flight across an RBAC write is never handed to a check that began after it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from identity.domain.clock import SystemClock
from identity.domain.permissions import RolePatch
from identity.domain.rbac_changes import summarise
from identity.services.authz_sync import RbacSync
from identity.services.permission_cache import PermissionCache
from identity.store.rbac_channel import RbacChannel
from tests.conftest import register_and_login
from tests.rbac_support import OPERATOR, give, make_role, new_permission

LEASE = timedelta(seconds=0.9)


async def _bump(services: Any) -> int:
    """An RBAC write (a new role) as the operator; returns the version it committed."""
    await make_role(services, new_permission("bump"))
    async with services.db.reader() as uow:
        return int(await uow.roles.version())


async def test_a_lease_is_renewed_only_with_the_current_version_applied(services) -> None:
    lease = uuid.uuid4()
    async with services.db.reader() as uow:
        current = int(await uow.roles.version())
        assert await uow.rbac_leases.renew(lease, current, LEASE, "test", 1) == (current, True)
    newer = await _bump(services)
    assert newer > current
    async with services.db.reader() as uow:
        # Behind: refused, and told the version to catch up to.
        assert await uow.rbac_leases.renew(lease, current, LEASE, "test", 1) == (newer, False)
        assert await uow.rbac_leases.renew(lease, newer, LEASE, "test", 1) == (newer, True)
        await uow.rbac_leases.release(lease)


class _DeafConnection:
    """A listening connection that hears no notification (a lost NOTIFY, a reconnect
    that missed one): only the lease renewals can tell the process what changed."""

    def __init__(self, connection: Any) -> None:
        self.leases = connection.leases
        self.changes = connection.changes

    async def next_version(self, wait_seconds: float) -> int | None:
        await asyncio.sleep(max(0.0, wait_seconds))
        return None


class _DeafChannel:
    def __init__(self, channel: RbacChannel) -> None:
        self._channel = channel

    @asynccontextmanager
    async def listen(self) -> AsyncIterator[_DeafConnection]:
        async with self._channel.listen() as connection:
            yield _DeafConnection(connection)


@asynccontextmanager
async def _cache(services: Any, channel: Any, db: Any = None) -> AsyncIterator[PermissionCache]:
    sync = RbacSync(services.db, channel, SystemClock(), lease_ttl=LEASE)
    cache = PermissionCache(db or services.db, sync, SystemClock(), max_users=100)
    await sync.start()
    assert sync.trusted()
    try:
        yield cache
    finally:
        await sync.stop()


async def test_a_process_that_missed_a_change_catches_up_before_it_trusts_its_cache(
    services, settings, account
) -> None:
    permission = new_permission()
    role = await give(services, account.user_id, permission)
    channel = _DeafChannel(RbacChannel(settings.database_url, connect_timeout=5))
    async with _cache(services, channel) as cache:
        user = uuid.UUID(account.user_id)
        assert (await cache.grants(user)).holds(permission)  # cached now
        assert await services.roles.revoke_role(OPERATOR, account.user_id, str(role.id))
        # The write has returned: no process may answer from before it.
        assert not (await cache.grants(user)).holds(permission)


class _HeldRoles:
    def __init__(self, roles: Any, gate: _Gate) -> None:
        self._roles = roles
        self._gate = gate

    def __getattr__(self, name: str) -> Any:
        return getattr(self._roles, name)

    async def held_roles(self, *args: Any) -> Any:
        snapshot = await self._roles.held_roles(*args)
        if self._gate.armed:
            self._gate.armed = False
            self._gate.holding.set()
            await self._gate.release.wait()
        return snapshot


class _Gate:
    def __init__(self) -> None:
        self.armed = False
        self.holding = asyncio.Event()
        self.release = asyncio.Event()


class _HeldDatabase:
    """The real database, but the next grant read, once armed, waits after reading."""

    def __init__(self, db: Any) -> None:
        self._db = db
        self.gate = _Gate()

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[Any]:
        async with self._db.reader() as uow:
            uow.roles = _HeldRoles(uow.roles, self.gate)
            yield uow


async def test_a_load_in_flight_across_a_write_is_not_joined_by_a_later_check(
    services, settings, account
) -> None:
    permission = new_permission()
    role = await give(services, account.user_id, permission)
    held = _HeldDatabase(services.db)
    channel = RbacChannel(settings.database_url, connect_timeout=5)
    async with _cache(services, channel, held) as cache:
        user = uuid.UUID(account.user_id)
        held.gate.armed = True
        before = asyncio.create_task(cache.grants(user))  # reads the grants, then waits
        await asyncio.wait_for(held.gate.holding.wait(), 5)
        assert await services.roles.revoke_role(OPERATOR, account.user_id, str(role.id))
        after = asyncio.create_task(cache.grants(user))  # began after the write returned
        await asyncio.sleep(0.05)
        held.gate.release.set()
        grants_after = await asyncio.wait_for(after, 5)
        await asyncio.wait_for(before, 5)
        assert not grants_after.holds(permission)
        # And nothing stale stayed behind for the checks after those.
        assert not (await cache.grants(user)).holds(permission)


async def test_each_rbac_statement_logs_what_it_touched_in_its_transaction(services, account, auth) -> None:
    other = await register_and_login(auth)
    permission = new_permission()
    role = await give(services, account.user_id, permission)
    await services.roles.assign_role(OPERATOR, other.user_id, str(role.id), None)
    async with services.db.reader() as uow:
        before = int(await uow.roles.version())
    await services.roles.revoke_role(OPERATOR, account.user_id, str(role.id))
    await services.roles.update_role(OPERATOR, str(role.id), RolePatch(permissions=(new_permission(),)))
    await services.roles.delete_role(OPERATOR, str(role.id), True)  # cascades to other's assignment
    async with services.db.reader() as uow:
        after = int(await uow.roles.version())
        logged = await uow.rbac_changes.between(before, after, 1000)
    assert {row.version for row in logged} == set(range(before + 1, after + 1))  # no gap
    changes = summarise(before, after, logged)
    assert not changes.everything
    assert changes.users == {uuid.UUID(account.user_id), uuid.UUID(other.user_id)}
    assert changes.roles == {role.id} and changes.catalogue


async def test_a_revoke_drops_only_that_users_entry_on_every_process(
    services, settings, account, auth
) -> None:
    other = await register_and_login(auth)
    permission = new_permission()
    role = await give(services, account.user_id, permission)
    await services.roles.assign_role(OPERATOR, other.user_id, str(role.id), None)
    channel = RbacChannel(settings.database_url, connect_timeout=5)
    async with _cache(services, channel) as cache:
        user, kept = uuid.UUID(account.user_id), uuid.UUID(other.user_id)
        assert (await cache.grants(user)).holds(permission)
        assert (await cache.grants(kept)).holds(permission)
        assert cache.users == 2
        assert await services.roles.revoke_role(OPERATOR, account.user_id, str(role.id))
        # Returned: applied by this process too, and only the revoked user's entry went.
        assert cache.users == 1
        assert cache.known_for_user(str(kept), permission) is not None
        assert not (await cache.grants(user)).holds(permission)
