"""The one-call refresh rotation (migration 0005's rotate_refresh_token) against real
PostgreSQL: what it writes, and what it leaves alone when it must not rotate."""

from __future__ import annotations

from datetime import timedelta

from identity.security import opaque
from identity.v1 import auth_pb2


async def _tokens(services, session_id: str) -> list[dict[str, object]]:
    async with services.db.reader() as uow:
        cur = await uow.conn.execute(
            """SELECT token_hash, rotated_at, replaced_by FROM refresh_tokens
               WHERE session_id = %s ORDER BY created_at""",
            (session_id,),
        )
        return list(await cur.fetchall())


async def test_rotation_links_the_successor_and_touches_the_session(auth, account, services):
    rotated = await auth.Refresh(auth_pb2.RefreshRequest(refresh_token=account.refresh_token))
    rows = {bytes(r["token_hash"]): r for r in await _tokens(services, account.session_id)}
    old, new = opaque.digest(account.refresh_token), opaque.digest(rotated.refresh_token)
    assert rows[old]["rotated_at"] is not None and bytes(rows[old]["replaced_by"]) == new
    assert rows[new]["rotated_at"] is None and rows[new]["replaced_by"] is None
    assert len(rows) == 2


async def test_an_unknown_or_used_token_is_left_to_the_general_path(services, account, clock):
    async with services.db.reader() as db:
        unknown = await db.sessions.rotate_live_refresh_token(
            b"\x00" * 32, b"\x01" * 32, now=clock.now(), idle_ttl=timedelta(days=7)
        )
        assert unknown is None
        first = await db.sessions.rotate_live_refresh_token(
            opaque.digest(account.refresh_token), b"\x02" * 32, now=clock.now(), idle_ttl=timedelta(days=7)
        )
        assert first is not None and first.rotated and str(first.session.id) == account.session_id
        again = await db.sessions.rotate_live_refresh_token(
            opaque.digest(account.refresh_token), b"\x03" * 32, now=clock.now(), idle_ttl=timedelta(days=7)
        )
        assert again is None


async def test_a_revoked_session_is_reported_and_nothing_changes(auth, account, services, clock):
    async with services.db.transaction() as uow:
        await uow.sessions.revoke(account.session_id, "logout")
    async with services.db.reader() as db:
        found = await db.sessions.rotate_live_refresh_token(
            opaque.digest(account.refresh_token), b"\x04" * 32, now=clock.now(), idle_ttl=timedelta(days=7)
        )
    assert found is not None and not found.rotated and found.session.revoked_at is not None
    rows = await _tokens(services, account.session_id)
    assert [(r["rotated_at"], r["replaced_by"]) for r in rows] == [(None, None)]


async def test_the_one_call_rotation_writes_the_services_time_and_keeps_amr(auth, account, services, clock):
    """The function writes the caller's clock, not PostgreSQL's (the general path does
    too), and hands back how the user authenticated, so refreshed tokens keep amr."""
    clock.advance(timedelta(seconds=2))
    rotated = await auth.Refresh(auth_pb2.RefreshRequest(refresh_token=account.refresh_token))
    async with services.db.reader() as uow:
        session = await uow.sessions.get(account.session_id)
    assert session is not None
    assert abs((session.last_used_at - clock.now()).total_seconds()) < 1
    claims = (
        await auth.ValidateToken(auth_pb2.ValidateTokenRequest(access_token=rotated.access_token))
    ).claims
    assert list(claims.amr) == ["pwd"] and claims.auth_time.ToDatetime().year == session.created_at.year
