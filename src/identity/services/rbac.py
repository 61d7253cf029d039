"""Role administration and assignments, and the rules that guard them.

Who may call what (the caller's user, through the cache, exactly):
- identity.roles.read   GetRole, ListRoles, ListUserRoles
- identity.roles.write  CreateRole, UpdateRole, DeleteRole
- identity.roles.assign AssignRole, RevokeRole
The superuser role's wildcard holds all of them.

No escalation, by any path: besides the permission of the RPC, a caller can only
create, update (before and after the change), delete, assign or revoke a role whose
every permission they hold themselves. Superusers are exempt, and so is the operator
at the command line, who already has the database.

Every write runs in one transaction that first locks rbac_version (RBAC writers are
serialised, so the escalation check reads a state nobody changes underneath it), and
returns only after every server process has dropped what the write made stale."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar
from uuid import UUID

from identity.domain.clock import Clock
from identity.domain.errors import (
    EscalationDenied,
    InvalidArgument,
    PageTokenInvalid,
    PermissionDenied,
    RoleBuiltin,
    RoleInUse,
    RoleNotFound,
    UserNotFound,
)
from identity.domain.permissions import (
    ROLES_ASSIGN,
    ROLES_READ,
    ROLES_WRITE,
    WILDCARD,
    Role,
    RoleAssignment,
    RolePatch,
    UserGrants,
    parse_uuid,
    role_name,
    validate_description,
    validate_permission_set,
)
from identity.services.authz_sync import RbacSync
from identity.services.paging import PageTokens, page_size
from identity.services.permission_cache import PermissionCache
from identity.services.tokens import TokenService
from identity.store.database import Database
from identity.store.uow import UnitOfWork

DEFAULT_ROLES_PAGE = 50
MAX_ROLES_PAGE = 200
_PAGE_KIND = "roles"
UPDATE_PATHS = frozenset({"name", "description", "permissions"})


@dataclass(frozen=True)
class Actor:
    """Who performs an admin action: a user (checked), or the operator (user_id None)."""

    user_id: UUID | None

    OPERATOR: ClassVar[Actor]


Actor.OPERATOR = Actor(None)


class RoleService:
    def __init__(
        self,
        db: Database,
        cache: PermissionCache,
        sync: RbacSync,
        tokens: TokenService,
        page_tokens: PageTokens,
        clock: Clock,
    ) -> None:
        self._db = db
        self._cache = cache
        self._sync = sync
        self._tokens = tokens
        self._page_tokens = page_tokens
        self._clock = clock

    async def actor(self, access_token: str | None) -> Actor:
        principal = await self._tokens.authenticate(access_token)
        return Actor(principal.user_id)

    async def _require(self, actor: Actor, permission: str) -> None:
        if actor.user_id is None:
            return
        if not (await self._cache.grants(actor.user_id)).holds(permission):
            raise PermissionDenied(f"this call requires the permission {permission}")

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[UnitOfWork]:
        async with self._db.transaction() as uow:
            await uow.roles.lock_for_write()
            yield uow
            version = await uow.roles.version()
        await self._sync.wait_applied(version)

    async def _check_escalation(self, uow: UnitOfWork, actor: Actor, permissions: Iterable[str]) -> None:
        if actor.user_id is None:
            return
        now = self._clock.now()
        snapshot = await uow.roles.grant_snapshot(actor.user_id, now)
        held = UserGrants.build(
            actor.user_id,
            exists=snapshot.exists,
            disabled=snapshot.disabled,
            rows=snapshot.rows,
            now=now,
        )
        if held.superuser:
            return
        missing = sorted({name for name in permissions if name not in held.granted})
        if missing:
            shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
            raise EscalationDenied(f"you cannot manage a role carrying permissions you do not hold: {shown}")

    # -- roles -------------------------------------------------------------------------

    async def create_role(self, actor: Actor, name: str, description: str, permissions: list[str]) -> Role:
        await self._require(actor, ROLES_WRITE)
        checked_name = role_name(name, field="role.name")
        checked_description = validate_description(description, field="role.description")
        checked_permissions = validate_permission_set(permissions, field="role.permissions")
        role_id = uuid.uuid4()
        async with self._write() as uow:
            await self._check_escalation(uow, actor, checked_permissions)
            await uow.roles.insert(role_id, checked_name, checked_description)
            await uow.roles.set_permissions(role_id, checked_permissions)
            role = await uow.roles.get(role_id)
        assert role is not None
        return role

    async def get_role(self, actor: Actor, role_id: str) -> Role:
        await self._require(actor, ROLES_READ)
        async with self._db.reader() as uow:
            role = await uow.roles.get(parse_uuid(role_id, "role_id"))
        if role is None:
            raise RoleNotFound()
        return role

    async def find_role(self, actor: Actor, reference: str) -> Role:
        """A role by id or by name (for the command line)."""
        await self._require(actor, ROLES_READ)
        async with self._db.reader() as uow:
            try:
                role = await uow.roles.get(UUID(reference))
            except ValueError:
                role = await uow.roles.get_by_name(role_name(reference).canonical)
        if role is None:
            raise RoleNotFound()
        return role

    async def list_roles(self, actor: Actor, size: int, token: str) -> tuple[list[Role], str]:
        await self._require(actor, ROLES_READ)
        limit = page_size(size, default=DEFAULT_ROLES_PAGE, maximum=MAX_ROLES_PAGE)
        position = self._page_tokens.decode(_PAGE_KIND, "", token)
        after = position.get("after") if position else None
        if after is not None and not isinstance(after, str):
            raise PageTokenInvalid()
        async with self._db.reader() as uow:
            roles = await uow.roles.list_page(after, limit + 1)
        if len(roles) <= limit:
            return roles, ""
        page = roles[:limit]
        return page, self._page_tokens.encode(_PAGE_KIND, "", {"after": page[-1].name_canonical})

    async def update_role(self, actor: Actor, role_id: str, patch: RolePatch) -> Role:
        await self._require(actor, ROLES_WRITE)
        target = parse_uuid(role_id, "role_id")
        new_name = role_name(patch.name, field="role.name") if patch.name is not None else None
        description = (
            validate_description(patch.description, field="role.description")
            if patch.description is not None
            else None
        )
        wildcard_only = patch.permissions is not None and set(patch.permissions) == {WILDCARD}
        permissions = (
            validate_permission_set(patch.permissions, field="role.permissions")
            if patch.permissions is not None and not wildcard_only
            else None
        )
        async with self._write() as uow:
            role = await uow.roles.get(target)
            if role is None:
                raise RoleNotFound()
            if role.builtin:
                if new_name is not None and new_name.canonical != role.name_canonical:
                    raise RoleBuiltin("a built-in role cannot be renamed")
                if patch.permissions is not None and not wildcard_only:
                    raise RoleBuiltin("a built-in role's permissions cannot be changed")
            elif wildcard_only:
                validate_permission_set([WILDCARD], field="role.permissions")
            # Before and after: nobody edits a role stronger than themself, nor makes one.
            await self._check_escalation(uow, actor, {*role.permissions, *(permissions or ())})
            await uow.roles.update(target, new_name, description)
            if permissions is not None:
                await uow.roles.set_permissions(target, permissions)
                await uow.roles.prune_catalogue(role.permissions)
            updated = await uow.roles.get(target)
        assert updated is not None
        return updated

    async def delete_role(self, actor: Actor, role_id: str, force: bool) -> None:
        await self._require(actor, ROLES_WRITE)
        target = parse_uuid(role_id, "role_id")
        async with self._write() as uow:
            role = await uow.roles.get(target)
            if role is None:
                raise RoleNotFound()
            if role.builtin:
                raise RoleBuiltin("a built-in role cannot be deleted")
            await self._check_escalation(uow, actor, role.permissions)
            if not force and await uow.roles.live_assignment_count(target, self._clock.now()) > 0:
                raise RoleInUse()
            # Assignments go with the role (ON DELETE CASCADE), in this transaction.
            await uow.roles.delete(target)
            await uow.roles.prune_catalogue(role.permissions)

    # -- assignments -------------------------------------------------------------------

    async def assign_role(
        self, actor: Actor, user_id: str, role_id: str, expires_at: datetime | None
    ) -> RoleAssignment:
        await self._require(actor, ROLES_ASSIGN)
        user = parse_uuid(user_id, "user_id")
        role_uuid = parse_uuid(role_id, "role_id")
        if expires_at is not None and expires_at <= self._clock.now():
            raise InvalidArgument("expire_time", "expire_time must be in the future")
        async with self._write() as uow:
            if await uow.users.get(user) is None:
                raise UserNotFound()
            role = await uow.roles.get(role_uuid)
            if role is None:
                raise RoleNotFound()
            await self._check_escalation(uow, actor, role.permissions)
            return await uow.roles.assign(user, role_uuid, expires_at, actor.user_id)

    async def revoke_role(self, actor: Actor, user_id: str, role_id: str) -> bool:
        await self._require(actor, ROLES_ASSIGN)
        user = parse_uuid(user_id, "user_id")
        role_uuid = parse_uuid(role_id, "role_id")
        async with self._write() as uow:
            role = await uow.roles.get(role_uuid)
            if role is None:
                raise RoleNotFound()
            await self._check_escalation(uow, actor, role.permissions)
            return await uow.roles.revoke(user, role_uuid)

    async def list_user_roles(self, actor: Actor, user_id: str) -> list[RoleAssignment]:
        await self._require(actor, ROLES_READ)
        user = parse_uuid(user_id, "user_id")
        async with self._db.reader() as uow:
            if await uow.users.get(user) is None:
                raise UserNotFound()
            return await uow.roles.user_assignments(user)
