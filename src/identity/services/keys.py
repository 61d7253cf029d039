"""The signing key ring: bootstrap, rotation, the published JWKS, and the keys
each process signs and verifies with.

Rotation promotes the `next` key, which has been in the JWKS since it was made,
so peers that cache the JWKS know a key before it signs anything. The old active
key stays published until every token it may have signed has expired: access
token TTL + this ring's reload interval (other processes may sign with it until
they reload) + clock skew."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from identity.domain.clock import Clock
from identity.security.keyring import (
    GeneratedKey,
    KeyRingSnapshot,
    PublicKey,
    generate_key,
    load_private_key,
    public_key_from_jwk,
)
from identity.security.secretbox import SecretBox
from identity.store.database import Database
from identity.store.keys import StoredKey

# An unknown kid may be a key made a moment ago by another process; reload, but
# not more often than this, so random kids cannot turn into a query flood.
_UNKNOWN_KID_RELOAD_INTERVAL = timedelta(seconds=5)


@dataclass(frozen=True)
class RotationResult:
    active_kid: str
    next_kid: str
    retired_kid: str | None


class KeyService:
    def __init__(
        self,
        db: Database,
        box: SecretBox,
        clock: Clock,
        *,
        refresh_interval: timedelta,
        retire_grace: timedelta,
    ) -> None:
        self._db = db
        self._box = box
        self._clock = clock
        self._refresh_interval = refresh_interval
        self._retire_grace = retire_grace
        self._snapshot: KeyRingSnapshot | None = None
        self._reload_lock = asyncio.Lock()
        self._last_forced_reload = datetime.min.replace(tzinfo=UTC)

    async def ensure_ring(self) -> None:
        """Creates the first active and next keys if the ring is empty (idempotent, safe across processes)."""
        async with self._db.reader() as uow:
            if {"active", "next"} <= {key.state for key in await uow.signing_keys.all()}:
                return
        # Generated before the transaction: RSA generation is slow and a unit of work is
        # bounded in time (IDENTITY_DB_STATEMENT_TIMEOUT_SECONDS).
        spare = [await asyncio.to_thread(generate_key) for _ in range(2)]
        async with self._db.transaction() as uow:
            await uow.signing_keys.lock_ring()
            states = {key.state for key in await uow.signing_keys.all()}
            if "active" not in states:
                if "next" in states:
                    await uow.signing_keys.promote_next()
                    states.discard("next")
                else:
                    await self._insert_new(uow, "active", spare.pop())
            if "next" not in states:
                await self._insert_new(uow, "next", spare.pop())

    async def rotate(self) -> RotationResult:
        spare = [await asyncio.to_thread(generate_key) for _ in range(2)]
        async with self._db.transaction() as uow:
            await uow.signing_keys.lock_ring()
            before = {
                key.state: key for key in await uow.signing_keys.all() if key.state in ("active", "next")
            }
            retired = before.get("active")
            await uow.signing_keys.retire_active(self._clock.now() + self._retire_grace)
            if "next" in before:
                await uow.signing_keys.promote_next()
                active_kid = before["next"].kid
            else:
                active_kid = await self._insert_new(uow, "active", spare.pop())
            next_kid = await self._insert_new(uow, "next", spare.pop())
        await self.reload()
        return RotationResult(active_kid, next_kid, retired.kid if retired else None)

    async def _insert_new(self, uow: Any, state: str, generated: GeneratedKey) -> str:
        sealed = self._box.seal(generated.private_pem, generated.kid)
        await uow.signing_keys.insert(generated.kid, state, sealed, generated.public_jwk)
        return generated.kid

    async def list_keys(self) -> list[StoredKey]:
        async with self._db.reader() as uow:
            return await uow.signing_keys.all()

    async def reload(self) -> KeyRingSnapshot:
        async with self._reload_lock:
            async with self._db.reader() as uow:
                published = await uow.signing_keys.published(self._clock.now())
            previous = self._snapshot
            active = next((key for key in published if key.state == "active"), None)
            signing_key = None
            if active is not None:
                if previous is not None and previous.signing_kid == active.kid:
                    signing_key = previous.signing_key
                else:
                    signing_key = await asyncio.to_thread(
                        load_private_key, self._box, active.kid, active.private_key_encrypted
                    )
            public = {
                key.kid: PublicKey(key.kid, key.public_jwk, public_key_from_jwk(key.public_jwk))
                for key in published
            }
            self._snapshot = KeyRingSnapshot(
                signing_kid=active.kid if active else None,
                signing_key=signing_key,
                public=public,
                loaded_at=self._clock.now(),
            )
            return self._snapshot

    async def current(self) -> KeyRingSnapshot:
        snapshot = self._snapshot
        if snapshot is None or self._clock.now() - snapshot.loaded_at > self._refresh_interval:
            snapshot = await self.reload()
        return snapshot

    async def public_key(self, kid: str) -> PublicKey | None:
        snapshot = await self.current()
        found = snapshot.public.get(kid)
        if found is None and self._clock.now() - self._last_forced_reload > _UNKNOWN_KID_RELOAD_INTERVAL:
            self._last_forced_reload = self._clock.now()
            found = (await self.reload()).public.get(kid)
        return found

    async def jwks(self) -> list[dict[str, Any]]:
        return [key.jwk for key in (await self.current()).public.values()]
