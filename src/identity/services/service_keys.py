"""Service keys: the credentials peer services present to the check RPCs.

A key is `sk_` + 256 random bits, shown once at creation and stored only as its
SHA-256 digest (enough for a high-entropy secret; no slow hash needed). Keys are
named after the peer; several live keys per name allow rotation (create the new
one, deploy it, revoke the old one). Creating or revoking a key bumps the RBAC
version, so every server process drops its cached keys before the call returns."""

from __future__ import annotations

import re
import uuid
from uuid import UUID

import structlog

from identity.domain.errors import InvalidArgument, KeyNotFound
from identity.domain.permissions import IssuedServiceKey, ServiceKey
from identity.security import opaque
from identity.services.authz import SERVICE_KEY_PREFIX
from identity.services.authz_sync import RbacSync
from identity.store.database import Database

log = structlog.get_logger("identity.service_keys")

_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


def validate_key_name(name: str) -> str:
    if _NAME.fullmatch(name) is None:
        raise InvalidArgument(
            "name", "a service key name is 1 to 64 of a-z 0-9 . _ - and starts with a letter or digit"
        )
    return name


class ServiceKeyService:
    def __init__(self, db: Database, sync: RbacSync) -> None:
        self._db = db
        self._sync = sync

    async def create(self, name: str) -> IssuedServiceKey:
        validate_key_name(name)
        secret = opaque.new_secret(SERVICE_KEY_PREFIX)
        async with self._db.transaction() as uow:
            await uow.roles.lock_for_write()
            key = await uow.service_keys.insert(uuid.uuid4(), name, opaque.digest(secret))
            version = await uow.roles.version()
        await self._sync.wait_applied(version)
        log.info("service_key_created", name=name, key_id=str(key.id))
        return IssuedServiceKey(key=key, secret=secret)

    async def list(self, name: str | None = None) -> list[ServiceKey]:
        async with self._db.reader() as uow:
            return await uow.service_keys.list(validate_key_name(name) if name else None)

    async def revoke(self, name: str, key_id: UUID | None = None) -> int:
        """Revokes every live key of `name`, or just one of them; answers how many."""
        validate_key_name(name)
        async with self._db.transaction() as uow:
            await uow.roles.lock_for_write()
            revoked = await uow.service_keys.revoke(name, key_id)
            version = await uow.roles.version()
        if revoked == 0:
            raise KeyNotFound()
        await self._sync.wait_applied(version)
        log.info("service_key_revoked", name=name, count=revoked)
        return revoked
