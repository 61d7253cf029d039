"""Operator actions on users from the command line: bootstrap a superuser, unlock,
disable or enable an account, show what a user may do. The operator is trusted (they hold the database);
nothing here is reachable over gRPC."""

from __future__ import annotations

import uuid

import structlog

from identity.domain.errors import UserNotFound
from identity.domain.logins import canonical_login, display_login
from identity.domain.models import User
from identity.domain.passwords import check_password_policy
from identity.domain.permissions import SUPERUSER_ROLE_ID, EffectivePermission
from identity.security.passwords import PasswordHasher
from identity.services.authz_sync import RbacSync
from identity.services.permission_cache import PermissionCache
from identity.services.user_overview import UserOverview, load_overview
from identity.store.database import Database

log = structlog.get_logger("identity.user_admin")


class UserAdminService:
    def __init__(self, db: Database, hasher: PasswordHasher, cache: PermissionCache, sync: RbacSync) -> None:
        self._db = db
        self._hasher = hasher
        self._cache = cache
        self._sync = sync

    async def by_login(self, login: str) -> User:
        async with self._db.reader() as uow:
            user = await uow.users.get_by_login(canonical_login(login))
        if user is None:
            raise UserNotFound("no user with this login")
        return user

    async def create_superuser(self, login: str, password: str) -> User:
        """A new account holding the built-in superuser role, created atomically."""
        canonical = canonical_login(login)
        checked = check_password_policy(password, canonical)
        password_hash = await self._hasher.hash(checked)
        async with self._db.transaction() as uow:
            await uow.roles.lock_for_write()
            user = await uow.users.create(uuid.uuid4(), display_login(login), canonical, None, password_hash)
            await uow.roles.assign(user.id, SUPERUSER_ROLE_ID, None, None)
            version = await uow.roles.version()
        await self._sync.wait_applied(version)
        log.info("superuser_created", user_id=str(user.id))
        return user

    async def unlock(self, login: str) -> User:
        """Resets the consecutive failed-login counter that locks an account."""
        user = await self.by_login(login)
        async with self._db.transaction() as uow:
            await uow.users.unlock(user.id)
        log.info("account_unlocked", user_id=str(user.id))
        return user

    async def failed_logins(self, login: str) -> tuple[User, int]:
        """The account and its consecutive failed logins: a login attempt on a locked account
        answers like an unknown login, so this (and the owner's history) is where it shows."""
        user = await self.by_login(login)
        async with self._db.reader() as uow:
            failed = await uow.users.failed_logins(user.id)
        return user, failed or 0

    async def set_disabled(self, login: str, disabled: bool) -> tuple[User, int]:
        """Disabling ends every session of the account at once (PostgreSQL is the record,
        so it survives losing Redis) and, like any RBAC write, returns only once no server
        process answers a permission check from what it knew before: a disabled user holds
        nothing. Enabling lets the user log in again. Returns the user and the sessions ended."""
        user = await self.by_login(login)
        async with self._db.transaction() as uow:
            await uow.users.set_disabled(user.id, disabled)
            ended = await uow.sessions.revoke_all_for_user(user.id, "account_disabled") if disabled else 0
            version = await uow.roles.version()
        await self._sync.wait_applied(version)
        log.info(
            "account_disabled" if disabled else "account_enabled", user_id=str(user.id), sessions_ended=ended
        )
        return user, ended

    async def permissions(self, login: str) -> tuple[User, list[EffectivePermission]]:
        user = await self.by_login(login)
        return user, (await self._cache.grants(user.id)).effective()

    async def overview(self, login: str, *, last_logins: int = 10) -> UserOverview:
        """Read-only: the account's state, MFA, roles and latest login attempts."""
        return await load_overview(self._db, await self.by_login(login), last_logins)
